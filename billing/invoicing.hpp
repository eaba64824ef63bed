// An invoice's arithmetic and its CSV export, the pure part of invoicing (billing/invoice_store
// reads the ledger and writes the invoice): the period's lines and late adjustments in micro-
// and minor units, the credits applied less what goes back to the grants, and what is left to
// pay. No database: all of it is tested without one.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "billing/period_pricing.hpp"
#include "billing/plan_terms.hpp"

namespace tollgate::billing {

// Credit an invoice applies: what grant `grant_id` paid of the usage of `period` (the invoice's
// own period, or an earlier one whose usage came late).
struct applied_credit {
  std::string period, grant_id, kind;
  std::int64_t amount_micros = 0;
};

// Credits of `period` beyond the period's own charges (possible with volume tiers) go back to
// the grants when the invoice is finalized: the excess is cut from the period's credits, the
// last in drawdown order first. Credits of other periods stay; credits left at 0 are dropped.
// Returns the amount cut (the invoice's credits_returned_micros).
std::int64_t cut_returned_credits(std::vector<applied_credit>& credits, const std::string& period,
                                  std::int64_t period_charges_micros);

// What a draft invoice holds, as its columns take it.
struct invoice_amounts {
  std::string lines_json;        // the priced lines, each with its amount_minor
  std::string adjustments_json;  // the late adjustments, each with its amount_minor
  std::string fees_json;         // the fee lines (billing/plan_terms), each with its amount_minor
  std::string credits_json;      // [{period, grant_id, kind, amount_micros, amount_minor}]
  std::int64_t total_micros = 0;  // lines, adjustments and fees
  std::int64_t total_minor = 0;
  std::int64_t credits_micros = 0;  // the credits applied (after the cut)
  std::int64_t credits_returned_micros = 0;
  std::int64_t total_due_micros = 0;  // the total less the credits
  std::int64_t total_due_minor = 0;
};
// The invoice of `period` from its priced usage, the late adjustments of earlier finalized
// periods, the plan's fee lines (fee_lines) and the credits applied
// (credit_store::applied_credits, in drawdown order), in a currency with `minor_digits`
// decimals. Lines, adjustments and fees are rounded to minor units together, the credits on
// their own, so that each set adds up to its rounded total.
invoice_amounts invoice_amounts_of(const period_pricing& priced,
                                   const std::vector<late_adjustment>& adjustments,
                                   const std::vector<fee_line>& fees,
                                   std::vector<applied_credit> credits, const std::string& period,
                                   int minor_digits);

// An invoice's lines as CSV (one row per line, then the total, the credits applied as negative
// rows and the total due), from its JSON as the API shows it.
std::string invoice_csv(const std::string& invoice_json);

}  // namespace tollgate::billing
