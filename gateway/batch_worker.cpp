// The batch worker: see batch_worker.hpp.
#include "gateway/batch_worker.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>

#include "core/json_dom.hpp"
#include "core/json_text.hpp"
#include "core/request_id.hpp"
#include "gateway/api_handler.hpp"
#include "gateway/auth.hpp"

namespace tollgate::gateway {
namespace net = boost::asio;

std::string batch_result_line(const billing::claimed_batch_line& line, unsigned status,
                              const std::string& body) {
  json_object_writer response;
  response.add("status_code", status).add("request_id", line.request_id);
  const auto doc = json::document::parse(body);
  if (doc) {
    response.add_raw("body", body);
  } else {
    response.add("body", body);
  }
  json_object_writer out;
  out.add("id",
          "batch_req_" + line.request_id.substr(std::min<std::size_t>(4, line.request_id.size())))
      .add("custom_id", line.custom_id)
      .add_raw("response", response.finish())
      .add_null("error");
  return out.finish() + "\n";
}

batch_worker::batch_worker(const batches_config& config, const billing_context& billing,
                           billing::batch_store& store, api_handler& api, http::server& server,
                           logger& log, metrics::registry& registry)
    : config_(config),
      billing_(billing),
      store_(store),
      api_(api),
      server_(server),
      log_(log),
      owner_("gw_" + new_request_id().substr(4)),
      timers_(server.thread_count()),
      lines_(registry.add_counter("tollgate_batch_lines_total",
                                  "Batch lines run by this gateway's batch worker, by outcome: "
                                  "ok (200), failed (an error response), retried (a rate-limit "
                                  "window or an outage sent it back to wait).",
                                  {"outcome"})),
      lines_ok_(lines_.with({"ok"})),
      lines_failed_(lines_.with({"failed"})),
      lines_retried_(lines_.with({"retried"})) {}

void batch_worker::start() {
  const unsigned threads = server_.thread_count();
  for (std::uint64_t i = 0; i < config_.concurrency; ++i) {
    const unsigned worker = static_cast<unsigned>(i % threads);
    auto timer = std::make_shared<net::steady_timer>(server_.io(worker));
    timers_[worker].push_back(timer);
    net::co_spawn(server_.io(worker), run_lines(worker, timer), net::detached);
  }
  server_.add_drain_hook([this](unsigned worker) {
    stopping_.store(true);
    for (auto& t : timers_[worker]) t->cancel();
  });
  coordinator_timer_ = std::make_unique<net::steady_timer>(billing_.executor);
  coordinating_ = net::co_spawn(billing_.executor, coordinate(), net::use_future);
}

batch_worker::~batch_worker() {
  if (!coordinating_.valid()) return;
  // The coordinator runs on the billing thread and uses this object: end it and wait (at most
  // one database statement) before the members go.
  coordinator_stopping_.store(true);
  net::post(billing_.executor, [timer = coordinator_timer_.get()] { timer->cancel(); });
  coordinating_.wait();
}

net::awaitable<bool> batch_worker::pause(net::steady_timer& timer, std::uint64_t ms) {
  if (stopping_.load()) co_return false;
  timer.expires_after(std::chrono::milliseconds(ms));
  boost::system::error_code ec;
  co_await timer.async_wait(net::redirect_error(net::use_awaitable, ec));
  co_return !stopping_.load();
}

net::awaitable<void> batch_worker::run_lines(unsigned worker,
                                             std::shared_ptr<net::steady_timer> timer) {
  while (!stopping_.load()) {
    // Live requests first.
    if (static_cast<std::uint64_t>(api_.live_in_flight()) >= config_.yield_to_live_requests) {
      if (!co_await pause(*timer, 20)) break;
      continue;
    }
    auto claim_op = store_.claim_line(owner_, static_cast<std::int64_t>(config_.lease_ms));
    auto claimed = co_await on_billing(billing_, std::move(claim_op));
    if (!claimed || !*claimed) {
      if (!claimed) {
        json_object_writer f;
        f.add("error", claimed.error().message);
        log_.warn("batch worker: cannot claim a line", f);
      }
      if (!co_await pause(*timer, config_.poll_interval_ms)) break;
      continue;
    }
    const billing::claimed_batch_line line = std::move(**claimed);
    caller who;
    who.key_id = line.api_key_id;
    who.tenant_id = line.tenant_id;
    who.project_id = line.project_id;
    const endpoint_kind kind = line.endpoint == "/v1/chat/completions"
                                   ? endpoint_kind::chat_completions
                                   : endpoint_kind::completions;
    std::string body = line.body;
    std::string request_id = line.request_id;
    batch_line_outcome outcome;
    // The key as it stands now: a key revoked (or a tenant disabled) mid-batch stops the batch;
    // each remaining line fails with the 401 a live request would get. A key that cannot be
    // checked (database away) sends the line back to wait.
    std::optional<api_error> refused;
    if (auth_ != nullptr) {
      auto now_who = co_await auth_->check_key_id(line.api_key_id);
      if (now_who) {
        who.allowed_models = std::move(now_who->allowed_models);
        who.default_tags = std::move(now_who->default_tags);  // as a live request's
      } else {
        refused = std::move(now_who.error());
      }
    }
    if (refused && refused->status == 503) {
      outcome.retry_after_ms = 1000;
    } else if (refused) {
      outcome.status = refused->status;
      outcome.body = refused->to_json();
    } else {
      outcome = co_await api_.run_batch_line(worker, std::move(who), kind, std::move(body),
                                             std::move(request_id), line.occurred_at_ms);
    }

    if (outcome.retry_after_ms > 0) {
      lines_retried_.inc();
      auto release_op =
          store_.release_line(line.batch_id, line.line_no, owner_, outcome.retry_after_ms);
      auto released = co_await on_billing(billing_, std::move(release_op));
      if (!released) {
        json_object_writer f;
        f.add("batch_id", line.batch_id)
            .add("line", line.line_no)
            .add("error", released.error().message);
        log_.warn("batch worker: cannot give a line back (its lease will lapse)", f);
      }
      continue;
    }
    const bool failed = outcome.status != 200;
    (failed ? lines_failed_ : lines_ok_).inc();
    std::string result = batch_result_line(line, outcome.status, outcome.body);
    auto finish_op =
        store_.finish_line(line.batch_id, line.line_no, owner_, failed, std::move(result));
    auto stored = co_await on_billing(billing_, std::move(finish_op));
    if (!stored || !*stored) {
      // The line runs again once its lease lapses; its usage is stored once all the same.
      json_object_writer f;
      f.add("batch_id", line.batch_id)
          .add("line", line.line_no)
          .add("error", stored ? std::string("the lease was lost") : stored.error().message);
      log_.warn("batch worker: cannot store a line's result", f);
    }
  }
}

net::awaitable<void> batch_worker::coordinate() {
  net::steady_timer& timer = *coordinator_timer_;
  auto last_renewal = std::chrono::steady_clock::now();
  const auto renew_every = std::chrono::milliseconds(config_.lease_ms / 3);
  // The flag is read on the billing thread, where the stop's timer cancel also runs: it cannot
  // slip in between the check and the wait.
  while (!coordinator_stopping_.load()) {
    timer.expires_after(std::chrono::milliseconds(config_.poll_interval_ms));
    boost::system::error_code ec;
    co_await timer.async_wait(net::redirect_error(net::use_awaitable, ec));
    if (ec || coordinator_stopping_.load()) co_return;
    if (std::chrono::steady_clock::now() - last_renewal >= renew_every) {
      last_renewal = std::chrono::steady_clock::now();
      auto renew_op = store_.renew_leases(owner_, static_cast<std::int64_t>(config_.lease_ms));
      auto renewed = co_await std::move(renew_op);
      if (!renewed) {
        json_object_writer f;
        f.add("error", renewed.error().message);
        log_.warn("batch worker: cannot renew leases", f);
      }
    }
    auto advance_op = store_.advance_batches();
    auto advanced = co_await std::move(advance_op);
    if (!advanced) {
      json_object_writer f;
      f.add("error", advanced.error().message);
      log_.warn("batch worker: cannot advance batches", f);
    }
  }
}

}  // namespace tollgate::gateway
