// The Batch API's HTTP side: see batch_api.hpp.
#include "gateway/batch_api.hpp"

#include "billing/api_keys.hpp"
#include "core/json_dom.hpp"
#include "gateway/admin_request.hpp"
#include "gateway/api_handler.hpp"
#include "gateway/batch_input.hpp"
#include "gateway/query_params.hpp"

namespace tollgate::gateway {
namespace net = boost::asio;
namespace bhttp = boost::beast::http;

namespace {

// The batch's metadata: an object of at most 16 string values (keys up to 64 characters,
// values up to 512), as OpenAI accepts. Empty when absent or null.
result<std::string> metadata_of(json::value root) {
  const json::value m = root.find("metadata");
  if (!m.valid() || m.is_null()) return std::string();
  if (!m.is_object() || m.size() > 16) {
    return invalid_request("metadata must be an object of at most 16 string values.", "metadata");
  }
  bool ok = true;
  m.for_each_member([&](std::string_view key, json::value v) {
    if (key.size() > 64 || !v.is_string() || v.as_string().size() > 512) ok = false;
  });
  if (!ok) {
    return invalid_request(
        "metadata keys are at most 64 characters and values strings of at "
        "most 512.",
        "metadata");
  }
  return std::string(m.source());
}

}  // namespace

std::string batch_line_request_id(std::string_view batch_id, std::string_view custom_id) {
  std::string input(batch_id);
  input.push_back('\0');
  input.append(custom_id);
  const std::string digest = billing::sha256_bytes(input);
  static constexpr char hex[] = "0123456789abcdef";
  std::string id = "req_";
  for (std::size_t i = 0; i < 16; ++i) {
    const auto b = static_cast<unsigned char>(digest[i]);
    id.push_back(hex[b >> 4]);
    id.push_back(hex[b & 0xF]);
  }
  return id;
}

net::awaitable<void> batch_api::handle(http::exchange& ex, const std::string& request_id,
                                       const caller& who) {
  const std::string_view path = ex.path();
  const bool get = ex.req().method() == bhttp::verb::get;
  const bool post = ex.req().method() == bhttp::verb::post;
  const bool del = ex.req().method() == bhttp::verb::delete_;
  auto query = query_params::parse(ex.req().target());
  if (!query) {
    const api_error e = invalid_request("The query string has a bad percent-escape.");
    co_await ex.send_error(e, request_id);
    co_return;
  }
  auto page = page_from(*query);

  // /v1/files[/{id}[/content]] and /v1/batches[/{id}[/cancel]]
  const bool files = path.rfind("/v1/files", 0) == 0;
  std::string_view rest = path.substr(files ? 9 : 11);
  std::string id;
  std::string_view action;
  if (!rest.empty()) {
    if (rest.front() != '/') {
      co_await ex.send_unknown_url(request_id);
      co_return;
    }
    rest.remove_prefix(1);
    const std::size_t slash = rest.find('/');
    id = std::string(rest.substr(0, slash));
    action = slash == std::string_view::npos ? std::string_view{} : rest.substr(slash + 1);
    if (id.empty() || id.size() > 64 ||
        (!action.empty() && action != (files ? "content" : "cancel"))) {
      co_await ex.send_unknown_url(request_id);
      co_return;
    }
  }
  const std::string& tenant = who.tenant_id;
  std::optional<net::awaitable<billing::store_result>> op;
  std::string_view allowed;
  if (files && id.empty()) {
    allowed = "GET, POST";
    if (post) {
      co_await upload(ex, request_id, who);
      co_return;
    }
    if (get && page) op = store_.list_files(tenant, query->get("purpose").value_or(""), *page);
  } else if (files && action.empty()) {
    allowed = "GET, DELETE";
    if (get) op = store_.get_file(tenant, id);
    if (del) op = store_.delete_file(tenant, id);
  } else if (files) {
    allowed = "GET";
    if (get) {
      auto content_op = store_.file_content(tenant, id);
      auto content = co_await on_billing(billing_, std::move(content_op));
      if (!content) {
        const api_error e = to_api_error(content.error());
        co_await ex.send_error(e, request_id);
        co_return;
      }
      http::response res{bhttp::status::ok, ex.req().version()};
      res.set(bhttp::field::content_type, "application/octet-stream");
      res.set("x-request-id", request_id);
      res.body() = std::move(content.value());
      co_await ex.send(std::move(res));
      co_return;
    }
  } else if (id.empty()) {
    allowed = "GET, POST";
    if (post) {
      co_await create_batch(ex, request_id, who);
      co_return;
    }
    if (get && page) op = store_.list_batches(tenant, *page);
  } else if (action.empty()) {
    allowed = "GET";
    if (get) op = store_.get_batch(tenant, id);
  } else {
    allowed = "POST";
    if (post) op = store_.cancel_batch(tenant, id);
  }
  if (!op) {
    if (get && id.empty() && !page) {
      co_await ex.send_error(page.error(), request_id);
    } else {
      co_await ex.send_method_not_allowed(allowed, request_id);
    }
    co_return;
  }
  auto outcome = co_await on_billing(billing_, std::move(*op));
  co_await send_json(ex, request_id, std::move(outcome));
}

net::awaitable<void> batch_api::send_json(http::exchange& ex, const std::string& request_id,
                                          billing::store_result outcome) {
  if (!outcome) {
    const api_error e = to_api_error(outcome.error());
    co_await ex.send_error(e, request_id);
    co_return;
  }
  co_await ex.send_json(200, std::move(outcome.value()), request_id);
}

net::awaitable<void> batch_api::upload(http::exchange& ex, const std::string& request_id,
                                       const caller& who) {
  auto parts = parse_multipart(ex.req()[bhttp::field::content_type], ex.req().body());
  if (!parts) {
    co_await ex.send_error(parts.error(), request_id);
    co_return;
  }
  const form_part* file = nullptr;
  std::string purpose;
  for (const auto& part : *parts) {
    if (part.name == "file") file = &part;
    if (part.name == "purpose") purpose = std::string(part.content);
  }
  std::optional<api_error> bad;
  if (purpose.empty()) {
    bad = invalid_request("Missing required parameter: 'purpose'.", "purpose");
  } else if (purpose != "batch") {
    bad = invalid_request(
        "purpose must be \"batch\" (the only purpose this gateway stores "
        "files for); got \"" +
            purpose.substr(0, 64) + "\".",
        "purpose");
  } else if (file == nullptr || !file->has_filename) {
    bad = invalid_request("Missing required parameter: 'file' (a file part).", "file");
  } else if (file->content.size() > config_.batches.max_file_bytes) {
    bad = invalid_request("The file is " + std::to_string(file->content.size()) +
                              " bytes; the most a batch input file may have is " +
                              std::to_string(config_.batches.max_file_bytes) + ".",
                          "file", "file_too_large");
  }
  if (bad) {
    co_await ex.send_error(*bad, request_id);
    co_return;
  }
  batch_file_limits limits;
  limits.max_lines = config_.batches.max_file_lines;
  auto lines = parse_batch_file(file->content, limits);
  if (!lines) {
    co_await ex.send_error(lines.error(), request_id);
    co_return;
  }
  std::vector<std::string_view> texts;
  texts.reserve(lines->size());
  for (const auto& line : *lines) texts.push_back(line.text);
  std::string filename = file->filename.substr(0, 255);
  auto create_op =
      store_.create_file(who.tenant_id, std::move(filename), "batch",
                         static_cast<std::int64_t>(file->content.size()), std::move(texts));
  auto outcome = co_await on_billing(billing_, std::move(create_op));
  co_await send_json(ex, request_id, std::move(outcome));
}

net::awaitable<void> batch_api::create_batch(http::exchange& ex, const std::string& request_id,
                                             const caller& who) {
  const std::string& text = ex.req().body();
  json::parse_error perr;
  const auto doc = json::document::parse(text, &perr);
  if (!doc || !doc->root().is_object()) {
    const api_error e = invalid_request("The body must be a JSON object.");
    co_await ex.send_error(e, request_id);
    co_return;
  }
  const json::value root = doc->root();
  const auto string_field = [&root](std::string_view name) -> std::string {
    const json::value v = root.find(name);
    return v.valid() && v.is_string() ? std::string(v.as_string()) : std::string();
  };
  const std::string input_file_id = string_field("input_file_id");
  const std::string endpoint = string_field("endpoint");
  const std::string window = string_field("completion_window");
  std::optional<api_error> bad;
  if (input_file_id.empty()) {
    bad = invalid_request("Missing required parameter: 'input_file_id'.", "input_file_id");
  } else if (endpoint != "/v1/chat/completions" && endpoint != "/v1/completions") {
    bad = invalid_request("endpoint must be \"/v1/chat/completions\" or \"/v1/completions\".",
                          "endpoint");
  } else if (window != "24h") {
    bad = invalid_request("completion_window must be \"24h\".", "completion_window");
  }
  auto metadata = metadata_of(root);
  if (!bad && !metadata) bad = metadata.error();
  if (bad) {
    co_await ex.send_error(*bad, request_id);
    co_return;
  }

  auto lines_op = store_.input_lines(who.tenant_id, input_file_id);
  auto stored = co_await on_billing(billing_, std::move(lines_op));
  if (!stored) {
    api_error e = to_api_error(stored.error());
    e.param = "input_file_id";
    co_await ex.send_error(e, request_id);
    co_return;
  }
  std::string content;
  for (const auto& line : *stored) content += line;
  batch_file_limits limits;
  limits.max_lines = config_.batches.max_file_lines;
  auto lines = parse_batch_file(content, limits);
  if (!lines) {
    co_await ex.send_error(lines.error(), request_id);
    co_return;
  }
  const endpoint_kind kind = endpoint == "/v1/chat/completions" ? endpoint_kind::chat_completions
                                                                : endpoint_kind::completions;
  auto refused = co_await api_.check_batch(ex.worker_index(), who, kind, *lines);
  if (refused) {
    co_await ex.send_error(*refused, request_id);
    co_return;
  }

  billing::new_batch batch;
  batch.id = billing::new_object_id("batch");
  batch.tenant_id = who.tenant_id;
  batch.project_id = who.project_id;
  batch.api_key_id = who.key_id;
  batch.endpoint = endpoint;
  batch.input_file_id = input_file_id;
  batch.completion_window = window;
  batch.metadata_json = std::move(*metadata);
  batch.lines.reserve(lines->size());
  for (const auto& line : *lines) {
    batch.lines.push_back({line.line_no, line.custom_id,
                           batch_line_request_id(batch.id, line.custom_id),
                           std::string(line.body)});
  }
  auto create_op = store_.create_batch(std::move(batch));
  auto outcome = co_await on_billing(billing_, std::move(create_op));
  co_await send_json(ex, request_id, std::move(outcome));
}

}  // namespace tollgate::gateway
