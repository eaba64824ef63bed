// The finance API (read-only, finance token): usage in OpenAI's shape or CSV, raw usage events,
// the cost preview, invoices (JSON or CSV) and credits: admin_api::handle_finance. The
// routing and the admin routes are in admin_api.cpp.
#include "billing/period_pricing.hpp"
#include "core/json_dom.hpp"
#include "core/request_id.hpp"
#include "gateway/admin_api.hpp"
#include "gateway/query_params.hpp"
#include "gateway/usage_report.hpp"

namespace tollgate::gateway {

namespace bhttp = boost::beast::http;

namespace {

// An invoice's lines as CSV (one row per line, then the total), from its JSON.
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

}  // namespace

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
    auto op = billing_.store->events(q);
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
      op = billing_.store->list_invoices(std::string(query->get("tenant_id").value_or("")),
                                         std::string(query->get("period").value_or("")), *pages);
    } else {
      op = billing_.store->get_invoice(id);
    }
    auto outcome = co_await on_billing(billing_, std::move(*op));
    if (!outcome) {
      co_await ex.send_error(to_api_error(outcome.error()), request_id);
      co_return;
    }
    http::response res{bhttp::status::ok, ex.req().version()};
    if (!id.empty() && query->get("format").value_or("") == "csv") {
      res.set(bhttp::field::content_type, "text/csv");
      res.body() = invoice_csv(*outcome);
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
    auto op = path == "/v1/credits" ? billing_.store->credit_balance(tenant)
                                    : billing_.store->credit_transfers(tenant, *pages);
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
    auto op = billing_.store->cost_preview(tenant, period);
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
