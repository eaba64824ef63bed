// The period's cost from ledger totals: see cost_preview.hpp.
#include "billing/cost_preview.hpp"

#include <cstdio>
#include <ctime>
#include <map>
#include <tuple>

#include "billing/price_book.hpp"
#include "core/json_dom.hpp"
#include "core/json_text.hpp"

namespace tollgate::billing {

namespace {

const char* const class_names[] = {"input", "cached_input", "output"};

const price_schedule& schedule_of(const model_prices& p, int token_class) {
  return token_class == 0 ? p.input : token_class == 1 ? p.cached_input : p.output;
}

struct line {
  std::int64_t tokens = 0;
  std::int64_t position = 0;  // the accumulator: tokens priced so far this period
  std::int64_t amount = 0;
  std::vector<int> versions;
};

struct unpriced_line {
  std::int64_t tokens = 0;
  std::string reason;
};

}  // namespace

std::optional<std::pair<std::int64_t, std::int64_t>> period_bounds(std::string_view period) {
  if (period.size() != 7 || period[4] != '-') return std::nullopt;
  int year = 0;
  int month = 0;
  for (int i = 0; i < 7; ++i) {
    if (i == 4) continue;
    if (period[i] < '0' || period[i] > '9') return std::nullopt;
    int& part = i < 4 ? year : month;
    part = part * 10 + (period[i] - '0');
  }
  if (year < 1970 || month < 1 || month > 12) return std::nullopt;
  std::tm tm{};
  tm.tm_year = year - 1900;
  tm.tm_mon = month - 1;
  tm.tm_mday = 1;
  const std::int64_t start = timegm(&tm);
  tm.tm_mon += 1;  // timegm normalizes December + 1
  const std::int64_t end = timegm(&tm);
  return std::pair{start, end};
}

std::string period_of(std::int64_t unix_s) {
  const std::time_t secs = static_cast<std::time_t>(unix_s);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%04d-%02d", tm.tm_year + 1900, tm.tm_mon + 1);
  return buf;
}

std::string cost_preview_json(const cost_preview_input& in) {
  const tier_mode mode = in.tier_mode == "volume" ? tier_mode::volume : tier_mode::graduated;
  const tier_scope scope =
      in.tier_scope == "all_models" ? tier_scope::all_models : tier_scope::model;
  // Each version's prices, parsed once.
  std::map<int, std::vector<model_prices>> prices;
  for (const auto& v : in.versions) {
    auto doc = json::document::parse(v.prices_json);
    if (!doc) continue;
    auto parsed = parse_model_prices(doc->root(), mode, scope);
    if (parsed) prices[v.number] = std::move(*parsed);
  }
  // (model or "*", class, batch) -> line; rows come in version order, so each accumulator
  // advances through the period's versions in time order.
  std::map<std::tuple<std::string, int, bool>, line> lines;
  std::map<std::pair<std::string, bool>, unpriced_line> unpriced;
  for (const auto& row : in.rows) {
    const std::int64_t amounts[] = {row.input, row.cached_input, row.output};
    const auto it = prices.find(row.version);
    const model_prices* p = nullptr;
    if (it != prices.end()) {
      const std::string& key = scope == tier_scope::all_models ? std::string("*") : row.model;
      for (const auto& m : it->second) {
        if (m.model == key) p = &m;
      }
    }
    if (p == nullptr) {
      auto& u = unpriced[{row.model, row.batch}];
      u.tokens += row.input + row.cached_input + row.output;
      u.reason = row.version == 0 ? "before the price book's first version"
                                  : "the model is not in the price book";
      continue;
    }
    const int discount = row.batch ? in.batch_discount_bp : 0;
    for (int c = 0; c < 3; ++c) {
      if (amounts[c] == 0) continue;
      auto& l = lines[{p->model, c, row.batch}];
      const auto& s = schedule_of(*p, c);
      // Not clamped at zero as a rated event's provisional charge is: this is what the
      // invoice comes to, volume true-up included.
      const std::int64_t end = std::min(l.position + amounts[c], max_units);
      l.amount += price_micros(s, end, discount) - price_micros(s, l.position, discount);
      l.position = end;
      l.tokens += amounts[c];
      if (l.versions.empty() || l.versions.back() != row.version) l.versions.push_back(row.version);
    }
  }
  std::string out = "{\"object\":\"cost_preview\",\"tenant_id\":";
  append_json_string(out, in.tenant_id);
  out += ",\"period\":";
  append_json_string(out, in.period);
  out += ",\"currency\":";
  append_json_string(out, in.currency);
  out += ",\"price_book_id\":";
  append_json_string(out, in.book_id);
  out += ",\"batch_discount_bp\":" + std::to_string(in.batch_discount_bp) + ",\"lines\":[";
  std::int64_t total = 0;
  bool first = true;
  for (const auto& [key, l] : lines) {
    const auto& [model, c, batch] = key;
    out += first ? "{" : ",{";
    first = false;
    out += "\"model\":";
    append_json_string(out, model);
    out += ",\"token_class\":\"" + std::string(class_names[c]) + "\",\"batch\":" +
           (batch ? "true" : "false") + ",\"tokens\":" + std::to_string(l.tokens) +
           ",\"amount_micros\":" + std::to_string(l.amount) + ",\"versions\":[";
    for (std::size_t i = 0; i < l.versions.size(); ++i) {
      out += (i ? "," : "") + std::to_string(l.versions[i]);
    }
    out += "]}";
    total += l.amount;
  }
  out += "],\"unpriced\":[";
  first = true;
  for (const auto& [key, u] : unpriced) {
    out += first ? "{" : ",{";
    first = false;
    out += "\"model\":";
    append_json_string(out, key.first);
    out += ",\"batch\":" + std::string(key.second ? "true" : "false") +
           ",\"tokens\":" + std::to_string(u.tokens) + ",\"reason\":";
    append_json_string(out, u.reason);
    out += "}";
  }
  out += "],\"total_micros\":" + std::to_string(total) + "}";
  return out;
}

}  // namespace tollgate::billing
