// Price book contents: see price_book.hpp.
#include "billing/price_book.hpp"

#include <algorithm>
#include <utility>

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

// The optional classes and the class each defaults to.
struct optional_class {
  int index;
  int default_index;
};
constexpr optional_class optional_classes[] = {{tc_cached_input, tc_input},
                                               {tc_cache_write, tc_input},
                                               {tc_image_input, tc_input},
                                               {tc_audio_input, tc_input},
                                               {tc_audio_output, tc_output}};

price_schedule& schedule_at(class_prices& p, int token_class) {
  return const_cast<price_schedule&>(std::as_const(p).schedule(token_class));
}

bool is_class_key(std::string_view key) {
  for (const char* name : token_class_names) {
    if (key == name) return true;
  }
  return false;
}

// One set of prices (a model's base prices, or a band's): "" or an error message. `base_fee`:
// the request fee when the object does not give one.
std::string parse_class_prices(json::value v, tier_mode mode, const std::string& where,
                               std::int64_t base_fee, class_prices& out) {
  std::string error = parse_schedule(v.find("input"), mode, where + ".input", out.input);
  if (error.empty()) error = parse_schedule(v.find("output"), mode, where + ".output", out.output);
  for (const auto& c : optional_classes) {
    if (!error.empty()) break;
    const char* name = token_class_names[c.index];
    if (v.find(name).valid()) {
      error = parse_schedule(v.find(name), mode, where + "." + name, schedule_at(out, c.index));
    } else {
      schedule_at(out, c.index) = out.schedule(c.default_index);
    }
  }
  if (!error.empty()) return error;
  out.request_fee_micros = base_fee;
  if (const json::value fee = v.find("request_fee"); fee.valid() && !fee.is_null()) {
    if (!fee.is_int64() || fee.as_int64() < 0 || fee.as_int64() > max_request_fee_micros) {
      return where + ".request_fee: must be an integer of micro-units per request, 0.." +
             std::to_string(max_request_fee_micros);
    }
    out.request_fee_micros = fee.as_int64();
  }
  return {};
}

// A model's `context_bands`: "" or an error message.
std::string parse_bands(json::value bands, tier_mode mode, const std::string& where,
                        model_prices& out) {
  if (!bands.is_array() || bands.size() == 0 || bands.size() > context_bands_max) {
    return where + ": must be an array of 1.." + std::to_string(context_bands_max) +
           " bands {\"above\": <prompt tokens>, \"input\": [...], \"output\": [...]}";
  }
  for (std::uint32_t i = 0; i < bands.size(); ++i) {
    const std::string at = where + "[" + std::to_string(i) + "]";
    const json::value b = bands.at(i);
    if (!b.is_object()) return at + ": must be an object";
    std::string unknown;
    b.for_each_member([&](std::string_view key, json::value) {
      if (key != "above" && key != "request_fee" && !is_class_key(key) && unknown.empty()) {
        unknown = std::string(key);
      }
    });
    if (!unknown.empty()) return at + ": unknown field \"" + unknown + "\"";
    const json::value above = b.find("above");
    if (!above.valid() || !above.is_int64() || above.as_int64() <= 0 ||
        above.as_int64() >= max_units) {
      return at + ": above must be a positive integer (prompt tokens)";
    }
    context_band band;
    band.above_tokens = above.as_int64();
    if (!out.bands.empty() && band.above_tokens <= out.bands.back().above_tokens) {
      return at + ": above must be greater than the previous band's";
    }
    if (auto e = parse_class_prices(b, mode, at, out.request_fee_micros, band.prices); !e.empty()) {
      return e;
    }
    out.bands.push_back(std::move(band));
  }
  return {};
}

// The canonical JSON members of one set of prices (after '{'), the optional classes only where
// they differ from their default, the fee where it differs from `base_fee`.
void append_class_prices(std::string& out, const class_prices& p, std::int64_t base_fee) {
  out += "\"input\":";
  append_schedule(out, p.input);
  out += ",\"cached_input\":";
  append_schedule(out, p.cached_input);
  out += ",\"output\":";
  append_schedule(out, p.output);
  for (const auto& c : optional_classes) {
    if (c.index == tc_cached_input || p.schedule(c.index) == p.schedule(c.default_index)) {
      continue;
    }
    out += ",\"";
    out += token_class_names[c.index];
    out += "\":";
    append_schedule(out, p.schedule(c.index));
  }
  if (p.request_fee_micros != base_fee) {
    out += ",\"request_fee\":" + std::to_string(p.request_fee_micros);
  }
}

}  // namespace

const price_schedule& class_prices::schedule(int token_class) const {
  switch (token_class) {
    case tc_cached_input:
      return cached_input;
    case tc_cache_write:
      return cache_write;
    case tc_image_input:
      return image_input;
    case tc_audio_input:
      return audio_input;
    case tc_output:
      return output;
    case tc_audio_output:
      return audio_output;
    default:
      return input;
  }
}

const class_prices& model_prices::band_for(std::int64_t prompt_tokens,
                                           std::int64_t& band_above) const {
  band_above = 0;
  const class_prices* found = this;
  for (const auto& b : bands) {
    if (prompt_tokens > b.above_tokens) {
      found = &b.prices;
      band_above = b.above_tokens;
    }
  }
  return *found;
}

std::string banded_class(std::string_view token_class, std::int64_t band_above) {
  std::string out(token_class);
  if (band_above > 0) out += '>' + std::to_string(band_above);
  return out;
}

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
      error = where + ": must be an object with input, output and optionally other classes";
      return;
    }
    std::string unknown;
    v.for_each_member([&](std::string_view key, json::value) {
      if (key != "request_fee" && key != "context_bands" && !is_class_key(key) && unknown.empty()) {
        unknown = std::string(key);
      }
    });
    if (!unknown.empty()) {
      error = where + ": unknown field \"" + unknown +
              "\" (token classes input, cached_input, cache_write, image_input, audio_input, "
              "output, audio_output; request_fee; context_bands)";
      return;
    }
    model_prices p;
    p.model = std::string(name);
    error = parse_class_prices(v, mode, where, 0, p);
    if (error.empty() && v.find("context_bands").valid()) {
      error = parse_bands(v.find("context_bands"), mode, where + ".context_bands", p);
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
    const model_prices& p = prices[i];
    append_json_string(out, p.model);
    out += ":{";
    append_class_prices(out, p, 0);
    if (!p.bands.empty()) {
      out += ",\"context_bands\":[";
      for (std::size_t b = 0; b < p.bands.size(); ++b) {
        if (b > 0) out += ',';
        out += "{\"above\":" + std::to_string(p.bands[b].above_tokens) + ',';
        append_class_prices(out, p.bands[b].prices, p.request_fee_micros);
        out += '}';
      }
      out += ']';
    }
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
