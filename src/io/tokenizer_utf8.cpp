// UTF-8 helpers for the tokenizer: well-formedness per RFC 3629 (no overlongs, surrogates or code
// points past U+10FFFF); a byte that does not start a well-formed character is a unit of its own.
#include "io/tokenizer_internal.hpp"

namespace nestedfp::tok {
namespace {

// Expected length from the lead byte, and the allowed range of the second byte (which excludes
// overlongs, surrogates and values past U+10FFFF).
struct Lead {
  int len;
  unsigned char lo, hi;
};
Lead lead_info(unsigned char c) {
  if (c < 0x80) return {1, 0, 0};
  if (c >= 0xC2 && c <= 0xDF) return {2, 0x80, 0xBF};
  if (c == 0xE0) return {3, 0xA0, 0xBF};
  if (c == 0xED) return {3, 0x80, 0x9F};
  if (c >= 0xE1 && c <= 0xEF) return {3, 0x80, 0xBF};
  if (c == 0xF0) return {4, 0x90, 0xBF};
  if (c >= 0xF1 && c <= 0xF3) return {4, 0x80, 0xBF};
  if (c == 0xF4) return {4, 0x80, 0x8F};
  return {0, 0, 0};
}

// Number of bytes of s[i..] that form a well-formed prefix of the character that starts there,
// and that character's full length (0 when s[i] cannot start one).
std::pair<size_t, int> prefix_at(std::string_view s, size_t i) {
  const Lead l = lead_info(static_cast<unsigned char>(s[i]));
  if (l.len <= 1) return {l.len, l.len};
  size_t n = 1;
  while (n < size_t(l.len) && i + n < s.size()) {
    const auto b = static_cast<unsigned char>(s[i + n]);
    const bool ok = n == 1 ? (b >= l.lo && b <= l.hi) : (b >= 0x80 && b <= 0xBF);
    if (!ok) break;
    ++n;
  }
  return {n, l.len};
}

}  // namespace

size_t utf8_unit_len(std::string_view s, size_t i) {
  auto [n, len] = prefix_at(s, i);
  return (len > 0 && n == size_t(len)) ? n : 1;
}

size_t utf8_complete_prefix(std::string_view s) {
  // Only the last three bytes can hold the start of an unfinished character.
  const size_t from = s.size() > 3 ? s.size() - 3 : 0;
  for (size_t i = from; i < s.size(); ++i) {
    auto [n, len] = prefix_at(s, i);
    if (len > 1 && n < size_t(len) && i + n == s.size()) return i;
  }
  return s.size();
}

bool utf8_valid(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    auto [n, len] = prefix_at(s, i);
    if (len == 0 || n != size_t(len)) return false;
    i += n;
  }
  return true;
}

std::string utf8_sanitize(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    auto [n, len] = prefix_at(s, i);
    if (len > 0 && n == size_t(len)) {
      out.append(s.substr(i, n));
      i += n;
    } else {
      out.append("\xEF\xBF\xBD");  // one U+FFFD per maximal ill-formed subpart (Unicode's advice)
      i += n > 0 ? n : 1;
    }
  }
  return out;
}

void utf8_append(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xC0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += char(0xE0 | (cp >> 12));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  } else {
    out += char(0xF0 | (cp >> 18));
    out += char(0x80 | ((cp >> 12) & 0x3F));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  }
}

int32_t utf8_next(std::string_view s, size_t& i) {
  const size_t n = utf8_unit_len(s, i);
  const auto c = static_cast<unsigned char>(s[i]);
  if (n == 1) {
    ++i;
    return c < 0x80 ? int32_t(c) : -1;
  }
  int32_t cp = c & (0xFF >> (n + 1));
  for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  i += n;
  return cp;
}

}  // namespace nestedfp::tok
