// Jinja lexer and parser: template text -> segments (text / {{ }} / {% %}) with whitespace control
// applied -> syntax tree. Operator precedence follows Jinja2's parser (filters and `is` tests bind
// tighter than arithmetic, `not` looser than comparisons).
#include <algorithm>
#include <cctype>
#include <set>

#include "chat/jinja.hpp"
#include "nestedfp/error.hpp"

namespace nestedfp::chat::jinja {

std::string where(std::string_view src, size_t pos) {
  pos = std::min(pos, src.size());
  size_t line = 1, col = 1;
  for (size_t k = 0; k < pos; ++k) {
    if (src[k] == '\n') ++line, col = 1;
    else ++col;
  }
  return "line " + std::to_string(line) + ", column " + std::to_string(col);
}

namespace {

const std::set<std::string> kFilters = {
    "trim", "length", "count", "tojson", "upper", "lower", "default", "d", "first", "last", "join",
    "replace", "capitalize", "title", "list", "string", "int", "float", "abs", "items", "dictsort",
    "selectattr", "rejectattr", "select", "reject", "map", "reverse", "sort", "unique", "safe",
    "indent", "max", "min", "sum", "round", "batch", "wordcount", "center", "e", "escape"};
const std::set<std::string> kTests = {
    "defined", "undefined", "none", "string", "number", "integer", "float", "boolean", "true",
    "false", "mapping", "iterable", "sequence", "callable", "even", "odd", "divisibleby", "equalto",
    "eq", "==", "ne", "!=", "gt", ">", "ge", ">=", "lt", "<", "le", "<=", "in", "lower", "upper",
    "sameas"};

struct Token {
  enum class T { Name, Int, Float, Str, Op, End } t;
  std::string s;
  int64_t i = 0;
  double f = 0;
  size_t pos = 0;
};

struct Segment {
  enum class T { Text, Var, Block } t;
  std::string text;            // Text
  std::vector<Token> tokens;   // Var/Block, terminated by an End token
  size_t pos = 0;
};

[[noreturn]] void syntax_error(std::string_view src, size_t pos, const std::string& msg) {
  fail("chat template syntax error at {}: {}", where(src, pos), msg);
}

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

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
      for (char d : src.substr(start, p - start)) if (d != '_') num += d;
      Token t{is_float ? Token::T::Float : Token::T::Int, num, 0, 0, start};
      try {
        if (is_float) t.f = std::stod(num);
        else t.i = std::stoll(num);
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
        if (d != '\\') { s += d; continue; }
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
          case 'x': case 'u': case 'U': {
            int len = e == 'x' ? 2 : e == 'u' ? 4 : 8;
            if (p + len > n) syntax_error(src, p - 2, "truncated escape sequence");
            uint32_t cp = 0;
            for (int k = 0; k < len; ++k) {
              char h = src[p + k];
              if (!std::isxdigit(uint8_t(h))) syntax_error(src, p - 2, "bad escape sequence");
              cp = cp * 16 + uint32_t(std::isdigit(uint8_t(h)) ? h - '0' : (std::tolower(h) - 'a' + 10));
            }
            p += len;
            if (cp > 0x10FFFF) syntax_error(src, p - 2, "escape out of Unicode range");
            // UTF-8 encode
            if (cp < 0x80) s += char(cp);
            else if (cp < 0x800) s += char(0xC0 | (cp >> 6)), s += char(0x80 | (cp & 0x3F));
            else if (cp < 0x10000)
              s += char(0xE0 | (cp >> 12)), s += char(0x80 | ((cp >> 6) & 0x3F)), s += char(0x80 | (cp & 0x3F));
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
      if (q == std::string_view::npos || q + 1 >= n) { q = n; break; }
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
    if (p < n && src[p] == '-') r.ltrim = true, ++p;
    else if (p < n && src[p] == '+') r.lplus = true, ++p;
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
            if (r.rtrim) text.erase(0, text.find_first_not_of(" \t\n\r\f\v") == std::string::npos ? text.size() : text.find_first_not_of(" \t\n\r\f\v"));
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
        if (text.rfind("\r\n", 0) == 0) text.erase(0, 2);
        else if (!text.empty() && text[0] == '\n') text.erase(0, 1);
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

class Parser {
 public:
  Parser(std::string_view src, std::vector<Segment> segs) : src_(src), segs_(std::move(segs)) {}

  Body parse_all() {
    std::string end;
    Body b = parse_body({}, end);
    return b;
  }

 private:
  std::string_view src_;
  std::vector<Segment> segs_;
  size_t si_ = 0;               // current segment
  const std::vector<Token>* toks_ = nullptr;
  size_t ti_ = 0;               // current token within a tag

  [[noreturn]] void error(size_t pos, const std::string& msg) { syntax_error(src_, pos, msg); }

  const Token& peek(size_t ahead = 0) const {
    size_t k = std::min(ti_ + ahead, toks_->size() - 1);
    return (*toks_)[k];
  }
  const Token& next() {
    const Token& t = peek();
    if (ti_ < toks_->size() - 1) ++ti_;
    return t;
  }
  bool is_op(const char* op, size_t ahead = 0) const {
    const Token& t = peek(ahead);
    return t.t == Token::T::Op && t.s == op;
  }
  bool is_name(const char* name, size_t ahead = 0) const {
    const Token& t = peek(ahead);
    return t.t == Token::T::Name && t.s == name;
  }
  bool accept_op(const char* op) {
    if (!is_op(op)) return false;
    next();
    return true;
  }
  bool accept_name(const char* name) {
    if (!is_name(name)) return false;
    next();
    return true;
  }
  void expect_op(const char* op) {
    if (!accept_op(op)) error(peek().pos, std::string("expected '") + op + "', found " + describe(peek()));
  }
  std::string expect_name() {
    if (peek().t != Token::T::Name) error(peek().pos, "expected a name, found " + describe(peek()));
    return next().s;
  }
  void expect_end() {
    if (peek().t != Token::T::End) error(peek().pos, "expected end of tag, found " + describe(peek()));
  }
  static std::string describe(const Token& t) {
    switch (t.t) {
      case Token::T::End: return "end of tag";
      case Token::T::Str: return "string literal";
      case Token::T::Int: case Token::T::Float: return "number " + t.s;
      default: return "'" + t.s + "'";
    }
  }

  static ExprP make(Expr::Op op, size_t pos) {
    auto e = std::make_unique<Expr>();
    e->op = op;
    e->pos = pos;
    return e;
  }
  static NodeP make_node(Node::Kind k, size_t pos) {
    auto n = std::make_unique<Node>();
    n->kind = k;
    n->pos = pos;
    return n;
  }

  // Parses nodes until a block tag whose keyword is in `ends`; leaves `end` = that keyword with
  // the tag's tokens current (positioned after the keyword).
  Body parse_body(const std::set<std::string>& ends, std::string& end) {
    Body body;
    while (si_ < segs_.size()) {
      Segment& seg = segs_[si_++];
      if (seg.t == Segment::T::Text) {
        auto n = make_node(Node::Kind::Text, seg.pos);
        n->text = seg.text;
        body.push_back(std::move(n));
        continue;
      }
      toks_ = &seg.tokens;
      ti_ = 0;
      if (seg.t == Segment::T::Var) {
        auto n = make_node(Node::Kind::Output, seg.pos);
        n->expr = parse_expr();
        expect_end();
        body.push_back(std::move(n));
        continue;
      }
      const Token& kw = next();
      if (kw.t != Token::T::Name) error(kw.pos, "expected a tag name, found " + describe(kw));
      if (ends.count(kw.s)) {
        end = kw.s;
        return body;
      }
      body.push_back(parse_statement(kw));
    }
    if (!ends.empty()) {
      std::string list;
      for (auto& e : ends) list += (list.empty() ? "" : " or ") + ("{% " + e + " %}");
      error(src_.size(), "unexpected end of template: expected " + list);
    }
    return body;
  }

  NodeP parse_statement(const Token& kw) {
    const std::string& k = kw.s;
    if (k == "if") {
      auto n = make_node(Node::Kind::If, kw.pos);
      n->conds.push_back(parse_expr());
      expect_end();
      for (;;) {
        std::string end;
        Body b = parse_body({"elif", "else", "endif"}, end);
        n->bodies.push_back(std::move(b));
        if (end == "elif") {
          n->conds.push_back(parse_expr());
          expect_end();
        } else if (end == "else") {
          expect_end();
          n->else_body = parse_body({"endif"}, end);
          expect_end();
          break;
        } else {
          expect_end();
          break;
        }
      }
      return n;
    }
    if (k == "for") {
      auto n = make_node(Node::Kind::For, kw.pos);
      n->targets.push_back(expect_name());
      while (accept_op(",")) n->targets.push_back(expect_name());
      if (!accept_name("in")) error(peek().pos, "expected 'in' in for loop");
      n->expr = parse_cond_expr(false);  // `if` after the iterable is the loop filter
      if (accept_name("if")) n->filter = parse_expr();
      if (accept_name("recursive")) error(kw.pos, "recursive loops are not supported");
      expect_end();
      std::string end;
      n->bodies.push_back(parse_body({"else", "endfor"}, end));
      expect_end();
      if (end == "else") {
        n->else_body = parse_body({"endfor"}, end);
        expect_end();
      }
      return n;
    }
    if (k == "set") {
      std::string first = expect_name();
      if (accept_op(".")) {
        auto n = make_node(Node::Kind::Set, kw.pos);
        n->targets.push_back(first);
        n->attr = expect_name();
        expect_op("=");
        n->expr = parse_expr();
        expect_end();
        return n;
      }
      std::vector<std::string> names{first};
      while (accept_op(",")) names.push_back(expect_name());
      if (peek().t == Token::T::End && names.size() == 1) {  // {% set x %}...{% endset %}
        auto n = make_node(Node::Kind::SetBlock, kw.pos);
        n->targets = names;
        std::string end;
        n->bodies.push_back(parse_body({"endset"}, end));
        expect_end();
        return n;
      }
      auto n = make_node(Node::Kind::Set, kw.pos);
      n->targets = names;
      expect_op("=");
      n->expr = parse_tuple_or_expr();
      expect_end();
      return n;
    }
    if (k == "macro") {
      auto n = make_node(Node::Kind::Macro, kw.pos);
      n->text = expect_name();
      expect_op("(");
      while (!accept_op(")")) {
        n->targets.push_back(expect_name());
        n->conds.push_back(accept_op("=") ? parse_expr() : nullptr);
        if (!is_op(")")) expect_op(",");
      }
      expect_end();
      std::string end;
      n->bodies.push_back(parse_body({"endmacro"}, end));
      expect_end();
      return n;
    }
    if (k == "break" || k == "continue") {
      expect_end();
      return make_node(k == "break" ? Node::Kind::Break : Node::Kind::Continue, kw.pos);
    }
    if (k == "generation") {  // transformers' AssistantTracker marker: renders its body as is
      expect_end();
      auto n = make_node(Node::Kind::Scope, kw.pos);
      std::string end;
      n->bodies.push_back(parse_body({"endgeneration"}, end));
      expect_end();
      return n;
    }
    static const std::set<std::string> closers = {"endif", "endfor", "else", "elif", "endset",
                                                  "endmacro", "endgeneration", "endraw"};
    if (closers.count(k)) error(kw.pos, "unexpected {% " + k + " %} without a matching opening tag");
    error(kw.pos, "unsupported tag '" + k + "' (this template engine covers if/for/set/macro)");
  }

  // `a, b` on the right of set builds a list (Python tuple).
  ExprP parse_tuple_or_expr() {
    auto first = parse_expr();
    if (!is_op(",")) return first;
    auto t = make(Expr::Op::ListLit, first->pos);
    t->args.push_back(std::move(first));
    while (accept_op(",")) {
      if (peek().t == Token::T::End) break;
      t->args.push_back(parse_expr());
    }
    return t;
  }

 public:
  ExprP parse_expr() { return parse_cond_expr(true); }

 private:
  ExprP parse_cond_expr(bool allow_if) {
    auto e = parse_or();
    while (allow_if && is_name("if")) {
      size_t pos = next().pos;
      auto c = make(Expr::Op::Cond, pos);
      auto cond = parse_or();
      ExprP other;
      if (accept_name("else")) other = parse_cond_expr(true);
      c->args.push_back(std::move(e));
      c->args.push_back(std::move(cond));
      c->args.push_back(std::move(other));
      e = std::move(c);
    }
    return e;
  }
  ExprP parse_or() {
    auto e = parse_and();
    while (is_name("or")) {
      auto n = make(Expr::Op::Or, next().pos);
      n->args.push_back(std::move(e));
      n->args.push_back(parse_and());
      e = std::move(n);
    }
    return e;
  }
  ExprP parse_and() {
    auto e = parse_not();
    while (is_name("and")) {
      auto n = make(Expr::Op::And, next().pos);
      n->args.push_back(std::move(e));
      n->args.push_back(parse_not());
      e = std::move(n);
    }
    return e;
  }
  ExprP parse_not() {
    if (is_name("not")) {
      auto n = make(Expr::Op::Unary, next().pos);
      n->name = "not";
      n->args.push_back(parse_not());
      return n;
    }
    return parse_compare();
  }
  ExprP parse_compare() {
    auto e = parse_math1();
    for (;;) {
      std::string op;
      size_t pos = peek().pos;
      const Token& t = peek();
      if (t.t == Token::T::Op && (t.s == "==" || t.s == "!=" || t.s == "<" || t.s == "<=" || t.s == ">" || t.s == ">=")) {
        op = t.s;
        next();
      } else if (is_name("in")) {
        op = "in";
        next();
      } else if (is_name("not") && is_name("in", 1)) {
        op = "not in";
        next(), next();
      } else {
        return e;
      }
      auto n = make(Expr::Op::Binary, pos);
      n->name = op;
      n->args.push_back(std::move(e));
      n->args.push_back(parse_math1());
      e = std::move(n);
    }
  }
  ExprP binary(std::string op, size_t pos, ExprP a, ExprP b) {
    auto n = make(Expr::Op::Binary, pos);
    n->name = std::move(op);
    n->args.push_back(std::move(a));
    n->args.push_back(std::move(b));
    return n;
  }
  ExprP parse_math1() {
    auto e = parse_concat();
    while (is_op("+") || is_op("-")) {
      const Token& t = next();
      e = binary(t.s, t.pos, std::move(e), parse_concat());
    }
    return e;
  }
  ExprP parse_concat() {
    auto e = parse_math2();
    while (is_op("~")) {
      const Token& t = next();
      e = binary("~", t.pos, std::move(e), parse_math2());
    }
    return e;
  }
  ExprP parse_math2() {
    auto e = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      const Token& t = next();
      e = binary(t.s, t.pos, std::move(e), parse_pow());
    }
    return e;
  }
  ExprP parse_pow() {
    auto e = parse_unary();
    while (is_op("**")) {
      const Token& t = next();
      e = binary("**", t.pos, std::move(e), parse_unary());
    }
    return e;
  }
  ExprP parse_unary() {
    if (is_op("-") || is_op("+")) {
      const Token& t = next();
      auto n = make(Expr::Op::Unary, t.pos);
      n->name = t.s;
      n->args.push_back(parse_unary());
      return n;
    }
    auto e = parse_postfix(parse_primary());
    return parse_filters(std::move(e));
  }
  ExprP parse_primary() {
    const Token& t = next();
    switch (t.t) {
      case Token::T::Str: {
        auto e = make(Expr::Op::Literal, t.pos);
        std::string s = t.s;
        while (peek().t == Token::T::Str) s += next().s;  // adjacent literals concatenate
        e->literal = Value::str(s);
        return e;
      }
      case Token::T::Int: {
        auto e = make(Expr::Op::Literal, t.pos);
        e->literal = Value::integer(t.i);
        return e;
      }
      case Token::T::Float: {
        auto e = make(Expr::Op::Literal, t.pos);
        e->literal = Value::number(t.f);
        return e;
      }
      case Token::T::Name: {
        auto e = make(Expr::Op::Literal, t.pos);
        if (t.s == "true" || t.s == "True") e->literal = Value::boolean(true);
        else if (t.s == "false" || t.s == "False") e->literal = Value::boolean(false);
        else if (t.s == "none" || t.s == "None") e->literal = Value::none();
        else {
          e->op = Expr::Op::Name;
          e->name = t.s;
        }
        return e;
      }
      case Token::T::Op: {
        if (t.s == "(") {
          if (accept_op(")")) return make(Expr::Op::ListLit, t.pos);  // empty tuple
          auto e = parse_expr();
          if (is_op(",")) {
            auto tup = make(Expr::Op::ListLit, t.pos);
            tup->args.push_back(std::move(e));
            while (accept_op(",")) {
              if (is_op(")")) break;
              tup->args.push_back(parse_expr());
            }
            e = std::move(tup);
          }
          expect_op(")");
          return e;
        }
        if (t.s == "[") {
          auto e = make(Expr::Op::ListLit, t.pos);
          while (!accept_op("]")) {
            e->args.push_back(parse_expr());
            if (!is_op("]")) expect_op(",");
          }
          return e;
        }
        if (t.s == "{") {
          auto e = make(Expr::Op::DictLit, t.pos);
          while (!accept_op("}")) {
            e->args.push_back(parse_expr());
            expect_op(":");
            e->args.push_back(parse_expr());
            if (!is_op("}")) expect_op(",");
          }
          return e;
        }
        break;
      }
      case Token::T::End: break;
    }
    error(t.pos, "unexpected " + describe(t) + " in expression");
  }
  void parse_call_args(Expr& call) {
    while (!accept_op(")")) {
      if (peek().t == Token::T::Name && is_op("=", 1)) {
        std::string name = next().s;
        next();
        call.kwargs.emplace_back(name, parse_expr());
      } else {
        if (!call.kwargs.empty()) error(peek().pos, "positional argument after keyword argument");
        call.args.push_back(parse_expr());
      }
      if (!is_op(")")) expect_op(",");
    }
  }
  ExprP parse_postfix(ExprP e) {
    for (;;) {
      if (is_op(".")) {
        size_t pos = next().pos;
        auto n = make(Expr::Op::Attr, pos);
        if (peek().t == Token::T::Int) {  // x.0 means x[0] in Jinja
          auto idx = make(Expr::Op::Literal, peek().pos);
          idx->literal = Value::integer(next().i);
          n->op = Expr::Op::Index;
          n->args.push_back(std::move(e));
          n->args.push_back(std::move(idx));
        } else {
          n->name = expect_name();
          n->args.push_back(std::move(e));
        }
        e = std::move(n);
      } else if (is_op("[")) {
        size_t pos = next().pos;
        ExprP parts[3];
        int nparts = 1;
        bool slice = false;
        if (!is_op(":")) parts[0] = parse_expr();
        while (accept_op(":")) {
          slice = true;
          if (nparts == 3) error(peek().pos, "too many ':' in slice");
          ++nparts;
          if (!is_op(":") && !is_op("]")) parts[nparts - 1] = parse_expr();
        }
        expect_op("]");
        auto n = make(slice ? Expr::Op::Slice : Expr::Op::Index, pos);
        n->args.push_back(std::move(e));
        if (!slice && !parts[0]) error(pos, "empty subscript");
        n->args.push_back(std::move(parts[0]));
        if (slice) n->args.push_back(std::move(parts[1])), n->args.push_back(std::move(parts[2]));
        e = std::move(n);
      } else if (is_op("(")) {
        size_t pos = next().pos;
        auto n = make(Expr::Op::Call, pos);
        n->args.push_back(std::move(e));
        parse_call_args(*n);
        e = std::move(n);
      } else {
        return e;
      }
    }
  }
  ExprP parse_filters(ExprP e) {
    for (;;) {
      if (is_op("|")) {
        next();
        const Token& nt = peek();
        std::string name = expect_name();
        while (accept_op(".")) name += "." + expect_name();
        if (!kFilters.count(name)) error(nt.pos, "unknown filter '" + name + "'");
        auto n = make(Expr::Op::Filter, nt.pos);
        n->name = name;
        n->args.push_back(std::move(e));
        if (accept_op("(")) parse_call_args(*n);
        e = std::move(n);
      } else if (is_name("is")) {
        next();
        auto n = make(Expr::Op::Test, peek().pos);
        n->negate = accept_name("not");
        const Token& nt = peek();
        std::string name;
        if (nt.t == Token::T::Name) name = next().s;
        else if (nt.t == Token::T::Op) name = next().s;
        else error(nt.pos, "expected a test name after 'is'");
        if (!kTests.count(name)) error(nt.pos, "unknown test '" + name + "'");
        n->name = name;
        n->args.push_back(std::move(e));
        if (accept_op("(")) {
          parse_call_args(*n);
        } else {
          // `is divisibleby 3`, `is sameas false`: one argument without parentheses.
          static const std::set<std::string> takes_arg = {
              "divisibleby", "equalto", "eq", "==", "ne", "!=", "gt", ">", "ge", ">=", "lt", "<",
              "le", "<=", "in", "sameas"};
          const Token& a = peek();
          bool starts_arg = takes_arg.count(name) &&
                            (a.t == Token::T::Str || a.t == Token::T::Int || a.t == Token::T::Float ||
                             (a.t == Token::T::Name && a.s != "and" && a.s != "or" && a.s != "else" &&
                              a.s != "if" && a.s != "is" && a.s != "in" && a.s != "not"));
          if (starts_arg) n->args.push_back(parse_postfix(parse_primary()));
        }
        e = std::move(n);
      } else {
        return e;
      }
    }
  }
};

}  // namespace

std::shared_ptr<Template> parse(std::string source) {
  auto t = std::make_shared<Template>();
  t->source = std::move(source);
  Parser p(t->source, segment(t->source));
  t->body = p.parse_all();
  return t;
}

}  // namespace nestedfp::chat::jinja
