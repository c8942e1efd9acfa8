// Jinja evaluator: statements, expressions and filters (tests, methods and globals are in
// jinja_builtins.cpp).
#include <algorithm>
#include <cctype>
#include <cmath>
#include <unordered_map>

#include "chat/jinja.hpp"
#include "chat/jinja_builtins.hpp"
#include "nestedfp/error.hpp"

namespace nestedfp::chat::jinja {
namespace {

using namespace builtins;  // K, FuncError and the value operations

class Renderer {
 public:
  Renderer(const Template& t) : src_(t.source) {}

  std::vector<std::unordered_map<std::string, Value>> scopes;

  void exec(const Body& body, std::string& out) {
    for (auto& n : body) {
      if (flow_ != Flow::Normal) return;
      exec(*n, out);
    }
  }

 private:
  enum class Flow { Normal, Break, Continue };
  std::string_view src_;
  Flow flow_ = Flow::Normal;
  int depth_ = 0;

  [[noreturn]] void error(size_t pos, const std::string& msg) {
    fail("chat template error at {}: {}", where(src_, pos), msg);
  }

  Value lookup(const std::string& name) {
    for (auto it = scopes.rbegin(); it != scopes.rend(); ++it) {
      auto f = it->find(name);
      if (f != it->end()) return f->second;
    }
    return Value::undefined("'" + name + "' is undefined");
  }
  void assign(const std::string& name, Value v) { scopes.back()[name] = std::move(v); }

  // An undefined value may be printed, tested, iterated (as empty) or be falsy, but using it in
  // an operation is an error, as in Jinja's default Undefined.
  void need_defined(const Value& v, size_t pos) {
    if (v.is_undefined()) error(pos, v.s.empty() ? "value is undefined" : v.s);
  }

  void exec(const Node& n, std::string& out) {
    switch (n.kind) {
      case Node::Kind::Text: out += n.text; return;
      case Node::Kind::Output: out += eval(*n.expr).to_str(); return;
      case Node::Kind::If:
        for (size_t k = 0; k < n.conds.size(); ++k)
          if (eval(*n.conds[k]).truthy()) return exec(n.bodies[k], out);
        return exec(n.else_body, out);
      case Node::Kind::For: return exec_for(n, out);
      case Node::Kind::Set: {
        Value v = eval(*n.expr);
        if (!n.attr.empty()) {
          Value ns = lookup(n.targets[0]);
          if (!ns.is_dict() || !ns.dict->is_namespace)
            error(n.pos, "cannot set attribute '" + n.attr + "' on '" + n.targets[0] +
                             "': only namespace() objects can be assigned to");
          ns.dict->set(n.attr, std::move(v));
        } else if (n.targets.size() == 1) {
          assign(n.targets[0], std::move(v));
        } else {
          unpack(n.targets, v, n.pos);
        }
        return;
      }
      case Node::Kind::SetBlock: {
        std::string s;
        exec(n.bodies[0], s);
        assign(n.targets[0], Value::str(s));
        return;
      }
      case Node::Kind::Macro: define_macro(n); return;
      case Node::Kind::Break: flow_ = Flow::Break; return;
      case Node::Kind::Continue: flow_ = Flow::Continue; return;
      case Node::Kind::Scope: return exec(n.bodies[0], out);
    }
  }

  void unpack(const std::vector<std::string>& targets, const Value& v, size_t pos) {
    List items;
    try {
      items = iterate(v);
    } catch (const FuncError& e) {
      error(pos, e.msg);
    }
    if (items.size() != targets.size())
      error(pos, "cannot unpack " + std::to_string(items.size()) + " values into " +
                     std::to_string(targets.size()) + " names");
    for (size_t k = 0; k < targets.size(); ++k) assign(targets[k], items[k]);
  }

  void exec_for(const Node& n, std::string& out) {
    Value seq = eval(*n.expr);
    if (seq.is_undefined()) need_defined(seq, n.expr->pos);  // Jinja: iterating undefined fails
    List items;
    try {
      items = iterate(seq);
    } catch (const FuncError& e) {
      error(n.expr->pos, e.msg);
    }
    scopes.emplace_back();
    auto bind = [&](const Value& item) {
      if (n.targets.size() == 1)
        assign(n.targets[0], item);
      else
        unpack(n.targets, item, n.pos);
    };
    if (n.filter) {
      List kept;
      for (auto& item : items) {
        bind(item);
        if (eval(*n.filter).truthy()) kept.push_back(item);
      }
      items = std::move(kept);
    }
    const int64_t len = int64_t(items.size());
    for (int64_t k = 0; k < len; ++k) {
      bind(items[size_t(k)]);
      Value loop = Value::make_dict();
      Dict& d = *loop.dict;
      d.set("index0", Value::integer(k));
      d.set("index", Value::integer(k + 1));
      d.set("revindex0", Value::integer(len - k - 1));
      d.set("revindex", Value::integer(len - k));
      d.set("first", Value::boolean(k == 0));
      d.set("last", Value::boolean(k == len - 1));
      d.set("length", Value::integer(len));
      d.set("depth", Value::integer(1));
      d.set("depth0", Value::integer(0));
      d.set("previtem",
            k > 0 ? items[size_t(k - 1)] : Value::undefined("there is no previous item"));
      d.set("nextitem",
            k + 1 < len ? items[size_t(k + 1)] : Value::undefined("there is no next item"));
      d.set("cycle", Value::func([k](CallArgs& a) {
              if (a.pos.empty()) func_fail("loop.cycle() needs at least one value");
              return a.pos[size_t(k) % a.pos.size()];
            }));
      assign("loop", loop);
      exec(n.bodies[0], out);
      if (flow_ == Flow::Break) {
        flow_ = Flow::Normal;
        break;
      }
      flow_ = Flow::Normal;
    }
    scopes.pop_back();
    if (len == 0) exec(n.else_body, out);
  }

  void define_macro(const Node& n) {
    const Node* node = &n;
    assign(n.text, Value::func([this, node](CallArgs& a) {
             if (++depth_ > 64) func_fail("macro recursion too deep");
             scopes.emplace_back();
             for (size_t k = 0; k < node->targets.size(); ++k) {
               const std::string& p = node->targets[k];
               if (k < a.pos.size())
                 assign(p, a.pos[k]);
               else if (const Value* v = a.kwarg(p))
                 assign(p, *v);
               else if (node->conds[k])
                 assign(p, eval(*node->conds[k]));
               else
                 assign(p, Value::undefined("macro argument '" + p + "' was not given"));
             }
             if (a.pos.size() > node->targets.size())
               func_fail("too many arguments to macro '" + node->text + "'");
             std::string out;
             exec(node->bodies[0], out);
             flow_ = Flow::Normal;
             scopes.pop_back();
             --depth_;
             return Value::str(out);
           }));
  }

  CallArgs eval_args(const Expr& e, size_t first) {
    CallArgs a;
    for (size_t k = first; k < e.args.size(); ++k) a.pos.push_back(eval(*e.args[k]));
    for (auto& [name, x] : e.kwargs) a.kw.emplace_back(name, eval(*x));
    return a;
  }

  Value eval(const Expr& e) {
    try {
      return eval_inner(e);
    } catch (const FuncError& f) {
      error(e.pos, f.msg);
    }
  }

  Value eval_inner(const Expr& e) {
    switch (e.op) {
      case Expr::Op::Literal: return e.literal;
      case Expr::Op::Name: return lookup(e.name);
      case Expr::Op::ListLit: {
        List l;
        for (auto& x : e.args) l.push_back(eval(*x));
        return Value::make_list(std::move(l));
      }
      case Expr::Op::DictLit: {
        Value d = Value::make_dict();
        for (size_t k = 0; k + 1 < e.args.size(); k += 2) {
          Value key = eval(*e.args[k]);
          if (!key.is_str()) error(e.args[k]->pos, "dict keys must be strings");
          d.dict->set(key.s, eval(*e.args[k + 1]));
        }
        return d;
      }
      case Expr::Op::Attr: {
        Value obj = eval(*e.args[0]);
        need_defined(obj, e.args[0]->pos);
        return attribute(obj, e.name);
      }
      case Expr::Op::Index: {
        Value obj = eval(*e.args[0]);
        need_defined(obj, e.args[0]->pos);
        Value key = eval(*e.args[1]);
        return index(obj, key, e.pos);
      }
      case Expr::Op::Slice: {
        Value obj = eval(*e.args[0]);
        need_defined(obj, e.args[0]->pos);
        Value parts[3];
        for (int k = 0; k < 3; ++k) parts[k] = e.args[k + 1] ? eval(*e.args[k + 1]) : Value::none();
        if (obj.is_list()) {
          List l;
          for (int64_t k : slice_indices(int64_t(obj.list->size()), parts[0], parts[1], parts[2]))
            l.push_back((*obj.list)[size_t(k)]);
          return Value::make_list(std::move(l));
        }
        if (obj.is_str()) {
          auto cs = chars_of(obj.s);
          std::string s;
          for (int64_t k : slice_indices(int64_t(cs.size()), parts[0], parts[1], parts[2]))
            s += cs[size_t(k)];
          return Value::str(s);
        }
        error(e.pos, std::string("cannot slice a '") + obj.type_name() + "'");
      }
      case Expr::Op::Call: {
        Value f = eval(*e.args[0]);
        if (f.kind != K::Func) {
          if (f.is_undefined()) error(e.pos, f.s.empty() ? "calling an undefined value" : f.s);
          error(e.pos, std::string("'") + f.type_name() + "' object is not callable");
        }
        CallArgs a = eval_args(e, 1);
        return (*f.fn)(a);
      }
      case Expr::Op::Filter: {
        Value v = eval(*e.args[0]);
        CallArgs a = eval_args(e, 1);
        return filter(e.name, v, a, e.pos);
      }
      case Expr::Op::Test: {
        Value v = eval(*e.args[0]);
        std::vector<Value> args;
        for (size_t k = 1; k < e.args.size(); ++k) args.push_back(eval(*e.args[k]));
        return Value::boolean(run_test(e.name, v, args) != e.negate);
      }
      case Expr::Op::Unary: {
        Value v = eval(*e.args[0]);
        if (e.name == "not") return Value::boolean(!v.truthy());
        need_defined(v, e.args[0]->pos);
        if (v.kind == K::Int) return Value::integer(e.name == "-" ? -v.i : v.i);
        if (v.kind == K::Float) return Value::number(e.name == "-" ? -v.f : v.f);
        error(e.pos,
              std::string("bad operand type for unary ") + e.name + ": '" + v.type_name() + "'");
      }
      case Expr::Op::And: {
        Value a = eval(*e.args[0]);
        return a.truthy() ? eval(*e.args[1]) : a;
      }
      case Expr::Op::Or: {
        Value a = eval(*e.args[0]);
        return a.truthy() ? a : eval(*e.args[1]);
      }
      case Expr::Op::Cond:
        if (eval(*e.args[1]).truthy()) return eval(*e.args[0]);
        return e.args[2] ? eval(*e.args[2]) : Value::undefined("inline if without else");
      case Expr::Op::Binary: return binary(e);
    }
    error(e.pos, "unsupported expression");
  }

  Value index(const Value& obj, const Value& key, size_t pos) {
    if (obj.is_dict()) {
      if (key.is_str())
        if (const Value* v = obj.dict->find(key.s)) return *v;
      return Value::undefined("dict has no key " + key.repr());
    }
    if (obj.is_list() || obj.is_str()) {
      if (key.kind != K::Int)
        error(pos, std::string("indices must be integers, not ") + key.type_name());
      int64_t n = obj.is_list() ? int64_t(obj.list->size()) : length(obj);
      int64_t k = key.i < 0 ? key.i + n : key.i;
      if (k < 0 || k >= n)
        return Value::undefined("index " + std::to_string(key.i) + " out of range");
      if (obj.is_list()) return (*obj.list)[size_t(k)];
      return Value::str(chars_of(obj.s)[size_t(k)]);
    }
    if (key.is_str()) return attribute(obj, key.s);
    return Value::undefined(std::string("'") + obj.type_name() + "' object is not subscriptable");
  }

  Value binary(const Expr& e) {
    const std::string& op = e.name;
    Value a = eval(*e.args[0]);
    Value b = eval(*e.args[1]);
    if (op == "==") return Value::boolean(equals(a, b));
    if (op == "!=") return Value::boolean(!equals(a, b));
    if (op == "~") return Value::str(a.to_str() + b.to_str());
    need_defined(a, e.args[0]->pos);
    need_defined(b, e.args[1]->pos);
    if (op == "in" || op == "not in") return Value::boolean(contains(b, a) == (op == "in"));
    if (op == "<") return Value::boolean(compare(a, b) < 0);
    if (op == "<=") return Value::boolean(compare(a, b) <= 0);
    if (op == ">") return Value::boolean(compare(a, b) > 0);
    if (op == ">=") return Value::boolean(compare(a, b) >= 0);
    auto bad = [&]() -> Value {
      error(e.pos, "unsupported operand types for " + op + ": '" + a.type_name() + "' and '" +
                       b.type_name() + "'");
    };
    bool nums = (a.is_number() || a.kind == K::Bool) && (b.is_number() || b.kind == K::Bool);
    bool ints = nums && a.kind != K::Float && b.kind != K::Float;
    int64_t x = a.kind == K::Bool ? a.b : a.i, y = b.kind == K::Bool ? b.b : b.i;
    if (op == "+") {
      if (ints) return Value::integer(x + y);
      if (nums) return Value::number(a.as_double() + b.as_double());
      if (a.is_str() && b.is_str()) return Value::str(a.s + b.s);
      if (a.is_list() && b.is_list()) {
        List l = *a.list;
        l.insert(l.end(), b.list->begin(), b.list->end());
        return Value::make_list(std::move(l));
      }
      return bad();
    }
    if (op == "-") {
      if (ints) return Value::integer(x - y);
      if (nums) return Value::number(a.as_double() - b.as_double());
      return bad();
    }
    if (op == "*") {
      if (ints) return Value::integer(x * y);
      if (nums) return Value::number(a.as_double() * b.as_double());
      if ((a.is_str() || a.is_list()) && b.kind == K::Int) {
        if (b.i > 100000) error(e.pos, "repetition count too large");
        Value r = a.is_str() ? Value::str("") : Value::make_list();
        for (int64_t k = 0; k < b.i; ++k) {
          if (a.is_str())
            r.s += a.s;
          else
            r.list->insert(r.list->end(), a.list->begin(), a.list->end());
        }
        return r;
      }
      return bad();
    }
    if (!nums) return bad();
    if (op == "/") {
      if (b.as_double() == 0) error(e.pos, "division by zero");
      return Value::number(a.as_double() / b.as_double());
    }
    if (op == "//" || op == "%") {
      if (ints) {
        if (y == 0) error(e.pos, "integer division or modulo by zero");
        int64_t q = x / y, r = x % y;
        if (r != 0 && ((r < 0) != (y < 0))) --q, r += y;  // Python floors
        return Value::integer(op == "//" ? q : r);
      }
      double p = a.as_double(), q = b.as_double();
      if (q == 0) error(e.pos, "float division or modulo by zero");
      double fl = std::floor(p / q);
      return Value::number(op == "//" ? fl : p - fl * q);
    }
    if (op == "**") {
      if (ints && y >= 0) {
        int64_t r = 1;
        for (int64_t k = 0; k < y && k < 64; ++k) r *= x;
        return Value::integer(r);
      }
      return Value::number(std::pow(a.as_double(), b.as_double()));
    }
    return bad();
  }

  // Applies filter `name` (or a test, for select/reject) to each item.
  Value filter(const std::string& name, const Value& v, CallArgs& a, size_t pos) {
    auto p = [&](size_t k, const char* kw) { return arg(a, k, kw); };
    if (name == "default" || name == "d") {
      const Value* b = p(1, "boolean");
      bool use_default = v.is_undefined() || (b && b->truthy() && !v.truthy());
      const Value* dv = p(0, "default_value");
      return use_default ? (dv ? *dv : Value::str("")) : v;
    }
    if (name == "safe") return v;
    if (name == "string") return Value::str(v.to_str());
    if (name == "length" || name == "count") return Value::integer(length(v));
    if (name == "tojson") {
      const Value* ind = p(0, "indent");
      return Value::str(v.to_json(ind && !ind->is_none() ? int(need_int(*ind, "indent")) : -1));
    }
    if (name == "list") return Value::make_list(iterate(v));
    if (name == "items") {
      if (v.is_undefined()) return Value::make_list();
      if (!v.is_dict()) func_fail("items filter needs a mapping");
      return (*method(v, "items").fn)(a);
    }
    if (name == "dictsort") {
      if (!v.is_dict()) func_fail("dictsort needs a mapping");
      List l = *(*method(v, "items").fn)(a).list;
      std::stable_sort(l.begin(), l.end(), [](const Value& x, const Value& y) {
        return lower((*x.list)[0].s) < lower((*y.list)[0].s);
      });
      return Value::make_list(std::move(l));
    }
    need_defined(v, pos);
    if (name == "trim") {
      const Value* c = p(0, "chars");
      return Value::str(strip_chars(
          need_str(v, "trim"), c && !c->is_none() ? need_str(*c, "trim") : kSpace, true, true));
    }
    if (name == "upper") return Value::str(upper(need_str(v, "upper")));
    if (name == "lower") return Value::str(lower(need_str(v, "lower")));
    if (name == "capitalize") return Value::str(capitalize(need_str(v, "capitalize")));
    if (name == "title") return Value::str(title(need_str(v, "title")));
    if (name == "e" || name == "escape") {
      std::string s = v.to_str();
      s = replace_all(s, "&", "&amp;", -1);
      s = replace_all(s, "<", "&lt;", -1);
      s = replace_all(s, ">", "&gt;", -1);
      s = replace_all(s, "\"", "&#34;", -1);
      return Value::str(replace_all(s, "'", "&#39;", -1));
    }
    if (name == "replace") {
      const Value *f = p(0, "old"), *t = p(1, "new"), *c = p(2, "count");
      if (!f || !t) func_fail("replace needs two arguments");
      return Value::str(
          replace_all(v.to_str(), f->to_str(), t->to_str(), c ? need_int(*c, "count") : -1));
    }
    if (name == "first" || name == "last") {
      List items = iterate(v);
      if (items.empty()) return Value::undefined("no " + name + " item of an empty sequence");
      return name == "first" ? items.front() : items.back();
    }
    if (name == "join") {
      const Value* sep = p(0, "d");
      const Value* at = a.kwarg("attribute");
      std::string out;
      List items = iterate(v);
      for (size_t k = 0; k < items.size(); ++k) {
        if (k) out += sep ? sep->to_str() : "";
        out += (at ? attribute(items[k], at->to_str()) : items[k]).to_str();
      }
      return Value::str(out);
    }
    if (name == "int") {
      if (v.kind == K::Float) return Value::integer(int64_t(v.f));
      if (v.kind == K::Int || v.kind == K::Bool)
        return Value::integer(v.kind == K::Bool ? v.b : v.i);
      try {
        return Value::integer(std::stoll(v.to_str()));
      } catch (const std::exception&) {
        const Value* d = p(0, "default");
        return d ? *d : Value::integer(0);
      }
    }
    if (name == "float") {
      if (v.is_number()) return Value::number(v.as_double());
      try {
        return Value::number(std::stod(v.to_str()));
      } catch (const std::exception&) {
        const Value* d = p(0, "default");
        return d ? *d : Value::number(0);
      }
    }
    if (name == "abs") {
      if (v.kind == K::Int) return Value::integer(v.i < 0 ? -v.i : v.i);
      if (v.kind == K::Float) return Value::number(std::fabs(v.f));
      func_fail("abs needs a number");
    }
    if (name == "round") {
      const Value* pr = p(0, "precision");
      double scale = std::pow(10.0, pr ? double(need_int(*pr, "round")) : 0.0);
      const Value* m = p(1, "method");
      std::string how = m ? m->to_str() : "common";
      double x = v.as_double() * scale;
      x = how == "floor" ? std::floor(x) : how == "ceil" ? std::ceil(x) : std::round(x);
      return Value::number(x / scale);
    }
    if (name == "reverse") {
      if (v.is_str()) {
        auto cs = chars_of(v.s);
        std::string s;
        for (auto it = cs.rbegin(); it != cs.rend(); ++it) s += *it;
        return Value::str(s);
      }
      List l = iterate(v);
      std::reverse(l.begin(), l.end());
      return Value::make_list(std::move(l));
    }
    if (name == "sort" || name == "unique" || name == "max" || name == "min" || name == "sum") {
      const Value* at = a.kwarg("attribute");
      auto key = [&](const Value& x) { return at ? attribute(x, at->to_str()) : x; };
      List l = iterate(v);
      if (name == "sum") {
        Value total = Value::integer(0);
        for (auto& x : l) {
          Value k = key(x);
          total = (total.kind == K::Int && k.kind == K::Int)
                      ? Value::integer(total.i + k.i)
                      : Value::number(total.as_double() + k.as_double());
        }
        return total;
      }
      if (name == "unique") {
        List out;
        for (auto& x : l)
          if (std::none_of(out.begin(), out.end(),
                           [&](const Value& y) { return equals(key(x), key(y)); }))
            out.push_back(x);
        return Value::make_list(std::move(out));
      }
      std::stable_sort(l.begin(), l.end(),
                       [&](const Value& x, const Value& y) { return compare(key(x), key(y)) < 0; });
      if (name == "max" || name == "min") {
        if (l.empty()) return Value::undefined("no " + name + " of an empty sequence");
        return name == "max" ? l.back() : l.front();
      }
      const Value* rev = p(0, "reverse");
      if (rev && rev->truthy()) std::reverse(l.begin(), l.end());
      return Value::make_list(std::move(l));
    }
    if (name == "indent") {
      const Value* w = p(0, "width");
      const Value* first = p(1, "first");
      const Value* blank = p(2, "blank");
      std::string pad =
          w && w->is_str() ? w->s : std::string(size_t(w ? need_int(*w, "indent") : 4), ' ');
      std::string s = need_str(v, "indent"), out;
      size_t start = 0;
      bool first_line = true;
      while (start <= s.size()) {
        size_t e = s.find('\n', start);
        std::string line = s.substr(start, e == std::string::npos ? std::string::npos : e - start);
        bool indent_it =
            first_line ? (first && first->truthy()) : (!line.empty() || (blank && blank->truthy()));
        out += (indent_it ? pad : "") + line;
        if (e == std::string::npos) break;
        out += '\n';
        start = e + 1;
        first_line = false;
      }
      return Value::str(out);
    }
    if (name == "map") {
      List out;
      const Value* at = a.kwarg("attribute");
      for (auto& x : iterate(v)) {
        if (at) {
          Value r = attribute(x, at->to_str());
          const Value* d = a.kwarg("default");
          out.push_back(r.is_undefined() && d ? *d : r);
        } else {
          if (a.pos.empty()) func_fail("map needs a filter name or attribute=");
          CallArgs rest;
          rest.pos.assign(a.pos.begin() + 1, a.pos.end());
          out.push_back(filter(a.pos[0].to_str(), x, rest, pos));
        }
      }
      return Value::make_list(std::move(out));
    }
    if (name == "select" || name == "reject" || name == "selectattr" || name == "rejectattr") {
      bool by_attr = name == "selectattr" || name == "rejectattr";
      bool keep_if = name == "select" || name == "selectattr";
      size_t first = by_attr ? 1 : 0;
      if (by_attr && a.pos.empty()) func_fail(name + " needs an attribute name");
      List out;
      for (auto& x : iterate(v)) {
        Value subject = by_attr ? attribute(x, a.pos[0].to_str()) : x;
        bool ok;
        if (a.pos.size() > first) {
          std::vector<Value> targs(a.pos.begin() + long(first) + 1, a.pos.end());
          ok = run_test(a.pos[first].to_str(), subject, targs);
        } else {
          ok = subject.truthy();
        }
        if (ok == keep_if) out.push_back(x);
      }
      return Value::make_list(std::move(out));
    }
    func_fail("unknown filter '" + name + "'");
  }
};

}  // namespace

std::string render(const Template& t, const std::vector<std::pair<std::string, Value>>& globals) {
  Renderer r(t);
  r.scopes.emplace_back();
  auto& g = r.scopes.back();
  g["range"] = Value::func(builtin_range);
  g["namespace"] = Value::func(builtin_namespace);
  g["dict"] = Value::func(builtin_dict);
  g["strftime_now"] = Value::func(builtin_strftime_now);
  g["raise_exception"] = Value::func([](CallArgs& a) -> Value {
    func_fail("raise_exception: " +
              (a.pos.empty() ? std::string("(no message)") : a.pos[0].to_str()));
  });
  for (auto& [k, v] : globals) g[k] = v;
  r.scopes.emplace_back();  // template-level variables shadow, never overwrite, the globals
  std::string out;
  r.exec(t.body, out);
  return out;
}

}  // namespace nestedfp::chat::jinja
