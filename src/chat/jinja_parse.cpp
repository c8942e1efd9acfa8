// Jinja parser: lexed segments (jinja_lex.cpp) -> syntax tree. Operator precedence follows
// Jinja2's parser (filters and `is` tests bind tighter than arithmetic, `not` looser than
// comparisons).
#include <algorithm>
#include <set>

#include "chat/jinja.hpp"
#include "chat/jinja_lex.hpp"
#include "nestedfp/error.hpp"

namespace nestedfp::chat::jinja {
namespace {

using lex::Segment;
using lex::syntax_error;
using lex::Token;

const std::set<std::string> kFilters = {
    "trim",   "length", "count",   "tojson",  "upper",      "lower",      "default",    "d",
    "first",  "last",   "join",    "replace", "capitalize", "title",      "list",       "string",
    "int",    "float",  "abs",     "items",   "dictsort",   "selectattr", "rejectattr", "select",
    "reject", "map",    "reverse", "sort",    "unique",     "safe",       "indent",     "max",
    "min",    "sum",    "round",   "batch",   "wordcount",  "center",     "e",          "escape"};
const std::set<std::string> kTests = {
    "defined", "undefined", "none",        "string",  "number",   "integer",  "float",
    "boolean", "true",      "false",       "mapping", "iterable", "sequence", "callable",
    "even",    "odd",       "divisibleby", "equalto", "eq",       "==",       "ne",
    "!=",      "gt",        ">",           "ge",      ">=",       "lt",       "<",
    "le",      "<=",        "in",          "lower",   "upper",    "sameas"};

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
  size_t si_ = 0;  // current segment
  const std::vector<Token>* toks_ = nullptr;
  size_t ti_ = 0;  // current token within a tag

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
    if (!accept_op(op))
      error(peek().pos, std::string("expected '") + op + "', found " + describe(peek()));
  }
  std::string expect_name() {
    if (peek().t != Token::T::Name) error(peek().pos, "expected a name, found " + describe(peek()));
    return next().s;
  }
  void expect_end() {
    if (peek().t != Token::T::End)
      error(peek().pos, "expected end of tag, found " + describe(peek()));
  }
  static std::string describe(const Token& t) {
    switch (t.t) {
      case Token::T::End: return "end of tag";
      case Token::T::Str: return "string literal";
      case Token::T::Int:
      case Token::T::Float: return "number " + t.s;
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
    static const std::set<std::string> closers = {"endif",  "endfor",   "else",          "elif",
                                                  "endset", "endmacro", "endgeneration", "endraw"};
    if (closers.count(k))
      error(kw.pos, "unexpected {% " + k + " %} without a matching opening tag");
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
      if (t.t == Token::T::Op &&
          (t.s == "==" || t.s == "!=" || t.s == "<" || t.s == "<=" || t.s == ">" || t.s == ">=")) {
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
        if (t.s == "true" || t.s == "True")
          e->literal = Value::boolean(true);
        else if (t.s == "false" || t.s == "False")
          e->literal = Value::boolean(false);
        else if (t.s == "none" || t.s == "None")
          e->literal = Value::none();
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
        if (nt.t == Token::T::Name)
          name = next().s;
        else if (nt.t == Token::T::Op)
          name = next().s;
        else
          error(nt.pos, "expected a test name after 'is'");
        if (!kTests.count(name)) error(nt.pos, "unknown test '" + name + "'");
        n->name = name;
        n->args.push_back(std::move(e));
        if (accept_op("(")) {
          parse_call_args(*n);
        } else {
          // `is divisibleby 3`, `is sameas false`: one argument without parentheses.
          static const std::set<std::string> takes_arg = {
              "divisibleby", "equalto", "eq", "==", "ne", "!=", "gt", ">",
              "ge",          ">=",      "lt", "<",  "le", "<=", "in", "sameas"};
          const Token& a = peek();
          bool starts_arg =
              takes_arg.count(name) &&
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
  Parser p(t->source, lex::segment(t->source));
  t->body = p.parse_all();
  return t;
}

}  // namespace nestedfp::chat::jinja
