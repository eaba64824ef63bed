// tollgate-infer's HTTP server: see infer_server.hpp.
#include "gpu/infer_server.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <thread>

#include "core/http_server.hpp"
#include "core/json_dom.hpp"
#include "core/json_text.hpp"
#include "core/log.hpp"
#include "core/request_id.hpp"
#include "gpu/model.hpp"
#include "gpu/scheduler.hpp"
#include "metering/prompt_count.hpp"

namespace tollgate::gpu {
namespace net = boost::asio;
namespace bhttp = boost::beast::http;

namespace {

constexpr int default_max_tokens = 256;

// A parsed and checked generation request.
struct parsed_request {
  bool chat = true;
  std::vector<int> prompt;
  sampling_params sampling;
  bool stream = false;
  bool include_usage = false;
};

// The events of one request, delivered on its I/O thread.
struct request_state {
  explicit request_state(net::any_io_executor ex) : executor(ex), timer(ex) {}
  net::any_io_executor executor;
  net::steady_timer timer;
  std::deque<generation_event> events;
  std::shared_ptr<std::atomic<bool>> cancelled = std::make_shared<std::atomic<bool>>(false);
};

class infer_server {
 public:
  infer_server(const serve_options& o, const model_weights& w, const metering::prompt_counter& p,
               scheduler& s, metrics::registry& r)
      : options_(o),
        weights_(w),
        prompts_(p),
        scheduler_(s),
        registry_(r),
        created_(std::chrono::duration_cast<std::chrono::seconds>(
                     std::chrono::system_clock::now().time_since_epoch())
                     .count()) {}

  net::awaitable<void> handle(http::exchange& ex) {
    const std::string_view path = ex.path();
    const auto method = ex.req().method();
    if (path == "/health") {
      ex.set_route("/health");
      co_await send_json(ex, bhttp::status::ok, "{\"status\":\"ok\"}");
    } else if (path == "/metrics") {
      ex.set_route("/metrics");
      http::response res{bhttp::status::ok, ex.req().version()};
      res.set(bhttp::field::content_type, metrics::content_type);
      res.body() = registry_.render();
      co_await ex.send(std::move(res));
    } else if (path == "/v1/models") {
      ex.set_route("/v1/models");
      json_object_writer m;
      m.add("id", options_.model_name)
          .add("object", "model")
          .add("created", created_)
          .add("owned_by", "tollgate")
          .add("max_model_len", weights_.config.max_position_embeddings);
      co_await send_json(ex, bhttp::status::ok,
                         "{\"object\":\"list\",\"data\":[" + m.finish() + "]}");
    } else if (path == "/tokenize" || path == "/v1/chat/completions" || path == "/v1/completions") {
      ex.set_route(path == "/tokenize"         ? "/tokenize"
                   : path == "/v1/completions" ? "/v1/completions"
                                               : "/v1/chat/completions");
      if (method != bhttp::verb::post) {
        co_await ex.send_method_not_allowed("POST");
        co_return;
      }
      if (path == "/tokenize") {
        co_await tokenize(ex);
      } else {
        co_await generate(ex, path == "/v1/chat/completions");
      }
    } else {
      co_await ex.send_unknown_url();
    }
  }

 private:
  net::awaitable<void> send_json(http::exchange& ex, bhttp::status status, std::string body) {
    http::response res{status, ex.req().version()};
    res.set(bhttp::field::content_type, "application/json");
    res.body() = std::move(body);
    co_await ex.send(std::move(res));
  }

  // The prompt ids of a chat (messages) or completion (prompt) body, or the error.
  std::optional<api_error> prompt_of(json::value root, bool chat, std::vector<int>& out) const {
    if (chat) {
      const json::value messages = root.find("messages");
      if (!messages.valid() || !messages.is_array() || messages.size() == 0) {
        return invalid_request("messages must be a non-empty array.", "messages");
      }
      bool ok = true;
      messages.for_each_element([&](json::value m) {
        const json::value role = m.find("role");
        if (!m.is_object() || !role.valid() || !role.is_string()) ok = false;
      });
      std::vector<metering::token_id> ids;
      if (!ok || !prompts_.render_chat(messages, ids)) {
        return invalid_request("Each message must be an object with a string role and content.",
                               "messages");
      }
      out.assign(ids.begin(), ids.end());
      return std::nullopt;
    }
    const json::value prompt = root.find("prompt");
    if (prompt.valid() && prompt.is_string()) {
      for (auto id : prompts_.tok().encode(prompt.as_string())) out.push_back(static_cast<int>(id));
    } else if (prompt.valid() && prompt.is_array()) {
      bool ok = true;
      prompt.for_each_element([&](json::value v) {
        if (!v.is_int64() || v.as_int64() < 0 || v.as_int64() >= weights_.config.vocab_size) {
          ok = false;
        } else {
          out.push_back(static_cast<int>(v.as_int64()));
        }
      });
      if (!ok) return invalid_request("prompt token ids must be in the vocabulary.", "prompt");
    } else {
      return invalid_request("prompt must be a string or an array of token ids.", "prompt");
    }
    if (out.empty()) return invalid_request("prompt must not be empty.", "prompt");
    return std::nullopt;
  }

  result<parsed_request> parse(std::string_view body, bool chat) const {
    const auto doc = json::document::parse(body);
    if (!doc || !doc->root().is_object()) return invalid_request("The body must be a JSON object.");
    const json::value root = doc->root();
    const json::value model = root.find("model");
    if (!model.valid() || !model.is_string()) {
      return invalid_request("Missing required parameter: 'model'.", "model");
    }
    if (model.as_string() != options_.model_name) {
      return not_found_error("The model `" + std::string(model.as_string()) + "` does not exist.",
                             "model_not_found");
    }
    parsed_request r;
    r.chat = chat;
    if (auto e = prompt_of(root, chat, r.prompt)) return *e;
    const auto number = [&](std::string_view name, double lo, double hi,
                            double& out) -> std::optional<api_error> {
      const json::value v = root.find(name);
      if (!v.valid() || v.is_null()) return std::nullopt;
      const double x =
          v.is_number() ? std::strtod(std::string(v.raw_number()).c_str(), nullptr) : -1e300;
      if (!v.is_number() || x < lo || x > hi) {
        return invalid_request(std::string(name) + " must be a number in [" + json_number(lo) +
                                   ", " + json_number(hi) + "].",
                               std::string(name));
      }
      out = x;
      return std::nullopt;
    };
    if (auto e = number("temperature", 0, 2, r.sampling.temperature)) return *e;
    if (auto e = number("top_p", 0, 1, r.sampling.top_p)) return *e;
    double top_k = 0;
    if (auto e = number("top_k", -1, 1e9, top_k)) return *e;
    r.sampling.top_k = top_k < 0 ? 0 : static_cast<int>(top_k);
    const int context = weights_.config.max_position_embeddings;
    const int room = context - static_cast<int>(r.prompt.size());
    if (room < 1) {
      return invalid_request("The prompt has " + std::to_string(r.prompt.size()) +
                                 " tokens; this model's context is " + std::to_string(context) +
                                 ".",
                             "messages", "context_length_exceeded");
    }
    double max_tokens = std::min(default_max_tokens, room);
    const std::string_view max_name =
        root.find("max_completion_tokens").valid() ? "max_completion_tokens" : "max_tokens";
    if (auto e = number(max_name, 1, 1e9, max_tokens)) return *e;
    if (max_tokens > room) {
      return invalid_request("max_tokens is " + json_number(max_tokens) + ", but the prompt (" +
                                 std::to_string(r.prompt.size()) + " tokens) leaves room for " +
                                 std::to_string(room) + " in this model's context.",
                             std::string(max_name), "context_length_exceeded");
    }
    r.sampling.max_tokens = static_cast<int>(max_tokens);
    if (!scheduler_.fits(r.prompt.size(), r.sampling.max_tokens)) {
      return invalid_request("The prompt (" + std::to_string(r.prompt.size()) +
                                 " tokens) and max_tokens need more key/value cache than this "
                                 "server has (see --kv-cache-mb).",
                             std::string(max_name), "context_length_exceeded");
    }
    if (const json::value seed = root.find("seed"); seed.valid() && !seed.is_null()) {
      if (!seed.is_int64()) return invalid_request("seed must be an integer.", "seed");
      r.sampling.seed = static_cast<std::uint64_t>(seed.as_int64());
    }
    if (const json::value stop = root.find("stop"); stop.valid() && !stop.is_null()) {
      bool ok = stop.is_string() || (stop.is_array() && stop.size() <= 4);
      if (stop.is_string()) r.sampling.stop.emplace_back(stop.as_string());
      if (stop.is_array()) {
        stop.for_each_element([&](json::value s) {
          if (!s.is_string())
            ok = false;
          else
            r.sampling.stop.emplace_back(s.as_string());
        });
      }
      if (!ok) return invalid_request("stop must be a string or up to 4 strings.", "stop");
    }
    if (const json::value n = root.find("n");
        n.valid() && !n.is_null() && !(n.is_int64() && n.as_int64() == 1)) {
      return invalid_request("Only n = 1 is supported.", "n");
    }
    const json::value stream = root.find("stream");
    r.stream = stream.valid() && stream.is_bool() && stream.as_bool();
    const json::value options = root.find("stream_options");
    if (options.valid() && options.is_object()) {
      const json::value usage = options.find("include_usage");
      r.include_usage = usage.valid() && usage.is_bool() && usage.as_bool();
    }
    return r;
  }

  static std::string json_number(double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", v);
    return buf;
  }

  // OpenAI's usage shape; cached_tokens: the prompt positions whose keys and values the prefix
  // cache gave (what the gateway prices as cached input).
  std::string usage_json(const generation_event& e) const {
    json_object_writer details;
    details.add("cached_tokens", e.cached_tokens);
    json_object_writer u;
    u.add("prompt_tokens", e.prompt_tokens)
        .add("completion_tokens", e.completion_tokens)
        .add("total_tokens", e.prompt_tokens + e.completion_tokens)
        .add_raw("prompt_tokens_details", details.finish());
    return u.finish();
  }

  // One streamed chunk (chat or text completion), `delta_or_text` already JSON.
  std::string chunk(const parsed_request& r, const std::string& id, const std::string& content,
                    const std::string& finish, bool role) const {
    json_object_writer choice;
    choice.add("index", 0);
    if (r.chat) {
      json_object_writer delta;
      if (role) delta.add("role", "assistant");
      if (!content.empty() || role) delta.add("content", content);
      choice.add_raw("delta", delta.finish());
    } else {
      choice.add("text", content).add_null("logprobs");
    }
    if (finish.empty())
      choice.add_null("finish_reason");
    else
      choice.add("finish_reason", finish);
    json_object_writer c;
    c.add("id", id)
        .add("object", r.chat ? "chat.completion.chunk" : "text_completion")
        .add("created", now_s())
        .add("model", options_.model_name)
        .add_raw("choices", "[" + choice.finish() + "]");
    if (r.include_usage) c.add_null("usage");
    return "data: " + c.finish() + "\n\n";
  }

  static std::int64_t now_s() {
    return std::chrono::duration_cast<std::chrono::seconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }

  // Waits for the next event of `st` (posted by the engine thread).
  static net::awaitable<generation_event> next_event(request_state& st) {
    while (st.events.empty() && !st.cancelled->load()) {
      st.timer.expires_at(net::steady_timer::time_point::max());
      boost::system::error_code ec;
      co_await st.timer.async_wait(net::redirect_error(net::use_awaitable, ec));
    }
    if (st.events.empty()) co_return generation_event{};  // cancelled
    generation_event e = std::move(st.events.front());
    st.events.pop_front();
    co_return e;
  }

  net::awaitable<void> generate(http::exchange& ex, bool chat) {
    auto parsed = parse(ex.req().body(), chat);
    if (!parsed) {
      co_await ex.send_error(parsed.error());
      co_return;
    }
    parsed_request r = std::move(*parsed);
    auto st = std::make_shared<request_state>(ex.stream().get_executor());
    generation_request g;
    g.prompt = r.prompt;
    g.sampling = r.sampling;
    g.cancelled = st->cancelled;
    g.on_event = [st](const generation_event& e) {
      net::post(st->executor, [st, e] {
        st->events.push_back(e);
        st->timer.cancel();
      });
    };
    if (!scheduler_.submit(std::move(g))) {  // checked in parse() already
      co_await ex.send_error(invalid_request("The request does not fit the key/value cache.",
                                             "max_tokens", "context_length_exceeded"));
      co_return;
    }
    const std::string id = (chat ? "chatcmpl-" : "cmpl-") + new_request_id().substr(4);

    if (!r.stream) {
      ex.watch_for_disconnect([st] {
        st->cancelled->store(true);
        st->timer.cancel();
      });
      std::string text;
      generation_event e;
      for (;;) {
        e = co_await next_event(*st);
        if (st->cancelled->load()) co_return;  // the client went away: nothing to answer
        text += e.text;
        if (e.done) break;
      }
      json_object_writer choice;
      choice.add("index", 0);
      if (chat) {
        json_object_writer message;
        message.add("role", "assistant").add("content", text);
        choice.add_raw("message", message.finish());
      } else {
        choice.add("text", text).add_null("logprobs");
      }
      choice.add("finish_reason", e.finish_reason);
      json_object_writer out;
      out.add("id", id)
          .add("object", chat ? "chat.completion" : "text_completion")
          .add("created", now_s())
          .add("model", options_.model_name)
          .add_raw("choices", "[" + choice.finish() + "]")
          .add_raw("usage", usage_json(e));
      co_await send_json(ex, bhttp::status::ok, out.finish());
      co_return;
    }

    bhttp::response<bhttp::empty_body> head{bhttp::status::ok, ex.req().version()};
    head.set(bhttp::field::content_type, "text/event-stream");
    head.set(bhttp::field::cache_control, "no-cache");
    if (!co_await ex.send_chunked_header(std::move(head))) {
      st->cancelled->store(true);
      co_return;
    }
    if (chat && !co_await ex.send_chunk(chunk(r, id, "", "", true))) {
      st->cancelled->store(true);
      co_return;
    }
    for (;;) {
      generation_event e = co_await next_event(*st);
      std::string out;
      if (!e.text.empty()) out += chunk(r, id, e.text, "", false);
      if (e.done) {
        out += chunk(r, id, "", e.finish_reason, false);
        if (r.include_usage) {
          json_object_writer u;
          u.add("id", id)
              .add("object", chat ? "chat.completion.chunk" : "text_completion")
              .add("created", now_s())
              .add("model", options_.model_name)
              .add_raw("choices", "[]")
              .add_raw("usage", usage_json(e));
          out += "data: " + u.finish() + "\n\n";
        }
        out += "data: [DONE]\n\n";
      }
      if (!out.empty() && !co_await ex.send_chunk(out)) {
        st->cancelled->store(true);  // the client went away: free the sequence
        co_return;
      }
      if (e.done) break;
    }
    co_await ex.send_last_chunk();
  }

  net::awaitable<void> tokenize(http::exchange& ex) {
    const auto doc = json::document::parse(ex.req().body());
    std::vector<int> ids;
    std::optional<api_error> error;
    if (!doc || !doc->root().is_object()) {
      error = invalid_request("The body must be a JSON object.");
    } else {
      error = prompt_of(doc->root(), doc->root().find("messages").valid(), ids);
    }
    if (error) {
      co_await ex.send_error(*error);
      co_return;
    }
    std::string list = "[";
    for (std::size_t i = 0; i < ids.size(); ++i) list += (i ? "," : "") + std::to_string(ids[i]);
    json_object_writer out;
    out.add_raw("tokens", list + "]")
        .add("count", static_cast<std::int64_t>(ids.size()))
        .add("max_model_len", weights_.config.max_position_embeddings);
    co_await send_json(ex, bhttp::status::ok, out.finish());
  }

  const serve_options& options_;
  const model_weights& weights_;
  const metering::prompt_counter& prompts_;
  scheduler& scheduler_;
  metrics::registry& registry_;
  std::int64_t created_;
};

// The chat template family of a model folder: tokenizer_config.json's chat_template_family
// (written by make-model), else guessed from its chat_template text.
std::optional<metering::prompt_format> template_family(const std::string& dir) {
  std::string text;
  if (!read_file(dir + "/tokenizer_config.json", text)) return std::nullopt;
  const auto doc = json::document::parse(text);
  if (!doc || !doc->root().is_object()) return std::nullopt;
  const json::value family = doc->root().find("chat_template_family");
  if (family.valid() && family.is_string())
    return metering::parse_prompt_format(family.as_string());
  const json::value tmpl = doc->root().find("chat_template");
  if (tmpl.valid() && tmpl.is_string()) {
    if (tmpl.as_string().find("<|start_header_id|>") != std::string_view::npos) {
      return metering::prompt_format::llama3;
    }
    if (tmpl.as_string().find("<|im_start|>") != std::string_view::npos) {
      return metering::prompt_format::chatml;
    }
  }
  return std::nullopt;
}

}  // namespace

std::optional<model_folder> load_model_folder(const std::string& dir) {
  auto weights = load_model(dir);
  if (!weights) {
    std::fprintf(stderr, "tollgate-infer: %s\n", weights.error().message.c_str());
    return std::nullopt;
  }
  auto tok = metering::tokenizer::load_hugging_face(dir + "/tokenizer.json");
  if (!tok) {
    std::fprintf(stderr, "tollgate-infer: %s/tokenizer.json: %s\n", dir.c_str(),
                 tok.error().message.c_str());
    return std::nullopt;
  }
  return model_folder{std::move(*weights), std::move(*tok)};
}

int serve(const serve_options& o) {
  std::signal(SIGPIPE, SIG_IGN);
  logger log{stderr, log_level::info};
  auto folder = load_model_folder(o.model_dir);
  if (!folder) return 1;
  const model_weights* weights = &folder->weights;
  const auto& tok = folder->tokenizer;
  const auto family = template_family(o.model_dir);
  if (!family) {
    std::fprintf(stderr,
                 "tollgate-infer: %s/tokenizer_config.json names no chat template family "
                 "(llama3 or chatml)\n",
                 o.model_dir.c_str());
    return 1;
  }
  auto prompts = metering::prompt_counter::make(tok, *family);
  if (!prompts) {
    std::fprintf(stderr, "tollgate-infer: %s\n", prompts.error().message.c_str());
    return 1;
  }
  serve_options options = o;
  if (options.model_name.empty()) {
    options.model_name = std::filesystem::path(o.model_dir).filename().string();
  }
  listen_address address;
  if (!parse_listen_address(o.listen, address)) {
    std::fprintf(stderr, "tollgate-infer: bad --listen %s\n", o.listen.c_str());
    return 2;
  }
  metrics::registry registry;
  engine_limits limits;
  limits.kv_cache_mb = o.kv_cache_mb;
  limits.kv_blocks = o.kv_blocks;
  limits.kv_block_size = o.kv_block_size;
  limits.max_batch_tokens = o.max_batch_tokens;
  limits.max_logit_rows = o.max_sequences;
  std::unique_ptr<forward_engine> engine_owner;
  try {
    engine_owner = o.make_engine(*weights, limits);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tollgate-infer: %s\n", e.what());
    return 1;
  }
  forward_engine& engine = *engine_owner;
  prefix_cache_options prefix;
  prefix.enabled = o.prefix_cache;
  prefix.cached_blocks_max = o.prefix_cache_blocks;
  scheduler sched(engine, *tok, weights->config.eos_token_ids, o.max_sequences, registry, prefix);
  std::thread engine_thread([&sched] { sched.run(); });
  // The engine thread posts events to the server's I/O threads: it must end before the server
  // (and its io_contexts) is destroyed.
  struct engine_stopper {
    scheduler& s;
    std::thread& t;
    ~engine_stopper() {
      s.stop();
      if (t.joinable()) t.join();
    }
  };
  int code = 0;
  try {
    http::server_limits limits;
    http::server server{limits, static_cast<unsigned>(o.threads), log, registry};
    engine_stopper stop_engine{sched, engine_thread};  // destroyed before `server`
    infer_server handler(options, *weights, *prompts, sched, registry);
    server.add_listener(
        {"api", address, [&handler](http::exchange& ex) { return handler.handle(ex); }});
    json_object_writer f;
    f.add("model", options.model_name)
        .add("listen", o.listen)
        .add("device", engine.device())
        .add("max_sequences", o.max_sequences)
        .add("kv_cache_blocks", engine.cache().total_blocks())
        .add("kv_block_size", engine.cache().block_size())
        .add("kv_cache_bytes", static_cast<std::int64_t>(engine.cache().bytes()))
        .add("prefix_cache", o.prefix_cache)
        .add("prefix_cache_blocks", o.prefix_cache_blocks);
    log.info("tollgate-infer serving", f);
    server.run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tollgate-infer: %s\n", e.what());
    code = 1;
  }
  sched.stop();
  if (engine_thread.joinable()) engine_thread.join();
  return code;
}

}  // namespace tollgate::gpu
