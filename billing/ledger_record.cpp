// Ledger journal records: see ledger_record.hpp.
#include "billing/ledger_record.hpp"

#include <charconv>
#include <chrono>
#include <cstdio>
#include <ctime>

#include "billing/pg.hpp"
#include "core/limits.hpp"

#include "billing/ledger_writer.hpp"

namespace tollgate::billing {

namespace {

// Text fields come from requests (a model name the gateway does not serve, say): they are
// capped and stripped of NUL, which PostgreSQL text cannot hold.
constexpr std::size_t text_field_bytes_max = 256;
// Attribution fields are checked on the way in (metering/attribution.hpp) in characters; this
// cap (four bytes a character) only guards the record.
constexpr std::size_t end_user_bytes_max = 4 * limits::end_user_chars_max;
constexpr std::size_t session_bytes_max = 4 * limits::session_chars_max;
constexpr std::size_t tags_bytes_max = 64 * 1024;

void add_text(std::string& out, std::string_view v, std::size_t bytes_max = text_field_bytes_max) {
  if (v.size() > bytes_max) {
    v = v.substr(0, bytes_max);
    // Do not end inside a UTF-8 sequence: drop a trailing partial character.
    while (!v.empty() && (static_cast<unsigned char>(v.back()) & 0xC0) == 0x80) v.remove_suffix(1);
    if (!v.empty() && static_cast<unsigned char>(v.back()) >= 0xC0) v.remove_suffix(1);
  }
  if (v.find('\0') == std::string_view::npos) {
    pg::append_copy_text(out, v);
  } else {
    std::string clean(v);
    std::erase(clean, '\0');
    pg::append_copy_text(out, clean);
  }
  out.push_back('\t');
}
void add_opt_text(std::string& out, std::string_view v,
                  std::size_t bytes_max = text_field_bytes_max) {
  if (v.empty()) {
    out += "\\N\t";
  } else {
    add_text(out, v, bytes_max);
  }
}
void add_int(std::string& out, std::int64_t v) {
  pg::append_int(out, v);
  out.push_back('\t');
}
void add_opt_int(std::string& out, std::int64_t v) {  // negative = NULL
  if (v < 0) {
    out += "\\N\t";
  } else {
    add_int(out, v);
  }
}
void add_bool(std::string& out, bool v) { out += v ? "t\t" : "f\t"; }

// "YYYY-MM-DD HH:MM:SS.mmm+00" and a tab, in integer calendar arithmetic (snprintf was about 2 %
// of the gateway's instructions per request).
void add_timestamp(std::string& out, std::int64_t unix_ms) {
  using namespace std::chrono;
  const sys_time<milliseconds> at{milliseconds{unix_ms}};
  const auto day = floor<days>(at);
  const year_month_day ymd{day};
  const hh_mm_ss<milliseconds> time{at - day};
  const int y = static_cast<int>(ymd.year());
  if (y < 0 || y > 9999) {  // not a time a request is stamped with; kept readable all the same
    char buf[64];
    std::snprintf(buf, sizeof buf, "%d-%02u-%02u %02d:%02d:%02d.%03d+00\t", y,
                  static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                  static_cast<int>(time.hours().count()), static_cast<int>(time.minutes().count()),
                  static_cast<int>(time.seconds().count()),
                  static_cast<int>(time.subseconds().count()));
    out += buf;
    return;
  }
  char text[] = "0000-00-00 00:00:00.000+00\t";
  const auto put = [&text](std::size_t at_index, int value, int digits) {
    for (int i = digits - 1; i >= 0; --i, value /= 10) {
      text[at_index + static_cast<std::size_t>(i)] = static_cast<char>('0' + value % 10);
    }
  };
  put(0, y, 4);
  put(5, static_cast<int>(static_cast<unsigned>(ymd.month())), 2);
  put(8, static_cast<int>(static_cast<unsigned>(ymd.day())), 2);
  put(11, static_cast<int>(time.hours().count()), 2);
  put(14, static_cast<int>(time.minutes().count()), 2);
  put(17, static_cast<int>(time.seconds().count()), 2);
  put(20, static_cast<int>(time.subseconds().count()), 3);
  out.append(text, sizeof text - 1);
}

void append_keys(std::string& out, const std::vector<std::string>& keys) {
  for (std::size_t i = 0; i < keys.size(); ++i) {
    if (i > 0) out.push_back(',');
    // Counter keys are built by the budget engine from ids without tabs, commas or newlines;
    // anything else is left out rather than break the record.
    if (keys[i].find_first_of("\t,\n\r", 0) == std::string::npos) out += keys[i];
  }
  out.push_back('\t');
}

// The next TAB-terminated field of `rest`, consumed; nullopt without a TAB.
std::optional<std::string_view> take_field(std::string_view& rest) {
  const std::size_t tab = rest.find('\t');
  if (tab == std::string_view::npos) return std::nullopt;
  const std::string_view f = rest.substr(0, tab);
  rest.remove_prefix(tab + 1);
  return f;
}

// Version 7's coverage field (ledger_record.hpp), when the record has coverage.
void append_cover(std::string& out, const metering::usage_record& r) {
  if (r.settled_credit_micros >= 0) {
    pg::append_int(out, r.settled_credit_micros);
    for (const std::int64_t n : r.cover_tokens) {
      out.push_back(',');
      pg::append_int(out, n);
    }
  }
  out.push_back('\t');
}

std::optional<std::int64_t> non_negative(std::string_view text) {
  std::int64_t v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || v < 0) return std::nullopt;
  return v;
}

// Reads a coverage field into `rec`; false when it is damaged.
bool parse_cover(std::string_view field, ledger_record& rec) {
  if (field.empty()) return true;
  const std::size_t first = field.find(',');
  const std::size_t second = first == field.npos ? field.npos : field.find(',', first + 1);
  if (second == field.npos || field.find(',', second + 1) != field.npos) return false;
  const auto credit = non_negative(field.substr(0, first));
  const auto in = non_negative(field.substr(first + 1, second - first - 1));
  const auto out = non_negative(field.substr(second + 1));
  if (!credit || !in || !out) return false;
  rec.settled_credit_micros = *credit;
  rec.cover_tokens[0] = *in;
  rec.cover_tokens[1] = *out;
  return true;
}

}  // namespace

const char* const usage_event_columns =
    "tenant_id, occurred_at, request_id, project_id, api_key_id, endpoint, model, upstream, "
    "stream, batch, status, prompt_tokens, cached_prompt_tokens, completion_tokens, "
    "reasoning_tokens, counted_prompt_tokens, counted_completion_tokens, usage_reported, "
    "estimated, latency_us, ttft_us, client_disconnected, error_code, client_request_id, "
    "end_user, tag_set_id, session_id, upstream_endpoint, attempts, routing_rule, trace_id, "
    "cache_write_tokens, image_prompt_tokens, audio_prompt_tokens, audio_completion_tokens";

void append_usage_row(std::string& out, const metering::usage_record& r) {
  add_text(out, r.tenant_id);
  add_timestamp(out, r.occurred_at_ms);
  add_text(out, r.request_id);
  add_opt_text(out, r.project_id);
  add_opt_text(out, r.api_key_id);
  add_text(out, r.endpoint);
  add_text(out, r.model);
  add_text(out, r.upstream);
  add_bool(out, r.stream);
  add_bool(out, r.batch);
  add_int(out, r.status);
  add_int(out, r.prompt_tokens);
  add_int(out, r.cached_tokens);
  add_int(out, r.completion_tokens);
  add_int(out, r.reasoning_tokens);
  add_opt_int(out, r.counted_prompt_tokens);
  add_opt_int(out, r.counted_completion_tokens);
  add_bool(out, r.usage_reported);
  add_bool(out, r.estimated);
  add_int(out, r.latency_us);
  add_opt_int(out, r.ttft_us);
  add_bool(out, r.client_disconnected);
  add_opt_text(out, r.error_code);
  add_opt_text(out, r.client_request_id);
  add_opt_text(out, r.attribution.end_user, end_user_bytes_max);
  // Tags longer than the cap (never, within the checked limits) are dropped rather than cut
  // into text that is not JSON.
  const std::string tags = r.attribution.tags_json();
  add_opt_text(out, tags.size() <= tags_bytes_max ? std::string_view(tags) : std::string_view{},
               tags_bytes_max);
  add_opt_text(out, r.attribution.session, session_bytes_max);
  add_opt_text(out, r.upstream_endpoint);
  add_opt_int(out, r.attempts > 0 ? r.attempts : -1);
  add_opt_text(out, r.routing_rule);
  add_opt_text(out, r.trace_id);
  add_int(out, r.cache_write_tokens);
  add_int(out, r.image_prompt_tokens);
  add_int(out, r.audio_prompt_tokens);
  add_int(out, r.audio_completion_tokens);
  out.back() = '\n';
}

void append_ledger_record(std::string& out, const metering::usage_record& r) {
  out.push_back('\0');
  out += "7\t";
  if (r.settled_spend_micros >= 0) {
    pg::append_int(out, r.settled_spend_micros);
  } else {
    out += "\\N";
  }
  out.push_back('\t');
  append_keys(out, r.spend_counters);
  append_keys(out, r.credit_counters);
  append_cover(out, r);
  append_usage_row(out, r);
}

std::optional<ledger_record> parse_ledger_record(std::string_view line) {
  ledger_record rec;
  if (line.empty() || line.front() != '\0') {
    rec.version = 1;
    rec.copy_line = line;
    return rec;
  }
  std::string_view rest = line.substr(1);
  const auto version = take_field(rest);
  if (!version || version->size() != 1 || (*version)[0] < '2' || (*version)[0] > '7') {
    return std::nullopt;
  }
  rec.version = (*version)[0] - '0';
  const auto spend = take_field(rest);
  const auto spend_counters = take_field(rest);
  const auto credit_counters = take_field(rest);
  if (!spend || !spend_counters || !credit_counters) return std::nullopt;
  if (*spend != "\\N") {
    std::int64_t v = 0;
    const auto [end, ec] = std::from_chars(spend->data(), spend->data() + spend->size(), v);
    if (ec != std::errc() || end != spend->data() + spend->size() || v < 0) return std::nullopt;
    rec.settled_spend_micros = v;
  }
  rec.spend_counters = *spend_counters;
  rec.credit_counters = *credit_counters;
  if (rec.version >= 7) {
    const auto cover = take_field(rest);
    if (!cover || !parse_cover(*cover, rec)) return std::nullopt;
  }
  rec.copy_line = rest;
  return rec;
}

}  // namespace tollgate::billing
