// The finance API's handlers (read-only, finance token): usage in OpenAI's shape or CSV, raw
// usage events (JSON or CloudEvents), the cost preview, invoices (JSON, CSV or Stripe invoice
// items) and credits. One function per route of
// admin_router.cpp's table.
#include "billing/billing_export.hpp"
#include "billing/credit_store.hpp"
#include "billing/period_pricing.hpp"
#include "billing/invoice_store.hpp"
#include "billing/invoicing.hpp"
#include "billing/plan_store.hpp"
#include "billing/usage_queries.hpp"
#include "core/json_dom.hpp"
#include "gateway/admin_routes.hpp"
#include "gateway/query_params.hpp"
#include "gateway/usage_report.hpp"

namespace tollgate::gateway::routes {

namespace bhttp = boost::beast::http;

handler_result finance_usage(route_call& c) {
  auto req = parse_usage_request(c.query, /*finance=*/true, c.now_s(), c.env.usage);
  if (!req) co_return co_await c.fail(req.error());
  co_await send_usage_report(c.ex, c.billing(), std::move(*req), c.request_id);
}

// JSON pages of usage events, or with format=cloudevents the page as a CloudEvents batch
// (docs/EXPORTS.md), its cursor in the x-tollgate-next-page header.
handler_result finance_usage_events(route_call& c) {
  const std::string format = c.query.get("format").value_or("json");
  if (format != "json" && format != "cloudevents") {
    api_error bad = invalid_request("format must be json or cloudevents.", "format");
    co_return co_await c.fail(std::move(bad));
  }
  auto req = parse_events_request(c.query, c.now_s());
  if (!req) co_return co_await c.fail(req.error());
  auto page = co_await c.run(c.billing().usage->events(std::move(*req)));
  if (!page) {
    api_error e;
    e.status = page.error().sqlstate == "22023" ? 400 : 503;
    e.type = e.status == 400 ? "invalid_request_error" : "api_error";
    e.message = page.error().message;
    co_return co_await c.fail(std::move(e));
  }
  if (format == "cloudevents") {
    http::response res{bhttp::status::ok, c.ex.req().version()};
    res.set(bhttp::field::content_type, "application/cloudevents-batch+json");
    if (!page->next.empty()) res.set("x-tollgate-next-page", page->next);
    res.body() = billing::usage_cloudevents_json(page->data_json);
    co_await c.ex.send(std::move(res));
    co_return;
  }
  std::string body = "{\"object\":\"list\",\"data\":" + page->data_json +
                     ",\"has_more\":" + (page->next.empty() ? "false" : "true") +
                     ",\"next_page\":" + (page->next.empty() ? "null" : "\"" + page->next + "\"") +
                     "}";
  co_await c.ex.send_json(200, std::move(body));
}

handler_result finance_invoices(route_call& c) {
  auto pages = page_from(c.query);
  if (!pages) co_return co_await c.fail(pages.error());
  co_await c.reply(c.billing().invoices->list_invoices(c.query.get("tenant_id").value_or(""),
                                                       c.query.get("period").value_or(""), *pages));
}

// JSON, or with format=csv the lines as CSV; format=stripe and stripe_csv: the invoice as
// Stripe invoice items (docs/EXPORTS.md).
handler_result finance_invoice(route_call& c) {
  // `/finance/v1/invoices/` (an empty id) has always listed.
  if (c.id.empty()) co_return co_await finance_invoices(c);
  const std::string format = c.query.get("format").value_or("json");
  if (format != "json" && format != "csv" && format != "stripe" && format != "stripe_csv") {
    api_error bad = invalid_request("format must be json, csv, stripe or stripe_csv.", "format");
    co_return co_await c.fail(std::move(bad));
  }
  auto outcome = co_await c.run(c.billing().invoices->get_invoice(c.id));
  if (!outcome) co_return co_await c.fail(to_api_error(outcome.error()));
  if (format == "json" || format == "stripe") {
    std::string body = format == "json" ? std::move(outcome.value())
                                        : billing::stripe_invoice_items_json(*outcome);
    co_await c.ex.send_json(200, std::move(body));
    co_return;
  }
  http::response res{bhttp::status::ok, c.ex.req().version()};
  res.set(bhttp::field::content_type, "text/csv");
  res.body() = format == "csv" ? billing::invoice_csv(*outcome)
                               : billing::stripe_invoice_items_csv(*outcome);
  co_await c.ex.send(std::move(res));
}

namespace {

// The tenant_id a credits route needs, or the 400 (also for a bad `limit`).
result<billing::page_request> credits_request(const route_call& c, std::string& tenant) {
  tenant = c.query.get("tenant_id").value_or("");
  auto pages = page_from(c.query);
  if (tenant.empty()) return invalid_request("tenant_id is required.", "tenant_id");
  return pages;
}

}  // namespace

handler_result finance_credits(route_call& c) {
  std::string tenant;
  auto pages = credits_request(c, tenant);
  if (!pages) co_return co_await c.fail(pages.error());
  co_await c.reply(c.billing().credits->credit_balance(tenant));
}

handler_result finance_credit_transfers(route_call& c) {
  std::string tenant;
  auto pages = credits_request(c, tenant);
  if (!pages) co_return co_await c.fail(pages.error());
  co_await c.reply(c.billing().credits->credit_transfers(tenant, *pages));
}

handler_result finance_cost_preview(route_call& c) {
  const std::string tenant = c.query.get("tenant_id").value_or("");
  const std::string period = c.query.get("period").value_or(billing::period_of(c.now_s()));
  if (tenant.empty()) {
    co_return co_await c.fail(invalid_request("tenant_id is required.", "tenant_id"));
  }
  if (!billing::period_bounds(period)) {
    co_return co_await c.fail(
        invalid_request("period must be a calendar month, YYYY-MM (UTC).", "period"));
  }
  const std::int64_t now_s = c.now_s();
  std::vector<billing::fee_line> bundles;  // what the tenant's token bundles paid
  if (c.billing().credits != nullptr) {
    auto lines = co_await c.billing().credits->bundle_lines(tenant, period);
    if (!lines) co_return co_await c.fail(to_api_error(lines.error()));
    bundles = std::move(*lines);
  }
  co_await c.reply(c.billing().plans->cost_preview(tenant, period, now_s, std::move(bundles)));
}

}  // namespace tollgate::gateway::routes
