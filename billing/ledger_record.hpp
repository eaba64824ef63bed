// The ledger journal's records: one usage event as the spool keeps it, with a format version so
// that a gateway replays the spool files of the release before it.
//   version 1: the usage_events COPY line alone (as written before versions existed).
//   version 2: NUL, '2', TAB, the settled spend (micro-units, or \N), TAB, the spend counters,
//              TAB, the credit counters (each a comma-separated list of Redis keys), TAB, then
//              the COPY line. A COPY line never holds NUL (text fields are stripped of it), so a
//              leading NUL tells the versions apart.
//   version 3: as version 2, the COPY line with three more columns at its end: end_user, tags
//              and session_id (attribution). Versions 1 and 2 replay with those NULL. The
//              tags are a JSON object; the writer stores the id of their set instead
//              (billing/tag_sets.hpp).
//   version 4: as version 3, the COPY line with three more columns at its end:
//              upstream_endpoint, attempts and routing_rule. Versions 1-3 replay with those NULL.
//   version 5: as version 4, the COPY line with one more column at its end: trace_id (W3C
//              trace context). Versions 1-4 replay with it NULL.
//   version 6: as version 5, the COPY line with four more columns at its end:
//              cache_write_tokens, image_prompt_tokens, audio_prompt_tokens and
//              audio_completion_tokens. Versions 1-5 replay with them 0.
//   version 7: as version 6, with one more header field after the credit counters: a credit
//              hold's bundle coverage (metering/budgets/cover.hpp), empty or "<settled credit
//              micro-units>,<input pool tokens>,<output pool tokens>". The COPY line is
//              version 6's. Versions 2-6 replay without coverage.
// Each record ends in '\n' and holds no other newline.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "metering/usage.hpp"

namespace tollgate::billing {

constexpr int ledger_record_version = 7;

// What a COPY line written before version 3 lacks: its three attribution columns, NULL.
inline constexpr std::string_view attribution_columns_null = "\t\\N\t\\N\t\\N";

struct ledger_record {
  int version = ledger_record_version;
  std::string_view copy_line;              // without its '\n', as written
  std::int64_t settled_spend_micros = -1;  // -1: none (and always for version 1)
  std::string_view spend_counters;         // comma-separated Redis keys, or empty
  std::string_view credit_counters;
  // Version 7, with bundle coverage: what the credit counters were settled with (-1: as the
  // spend, settled_spend_micros, and no coverage), and the tokens the coverage pools (input,
  // output) were settled with.
  std::int64_t settled_credit_micros = -1;
  std::int64_t cover_tokens[2] = {0, 0};
};

// What a COPY line written before version 6 lacks: the four token classes of version 6, 0.
inline constexpr std::string_view token_class_columns_zero = "\t0\t0\t0\t0";
// What a line written before version 5 lacks: trace_id (NULL) and those.
inline constexpr std::string_view trace_and_token_columns = "\t\\N\t0\t0\t0\t0";
// What a line written before version 4 lacks: upstream_endpoint, attempts, routing_rule,
// trace_id and the token classes.
inline constexpr std::string_view attempts_trace_and_token_columns =
    "\t\\N\t\\N\t\\N\t\\N\t0\t0\t0\t0";
// All the groups, for a line written before version 3.
inline constexpr std::string_view attribution_attempts_trace_and_token_columns =
    "\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t0\t0\t0\t0";

// Whether the record's COPY line lacks the attribution columns (attribution_columns_null).
inline bool lacks_attribution(const ledger_record& r) { return r.version < 3; }
// The columns that complete the record's COPY line to the current version ("" for none).
inline std::string_view missing_columns_null(const ledger_record& r) {
  if (r.version < 3) return attribution_attempts_trace_and_token_columns;
  if (r.version < 4) return attempts_trace_and_token_columns;
  if (r.version < 5) return trace_and_token_columns;
  if (r.version < 6) return token_class_columns_zero;
  return {};
}

// Appends `r` as one record of the current version, ending in '\n'.
void append_ledger_record(std::string& out, const metering::usage_record& r);

// Reads one record (without its '\n'); nullopt for an unknown version or a damaged header.
std::optional<ledger_record> parse_ledger_record(std::string_view line);

// Calls f with each non-empty piece of `text` between separators.
template <typename F>
void for_each_piece(std::string_view text, char separator, F&& f) {
  for (std::size_t at = 0; at < text.size();) {
    const std::size_t next = text.find(separator, at);
    const std::size_t end = next == std::string_view::npos ? text.size() : next;
    if (end > at) f(text.substr(at, end - at));
    at = end + 1;
  }
}

// Splits records joined by '\n' (the in-memory queue, or a spool segment read back) into
// their lines.
template <typename F>
void for_each_ledger_line(std::string_view records, F&& f) {
  for_each_piece(records, '\n', std::forward<F>(f));
}

}  // namespace tollgate::billing
