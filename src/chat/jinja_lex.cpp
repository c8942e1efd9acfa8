// Jinja lexer: template text -> segments (text / {{ }} / {% %}) with whitespace control applied,
// each tag split into tokens.
#include "chat/jinja_lex.hpp"

#include <algorithm>
#include <cctype>

#include "chat/jinja.hpp"
#include "nestedfp/error.hpp"

namespace nestedfp::chat::jinja {

std::string where(std::string_view src, size_t pos) {
  pos = std::min(pos, src.size());
  size_t line = 1, col = 1;
  for (size_t k = 0; k < pos; ++k) {
    if (src[k] == '\n')
      ++line, col = 1;
    else
      ++col;
  }
  return "line " + std::to_string(line) + ", column " + std::to_string(col);
}

namespace lex {

[[noreturn]] void syntax_error(std::string_view src, size_t pos, const std::string& msg) {
  fail("chat template syntax error at {}: {}", where(src, pos), msg);
}

namespace {

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

// Reads tokens of one tag starting at `p` until its closing delimiter; sets `rtrim` if it is
// written `-%}` / `-}}`.
std::vector<Token> lex_tag(std::string_view src, size_t& p, char close, bool& rtrim) {
  std::vector<Token> out;
  const size_t n = src.size();
  for (;;) {
    while (p < n && is_space(src[p])) ++p;
    if (p >= n) syntax_error(src, p, std::string("unterminated tag: missing '") + close + "}'");
    if (src[p] == '-' && p + 2 < n && src[p + 1] == close && src[p + 2] == '}') {
      rtrim = true;
      out.push_back({Token::T::End, "", 0, 0, p});
      p += 3;
      return out;
    }
    if (src[p] == close && p + 1 < n && src[p + 1] == '}') {
      rtrim = false;
      out.push_back({Token::T::End, "", 0, 0, p});
      p += 2;
      return out;
    }
    const size_t start = p;
    char c = src[p];
    if (std::isalpha(uint8_t(c)) || c == '_') {
      while (p < n && (std::isalnum(uint8_t(src[p])) || src[p] == '_')) ++p;
      out.push_back({Token::T::Name, std::string(src.substr(start, p - start)), 0, 0, start});
    } else if (std::isdigit(uint8_t(c))) {
      while (p < n && (std::isdigit(uint8_t(src[p])) || src[p] == '_')) ++p;
      bool is_float = false;
      if (p + 1 < n && src[p] == '.' && std::isdigit(uint8_t(src[p + 1]))) {
        is_float = true;
        ++p;
        while (p < n && std::isdigit(uint8_t(src[p]))) ++p;
      }
      if (p < n && (src[p] == 'e' || src[p] == 'E')) {
        size_t q = p + 1;
        if (q < n && (src[q] == '+' || src[q] == '-')) ++q;
        if (q < n && std::isdigit(uint8_t(src[q]))) {
          is_float = true;
          p = q;
          while (p < n && std::isdigit(uint8_t(src[p]))) ++p;
        }
      }
      std::string num;
      for (char d : src.substr(start, p - start))
        if (d != '_') num += d;
      Token t{is_float ? Token::T::Float : Token::T::Int, num, 0, 0, start};
      try {
        if (is_float)
          t.f = std::stod(num);
        else
          t.i = std::stoll(num);
      } catch (const std::exception&) {
        syntax_error(src, start, "number out of range: " + num);
      }
      out.push_back(t);
    } else if (c == '\'' || c == '"') {
      std::string s;
      ++p;
      for (;;) {
        if (p >= n) syntax_error(src, start, "unterminated string literal");
        char d = src[p++];
        if (d == c) break;
        if (d != '\\') {
          s += d;
          continue;
        }
        if (p >= n) syntax_error(src, start, "unterminated string literal");
        char e = src[p++];
        switch (e) {
          case 'n': s += '\n'; break;
          case 't': s += '\t'; break;
          case 'r': s += '\r'; break;
          case 'b': s += '\b'; break;
          case 'f': s += '\f'; break;
          case 'v': s += '\v'; break;
          case '0': s += '\0'; break;
          case '\\': s += '\\'; break;
          case '\'': s += '\''; break;
          case '"': s += '"'; break;
          case '\n': break;  // line continuation
          case 'x':
          case 'u':
          case 'U': {
            int len = e == 'x' ? 2 : e == 'u' ? 4 : 8;
            if (p + len > n) syntax_error(src, p - 2, "truncated escape sequence");
            uint32_t cp = 0;
            for (int k = 0; k < len; ++k) {
              char h = src[p + k];
              if (!std::isxdigit(uint8_t(h))) syntax_error(src, p - 2, "bad escape sequence");
              cp = cp * 16 +
                   uint32_t(std::isdigit(uint8_t(h)) ? h - '0' : (std::tolower(h) - 'a' + 10));
            }
            p += len;
            if (cp > 0x10FFFF) syntax_error(src, p - 2, "escape out of Unicode range");
            // UTF-8 encode
            if (cp < 0x80)
              s += char(cp);
            else if (cp < 0x800)
              s += char(0xC0 | (cp >> 6)), s += char(0x80 | (cp & 0x3F));
            else if (cp < 0x10000)
              s += char(0xE0 | (cp >> 12)), s += char(0x80 | ((cp >> 6) & 0x3F)),
                  s += char(0x80 | (cp & 0x3F));
            else
              s += char(0xF0 | (cp >> 18)), s += char(0x80 | ((cp >> 12) & 0x3F)),
                  s += char(0x80 | ((cp >> 6) & 0x3F)), s += char(0x80 | (cp & 0x3F));
            break;
          }
          default: s += '\\'; s += e;  // Python keeps unknown escapes verbatim
        }
      }
      out.push_back({Token::T::Str, s, 0, 0, start});
    } else {
      static const char* two[] = {"==", "!=", "<=", ">=", "//", "**"};
      std::string op;
      for (const char* t : two)
        if (src.substr(p, 2) == t) op = t;
      if (op.empty()) {
        if (std::string_view("+-*/%~<>=()[]{}.,:|").find(c) == std::string_view::npos)
          syntax_error(src, p, std::string("unexpected character '") + c + "'");
        op = std::string(1, c);
      }
      p += op.size();
      out.push_back({Token::T::Op, op, 0, 0, start});
    }
  }
}

}  // namespace

// Splits the source into segments and applies whitespace control: `-` on either side strips all
// whitespace; otherwise block and comment tags get trim_blocks (drop the newline after the tag) and
// lstrip_blocks (drop spaces and tabs before the tag on its line) as transformers configures Jinja.
std::vector<Segment> segment(std::string_view src) {
  struct Raw {
    Segment seg;
    bool is_block_like = false;  // block or comment: subject to trim/lstrip_blocks
    bool ltrim = false, lplus = false, rtrim = false;
    bool comment = false;   // produces no output (comments, the {% raw %} tags)
    bool verbatim = false;  // {% raw %} content: no whitespace control
  };
  std::vector<Raw> raws;
  const size_t n = src.size();
  size_t p = 0;
  while (p < n) {
    size_t q = p;
    for (;;) {
      q = src.find('{', q);
      if (q == std::string_view::npos || q + 1 >= n) {
        q = n;
        break;
      }
      char c = src[q + 1];
      if (c == '{' || c == '%' || c == '#') break;
      ++q;
    }
    if (q > p) raws.push_back({{Segment::T::Text, std::string(src.substr(p, q - p)), {}, p}});
    if (q >= n) break;
    Raw r;
    r.seg.t = Segment::T::Block;
    char kind = src[q + 1];
    r.seg.pos = q;
    p = q + 2;
    if (p < n && src[p] == '-')
      r.ltrim = true, ++p;
    else if (p < n && src[p] == '+')
      r.lplus = true, ++p;
    if (kind == '#') {
      size_t e = src.find("#}", p);
      if (e == std::string_view::npos) syntax_error(src, q, "unterminated comment: missing '#}'");
      r.rtrim = e > p && src[e - 1] == '-';
      r.comment = r.is_block_like = true;
      p = e + 2;
    } else {
      r.seg.t = kind == '{' ? Segment::T::Var : Segment::T::Block;
      r.is_block_like = kind == '%';
      r.seg.tokens = lex_tag(src, p, kind == '{' ? '}' : '%', r.rtrim);
      // {% raw %} ... {% endraw %}: the content is literal text.
      auto& tk = r.seg.tokens;
      if (kind == '%' && tk.size() == 2 && tk[0].t == Token::T::Name && tk[0].s == "raw") {
        size_t search = p;
        for (;;) {
          size_t e = src.find("{%", search);
          if (e == std::string_view::npos) syntax_error(src, q, "missing {% endraw %}");
          size_t t = e + 2;
          bool lt = t < n && src[t] == '-';
          if (lt) ++t;
          while (t < n && is_space(src[t])) ++t;
          if (src.substr(t, 6) == "endraw") {
            bool rt = false;
            size_t after = t + 6;
            lex_tag(src, after, '%', rt);
            std::string text(src.substr(p, e - p));
            if (r.rtrim)
              text.erase(0, text.find_first_not_of(" \t\n\r\f\v") == std::string::npos
                                ? text.size()
                                : text.find_first_not_of(" \t\n\r\f\v"));
            if (lt) text.erase(text.find_last_not_of(" \t\n\r\f\v") + 1);
            Raw open = r;
            open.comment = true;  // behaves like a comment for the text before it
            raws.push_back(open);
            Raw content;
            content.seg = {Segment::T::Text, text, {}, p};
            content.verbatim = true;
            raws.push_back(std::move(content));
            Raw close;
            close.seg.t = Segment::T::Block;
            close.comment = close.is_block_like = true;
            close.rtrim = rt;
            close.seg.pos = e;
            raws.push_back(close);
            p = after;
            break;
          }
          search = e + 2;
        }
        continue;
      }
    }
    raws.push_back(std::move(r));
  }
  // Whitespace control on text segments, looking at their neighbours.
  for (size_t k = 0; k < raws.size(); ++k) {
    if (raws[k].seg.t != Segment::T::Text || raws[k].verbatim) continue;
    std::string& text = raws[k].seg.text;
    // lstrip_blocks is decided on the original text: the newline that trim_blocks removes below
    // still marks the start of the tag's line.
    size_t lstrip_from = std::string::npos;
    if (k + 1 < raws.size() && raws[k + 1].seg.t != Segment::T::Text) {
      const Raw& next = raws[k + 1];
      if (next.ltrim) {
        lstrip_from = text.find_last_not_of(" \t\n\r\f\v") + 1;
      } else if (next.is_block_like && !next.lplus) {
        size_t nl = text.find_last_of('\n');
        size_t line_start = nl == std::string::npos ? 0 : nl + 1;
        bool at_line_start = nl != std::string::npos || k == 0;  // k == 0: template start
        if (at_line_start && text.find_first_not_of(" \t", line_start) == std::string::npos)
          lstrip_from = line_start;
      }
    }
    if (lstrip_from != std::string::npos) text.erase(lstrip_from);
    if (k > 0 && raws[k - 1].seg.t != Segment::T::Text) {
      const Raw& prev = raws[k - 1];
      if (prev.rtrim) {
        size_t f = text.find_first_not_of(" \t\n\r\f\v");
        text.erase(0, f == std::string::npos ? text.size() : f);
      } else if (prev.is_block_like) {
        if (text.rfind("\r\n", 0) == 0)
          text.erase(0, 2);
        else if (!text.empty() && text[0] == '\n')
          text.erase(0, 1);
      }
    }
  }
  std::vector<Segment> out;
  for (auto& r : raws) {
    if (r.comment && r.seg.t != Segment::T::Text) continue;
    if (r.seg.t == Segment::T::Text && r.seg.text.empty()) continue;
    out.push_back(std::move(r.seg));
  }
  return out;
}

}  // namespace lex
}  // namespace nestedfp::chat::jinja
