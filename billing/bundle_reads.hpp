// Reading token bundles from PostgreSQL (docs/CREDITS.md, "Token bundles"): the one query and
// row reader that both the ledger writer (which locks the bundles' accounts while it draws
// them) and the cost quote (which reads them to quote what they will pay) use.
#pragma once
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "billing/pg.hpp"
#include "billing/token_bundles.hpp"

namespace tollgate::billing {

// SELECT of the bundles with tokens left of the tenants in $1 (a text[]), by tenant in drawdown
// order; `lock`: FOR UPDATE of their accounts.
std::string bundles_sql(bool lock);

// The rows of bundles_sql, by tenant.
std::map<std::string, std::vector<token_bundle>> bundles_of(const pg::rows& found);

// The strings of a JSON array of strings (PostgreSQL's array_to_json of a text[]); others are
// left out.
std::vector<std::string> string_list(std::string_view json_text);

}  // namespace tollgate::billing
