// The budget policy: see policy.hpp.
#include "metering/budgets/policy.hpp"

#include <algorithm>
#include <charconv>
#include <cstdint>

#include "core/assert.hpp"
#include "core/json_text.hpp"

namespace tollgate::metering {

bool budget_applies(const budget_info& b, std::string_view project_id, std::string_view key_id,
                    const attribution& attributed) {
  switch (b.scope) {
    case budget_scope::tenant:
      return true;
    case budget_scope::project:
      return b.scope_id == project_id;
    case budget_scope::key:
      return b.scope_id == key_id;
    case budget_scope::end_user:
    case budget_scope::tag:
    case budget_scope::session:
      return subject_of(b, attributed).has_value();
  }
  return false;
}

bool budget_counts_model(const budget_info& b, std::string_view model) {
  return !b.models || std::find(b.models->begin(), b.models->end(), model) != b.models->end();
}

std::vector<const budget_info*> applying_budgets(const std::vector<budget_info>& all,
                                                 std::string_view project_id,
                                                 std::string_view key_id, std::string_view model,
                                                 const attribution& attributed) {
  std::vector<const budget_info*> applying;
  for (const auto& b : all) {
    if (budget_applies(b, project_id, key_id, attributed) && budget_counts_model(b, model)) {
      applying.push_back(&b);
    }
  }
  return applying;
}

std::string counter_id_for(const budget_info& b, const attribution& attributed) {
  if (!counts_each(b.scope, b.scope_id)) return b.id;
  const auto value = subject_of(b, attributed);
  TOLLGATE_ASSERT(value.has_value());  // only for a budget that applies
  return subject_counter_id(b.id, *value);
}

std::vector<const budget_info*> listed_budgets(const std::vector<budget_info>& all,
                                               std::string_view project_id,
                                               std::string_view key_id,
                                               const attribution& attributed) {
  std::vector<const budget_info*> listed;
  for (const auto& b : all) {
    if (b.metric != budget_metric::credit && budget_applies(b, project_id, key_id, attributed)) {
      listed.push_back(&b);
    }
  }
  return listed;
}

limit_rule rule_of(const budget_info& b, std::int64_t now_ms) {
  limit_rule rule;
  rule.id = b.id;
  rule.window = b.window;
  rule.limit = b.limit;
  rule.hard = b.hard;
  rule.alert_percents = b.alert_thresholds;
  if (b.zone_end_ms > 0 && now_ms < b.zone_end_ms) {
    rule.fixed_start_ms = b.zone_start_ms;
    rule.fixed_end_ms = b.zone_end_ms;
  } else if (b.zone_end_ms > 0 && now_ms < b.zone_next_end_ms) {
    rule.fixed_start_ms = b.zone_end_ms;
    rule.fixed_end_ms = b.zone_next_end_ms;
  }
  return rule;
}

std::optional<credit_rate> plan_rate_of(const std::vector<credit_rate>& plan_rates,
                                        std::string_view model) {
  std::optional<credit_rate> rate;
  for (const auto& r : plan_rates) {
    if (r.model == model || r.model == "*") rate = r;
  }
  return rate;
}

spend_pricing spend_pricing_of(const budget_info& b, std::string_view model,
                               std::uint64_t input_price, std::uint64_t output_price) {
  spend_pricing p;
  p.input_price = input_price;
  p.output_price = output_price;
  if (!b.plan_rates.empty()) {
    // A model the book does not price costs 0 under it.
    p.plan_priced = true;
    p.plan_rate = plan_rate_of(b.plan_rates, model).value_or(credit_rate{});
  }
  return p;
}

spend_pricing spend_pricing_for(std::span<const budget_info* const> applying,
                                std::string_view model, std::uint64_t input_price,
                                std::uint64_t output_price) {
  for (const auto* b : applying) {
    if (!b->plan_rates.empty()) return spend_pricing_of(*b, model, input_price, output_price);
  }
  spend_pricing p;
  p.input_price = input_price;
  p.output_price = output_price;
  return p;
}

std::int64_t spend_cost_micros(const spend_pricing& pricing, std::int64_t prompt_tokens,
                               std::int64_t completion_tokens) {
  return pricing.plan_priced
             ? worst_case_cost_micros(pricing.plan_rate, prompt_tokens, completion_tokens)
             : estimate_spend_micros(prompt_tokens, completion_tokens, pricing.input_price,
                                     pricing.output_price);
}

std::int64_t spend_charge_micros(const spend_pricing& pricing, std::int64_t prompt_tokens,
                                 std::int64_t completion_tokens) {
  return std::min(spend_cost_micros(pricing, prompt_tokens, completion_tokens),
                  reservation_amount_max);
}

request_amounts worst_case_amounts(const worst_case_tokens& worst, const spend_pricing& pricing) {
  request_amounts a;
  a.tokens = worst.total();
  a.requests = 1;
  a.spend_micros = spend_charge_micros(pricing, worst.prompt_tokens, worst.completion_tokens);
  return a;
}

request_amounts actual_amounts(std::int64_t prompt_tokens, std::int64_t completion_tokens,
                               const spend_pricing& pricing) {
  request_amounts a;
  a.tokens = saturating_add(prompt_tokens, completion_tokens);
  a.requests = 1;
  a.spend_micros = spend_charge_micros(pricing, prompt_tokens, completion_tokens);
  return a;
}

std::int64_t charge_of(budget_metric metric, const request_amounts& amounts) {
  switch (metric) {
    case budget_metric::tokens:
      return amounts.tokens;
    case budget_metric::requests:
      return amounts.requests;
    case budget_metric::spend:
    case budget_metric::credit:
      return amounts.spend_micros;
  }
  return amounts.requests;
}

void describe_settled_spend(std::span<const budget_metric> metrics,
                            std::span<const std::string> counter_keys, const spend_pricing& pricing,
                            usage_record& rec) {
  bool any = false;
  for (std::size_t i = 0; i < metrics.size() && i < counter_keys.size(); ++i) {
    if (metrics[i] == budget_metric::spend) {
      rec.spend_counters.push_back(counter_keys[i]);
      any = true;
    } else if (metrics[i] == budget_metric::credit) {
      rec.credit_counters.push_back(counter_keys[i]);
      any = true;
    }
  }
  // Only a plan-priced settlement differs from what reconcile counts: without a plan both
  // use the estimate prices.
  if (any && pricing.plan_priced) {
    rec.settled_spend_micros =
        spend_charge_micros(pricing, rec.prompt_tokens, rec.completion_tokens);
  } else {
    rec.spend_counters.clear();
    rec.credit_counters.clear();
  }
}

bool refuses_batches(const budget_info& b) {
  // Sliding windows pace a batch (its lines wait for the window); they do not refuse it.
  return b.hard && !b.window.sliding();
}

std::int64_t batch_charge(const budget_info& b, std::span<const batch_share> shares) {
  std::int64_t needed = 0;
  for (const auto& d : shares) {
    if (!budget_counts_model(b, d.model)) continue;
    const spend_pricing pricing = spend_pricing_of(b, d.model, d.input_price, d.output_price);
    request_amounts a;
    a.tokens = saturating_add(d.prompt_tokens, d.max_tokens);
    a.requests = d.lines;
    a.spend_micros = spend_cost_micros(pricing, d.prompt_tokens, d.max_tokens);
    const std::int64_t amount = charge_of(b.metric, a);
    needed = amount > INT64_MAX - needed ? INT64_MAX : needed + amount;
  }
  return needed;
}

std::string reset_text(std::int64_t ms) {
  std::int64_t s = (ms + 999) / 1000;
  const std::int64_t h = s / 3600;
  const std::int64_t m = (s % 3600) / 60;
  s %= 60;
  // Written in place: most granted requests with a token budget carry it in a header.
  char buf[64];
  char* end = buf;
  const auto put = [&end, &buf](std::int64_t n, char unit) {
    end = std::to_chars(end, buf + sizeof buf - 1, n).ptr;
    *end++ = unit;
  };
  if (h > 0) put(h, 'h');
  if (h > 0 || m > 0) put(m, 'm');
  put(s, 's');
  return std::string(buf, end);
}

api_error budget_refusal(const budget_info& b, std::int64_t remaining, std::int64_t needed,
                         std::int64_t reset_ms, std::string_view what) {
  api_error e;
  if (b.metric == budget_metric::credit) {
    // A credit_only plan whose prepaid credit cannot cover the request's worst case.
    e.status = 402;
    e.type = "insufficient_quota";
    e.code = "insufficient_quota";
    e.message =
        "Your prepaid credit is used up: " + std::to_string(std::max<std::int64_t>(0, remaining)) +
        " micro-units left, and this request may cost up to " + std::to_string(needed) +
        ". Buy more credit to continue.";
    return e;
  }
  e.status = 429;
  const bool rate = b.window.sliding();
  const std::string metric(name_of(b.metric));
  e.type = rate ? metric : "insufficient_quota";  // OpenAI: "requests" or "tokens"
  e.code = rate ? "rate_limit_exceeded" : "insufficient_quota";
  const std::string per =
      b.window.kind == budget_window::lifetime ? "in total" : "per " + name_of(b.window);
  const std::string unit = b.metric == budget_metric::spend ? "micro-units of spend" : metric;
  e.message = "Budget " + b.id + " (" + std::to_string(b.limit) + " " + unit + " " + per + ", " +
              std::string(name_of(b.scope)) + (b.scope_id.empty() ? "" : " " + b.scope_id) +
              ") has " + std::to_string(remaining) + " left; " + std::string(what) + " needs " +
              std::to_string(needed) + "." +
              (reset_ms > 0 ? (b.window.sliding() ? " Usage leaves the window in "
                                                  : " The window reopens in ") +
                                  reset_text(reset_ms) + "."
                            : "");
  if (reset_ms > 0) e.retry_after_s = (reset_ms + 999) / 1000;
  return e;
}

header_list ratelimit_headers(std::span<const budget_info* const> applying,
                              std::span<const std::int64_t> remaining, std::int64_t now_ms) {
  std::optional<std::size_t> req_i, tok_i;
  for (std::size_t i = 0; i < applying.size() && i < remaining.size(); ++i) {
    const budget_metric m = applying[i]->metric;
    if (m != budget_metric::tokens && m != budget_metric::requests) continue;
    auto& best = m == budget_metric::tokens ? tok_i : req_i;
    if (!best || remaining[i] < remaining[*best]) best = i;
  }
  header_list headers;
  headers.reserve((req_i ? 2 : 0) + (tok_i ? 3 : 0));  // sized once
  if (req_i) {
    headers.emplace_back("x-ratelimit-limit-requests", std::to_string(applying[*req_i]->limit));
    headers.emplace_back("x-ratelimit-remaining-requests",
                         std::to_string(std::max<std::int64_t>(0, remaining[*req_i])));
  }
  if (tok_i) {
    const auto& b = *applying[*tok_i];
    headers.emplace_back("x-ratelimit-limit-tokens", std::to_string(b.limit));
    headers.emplace_back("x-ratelimit-remaining-tokens",
                         std::to_string(std::max<std::int64_t>(0, remaining[*tok_i])));
    const std::int64_t end = rule_of(b, now_ms).end_at(now_ms);
    if (end > 0) headers.emplace_back("x-ratelimit-reset-tokens", reset_text(end - now_ms));
  }
  return headers;
}

std::string usage_members(const budget_info& b, const window_usage* usage) {
  json_object_writer w;
  if (usage == nullptr) {
    w.add_null("used").add_null("held").add_null("remaining").add_null("resets_at");
    return std::string(w.members());
  }
  const std::int64_t counted = saturating_add(usage->used, usage->held);
  w.add("used", usage->used)
      .add("held", usage->held)
      .add("remaining", std::max<std::int64_t>(0, b.limit - counted));
  if (usage->reopens_at_ms > 0) {
    w.add("resets_at", (usage->reopens_at_ms + 999) / 1000);
  } else {
    w.add_null("resets_at");
  }
  return std::string(w.members());
}

std::string budget_status_object(const budget_info& b, const window_usage* usage) {
  json_object_writer w;
  w.add("object", "budget").add("id", b.id).add("scope", name_of(b.scope));
  if (b.scope_id.empty()) {
    w.add_null("scope_id");
  } else {
    w.add("scope_id", b.scope_id);
  }
  w.add("metric", name_of(b.metric))
      .add("window", name_of(b.window))
      .add("mode", b.hard ? "hard" : "soft");
  if (b.models) {
    json_array_writer models;
    for (const auto& m : *b.models) models.add(m);
    w.add_raw("models", models.finish());
  } else {
    w.add_null("models");
  }
  w.add("limit", b.limit);
  return with_usage(w.finish(), b, usage);
}

std::string with_usage(std::string object_json, const budget_info& b, const window_usage* usage) {
  if (object_json.size() < 2 || object_json.back() != '}') return object_json;
  object_json.pop_back();
  if (object_json.size() > 1) object_json += ',';
  return object_json + usage_members(b, usage) + "}";
}

}  // namespace tollgate::metering
