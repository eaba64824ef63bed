// The request path's routing and fallback steps (api_handler members; the decisions are the
// pure functions of routing.hpp): step 2 routes a virtual model to its target, step 6 moves a
// request whose upstream is down to the model's fallbacks, the budget hold moving with it.
#include <utility>

#include "core/json_text.hpp"
#include "gateway/api_handler.hpp"
#include "gateway/request_count.hpp"
#include "gateway/request_state.hpp"

namespace tollgate::gateway {
namespace {

api_error model_not_found(const std::string& model) {
  return not_found_error(
      "The model `" + model + "` does not exist or you do not have access to it.",
      "model_not_found");
}

// What a routing rule looks at, for a request (its prompt counted with `counting`).
route_inputs inputs_of(const completion_request& req, const model_config& counting,
                       const metering::prompt_counter& counter, const caller& who,
                       const header_lookup& header, std::string_view split_key) {
  route_inputs in;
  // Only the count is wanted here: a prompt over the counting model's context still routes.
  (void)count_request(counting, counter, req, in.prompt_tokens);
  const request_features f = features_of(req);
  in.tools = f.tools;
  in.images = f.images;
  in.caller_tags = &who.default_tags;
  in.header = &header;
  in.split_key = split_key;
  return in;
}

}  // namespace

void api_handler::serve_with(proxy_state& st, const model_config& model) const {
  st.model = &model;
  st.upstream = config_.find_upstream(model.upstream);
  st.counter = &counters_.at(model.name);
  st.rec.model = model.name;
  st.rec.upstream = st.upstream->name;
}

std::optional<api_error> api_handler::route(proxy_state& st, const caller& who,
                                            const header_lookup& header) {
  const std::string& named = st.req.model;
  st.via = config_.find_virtual_model(named);
  if (st.via == nullptr) {
    const model_config* model = config_.find_model(named);
    if (model == nullptr || !who.may_use(model->name)) return model_not_found(named);
    serve_with(st, *model);
    st.tried.push_back(model);
    return std::nullopt;
  }
  if (!who.may_use(named)) return model_not_found(named);
  const model_config& counting = *config_.find_model(st.via->count_with);
  const std::string& end_user = st.rec.attribution.end_user;
  const std::string_view split_key = st.via->split_by == "end_user" && !end_user.empty()
                                         ? std::string_view(end_user)
                                         : std::string_view(st.rec.request_id);
  const route_inputs in =
      inputs_of(st.req, counting, counters_.at(counting.name), who, header, split_key);
  const route_choice choice = choose_route(*st.via, in);
  const model_config& target = *config_.find_model(*choice.model);
  serve_with(st, target);
  st.tried.push_back(&target);
  st.rec.routing_rule = choice.label;
  worker_metrics_[st.worker]->routed.with({named, choice.rule->name, target.name}).inc();
  return std::nullopt;
}

const model_config* api_handler::batch_line_model(const completion_request& req, const caller& who,
                                                  std::string_view split_key) {
  const virtual_model_config* via = config_.find_virtual_model(req.model);
  if (via == nullptr) {
    const model_config* model = config_.find_model(req.model);
    return model != nullptr && who.may_use(model->name) ? model : nullptr;
  }
  if (!who.may_use(via->name)) return nullptr;
  const model_config& counting = *config_.find_model(via->count_with);
  const header_lookup no_headers;
  const route_inputs in =
      inputs_of(req, counting, counters_.at(counting.name), who, no_headers, split_key);
  return config_.find_model(*choose_route(*via, in).model);
}

boost::asio::awaitable<std::optional<api_error>> api_handler::forward_routed(
    proxy_state& st, std::optional<backends::upstream_exchange>& call, endpoint_kind kind,
    std::string_view body_text, const caller& who) {
  const model_config& first = *st.tried.front();
  std::int64_t earlier_attempts = 0;  // on the models left behind
  while (true) {
    call.emplace(pools_[st.worker], *st.upstream);
    auto failure = co_await forward(st, *call, kind, body_text);
    st.rec.attempts += earlier_attempts;
    const unsigned status = failure ? 0 : call->status();
    const auto reason =
        fallback_reason(*st.model, st.failure_label, status, st.rec.client_disconnected);
    if (!reason) co_return failure;
    const model_config& from = *st.model;
    bool moved = false;
    while (const model_config* next = next_fallback(config_, first, st.tried, who, st.via)) {
      st.tried.push_back(next);
      auto m = co_await move_to(st, *next, who);
      if (!m) co_return m.error();  // the fallback's reservation was refused
      if (*m) {
        moved = true;
        break;
      }
    }
    if (!moved) co_return failure;  // no fallback left: the last model's answer stands
    if (st.rec.client_disconnected) {
      // Gone while the hold moved: nothing more is sent upstream.
      st.rec.error_code = "client_disconnected";
      co_return upstream_unavailable("The client went away before the fallback model was tried.");
    }
    worker_metrics_[st.worker]->fallbacks.with({from.name, st.model->name, *reason}).inc();
    json_object_writer f;
    f.add("request_id", st.rec.request_id)
        .add("from", from.name)
        .add("to", st.model->name)
        .add("reason", *reason);
    log_.info("fallback model taken", f);
    if (st.fallback_from.empty()) st.fallback_from = first.name;
    st.rec.error_code.clear();
    earlier_attempts = st.rec.attempts;
  }
}

boost::asio::awaitable<result<bool>> api_handler::move_to(proxy_state& st, const model_config& next,
                                                          const caller& who) {
  // The prompt as the fallback sees it: its tokenizer and prompt format, within its context.
  std::int64_t counted = 0;
  auto worst = count_request(next, counters_.at(next.name), st.req, counted);
  if (!worst) {
    json_object_writer f;
    f.add("request_id", st.rec.request_id)
        .add("fallback", next.name)
        .add("error", worst.error().message);
    log_.info("fallback model skipped: the prompt does not fit it", f);
    co_return false;
  }
  if (st.hold) {
    // The first hold goes back (awaited: the next reservation must not count it too).
    budget_hold previous = std::move(*st.hold);
    st.hold.reset();
    co_await budgets_->release(std::move(previous));
  }
  if (budgets_ != nullptr && !who.tenant_id.empty()) {
    // A hold id of its own: the request's first one is settled (released) under the request id.
    std::string hold_id = st.rec.request_id + "#" + std::to_string(st.tried.size() - 1);
    auto reserved = co_await budgets_->reserve(st.worker, who, st.rec.attribution, next,
                                               std::move(hold_id), *worst, st.rec.batch);
    if (!reserved) {
      st.rec.error_code = reserved.error().code;
      co_return reserved.error();
    }
    st.hold = std::move(*reserved);
  }
  serve_with(st, next);
  st.rec.counted_prompt_tokens = counted;
  co_return true;
}

std::vector<std::pair<std::string, std::string>> api_handler::routing_headers(
    const proxy_state& st) {
  std::vector<std::pair<std::string, std::string>> out;
  if (st.model == nullptr) return out;
  out.emplace_back("x-tollgate-model", st.model->name);
  if (!st.fallback_from.empty()) out.emplace_back("x-tollgate-fallback-from", st.fallback_from);
  if (!st.rec.routing_rule.empty()) {
    out.emplace_back("x-tollgate-routing-rule", st.rec.routing_rule);
  }
  return out;
}

}  // namespace tollgate::gateway
