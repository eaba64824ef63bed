// A plan's terms beyond its price book (docs/PRICING.md, "Plan terms"): a base fee and a fee per
// seat each period, allowances (tokens included each period per model and token class, used
// before the price book applies, and usage charges included in money) and a commitment (a
// minimum usage spend per period). Pure:
// parsing and checking the terms, seat-days of a period, and the invoice's fee lines, all in
// integer micro-units.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"
#include "core/json_dom.hpp"

namespace tollgate::billing {

constexpr std::int64_t plan_fee_micros_max = 1'000'000'000'000'000;  // 10^9 currency units
// A seat fee times seats_max stays inside 64 bits.
constexpr std::int64_t seat_fee_micros_max = 1'000'000'000'000;       // 10^6 currency units
constexpr std::int64_t allowance_tokens_max = 1'000'000'000'000'000;  // pricing's max_units
constexpr std::size_t allowances_max = 256;
constexpr std::int64_t seats_max = 1'000'000;
// Token banking: the most periods an allowance's unused tokens can roll over into.
constexpr int rollover_periods_max = 12;

// Tokens of one model (or "*" for a book with tier_scope all_models) and token class included
// in each period. The class is any token class the rating knows, so new ones fit.
struct allowance {
  std::string model;
  std::string token_class;
  std::int64_t tokens = 0;
  // Token banking: the tokens a period leaves unused can be used in the next this many periods
  // (0: none; billing/allowance_rollover.hpp).
  int rollover_periods = 0;
  bool operator==(const allowance&) const = default;
};

struct plan_terms {
  std::int64_t base_fee_micros = 0;    // per period, in full
  std::int64_t seat_fee_micros = 0;    // per seat and period, prorated by day
  std::int64_t commitment_micros = 0;  // minimum usage charges per period
  // An allowance in money: the first usage charges of each period up to this many micro-units
  // are included (rating::rate_event, period_pricing's `included_usage` line).
  std::int64_t included_usage_micros = 0;
  std::vector<allowance> allowances;   // sorted by model, then class; one per pair
  bool operator==(const plan_terms&) const = default;

  // The tokens included of (model, class) each period; 0 without an allowance.
  std::int64_t allowance_of(std::string_view model, std::string_view token_class) const;
  bool rolls_over() const;  // an allowance has rollover_periods
};

// The terms from a JSON object (as stored, or the members of an admin request); missing members
// are 0 / none. An error names the member at fault, for a 400.
basic_result<plan_terms, std::string> parse_plan_terms(json::value v);
// An `allowances` array alone (the admin API's member), checked and sorted.
basic_result<std::vector<allowance>, std::string> parse_allowances(json::value v);
// The canonical JSON of terms: only the members that are set, allowances sorted.
std::string plan_terms_json(const plan_terms& t);
std::string allowances_json(const std::vector<allowance>& a);

// A seat count from a day on: `day` counts days since 1970-01-01 (UTC).
struct seat_change {
  std::int64_t day = 0;
  std::int64_t seats = 0;
};
// Seat-days of the `days` days from `first_day` on: each day counts the seats of the latest
// change on or before it (0 before the first). `changes` in day order.
std::int64_t seat_days(const std::vector<seat_change>& changes, std::int64_t first_day,
                       std::int64_t days);

// The fee lines of an invoice.
struct fee_line {
  std::string kind;           // base_fee, seats, commitment_true_up
  std::int64_t quantity = 0;  // 1, seat-days, 1
  std::int64_t unit_amount_micros = 0;
  std::int64_t amount_micros = 0;
  // token_bundle lines (billing/token_bundles): the bundle, its model and class; quantity is
  // the tokens it paid for, unit_amount_micros its price per 1M tokens.
  std::string bundle_id = {}, model = {}, token_class = {};
  // A token_bundle or allowance_rollover_in line for late usage of an earlier period (its
  // invoice finalized before the usage was stored): that period; empty: the invoice's own.
  std::string period = {};
};
// The period's fee lines: the base fee; the seats, floor(seat_fee x seat_days / days) (one
// floor for the period, 128-bit); and, when the period's usage charges fall short of the
// commitment, the difference. Lines of 0 are left out.
std::vector<fee_line> fee_lines(const plan_terms& terms, std::int64_t seat_days,
                                std::int64_t period_days, std::int64_t usage_micros);
// [{kind, quantity, unit_amount_micros, amount_micros, amount_minor}]; `minor` from `first`.
std::string fee_lines_json(const std::vector<fee_line>& fees,
                           const std::vector<std::int64_t>& minor, std::size_t first);

}  // namespace tollgate::billing
