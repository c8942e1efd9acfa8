// Jinja evaluator: statements, expressions, filters, tests, methods and globals.
#include <algorithm>
#include <cmath>
#include <cctype>
#include <ctime>
#include <unordered_map>

#include "chat/jinja.hpp"
#include "nestedfp/error.hpp"

namespace nestedfp::chat::jinja {
namespace {

using K = Value::Kind;

// Thrown by built-in functions; the call site adds the template position.
struct FuncError {
  std::string msg;
};
[[noreturn]] void func_fail(std::string msg) { throw FuncError{std::move(msg)}; }

constexpr const char* kSpace = " \t\n\r\f\v";

// UTF-8 code points, so len(), indexing and slicing count characters like Python does.
std::vector<std::string> chars_of(const std::string& s) {
  std::vector<std::string> out;
  for (size_t k = 0; k < s.size();) {
    unsigned char c = s[k];
    size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
    len = std::min(len, s.size() - k);
    out.push_back(s.substr(k, len));
    k += len;
  }
  return out;
}

std::string strip_chars(const std::string& s, const std::string& chars, bool left, bool right) {
  size_t b = 0, e = s.size();
  if (left) while (b < e && chars.find(s[b]) != std::string::npos) ++b;
  if (right) while (e > b && chars.find(s[e - 1]) != std::string::npos) --e;
  return s.substr(b, e - b);
}

std::string replace_all(const std::string& s, const std::string& from, const std::string& to, int64_t count) {
  if (from.empty()) return s;
  std::string out;
  size_t p = 0;
  for (int64_t n = 0; count < 0 || n < count; ++n) {
    size_t q = s.find(from, p);
    if (q == std::string::npos) break;
    out += s.substr(p, q - p) + to;
    p = q + from.size();
  }
  return out + s.substr(p);
}

std::vector<std::string> split(const std::string& s, const Value* sep, int64_t maxsplit) {
  std::vector<std::string> out;
  if (!sep || sep->is_none()) {  // Python: runs of whitespace, no empty parts
    size_t p = s.find_first_not_of(kSpace);
    while (p != std::string::npos) {
      if (maxsplit >= 0 && int64_t(out.size()) == maxsplit) {
        out.push_back(strip_chars(s.substr(p), kSpace, false, true));
        break;
      }
      size_t e = s.find_first_of(kSpace, p);
      out.push_back(s.substr(p, e == std::string::npos ? std::string::npos : e - p));
      p = e == std::string::npos ? e : s.find_first_not_of(kSpace, e);
    }
    return out;
  }
  if (!sep->is_str() || sep->s.empty()) func_fail("split() separator must be a non-empty string");
  size_t p = 0;
  for (;;) {
    size_t q = s.find(sep->s, p);
    if (q == std::string::npos || (maxsplit >= 0 && int64_t(out.size()) == maxsplit)) break;
    out.push_back(s.substr(p, q - p));
    p = q + sep->s.size();
  }
  out.push_back(s.substr(p));
  return out;
}

std::string upper(std::string s) {
  for (char& c : s) c = char(std::toupper(uint8_t(c)));
  return s;
}
std::string lower(std::string s) {
  for (char& c : s) c = char(std::tolower(uint8_t(c)));
  return s;
}
std::string capitalize(const std::string& s) {
  std::string out = lower(s);
  if (!out.empty()) out[0] = char(std::toupper(uint8_t(out[0])));
  return out;
}
std::string title(const std::string& s) {
  std::string out = s;
  bool start = true;
  for (char& c : out) {
    bool alpha = std::isalpha(uint8_t(c));
    c = char(alpha ? (start ? std::toupper(uint8_t(c)) : std::tolower(uint8_t(c))) : c);
    start = !alpha;
  }
  return out;
}

Value list_of_strings(const std::vector<std::string>& v) {
  List l;
  for (auto& s : v) l.push_back(Value::str(s));
  return Value::make_list(std::move(l));
}

const std::string& need_str(const Value& v, const char* what) {
  if (!v.is_str()) func_fail(std::string(what) + " expects a string, got " + v.type_name());
  return v.s;
}
int64_t need_int(const Value& v, const char* what) {
  if (v.kind == K::Int) return v.i;
  if (v.kind == K::Bool) return v.b;
  func_fail(std::string(what) + " expects an integer, got " + v.type_name());
}
const Value* arg(CallArgs& a, size_t k, const char* name) {
  if (k < a.pos.size()) return &a.pos[k];
  return a.kwarg(name);
}

// Items a template iterates over: list elements, dict keys, string characters.
List iterate(const Value& v) {
  switch (v.kind) {
    case K::List: return *v.list;
    case K::Dict: {
      List l;
      for (auto& [k, _] : v.dict->items) l.push_back(Value::str(k));
      return l;
    }
    case K::Str: {
      List l;
      for (auto& c : chars_of(v.s)) l.push_back(Value::str(c));
      return l;
    }
    case K::Undefined: return {};
    default: func_fail(std::string("'") + v.type_name() + "' object is not iterable");
  }
}

int64_t length(const Value& v) {
  switch (v.kind) {
    case K::Str: return int64_t(chars_of(v.s).size());
    case K::List: return int64_t(v.list->size());
    case K::Dict: return int64_t(v.dict->items.size());
    case K::Undefined: return 0;
    default: func_fail(std::string("object of type '") + v.type_name() + "' has no length");
  }
}

// Python slice semantics on a sequence of length n.
std::vector<int64_t> slice_indices(int64_t n, const Value& start, const Value& stop, const Value& stepv) {
  int64_t step = stepv.is_none() || stepv.is_undefined() ? 1 : need_int(stepv, "slice step");
  if (step == 0) func_fail("slice step cannot be zero");
  auto norm = [&](const Value& v, int64_t dflt, int64_t lo, int64_t hi) {
    if (v.is_none() || v.is_undefined()) return dflt;
    int64_t x = need_int(v, "slice index");
    if (x < 0) x += n;
    return std::clamp(x, lo, hi);
  };
  std::vector<int64_t> idx;
  if (step > 0) {
    int64_t b = norm(start, 0, 0, n), e = norm(stop, n, 0, n);
    for (int64_t k = b; k < e; k += step) idx.push_back(k);
  } else {
    int64_t b = norm(start, n - 1, -1, n - 1), e = norm(stop, -1, -1, n - 1);
    for (int64_t k = b; k > e; k += step) idx.push_back(k);
  }
  return idx;
}

int compare(const Value& a, const Value& b) {
  if ((a.is_number() || a.kind == K::Bool) && (b.is_number() || b.kind == K::Bool)) {
    double x = a.as_double(), y = b.as_double();
    return x < y ? -1 : x > y ? 1 : 0;
  }
  if (a.is_str() && b.is_str()) return a.s < b.s ? -1 : a.s > b.s ? 1 : 0;
  if (a.is_list() && b.is_list()) {
    for (size_t k = 0; k < std::min(a.list->size(), b.list->size()); ++k)
      if (int c = compare((*a.list)[k], (*b.list)[k])) return c;
    return a.list->size() < b.list->size() ? -1 : a.list->size() > b.list->size() ? 1 : 0;
  }
  func_fail(std::string("cannot compare '") + a.type_name() + "' with '" + b.type_name() + "'");
}

bool contains(const Value& container, const Value& item) {
  switch (container.kind) {
    case K::Str:
      if (!item.is_str()) func_fail("'in <string>' requires a string on the left");
      return container.s.find(item.s) != std::string::npos;
    case K::List:
      for (auto& e : *container.list)
        if (equals(e, item)) return true;
      return false;
    case K::Dict: return item.is_str() && container.dict->find(item.s) != nullptr;
    default: func_fail(std::string("argument of type '") + container.type_name() + "' is not iterable");
  }
}

bool run_test(const std::string& name, const Value& v, const std::vector<Value>& args) {
  auto need_arg = [&]() -> const Value& {
    if (args.empty()) func_fail("test '" + name + "' needs an argument");
    return args[0];
  };
  if (name == "defined") return !v.is_undefined();
  if (name == "undefined") return v.is_undefined();
  if (name == "none") return v.is_none();
  if (name == "string") return v.is_str();
  if (name == "number") return v.is_number() || v.kind == K::Bool;
  if (name == "integer") return v.kind == K::Int;
  if (name == "float") return v.kind == K::Float;
  if (name == "boolean") return v.kind == K::Bool;
  if (name == "true") return v.kind == K::Bool && v.b;
  if (name == "false") return v.kind == K::Bool && !v.b;
  if (name == "mapping") return v.is_dict();
  if (name == "iterable") return v.is_list() || v.is_dict() || v.is_str();
  if (name == "sequence") return v.is_list() || v.is_dict() || v.is_str();
  if (name == "callable") return v.kind == K::Func;
  if (name == "even") return need_int(v, "even") % 2 == 0;
  if (name == "odd") return need_int(v, "odd") % 2 != 0;
  if (name == "divisibleby") {
    int64_t d = need_int(need_arg(), "divisibleby");
    if (d == 0) func_fail("divisibleby 0");
    return need_int(v, "divisibleby") % d == 0;
  }
  if (name == "equalto" || name == "eq" || name == "==") return equals(v, need_arg());
  if (name == "ne" || name == "!=") return !equals(v, need_arg());
  if (name == "gt" || name == ">") return compare(v, need_arg()) > 0;
  if (name == "ge" || name == ">=") return compare(v, need_arg()) >= 0;
  if (name == "lt" || name == "<") return compare(v, need_arg()) < 0;
  if (name == "le" || name == "<=") return compare(v, need_arg()) <= 0;
  if (name == "in") return contains(need_arg(), v);
  if (name == "lower") return v.is_str() && lower(v.s) == v.s;
  if (name == "upper") return v.is_str() && upper(v.s) == v.s;
  if (name == "sameas") {
    const Value& o = need_arg();
    if (v.kind != o.kind) return false;
    if (v.is_list()) return v.list == o.list;
    if (v.is_dict()) return v.dict == o.dict;
    return equals(v, o);
  }
  func_fail("unknown test '" + name + "'");
}

Value method(const Value& obj, const std::string& name);

Value attribute(const Value& obj, const std::string& name) {
  if (obj.is_dict() && !obj.dict->is_namespace) {
    static const char* dict_methods[] = {"items", "keys", "values", "get"};
    for (const char* m : dict_methods)
      if (name == m) return method(obj, name);
  }
  if (obj.is_dict())
    if (const Value* v = obj.dict->find(name)) return *v;
  if (obj.is_str() || obj.is_list() || obj.is_dict()) {
    Value m = method(obj, name);
    if (!m.is_undefined()) return m;
  }
  return Value::undefined(std::string("'") + obj.type_name() + "' object has no attribute '" + name + "'");
}

Value method(const Value& obj, const std::string& name) {
  auto bind = [&](auto f) { return Value::func([obj, f](CallArgs& a) { return f(obj, a); }); };
  if (obj.is_str()) {
    if (name == "strip" || name == "lstrip" || name == "rstrip")
      return bind([name](const Value& o, CallArgs& a) {
        const Value* c = arg(a, 0, "chars");
        std::string chars = c && !c->is_none() ? need_str(*c, name.c_str()) : kSpace;
        return Value::str(strip_chars(o.s, chars, name != "rstrip", name != "lstrip"));
      });
    if (name == "startswith" || name == "endswith")
      return bind([name](const Value& o, CallArgs& a) {
        const Value* p = arg(a, 0, "prefix");
        if (!p) func_fail(name + "() needs an argument");
        List options = p->is_list() ? *p->list : List{*p};
        for (auto& opt : options) {
          const std::string& x = need_str(opt, name.c_str());
          bool hit = name == "startswith" ? o.s.rfind(x, 0) == 0
                                          : o.s.size() >= x.size() && o.s.compare(o.s.size() - x.size(), x.size(), x) == 0;
          if (hit) return Value::boolean(true);
        }
        return Value::boolean(false);
      });
    if (name == "split")
      return bind([](const Value& o, CallArgs& a) {
        const Value* m = arg(a, 1, "maxsplit");
        return list_of_strings(split(o.s, arg(a, 0, "sep"), m ? need_int(*m, "maxsplit") : -1));
      });
    if (name == "splitlines")
      return bind([](const Value& o, CallArgs&) {
        std::vector<std::string> lines;
        size_t p = 0;
        while (p < o.s.size()) {
          size_t e = o.s.find('\n', p);
          if (e == std::string::npos) e = o.s.size();
          std::string line = o.s.substr(p, e - p);
          if (!line.empty() && line.back() == '\r') line.pop_back();
          lines.push_back(line);
          p = e + 1;
        }
        return list_of_strings(lines);
      });
    if (name == "upper") return bind([](const Value& o, CallArgs&) { return Value::str(upper(o.s)); });
    if (name == "lower") return bind([](const Value& o, CallArgs&) { return Value::str(lower(o.s)); });
    if (name == "title") return bind([](const Value& o, CallArgs&) { return Value::str(title(o.s)); });
    if (name == "capitalize") return bind([](const Value& o, CallArgs&) { return Value::str(capitalize(o.s)); });
    if (name == "replace")
      return bind([](const Value& o, CallArgs& a) {
        const Value *f = arg(a, 0, "old"), *t = arg(a, 1, "new"), *c = arg(a, 2, "count");
        if (!f || !t) func_fail("replace() needs two arguments");
        return Value::str(replace_all(o.s, need_str(*f, "replace"), need_str(*t, "replace"), c ? need_int(*c, "count") : -1));
      });
    if (name == "find" || name == "count")
      return bind([name](const Value& o, CallArgs& a) {
        const Value* x = arg(a, 0, "sub");
        if (!x) func_fail(name + "() needs an argument");
        const std::string& sub = need_str(*x, name.c_str());
        if (name == "find") {
          size_t p = o.s.find(sub);
          return Value::integer(p == std::string::npos ? -1 : int64_t(chars_of(o.s.substr(0, p)).size()));
        }
        int64_t n = 0;
        if (!sub.empty())
          for (size_t p = o.s.find(sub); p != std::string::npos; p = o.s.find(sub, p + sub.size())) ++n;
        return Value::integer(n);
      });
    if (name == "join")
      return bind([](const Value& o, CallArgs& a) {
        const Value* x = arg(a, 0, "iterable");
        if (!x) func_fail("join() needs an argument");
        std::string out;
        List items = iterate(*x);
        for (size_t k = 0; k < items.size(); ++k) out += (k ? o.s : "") + need_str(items[k], "join");
        return Value::str(out);
      });
    if (name == "isdigit" || name == "isalpha" || name == "isspace" || name == "isalnum")
      return bind([name](const Value& o, CallArgs&) {
        if (o.s.empty()) return Value::boolean(false);
        for (char c : o.s) {
          int (*pred)(int) = name == "isdigit" ? ::isdigit : name == "isalpha" ? ::isalpha
                           : name == "isspace" ? ::isspace : ::isalnum;
          if (!pred(uint8_t(c))) return Value::boolean(false);
        }
        return Value::boolean(true);
      });
  } else if (obj.is_dict()) {
    if (name == "items")
      return bind([](const Value& o, CallArgs&) {
        List l;
        for (auto& [k, v] : o.dict->items) l.push_back(Value::make_list({Value::str(k), v}));
        return Value::make_list(std::move(l));
      });
    if (name == "keys" || name == "values")
      return bind([name](const Value& o, CallArgs&) {
        List l;
        for (auto& [k, v] : o.dict->items) l.push_back(name == "keys" ? Value::str(k) : v);
        return Value::make_list(std::move(l));
      });
    if (name == "get")
      return bind([](const Value& o, CallArgs& a) {
        const Value* k = arg(a, 0, "key");
        if (!k) func_fail("get() needs a key");
        const Value* d = arg(a, 1, "default");
        const Value* v = k->is_str() ? o.dict->find(k->s) : nullptr;
        return v ? *v : d ? *d : Value::none();
      });
  }
  return Value::undefined(std::string("'") + obj.type_name() + "' object has no attribute '" + name + "'");
}

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
      if (n.targets.size() == 1) assign(n.targets[0], item);
      else unpack(n.targets, item, n.pos);
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
      d.set("previtem", k > 0 ? items[size_t(k - 1)] : Value::undefined("there is no previous item"));
      d.set("nextitem", k + 1 < len ? items[size_t(k + 1)] : Value::undefined("there is no next item"));
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
        if (k < a.pos.size()) assign(p, a.pos[k]);
        else if (const Value* v = a.kwarg(p)) assign(p, *v);
        else if (node->conds[k]) assign(p, eval(*node->conds[k]));
        else assign(p, Value::undefined("macro argument '" + p + "' was not given"));
      }
      if (a.pos.size() > node->targets.size()) func_fail("too many arguments to macro '" + node->text + "'");
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
          for (int64_t k : slice_indices(int64_t(cs.size()), parts[0], parts[1], parts[2])) s += cs[size_t(k)];
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
        error(e.pos, std::string("bad operand type for unary ") + e.name + ": '" + v.type_name() + "'");
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
      if (key.kind != K::Int) error(pos, std::string("indices must be integers, not ") + key.type_name());
      int64_t n = obj.is_list() ? int64_t(obj.list->size()) : length(obj);
      int64_t k = key.i < 0 ? key.i + n : key.i;
      if (k < 0 || k >= n) return Value::undefined("index " + std::to_string(key.i) + " out of range");
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
      error(e.pos, "unsupported operand types for " + op + ": '" + a.type_name() + "' and '" + b.type_name() + "'");
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
          if (a.is_str()) r.s += a.s;
          else r.list->insert(r.list->end(), a.list->begin(), a.list->end());
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
      return Value::str(strip_chars(need_str(v, "trim"), c && !c->is_none() ? need_str(*c, "trim") : kSpace, true, true));
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
      return Value::str(replace_all(v.to_str(), f->to_str(), t->to_str(), c ? need_int(*c, "count") : -1));
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
      if (v.kind == K::Int || v.kind == K::Bool) return Value::integer(v.kind == K::Bool ? v.b : v.i);
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
          total = (total.kind == K::Int && k.kind == K::Int) ? Value::integer(total.i + k.i)
                                                             : Value::number(total.as_double() + k.as_double());
        }
        return total;
      }
      if (name == "unique") {
        List out;
        for (auto& x : l)
          if (std::none_of(out.begin(), out.end(), [&](const Value& y) { return equals(key(x), key(y)); }))
            out.push_back(x);
        return Value::make_list(std::move(out));
      }
      std::stable_sort(l.begin(), l.end(), [&](const Value& x, const Value& y) { return compare(key(x), key(y)) < 0; });
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
      std::string pad = w && w->is_str() ? w->s : std::string(size_t(w ? need_int(*w, "indent") : 4), ' ');
      std::string s = need_str(v, "indent"), out;
      size_t start = 0;
      bool first_line = true;
      while (start <= s.size()) {
        size_t e = s.find('\n', start);
        std::string line = s.substr(start, e == std::string::npos ? std::string::npos : e - start);
        bool indent_it = first_line ? (first && first->truthy()) : (!line.empty() || (blank && blank->truthy()));
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

Value builtin_range(CallArgs& a) {
  if (a.pos.empty() || a.pos.size() > 3) func_fail("range() takes 1 to 3 arguments");
  int64_t start = 0, stop, step = 1;
  if (a.pos.size() == 1) stop = need_int(a.pos[0], "range");
  else start = need_int(a.pos[0], "range"), stop = need_int(a.pos[1], "range");
  if (a.pos.size() == 3) step = need_int(a.pos[2], "range");
  if (step == 0) func_fail("range() step must not be zero");
  List l;
  for (int64_t k = start; step > 0 ? k < stop : k > stop; k += step) {
    if (l.size() >= 1000000) func_fail("range() too long");
    l.push_back(Value::integer(k));
  }
  return Value::make_list(std::move(l));
}

Value builtin_namespace(CallArgs& a) {
  Value ns = Value::make_dict(true);
  for (auto& x : a.pos) {
    if (!x.is_dict()) func_fail("namespace() positional arguments must be mappings");
    for (auto& [k, v] : x.dict->items) ns.dict->set(k, v);
  }
  for (auto& [k, v] : a.kw) ns.dict->set(k, v);
  return ns;
}

Value builtin_dict(CallArgs& a) {
  Value d = Value::make_dict();
  for (auto& [k, v] : a.kw) d.dict->set(k, v);
  return d;
}

Value builtin_strftime_now(CallArgs& a) {
  if (a.pos.empty()) func_fail("strftime_now() needs a format");
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[256];
  size_t n = std::strftime(buf, sizeof buf, need_str(a.pos[0], "strftime_now").c_str(), &tm);
  return Value::str(std::string(buf, n));
}

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
    func_fail("raise_exception: " + (a.pos.empty() ? std::string("(no message)") : a.pos[0].to_str()));
  });
  for (auto& [k, v] : globals) g[k] = v;
  r.scopes.emplace_back();  // template-level variables shadow, never overwrite, the globals
  std::string out;
  r.exec(t.body, out);
  return out;
}

}  // namespace nestedfp::chat::jinja
