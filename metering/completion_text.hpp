// Collects the completion text of a response so the gateway can count it itself when the
// upstream reports no usage. Streams keep the raw event payloads (a copy, no parsing on the hot
// path) and parse them only if they are needed, or to stay under a memory bound. Chat and
// completion chunks and responses are read from their choices; Responses API events (a string
// `type`) from their text deltas, and a whole Responses object from its output items.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "metering/prompt_count.hpp"

namespace tollgate::metering {

class completion_text {
 public:
  // One SSE data payload of a chat, completion or Responses stream.
  void add_stream_event(std::string_view data);
  // A whole (non-streamed) chat, completion or Responses response body.
  void add_response(std::string_view body);
  // Tokens of everything collected: each choice's text counted on its own, then summed.
  std::int64_t count(const prompt_counter& counter);

 private:
  void absorb_pending();
  void absorb(json::value root, bool delta);
  void absorb_responses_event(json::value event);
  void absorb_responses_object(json::value response);

  static constexpr std::size_t pending_limit = 4u << 20;
  std::string pending_;                   // raw stream payloads, '\n'-separated
  std::map<std::int64_t, std::string> text_;  // by choice index (Responses: output index)
};

}  // namespace tollgate::metering
