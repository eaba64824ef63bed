// The OpenAI-compatible API listener: see api_handler.hpp.
#include "gateway/api_handler.hpp"

#include <algorithm>
#include <charconv>
#include <functional>
#include <map>

#include <boost/beast/http/empty_body.hpp>
#include "backends/sse.hpp"
#include "core/assert.hpp"
#include "core/json_dom.hpp"
#include "core/json_text.hpp"
#include "core/limits.hpp"
#include "core/request_id.hpp"
#include "core/trace_context.hpp"
#include "gateway/batch_api.hpp"
#include "gateway/console_server.hpp"
#include "gateway/in_flight.hpp"
#include "gateway/query_params.hpp"
#include "gateway/request_count.hpp"
#include "gateway/request_state.hpp"
#include "gateway/responses_request.hpp"
#include "gateway/usage_report.hpp"
#include "metering/completion_text.hpp"
#include "metering/worst_case.hpp"

namespace tollgate::gateway {
namespace {

namespace bhttp = boost::beast::http;

std::string_view status_class(unsigned status) {
  if (status >= 500) return "5xx";
  if (status >= 400) return "4xx";
  if (status >= 300) return "3xx";
  return "2xx";
}

// The error code inside an upstream's OpenAI-shaped error body, or "upstream_http_<status>".
std::string upstream_error_code(const std::string& body, unsigned status) {
  if (const auto doc = json::document::parse(body); doc && doc->root().is_object()) {
    const json::value e = doc->root().find("error");
    if (e.valid() && e.is_object()) {
      for (const char* field : {"code", "type"}) {
        const json::value v = e.find(field);
        if (v.valid() && v.is_string()) return std::string(v.as_string());
      }
    }
  }
  return "upstream_http_" + std::to_string(status);
}

// Chunks carry "usage":null once include_usage is on; a client that did not ask for usage gets
// them as it would have without the option. A cheap textual cut of the exact compact form that
// OpenAI-compatible servers emit; anything else is left alone.
void strip_usage_null(std::string& data) {
  static constexpr std::string_view field = ",\"usage\":null";
  if (const auto at = data.find(field); at != std::string::npos) data.erase(at, field.size());
}

// The metered endpoints by path (the paths are also the routes' metric labels).
struct metered_route {
  std::string_view path;
  endpoint_kind kind;
};
constexpr metered_route metered_routes[] = {
    {"/v1/chat/completions", endpoint_kind::chat_completions},
    {"/v1/completions", endpoint_kind::completions},
    {"/v1/embeddings", endpoint_kind::embeddings},
    {"/v1/responses", endpoint_kind::responses},
};

const metered_route* metered_endpoint(std::string_view target) {
  for (const auto& r : metered_routes) {
    if (r.path == target) return &r;
  }
  return nullptr;
}

std::string model_object(std::string_view id, std::string_view owned_by, std::int64_t created) {
  json_object_writer w;
  w.add("id", id).add("object", "model").add("created", created).add("owned_by", owned_by);
  return w.finish();
}

}  // namespace

namespace {
// The request's trace: the caller's `traceparent` continued (a missing or invalid one starts a
// new trace, core/trace_context.hpp); the trace id goes on the usage record, and the header
// sent upstream names the gateway's own span as the parent.
void start_trace(metering::usage_record& rec, std::string& traceparent, std::string_view header) {
  const trace_context trace = trace_of(header);
  rec.trace_id = trace.trace_id;
  traceparent = child_traceparent(trace);
}
}  // namespace

struct api_handler::in_flight_list {
  proxy_state* head = nullptr;
};


void api_handler::record_in_flight(unsigned worker) {
  if (worker >= in_flight_.size()) return;
  for (proxy_state* st = in_flight_[worker]->head; st != nullptr; st = st->next_in_flight) {
    // A batch line is not recorded here: it runs again after the restart under the same
    // request id, and that run's row is the one to bill.
    if (st->recorded() || st->rec.batch) continue;
    // One still being admitted (waiting on its budgets, say) is refused by the drain.
    if (st->at == proxy_state::stage::admitting) st->at = proxy_state::stage::refused;
    st->rec.error_code = "drain_timeout";
    // A stream already answered 200 is billed for what it streamed (the gateway's count when
    // no usage arrived); a request still waiting for its upstream got no answer.
    finish(*st, st->stream_started ? 200 : 503, true);
  }
}

api_handler::api_handler(const gateway_config& config,
                         std::vector<std::shared_ptr<backends::upstream_pool>> pools,
                         std::unordered_map<std::string, metering::prompt_counter> counters,
                         metering::usage_sink& usage, metrics::registry& registry, logger& log,
                         const clock_source& clock, const billing_context* billing,
                         authenticator* auth, budget_guard* budgets)
    : config_(config),
      request_limits_{static_cast<std::int64_t>(config.metering.n_max)},
      pools_(std::move(pools)),
      counters_(std::move(counters)),
      usage_(usage),
      log_(log),
      clock_(clock),
      billing_(billing),
      auth_(auth),
      budgets_(budgets),
      quoter_(billing != nullptr ? std::make_unique<cost_quoter>(*billing, clock) : nullptr),
      models_created_unix_s_(unix_ms(clock.wall_now()) / 1000),
      upstream_requests_(registry.add_counter(
          "tollgate_upstream_requests_total",
          "Requests forwarded upstream, by upstream and outcome (status class or failure).",
          {"upstream", "outcome"})),
      upstream_ttft_(registry.add_histogram(
          "tollgate_upstream_time_to_first_token_seconds",
          "Streaming requests: time from the request being read to the first token event.",
          {"upstream"})),
      tokens_(registry.add_counter("tollgate_tokens_total",
                                   "Tokens reported by upstreams, by model and token class.",
                                   {"model", "class"})),
      client_disconnects_(registry
                              .add_counter("tollgate_client_disconnects_total",
                                           "Proxied requests whose client went away before the "
                                           "response was complete.")
                              .get()),
      usage_unreported_(registry.add_counter(
          "tollgate_usage_unreported_total",
          "Answered requests whose upstream reported no usage (billed by the gateway's own "
          "count, flagged estimated), by upstream.",
          {"upstream"})),
      usage_records_(registry
                         .add_counter("tollgate_usage_records_total",
                                      "Usage records handed to the usage sink.")
                         .get()),
      routed_(registry.add_counter("tollgate_routing_decisions_total",
                                   "Requests for a virtual model, by virtual model, the rule "
                                   "that chose and the model it chose.",
                                   {"model", "rule", "target"})),
      fallbacks_(registry.add_counter("tollgate_model_fallbacks_total",
                                      "Requests moved to a fallback model, by the model left, "
                                      "the fallback and the reason (the upstream's failure, or "
                                      "status_<code>).",
                                      {"from", "to", "reason"})) {
  for (std::size_t i = 0; i < pools_.size(); ++i) {
    in_flight_.push_back(std::make_unique<in_flight_list>());
    worker_metrics_.push_back(std::make_unique<worker_metrics>(
        worker_metrics{metrics::child_cache(upstream_requests_),
                       metrics::child_cache(upstream_ttft_),
                       metrics::child_cache(usage_unreported_), metrics::child_cache(routed_),
                       metrics::child_cache(fallbacks_)}));
  }
  for (const auto& m : config_.models) {
    model_tokens_[m.name] = {&tokens_.with({m.name, "prompt"}),
                             &tokens_.with({m.name, "completion"}),
                             &tokens_.with({m.name, "cached"})};
  }
}

api_handler::~api_handler() {
  // Requests still suspended (only after a drain timeout: their event loops were stopped) are
  // destroyed with the server, after this handler: detach them from the lists going away now.
  for (auto& list : in_flight_) {
    for (proxy_state* st = list->head; st != nullptr; st = st->next_in_flight) st->listed = false;
    list->head = nullptr;
  }
}

boost::asio::awaitable<void> api_handler::handle(http::exchange& ex) {
  auto& req = ex.req();
  const std::string_view target = ex.path();

  // The gateway's own id keys the ledger row: a client could repeat its own ids. A valid
  // client id (X-Client-Request-Id, or X-Request-Id) is kept beside it.
  std::string request_id = new_request_id();
  std::string_view client_id = req["x-client-request-id"];
  if (client_id.empty()) client_id = req["x-request-id"];
  std::string client_request_id =
      is_valid_client_request_id(client_id) ? std::string(client_id) : std::string();

  if (console_ != nullptr && console_server::owns(target)) {
    co_await console_->handle(ex);
    co_return;
  }
  const metered_route* metered = metered_endpoint(target);
  const bool completions = metered != nullptr;
  const bool models = target == "/v1/models" || target.rfind("/v1/models/", 0) == 0;
  const bool usage = target == "/v1/usage";
  const bool budget_list = target == "/v1/budgets";
  const bool batch_routes = target == "/v1/files" || target.rfind("/v1/files/", 0) == 0 ||
                            target == "/v1/batches" || target.rfind("/v1/batches/", 0) == 0;
  if (batch_routes) {
    ex.set_route(target.rfind("/v1/files", 0) == 0 ? "/v1/files" : "/v1/batches");
    if (batch_api_ == nullptr || auth_ == nullptr) {
      co_await ex.send_error(not_found_error("The Batch API needs a database: this gateway runs "
                                             "without one (database.url)."),
                             request_id);
      co_return;
    }
    result<caller> authenticated;
    if (const caller* checked = checked_caller_of(ex.checked())) {
      authenticated = *checked;  // the listener's key check authenticated it
    } else {
      authenticated = co_await auth_->authenticate(req[bhttp::field::authorization]);
    }
    if (!authenticated) {
      co_await ex.send_error(authenticated.error(), request_id);
      co_return;
    }
    co_await batch_api_->handle(ex, request_id, *authenticated);
    co_return;
  }
  if (!completions && !models && !usage && !budget_list) {
    co_await ex.send_unknown_url(request_id);
    co_return;
  }
  ex.set_route(completions ? metered->path
               : models    ? "/v1/models"
               : usage     ? "/v1/usage"
                           : "/v1/budgets");
  if (req.method() != (completions ? bhttp::verb::post : bhttp::verb::get)) {
    co_await ex.send_method_not_allowed(completions ? "POST" : "GET", request_id);
    co_return;
  }

  // Authenticate (with a database; without one every caller is anonymous).
  caller who;
  if (auth_ != nullptr) {
    const std::string_view authorization = req[bhttp::field::authorization];
    // The key holders' console reads with its session cookie (never sends a completion).
    const bool console_session =
        !completions && console_gate_ != nullptr && console_gate_->presents_session(req);
    // (Two statements, not one conditional co_await: GCC 12 destroys such temporaries twice.)
    result<caller> authenticated;
    if (console_session) {
      authenticated = co_await console_->key_holder(req);
    } else if (const caller* checked = checked_caller_of(ex.checked())) {
      authenticated = *checked;  // the listener's key check authenticated it
    } else {
      authenticated = co_await auth_->authenticate(authorization);
    }
    if (!authenticated) {
      co_await ex.send_error(authenticated.error(), request_id);
      co_return;
    }
    who = std::move(*authenticated);
  }

  if (completions) {
    co_await handle_completion(ex, metered->kind, std::move(request_id),
                               std::move(client_request_id), std::move(who));
  } else if (models) {
    const std::string_view id =
        target.size() > 11 ? target.substr(std::string_view("/v1/models/").size()) : "";
    co_await handle_models(ex, id, request_id, who);
  } else if (budget_list) {
    co_await send_budget_list(ex, budgets_, who, request_id);
  } else {
    co_await handle_usage(ex, request_id, who);
  }
}

boost::asio::awaitable<void> api_handler::handle_usage(http::exchange& ex,
                                                       const std::string& request_id,
                                                       const caller& who) {
  if (billing_ == nullptr) {
    co_await ex.send_error(not_found_error("Usage reports need a database: this gateway runs "
                                           "without one (database.url)."),
                           request_id);
    co_return;
  }
  auto query = query_params::parse(ex.req().target());
  if (!query) {
    co_await ex.send_error(invalid_request("The query string has a bad percent-escape."),
                           request_id);
    co_return;
  }
  auto parsed = parse_usage_request(*query, /*finance=*/false, unix_ms(clock_.wall_now()) / 1000,
                                    usage_limits::from(config_.usage_reports));
  if (!parsed) {
    co_await ex.send_error(parsed.error(), request_id);
    co_return;
  }
  usage_request r = std::move(*parsed);
  r.query.tenant_id = who.tenant_id;  // a key sees its own tenant's usage, nothing else
  co_await send_usage_report(ex, *billing_, std::move(r), request_id);
}

boost::asio::awaitable<void> api_handler::handle_models(http::exchange& ex,
                                                        std::string_view model_id,
                                                        const std::string& request_id,
                                                        const caller& who) {
  std::string body;
  if (model_id.empty()) {
    json_array_writer data;
    const std::int64_t created = models_created_unix_s_;
    for (const auto& m : config_.models) {
      if (who.may_use(m.name)) data.add_raw(model_object(m.name, m.owned_by, created));
    }
    for (const auto& v : config_.virtual_models) {  // virtual models are models to a client
      if (who.may_use(v.name)) data.add_raw(model_object(v.name, v.owned_by, created));
    }
    json_object_writer list;
    list.add("object", "list").add_raw("data", data.finish());
    body = list.finish();
  } else {
    const model_config* m = config_.find_model(model_id);
    const virtual_model_config* v = config_.find_virtual_model(model_id);
    if ((m == nullptr && v == nullptr) || !who.may_use(model_id)) {
      co_await ex.send_error(
          not_found_error("The model `" + std::string(model_id) +
                              "` does not exist or you do not have access to it.",
                          "model_not_found"),
          request_id);
      co_return;
    }
    body = m != nullptr ? model_object(m->name, m->owned_by, models_created_unix_s_)
                        : model_object(v->name, v->owned_by, models_created_unix_s_);
  }
  co_await ex.send_json(200, std::move(body), request_id);
}

result<metering::worst_case_tokens> api_handler::worst_case_of(proxy_state& st) const {
  return count_request(*st.model, *st.counter, st.req, st.rec.counted_prompt_tokens);
}

boost::asio::awaitable<std::optional<api_error>> api_handler::admit(
    proxy_state& st, endpoint_kind kind, std::string_view body_text,
    const attribution_headers& headers, const header_lookup& header, const caller& who,
    unsigned worker) {
  st.rec.tenant_id = who.tenant_id;
  st.rec.project_id = who.project_id;
  st.rec.api_key_id = who.key_id;
  st.rec.endpoint = "/v1" + std::string(endpoint_path(kind));
  const std::string& id = st.rec.request_id;
  const auto refuse = [&st](api_error e) {
    st.at = proxy_state::stage::refused;
    st.rec.error_code = e.code.empty() ? "invalid_request" : e.code;
    return std::optional<api_error>(std::move(e));
  };

  // 1. Parse and validate.
  auto parsed = parse_completion_request(kind, body_text, request_limits_);
  if (!parsed) co_return refuse(parsed.error());
  st.req = std::move(parsed.value());
  st.rec.model = st.req.model;
  st.rec.stream = st.req.stream;
  auto attributed = attribution_of(st.req, headers, who.default_tags);
  if (!attributed) co_return refuse(attributed.error());
  st.rec.attribution = std::move(*attributed);

  // 2. Route the model to its upstream; a virtual model's rules choose the model first (a model
  // outside the key's allowlist does not exist for that key, as OpenAI answers).
  if (auto unknown = route(st, who, header)) co_return refuse(std::move(*unknown));

  // 3. Count the prompt with the model's own tokenizer, as the model will see it, and work out
  // the request's worst case: every prompt and copy within the model's context.
  auto worst = worst_case_of(st);
  if (!worst) co_return refuse(worst.error());

  // 4. Make sure the ledger can take the usage (its journal or the database is writable).
  if (billing_ != nullptr && !billing_->ledger->accepting()) {
    co_return refuse(service_unavailable(
        "The usage ledger cannot take more records right now; please retry shortly.",
        "ledger_unavailable", 1));
  }
  // 5. Reserve the worst case against every budget that applies.
  if (budgets_ != nullptr && !who.tenant_id.empty()) {
    std::string hold_id = id;
    auto reserved =
        co_await budgets_->reserve(worker, who, st.rec.attribution, *st.model, std::move(hold_id),
                                   *worst, st.rec.batch);
    if (!reserved) co_return refuse(reserved.error());
    st.hold = std::move(*reserved);
  }
  co_return std::optional<api_error>{};
}

boost::asio::awaitable<void> api_handler::handle_completion(http::exchange& ex, endpoint_kind kind,
                                                            std::string request_id,
                                                            std::string client_request_id,
                                                            caller who) {
  proxy_state st;
  st.worker = ex.worker_index();
  st.rec.request_id = std::move(request_id);
  st.rec.client_request_id = std::move(client_request_id);
  st.rec.occurred_at_ms = unix_ms(clock_.wall_now());
  st.received_at = ex.received_at();
  start_trace(st.rec, st.traceparent, ex.req()["traceparent"]);
  const std::string& id = st.rec.request_id;
  live_in_flight_.fetch_add(1, std::memory_order_relaxed);
  const in_flight_entry listed(st, *in_flight_[st.worker]);
  struct in_flight_guard {
    const proxy_state& st;
    std::atomic<int>& n;
    ~in_flight_guard() {
      if (st.listed) n.fetch_sub(1, std::memory_order_relaxed);  // else the handler is gone
    }
  } in_flight{st, live_in_flight_};

  // 1-5. Parse, route, count, check the ledger, reserve the budgets.
  const attribution_headers headers{ex.req()["x-tollgate-end-user"],
                                    ex.req()["x-tollgate-tags"], ex.req()["x-tollgate-session"]};
  const header_lookup header = [&ex](std::string_view name) { return ex.req()[name]; };
  auto admitted = co_await admit(st, kind, ex.req().body(), headers, header, who, st.worker);
  if (admitted) {
    finish(st, admitted->status, ex.client_gone());
    co_await ex.send_error(*admitted, id);
    co_return;
  }
  // 6. Forward, to the model's fallbacks while its upstream is down or answers a listed status
  // (nothing has reached the client then). While the upstream works, a client that hangs up
  // cancels the upstream request (the watch ends by itself before the first byte is written).
  std::optional<backends::upstream_exchange> call;
  ex.watch_for_disconnect([&st, &call] {
    st.rec.client_disconnected = true;
    if (call) call->abort();
  });
  if (auto failure = co_await forward_routed(st, call, kind, ex.req().body(), who)) {
    finish(st, failure->status, ex.client_gone());
    co_await ex.send_error(*failure, id);
    co_return;
  }
  if (st.req.stream && call->status() == 200 && call->is_event_stream()) {
    co_await relay_stream(ex, *call, st);
  } else {
    co_await relay_whole(ex, *call, st);
  }
  // 7. Record (and settle the budgets). The relays record before the response's last bytes;
  // this catches a client that went away mid-response.
  if (!st.recorded()) finish(st, ex.status(), ex.client_gone());
}

boost::asio::awaitable<std::optional<api_error>> api_handler::forward(
    proxy_state& st, backends::upstream_exchange& call, endpoint_kind kind,
    std::string_view body_text) {
  st.at = proxy_state::stage::forwarding;
  auto& counted = worker_metrics_[st.worker]->upstream_requests;
  auto failure = co_await call.start(endpoint_path(kind),
                                     upstream_body(st.req, body_text, st.model->upstream_model),
                                     st.rec.request_id, st.traceparent);
  st.rec.upstream_endpoint = call.endpoint_name();
  st.rec.attempts = call.attempts();
  st.failure_label = failure ? failure->label() : std::string_view{};
  if (failure) {
    const bool client_left = st.rec.client_disconnected;
    counted.with({st.upstream->name, client_left ? "client_gone" : failure->label()}).inc();
    api_error error = failure->to_api_error(st.upstream->name);
    st.rec.error_code = client_left ? "client_disconnected" : error.code;
    if (!client_left) {
      json_object_writer f;
      f.add("request_id", st.rec.request_id)
          .add("trace_id", st.rec.trace_id)
          .add("upstream", st.upstream->name)
          .add("error", error.message);
      if (!failure->reason.empty()) f.add("reason", failure->reason);  // e.g. OpenSSL's
      log_.warn("upstream request failed", f);
    }
    co_return error;
  }
  counted.with({st.upstream->name, status_class(call.status())}).inc();
  co_return std::optional<api_error>{};
}

boost::asio::awaitable<std::optional<api_error>> api_handler::read_whole(
    proxy_state& st, backends::upstream_exchange& call, std::string& body) {
  if (auto failure = co_await call.read_all(body)) {
    api_error error = failure->to_api_error(st.upstream->name);
    st.rec.error_code = st.rec.client_disconnected ? "client_disconnected" : error.code;
    co_return error;
  }
  if (call.status() == 200) {
    if (!st.rec.set_usage_from_response(body, st.upstream->usage_cache_write_field)) {
      st.completion.add_response(body);
    }
  } else {
    st.rec.error_code = upstream_error_code(body, call.status());
  }
  co_return std::optional<api_error>{};
}

boost::asio::awaitable<std::optional<api_error>> api_handler::check_batch(
    unsigned worker, const caller& who, endpoint_kind kind,
    const std::vector<batch_input_line>& lines) {
  const std::string endpoint = "/v1" + std::string(endpoint_path(kind));
  std::map<std::string, batch_demand> by_model;
  for (const auto& line : lines) {
    const std::string where = "Line " + std::to_string(line.line_no) + " of the input file: ";
    if (line.url != endpoint) {
      co_return invalid_request(where + "its url " + line.url + " is not the batch's endpoint " +
                                    endpoint + ".",
                                "input_file_id", "invalid_batch_line");
    }
    auto parsed = parse_completion_request(kind, line.body, request_limits_);
    if (!parsed) {
      api_error e = parsed.error();
      e.message = where + e.message;
      e.param = "input_file_id";
      co_return e;
    }
    // Each line's model as its run routes it (no headers; a split decided by the line's
    // custom_id here: the run's own request id may split it otherwise).
    const model_config* model = batch_line_model(*parsed, who, line.custom_id);
    if (model == nullptr) {
      co_return not_found_error(where + "the model `" + parsed->model +
                                    "` does not exist or you do not have access to it.",
                                "model_not_found");
    }
    std::int64_t counted = 0;
    auto worst = count_request(*model, counters_.at(model->name), *parsed, counted);
    if (!worst) {
      api_error e = worst.error();
      e.message = where + e.message;
      e.param = "input_file_id";
      co_return e;
    }
    batch_demand& d = by_model[model->name];
    d.model = model;
    d.lines += 1;
    d.prompt_tokens = metering::saturating_add(d.prompt_tokens, worst->prompt_tokens);
    d.max_tokens = metering::saturating_add(d.max_tokens, worst->completion_tokens);
  }
  if (budgets_ != nullptr && !who.tenant_id.empty()) {
    std::vector<batch_demand> demand;
    for (auto& [name, d] : by_model) demand.push_back(d);
    auto admitted = co_await budgets_->admit_batch(worker, who, std::move(demand));
    if (!admitted) co_return admitted.error();
  }
  co_return std::optional<api_error>{};
}

boost::asio::awaitable<batch_line_outcome> api_handler::run_batch_line(
    unsigned worker, caller who, endpoint_kind kind, std::string body, std::string request_id,
    std::int64_t occurred_at_ms) {
  proxy_state st;
  st.worker = worker;
  st.rec.request_id = std::move(request_id);
  st.rec.occurred_at_ms = occurred_at_ms;
  st.rec.batch = true;
  st.received_at = clock_.mono_now();
  start_trace(st.rec, st.traceparent, {});  // a batch line starts its own trace
  const in_flight_entry listed(st, *in_flight_[worker]);
  batch_line_outcome out;

  const attribution_headers no_attribution{};
  const header_lookup no_headers;
  auto admitted = co_await admit(st, kind, body, no_attribution, no_headers, who, worker);
  if (admitted && (admitted->code == "rate_limit_exceeded" || admitted->status == 503)) {
    // A window limit, or budgets or the ledger away for a moment: the line waits and runs
    // again later; nothing is recorded for this attempt.
    out.retry_after_ms = std::max<std::int64_t>(1, admitted->retry_after_s) * 1000;
    co_return out;
  }
  // The same forward-and-read as a live request that does not stream.
  std::optional<api_error> failed = std::move(admitted);
  std::optional<backends::upstream_exchange> call;
  std::string response;
  if (!failed) {
    failed = co_await forward_routed(st, call, kind, body, who);
    if (!failed) failed = co_await read_whole(st, *call, response);
  }
  if (failed && failed->code == "upstream_overloaded") {
    // The upstream's concurrency cap: nothing was sent. The hold goes back and the line runs
    // again later, like a window limit; nothing is recorded for this attempt.
    if (st.hold) co_await budgets_->release_for_rerun(std::move(*st.hold));
    st.hold.reset();
    out.retry_after_ms = failed->retry_after_s * 1000;
    co_return out;
  }
  if (failed) {
    finish(st, failed->status, false);
    out.status = failed->status;
    out.body = failed->to_json();
    co_return out;
  }
  finish(st, call->status(), false);
  out.status = call->status();
  out.body = std::move(response);
  co_return out;
}

boost::asio::awaitable<void> api_handler::relay_whole(http::exchange& ex,
                                                      backends::upstream_exchange& call,
                                                      proxy_state& st) {
  std::string body;
  if (auto failure = co_await read_whole(st, call, body)) {
    finish(st, failure->status, ex.client_gone());
    co_await ex.send_error(*failure, st.rec.request_id);
    co_return;
  }
  http::response_fields fields;
  const std::string_view type = call.content_type();
  fields.add("Content-Type", type.empty() ? "application/json" : type);
  fields.add("x-request-id", st.rec.request_id);
  if (!st.rec.client_request_id.empty())
    fields.add("x-client-request-id", st.rec.client_request_id);
  if (st.hold) {
    for (const auto& [name, value] : st.hold->headers) fields.add(name, value);
  }
  for (const auto& [name, value] : routing_headers(st)) fields.add(name, value);
  finish(st, call.status(), ex.client_gone());
  if (quoter_ != nullptr && call.status() == 200) {
    if (const auto cost = co_await quoter_->quote(st.rec)) {
      char digits[24];
      fields.add(
          "x-tollgate-cost-micros",
          std::string_view(digits, std::to_chars(digits, digits + sizeof digits, *cost).ptr));
    }
  }
  co_await ex.send(call.status(), fields, body);
}

boost::asio::awaitable<void> api_handler::relay_stream(http::exchange& ex,
                                                       backends::upstream_exchange& call,
                                                       proxy_state& st) {
  bhttp::response<bhttp::empty_body> head{bhttp::status::ok, ex.req().version()};
  head.set(bhttp::field::content_type, "text/event-stream");
  head.set(bhttp::field::cache_control, "no-cache");
  head.set("x-request-id", st.rec.request_id);
  if (!st.rec.client_request_id.empty()) head.set("x-client-request-id", st.rec.client_request_id);
  if (st.hold) {
    for (const auto& [name, value] : st.hold->headers) head.set(name, value);
  }
  for (const auto& [name, value] : routing_headers(st)) head.set(name, value);
  // The cost is known once the stream has ended: it comes as a trailer.
  if (quoter_ != nullptr) head.set(bhttp::field::trailer, "x-tollgate-cost-micros");
  if (!co_await ex.send_chunked_header(std::move(head))) {
    call.abort();
    co_return;
  }
  st.stream_started = true;

  backends::sse_parser parser{limits::sse_line_bytes_max};
  std::vector<backends::sse_event> events;
  std::string in;
  std::string out;
  bool done = false;
  while (!done) {
    in.clear();
    auto failure = co_await call.read_some(in, done);
    if (!failure && !parser.feed(in, events)) {
      failure = backends::upstream_failure{backends::upstream_failure::kind::protocol,
                                           "an event-stream line over the size limit",
                                           {}};
      call.abort();
    }
    if (done) parser.finish(events);

    out.clear();
    for (auto& e : events) {
      // Usage arrives in a chunk with empty choices (stream_options.include_usage); it was
      // requested on the client's behalf when the client did not ask, and is then not relayed.
      if (e.data.find("\"usage\"") != std::string::npos &&
          e.data.find("\"usage\":null") == std::string::npos) {
        const auto doc = json::document::parse(e.data);
        if (doc && doc->root().is_object() &&
            st.rec.set_usage(stream_event_usage(doc->root()),
                             st.upstream->usage_cache_write_field)) {
          const json::value choices = doc->root().find("choices");
          const bool usage_only = !choices.valid() || (choices.is_array() && choices.size() == 0);
          if (usage_only && !st.req.client_wants_usage) continue;
        }
      }
      if (!st.rec.usage_reported) st.completion.add_stream_event(e.data);
      if (!st.req.client_wants_usage) strip_usage_null(e.data);
      if (st.rec.ttft_us < 0 && e.data != "[DONE]") {
        st.rec.ttft_us = elapsed_us(ex.received_at(), clock_.mono_now());
        worker_metrics_[st.worker]->upstream_ttft.with({st.upstream->name}).observe_us(
            st.rec.ttft_us);
      }
      e.append_wire(out);
    }
    events.clear();

    if (failure) {
      // Headers are gone already: tell the client in-band, the way OpenAI streams errors.
      const api_error error = failure->to_api_error(st.upstream->name);
      st.rec.error_code = error.code;
      json_object_writer f;
      f.add("request_id", st.rec.request_id)
          .add("trace_id", st.rec.trace_id)
          .add("upstream", st.upstream->name)
          .add("error", error.message);
      log_.warn("upstream stream failed", f);
      out += "data: ";
      out += error.to_json();
      out += "\n\n";
      finish(st, 200, ex.client_gone());
      if (co_await ex.send_chunk(out)) co_await ex.send_last_chunk();
      ex.set_close_after();
      co_return;
    }
    if (done) finish(st, 200, ex.client_gone());  // before the last events ([DONE]) leave
    if (!out.empty() && !co_await ex.send_chunk(out)) {
      call.abort();  // the client went away: stop generation upstream
      co_return;
    }
  }
  std::vector<std::pair<std::string, std::string>> trailers;
  if (quoter_ != nullptr) {
    if (const auto cost = co_await quoter_->quote(st.rec)) {
      trailers.emplace_back("x-tollgate-cost-micros", std::to_string(*cost));
    }
  }
  co_await ex.send_last_chunk(trailers);
}

void api_handler::finish(proxy_state& st, unsigned status, bool client_gone) {
  // Recorded once, and never while still being admitted (a refusal marks itself refused).
  TOLLGATE_ASSERT(st.at == proxy_state::stage::refused ||
                  st.at == proxy_state::stage::forwarding);
  st.at = proxy_state::stage::recorded;
  st.rec.status = status;
  st.rec.latency_us = elapsed_us(st.received_at, clock_.mono_now());
  if (client_gone) {
    st.rec.client_disconnected = true;
    client_disconnects_.inc();
  }
  if (!st.rec.usage_reported && st.counter != nullptr && st.rec.status == 200) {
    // The upstream reported no usage: record the gateway's own counts, flagged estimated
    // (usage_reported false on the row) and counted in a metric.
    if (st.upstream != nullptr) {
      worker_metrics_[st.worker]->usage_unreported.with({st.upstream->name}).inc();
    }
    st.rec.counted_completion_tokens = st.completion.count(*st.counter);
    st.rec.prompt_tokens = st.rec.counted_prompt_tokens;
    st.rec.completion_tokens = st.rec.counted_completion_tokens;
    st.rec.estimated = true;
  }
  if ((st.rec.usage_reported || st.rec.estimated) && st.model != nullptr) {
    const auto& c = model_tokens_.at(st.model->name);
    c.prompt->inc(static_cast<std::uint64_t>(st.rec.prompt_tokens));
    c.completion->inc(static_cast<std::uint64_t>(st.rec.completion_tokens));
    c.cached->inc(static_cast<std::uint64_t>(st.rec.cached_tokens));
  }
  if (st.hold) budgets_->describe_settlement(*st.hold, st.rec);
  usage_.record(st.rec);
  usage_records_.inc();
  if (st.hold) {
    // Settle to what the ledger bills: the reported (or estimated) tokens of this request.
    budgets_->settle(std::move(*st.hold), st.rec.prompt_tokens, st.rec.completion_tokens);
    st.hold.reset();
  }
}

}  // namespace tollgate::gateway
