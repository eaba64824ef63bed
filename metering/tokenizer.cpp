// The BPE core and its two loaders (see tokenizer.hpp).
#include "metering/tokenizer.hpp"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <queue>
#include <sstream>

#include "core/json_dom.hpp"
#include "metering/unicode.hpp"

namespace tollgate::metering {
namespace {

constexpr std::uint32_t no_rank = 0xFFFFFFFF;

inline std::uint64_t mix(std::uint64_t h) {
  h ^= h >> 32;
  h *= 0xd6e8feb86659fd93ULL;
  h ^= h >> 32;
  h *= 0xd6e8feb86659fd93ULL;
  h ^= h >> 32;
  return h;
}

// The first (up to) 8 bytes of p[0..n) as one little-endian word, zero-padded: for n <= 8 it
// is the whole key. When the 8 bytes at p lie in one page, one load and a mask read them; the
// bytes past n are masked off before use (the load may pass the end of the buffer, never of the
// page, hence no_sanitize).
__attribute__((no_sanitize("address"))) inline std::uint64_t head_word(const unsigned char* p,
                                                                        std::size_t n) {
  std::uint64_t w = 0;
  if (n >= 8 || (reinterpret_cast<std::uintptr_t>(p) & 4095) <= 4096 - 8) {
    __builtin_memcpy(&w, p, 8);
    if (n < 8) w &= (std::uint64_t(1) << (8 * n)) - 1;
  } else {
    for (std::size_t i = 0; i < n; ++i) w |= std::uint64_t(p[i]) << (8 * i);
  }
  return w;
}

inline std::uint64_t hash_key(std::uint64_t head, const unsigned char* p, std::size_t n) {
  std::uint64_t h = head + 0x9E3779B97F4A7C15ULL * n;
  for (std::size_t i = 8; i < n; i += 8) {
    h = mix(h) ^ head_word(p + i, std::min<std::size_t>(8, n - i));
  }
  h *= 0xbf58476d1ce4e5b9ULL;
  return h ^ (h >> 29);
}

std::size_t table_size_for(std::size_t entries) {
  std::size_t size = 16;
  while (size < entries * 2) size <<= 1;
  return size;
}

result<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return internal_error("cannot read tokenizer file " + path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

std::optional<std::string> decode_base64(std::string_view text) {
  static const auto table = [] {
    std::array<int, 256> t{};
    t.fill(-1);
    const char* alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (int i = 0; i < 64; ++i) t[static_cast<unsigned char>(alphabet[i])] = i;
    return t;
  }();
  std::string out;
  std::uint32_t acc = 0;
  int bits = 0;
  for (const char ch : text) {
    if (ch == '=') break;
    const int v = table[static_cast<unsigned char>(ch)];
    if (v < 0) return std::nullopt;
    acc = (acc << 6) | std::uint32_t(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(char((acc >> bits) & 0xFF));
    }
  }
  return out;
}

// GPT-2's byte-level alphabet: every byte is shown as a printable character; token strings in
// tokenizer.json are written in it.
std::array<char32_t, 256> byte_level_chars() {
  std::array<char32_t, 256> chars{};
  char32_t next = 256;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    chars[std::size_t(b)] = printable ? char32_t(b) : next++;
  }
  return chars;
}

// A byte-level token string back to its bytes; nullopt if a character is outside the alphabet.
std::optional<std::string> byte_level_to_bytes(std::string_view token, const std::vector<int>& byte_of_char) {
  std::string out;
  const auto* p = reinterpret_cast<const unsigned char*>(token.data());
  const auto* end = p + token.size();
  while (p < end) {
    char32_t cp;
    p += unicode::decode(p, end, cp);
    if (cp >= byte_of_char.size() || byte_of_char[cp] < 0) return std::nullopt;
    out.push_back(char(byte_of_char[cp]));
  }
  return out;
}

struct tiktoken_specials {
  std::string_view encoding;
  std::vector<std::pair<std::string, token_id>> tokens;
};

// The special tokens of OpenAI's encodings (tiktoken_ext/openai_public.py); the .tiktoken files
// hold only the mergeable ranks.
const std::vector<tiktoken_specials>& known_tiktoken_encodings() {
  static const std::vector<tiktoken_specials> encodings = {
      {"cl100k_base",
       {{"<|endoftext|>", 100257},
        {"<|fim_prefix|>", 100258},
        {"<|fim_middle|>", 100259},
        {"<|fim_suffix|>", 100260},
        {"<|endofprompt|>", 100276}}},
      {"o200k_base", {{"<|endoftext|>", 199999}, {"<|endofprompt|>", 200018}}},
  };
  return encodings;
}

}  // namespace

// Open-addressing hash map from token bytes to id. A slot keeps the key's head word and length,
// so keys of up to 8 bytes (most pieces) are matched without touching the token text.
struct tokenizer::byte_map {
  struct slot {
    std::uint64_t head = 0;
    std::uint32_t length = 0;
    token_id id = no_rank;
  };
  std::vector<slot> slots;
  std::size_t mask = 0;

  void build(const tokenizer& t, const std::vector<token_id>& ids) {
    slots.assign(table_size_for(ids.size()), slot{});
    mask = slots.size() - 1;
    for (const token_id id : ids) {
      const std::string_view bytes = t.token_bytes(id);
      const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
      const std::uint64_t head = head_word(p, bytes.size());
      std::size_t i = hash_key(head, p, bytes.size()) & mask;
      while (slots[i].id != no_rank) i = (i + 1) & mask;
      slots[i] = {head, std::uint32_t(bytes.size()), id};
    }
  }

  std::optional<token_id> find(const tokenizer& t, const unsigned char* p, std::size_t n) const {
    const std::uint64_t head = head_word(p, n);
    for (std::size_t i = hash_key(head, p, n) & mask;; i = (i + 1) & mask) {
      const slot& s = slots[i];
      if (s.id == no_rank) return std::nullopt;
      if (s.head == head && s.length == n &&
          (n <= 8 || std::memcmp(t.token_text_.data() + t.token_offset_[s.id] + 8, p + 8, n - 8) == 0)) {
        return s.id;
      }
    }
  }
};

// Open-addressing hash map from an adjacent pair of ids to the merge that joins them.
struct tokenizer::pair_map {
  struct slot {
    std::uint64_t key = ~0ULL;
    std::uint32_t rank = no_rank;
    token_id merged = 0;
  };
  std::vector<slot> slots;
  std::size_t mask = 0;
  std::size_t used = 0;

  static std::uint64_t key_of(token_id a, token_id b) { return (std::uint64_t(a) << 32) | b; }

  void reserve(std::size_t entries) {
    slots.assign(table_size_for(entries), slot{});
    mask = slots.size() - 1;
    used = 0;
  }
  // Keeps the first merge given for a pair (the lowest rank when inserted in rank order).
  void insert(token_id a, token_id b, std::uint32_t rank, token_id merged) {
    const std::uint64_t key = key_of(a, b);
    for (std::size_t i = mix(key) & mask;; i = (i + 1) & mask) {
      if (slots[i].key == key) return;
      if (slots[i].key == ~0ULL) {
        slots[i] = {key, rank, merged};
        ++used;
        return;
      }
    }
  }
  const slot* find(token_id a, token_id b) const {
    const std::uint64_t key = key_of(a, b);
    for (std::size_t i = mix(key) & mask;; i = (i + 1) & mask) {
      const slot& s = slots[i];
      if (s.key == key) return &s;
      if (s.key == ~0ULL) return nullptr;
    }
  }
};

tokenizer::tokenizer() : by_bytes_(std::make_unique<byte_map>()), pairs_(std::make_unique<pair_map>()) {}
tokenizer::~tokenizer() = default;

bool tokenizer::add_token(token_id id, std::string_view bytes) {
  // Called with ids in any order; token_offset_ is rebuilt by finish_vocabulary from staged data.
  if (id >= has_token_.size()) has_token_.resize(std::size_t(id) + 1, false);
  if (has_token_[id]) return false;
  has_token_[id] = true;
  staged_.push_back({id, std::string(bytes)});
  return true;
}

std::string_view tokenizer::token_bytes(token_id id) const {
  return std::string_view(token_text_).substr(token_offset_[id], token_offset_[id + 1] - token_offset_[id]);
}

std::optional<token_id> tokenizer::find_bytes(std::string_view bytes) const {
  return by_bytes_->find(*this, reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size());
}

void tokenizer::finish_vocabulary() {
  std::sort(staged_.begin(), staged_.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  token_offset_.assign(has_token_.size() + 1, 0);
  token_text_.clear();
  std::size_t next = 0;
  for (token_id id = 0; id < has_token_.size(); ++id) {
    token_offset_[id] = std::uint32_t(token_text_.size());
    if (next < staged_.size() && staged_[next].first == id) token_text_ += staged_[next++].second;
  }
  token_offset_[has_token_.size()] = std::uint32_t(token_text_.size());
  staged_.clear();
  staged_.shrink_to_fit();
  whole_piece_ok_.assign(has_token_.size(), true);
}

// Merges one piece: repeatedly joins the adjacent pair with the lowest merge rank (the leftmost
// among equals) until no adjacent pair has a merge. Short pieces (almost all) use arrays; long
// ones a heap, so that a very long word stays n log n.
void tokenizer::merge_piece(const unsigned char* piece, std::size_t n, std::vector<token_id>& out) const {
  if (n == 1) {
    out.push_back(byte_token_[piece[0]]);
    return;
  }
  if (const auto id = by_bytes_->find(*this, piece, n); id && (all_whole_pieces_ok_ || whole_piece_ok_[*id])) {
    out.push_back(*id);
    return;
  }
  constexpr std::size_t short_piece = 64;
  if (n > short_piece) {
    merge_long_piece(piece, n, out);
    return;
  }
  token_id symbol[short_piece];
  std::uint32_t rank[short_piece];  // rank[i]: merge of symbol[i] and symbol[i + 1]
  token_id merged[short_piece];
  std::size_t m = n;
  for (std::size_t i = 0; i < n; ++i) symbol[i] = byte_token_[piece[i]];
  const auto look = [&](std::size_t i) {
    if (const auto* s = pairs_->find(symbol[i], symbol[i + 1])) {
      rank[i] = s->rank;
      merged[i] = s->merged;
    } else {
      rank[i] = no_rank;
    }
  };
  for (std::size_t i = 0; i + 1 < m; ++i) look(i);
  while (m > 1) {
    std::size_t best = 0;
    for (std::size_t i = 1; i + 1 < m; ++i) {
      if (rank[i] < rank[best]) best = i;
    }
    if (rank[best] == no_rank) break;
    symbol[best] = merged[best];
    for (std::size_t i = best + 1; i + 1 < m; ++i) {
      symbol[i] = symbol[i + 1];
      rank[i] = rank[i + 1];
      merged[i] = merged[i + 1];
    }
    --m;
    if (best + 1 < m) look(best);
    if (best > 0) look(best - 1);
  }
  out.insert(out.end(), symbol, symbol + m);
}

void tokenizer::merge_long_piece(const unsigned char* piece, std::size_t n, std::vector<token_id>& out) const {
  struct candidate {
    std::uint32_t rank;
    std::uint32_t left;  // symbol index; also the tie-break (leftmost first)
    token_id left_id, right_id, merged;
    bool operator>(const candidate& o) const { return rank != o.rank ? rank > o.rank : left > o.left; }
  };
  std::vector<token_id> symbol(n);
  std::vector<std::uint32_t> next(n), prev(n);
  std::vector<bool> alive(n, true);
  std::priority_queue<candidate, std::vector<candidate>, std::greater<>> queue;
  for (std::size_t i = 0; i < n; ++i) {
    symbol[i] = byte_token_[piece[i]];
    next[i] = std::uint32_t(i + 1);
    prev[i] = std::uint32_t(i - 1);  // wraps for 0; never read for the first symbol
  }
  const auto offer = [&](std::uint32_t left) {
    const std::uint32_t right = next[left];
    if (right >= n) return;
    if (const auto* s = pairs_->find(symbol[left], symbol[right])) {
      queue.push({s->rank, left, symbol[left], symbol[right], s->merged});
    }
  };
  for (std::uint32_t i = 0; i + 1 < n; ++i) offer(i);
  while (!queue.empty()) {
    const candidate c = queue.top();
    queue.pop();
    if (!alive[c.left] || symbol[c.left] != c.left_id) continue;
    const std::uint32_t right = next[c.left];
    if (right >= n || symbol[right] != c.right_id) continue;
    symbol[c.left] = c.merged;
    alive[right] = false;
    next[c.left] = next[right];
    if (next[right] < n) prev[next[right]] = c.left;
    offer(c.left);
    if (c.left > 0) offer(prev[c.left]);
  }
  for (std::uint32_t i = 0; i < n; i = next[i]) out.push_back(symbol[i]);
}

void tokenizer::encode(std::string_view text, std::vector<token_id>& out) const {
  std::string normalized;
  if (nfc_ && !unicode::is_nfc_quick(text)) {
    normalized = unicode::to_nfc(text);
    text = normalized;
  }
  split_text(rule_, text, [&](std::string_view piece) {
    merge_piece(reinterpret_cast<const unsigned char*>(piece.data()), piece.size(), out);
  });
}

std::vector<token_id> tokenizer::encode(std::string_view text) const {
  std::vector<token_id> ids;
  encode(text, ids);
  return ids;
}

std::size_t tokenizer::count(std::string_view text) const {
  thread_local std::vector<token_id> scratch;
  scratch.clear();
  encode(text, scratch);
  const std::size_t n = scratch.size();
  if (scratch.capacity() > (1u << 20)) scratch = {};  // do not keep a huge prompt's buffer
  return n;
}

std::optional<std::string> tokenizer::decode(std::span<const token_id> ids) const {
  std::string out;
  for (const token_id id : ids) {
    if (id >= has_token_.size() || !has_token_[id]) return std::nullopt;
    out += token_bytes(id);
  }
  return out;
}

std::optional<token_id> tokenizer::special_token(std::string_view text) const {
  const auto it = std::lower_bound(specials_.begin(), specials_.end(), text,
                                   [](const auto& e, std::string_view t) { return e.first < t; });
  if (it != specials_.end() && it->first == text) return it->second;
  return std::nullopt;
}

result<std::shared_ptr<const tokenizer>> tokenizer::load_tiktoken(std::string_view encoding,
                                                                  const std::string& rank_file) {
  const auto& known = known_tiktoken_encodings();
  const auto spec = std::find_if(known.begin(), known.end(), [&](const auto& e) { return e.encoding == encoding; });
  if (spec == known.end()) {
    return internal_error("unknown tiktoken encoding '" + std::string(encoding) +
                          "' (known: cl100k_base, o200k_base)");
  }
  auto text = read_file(rank_file);
  if (!text) return text.error();
  std::shared_ptr<tokenizer> t(new tokenizer());
  t->name_ = std::string(encoding);
  t->rule_ = encoding == "o200k_base" ? split_rule::o200k : split_rule::cl100k;

  std::vector<token_id> ordinary;
  std::istringstream lines(*text);
  std::string line;
  std::size_t line_no = 0;
  while (std::getline(lines, line)) {
    ++line_no;
    if (line.empty()) continue;
    const auto space = line.find(' ');
    const auto bytes = space == std::string::npos ? std::nullopt : decode_base64(std::string_view(line).substr(0, space));
    char* end = nullptr;
    const unsigned long rank = space == std::string::npos ? 0 : std::strtoul(line.c_str() + space + 1, &end, 10);
    if (!bytes || bytes->empty() || end == nullptr || *end != '\0' || rank >= no_rank) {
      return internal_error(rank_file + ":" + std::to_string(line_no) + ": not a '<base64> <rank>' line");
    }
    if (!t->add_token(token_id(rank), *bytes)) {
      return internal_error(rank_file + ":" + std::to_string(line_no) + ": rank " + std::to_string(rank) +
                            " appears twice");
    }
    ordinary.push_back(token_id(rank));
  }
  for (const auto& [special, id] : spec->tokens) {
    if (!t->add_token(id, special)) return internal_error(rank_file + ": a rank collides with " + special);
    t->specials_.emplace_back(special, id);
  }
  std::sort(t->specials_.begin(), t->specials_.end());
  t->finish_vocabulary();
  t->by_bytes_->build(*t, ordinary);
  for (int b = 0; b < 256; ++b) {
    const char c = char(b);
    const auto id = t->find_bytes(std::string_view(&c, 1));
    if (!id) return internal_error(rank_file + ": no token for byte " + std::to_string(b));
    t->byte_token_[b] = *id;
  }
  // tiktoken merges by the rank of the joined bytes; as pairs: every split of a token into two
  // tokens is a merge of rank = that token's rank.
  std::sort(ordinary.begin(), ordinary.end());
  t->pairs_->reserve(ordinary.size() * 8);
  for (const token_id id : ordinary) {
    const std::string_view bytes = t->token_bytes(id);
    for (std::size_t k = 1; k < bytes.size(); ++k) {
      const auto left = t->find_bytes(bytes.substr(0, k));
      if (!left) continue;
      const auto right = t->find_bytes(bytes.substr(k));
      if (right) t->pairs_->insert(*left, *right, id, id);
    }
  }
  return std::shared_ptr<const tokenizer>(std::move(t));
}

namespace {

// The split rule of a Hugging Face pre_tokenizer of the one supported shape,
// Sequence[Split(pattern, Isolated), ByteLevel(use_regex=false)]; nullopt and `why` otherwise.
std::optional<split_rule> hugging_face_split_rule(json::value pt, std::string& why) {
  std::optional<split_rule> rule;
  bool byte_level = false;
  std::string pattern_seen;
  if (!pt.valid() || !pt.is_object()) {
    why = "no pre_tokenizer";
    return std::nullopt;
  }
  const json::value seq = pt.find("pretokenizers");
  const auto check = [&](json::value step) {
    const json::value st = step.find("type");
    if (!st.valid() || !st.is_string()) return false;
    if (st.as_string() == "Split") {
      const json::value pat = step.find("pattern");
      const json::value re = pat.valid() && pat.is_object() ? pat.find("Regex") : json::value{};
      const json::value behavior = step.find("behavior");
      const json::value invert = step.find("invert");
      if (!re.valid() || !re.is_string()) return false;
      pattern_seen = std::string(re.as_string());
      if (!behavior.valid() || !behavior.is_string() || behavior.as_string() != "Isolated") return false;
      if (invert.valid() && invert.is_bool() && invert.as_bool()) return false;
      rule = split_rule_for_pattern(re.as_string());
      return rule.has_value();
    }
    if (st.as_string() == "ByteLevel") {
      const json::value use_regex = step.find("use_regex");
      const json::value prefix = step.find("add_prefix_space");
      if (use_regex.valid() && use_regex.is_bool() && use_regex.as_bool()) return false;
      if (prefix.valid() && prefix.is_bool() && prefix.as_bool()) return false;
      byte_level = true;
      return true;
    }
    return false;
  };
  bool ok = seq.valid() && seq.is_array();
  if (ok) seq.for_each_element([&](json::value step) { ok = ok && step.is_object() && check(step); });
  if (!ok || !rule || !byte_level) {
    why = pattern_seen.empty() || rule
              ? "unsupported pre_tokenizer (supported: Sequence of Split(Isolated) and "
                "ByteLevel(use_regex=false))"
              : "unsupported Split pattern: " + pattern_seen;
    return std::nullopt;
  }
  return rule;
}

}  // namespace

result<std::shared_ptr<const tokenizer>> tokenizer::load_hugging_face(const std::string& path) {
  auto text = read_file(path);
  if (!text) return text.error();
  return parse_hugging_face(*text, path);
}

result<std::shared_ptr<const tokenizer>> tokenizer::parse_hugging_face(std::string_view json_text,
                                                                       std::string name) {
  const auto fail = [&](const std::string& why) { return internal_error(name + ": " + why); };
  json::parse_error perr;
  const auto doc = json::document::parse(json_text, &perr);
  if (!doc || !doc->root().is_object()) return fail("not a JSON object (" + perr.message + ")");
  const json::value root = doc->root();
  const json::value model = root.find("model");
  if (!model.valid() || !model.is_object()) return fail("no \"model\" object");
  const json::value type = model.find("type");
  if (!type.valid() || !type.is_string() || type.as_string() != "BPE") {
    return fail("only BPE models are supported");
  }
  if (const json::value v = model.find("byte_fallback"); v.valid() && v.is_bool() && v.as_bool()) {
    return fail("byte_fallback (SentencePiece-style) BPE is not supported");
  }
  std::shared_ptr<tokenizer> t(new tokenizer());
  t->name_ = name;

  // Normalizer: none or NFC.
  if (const json::value n = root.find("normalizer"); n.valid() && !n.is_null()) {
    const json::value nt = n.is_object() ? n.find("type") : json::value{};
    if (!nt.valid() || !nt.is_string() || nt.as_string() != "NFC") {
      return fail("unsupported normalizer (supported: none, NFC)");
    }
    t->nfc_ = true;
  }
  // Pre-tokenizer: Sequence[Split(pattern, Isolated), ByteLevel(use_regex=false)].
  std::string why;
  const auto rule = hugging_face_split_rule(root.find("pre_tokenizer"), why);
  if (!rule) return fail(why);
  t->rule_ = *rule;

  // Vocabulary, in GPT-2's byte-level alphabet.
  const auto chars = byte_level_chars();
  std::vector<int> byte_of_char(512, -1);
  for (int b = 0; b < 256; ++b) byte_of_char[chars[std::size_t(b)]] = b;
  const json::value vocab = model.find("vocab");
  if (!vocab.valid() || !vocab.is_object()) return fail("no model.vocab object");
  std::vector<std::pair<std::string, token_id>> entries;  // byte-level text -> id
  entries.reserve(vocab.size());
  std::vector<token_id> ordinary;
  std::string error;
  vocab.for_each_member([&](std::string_view token, json::value id) {
    if (!error.empty()) return;
    if (!id.is_int64() || id.as_int64() < 0 || id.as_int64() >= no_rank - 1) {
      error = "vocab id of '" + std::string(token) + "' is not a token id";
      return;
    }
    const auto bytes = byte_level_to_bytes(token, byte_of_char);
    if (!bytes || bytes->empty()) {
      error = "vocab token '" + std::string(token) + "' is not in the byte-level alphabet";
      return;
    }
    if (!t->add_token(token_id(id.as_int64()), *bytes)) {
      error = "vocab id " + std::to_string(id.as_int64()) + " is used twice";
      return;
    }
    ordinary.push_back(token_id(id.as_int64()));
    entries.emplace_back(std::string(token), token_id(id.as_int64()));
  });
  if (!error.empty()) return fail(error);
  std::sort(entries.begin(), entries.end());
  const auto id_of = [&](std::string_view token) -> std::optional<token_id> {
    const auto it = std::lower_bound(entries.begin(), entries.end(), token,
                                     [](const auto& e, std::string_view k) { return e.first < k; });
    if (it != entries.end() && it->first == token) return it->second;
    return std::nullopt;
  };

  // Added tokens (special or not) decode to their content; they are matched only by
  // special_token(), never inside ordinary text.
  if (const json::value added = root.find("added_tokens"); added.valid() && added.is_array()) {
    added.for_each_element([&](json::value a) {
      if (!error.empty()) return;
      const json::value id = a.is_object() ? a.find("id") : json::value{};
      const json::value content = a.is_object() ? a.find("content") : json::value{};
      if (!id.valid() || !id.is_int64() || id.as_int64() < 0 || id.as_int64() >= no_rank - 1 ||
          !content.valid() || !content.is_string()) {
        error = "added_tokens entry without an id and content";
        return;
      }
      const auto tid = token_id(id.as_int64());
      if (tid >= t->has_token_.size() || !t->has_token_[tid]) t->add_token(tid, content.as_string());
      t->specials_.emplace_back(std::string(content.as_string()), tid);
    });
    if (!error.empty()) return fail(error);
  }
  std::sort(t->specials_.begin(), t->specials_.end());
  t->finish_vocabulary();
  t->by_bytes_->build(*t, ordinary);
  for (int b = 0; b < 256; ++b) {
    std::string ch;
    unicode::append_utf8(ch, chars[std::size_t(b)]);
    const auto id = id_of(ch);
    if (!id) return fail("vocab has no token for byte " + std::to_string(b));
    t->byte_token_[b] = *id;
  }

  // Merges: "left right" strings or [left, right] pairs; the rank is the position in the list.
  const json::value merges = model.find("merges");
  if (!merges.valid() || !merges.is_array()) return fail("no model.merges array");
  t->pairs_->reserve(merges.size());
  std::uint32_t rank = 0;
  merges.for_each_element([&](json::value m) {
    if (!error.empty()) return;
    std::string_view left, right;
    if (m.is_string()) {
      const std::string_view s = m.as_string();
      const auto space = s.find(' ');
      if (space == std::string_view::npos || s.find(' ', space + 1) != std::string_view::npos) {
        error = "merge #" + std::to_string(rank) + " is not 'left right'";
        return;
      }
      left = s.substr(0, space);
      right = s.substr(space + 1);
    } else if (m.is_array() && m.size() == 2 && m.at(0).is_string() && m.at(1).is_string()) {
      left = m.at(0).as_string();
      right = m.at(1).as_string();
    } else {
      error = "merge #" + std::to_string(rank) + " is neither 'left right' nor [left, right]";
      return;
    }
    const auto a = id_of(left), b = id_of(right);
    const auto joined = id_of(std::string(left) + std::string(right));
    if (!a || !b || !joined) {
      error = "merge #" + std::to_string(rank) + " names a token missing from the vocab";
      return;
    }
    t->pairs_->insert(*a, *b, rank++, *joined);
  });
  if (!error.empty()) return fail(error);

  // A piece equal to a whole token encodes as that token when ignore_merges is set; otherwise
  // only for the tokens that merging their own bytes reproduces (checked here, once).
  const json::value ignore = model.find("ignore_merges");
  if (!(ignore.valid() && ignore.is_bool() && ignore.as_bool())) t->check_whole_pieces(ordinary);
  return std::shared_ptr<const tokenizer>(std::move(t));
}

void tokenizer::check_whole_pieces(const std::vector<token_id>& ordinary) {
  // Merged without the whole-piece shortcut while checking it.
  whole_piece_ok_.assign(has_token_.size(), false);
  all_whole_pieces_ok_ = false;
  std::vector<bool> ok(has_token_.size(), false);
  std::vector<token_id> ids;
  for (const token_id id : ordinary) {
    const std::string_view bytes = token_bytes(id);
    ids.clear();
    merge_piece(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), ids);
    ok[id] = ids.size() == 1 && ids[0] == id;
  }
  whole_piece_ok_ = std::move(ok);
  all_whole_pieces_ok_ = false;
}

}  // namespace tollgate::metering
