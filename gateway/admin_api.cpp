// The admin and finance APIs: see admin_api.hpp.
#include "gateway/admin_api.hpp"

#include <openssl/crypto.h>

#include <algorithm>
#include <charconv>
#include <limits>

#include "billing/budget_store.hpp"
#include "billing/credit_store.hpp"
#include "billing/credits.hpp"
#include "billing/invoice_store.hpp"
#include "billing/period_pricing.hpp"
#include "billing/plan_store.hpp"
#include "billing/price_book.hpp"
#include "billing/tenant_store.hpp"
#include "core/bearer_token.hpp"
#include "core/json_dom.hpp"
#include "core/limits.hpp"
#include "core/request_id.hpp"
#include "gateway/alert_dispatcher.hpp"
#include "gateway/budget_guard.hpp"
#include "gateway/query_params.hpp"
#include "gateway/usage_report.hpp"

namespace tollgate::gateway {
namespace {

namespace bhttp = boost::beast::http;
using billing::store_result;

using limits::admin_name_bytes_max;
using limits::model_name_bytes_max;
using limits::unix_seconds_max;

bool token_matches(std::string_view authorization, const std::string& token) {
  const std::optional<std::string_view> given = http::bearer_token(authorization);
  return !token.empty() && given && given->size() == token.size() &&
         CRYPTO_memcmp(given->data(), token.data(), token.size()) == 0;
}

api_error unauthorized(std::string message) {
  api_error e;
  e.status = 401;
  e.type = "invalid_request_error";
  e.message = std::move(message);
  e.code = "invalid_api_key";
  return e;
}

api_error forbidden(std::string message) {
  api_error e;
  e.status = 403;
  e.type = "invalid_request_error";
  e.message = std::move(message);
  e.code = "insufficient_permissions";
  return e;
}

}  // namespace

api_error to_api_error(const billing::store_error& s) {
  api_error e;
  e.status = s.status;
  e.type = s.status >= 500 ? "api_error" : "invalid_request_error";
  e.message = s.message;
  e.code = s.code;
  return e;
}

namespace {

std::vector<std::string_view> split_path(std::string_view path) {
  std::vector<std::string_view> parts;
  std::size_t at = 0;
  while (at < path.size()) {
    const auto slash = path.find('/', at);
    const auto part = path.substr(at, slash == std::string_view::npos ? slash : slash - at);
    if (!part.empty()) parts.push_back(part);
    if (slash == std::string_view::npos) break;
    at = slash + 1;
  }
  return parts;
}

// A request body's fields, checked one by one; the first problem becomes a 400.
class body_reader {
 public:
  explicit body_reader(std::string_view text) {
    if (text.empty()) text = "{}";
    doc_ = json::document::parse(text);
    if (!doc_ || !doc_->root().is_object()) error_ = invalid_request("The body must be a JSON object.");
  }
  bool ok() const { return !error_; }
  const api_error& error() const { return *error_; }
  bool has(std::string_view key) const { return ok() && doc_->root().find(key).valid(); }

  std::optional<std::string> name(std::string_view key, bool required) {
    if (!ok()) return std::nullopt;
    const json::value v = doc_->root().find(key);
    if (!v.valid()) {
      if (required) fail(std::string(key) + " is required.", key);
      return std::nullopt;
    }
    if (!v.is_string() || v.as_string().empty() || v.as_string().size() > admin_name_bytes_max) {
      fail(std::string(key) + " must be a string of 1 to " + std::to_string(admin_name_bytes_max) +
               " bytes.", key);
      return std::nullopt;
    }
    return std::string(v.as_string());
  }
  std::optional<std::string> status(std::string_view allowed_a, std::string_view allowed_b) {
    if (!ok()) return std::nullopt;
    const json::value v = doc_->root().find("status");
    if (!v.valid()) return std::nullopt;
    if (!v.is_string() || (v.as_string() != allowed_a && v.as_string() != allowed_b)) {
      fail("status must be " + std::string(allowed_a) + " or " + std::string(allowed_b) + ".",
           "status");
      return std::nullopt;
    }
    return std::string(v.as_string());
  }
  // One of `allowed` (absent: nullopt, or a 400 when required).
  std::optional<std::string> choice(std::string_view key,
                                    std::initializer_list<std::string_view> allowed,
                                    bool required) {
    if (!ok()) return std::nullopt;
    const json::value v = doc_->root().find(key);
    if (!v.valid()) {
      if (required) fail(std::string(key) + " is required.", key);
      return std::nullopt;
    }
    std::string list;
    for (auto a : allowed) {
      if (v.is_string() && v.as_string() == a) return std::string(a);
      list += (list.empty() ? "" : ", ") + std::string(a);
    }
    fail(std::string(key) + " must be one of " + list + ".", key);
    return std::nullopt;
  }
  // Absent: nullopt. Null: optional holding nullopt. A number: its value.
  std::optional<std::optional<std::int64_t>> nullable_int(std::string_view key, std::int64_t min,
                                                          std::int64_t max) {
    if (!ok()) return std::nullopt;
    const json::value v = doc_->root().find(key);
    if (!v.valid()) return std::nullopt;
    if (v.is_null()) return std::optional<std::int64_t>{};
    if (!v.is_int64() || v.as_int64() < min || v.as_int64() > max) {
      fail(std::string(key) + " must be an integer between " + std::to_string(min) + " and " +
               std::to_string(max) + (min == 0 && max > 1'000'000'000 ? " (unix seconds)" : "") +
               " or null.",
           key);
      return std::nullopt;
    }
    return std::optional<std::int64_t>{v.as_int64()};
  }
  std::optional<std::optional<std::vector<std::string>>> models(std::string_view key) {
    if (!ok()) return std::nullopt;
    const json::value v = doc_->root().find(key);
    if (!v.valid()) return std::nullopt;
    if (v.is_null()) return std::optional<std::vector<std::string>>{};
    std::vector<std::string> out;
    bool good = v.is_array();
    if (good) {
      v.for_each_element([&](json::value m) {
        if (!m.is_string() || m.as_string().empty() ||
            m.as_string().size() > model_name_bytes_max ||
            m.as_string().find('\n') != std::string_view::npos) {
          good = false;
        } else {
          out.emplace_back(m.as_string());
        }
      });
    }
    if (!good) {
      fail(std::string(key) + " must be null or an array of model names.", key);
      return std::nullopt;
    }
    return std::optional<std::vector<std::string>>{std::move(out)};
  }
  // Alert thresholds: an array of at most 10 distinct percents, 1..1000 (absent: nullopt).
  std::optional<std::vector<int>> thresholds(std::string_view key) {
    if (!ok()) return std::nullopt;
    const json::value v = doc_->root().find(key);
    if (!v.valid()) return std::nullopt;
    std::vector<int> out;
    bool good = v.is_array() && v.size() <= limits::alert_thresholds_max;
    if (good) {
      v.for_each_element([&](json::value t) {
        if (!t.is_int64() || t.as_int64() < 1 || t.as_int64() > limits::alert_percent_max) {
          good = false;
        } else {
          out.push_back(static_cast<int>(t.as_int64()));
        }
      });
    }
    std::sort(out.begin(), out.end());
    if (!good || std::adjacent_find(out.begin(), out.end()) != out.end()) {
      fail(std::string(key) + " must be an array of at most 10 distinct percents, 1 to 1000.",
           key);
      return std::nullopt;
    }
    return out;
  }
  // A price book's `models` (billing/price_book), checked and in canonical JSON.
  std::optional<std::string> prices(billing::tier_mode mode, billing::tier_scope scope) {
    if (!ok()) return std::nullopt;
    const json::value v = doc_->root().find("models");
    if (!v.valid()) {
      fail("models is required.", "models");
      return std::nullopt;
    }
    auto parsed = billing::parse_model_prices(v, mode, scope);
    if (!parsed) {
      fail(parsed.error() + ".", "models");
      return std::nullopt;
    }
    return billing::model_prices_json(*parsed);
  }
  // A boolean (absent: false).
  bool flag(std::string_view key) {
    if (!ok()) return false;
    const json::value v = doc_->root().find(key);
    if (!v.valid()) return false;
    if (!v.is_bool()) {
      fail(std::string(key) + " must be true or false.", key);
      return false;
    }
    return v.as_bool();
  }
  // An ISO 4217 currency code: three capital letters.
  std::optional<std::string> currency(std::string_view key) {
    if (!ok()) return std::nullopt;
    const json::value v = doc_->root().find(key);
    const bool good = v.valid() && v.is_string() && v.as_string().size() == 3 &&
                      std::all_of(v.as_string().begin(), v.as_string().end(),
                                  [](char c) { return c >= 'A' && c <= 'Z'; });
    if (!good) {
      fail(std::string(key) + " must be an ISO 4217 code such as \"USD\".", key);
      return std::nullopt;
    }
    return std::string(v.as_string());
  }
  // A webhook URL (http[s]://host[:port]/path). Absent: nullopt. Null: optional holding nullopt.
  std::optional<std::optional<std::string>> webhook_url(std::string_view key) {
    if (!ok()) return std::nullopt;
    const json::value v = doc_->root().find(key);
    if (!v.valid()) return std::nullopt;
    if (v.is_null()) return std::optional<std::string>{};
    if (!v.is_string() || !parse_webhook_url(v.as_string())) {
      fail(std::string(key) + " must be an http:// or https:// URL with a host.",
           key);
      return std::nullopt;
    }
    return std::optional<std::string>{std::string(v.as_string())};
  }
  void reject_unknown(std::initializer_list<std::string_view> known) {
    if (!ok()) return;
    doc_->root().for_each_member([&](std::string_view key, json::value) {
      if (!ok()) return;
      for (auto k : known) {
        if (k == key) return;
      }
      fail("Unknown field `" + std::string(key) + "`.", key);
    });
  }

  // Records a 400 about `param` (the first failure wins).
  void fail(std::string message, std::string_view param) {
    if (!error_) error_ = invalid_request(std::move(message), std::string(param), "invalid_value");
  }

 private:
  std::optional<json::document> doc_;
  std::optional<api_error> error_;
};

}  // namespace

result<billing::page_request> page_from(const query_params& q) {
  billing::page_request p;
  if (const auto l = q.get("limit")) {
    int v = 0;
    auto [end, ec] = std::from_chars(l->data(), l->data() + l->size(), v);
    if (ec != std::errc() || end != l->data() + l->size() || v < 1 || v > static_cast<int>(limits::admin_page_limit_max)) {
      return invalid_request("limit must be between 1 and 100.", "limit", "invalid_value");
    }
    p.limit = v;
  }
  if (const auto a = q.get("after")) p.after = *a;
  return p;
}

namespace {

// The operator named in x-tollgate-actor (tollctl sends the login name), for the audit log.
std::string actor_of(const http::request& req) {
  const std::string_view given = req["x-tollgate-actor"];
  std::string actor = "admin";
  if (!given.empty() && given.size() <= limits::admin_actor_chars_max && is_valid_client_request_id(given)) {
    actor += ":" + std::string(given);
  }
  return actor;
}

}  // namespace


bool admin_api::owns(std::string_view path) {
  return path.rfind("/admin/", 0) == 0 || path.rfind("/finance/", 0) == 0;
}

boost::asio::awaitable<void> admin_api::handle(http::exchange& ex) {
  const std::string_view path = ex.path();
  const std::string_view authorization = ex.req()[bhttp::field::authorization];
  const bool is_admin = token_matches(authorization, auth_.admin_token);
  if (path.rfind("/admin/", 0) == 0) {
    ex.set_route("/admin");
    if (auth_.admin_token.empty()) {
      co_await ex.send_error(not_found_error("The admin API is disabled: no admin token is "
                                             "configured (auth.admin_token)."));
      co_return;
    }
    if (!is_admin) {
      if (token_matches(authorization, auth_.finance_token)) {
        co_await ex.send_error(forbidden("The finance token is read-only and cannot use the "
                                         "admin API."));
      } else {
        co_await ex.send_error(unauthorized("The admin API needs `Authorization: Bearer <admin "
                                            "token>`."));
      }
      co_return;
    }
    co_await handle_admin(ex, path.substr(std::string_view("/admin").size()), actor_of(ex.req()));
    co_return;
  }
  ex.set_route("/finance");
  if (auth_.finance_token.empty() && auth_.admin_token.empty()) {
    co_await ex.send_error(not_found_error("The finance API is disabled: no finance token is "
                                           "configured (auth.finance_token)."));
    co_return;
  }
  if (!is_admin && !token_matches(authorization, auth_.finance_token)) {
    co_await ex.send_error(unauthorized("The finance API needs `Authorization: Bearer <finance "
                                        "token>`."));
    co_return;
  }
  if (ex.req().method() != bhttp::verb::get) {
    co_await ex.send_error(forbidden("The finance API is read-only."));
    co_return;
  }
  co_await handle_finance(ex, path.substr(std::string_view("/finance").size()));
}

boost::asio::awaitable<void> admin_api::handle_admin(http::exchange& ex, std::string_view path,
                                                     std::string actor) {
  const auto parts = split_path(path);  // e.g. v1, keys, key_123, rotate
  const auto method = ex.req().method();
  const bool get = method == bhttp::verb::get;
  const bool post = method == bhttp::verb::post;
  auto query = query_params::parse(ex.req().target());
  if (!query) {
    co_await ex.send_error(invalid_request("The query string has a bad percent-escape."));
    co_return;
  }
  if (parts.size() < 2 || parts[0] != "v1") {
    co_await ex.send_unknown_url();
    co_return;
  }
  const std::string_view kind = parts[1];
  const std::string id = parts.size() >= 3 ? std::string(parts[2]) : "";
  const std::string_view action = parts.size() >= 4 ? parts[3] : "";
  if (parts.size() > 4 || (kind != "tenants" && kind != "projects" && kind != "keys" &&
                           kind != "budgets" && kind != "audit_log" && kind != "price_books" &&
                           kind != "invoices" && kind != "credit_grants" && kind != "credits" &&
                           kind != "batches")) {
    co_await ex.send_unknown_url();
    co_return;
  }
  body_reader body(post ? std::string_view(ex.req().body()) : std::string_view{});
  // Each route picks the store operation (not started yet); one co_await below runs it.
  std::optional<boost::asio::awaitable<store_result>> op;
  unsigned created_status = 200;

  auto pages = page_from(*query);
  if (get && !pages) {
    co_await ex.send_error(pages.error());
    co_return;
  }

  if (kind == "budgets" && id == "reconcile" && action.empty() && post) {
    body.reject_unknown({"tenant_id"});
    auto tenant = body.name("tenant_id", true);
    if (!body.ok()) {
      co_await ex.send_error(body.error());
      co_return;
    }
    if (budgets_ == nullptr) {
      co_await ex.send_error(not_found_error("Budgets are off on this gateway (budgets.redis).",
                                             "budgets_disabled"));
      co_return;
    }
    auto report = co_await budgets_->reconcile(ex.worker_index(), *tenant);
    if (!report) {
      co_await ex.send_error(report.error());
      co_return;
    }
    http::response res{bhttp::status::ok, ex.req().version()};
    res.set(bhttp::field::content_type, "application/json");
    res.body() = std::move(*report);
    co_await ex.send(std::move(res));
    co_return;
  }

  if (kind == "tenants") {
    if (id.empty() && post) {
      body.reject_unknown({"name", "time_zone"});
      auto name = body.name("name", true);
      auto zone = body.name("time_zone", false);
      if (body.ok()) {
        op = billing_.tenants->create_tenant(*name, zone, actor);
        created_status = 201;
      }
    } else if (id.empty() && get) {
      op = billing_.tenants->list_tenants(*pages);
    } else if (!id.empty() && action.empty() && get) {
      op = billing_.tenants->get_tenant(id);
    } else if (!id.empty() && action.empty() && post) {
      body.reject_unknown({"name", "status", "time_zone"});
      auto name = body.name("name", false);
      auto status = body.status("active", "disabled");
      auto zone = body.name("time_zone", false);
      if (body.ok()) {
        op = billing_.tenants->update_tenant(id, name, status, zone, actor);
      }
    } else if (!id.empty() && action == "projects" && post) {
      body.reject_unknown({"name"});
      auto name = body.name("name", true);
      if (body.ok()) {
        op = billing_.tenants->create_project(id, *name, actor);
        created_status = 201;
      }
    } else if (!id.empty() && action == "projects" && get) {
      op = billing_.tenants->list_projects(id, *pages);
    } else if (!id.empty() && action == "credit_grants" && post) {
      body.reject_unknown({"id", "kind", "amount_micros", "price_paid_micros", "effective_at",
                           "expires_at", "priority", "models", "memo"});
      billing::credit_store::credit_grant_spec spec;
      auto grant_id = body.name("id", false);
      auto grant_kind = body.choice("kind", {"purchased", "promotional"}, true);
      auto amount = body.nullable_int("amount_micros", 1, billing::credit_micros_max);
      auto paid = body.nullable_int("price_paid_micros", 0, billing::credit_micros_max);
      auto effective = body.nullable_int("effective_at", 0, unix_seconds_max);
      auto expires = body.nullable_int("expires_at", 0, unix_seconds_max);
      auto priority = body.nullable_int("priority", 0, limits::credit_priority_max);
      auto models = body.models("models");
      auto memo = body.name("memo", false);
      if (body.ok()) {
        const std::int64_t now_s = unix_ms(clock_.wall_now()) / 1000;
        spec.tenant_id = id;
        spec.kind = *grant_kind;
        spec.effective_at_s = effective && *effective ? **effective : now_s;
        if (expires && *expires) spec.expires_at_s = **expires;
        if (priority && *priority) spec.priority = static_cast<int>(**priority);
        if (models && *models) spec.models = **models;
        spec.memo = memo.value_or("");
        if (paid && *paid) spec.price_paid_micros = **paid;
        if (!amount || !*amount) {
          body.fail("amount_micros is required: a positive integer (micro-units).",
                    "amount_micros");
        } else if ((spec.kind == "purchased") != spec.price_paid_micros.has_value()) {
          body.fail("price_paid_micros is required for a purchased grant and not allowed for a "
                    "promotional one.",
                    "price_paid_micros");
        } else if (spec.expires_at_s && *spec.expires_at_s <= spec.effective_at_s) {
          body.fail("expires_at must be after effective_at.", "expires_at");
        } else if (grant_id && !billing::is_credit_grant_id(*grant_id)) {
          body.fail("id must be cg_ and 1 to 64 letters, digits, '-' or '_'.", "id");
        } else {
          spec.amount_micros = **amount;
          spec.id = grant_id.value_or("");
          op = billing_.credits->grant_credit(std::move(spec), actor);
          created_status = 201;
        }
      }
    } else if (!id.empty() && action == "credits" && get) {
      op = billing_.credits->credit_balance(id);
    } else if (!id.empty() && action == "credit_transfers" && get) {
      op = billing_.credits->credit_transfers(id, *pages);
    } else if (!id.empty() && action == "plan" && get) {
      op = billing_.plans->get_tenant_plan(id);
    } else if (!id.empty() && action == "plan" && post) {
      body.reject_unknown({"price_book_id", "batch_discount_bp", "settlement_mode"});
      billing::plan_store::plan_spec spec;
      auto book = body.name("price_book_id", true);
      auto discount = body.nullable_int("batch_discount_bp", 0, limits::basis_points_max);
      auto mode = body.choice("settlement_mode", {"credit_then_invoice", "credit_only"}, false);
      if (body.ok()) {
        spec.tenant_id = id;
        spec.book_id = *book;
        if (discount && *discount) spec.batch_discount_bp = static_cast<int>(**discount);
        spec.settlement_mode = mode;
        op = billing_.plans->set_tenant_plan(std::move(spec), actor);
      }
    }
  } else if (kind == "price_books") {
    if (id.empty() && get) {
      op = billing_.plans->list_price_books(*pages);
    } else if (id.empty() && post) {
      body.reject_unknown({"name", "currency", "tier_mode", "tier_scope", "effective_at", "models"});
      billing::plan_store::price_book_spec spec;
      auto name = body.name("name", true);
      auto currency = body.currency("currency");
      auto mode = body.choice("tier_mode", {"graduated", "volume"}, false);
      auto scope = body.choice("tier_scope", {"model", "all_models"}, false);
      auto effective = body.nullable_int("effective_at", 0, unix_seconds_max);
      spec.tier_mode = mode.value_or("graduated");
      spec.tier_scope = scope.value_or("model");
      auto prices = body.prices(billing::tier_mode_of(spec.tier_mode),
                                billing::tier_scope_of(spec.tier_scope));
      if (body.ok()) {
        spec.name = *name;
        spec.currency = *currency;
        spec.effective_at_s = effective && *effective ? **effective : unix_ms(clock_.wall_now()) / 1000;
        spec.prices_json = std::move(*prices);
        op = billing_.plans->create_price_book(std::move(spec), actor);
        created_status = 201;
      }
    } else if (!id.empty() && action.empty() && get) {
      op = billing_.plans->get_price_book(id);
    } else if (!id.empty() && action == "versions" && post) {
      // The new prices are checked against the book's own tier mode and scope.
      body.reject_unknown({"effective_at", "models"});
      auto effective = body.nullable_int("effective_at", 0, unix_seconds_max);
      if (!body.ok()) {
        co_await ex.send_error(body.error());
        co_return;
      }
      auto kind_op = billing_.plans->price_book_kind(id);
      auto book_kind = co_await on_billing(billing_, std::move(kind_op));
      if (!book_kind) {
        co_await ex.send_error(to_api_error(book_kind.error()));
        co_return;
      }
      auto prices = body.prices(book_kind->mode, book_kind->scope);
      if (body.ok()) {
        const std::int64_t at =
            effective && *effective ? **effective : unix_ms(clock_.wall_now()) / 1000;
        op = billing_.plans->add_price_book_version(id, at, std::move(*prices), actor);
        created_status = 201;
      }
    }
  } else if (kind == "projects") {
    if (id.empty() && get) {
      op = billing_.tenants->list_projects(query->get("tenant_id").value_or(""), *pages);
    } else if (id.empty() && post) {
      body.reject_unknown({"tenant_id", "name"});
      auto tenant = body.name("tenant_id", true);
      auto name = body.name("name", true);
      if (body.ok()) {
        op = billing_.tenants->create_project(*tenant, *name, actor);
        created_status = 201;
      }
    } else if (!id.empty() && action.empty() && get) {
      op = billing_.tenants->get_project(id);
    } else if (!id.empty() && action.empty() && post) {
      body.reject_unknown({"name", "status"});
      auto name = body.name("name", false);
      auto status = body.status("active", "disabled");
      if (body.ok()) {
        op = billing_.tenants->update_project(id, name, status, actor);
      }
    }
  } else if (kind == "keys") {
    if (id.empty() && get) {
      op = billing_.tenants->list_keys(query->get("tenant_id").value_or(""),
                                       query->get("project_id").value_or(""), *pages);
    } else if (id.empty() && post) {
      body.reject_unknown({"tenant_id", "project_id", "name", "expires_at", "allowed_models"});
      billing::tenant_store::key_spec spec;
      auto tenant = body.name("tenant_id", true);
      auto project = body.name("project_id", false);
      auto name = body.name("name", false);
      auto expires = body.nullable_int("expires_at", 0, unix_seconds_max);
      auto models = body.models("allowed_models");
      if (body.ok()) {
        spec.tenant_id = *tenant;
        spec.project_id = project.value_or("");
        spec.name = name.value_or("");
        if (expires) spec.expires_at_s = *expires;
        if (models) spec.allowed_models = *models;
        op = billing_.tenants->create_key(spec, actor);
        created_status = 201;
      }
    } else if (!id.empty() && action.empty() && get) {
      op = billing_.tenants->get_key(id);
    } else if (!id.empty() && action.empty() && post) {
      body.reject_unknown({"name", "expires_at", "allowed_models"});
      billing::tenant_store::key_update u;
      u.name = body.name("name", false);
      auto expires = body.nullable_int("expires_at", 0, unix_seconds_max);
      auto models = body.models("allowed_models");
      if (body.ok()) {
        u.set_expires = expires.has_value();
        if (expires) u.expires_at_s = *expires;
        u.set_models = models.has_value();
        if (models) u.allowed_models = *models;
        op = billing_.tenants->update_key(id, u, actor);
      }
    } else if (!id.empty() && ((action == "revoke" && post) ||
                               (action.empty() && method == bhttp::verb::delete_))) {
      op = billing_.tenants->revoke_key(id, actor);
    } else if (!id.empty() && action == "rotate" && post) {
      body.reject_unknown({"grace_seconds"});
      auto grace = body.nullable_int("grace_seconds", 0, limits::key_rotate_grace_s_max);
      if (body.ok()) {
        const std::int64_t g = grace && *grace ? **grace : 0;
        op = billing_.tenants->rotate_key(id, g, actor);
        created_status = 201;
      }
    }
  } else if (kind == "budgets") {
    if (id.empty() && get) {
      op = billing_.budgets->list_budgets(query->get("tenant_id").value_or(""), *pages);
    } else if (id.empty() && post) {
      body.reject_unknown({"tenant_id", "scope", "scope_id", "metric", "window", "limit", "mode",
                           "alert_thresholds", "alert_webhook_url"});
      billing::budget_store::budget_spec spec;
      auto tenant = body.name("tenant_id", true);
      auto scope = body.choice("scope", {"tenant", "project", "key"}, false);
      auto scope_id = body.name("scope_id", false);
      auto metric = body.choice("metric", {"tokens", "requests", "spend"}, true);
      auto window = body.choice("window", {"minute", "hour", "day", "month", "lifetime"}, true);
      auto limit = body.nullable_int("limit", 0, std::numeric_limits<std::int64_t>::max() / 4);
      auto mode = body.choice("mode", {"hard", "soft"}, false);
      auto thresholds = body.thresholds("alert_thresholds");
      auto webhook = body.webhook_url("alert_webhook_url");
      if (body.ok() && (!limit || !*limit)) {
        co_await ex.send_error(invalid_request("limit (an integer) is required.", "limit",
                                               "invalid_value"));
        co_return;
      }
      if (body.ok() && (scope.value_or("tenant") == "tenant") != !scope_id) {
        co_await ex.send_error(invalid_request(
            "scope_id names the project or key for scope project or key, and only then.",
            "scope_id", "invalid_value"));
        co_return;
      }
      if (body.ok()) {
        spec.tenant_id = *tenant;
        spec.scope = scope.value_or("tenant");
        spec.scope_id = scope_id.value_or("");
        spec.metric = *metric;
        spec.window = *window;
        spec.limit = **limit;
        spec.mode = mode.value_or("hard");
        spec.alert_thresholds = thresholds.value_or(std::vector<int>{});
        if (webhook && *webhook) spec.alert_webhook_url = **webhook;
        op = billing_.budgets->create_budget(spec, actor);
        created_status = 201;
      }
    } else if (!id.empty() && action.empty() && get) {
      op = billing_.budgets->get_budget(id);
    } else if (!id.empty() && action.empty() && post) {
      body.reject_unknown({"limit", "mode", "status", "alert_thresholds", "alert_webhook_url"});
      billing::budget_store::budget_update update;
      auto limit = body.nullable_int("limit", 0, std::numeric_limits<std::int64_t>::max() / 4);
      update.mode = body.choice("mode", {"hard", "soft"}, false);
      update.status = body.status("active", "disabled");
      update.alert_thresholds = body.thresholds("alert_thresholds");
      auto webhook = body.webhook_url("alert_webhook_url");
      if (body.ok()) {
        if (limit && *limit) update.limit = **limit;
        if (webhook) {
          update.set_webhook = true;
          update.alert_webhook_url = *webhook;
        }
        op = billing_.budgets->update_budget(id, std::move(update), actor);
      }
    } else if (!id.empty() && action == "alerts" && get) {
      op = billing_.budgets->list_budget_alerts(id);
    }
  } else if (kind == "invoices" && id == "run" && action.empty() && post) {
    body.reject_unknown({"period", "tenant_id", "finalize"});
    auto period = body.name("period", true);
    auto tenant = body.name("tenant_id", false);
    const bool finalize = body.has("finalize") && body.flag("finalize");
    if (body.ok()) {
      const std::int64_t now_s = unix_ms(clock_.wall_now()) / 1000;
      op = billing_.invoices->run_invoices(
          *period, tenant.value_or(""), finalize, now_s,
          static_cast<std::int64_t>(invoices_.grace_hours) * 3600, actor);
    }
  } else if (kind == "credit_grants" && !id.empty() && action.empty() && get) {
    op = billing_.credits->get_credit_grant(id);
  } else if (kind == "credits" && id == "expire" && action.empty() && post) {
    body.reject_unknown({"at"});
    auto at = body.nullable_int("at", 0, unix_seconds_max);
    if (body.ok()) {
      op = billing_.credits->expire_credits(at && *at ? **at : unix_ms(clock_.wall_now()) / 1000);
    }
  } else if (kind == "batches" && id.empty() && get) {
    op = billing_.batches->list_all_batches(query->get("tenant_id").value_or(""), *pages);
  } else if (kind == "batches" && action.empty() && get) {
    op = billing_.batches->get_any_batch(id);
  } else if (kind == "audit_log" && id.empty() && get) {
    op = billing_.tenants->list_audit(query->get("tenant_id").value_or(""), *pages);
  }

  std::optional<store_result> outcome;
  if (op) outcome = co_await on_billing(billing_, std::move(*op));

  if (!body.ok()) {
    co_await ex.send_error(body.error());
    co_return;
  }
  if (!outcome) {
    co_await ex.send_error(method_not_allowed("Unsupported method " +
                                              std::string(ex.req().method_string()) + " for " +
                                              std::string(ex.path()) + "."));
    co_return;
  }
  if (!*outcome) {
    co_await ex.send_error(to_api_error(outcome->error()));
    co_return;
  }
  // Budgets, and a plan's settlement mode or credit (the credit_only mirror), are cached by
  // every gateway: tell them.
  if (post && budgets_ != nullptr &&
      (kind == "budgets" || (kind == "tenants" && (action == "plan" || action == "credit_grants")))) {
    if (auto doc = json::document::parse(outcome->value())) {
      if (const json::value t = doc->root().find("tenant_id"); t.valid() && t.is_string()) {
        budgets_->budgets_changed(std::string(t.as_string()));
      }
    }
  }
  http::response res{static_cast<bhttp::status>(created_status), ex.req().version()};
  res.set(bhttp::field::content_type, "application/json");
  res.body() = std::move(outcome->value());
  co_await ex.send(std::move(res));
}

}  // namespace tollgate::gateway
