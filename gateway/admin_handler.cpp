// The operator listener: see admin_handler.hpp.
#include "gateway/admin_handler.hpp"

namespace tollgate::gateway {

namespace bhttp = boost::beast::http;

boost::asio::awaitable<void> admin_handler::handle(http::exchange& ex) {
  auto& req = ex.req();
  std::string_view target = req.target();
  if (const auto q = target.find('?'); q != std::string_view::npos) target = target.substr(0, q);

  if (target != "/healthz" && target != "/readyz" && target != "/metrics") {
    co_await ex.send_error(not_found_error("Invalid URL (" + std::string(req.method_string()) +
                                           " " + std::string(target) + ")"));
    co_return;
  }
  ex.set_route(target == "/healthz" ? "/healthz" : target == "/readyz" ? "/readyz" : "/metrics");
  if (req.method() != bhttp::verb::get) {
    http::response res{bhttp::status::method_not_allowed, req.version()};
    res.set(bhttp::field::content_type, "application/json");
    res.set(bhttp::field::allow, "GET");
    res.body() = method_not_allowed("Method " + std::string(req.method_string()) +
                                    " is not allowed for " + std::string(target) + "; use GET.")
                     .to_json();
    co_await ex.send(std::move(res));
    co_return;
  }

  http::response res{bhttp::status::ok, req.version()};
  if (target == "/metrics") {
    res.set(bhttp::field::content_type, metrics::content_type);
    res.body() = registry_.render();
  } else {
    res.set(bhttp::field::content_type, "application/json");
    const bool ready = target == "/healthz" || !server_.draining();
    if (!ready) res.result(bhttp::status::service_unavailable);
    res.body() = ready ? "{\"status\":\"ok\"}" : "{\"status\":\"draining\"}";
  }
  co_await ex.send(std::move(res));
}

}  // namespace tollgate::gateway
