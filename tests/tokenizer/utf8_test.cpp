// The tokenizer's UTF-8 well-formedness against an independent RFC 3629 decoder: every 1-, 2- and
// 3-byte string, and random 4-byte ones (overlongs, surrogates and code points past U+10FFFF are
// ill-formed; the tokenizer splits on this and the server cleans its output with it).
#include <gtest/gtest.h>

#include <random>
#include <string>

#include "io/tokenizer_internal.hpp"

using namespace nestedfp::tok;

namespace {

// Decodes by bit patterns, then rejects by code point range: not the lead-byte table of the code.
bool ref_valid(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    const unsigned b0 = static_cast<unsigned char>(s[i]);
    int len;
    uint32_t cp;
    if (b0 < 0x80)
      len = 1, cp = b0;
    else if ((b0 & 0xE0) == 0xC0)
      len = 2, cp = b0 & 0x1F;
    else if ((b0 & 0xF0) == 0xE0)
      len = 3, cp = b0 & 0x0F;
    else if ((b0 & 0xF8) == 0xF0)
      len = 4, cp = b0 & 0x07;
    else
      return false;
    if (i + size_t(len) > s.size()) return false;
    for (int k = 1; k < len; ++k) {
      const unsigned b = static_cast<unsigned char>(s[i + size_t(k)]);
      if ((b & 0xC0) != 0x80) return false;
      cp = cp << 6 | (b & 0x3F);
    }
    static const uint32_t min_cp[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_cp[len] || (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) return false;
    i += size_t(len);
  }
  return true;
}

}  // namespace

TEST(Utf8, ValidityMatchesRfc3629OnEveryShortString) {
  std::string s;
  for (int a = 0; a < 256; ++a) {
    s.assign(1, char(a));
    ASSERT_EQ(utf8_valid(s), ref_valid(s)) << std::hex << a;
    for (int b = 0; b < 256; ++b) {
      s.assign({char(a), char(b)});
      ASSERT_EQ(utf8_valid(s), ref_valid(s)) << std::hex << a << " " << b;
    }
  }
  int valid3 = 0;
  for (uint32_t x = 0; x < (1u << 24); ++x) {
    s.assign({char(x >> 16), char(x >> 8), char(x)});
    const bool want = ref_valid(s);
    valid3 += want && (x >> 16) >= 0xE0;
    ASSERT_EQ(utf8_valid(s), want) << std::hex << x;
  }
  // U+0800 ... U+FFFF minus the 2048 surrogates are the valid 3-byte characters.
  EXPECT_EQ(valid3, 0x10000 - 0x800 - 0x800);
}

TEST(Utf8, ValidityMatchesRfc3629OnFourByteStrings) {
  std::mt19937 g(17);
  std::string s(4, '\0');
  for (int lead = 0xF0; lead <= 0xF7; ++lead)
    for (int second = 0; second < 256; ++second)
      for (int r = 0; r < 64; ++r) {
        s = {char(lead), char(second), char(0x80 | (g() & 0x3F)),
             char(r < 48 ? 0x80 | (g() & 0x3F) : g() & 0xFF)};
        ASSERT_EQ(utf8_valid(s), ref_valid(s)) << std::hex << lead << " " << second;
      }
}

TEST(Utf8, SurrogatesAndOverlongsAreSanitizedAndSplit) {
  EXPECT_EQ(utf8_sanitize("a\xED\xA0\x80z"), "a\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBDz");  // U+D800
  EXPECT_EQ(utf8_sanitize("\xED\x9F\xBF"), "\xED\x9F\xBF");                              // U+D7FF
  EXPECT_EQ(utf8_unit_len("\xED\xA0\x80", 0), 1u);
  EXPECT_EQ(utf8_unit_len("\xC0\xAF", 0), 1u);          // overlong '/'
  EXPECT_EQ(utf8_unit_len("\xF4\x8F\xBF\xBF", 0), 4u);  // U+10FFFF
  EXPECT_EQ(utf8_unit_len("\xF4\x90\x80\x80", 0), 1u);  // past U+10FFFF
}
