// The finance API (read-only, finance token): usage in OpenAI's shape or CSV, raw usage events,
// the cost preview, invoices (JSON or CSV) and credits: admin_api::handle_finance. The
// routing and the admin routes are in admin_api.cpp.
#include "billing/credit_store.hpp"
#include "billing/invoice_store.hpp"
#include "billing/invoicing.hpp"
#include "billing/period_pricing.hpp"
#include "billing/plan_store.hpp"
#include "core/request_id.hpp"
#include "gateway/admin_api.hpp"
#include "gateway/query_params.hpp"
#include "gateway/usage_report.hpp"

namespace tollgate::gateway {

namespace bhttp = boost::beast::http;

boost::asio::awaitable<void> admin_api::handle_finance(http::exchange& ex, std::string_view path) {
  auto query = query_params::parse(ex.req().target());
  if (!query) {
    co_await ex.send_error(invalid_request("The query string has a bad percent-escape."));
    co_return;
  }
  const std::int64_t now_s = unix_ms(clock_.wall_now()) / 1000;
  const std::string request_id = new_request_id();
  if (path == "/v1/usage") {
    auto req = parse_usage_request(*query, /*finance=*/true, now_s, usage_limits_);
    if (!req) {
      co_await ex.send_error(req.error(), request_id);
      co_return;
    }
    usage_request r = std::move(*req);
    co_await send_usage_report(ex, billing_, std::move(r), request_id);
    co_return;
  }
  if (path == "/v1/usage_events") {
    auto req = parse_events_request(*query, now_s);
    if (!req) {
      co_await ex.send_error(req.error(), request_id);
      co_return;
    }
    billing::events_query q = std::move(*req);
    auto op = billing_.usage->events(q);
    auto page = co_await on_billing(billing_, std::move(op));
    if (!page) {
      api_error e;
      e.status = page.error().sqlstate == "22023" ? 400 : 503;
      e.type = e.status == 400 ? "invalid_request_error" : "api_error";
      e.message = page.error().message;
      co_await ex.send_error(e, request_id);
      co_return;
    }
    std::string body = "{\"object\":\"list\",\"data\":" + page->data_json + ",\"has_more\":" +
                       (page->next.empty() ? "false" : "true") + ",\"next_page\":" +
                       (page->next.empty() ? "null" : "\"" + page->next + "\"") + "}";
    http::response res{bhttp::status::ok, ex.req().version()};
    res.set(bhttp::field::content_type, "application/json");
    res.body() = std::move(body);
    co_await ex.send(std::move(res));
    co_return;
  }
  if (path == "/v1/invoices" || path.rfind("/v1/invoices/", 0) == 0) {
    const std::string id = path.size() > 13 ? std::string(path.substr(13)) : "";
    if (id.find('/') != std::string::npos) {
      co_await ex.send_unknown_url(request_id);
      co_return;
    }
    std::optional<boost::asio::awaitable<billing::store_result>> op;
    if (id.empty()) {
      auto pages = page_from(*query);
      if (!pages) {
        co_await ex.send_error(pages.error(), request_id);
        co_return;
      }
      op = billing_.invoices->list_invoices(std::string(query->get("tenant_id").value_or("")),
                                            std::string(query->get("period").value_or("")),
                                            *pages);
    } else {
      op = billing_.invoices->get_invoice(id);
    }
    auto outcome = co_await on_billing(billing_, std::move(*op));
    if (!outcome) {
      co_await ex.send_error(to_api_error(outcome.error()), request_id);
      co_return;
    }
    http::response res{bhttp::status::ok, ex.req().version()};
    if (!id.empty() && query->get("format").value_or("") == "csv") {
      res.set(bhttp::field::content_type, "text/csv");
      res.body() = billing::invoice_csv(*outcome);
    } else {
      res.set(bhttp::field::content_type, "application/json");
      res.body() = std::move(outcome.value());
    }
    co_await ex.send(std::move(res));
    co_return;
  }
  if (path == "/v1/credits" || path == "/v1/credit_transfers") {
    const std::string tenant = std::string(query->get("tenant_id").value_or(""));
    auto pages = page_from(*query);
    if (tenant.empty() || !pages) {
      co_await ex.send_error(
          tenant.empty() ? invalid_request("tenant_id is required.", "tenant_id") : pages.error(),
          request_id);
      co_return;
    }
    auto op = path == "/v1/credits" ? billing_.credits->credit_balance(tenant)
                                    : billing_.credits->credit_transfers(tenant, *pages);
    auto outcome = co_await on_billing(billing_, std::move(op));
    if (!outcome) {
      co_await ex.send_error(to_api_error(outcome.error()), request_id);
      co_return;
    }
    http::response res{bhttp::status::ok, ex.req().version()};
    res.set(bhttp::field::content_type, "application/json");
    res.body() = std::move(outcome.value());
    co_await ex.send(std::move(res));
    co_return;
  }
  if (path == "/v1/cost_preview") {
    const std::string tenant = std::string(query->get("tenant_id").value_or(""));
    const std::string period = std::string(query->get("period").value_or(billing::period_of(now_s)));
    const auto bounds = billing::period_bounds(period);
    if (tenant.empty() || !bounds) {
      co_await ex.send_error(
          invalid_request(tenant.empty() ? "tenant_id is required."
                                         : "period must be a calendar month, YYYY-MM (UTC).",
                          tenant.empty() ? "tenant_id" : "period"),
          request_id);
      co_return;
    }
    auto op = billing_.plans->cost_preview(tenant, period);
    auto preview = co_await on_billing(billing_, std::move(op));
    if (!preview) {
      co_await ex.send_error(to_api_error(preview.error()), request_id);
      co_return;
    }
    http::response res{bhttp::status::ok, ex.req().version()};
    res.set(bhttp::field::content_type, "application/json");
    res.body() = std::move(preview.value());
    co_await ex.send(std::move(res));
    co_return;
  }
  co_await ex.send_unknown_url(request_id);
}

}  // namespace tollgate::gateway
