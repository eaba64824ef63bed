// An invoice's arithmetic and its CSV export: see invoicing.hpp.
#include "billing/invoicing.hpp"

#include <algorithm>

#include "core/json_dom.hpp"
#include "core/json_text.hpp"

namespace tollgate::billing {

std::int64_t cut_returned_credits(std::vector<applied_credit>& credits, const std::string& period,
                                  std::int64_t period_charges_micros) {
  std::int64_t period_credits = 0;
  for (const auto& c : credits) {
    if (c.period == period) period_credits += c.amount_micros;
  }
  const std::int64_t credits_returned =
      std::max<std::int64_t>(0, period_credits - period_charges_micros);
  for (std::int64_t cut = credits_returned, i = static_cast<std::int64_t>(credits.size()) - 1;
       cut > 0 && i >= 0; --i) {
    auto& c = credits[static_cast<std::size_t>(i)];
    if (c.period != period) continue;
    const std::int64_t take = std::min(cut, c.amount_micros);
    c.amount_micros -= take;
    cut -= take;
  }
  std::erase_if(credits, [](const applied_credit& c) { return c.amount_micros == 0; });
  return credits_returned;
}

invoice_amounts invoice_amounts_of(const period_pricing& priced,
                                   const std::vector<late_adjustment>& adjustments,
                                   const std::vector<fee_line>& fees,
                                   std::vector<applied_credit> credits, const std::string& period,
                                   int minor_digits) {
  invoice_amounts out;
  std::vector<std::int64_t> micros;
  for (const auto& l : priced.lines) micros.push_back(l.amount_micros);
  for (const auto& a : adjustments) micros.push_back(a.amount_micros);
  for (const auto& f : fees) micros.push_back(f.amount_micros);
  for (const auto m : micros) out.total_micros += m;
  const auto minor = to_minor_units(micros, minor_digits);
  out.total_minor = minor.total;
  out.lines_json = priced_lines_json(priced.lines, &minor.amounts);
  out.adjustments_json = adjustments_json(adjustments, minor.amounts, priced.lines.size());
  out.fees_json = fee_lines_json(fees, minor.amounts, priced.lines.size() + adjustments.size());

  // Credits applied, in drawdown order: what the period's events drew, at most the period's
  // own charges (the excess, possible with volume tiers, goes back to the grants when the
  // invoice is finalized), then credit drawn by late usage of finalized periods.
  // Token bundles' lines are charges the bundles pay (they come first among the credits); the
  // lines of late draws of earlier periods are paid by those periods' credits, not cut here.
  std::int64_t bundle_micros = 0;
  for (const auto& f : fees) {
    if (!f.bundle_id.empty() && f.period.empty()) bundle_micros += f.amount_micros;
  }
  out.credits_returned_micros =
      cut_returned_credits(credits, period, priced.total_micros + bundle_micros);
  std::vector<std::int64_t> credit_micros;
  for (const auto& c : credits) {
    credit_micros.push_back(c.amount_micros);
    out.credits_micros += c.amount_micros;
  }
  const auto credit_minor = to_minor_units(credit_micros, minor_digits);
  json_array_writer credits_json;
  for (std::size_t i = 0; i < credits.size(); ++i) {
    const auto& c = credits[i];
    json_object_writer w;
    w.add("period", c.period)
        .add("grant_id", c.grant_id)
        .add("kind", c.kind)
        .add("amount_micros", c.amount_micros)
        .add("amount_minor", credit_minor.amounts[i]);
    credits_json.add_raw(w.finish());
  }
  out.credits_json = credits_json.finish();
  out.total_due_micros = out.total_micros - out.credits_micros;
  out.total_due_minor = out.total_minor - credit_minor.total;
  return out;
}

std::string invoice_csv(const std::string& invoice_json) {
  std::string out =
      "invoice_number,period,currency,model,token_class,batch,tier,tokens,amount_micros,"
      "amount_minor\n";
  auto doc = json::document::parse(invoice_json);
  if (!doc) return out;
  const json::value inv = doc->root();
  auto text = [](json::value v) -> std::string {
    if (!v.valid() || v.is_null()) return "";
    if (v.is_string()) {
      std::string s(v.as_string());
      if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
      std::string quoted = "\"";
      for (char c : s) quoted += c == '"' ? std::string("\"\"") : std::string(1, c);
      return quoted + "\"";
    }
    if (v.is_bool()) return v.as_bool() ? "true" : "false";
    return std::string(v.source());
  };
  const std::string head = text(inv.find("number")) + "," + text(inv.find("period")) + "," +
                           text(inv.find("currency")) + ",";
  const json::value lines = inv.find("lines");
  for (std::uint32_t i = 0; lines.valid() && i < lines.size(); ++i) {
    const json::value l = lines.at(i);
    out += head + text(l.find("model")) + "," + text(l.find("token_class")) + "," +
           text(l.find("batch")) + "," + text(l.find("tier")) + "," + text(l.find("tokens")) +
           "," + text(l.find("amount_micros")) + "," + text(l.find("amount_minor")) + "\n";
  }
  // Fee lines (model: the fee's kind, tokens: its quantity).
  const json::value fees = inv.find("fees");
  for (std::uint32_t i = 0; fees.valid() && i < fees.size(); ++i) {
    const json::value f = fees.at(i);
    out += head + text(f.find("kind")) + ",fee,,," + text(f.find("quantity")) + "," +
           text(f.find("amount_micros")) + "," + text(f.find("amount_minor")) + "\n";
  }
  out += head + "total,,,,," + text(inv.find("total_micros")) + "," +
         text(inv.find("total_minor")) + "\n";
  // Credits applied (model: the grant, negative amounts), then what is left to pay.
  const json::value credits = inv.find("credits");
  for (std::uint32_t i = 0; credits.valid() && i < credits.size(); ++i) {
    const json::value c = credits.at(i);
    out += head + text(c.find("grant_id")) + ",credit,,,,-" + text(c.find("amount_micros")) +
           ",-" + text(c.find("amount_minor")) + "\n";
  }
  out += head + "total_due,,,,," + text(inv.find("total_due_micros")) + "," +
         text(inv.find("total_due_minor")) + "\n";
  return out;
}

}  // namespace tollgate::billing
