// A period priced from ledger totals: see period_pricing.hpp.
#include "billing/period_pricing.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <iterator>
#include <limits>
#include <map>
#include <tuple>

#include "billing/price_book.hpp"
#include "core/json_dom.hpp"
#include "core/json_text.hpp"

namespace tollgate::billing {

namespace {

// The 1-based tier that the `units`-th unit falls in (units >= 1).
int tier_of(const price_schedule& s, std::int64_t units) {
  for (std::size_t i = 0; i < s.tiers.size(); ++i) {
    if (!s.tiers[i].up_to || units <= *s.tiers[i].up_to) return static_cast<int>(i) + 1;
  }
  return static_cast<int>(s.tiers.size());
}

// The key of an accumulator's line of tokens an allowance covers (sorted first).
constexpr int included_tier = -1;

struct accumulator {
  std::int64_t position = 0;             // tokens priced so far this period, allowance included
  std::int64_t covered = 0;              // the allowance, which the tiers start after
  const price_schedule* last = nullptr;  // the schedule that priced the latest tokens
};

void add_versions(std::vector<int>& versions, int v) {
  if (std::find(versions.begin(), versions.end(), v) == versions.end()) versions.push_back(v);
}

}  // namespace

std::int64_t period_usage::totals::tokens_of(int token_class) const {
  return const_cast<totals*>(this)->tokens_of(token_class);
}

std::int64_t& period_usage::totals::tokens_of(int token_class) {
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
    case token_class_count:  // the request count, priced after the classes
      return requests;
    default:
      return input;
  }
}

period_pricing price_period(const period_usage& in) {
  const tier_mode mode = tier_mode_of(in.tier_mode);
  const tier_scope scope = tier_scope_of(in.tier_scope);
  std::map<int, std::vector<model_prices>> prices;  // each version's prices, parsed once
  for (const auto& v : in.versions) {
    auto doc = json::document::parse(v.prices_json);
    if (!doc) continue;
    auto parsed = parse_model_prices(doc->root(), mode, scope);
    if (parsed) prices[v.number] = std::move(*parsed);
  }
  // Model (or "*"), context band, class (token_class_count: requests), batch flag: the
  // order of the lines.
  using key = std::tuple<std::string, std::int64_t, int, bool>;
  std::map<key, accumulator> accumulators;
  std::map<std::tuple<std::string, std::int64_t, int, bool, int>, priced_line> lines;  // + tier
  std::map<std::pair<std::string, bool>, unpriced_usage> unpriced;
  // Rows come in version order, so each accumulator runs through the versions in time order.
  for (const auto& row : in.rows) {
    const model_prices* p = nullptr;
    if (const auto it = prices.find(row.version); it != prices.end()) {
      const std::string wanted = scope == tier_scope::all_models ? std::string("*") : row.model;
      for (const auto& m : it->second) {
        if (m.model == wanted) p = &m;
      }
    }
    if (p == nullptr) {
      auto& u = unpriced[{row.model, row.batch}];
      u.model = row.model;
      u.batch = row.batch;
      for (int c = 0; c < token_class_count; ++c) u.tokens += row.tokens_of(c);
      u.reason = row.version == 0 ? "before the price book's first version"
                                  : "the model is not in the price book";
      continue;
    }
    const int discount = row.batch ? in.batch_discount_bp : 0;
    // Every prompt of the row is above prompt_above and within the book's next threshold, so
    // the band of the smallest possible prompt is the band of them all.
    std::int64_t band = 0;
    const class_prices& band_prices = p->band_for(row.prompt_above + 1, band);
    for (int c = 0; c < token_class_count; ++c) {
      const std::int64_t amount = row.tokens_of(c);
      if (amount <= 0) continue;
      const price_schedule& s = band_prices.schedule(c);
      auto& acc = accumulators[{p->model, band, c, row.batch}];
      acc.last = &s;
      // An allowance covers the first tokens of interactive usage in the base prices (batch
      // usage and context bands have none); the tiers start after it.
      const std::int64_t covered =
          row.batch || band != 0 ? 0 : in.terms.allowance_of(p->model, token_class_names[c]);
      const std::int64_t end = std::min(acc.position + amount, max_units);
      if (acc.position < covered) {
        auto& l = lines[{p->model, band, c, row.batch, included_tier}];
        l.tokens += std::min(end, covered) - acc.position;
        add_versions(l.versions, row.version);
      }
      std::int64_t from = std::max<std::int64_t>(0, acc.position - covered);
      const std::int64_t to = std::max<std::int64_t>(0, end - covered);
      acc.position = end;
      acc.covered = covered;
      // Graduated: one piece per tier crossed, each floor(F(end)) - floor(F(start)), so the
      // pieces add up to the segment's charge. Volume: one piece, given to the reached tier
      // when the period is complete (below). Not clamped at zero as a rated event's
      // provisional charge is: this is what the period comes to, volume true-up included.
      while (from < to) {
        std::int64_t piece_end = to;
        int tier = 0;
        if (mode == tier_mode::graduated) {
          tier = tier_of(s, from + 1);
          const auto& bound = s.tiers[static_cast<std::size_t>(tier - 1)].up_to;
          if (bound && *bound < to) piece_end = *bound;
        }
        auto& l = lines[{p->model, band, c, row.batch, tier}];
        l.tokens += piece_end - from;
        l.amount_micros += price_micros(s, piece_end, discount) - price_micros(s, from, discount);
        add_versions(l.versions, row.version);
        from = piece_end;
      }
    }
    // Request fees: one line per band, on a count that runs through the period like a class.
    if (row.requests > 0 && band_prices.request_fee_micros > 0) {
      auto& acc = accumulators[{p->model, band, token_class_count, row.batch}];
      const std::int64_t from = acc.position;
      acc.position = std::min(acc.position + row.requests, max_units);
      auto& l = lines[{p->model, band, token_class_count, row.batch, 1}];
      l.tokens += acc.position - from;
      l.amount_micros += fees_micros(band_prices.request_fee_micros, acc.position, discount) -
                         fees_micros(band_prices.request_fee_micros, from, discount);
      add_versions(l.versions, row.version);
    }
  }
  period_pricing out;
  for (auto& [k, l] : lines) {
    const auto& [model, band, c, batch, tier] = k;
    l.model = model;
    l.token_class =
        banded_class(c == token_class_count ? requests_class : token_class_names[c], band);
    l.batch = batch;
    l.tier = tier;
    if (tier == included_tier) {
      l.tier = 0;
      l.included = true;
    } else if (tier == 0) {  // volume: the tier the period's volume reached
      const auto& acc = accumulators[{model, band, c, batch}];
      const std::int64_t priced = acc.position - acc.covered;
      l.tier = priced > 0 ? tier_of(*acc.last, priced) : 1;
    }
    out.total_micros += l.amount_micros;
    out.lines.push_back(std::move(l));
  }
  for (auto& [k, u] : unpriced) out.unpriced.push_back(std::move(u));
  // The plan's money allowance covers the period's first usage charges (rating's
  // included_usage accumulator): one line taking them off.
  const std::int64_t included = std::min(in.terms.included_usage_micros, out.total_micros);
  if (included > 0) {
    priced_line l;
    l.model = "*";
    l.token_class = std::string(included_usage_class);
    l.tier = 0;
    l.included = true;
    l.amount_micros = -included;
    out.total_micros -= included;
    out.lines.push_back(std::move(l));
  }
  return out;
}

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

// Integer calendar arithmetic (no gmtime_r, no printf): every priced request asks for its
// period, some twice.
std::string period_of(std::int64_t unix_s) {
  using namespace std::chrono;
  const std::chrono::year_month_day day{floor<days>(sys_seconds{seconds{unix_s}})};
  const int year = static_cast<int>(day.year());
  const unsigned month = static_cast<unsigned>(day.month());
  if (year < 0 || year > 9999) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%04d-%02u", year, month);
    return buf;
  }
  std::string out(7, '-');
  out[0] = static_cast<char>('0' + year / 1000);
  out[1] = static_cast<char>('0' + year / 100 % 10);
  out[2] = static_cast<char>('0' + year / 10 % 10);
  out[3] = static_cast<char>('0' + year % 10);
  out[5] = static_cast<char>('0' + month / 10);
  out[6] = static_cast<char>('0' + month % 10);
  return out;
}

std::string priced_lines_json(const std::vector<priced_line>& lines,
                              const std::vector<std::int64_t>* minor) {
  json_array_writer out;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    const auto& l = lines[i];
    json_object_writer w;
    w.add("model", l.model)
        .add("token_class", l.token_class)
        .add("batch", l.batch)
        .add("tier", l.tier)
        .add("tokens", l.tokens)
        .add("amount_micros", l.amount_micros);
    if (minor != nullptr) w.add("amount_minor", (*minor)[i]);
    if (l.included) w.add("included", true);
    json_array_writer versions;
    for (const auto v : l.versions) versions.add(static_cast<std::int64_t>(v));
    w.add_raw("versions", versions.finish());
    out.add_raw(w.finish());
  }
  return out.finish();
}

std::string adjustments_json(const std::vector<late_adjustment>& adjustments,
                             const std::vector<std::int64_t>& minor, std::size_t first) {
  json_array_writer out;
  for (std::size_t i = 0; i < adjustments.size(); ++i) {
    const auto& a = adjustments[i];
    json_object_writer w;
    w.add("period", a.period)
        .add("model", a.model)
        .add("token_class", a.token_class)
        .add("batch", a.batch)
        .add("tokens", a.tokens)
        .add("amount_micros", a.amount_micros)
        .add("amount_minor", minor[first + i]);
    out.add_raw(w.finish());
  }
  return out.finish();
}

std::string unpriced_json(const std::vector<unpriced_usage>& unpriced) {
  json_array_writer out;
  for (const auto& u : unpriced) {
    json_object_writer w;
    w.add("model", u.model).add("batch", u.batch).add("tokens", u.tokens).add("reason", u.reason);
    out.add_raw(w.finish());
  }
  return out.finish();
}

period_usage forecast_usage(const period_usage& in, period_progress progress) {
  period_usage out = in;
  if (progress.elapsed_s <= 0 || progress.elapsed_s >= progress.period_s) return out;
  const int now_version = in.versions.empty() ? 0 : in.versions.back().number;
  // Per model, batch flag and prompt size: the totals so far over every version, and the row of
  // the version in force now (made if the period has none yet).
  using key = std::tuple<std::string, bool, std::int64_t>;
  std::map<key, period_usage::totals> sums;
  for (const auto& r : in.rows) {
    auto& s = sums[{r.model, r.batch, r.prompt_above}];
    for (int c = 0; c <= token_class_count; ++c) s.tokens_of(c) += r.tokens_of(c);
  }
  const auto project = [&](std::int64_t so_far) {
    const __int128 total = static_cast<__int128>(so_far) * progress.period_s / progress.elapsed_s;
    const __int128 cap = std::numeric_limits<std::int64_t>::max();
    return static_cast<std::int64_t>(std::min(total, cap)) - so_far;  // still to come
  };
  for (const auto& entry : sums) {
    // Named, not bound: clang 14 (the fuzz build) cannot capture structured bindings.
    const std::string& model = std::get<0>(entry.first);
    const bool batch = std::get<1>(entry.first);
    const std::int64_t prompt_above = std::get<2>(entry.first);
    const period_usage::totals& s = entry.second;
    auto it = std::find_if(out.rows.begin(), out.rows.end(), [&](const period_usage::totals& r) {
      return r.version == now_version && r.model == model && r.batch == batch &&
             r.prompt_above == prompt_above;
    });
    if (it == out.rows.end()) {
      period_usage::totals row;
      row.version = now_version;
      row.model = model;
      row.batch = batch;
      row.prompt_above = prompt_above;
      out.rows.push_back(row);
      it = std::prev(out.rows.end());
    }
    // Each class and the request count (index token_class_count).
    for (int c = 0; c <= token_class_count; ++c) it->tokens_of(c) += project(s.tokens_of(c));
  }
  return out;
}

std::string cost_preview_json(const period_usage& in, std::optional<period_progress> progress,
                              const std::vector<fee_line>& bundles) {
  const period_pricing priced = price_period(in);
  json_array_writer bundle_lines;
  std::int64_t bundle_micros = 0;
  for (const auto& b : bundles) {
    // What paid for tokens of the period's own events: bundles and rolled-over allowances (not
    // the allowance this period rolls over, not late draws of earlier periods).
    if (!b.period.empty() || b.kind == "allowance_rollover_out") continue;
    json_object_writer l;
    l.add("kind", b.kind)
        .add("bundle_id", b.bundle_id)
        .add("model", b.model)
        .add("token_class", b.token_class)
        .add("tokens", b.quantity)
        .add("price_per_million_micros", b.unit_amount_micros)
        .add("amount_micros", b.amount_micros);
    bundle_lines.add_raw(l.finish());
    bundle_micros += b.amount_micros;
  }
  json_object_writer w;
  w.add("object", "cost_preview")
      .add("tenant_id", in.tenant_id)
      .add("period", in.period)
      .add("currency", in.currency)
      .add("price_book_id", in.book_id)
      .add("batch_discount_bp", in.batch_discount_bp)
      .add_raw("lines", priced_lines_json(priced.lines))
      .add_raw("unpriced", unpriced_json(priced.unpriced))
      .add("total_micros", priced.total_micros)
      .add_raw("token_bundles", bundle_lines.finish())
      .add("token_bundles_micros", bundle_micros);
  if (progress && progress->elapsed_s > 0 && progress->elapsed_s < progress->period_s) {
    const period_pricing projected = price_period(forecast_usage(in, *progress));
    json_object_writer f;
    f.add("method", "run_rate")
        .add("elapsed_s", progress->elapsed_s)
        .add("period_s", progress->period_s)
        .add("total_micros", projected.total_micros)
        .add_raw("lines", priced_lines_json(projected.lines));
    w.add_raw("forecast", f.finish());
  } else {
    w.add_null("forecast");
  }
  return w.finish();
}

std::vector<late_adjustment> late_adjustments(
    const std::string& period, const period_pricing& now, const std::string& invoiced_lines_json,
    const std::vector<std::string>& earlier_adjustments_json) {
  using key = std::tuple<std::string, std::string, bool>;        // model, class, batch
  std::map<key, std::pair<std::int64_t, std::int64_t>> charged;  // tokens, micro-units
  auto add_all = [&](const std::string& text, bool only_this_period) {
    const auto doc = json::document::parse(text);
    if (!doc || !doc->root().is_array()) return;
    doc->root().for_each_element([&](json::value l) {
      if (!l.is_object()) return;
      const auto p = l.find("period");
      if (only_this_period && (!p.valid() || !p.is_string() || p.as_string() != period)) return;
      const auto model = l.find("model");
      const auto cls = l.find("token_class");
      const auto batch = l.find("batch");
      const auto tokens = l.find("tokens");
      const auto amount = l.find("amount_micros");
      if (!model.valid() || !cls.valid() || !batch.valid() || !tokens.valid() || !amount.valid() ||
          !tokens.is_int64() || !amount.is_int64()) {
        return;
      }
      auto& c =
          charged[{std::string(model.as_string()), std::string(cls.as_string()), batch.as_bool()}];
      c.first += tokens.as_int64();
      c.second += amount.as_int64();
    });
  };
  add_all(invoiced_lines_json, false);
  for (const auto& a : earlier_adjustments_json) add_all(a, true);
  std::map<key, std::pair<std::int64_t, std::int64_t>> current;
  for (const auto& l : now.lines) {
    auto& c = current[{l.model, l.token_class, l.batch}];
    c.first += l.tokens;
    c.second += l.amount_micros;
  }
  for (const auto& [k, c] : charged) current.try_emplace(k, 0, 0);
  std::vector<late_adjustment> out;
  for (const auto& [k, c] : current) {
    const auto it = charged.find(k);
    const std::int64_t tokens = c.first - (it == charged.end() ? 0 : it->second.first);
    const std::int64_t amount = c.second - (it == charged.end() ? 0 : it->second.second);
    if (tokens == 0 && amount == 0) continue;
    out.push_back({period, std::get<0>(k), std::get<1>(k), std::get<2>(k), tokens, amount});
  }
  return out;
}

int currency_minor_digits(std::string_view currency) {
  static constexpr std::string_view zero[] = {"BIF", "CLP", "DJF", "GNF", "ISK", "JPY",
                                              "KMF", "KRW", "PYG", "RWF", "UGX", "UYI",
                                              "VND", "VUV", "XAF", "XOF", "XPF"};
  static constexpr std::string_view three[] = {"BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"};
  for (const auto c : zero) {
    if (currency == c) return 0;
  }
  for (const auto c : three) {
    if (currency == c) return 3;
  }
  return 2;
}

minor_amounts to_minor_units(const std::vector<std::int64_t>& micros, int minor_digits) {
  std::int64_t unit = 1;
  for (int i = minor_digits; i < 6; ++i) unit *= 10;
  auto floor_div = [unit](std::int64_t v) { return v >= 0 ? v / unit : -((-v + unit - 1) / unit); };
  minor_amounts out;
  __int128 sum = 0;
  std::int64_t floors = 0;
  std::vector<std::pair<std::int64_t, std::size_t>> remainders;  // (remainder, index)
  for (std::size_t i = 0; i < micros.size(); ++i) {
    sum += micros[i];
    const std::int64_t f = floor_div(micros[i]);
    out.amounts.push_back(f);
    floors += f;
    remainders.emplace_back(micros[i] - f * unit, i);
  }
  // The total, rounded half up (toward +infinity on a half).
  const __int128 doubled = sum * 2 + unit;
  const __int128 u2 = static_cast<__int128>(unit) * 2;
  const __int128 rounded = doubled >= 0 ? doubled / u2 : -((-doubled + u2 - 1) / u2);
  out.total = static_cast<std::int64_t>(rounded);
  std::stable_sort(remainders.begin(), remainders.end(),
                   [](const auto& a, const auto& b) { return a.first > b.first; });
  std::int64_t missing = out.total - floors;  // 0 <= missing <= number of amounts
  for (std::size_t k = 0; k < remainders.size() && missing > 0; ++k, --missing) {
    out.amounts[remainders[k].second] += 1;
  }
  return out;
}

}  // namespace tollgate::billing
