// The budget policy, as pure functions over a tenant's budgets and a request: which budgets
// apply to a caller, what each metric charges for a request's worst case and for its actual
// usage, how spend is priced (a plan's worst-case rate or the model's estimate prices), the
// refusal a budget answers with, and OpenAI's x-ratelimit-* headers. No I/O: gateway/
// budget_guard feeds it the cached budgets and Redis's answers.
#pragma once
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/error.hpp"
#include "metering/budgets/budget_engine.hpp"
#include "metering/budgets/budget_kinds.hpp"
#include "metering/budgets/budget_rows.hpp"
#include "metering/budgets/credit_rate.hpp"
#include "metering/budgets/subjects.hpp"
#include "metering/usage.hpp"
#include "metering/worst_case.hpp"

namespace tollgate::metering {

// ---- which budgets apply ---------------------------------------------------------------------

// Whether a budget of the caller's tenant covers the request: every tenant budget, the budgets
// of its project and of its key, and those of its end user, tags and session
// (metering/budgets/subjects.hpp).
bool budget_applies(const budget_info& b, std::string_view project_id, std::string_view key_id,
                    const attribution& attributed = {});
// Whether a budget counts requests for `model`: one without models counts every model.
bool budget_counts_model(const budget_info& b, std::string_view model);
// The budgets of `all` (one tenant's) that apply to the request for `model`, in order;
// pointers into `all`.
std::vector<const budget_info*> applying_budgets(const std::vector<budget_info>& all,
                                                 std::string_view project_id,
                                                 std::string_view key_id, std::string_view model,
                                                 const attribution& attributed = {});
// The id of the counter an applying budget charges for this request: the budget's id, or for a
// budget that counts each end user, tag value or session, that value's counter id.
std::string counter_id_for(const budget_info& b, const attribution& attributed);
// The budgets of `all` a caller is shown (GET /v1/budgets): its tenant's, its project's and its
// key's, whatever their models; those of end users, tags and sessions only where `attributed`
// names what they count (they count the requests' attribution, not the key); never the credit
// mirror (not a budget an admin set).
std::vector<const budget_info*> listed_budgets(const std::vector<budget_info>& all,
                                               std::string_view project_id,
                                               std::string_view key_id,
                                               const attribution& attributed = {});

// The rule a budget enforces at `now_ms`. Calendar windows of a tenant outside UTC carry
// their window instance as read from PostgreSQL; past its end, the next one (until the cache
// is refreshed); past that too (the database away a whole window), UTC.
limit_rule rule_of(const budget_info& b, std::int64_t now_ms);

// ---- what a request is charged ---------------------------------------------------------------

// How a request's spend (and credit) is priced: with a plan, at the worst-case rate its price
// book gives the model; without, at the model's estimate prices.
struct spend_pricing {
  bool plan_priced = false;
  credit_rate plan_rate;  // with plan_priced; all zero when the book does not price the model
  std::uint64_t input_price = 0;  // the model's estimate prices, micro-units per 1M tokens
  std::uint64_t output_price = 0;
};

// The rate of `plan_rates` that prices `model`: the model's own or the book's "*" (the last
// that matches); nullopt when the book prices neither.
std::optional<credit_rate> plan_rate_of(const std::vector<credit_rate>& plan_rates,
                                        std::string_view model);
// The pricing one budget implies: its plan's rate when it carries plan rates, else the
// estimate prices.
spend_pricing spend_pricing_of(const budget_info& b, std::string_view model,
                               std::uint64_t input_price, std::uint64_t output_price);
// The pricing of a request under the budgets that apply to it: the first one with a plan
// decides (a tenant's spend and credit budgets share their plan's rates).
spend_pricing spend_pricing_for(std::span<const budget_info* const> applying,
                                std::string_view model, std::uint64_t input_price,
                                std::uint64_t output_price);
// What `prompt_tokens` and `completion_tokens` cost under `pricing`, in micro-units, rounded
// up; saturates at INT64_MAX.
std::int64_t spend_cost_micros(const spend_pricing& pricing, std::int64_t prompt_tokens,
                               std::int64_t completion_tokens);
// The same, bounded for the budget scripts (at reservation_amount_max): what a spend or credit
// charge holds and settles.
std::int64_t spend_charge_micros(const spend_pricing& pricing, std::int64_t prompt_tokens,
                                 std::int64_t completion_tokens);

// What a request (or a batch) amounts to in each metric.
struct request_amounts {
  std::int64_t tokens = 0;
  std::int64_t requests = 1;
  std::int64_t spend_micros = 0;  // spend and credit budgets
};
// The worst case that a reservation holds: every prompt and copy with max_tokens (or the rest
// of the context), one request, their spend.
request_amounts worst_case_amounts(const worst_case_tokens& worst, const spend_pricing& pricing);
// The actual usage that a settlement counts: the tokens the ledger bills, one request, their
// spend at the same pricing.
request_amounts actual_amounts(std::int64_t prompt_tokens, std::int64_t completion_tokens,
                               const spend_pricing& pricing);
// The amount a budget of `metric` is charged.
std::int64_t charge_of(budget_metric metric, const request_amounts& amounts);

// Which counters of a settlement the ledger corrects to what it bills (the spend and credit
// ones, counter_keys[i] charged for metrics[i]), and the spend the settlement counted there.
// Only a plan-priced settlement differs from the ledger's own count; otherwise `rec` is left
// without counters.
void describe_settled_spend(std::span<const budget_metric> metrics,
                            std::span<const std::string> counter_keys, const spend_pricing& pricing,
                            usage_record& rec);

// ---- batches ---------------------------------------------------------------------------------

// One model's share of a batch's worst case (summed over its lines).
struct batch_share {
  std::string_view model;
  std::uint64_t input_price = 0;  // the model's estimate prices
  std::uint64_t output_price = 0;
  std::int64_t lines = 0;
  std::int64_t prompt_tokens = 0;
  std::int64_t max_tokens = 0;
};
// Whether a budget can refuse a whole batch: hard budgets, except sliding ones (those pace the
// batch's lines instead).
bool refuses_batches(const budget_info& b);
// What a batch's worst case asks of a budget: every line's prompt + max_tokens, one request
// each, or their spend (not bounded for the scripts: nothing is held), of the models the
// budget counts; saturates at INT64_MAX.
std::int64_t batch_charge(const budget_info& b, std::span<const batch_share> shares);

// ---- answers ---------------------------------------------------------------------------------

// OpenAI's reset format, rounded up to whole seconds: "1s", "6m0s", "2h3m4s".
std::string reset_text(std::int64_t ms);

// The answer when budget `b` refuses: 402 when a credit_only plan's credit cannot cover the
// worst case; else 429, rate_limit_exceeded (type tokens or requests) for a sliding window
// and insufficient_quota for the others, with a message naming the budget and Retry-After
// until the window frees budget (`reset_ms` > 0). `what` names what was asked for.
api_error budget_refusal(const budget_info& b, std::int64_t remaining, std::int64_t needed,
                         std::int64_t reset_ms, std::string_view what = "this request");

// Response header fields: each name a string literal, so a list copies no names.
using header_list = std::vector<std::pair<std::string_view, std::string>>;

// OpenAI's x-ratelimit-* headers of a granted request, from the token and request budgets
// with the least left (`remaining[i]` of applying[i], after the hold); the token reset is not
// sent for lifetime budgets.
header_list ratelimit_headers(std::span<const budget_info* const> applying,
                              std::span<const std::int64_t> remaining, std::int64_t now_ms);

// ---- listings --------------------------------------------------------------------------------

// What a budget counts now, as the budget listings show it: the members
// "used":…,"held":…,"remaining":…,"resets_at":… (remaining never below 0; resets_at in unix
// seconds, when the window frees budget, null for lifetime), all null when the counters
// could not be read (`usage` null).
std::string usage_members(const budget_info& b, const window_usage* usage);
// `object_json` (a JSON object, such as the admin API's budget) with usage_members added.
std::string with_usage(std::string object_json, const budget_info& b, const window_usage* usage);
// A budget as GET /v1/budgets shows it to a caller: {"object":"budget","id","scope",
// "scope_id","metric","window","mode","models","limit", then usage_members}.
std::string budget_status_object(const budget_info& b, const window_usage* usage);

}  // namespace tollgate::metering
