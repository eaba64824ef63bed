// Reading token bundles: see bundle_reads.hpp.
#include "billing/bundle_reads.hpp"

#include <algorithm>

#include "billing/price_book.hpp"
#include "core/json_dom.hpp"

namespace tollgate::billing {

std::string bundles_sql(bool lock) {
  std::string sql =
      "SELECT g.tenant_id, g.id, g.models[1], g.bundle_token_class, g.bundle_tokens,"
      " a.tokens_balance, g.bundle_price_per_million_micros,"
      " floor(extract(epoch from g.effective_at)), floor(extract(epoch from g.expires_at)),"
      " array_to_json(g.bundle_project_ids)::text, g.priority, g.kind"
      " FROM credit_accounts a JOIN credit_grants g ON g.id = a.grant_id"
      " WHERE g.kind IN ('bundle', 'rollover') AND g.tenant_id = ANY($1::text[]) AND "
      "a.tokens_balance > 0"
      " ORDER BY g.tenant_id, g.priority, g.expires_at NULLS LAST, g.effective_at, g.id";
  if (lock) sql += " FOR UPDATE OF a";
  return sql;
}

std::map<std::string, std::vector<token_bundle>> bundles_of(const pg::rows& found) {
  std::map<std::string, std::vector<token_bundle>> bundles;
  for (int i = 0; i < found.size(); ++i) {
    token_bundle b;
    b.grant_id = std::string(found.text(i, 1));
    b.model = std::string(found.text(i, 2));
    b.token_class = token_class_index(found.text(i, 3));
    if (b.token_class < 0) continue;  // the schema allows none other
    b.tokens = found.int64(i, 4);
    b.tokens_left = found.int64(i, 5);
    b.price_per_million_micros = found.int64(i, 6);
    b.effective_at_s = found.int64(i, 7);
    if (!found.is_null(i, 8)) b.expires_at_s = found.int64(i, 8);
    if (!found.is_null(i, 9)) {
      b.project_ids = string_list(found.text(i, 9));
      std::sort(b.project_ids.begin(), b.project_ids.end());  // token_bundle::serves searches
    }
    b.priority = static_cast<int>(found.int64(i, 10));
    b.rollover = found.text(i, 11) == "rollover";
    bundles[std::string(found.text(i, 0))].push_back(std::move(b));
  }
  return bundles;
}

std::vector<std::string> string_list(std::string_view json_text) {
  const std::string text(json_text);  // the document points into it
  const auto doc = json::document::parse(text);
  std::vector<std::string> out;
  if (doc && doc->root().is_array()) {
    doc->root().for_each_element([&out](json::value v) {
      if (v.is_string()) out.emplace_back(v.as_string());
    });
  }
  return out;
}

}  // namespace tollgate::billing
