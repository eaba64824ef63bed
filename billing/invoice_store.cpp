// The invoice store: see invoice_store.hpp.
#include "billing/invoice_store.hpp"

#include <utility>
#include <vector>

#include "billing/api_keys.hpp"
#include "billing/invoicing.hpp"
#include "billing/period_pricing.hpp"
#include "core/json_text.hpp"

namespace tollgate::billing {

namespace net = boost::asio;

namespace {

const char* const invoice_json =
    "json_build_object('object','invoice','id',i.id,'tenant_id',i.tenant_id,'period',i.period,"
    "'status',i.status,'number',i.number,'currency',i.currency,'price_book_id',i.price_book_id,"
    "'minor_digits',i.minor_digits,'lines',i.lines,'adjustments',i.adjustments,'fees',i.fees,"
    "'unpriced',i.unpriced,"
    "'total_micros',i.total_micros,'total_minor',i.total_minor,'credits',i.credits,"
    "'credits_micros',i.credits_micros,'credits_returned_micros',i.credits_returned_micros,"
    "'total_due_micros',coalesce(i.total_due_micros,i.total_micros),"
    "'total_due_minor',coalesce(i.total_due_minor,i.total_minor),"
    "'created_at',extract(epoch from i.created_at)::bigint,"
    "'finalized_at',extract(epoch from i.finalized_at)::bigint)";

}  // namespace

net::awaitable<store_result> invoice_store::draft_invoice(std::string tenant_id,
                                                          std::string period) {
  if (!period_bounds(period)) co_return store_error{400, "period must be YYYY-MM.", "invalid_value"};
  // A finalized invoice never changes: nothing to price.
  auto finalized_already = co_await finalized_invoice(tenant_id, period);
  if (finalized_already || finalized_already.error().status != 404) co_return finalized_already;
  auto plan = co_await plans_.load_plan(tenant_id, period);
  if (!plan) co_return plan.error();
  auto usage = co_await plans_.load_period_totals(*plan, period);
  if (!usage) co_return usage.error();
  const period_pricing priced = price_period(*usage);
  const int digits = currency_minor_digits(usage->currency);

  // Late usage of earlier periods whose invoices are finalized (the last 24): what each comes
  // to now, less what its invoice and the adjustments of other finalized invoices charged.
  std::vector<late_adjustment> adjustments;
  std::vector<std::string> earlier_adjustments;
  std::vector<std::pair<std::string, std::string>> finalized;  // period, lines
  {
    auto conn = co_await pool_.acquire();
    if (!conn) co_return store_unavailable(conn.error());
    const std::string earlier_sql =
        "SELECT period, lines::text FROM invoices WHERE tenant_id = $1 AND status = 'finalized'"
        " AND period < $2 ORDER BY period DESC LIMIT 24";
    std::vector<pg::param> earlier_params;
    earlier_params.emplace_back(tenant_id);
    earlier_params.emplace_back(period);
    auto earlier = co_await (*conn)->query(earlier_sql, std::move(earlier_params));
    if (!earlier) co_return store_error_from(earlier.error());
    const std::string adjusted_sql =
        "SELECT adjustments::text FROM invoices WHERE tenant_id = $1 AND status = 'finalized'"
        " AND period <> $2 AND adjustments <> '[]'::jsonb";
    std::vector<pg::param> adjusted_params;
    adjusted_params.emplace_back(tenant_id);
    adjusted_params.emplace_back(period);
    auto adjusted = co_await (*conn)->query(adjusted_sql, std::move(adjusted_params));
    if (!adjusted) co_return store_error_from(adjusted.error());
    for (int i = 0; i < adjusted->size(); ++i) earlier_adjustments.emplace_back(adjusted->text(i, 0));
    for (int i = 0; i < earlier->size(); ++i) {
      finalized.emplace_back(std::string(earlier->text(i, 0)), std::string(earlier->text(i, 1)));
    }
  }  // the connection goes back to the pool before the earlier periods are loaded
  for (auto it = finalized.rbegin(); it != finalized.rend(); ++it) {
    // The plan of that period.
    auto then_plan = co_await plans_.load_plan(tenant_id, it->first);
    if (!then_plan) co_return then_plan.error();
    auto then = co_await plans_.load_period_totals(std::move(*then_plan), it->first);
    if (!then) co_return then.error();
    const auto late =
        late_adjustments(it->first, price_period(*then), it->second, earlier_adjustments);
    adjustments.insert(adjustments.end(), late.begin(), late.end());
  }
  // The credits applied, in drawdown order; billing/invoicing cuts what goes back to the grants.
  auto credits = co_await credits_.applied_credits(tenant_id, period);
  if (!credits) co_return credits.error();
  // The plan's fees: the base fee, the seats by day and the commitment's true-up.
  auto seat_days = co_await plans_.period_seat_days(tenant_id, period);
  if (!seat_days) co_return seat_days.error();
  const auto bounds = period_bounds(period);
  std::vector<fee_line> fees = fee_lines(usage->terms, *seat_days,
                                         (bounds->second - bounds->first) / 86'400,
                                         priced.total_micros);
  // The tokens token bundles paid for this period, at their locked prices.
  auto bundle_lines = co_await credits_.bundle_lines(tenant_id, period);
  if (!bundle_lines) co_return bundle_lines.error();
  fees.insert(fees.end(), bundle_lines->begin(), bundle_lines->end());
  invoice_amounts amounts =
      invoice_amounts_of(priced, adjustments, fees, std::move(*credits), period, digits);
  // A draft is rewritten in place (same id). Should the invoice have been finalized
  // meanwhile, nothing is written and the answer is 404.
  std::string sql =
      std::string("WITH i AS (INSERT INTO invoices (id, tenant_id, period, status, currency,"
                  " price_book_id, minor_digits, lines, unpriced, total_micros, total_minor,"
                  " adjustments, credits, credits_micros, credits_returned_micros,"
                  " total_due_micros, total_due_minor, fees) VALUES ($3, $1, $2, 'draft', $4, $5,"
                  " $6::integer, $7::jsonb, $8::jsonb, $9::bigint, $10::bigint, $11::jsonb,"
                  " $12::jsonb, $13::bigint, $14::bigint, $15::bigint, $16::bigint, $17::jsonb)"
                  " ON CONFLICT (tenant_id, period) DO UPDATE SET currency = EXCLUDED.currency,"
                  " price_book_id = EXCLUDED.price_book_id, minor_digits = EXCLUDED.minor_digits,"
                  " lines = EXCLUDED.lines, unpriced = EXCLUDED.unpriced,"
                  " total_micros = EXCLUDED.total_micros, total_minor = EXCLUDED.total_minor,"
                  " adjustments = EXCLUDED.adjustments, credits = EXCLUDED.credits,"
                  " credits_micros = EXCLUDED.credits_micros,"
                  " credits_returned_micros = EXCLUDED.credits_returned_micros,"
                  " total_due_micros = EXCLUDED.total_due_micros,"
                  " total_due_minor = EXCLUDED.total_due_minor, fees = EXCLUDED.fees,"
                  " updated_at = now() WHERE invoices.status = 'draft' RETURNING *) SELECT ") +
      invoice_json + "::text FROM i";
  std::vector<pg::param> params;
  params.emplace_back(tenant_id);
  params.emplace_back(period);
  params.emplace_back(new_object_id("inv"));
  params.emplace_back(usage->currency);
  params.emplace_back(usage->book_id);
  params.emplace_back(std::to_string(digits));
  params.emplace_back(std::move(amounts.lines_json));
  params.emplace_back(unpriced_json(priced.unpriced));
  params.emplace_back(std::to_string(amounts.total_micros));
  params.emplace_back(std::to_string(amounts.total_minor));
  params.emplace_back(std::move(amounts.adjustments_json));
  params.emplace_back(std::move(amounts.credits_json));
  params.emplace_back(std::to_string(amounts.credits_micros));
  params.emplace_back(std::to_string(amounts.credits_returned_micros));
  params.emplace_back(std::to_string(amounts.total_due_micros));
  params.emplace_back(std::to_string(amounts.total_due_minor));
  params.emplace_back(std::move(amounts.fees_json));
  std::string not_found = "The invoice of " + tenant_id + " for " + period + " was not written.";
  co_return co_await one_object(pool_, std::move(sql), std::move(params), std::move(not_found));
}

net::awaitable<store_result> invoice_store::finalized_invoice(std::string tenant_id,
                                                              std::string period) {
  std::string sql = std::string("SELECT ") + invoice_json +
                    "::text FROM invoices i WHERE i.tenant_id = $1 AND i.period = $2"
                    " AND i.status = 'finalized'";
  std::vector<pg::param> params;
  params.emplace_back(tenant_id);
  params.emplace_back(period);
  std::string not_found = "No finalized invoice of " + tenant_id + " for " + period + ".";
  co_return co_await one_object(pool_, std::move(sql), std::move(params), std::move(not_found));
}

net::awaitable<store_result> invoice_store::finalize_invoice(std::string tenant_id,
                                                             std::string period,
                                                             std::string actor) {
  std::string sql =
      std::string("WITH r AS (SELECT tollgate_credit_true_up(tenant_id, period,"
                  " credits_returned_micros) FROM invoices WHERE tenant_id = $1 AND period = $2"
                  " AND status = 'draft'),"
                  " i AS (UPDATE invoices SET status = 'finalized', finalized_at = now(),"
                  " number = 'TG-' || lpad(nextval('invoice_numbers')::text, 6, '0'),"
                  " updated_at = now() WHERE tenant_id = $1 AND period = $2 AND status = 'draft'"
                  " AND (SELECT count(*) FROM r) >= 0 RETURNING *),"
                  " a AS (INSERT INTO audit_log (actor, action, tenant_id, object_type, object_id,"
                  " after) SELECT $3, 'invoice.finalize', i.tenant_id, 'invoice', i.id,"
                  " jsonb_build_object('number', i.number, 'total_micros', i.total_micros) FROM i)"
                  " SELECT ") +
      invoice_json + "::text FROM i";
  std::vector<pg::param> params;
  params.emplace_back(tenant_id);
  params.emplace_back(period);
  params.emplace_back(std::move(actor));
  std::string not_found = "No draft invoice of " + tenant_id + " for " + period + ".";
  auto finalized =
      co_await one_object(pool_, std::move(sql), std::move(params), std::move(not_found));
  if (finalized || finalized.error().status != 404) co_return finalized;
  co_return co_await finalized_invoice(std::move(tenant_id), std::move(period));
}

net::awaitable<store_result> invoice_store::get_invoice(std::string id) {
  return one_object(pool_,
                    std::string("SELECT ") + invoice_json + "::text FROM invoices i WHERE i.id = $1",
                    {id}, "No invoice with id " + id + ".");
}

net::awaitable<store_result> invoice_store::list_invoices(std::string tenant_id,
                                                          std::string period,
                                                          page_request page) {
  return one_object(
      pool_,
      page_sql(invoice_json,
               "(SELECT i.*, i.id AS x_id FROM invoices i) i WHERE ($3::text = '' OR"
               " i.tenant_id = $3) AND ($4::text = '' OR i.period = $4)",
               1, 2),
      {std::to_string(page.limit), page.after, std::move(tenant_id), std::move(period)},
      "Nothing to list.");
}

net::awaitable<store_result> invoice_store::run_invoices(std::string period,
                                                         std::string tenant_id, bool finalize,
                                                         std::int64_t now_s,
                                                         std::int64_t grace_s,
                                                         std::string actor) {
  const auto bounds = period_bounds(period);
  if (!bounds) co_return store_error{400, "period must be YYYY-MM.", "invalid_value"};
  if (finalize && now_s < bounds->second + grace_s) {
    co_return store_error{400,
                          "The invoices of " + period + " can be finalized from " +
                              std::to_string(bounds->second + grace_s) +
                              " (unix s): the period's end plus the grace period for late "
                              "events (invoices.grace_hours).",
                          "too_early"};
  }
  std::vector<std::string> tenants;
  if (!tenant_id.empty()) {
    tenants.push_back(tenant_id);
  } else {
    auto all = co_await plans_.tenants_with_plans();
    if (!all) co_return store_unavailable(all.error());
    tenants = std::move(*all);
  }
  std::string out = "{\"object\":\"list\",\"data\":[";
  bool first = true;
  for (const auto& t : tenants) {
    // A finalized invoice comes back from draft_invoice unchanged; finalize_invoice then
    // finds no draft and answers with it again.
    auto invoice = co_await draft_invoice(t, period);
    if (invoice && finalize) invoice = co_await finalize_invoice(t, period, actor);
    if (!invoice) {
      if (!tenant_id.empty()) co_return invoice.error();
      // One tenant's failure does not stop the run; it is reported in the list.
      json_object_writer w;
      w.add("object", "invoice.error").add("tenant_id", t).add("period", period)
          .add("error", invoice.error().message);
      out += (first ? "" : ",") + w.finish();
    } else {
      out += (first ? "" : ",") + *invoice;
    }
    first = false;
  }
  co_return out + "],\"has_more\":false}";
}

}  // namespace tollgate::billing
