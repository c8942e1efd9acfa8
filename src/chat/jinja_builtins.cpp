// Jinja runtime library: Python-like operations on values (iteration, length, slicing, ordering,
// membership), the `is` tests, str/dict methods and the global functions (range, namespace, dict,
// strftime_now). The evaluator (jinja_eval.cpp) calls these; errors are FuncError, to which the
// call site adds the template position.
#include "chat/jinja_builtins.hpp"

#include <algorithm>
#include <cctype>
#include <ctime>

namespace nestedfp::chat::jinja::builtins {
namespace {

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

Value list_of_strings(const std::vector<std::string>& v) {
  List l;
  for (auto& s : v) l.push_back(Value::str(s));
  return Value::make_list(std::move(l));
}

}  // namespace

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
  if (left)
    while (b < e && chars.find(s[b]) != std::string::npos) ++b;
  if (right)
    while (e > b && chars.find(s[e - 1]) != std::string::npos) --e;
  return s.substr(b, e - b);
}

std::string replace_all(const std::string& s, const std::string& from, const std::string& to,
                        int64_t count) {
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
std::vector<int64_t> slice_indices(int64_t n, const Value& start, const Value& stop,
                                   const Value& stepv) {
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
    default:
      func_fail(std::string("argument of type '") + container.type_name() + "' is not iterable");
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
  return Value::undefined(std::string("'") + obj.type_name() + "' object has no attribute '" +
                          name + "'");
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
          bool hit =
              name == "startswith"
                  ? o.s.rfind(x, 0) == 0
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
    if (name == "upper")
      return bind([](const Value& o, CallArgs&) { return Value::str(upper(o.s)); });
    if (name == "lower")
      return bind([](const Value& o, CallArgs&) { return Value::str(lower(o.s)); });
    if (name == "title")
      return bind([](const Value& o, CallArgs&) { return Value::str(title(o.s)); });
    if (name == "capitalize")
      return bind([](const Value& o, CallArgs&) { return Value::str(capitalize(o.s)); });
    if (name == "replace")
      return bind([](const Value& o, CallArgs& a) {
        const Value *f = arg(a, 0, "old"), *t = arg(a, 1, "new"), *c = arg(a, 2, "count");
        if (!f || !t) func_fail("replace() needs two arguments");
        return Value::str(replace_all(o.s, need_str(*f, "replace"), need_str(*t, "replace"),
                                      c ? need_int(*c, "count") : -1));
      });
    if (name == "find" || name == "count")
      return bind([name](const Value& o, CallArgs& a) {
        const Value* x = arg(a, 0, "sub");
        if (!x) func_fail(name + "() needs an argument");
        const std::string& sub = need_str(*x, name.c_str());
        if (name == "find") {
          size_t p = o.s.find(sub);
          return Value::integer(
              p == std::string::npos ? -1 : int64_t(chars_of(o.s.substr(0, p)).size()));
        }
        int64_t n = 0;
        if (!sub.empty())
          for (size_t p = o.s.find(sub); p != std::string::npos; p = o.s.find(sub, p + sub.size()))
            ++n;
        return Value::integer(n);
      });
    if (name == "join")
      return bind([](const Value& o, CallArgs& a) {
        const Value* x = arg(a, 0, "iterable");
        if (!x) func_fail("join() needs an argument");
        std::string out;
        List items = iterate(*x);
        for (size_t k = 0; k < items.size(); ++k)
          out += (k ? o.s : "") + need_str(items[k], "join");
        return Value::str(out);
      });
    if (name == "isdigit" || name == "isalpha" || name == "isspace" || name == "isalnum")
      return bind([name](const Value& o, CallArgs&) {
        if (o.s.empty()) return Value::boolean(false);
        for (char c : o.s) {
          int (*pred)(int) = name == "isdigit"   ? ::isdigit
                             : name == "isalpha" ? ::isalpha
                             : name == "isspace" ? ::isspace
                                                 : ::isalnum;
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
  return Value::undefined(std::string("'") + obj.type_name() + "' object has no attribute '" +
                          name + "'");
}

Value builtin_range(CallArgs& a) {
  if (a.pos.empty() || a.pos.size() > 3) func_fail("range() takes 1 to 3 arguments");
  int64_t start = 0, stop, step = 1;
  if (a.pos.size() == 1)
    stop = need_int(a.pos[0], "range");
  else
    start = need_int(a.pos[0], "range"), stop = need_int(a.pos[1], "range");
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

}  // namespace nestedfp::chat::jinja::builtins
