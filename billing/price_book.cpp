// Price book contents: see price_book.hpp.
#include "billing/price_book.hpp"

#include <algorithm>

#include "core/json_text.hpp"

namespace tollgate::billing {

namespace {

using parse_result = basic_result<std::vector<model_prices>, std::string>;

// One token class's tiers; "" or an error message.
std::string parse_schedule(json::value tiers, tier_mode mode, const std::string& where,
                           price_schedule& out) {
  out.mode = mode;
  out.tiers.clear();
  if (!tiers.valid() || !tiers.is_array() || tiers.size() == 0) {
    return where + ": must be a non-empty array of tiers";
  }
  if (tiers.size() > static_cast<std::uint32_t>(max_tiers)) {
    return where + ": at most " + std::to_string(max_tiers) + " tiers";
  }
  for (std::uint32_t i = 0; i < tiers.size(); ++i) {
    const std::string at = where + " tier " + std::to_string(i + 1);
    const json::value t = tiers.at(i);
    if (!t.is_object()) return at + ": must be an object";
    std::string unknown;
    t.for_each_member([&](std::string_view key, json::value) {
      if (key != "up_to" && key != "rate" && key != "flat_fee" && unknown.empty()) {
        unknown = std::string(key);
      }
    });
    if (!unknown.empty()) return at + ": unknown field \"" + unknown + "\"";
    price_tier tier;
    const json::value up_to = t.find("up_to");
    if (up_to.valid() && !up_to.is_null()) {
      if (!up_to.is_int64() || up_to.as_int64() <= 0) {
        return at + ": up_to must be a positive integer (tokens, inclusive)";
      }
      tier.up_to = up_to.as_int64();
    }
    const json::value rate = t.find("rate");
    std::optional<rate_e6> parsed;
    if (rate.valid() && rate.is_string()) {
      parsed = parse_rate(rate.as_string());
    } else if (rate.valid() && rate.is_int64() && rate.as_int64() >= 0) {
      parsed = parse_rate(rate.raw_number());
    }
    if (!parsed) {
      return at +
             ": rate must be micro-units per 1M tokens, a decimal string with at most six "
             "fractional digits such as \"150000\" or \"2.5\" (no floating-point numbers)";
    }
    tier.rate = *parsed;
    const json::value fee = t.find("flat_fee");
    if (fee.valid() && !fee.is_null()) {
      if (!fee.is_int64() || fee.as_int64() < 0) {
        return at + ": flat_fee must be a non-negative integer (micro-units)";
      }
      tier.flat_fee_micros = fee.as_int64();
    }
    out.tiers.push_back(tier);
  }
  if (auto problem = validate(out); !problem.empty()) return where + ": " + problem;
  return {};
}

void append_schedule(std::string& out, const price_schedule& s) {
  json_array_writer tiers;
  for (const auto& t : s.tiers) {
    json_object_writer w;
    if (t.up_to) w.add("up_to", static_cast<std::int64_t>(*t.up_to));
    w.add("rate", format_rate(t.rate));
    if (t.flat_fee_micros != 0) w.add("flat_fee", static_cast<std::int64_t>(t.flat_fee_micros));
    tiers.add_raw(w.finish());
  }
  out += tiers.finish();
}

}  // namespace

std::string_view to_string(tier_mode m) {
  return m == tier_mode::graduated ? "graduated" : "volume";
}
std::string_view to_string(tier_scope s) {
  return s == tier_scope::model ? "model" : "all_models";
}

parse_result parse_model_prices(json::value models, tier_mode mode, tier_scope scope) {
  if (!models.valid() || !models.is_object() || models.size() == 0) {
    return std::string("models must be a non-empty object of model name -> prices");
  }
  if (models.size() > price_book_models_max) {
    return "models: at most " + std::to_string(price_book_models_max) + " models";
  }
  std::vector<model_prices> out;
  std::string error;
  models.for_each_member([&](std::string_view name, json::value v) {
    if (!error.empty()) return;
    const std::string where = "models[\"" + std::string(name) + "\"]";
    if (scope == tier_scope::all_models && name != "*") {
      error = where + ": a book with tier_scope all_models has one entry, \"*\", for every model";
      return;
    }
    if (scope == tier_scope::model && (name.empty() || name == "*" || name.size() > 256)) {
      error = where + ": must be a model name (1..256 bytes; \"*\" needs tier_scope all_models)";
      return;
    }
    if (!v.is_object()) {
      error = where + ": must be an object with input, output and optionally cached_input";
      return;
    }
    std::string unknown;
    v.for_each_member([&](std::string_view key, json::value) {
      if (key != "input" && key != "cached_input" && key != "output" && unknown.empty()) {
        unknown = std::string(key);
      }
    });
    if (!unknown.empty()) {
      error = where + ": unknown token class \"" + unknown + "\" (input, cached_input, output)";
      return;
    }
    model_prices p;
    p.model = std::string(name);
    error = parse_schedule(v.find("input"), mode, where + ".input", p.input);
    if (error.empty()) error = parse_schedule(v.find("output"), mode, where + ".output", p.output);
    if (error.empty()) {
      if (v.find("cached_input").valid()) {
        error =
            parse_schedule(v.find("cached_input"), mode, where + ".cached_input", p.cached_input);
      } else {
        p.cached_input = p.input;
      }
    }
    if (error.empty()) out.push_back(std::move(p));
  });
  if (!error.empty()) return error;
  std::sort(out.begin(), out.end(),
            [](const model_prices& a, const model_prices& b) { return a.model < b.model; });
  for (std::size_t i = 1; i < out.size(); ++i) {
    if (out[i].model == out[i - 1].model) return "models: \"" + out[i].model + "\" appears twice";
  }
  return out;
}

std::string model_prices_json(const std::vector<model_prices>& prices) {
  std::string out = "{";
  for (std::size_t i = 0; i < prices.size(); ++i) {
    if (i > 0) out += ',';
    append_json_string(out, prices[i].model);
    out += ":{\"input\":";
    append_schedule(out, prices[i].input);
    out += ",\"cached_input\":";
    append_schedule(out, prices[i].cached_input);
    out += ",\"output\":";
    append_schedule(out, prices[i].output);
    out += '}';
  }
  out += '}';
  return out;
}

tier_mode tier_mode_of(std::string_view name) {
  return name == "volume" ? tier_mode::volume : tier_mode::graduated;
}

tier_scope tier_scope_of(std::string_view name) {
  return name == "all_models" ? tier_scope::all_models : tier_scope::model;
}

basic_result<std::vector<model_prices>, std::string> parse_stored_prices(
    std::string_view prices_json, std::string_view mode, std::string_view scope) {
  const std::string text(prices_json);  // the document points into it
  const auto doc = json::document::parse(text);
  if (!doc) return std::string("the prices are not JSON");
  return parse_model_prices(doc->root(), tier_mode_of(mode), tier_scope_of(scope));
}

}  // namespace tollgate::billing
