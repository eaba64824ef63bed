// Per-event rating: see rating.hpp.
#include "billing/rating.hpp"

#include <algorithm>
#include <charconv>
#include <chrono>

#include "billing/period_pricing.hpp"

namespace tollgate::billing {

namespace {

// Column positions in the ledger's COPY row (ledger_writer's usage_event_columns).
constexpr std::size_t col_tenant = 0, col_occurred_at = 1, col_request = 2, col_project = 3,
                      col_model = 6, col_batch = 9, col_status = 10, col_prompt = 11,
                      col_cached = 12, col_completion = 13, col_cache_write = 31,
                      col_image_prompt = 32, col_audio_prompt = 33, col_audio_completion = 34,
                      columns = 35;

// The inverse of pg::append_copy_text for the escapes COPY text may hold.
std::optional<std::string> copy_unescape(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  // Runs without a backslash are copied whole (most values have none).
  std::size_t from = 0;
  for (std::size_t i = v.find('\\'); i != std::string_view::npos; i = v.find('\\', from)) {
    out.append(v.substr(from, i - from));
    if (i + 1 == v.size()) return std::nullopt;
    switch (v[i + 1]) {
      case '\\':
        out.push_back('\\');
        break;
      case 't':
        out.push_back('\t');
        break;
      case 'n':
        out.push_back('\n');
        break;
      case 'r':
        out.push_back('\r');
        break;
      default:
        return std::nullopt;
    }
    from = i + 2;
  }
  out.append(v.substr(from));
  return out;
}

std::optional<std::int64_t> parse_count(std::string_view v) {
  std::int64_t n = 0;
  const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (ec != std::errc{} || end != v.data() + v.size() || n < 0) return std::nullopt;
  return n;
}

// "2026-11-22 21:55:19.123+00" (what the ledger writes) to unix seconds.
std::optional<std::int64_t> parse_utc_timestamp(std::string_view v) {
  if (v.size() < 19 || v[4] != '-' || v[7] != '-' || v[10] != ' ' || v[13] != ':' || v[16] != ':') {
    return std::nullopt;
  }
  auto num = [&](std::size_t at, std::size_t len) -> int {
    int n = 0;
    for (std::size_t i = at; i < at + len; ++i) {
      if (v[i] < '0' || v[i] > '9') return -1;
      n = n * 10 + (v[i] - '0');
    }
    return n;
  };
  const int parts[] = {num(0, 4), num(5, 2), num(8, 2), num(11, 2), num(14, 2), num(17, 2)};
  for (int p : parts) {
    if (p < 0) return std::nullopt;
  }
  if (parts[1] < 1 || parts[1] > 12 || parts[2] < 1 || parts[2] > 31 || parts[3] > 23 ||
      parts[4] > 59 || parts[5] > 60) {
    return std::nullopt;
  }
  // Integer calendar arithmetic, as timegm counts (a day past the month's end runs into the
  // next month, second 60 into the next minute) without its cost on every rated event.
  using namespace std::chrono;
  const sys_days first{year{parts[0]} / month{static_cast<unsigned>(parts[1])} / day{1}};
  const std::int64_t days_since_epoch = (first + days{parts[2] - 1}).time_since_epoch().count();
  return days_since_epoch * 86400 + parts[3] * 3600 + parts[4] * 60 + parts[5];
}

}  // namespace

std::optional<rating_event> parse_rating_event(std::string_view line) {
  std::string_view fields[columns];
  std::size_t n = 0;
  for (std::size_t start = 0;;) {
    const std::size_t tab = line.find('\t', start);
    if (n == columns) return std::nullopt;  // too many fields
    fields[n++] = line.substr(start, tab == std::string_view::npos ? tab : tab - start);
    if (tab == std::string_view::npos) break;
    start = tab + 1;
  }
  if (n != columns) return std::nullopt;
  rating_event e;
  auto tenant = copy_unescape(fields[col_tenant]);
  auto request = copy_unescape(fields[col_request]);
  auto model = copy_unescape(fields[col_model]);
  const auto at = parse_utc_timestamp(fields[col_occurred_at]);
  const auto prompt = parse_count(fields[col_prompt]);
  const auto cached = parse_count(fields[col_cached]);
  const auto completion = parse_count(fields[col_completion]);
  const auto cache_write = parse_count(fields[col_cache_write]);
  const auto image = parse_count(fields[col_image_prompt]);
  const auto audio = parse_count(fields[col_audio_prompt]);
  const auto audio_completion = parse_count(fields[col_audio_completion]);
  const auto status = parse_count(fields[col_status]);
  if (!tenant || tenant->empty() || !request || request->empty() || !model || !at || !prompt ||
      !cached || !completion || !cache_write || !image || !audio || !audio_completion || !status) {
    return std::nullopt;
  }
  if (fields[col_batch] != "t" && fields[col_batch] != "f") return std::nullopt;
  e.tenant_id = std::move(*tenant);
  e.request_id = std::move(*request);
  e.model = std::move(*model);
  e.occurred_at_s = *at;
  if (fields[col_project] != "\\N") {
    auto project = copy_unescape(fields[col_project]);
    if (!project) return std::nullopt;
    e.project_id = std::move(*project);
  }
  e.batch = fields[col_batch] == "t";
  e.answered = *status >= 200 && *status < 300;
  e.set_tokens({*prompt, *cached, *cache_write, *image, *audio, *completion, *audio_completion});
  return e;
}

void rating_event::set_tokens(const token_counts& n) {
  prompt_tokens = n.prompt;
  std::int64_t rest = n.prompt;
  const auto take = [&rest](std::int64_t part) {
    const std::int64_t taken = std::clamp<std::int64_t>(part, 0, rest);
    rest -= taken;
    return taken;
  };
  cached_input = take(n.cached);
  cache_write = take(n.cache_write);
  image_input = take(n.image_prompt);
  audio_input = take(n.audio_prompt);
  input = rest;
  rest = n.completion;
  audio_output = take(n.audio_completion);
  output = rest;
}

void rating_event::set_tokens(std::int64_t prompt, std::int64_t cached, std::int64_t completion) {
  set_tokens(token_counts{prompt, cached, 0, 0, 0, completion, 0});
}

std::int64_t* rating_event::tokens_field(int token_class) {
  switch (token_class) {
    case tc_input:
      return &input;
    case tc_cached_input:
      return &cached_input;
    case tc_cache_write:
      return &cache_write;
    case tc_image_input:
      return &image_input;
    case tc_audio_input:
      return &audio_input;
    case tc_output:
      return &output;
    case tc_audio_output:
      return &audio_output;
    default:
      return nullptr;
  }
}

std::int64_t rating_event::tokens_of(int token_class) const {
  const std::int64_t* field = const_cast<rating_event*>(this)->tokens_field(token_class);
  return field != nullptr ? *field : 0;
}

rating_event rating_event::from(const metering::usage_record& rec) {
  rating_event e;
  e.tenant_id = rec.tenant_id;
  e.request_id = rec.request_id;
  e.occurred_at_s = rec.occurred_at_ms / 1000;
  e.model = rec.model;
  e.batch = rec.batch;
  e.answered = rec.status >= 200 && rec.status < 300;
  e.set_tokens({rec.prompt_tokens, rec.cached_tokens, rec.cache_write_tokens,
                rec.image_prompt_tokens, rec.audio_prompt_tokens, rec.completion_tokens,
                rec.audio_completion_tokens});
  return e;
}

const rating_plan* plan_for_period(const plan_history& plans, std::string_view period) {
  const rating_plan* found = plans.empty() ? nullptr : &plans.front();
  for (const auto& p : plans) {
    if (p.from_period <= period) found = &p;
  }
  return found;
}

std::optional<rating_target> rating_target_of(const rating_plan& plan, const rating_event& e) {
  const rating_plan::version* in_force = nullptr;
  for (const auto& v : plan.versions) {
    if (v.effective_at_s <= e.occurred_at_s) in_force = &v;
  }
  if (in_force == nullptr || in_force->prices == nullptr) return std::nullopt;
  const std::string wanted = plan.scope == tier_scope::all_models ? std::string("*") : e.model;
  const auto& prices = *in_force->prices;
  const auto it =
      std::lower_bound(prices.begin(), prices.end(), wanted,
                       [](const model_prices& p, const std::string& m) { return p.model < m; });
  if (it == prices.end() || it->model != wanted) return std::nullopt;
  rating_target t;
  t.version = in_force->number;
  t.prices = &*it;
  t.band = &it->band_for(e.prompt_tokens, t.band_above);
  const std::string period = period_of(e.occurred_at_s);
  t.keys.reserve(token_class_count + 2);  // the classes, the request fee, the money allowance
  for (int c = 0; c < token_class_count; ++c) {
    if (e.tokens_of(c) > 0) {
      t.keys.emplace_back(e.tenant_id, period, wanted,
                          banded_class(token_class_names[c], t.band_above), e.batch);
    }
  }
  if (e.answered && t.band->request_fee_micros > 0) {
    t.fee_key = static_cast<int>(t.keys.size());
    t.keys.emplace_back(e.tenant_id, period, wanted, banded_class(requests_class, t.band_above),
                        e.batch);
  }
  if (plan.terms.included_usage_micros > 0) {
    t.included_key = static_cast<int>(t.keys.size());
    t.keys.emplace_back(e.tenant_id, period, "*", std::string(included_usage_class), false);
  }
  return t;
}

std::int64_t allowance_in_period(const rating_plan& plan, const model_prices& prices,
                                 int token_class, const accumulator_state* acc) {
  const std::int64_t allowance =
      plan.terms.allowance_of(prices.model, token_class_names[token_class]);
  const std::int64_t rolled_over = acc != nullptr ? acc->rolled_over.value_or(0) : 0;
  return std::max<std::int64_t>(0, allowance - rolled_over);
}

std::optional<rated_event> rate_event(const rating_plan& plan, const rating_event& e,
                                      accumulator_map& accumulators) {
  const auto target = rating_target_of(plan, e);
  if (!target) return std::nullopt;
  const int discount = e.batch ? plan.batch_discount_bp : 0;
  rated_event out;
  out.version = target->version;
  out.band_above = target->band_above;
  std::size_t next_key = 0;
  for (int c = 0; c < token_class_count; ++c) {
    const std::int64_t tokens = e.tokens_of(c);
    if (tokens <= 0) continue;
    accumulator_state& acc = accumulators[target->keys[next_key++]];
    // A period holds at most max_units of a class; past that, tokens are not charged (the
    // period pricing caps the same way).
    const std::int64_t q = std::min(tokens, max_units - acc.position);
    if (q <= 0) continue;
    // An allowance covers the first tokens of the period's interactive usage in the base
    // prices (batch usage and context bands have accumulators of their own and no allowance):
    // the tiers start after it.
    const bool allowed = !e.batch && target->band_above == 0;
    const std::int64_t covered = allowed ? allowance_in_period(plan, *target->prices, c, &acc) : 0;
    const std::int64_t from = std::max<std::int64_t>(0, acc.position - covered);
    const std::int64_t to = std::max<std::int64_t>(0, acc.position + q - covered);
    const std::int64_t charge =
        to > from ? charge_micros(target->band->schedule(c), from, to - from, discount) : 0;
    acc.position += q;
    acc.charged_micros += charge;
    out.cost_micros += charge;
  }
  if (target->fee_key >= 0) {  // the request fee: one more on its accumulator
    accumulator_state& acc = accumulators[target->keys[static_cast<std::size_t>(target->fee_key)]];
    if (acc.position < max_units) {
      const std::int64_t fee = target->band->request_fee_micros;
      const std::int64_t charge =
          fees_micros(fee, acc.position + 1, discount) - fees_micros(fee, acc.position, discount);
      acc.position += 1;
      acc.charged_micros += charge;
      out.cost_micros += charge;
      out.request_fee_micros = charge;
    }
  }
  if (target->included_key >= 0) {
    // The money allowance covers the period's first usage charges: with C charged before this
    // event and c now, it pays max(0, C + c - M) - max(0, C - M), which telescopes to the
    // period's max(0, total - M).
    const auto& key = target->keys[static_cast<std::size_t>(target->included_key)];
    accumulator_state& acc = accumulators[key];
    const std::int64_t m = plan.terms.included_usage_micros;
    const std::int64_t before = acc.position;
    const std::int64_t after = before > max_money_position - out.cost_micros
                                   ? max_money_position
                                   : before + out.cost_micros;
    const std::int64_t due =
        std::max<std::int64_t>(0, after - m) - std::max<std::int64_t>(0, before - m);
    acc.position = after;
    acc.charged_micros += due;
    out.included_micros = out.cost_micros - due;
    out.cost_micros = due;
  }
  return out;
}

}  // namespace tollgate::billing
