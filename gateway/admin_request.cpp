// The shared pieces of the admin and finance handlers: see admin_request.hpp.
#include "gateway/admin_request.hpp"

#include <openssl/crypto.h>

#include <algorithm>
#include <charconv>

#include "billing/credits.hpp"
#include "core/bearer_token.hpp"
#include "core/limits.hpp"
#include "core/request_id.hpp"
#include "gateway/webhook_url.hpp"
#include "metering/attribution.hpp"

namespace tollgate::gateway {

using limits::admin_name_bytes_max;
using limits::model_name_bytes_max;

bool token_matches(std::string_view authorization, const std::string& token) {
  const std::optional<std::string_view> given = http::bearer_token(authorization);
  return !token.empty() && given && given->size() == token.size() &&
         CRYPTO_memcmp(given->data(), token.data(), token.size()) == 0;
}

std::string actor_of(const http::request& req) {
  const std::string_view given = req["x-tollgate-actor"];
  std::string actor = "admin";
  if (!given.empty() && given.size() <= limits::admin_actor_chars_max &&
      is_valid_client_request_id(given)) {
    actor += ":" + std::string(given);
  }
  return actor;
}

api_error to_api_error(const billing::store_error& s) {
  api_error e;
  e.status = s.status;
  e.type = s.status >= 500 ? "api_error" : "invalid_request_error";
  e.message = s.message;
  e.code = s.code;
  if (s.status == 503) e.retry_after_s = 1;  // the database is away: try again shortly
  return e;
}

result<billing::page_request> page_from(const query_params& q) {
  billing::page_request p;
  if (const auto l = q.get("limit")) {
    int v = 0;
    auto [end, ec] = std::from_chars(l->data(), l->data() + l->size(), v);
    if (ec != std::errc() || end != l->data() + l->size() || v < 1 ||
        v > static_cast<int>(limits::admin_page_limit_max)) {
      return invalid_request("limit must be between 1 and 100.", "limit", "invalid_value");
    }
    p.limit = v;
  }
  if (const auto a = q.get("after")) p.after = *a;
  return p;
}

body_reader::body_reader(std::string_view text) {
  if (text.empty()) text = "{}";
  doc_ = json::document::parse(text);
  if (!doc_ || !doc_->root().is_object())
    error_ = invalid_request("The body must be a JSON object.");
}

std::optional<std::string> body_reader::name(std::string_view key, bool required) {
  if (required && ok() && !doc_->root().find(key).valid()) {
    fail(std::string(key) + " is required.", key);
    return std::nullopt;
  }
  return text(key, admin_name_bytes_max);
}
std::optional<std::string> body_reader::text(std::string_view key, std::uint64_t bytes_max) {
  if (!ok()) return std::nullopt;
  const json::value v = doc_->root().find(key);
  if (!v.valid()) return std::nullopt;
  if (!v.is_string() || v.as_string().empty() || v.as_string().size() > bytes_max) {
    fail(std::string(key) + " must be a string of 1 to " + std::to_string(bytes_max) + " bytes.",
         key);
    return std::nullopt;
  }
  return std::string(v.as_string());
}
std::optional<std::string> body_reader::status(std::string_view allowed_a,
                                               std::string_view allowed_b) {
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
std::optional<std::string> body_reader::choice(std::string_view key,
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
std::optional<std::optional<std::int64_t>> body_reader::nullable_int(std::string_view key,
                                                                     std::int64_t min,
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
std::optional<std::optional<std::vector<std::string>>> body_reader::models(std::string_view key) {
  return name_list(key, "model names");
}

std::optional<std::optional<std::vector<std::string>>> body_reader::name_list(
    std::string_view key, std::string_view what) {
  if (!ok()) return std::nullopt;
  const json::value v = doc_->root().find(key);
  if (!v.valid()) return std::nullopt;
  if (v.is_null()) return std::optional<std::vector<std::string>>{};
  std::vector<std::string> out;
  bool good = v.is_array();
  if (good) {
    v.for_each_element([&](json::value m) {
      if (!m.is_string() || m.as_string().empty() || m.as_string().size() > model_name_bytes_max ||
          m.as_string().find('\n') != std::string_view::npos) {
        good = false;
      } else {
        out.emplace_back(m.as_string());
      }
    });
  }
  if (!good) {
    fail(std::string(key) + " must be null or an array of " + std::string(what) + ".", key);
    return std::nullopt;
  }
  return std::optional<std::vector<std::string>>{std::move(out)};
}
std::optional<std::optional<std::string>> body_reader::tags(std::string_view key) {
  if (!ok()) return std::nullopt;
  const json::value v = doc_->root().find(key);
  if (!v.valid()) return std::nullopt;
  if (v.is_null()) return std::optional<std::string>{};
  auto tags = metering::tags_from_json(v);
  if (!tags.error.empty()) {
    fail(std::string(key) + " " + tags.error + ".", key);
    return std::nullopt;
  }
  if (tags.tags.empty()) return std::optional<std::string>{};
  return std::optional<std::string>{metering::attribution{{}, std::move(tags.tags), {}}.tags_json()};
}
// Alert thresholds: an array of at most 10 distinct percents, 1..1000 (absent: nullopt).
std::optional<std::vector<int>> body_reader::thresholds(std::string_view key) {
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
    fail(std::string(key) + " must be an array of at most 10 distinct percents, 1 to 1000.", key);
    return std::nullopt;
  }
  return out;
}
// A price book's `models` (billing/price_book), checked and in canonical JSON.
std::optional<std::string> body_reader::prices(billing::tier_mode mode, billing::tier_scope scope) {
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

bool body_reader::flag(std::string_view key) {
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
std::optional<std::string> body_reader::currency(std::string_view key) {
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
std::optional<std::optional<std::string>> body_reader::webhook_url(std::string_view key) {
  if (!ok()) return std::nullopt;
  const json::value v = doc_->root().find(key);
  if (!v.valid()) return std::nullopt;
  if (v.is_null()) return std::optional<std::string>{};
  if (!v.is_string() || !parse_webhook_url(v.as_string())) {
    fail(std::string(key) + " must be an http:// or https:// URL with a host.", key);
    return std::nullopt;
  }
  return std::optional<std::string>{std::string(v.as_string())};
}
void body_reader::reject_unknown(std::initializer_list<std::string_view> known) {
  if (!ok()) return;
  doc_->root().for_each_member([&](std::string_view key, json::value) {
    if (!ok()) return;
    for (auto k : known) {
      if (k == key) return;
    }
    fail("Unknown field `" + std::string(key) + "`.", key);
  });
}

void body_reader::fail(std::string message, std::string_view param) {
  if (!error_) error_ = invalid_request(std::move(message), std::string(param), "invalid_value");
}

}  // namespace tollgate::gateway
