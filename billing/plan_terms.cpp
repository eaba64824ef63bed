// A plan's terms and its fee lines: see plan_terms.hpp.
#include "billing/plan_terms.hpp"

#include <algorithm>
#include <tuple>

#include "billing/price_book.hpp"
#include "core/json_text.hpp"

namespace tollgate::billing {

namespace {

constexpr std::size_t model_bytes_max = 256;

// A non-negative integer member up to `max` (absent: 0), or the error naming it.
bool read_amount(json::value obj, std::string_view key, std::int64_t max, std::int64_t& out,
                 std::string& error) {
  const json::value v = obj.find(key);
  if (!v.valid() || v.is_null()) return true;
  if (!v.is_int64() || v.as_int64() < 0 || v.as_int64() > max) {
    error = std::string(key) + " must be an integer from 0 to " + std::to_string(max) + ".";
    return false;
  }
  out = v.as_int64();
  return true;
}

bool is_class_name(std::string_view s) {
  return std::any_of(std::begin(token_class_names), std::end(token_class_names),
                     [&](const char* name) { return s == name; });
}

}  // namespace

std::int64_t plan_terms::allowance_of(std::string_view model, std::string_view token_class) const {
  for (const auto& a : allowances) {
    if (a.model == model && a.token_class == token_class) return a.tokens;
  }
  return 0;
}

bool plan_terms::rolls_over() const {
  return std::any_of(allowances.begin(), allowances.end(),
                     [](const allowance& a) { return a.rollover_periods > 0; });
}

basic_result<std::vector<allowance>, std::string> parse_allowances(json::value v) {
  std::vector<allowance> out;
  if (!v.valid() || v.is_null()) return out;
  if (!v.is_array() || v.size() > allowances_max) {
    return std::string("allowances must be an array of at most ") + std::to_string(allowances_max) +
           " {model, token_class, tokens, rollover_periods?} objects.";
  }
  std::string error;
  v.for_each_element([&](json::value a) {
    if (!error.empty()) return;
    const json::value model = a.find("model");
    const json::value token_class = a.find("token_class");
    const json::value tokens = a.find("tokens");
    const json::value rollover = a.find("rollover_periods");
    std::size_t members = 0;
    if (a.is_object()) a.for_each_member([&](std::string_view, json::value) { ++members; });
    const bool rollover_ok =
        !rollover.valid() || (rollover.is_int64() && rollover.as_int64() >= 0 &&
                              rollover.as_int64() <= rollover_periods_max);
    if (!a.is_object() || members != 3u + (rollover.valid() ? 1u : 0u) || !rollover_ok ||
        !model.valid() || !model.is_string() || model.as_string().empty() ||
        model.as_string().size() > model_bytes_max || !token_class.valid() ||
        !token_class.is_string() || !is_class_name(token_class.as_string()) || !tokens.valid() ||
        !tokens.is_int64() || tokens.as_int64() < 1 || tokens.as_int64() > allowance_tokens_max) {
      error = "allowances[" + std::to_string(out.size()) +
              "] must be {\"model\", \"token_class\", \"tokens\", \"rollover_periods\"?}: a "
              "model name (\"*\" for a book with tier_scope all_models), a token class (input, "
              "cached_input, cache_write, image_input, audio_input, output, audio_output), 1 to " +
              std::to_string(allowance_tokens_max) + " tokens and 0 to " +
              std::to_string(rollover_periods_max) + " periods the unused tokens roll over.";
      return;
    }
    out.push_back(allowance{std::string(model.as_string()), std::string(token_class.as_string()),
                            tokens.as_int64(),
                            rollover.valid() ? static_cast<int>(rollover.as_int64()) : 0});
  });
  if (!error.empty()) return error;
  std::sort(out.begin(), out.end(), [](const allowance& a, const allowance& b) {
    return std::tie(a.model, a.token_class) < std::tie(b.model, b.token_class);
  });
  for (std::size_t i = 1; i < out.size(); ++i) {
    if (out[i].model == out[i - 1].model && out[i].token_class == out[i - 1].token_class) {
      return "allowances name " + out[i].model + " / " + out[i].token_class + " twice.";
    }
  }
  return out;
}

basic_result<plan_terms, std::string> parse_plan_terms(json::value v) {
  plan_terms t;
  if (!v.valid() || v.is_null()) return t;
  if (!v.is_object()) return std::string("plan terms must be an object.");
  std::string error;
  if (!read_amount(v, "base_fee_micros", plan_fee_micros_max, t.base_fee_micros, error) ||
      !read_amount(v, "seat_fee_micros", seat_fee_micros_max, t.seat_fee_micros, error) ||
      !read_amount(v, "commitment_micros", plan_fee_micros_max, t.commitment_micros, error) ||
      !read_amount(v, "included_usage_micros", plan_fee_micros_max, t.included_usage_micros,
                   error)) {
    return error;
  }
  auto allowances = parse_allowances(v.find("allowances"));
  if (!allowances) return allowances.error();
  t.allowances = std::move(*allowances);
  return t;
}

std::string allowances_json(const std::vector<allowance>& a) {
  json_array_writer out;
  for (const auto& x : a) {
    json_object_writer w;
    w.add("model", x.model).add("token_class", x.token_class).add("tokens", x.tokens);
    if (x.rollover_periods > 0) w.add("rollover_periods", std::int64_t{x.rollover_periods});
    out.add_raw(w.finish());
  }
  return out.finish();
}

std::string plan_terms_json(const plan_terms& t) {
  json_object_writer w;
  if (t.base_fee_micros != 0) w.add("base_fee_micros", t.base_fee_micros);
  if (t.seat_fee_micros != 0) w.add("seat_fee_micros", t.seat_fee_micros);
  if (t.commitment_micros != 0) w.add("commitment_micros", t.commitment_micros);
  if (t.included_usage_micros != 0) w.add("included_usage_micros", t.included_usage_micros);
  if (!t.allowances.empty()) w.add_raw("allowances", allowances_json(t.allowances));
  return w.finish();
}

std::int64_t seat_days(const std::vector<seat_change>& changes, std::int64_t first_day,
                       std::int64_t days) {
  std::int64_t total = 0;
  std::int64_t seats = 0;
  std::size_t next = 0;
  for (std::int64_t d = first_day; d < first_day + days; ++d) {
    while (next < changes.size() && changes[next].day <= d) seats = changes[next++].seats;
    total += seats;
  }
  return total;
}

std::vector<fee_line> fee_lines(const plan_terms& terms, std::int64_t seat_days,
                                std::int64_t period_days, std::int64_t usage_micros) {
  std::vector<fee_line> out;
  if (terms.base_fee_micros > 0) {
    out.push_back({"base_fee", 1, terms.base_fee_micros, terms.base_fee_micros});
  }
  if (terms.seat_fee_micros > 0 && seat_days > 0 && period_days > 0) {
    // seat_fee <= 10^12 and seat_days <= 10^6 x 31: the quotient fits 64 bits.
    const auto amount = static_cast<__int128>(terms.seat_fee_micros) * seat_days / period_days;
    out.push_back({"seats", seat_days, terms.seat_fee_micros, static_cast<std::int64_t>(amount)});
  }
  if (terms.commitment_micros > usage_micros) {
    const std::int64_t short_by = terms.commitment_micros - std::max<std::int64_t>(usage_micros, 0);
    out.push_back({"commitment_true_up", 1, short_by, short_by});
  }
  return out;
}

std::string fee_lines_json(const std::vector<fee_line>& fees,
                           const std::vector<std::int64_t>& minor, std::size_t first) {
  json_array_writer out;
  for (std::size_t i = 0; i < fees.size(); ++i) {
    const auto& f = fees[i];
    json_object_writer w;
    w.add("kind", f.kind)
        .add("quantity", f.quantity)
        .add("unit_amount_micros", f.unit_amount_micros)
        .add("amount_micros", f.amount_micros)
        .add("amount_minor", minor[first + i]);
    if (!f.bundle_id.empty()) {
      w.add("bundle_id", f.bundle_id).add("model", f.model).add("token_class", f.token_class);
    }
    if (!f.period.empty()) w.add("period", f.period);
    out.add_raw(w.finish());
  }
  return out.finish();
}

}  // namespace tollgate::billing
