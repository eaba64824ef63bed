// Token banking, the pure part (docs/PRICING.md, "Token banking"): an allowance with
// rollover_periods N carries what a period P leaves unused into periods P+1 .. P+N. The ledger
// writer settles P when it first rates interactive usage of a later period Q with P >= Q - N:
// the unused part U = max(0, A - position) is frozen on P's accumulator (rolled_over; usage of
// P arriving later sees an allowance of A - U, which its position has already reached) and
// becomes a rollover grant of U tokens, price 0, in force from the start of P+1 to the start of
// P+N+1, which the ledger draws like a token bundle (after the period's own allowance, in
// drawdown order: the earliest expiry first).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "billing/rating.hpp"
#include "billing/token_bundles.hpp"

namespace tollgate::billing {

// The period `months` months after `period` ("YYYY-MM"; negative: before); nullopt outside
// years 1970..9999 or for a malformed period.
std::optional<std::string> shift_period(std::string_view period, int months);

// An allowance of an earlier period whose unused tokens may roll into the period being rated.
struct rollover_source {
  accumulator_key key;  // the earlier period's interactive accumulator of (model, class)
  std::string from_period;
  std::string model;  // as the allowance names it (the accumulators' model)
  int token_class = tc_input;
  std::int64_t allowance = 0;
  int periods = 0;  // its rollover_periods
};

// The allowances of `tenant`'s periods before `period` (at most rollover_periods_max back, none
// before the tenant's first plan) whose rollover still reaches `period`.
std::vector<rollover_source> rollover_sources(const plan_history& plans, const std::string& tenant,
                                              std::string_view period);

// The id of the rollover grant of a source: "cg_rollover_" and 32 hex digits of a SHA-256 of
// tenant, period, model and class (the same in every gateway, so the grant is made once).
std::string rollover_grant_id(const std::string& tenant, const rollover_source& source);

// Settles `source` on its accumulator `acc` (its position is where the earlier period stands):
// nothing when it is settled already; else freezes rolled_over = max(0, A - position) and, when
// that is above 0, returns the rollover grant as a bundle (price 0, every project).
std::optional<token_bundle> settle_rollover(const std::string& tenant,
                                            const rollover_source& source, accumulator_state& acc);

// A rollover grant to make (sql/028_allowance_rollover.sql, tollgate_grant_rollover).
struct rollover_grant {
  std::string tenant;
  std::string from_period;
  token_bundle bundle;
};

// Inserts `b` into `bundles` (in drawdown order: priority, then earliest expiry, none last,
// then effective time, then id), as the ledger's query returns them.
void insert_in_drawdown_order(std::vector<token_bundle>& bundles, token_bundle b);

}  // namespace tollgate::billing
