// The credit store: credit grants (made idempotently, each with its account and funding
// transfer), balances, transfers, expiry, and the credit an invoice applies, in PostgreSQL
// (sql/010_credits.sql, docs/CREDITS.md). Every method is a coroutine on the billing executor
// using the shared connection pool; objects come back as the JSON the admin API shows.
#pragma once
#include <boost/asio/awaitable.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "billing/invoicing.hpp"
#include "billing/pg.hpp"
#include "billing/store_common.hpp"

namespace tollgate::billing {

class credit_store {
 public:
  explicit credit_store(pg::pool& pool) : pool_(pool) {}

  struct credit_grant_spec {
    std::string tenant_id;
    std::string kind;  // purchased | promotional
    std::int64_t amount_micros = 0;
    std::optional<std::int64_t> price_paid_micros;  // purchased only
    std::int64_t effective_at_s = 0;
    std::optional<std::int64_t> expires_at_s;
    int priority = 0;
    std::optional<std::vector<std::string>> models;  // none: every model
    std::string memo;
    std::string id;  // optional, for idempotent retries (cg_ + letters/digits); "" = new
  };
  // Grants credit: the grant, its account and the funding transfer, in one transaction. The
  // same id given again returns the grant made the first time if it is the same grant (409
  // otherwise).
  boost::asio::awaitable<store_result> grant_credit(credit_grant_spec spec, std::string actor);
  struct token_bundle_spec {
    std::string tenant_id;
    std::string model, token_class;
    std::int64_t tokens = 0;
    std::int64_t price_per_million_micros = 0;
    std::int64_t effective_at_s = 0;
    std::optional<std::int64_t> expires_at_s;
    int priority = 0;
    std::string memo;
    std::string id;  // as for grants
  };
  // Makes a token bundle (a grant of kind bundle: docs/CREDITS.md), idempotent on its id.
  boost::asio::awaitable<store_result> grant_bundle(token_bundle_spec spec, std::string actor);
  boost::asio::awaitable<store_result> get_credit_grant(std::string id);
  // The invoice's token_bundle lines of `period`: per bundle, the tokens its drawdowns of the
  // period paid for and their amount.
  boost::asio::awaitable<basic_result<std::vector<fee_line>, store_error>> bundle_lines(
      std::string tenant_id, std::string period);
  // A tenant's grants with their balances, in drawdown order, and the totals.
  boost::asio::awaitable<store_result> credit_balance(std::string tenant_id);
  // A tenant's credit transfers with their entries, newest first.
  boost::asio::awaitable<store_result> credit_transfers(std::string tenant_id, page_request page);
  // Moves the balances of grants expired by `at_s` to breakage; {"expired": n}.
  boost::asio::awaitable<store_result> expire_credits(std::int64_t at_s);
  // The credit an invoice of `period` applies, in drawdown order: the period's drawdowns and
  // true-ups per grant, then credit drawn by late usage of earlier finalized periods after
  // they were finalized (less what other finalized invoices have applied of it). The row type
  // is the invoice arithmetic's (billing/invoicing).
  using applied_credit = billing::applied_credit;
  boost::asio::awaitable<basic_result<std::vector<applied_credit>, store_error>> applied_credits(
      std::string tenant_id, std::string period);

 private:
  pg::pool& pool_;
};

}  // namespace tollgate::billing
