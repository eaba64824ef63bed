// The operator listener: see operator_listener.hpp.
#include "gateway/operator_listener.hpp"

namespace tollgate::gateway {

namespace bhttp = boost::beast::http;

boost::asio::awaitable<void> operator_listener::handle(http::exchange& ex) {
  auto& req = ex.req();
  const std::string_view target = ex.path();
  if (console_ != nullptr && console_server::owns(target)) {
    co_await console_->handle(ex);
    co_return;
  }
  if (admin_router::owns(target)) {
    if (api_ == nullptr) {
      co_await ex.send_error(not_found_error(
          "The admin and finance APIs need a database: set database.url in the configuration."));
      co_return;
    }
    co_await api_->handle(ex);
    co_return;
  }
  if (target != "/healthz" && target != "/readyz" && target != "/metrics") {
    co_await ex.send_unknown_url();
    co_return;
  }
  ex.set_route(target == "/healthz" ? "/healthz" : target == "/readyz" ? "/readyz" : "/metrics");
  if (req.method() != bhttp::verb::get) {
    co_await ex.send_method_not_allowed("GET");
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
