// tollgate-tokenizer-bench: single-thread tokenizer throughput, driven by
// tests/bench/tokenizer_bench.mjs (which compares it with the JavaScript references).
//   tollgate-tokenizer-bench --data-dir DIR --corpus FILE.jsonl --encoding NAME [--rounds N]
// The corpus is one JSON string per line. Prints one JSON object: bytes, tokens, and the median
// seconds of `rounds` passes for encode (ids into a reused vector) and for count; then the median
// time to count a chat prompt of about 1,000 tokens (prompt_count on a parsed request body, and
// parse + count), over many repetitions.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "core/json_dom.hpp"
#include "metering/prompt_count.hpp"
#include "metering/tokenizer_registry.hpp"
#include "tests/bench/bench_args.hpp"

using namespace tollgate;
using namespace tollgate::metering;
using bench_clock = std::chrono::steady_clock;
using tollgate::bench::arg;

namespace {

double seconds_since(bench_clock::time_point t0) {
  return std::chrono::duration<double>(bench_clock::now() - t0).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// A chat request of about 1,000 tokens: a system prompt and a few turns of English prose.
std::string thousand_token_chat(const tokenizer& tok) {
  const std::string sentence =
      "The gateway counts every prompt with the model's own tokenizer before it forwards the "
      "request, so that budgets are reserved against exact numbers rather than estimates. ";
  std::string body = R"({"model":"m","messages":[)";
  std::size_t tokens = 0;
  for (int turn = 0; tokens < 1000; ++turn) {
    std::string content;
    for (int k = 0; k < 4; ++k) content += sentence;
    tokens += tok.count(content) + 4;
    if (turn) body += ',';
    body += std::string(R"({"role":")") + (turn == 0 ? "system" : turn % 2 ? "user" : "assistant") +
            R"(","content":")" + content + R"("})";
  }
  return body + "]}";
}

}  // namespace

int main(int argc, char** argv) {
  const std::string dir = arg(argc, argv, "--data-dir", default_tokenizer_dir());
  const std::string corpus_path = arg(argc, argv, "--corpus", "");
  const std::string encoding = arg(argc, argv, "--encoding", "cl100k_base");
  const int rounds = std::stoi(arg(argc, argv, "--rounds", "5"));

  tokenizer_registry registry(dir);
  const auto loaded_at = bench_clock::now();
  const auto tok = registry.get(encoding);
  if (!tok) {
    std::fprintf(stderr, "tokenizer_bench: %s\n", tok.error().message.c_str());
    return 1;
  }
  const double load_s = seconds_since(loaded_at);

  std::vector<std::string> samples;
  std::size_t bytes = 0;
  if (!corpus_path.empty()) {
    std::ifstream in(corpus_path);
    for (std::string line; std::getline(in, line);) {
      const auto doc = json::document::parse(line);
      if (!doc || !doc->root().is_string()) {
        std::fprintf(stderr, "tokenizer_bench: corpus line is not a JSON string\n");
        return 1;
      }
      samples.emplace_back(doc->root().as_string());
      bytes += samples.back().size();
    }
  }

  std::vector<double> encode_s, count_s;
  std::size_t tokens = 0;
  std::vector<token_id> ids;
  for (int r = 0; r < rounds && !samples.empty(); ++r) {
    auto t0 = bench_clock::now();
    tokens = 0;
    for (const auto& s : samples) {
      ids.clear();
      (*tok)->encode(s, ids);
      tokens += ids.size();
    }
    encode_s.push_back(seconds_since(t0));
    t0 = bench_clock::now();
    std::size_t counted = 0;
    for (const auto& s : samples) counted += (*tok)->count(s);
    count_s.push_back(seconds_since(t0));
    if (counted != tokens) {
      std::fprintf(stderr, "tokenizer_bench: count %zu != encode %zu\n", counted, tokens);
      return 1;
    }
  }

  // The 1,000-token chat prompt, as the gateway counts it.
  const auto counter = prompt_counter::make(*tok, prompt_format::openai);
  const std::string body = thousand_token_chat(**tok);
  const auto doc = json::document::parse(body);
  const std::int64_t chat_tokens = counter->count_chat(doc->root());
  std::vector<double> chat_count_us, chat_parse_count_us;
  for (int r = 0; r < 2001; ++r) {
    auto t0 = bench_clock::now();
    const std::int64_t n = counter->count_chat(doc->root());
    chat_count_us.push_back(seconds_since(t0) * 1e6);
    t0 = bench_clock::now();
    const auto d = json::document::parse(body);
    const std::int64_t m = counter->count_chat(d->root());
    chat_parse_count_us.push_back(seconds_since(t0) * 1e6);
    if (n != chat_tokens || m != chat_tokens) return 1;
  }

  std::printf(
      "{\"encoding\":\"%s\",\"load_s\":%.3f,\"bytes\":%zu,\"tokens\":%zu,\"encode_s\":%.6f,"
      "\"count_s\":%.6f,\"chat_prompt_tokens\":%lld,\"chat_count_us\":%.2f,"
      "\"chat_parse_count_us\":%.2f}\n",
      encoding.c_str(), load_s, bytes, tokens, encode_s.empty() ? 0.0 : median(encode_s),
      count_s.empty() ? 0.0 : median(count_s), static_cast<long long>(chat_tokens),
      median(chat_count_us), median(chat_parse_count_us));
  return 0;
}
