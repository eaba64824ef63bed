// Tenants' plans as rating sees them (billing/rating), read from PostgreSQL: per plan row (the
// first period it prices), the book's tier mode and scope, the batch discount and every
// version with its prices. Used by the ledger
// writer for each batch and by the plan store for the cost header. A version never changes
// once made, so each loader reads and parses a version's prices once.
#pragma once
#include <boost/asio/awaitable.hpp>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "billing/pg.hpp"
#include "billing/rating.hpp"
#include "core/log.hpp"

namespace tollgate::billing {

class rating_plan_loader {
 public:
  // `log` (may be null) hears of a stored version whose prices no longer parse: its events
  // are then not rated.
  explicit rating_plan_loader(logger* log) : log_(log) {}

  // The plans of `tenants` that have one, by tenant.
  boost::asio::awaitable<pg::db_result<std::map<std::string, plan_history>>> load(
      pg::connection& conn, const std::set<std::string>& tenants);

 private:
  logger* log_;
  std::map<std::pair<std::string, int>, std::shared_ptr<const std::vector<model_prices>>>
      prices_;  // by book id and version number
};

}  // namespace tollgate::billing
