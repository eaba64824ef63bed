// Loading tenants' plans for rating: see rating_plans.hpp.
#include "billing/rating_plans.hpp"

#include "core/json_dom.hpp"
#include "core/json_text.hpp"

namespace tollgate::billing {

namespace net = boost::asio;

net::awaitable<pg::db_result<std::map<std::string, plan_history>>> rating_plan_loader::load(
    pg::connection& conn, const std::set<std::string>& tenants) {
  std::map<std::string, plan_history> plans;
  if (tenants.empty()) co_return plans;
  std::vector<pg::param> params;
  params.emplace_back(pg::text_array(tenants));
  auto found = co_await conn.query_prepared(
      "SELECT p.tenant_id, p.book_id, b.tier_mode, b.tier_scope, p.batch_discount_bp,"
      " v.version, extract(epoch from v.effective_at)::bigint, p.from_period, p.terms::text"
      " FROM tenant_plans p JOIN price_books b ON b.id = p.book_id"
      " JOIN price_book_versions v ON v.book_id = p.book_id"
      " WHERE p.tenant_id = ANY($1::text[]) ORDER BY p.tenant_id, p.from_period, v.effective_at",
      std::move(params));
  if (!found) co_return found.error();
  std::set<std::string> missing;
  for (int i = 0; i < found->size(); ++i) {
    const std::pair<std::string, int> key{std::string(found->text(i, 1)),
                                          static_cast<int>(found->int64(i, 5))};
    if (!prices_.contains(key)) missing.insert(key.first + "/" + std::to_string(key.second));
  }
  if (!missing.empty()) {
    std::vector<pg::param> version_params;
    version_params.emplace_back(pg::text_array(missing));
    auto prices = co_await conn.query(
        "SELECT v.book_id, v.version, b.tier_mode, b.tier_scope, v.prices::text"
        " FROM price_book_versions v JOIN price_books b ON b.id = v.book_id"
        " WHERE v.book_id || '/' || v.version = ANY($1::text[])",
        std::move(version_params));
    if (!prices) co_return prices.error();
    for (int i = 0; i < prices->size(); ++i) {
      auto parsed = parse_stored_prices(prices->text(i, 4), prices->text(i, 2), prices->text(i, 3));
      if (!parsed) {
        // Stored versions were validated when made; a version that no longer parses prices
        // nothing (its events stay unrated) rather than block the caller.
        if (log_ != nullptr) {
          json_object_writer f;
          f.add("price_book_id", prices->text(i, 0)).add("version", prices->int64(i, 1));
          log_->error("a price book version does not parse; its events are not rated", f);
        }
        continue;
      }
      prices_[{std::string(prices->text(i, 0)), static_cast<int>(prices->int64(i, 1))}] =
          std::make_shared<const std::vector<model_prices>>(std::move(*parsed));
    }
  }
  for (int i = 0; i < found->size(); ++i) {
    plan_history& history = plans[std::string(found->text(i, 0))];
    if (history.empty() || history.back().from_period != found->text(i, 7)) {
      rating_plan& added = history.emplace_back();
      added.from_period = std::string(found->text(i, 7));
      // Terms were checked when set; terms that no longer parse include nothing.
      const std::string terms_text(found->text(i, 8));
      const auto doc = json::document::parse(terms_text);
      if (doc) {
        if (auto terms = parse_plan_terms(doc->root())) added.terms = std::move(*terms);
      }
    }
    rating_plan& plan = history.back();
    plan.book_id = std::string(found->text(i, 1));
    plan.mode = tier_mode_of(found->text(i, 2));
    plan.scope = tier_scope_of(found->text(i, 3));
    plan.batch_discount_bp = static_cast<int>(found->int64(i, 4));
    rating_plan::version v;
    v.number = static_cast<int>(found->int64(i, 5));
    v.effective_at_s = found->int64(i, 6);
    if (const auto it = prices_.find({plan.book_id, v.number}); it != prices_.end()) {
      v.prices = it->second;
    }
    plan.versions.push_back(std::move(v));
  }
  co_return plans;
}

}  // namespace tollgate::billing
