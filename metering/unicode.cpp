// UTF-8 helpers and NFC normalization over the generated UCD tables (see unicode.hpp).
#include "metering/unicode.hpp"

#include <algorithm>
#include <vector>

namespace tollgate::metering::unicode {
namespace {

// Hangul syllables compose and decompose algorithmically (Unicode 15.0, section 3.12).
constexpr char32_t hangul_s_base = 0xAC00, hangul_l_base = 0x1100, hangul_v_base = 0x1161,
                   hangul_t_base = 0x11A7;
constexpr char32_t hangul_l_count = 19, hangul_v_count = 21, hangul_t_count = 28;
constexpr char32_t hangul_n_count = hangul_v_count * hangul_t_count;
constexpr char32_t hangul_s_count = hangul_l_count * hangul_n_count;

std::uint8_t combining_class(char32_t cp) {
  if (!(flags_of(cp) & nfc_check)) return 0;
  const auto* begin = tables::combining_classes;
  const auto* end = begin + tables::combining_class_count;
  const auto* it = std::lower_bound(begin, end, cp, [](const auto& e, char32_t c) { return e.cp < c; });
  return it != end && it->cp == cp ? it->ccc : 0;
}

void decompose(char32_t cp, std::vector<char32_t>& out) {
  if (cp >= hangul_s_base && cp < hangul_s_base + hangul_s_count) {
    const char32_t s = cp - hangul_s_base;
    out.push_back(hangul_l_base + s / hangul_n_count);
    out.push_back(hangul_v_base + (s % hangul_n_count) / hangul_t_count);
    if (s % hangul_t_count) out.push_back(hangul_t_base + s % hangul_t_count);
    return;
  }
  const auto* begin = tables::decompositions;
  const auto* end = begin + tables::decomposition_count;
  const auto* it = std::lower_bound(begin, end, cp, [](const auto& e, char32_t c) { return e.cp < c; });
  if (it == end || it->cp != cp) {
    out.push_back(cp);
    return;
  }
  decompose(it->first, out);
  if (it->second) decompose(it->second, out);
}

// The primary composite of (first, second), or 0.
char32_t compose(char32_t first, char32_t second) {
  if (first >= hangul_l_base && first < hangul_l_base + hangul_l_count && second >= hangul_v_base &&
      second < hangul_v_base + hangul_v_count) {
    return hangul_s_base + ((first - hangul_l_base) * hangul_v_count + (second - hangul_v_base)) *
                               hangul_t_count;
  }
  if (first >= hangul_s_base && first < hangul_s_base + hangul_s_count &&
      (first - hangul_s_base) % hangul_t_count == 0 && second > hangul_t_base &&
      second < hangul_t_base + hangul_t_count) {
    return first + (second - hangul_t_base);
  }
  const auto* begin = tables::compositions;
  const auto* end = begin + tables::composition_count;
  const auto* it = std::lower_bound(begin, end, std::pair{first, second}, [](const auto& e, const auto& key) {
    return e.first != key.first ? e.first < key.first : e.second < key.second;
  });
  return it != end && it->first == first && it->second == second ? it->composed : 0;
}

// Canonical decomposition, canonical ordering and canonical composition of a run of valid code
// points (UAX #15).
void normalize_run(const std::vector<char32_t>& input, std::string& out) {
  std::vector<char32_t> d;
  d.reserve(input.size() + 4);
  for (const char32_t cp : input) decompose(cp, d);
  // Canonical ordering: a stable sort of each run of non-starters by combining class.
  for (std::size_t i = 0; i < d.size();) {
    if (combining_class(d[i]) == 0) {
      ++i;
      continue;
    }
    std::size_t j = i;
    while (j < d.size() && combining_class(d[j]) != 0) ++j;
    std::stable_sort(d.begin() + std::ptrdiff_t(i), d.begin() + std::ptrdiff_t(j),
                     [](char32_t a, char32_t b) { return combining_class(a) < combining_class(b); });
    i = j;
  }
  // Canonical composition.
  std::size_t starter = std::size_t(-1);
  std::uint8_t last_class = 0;
  std::vector<char32_t> composed;
  composed.reserve(d.size());
  for (const char32_t cp : d) {
    const std::uint8_t cc = combining_class(cp);
    if (starter != std::size_t(-1)) {
      const bool blocked = composed.size() - 1 != starter && (last_class == 0 || last_class >= cc);
      if (!blocked) {
        if (const char32_t c = compose(composed[starter], cp)) {
          composed[starter] = c;
          continue;
        }
      }
    }
    if (cc == 0) {
      starter = composed.size();
      last_class = 0;
    } else {
      last_class = cc;
    }
    composed.push_back(cp);
  }
  for (const char32_t cp : composed) append_utf8(out, cp);
}

}  // namespace

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(char(cp));
  } else if (cp < 0x800) {
    out.push_back(char(0xC0 | (cp >> 6)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(char(0xE0 | (cp >> 12)));
    out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(char(0xF0 | (cp >> 18)));
    out.push_back(char(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  }
}

bool valid_utf8(std::string_view text) {
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const auto* end = p + text.size();
  while (p < end) {
    if (*p < 0x80) {
      ++p;
      continue;
    }
    char32_t cp;
    p += decode(p, end, cp);
    if (cp == 0xFFFFFFFF) return false;
  }
  return true;
}

bool is_nfc_quick(std::string_view text) {
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const auto* end = p + text.size();
  while (p < end) {
    if (*p < 0x80) {  // ASCII is always NFC and never combines with what precedes it
      ++p;
      continue;
    }
    char32_t cp;
    p += decode(p, end, cp);
    if (cp != 0xFFFFFFFF && (flags_of(cp) & nfc_check)) return false;
  }
  return true;
}

std::string to_nfc(std::string_view text) {
  if (is_nfc_quick(text)) return std::string(text);
  std::string out;
  out.reserve(text.size());
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const auto* end = p + text.size();
  std::vector<char32_t> run;
  while (p < end) {
    char32_t cp;
    const int len = decode(p, end, cp);
    if (cp == 0xFFFFFFFF) {  // invalid byte: flush and pass it through
      normalize_run(run, out);
      run.clear();
      out.push_back(char(*p));
    } else {
      run.push_back(cp);
    }
    p += len;
  }
  normalize_run(run, out);
  return out;
}

}  // namespace tollgate::metering::unicode
