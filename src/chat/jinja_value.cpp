// Jinja values with the Python behaviour templates can observe: str(), repr(), truthiness, ==,
// and json.dumps as transformers' `tojson` filter calls it (ensure_ascii=False, insertion order).
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "chat/jinja.hpp"

namespace nestedfp::chat::jinja {

const Value* Dict::find(const std::string& key) const {
  for (auto& [k, v] : items)
    if (k == key) return &v;
  return nullptr;
}

void Dict::set(const std::string& key, Value v) {
  for (auto& [k, old] : items)
    if (k == key) {
      old = std::move(v);
      return;
    }
  items.emplace_back(key, std::move(v));
}

const Value* CallArgs::kwarg(const std::string& name) const {
  for (auto& [k, v] : kw)
    if (k == name) return &v;
  return nullptr;
}

Value Value::undefined(std::string what) {
  Value v;
  v.s = std::move(what);
  return v;
}
Value Value::none() {
  Value v;
  v.kind = Kind::None;
  return v;
}
Value Value::boolean(bool b) {
  Value v;
  v.kind = Kind::Bool;
  v.b = b;
  return v;
}
Value Value::integer(int64_t i) {
  Value v;
  v.kind = Kind::Int;
  v.i = i;
  return v;
}
Value Value::number(double f) {
  Value v;
  v.kind = Kind::Float;
  v.f = f;
  return v;
}
Value Value::str(std::string s) {
  Value v;
  v.kind = Kind::Str;
  v.s = std::move(s);
  return v;
}
Value Value::make_list(jinja::List l) {
  Value v;
  v.kind = Kind::List;
  v.list = std::make_shared<jinja::List>(std::move(l));
  return v;
}
Value Value::make_dict(bool is_namespace) {
  Value v;
  v.kind = Kind::Dict;
  v.dict = std::make_shared<jinja::Dict>();
  v.dict->is_namespace = is_namespace;
  return v;
}
Value Value::func(jinja::Func f) {
  Value v;
  v.kind = Kind::Func;
  v.fn = std::make_shared<jinja::Func>(std::move(f));
  return v;
}

Value Value::from_json(const nlohmann::json& j) {
  switch (j.type()) {
    case nlohmann::json::value_t::null: return none();
    case nlohmann::json::value_t::boolean: return boolean(j.get<bool>());
    case nlohmann::json::value_t::number_integer: return integer(j.get<int64_t>());
    case nlohmann::json::value_t::number_unsigned: return integer(int64_t(j.get<uint64_t>()));
    case nlohmann::json::value_t::number_float: return number(j.get<double>());
    case nlohmann::json::value_t::string: return str(j.get<std::string>());
    case nlohmann::json::value_t::array: {
      jinja::List l;
      for (auto& e : j) l.push_back(from_json(e));
      return make_list(std::move(l));
    }
    case nlohmann::json::value_t::object: {
      Value d = make_dict();
      for (auto it = j.begin(); it != j.end(); ++it) d.dict->set(it.key(), from_json(it.value()));
      return d;
    }
    default: return none();
  }
}

bool Value::truthy() const {
  switch (kind) {
    case Kind::Undefined:
    case Kind::None: return false;
    case Kind::Bool: return b;
    case Kind::Int: return i != 0;
    case Kind::Float: return f != 0;
    case Kind::Str: return !s.empty();
    case Kind::List: return !list->empty();
    case Kind::Dict: return !dict->items.empty();
    case Kind::Func: return true;
  }
  return false;
}

namespace {

std::string float_repr(double f) {
  if (std::isnan(f)) return "nan";
  if (std::isinf(f)) return f > 0 ? "inf" : "-inf";
  char buf[64];
  for (int prec = 1; prec <= 17; ++prec) {  // shortest text that reads back as the same double
    std::snprintf(buf, sizeof buf, "%.*g", prec, f);
    if (std::strtod(buf, nullptr) == f) break;
  }
  std::string s = buf;
  if (s.find_first_of(".en") == std::string::npos) s += ".0";
  return s;
}

void json_string(std::string& out, const std::string& s) {
  out += '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += char(c);
        }
    }
  }
  out += '"';
}

}  // namespace

std::string Value::repr() const {
  if (kind == Kind::Str) {
    bool use_double = s.find('\'') != std::string::npos && s.find('"') == std::string::npos;
    char q = use_double ? '"' : '\'';
    std::string out(1, q);
    for (char c : s) {
      if (c == '\\')
        out += "\\\\";
      else if (c == q)
        out += '\\', out += q;
      else if (c == '\n')
        out += "\\n";
      else if (c == '\t')
        out += "\\t";
      else if (c == '\r')
        out += "\\r";
      else
        out += c;
    }
    out += q;
    return out;
  }
  return to_str();
}

std::string Value::to_str() const {
  switch (kind) {
    case Kind::Undefined: return "";
    case Kind::None: return "None";
    case Kind::Bool: return b ? "True" : "False";
    case Kind::Int: return std::to_string(i);
    case Kind::Float: return float_repr(f);
    case Kind::Str: return s;
    case Kind::List: {
      std::string out = "[";
      for (size_t k = 0; k < list->size(); ++k) {
        if (k) out += ", ";
        out += (*list)[k].repr();
      }
      return out + "]";
    }
    case Kind::Dict: {
      if (dict->is_namespace) return "<Namespace>";
      std::string out = "{";
      bool first = true;
      for (auto& [k, v] : dict->items) {
        if (!first) out += ", ";
        out += Value::str(k).repr();
        out += ": ";
        out += v.repr();
        first = false;
      }
      return out + "}";
    }
    case Kind::Func: return "<function>";
  }
  return "";
}

std::string Value::to_json(int indent, int level) const {
  std::string out;
  auto newline = [&](int lvl) {
    if (indent >= 0) out += '\n', out.append(size_t(indent * lvl), ' ');
  };
  const char* item_sep = indent >= 0 ? "," : ", ";
  switch (kind) {
    case Kind::Undefined:
    case Kind::None:
    case Kind::Func: return "null";
    case Kind::Bool: return b ? "true" : "false";
    case Kind::Int: return std::to_string(i);
    case Kind::Float:
      if (std::isnan(f)) return "NaN";
      if (std::isinf(f)) return f > 0 ? "Infinity" : "-Infinity";
      return float_repr(f);
    case Kind::Str: json_string(out, s); return out;
    case Kind::List:
      if (list->empty()) return "[]";
      out += "[";
      for (size_t k = 0; k < list->size(); ++k) {
        if (k) out += item_sep;
        newline(level + 1);
        out += (*list)[k].to_json(indent, level + 1);
      }
      newline(level);
      return out + "]";
    case Kind::Dict: {
      if (dict->items.empty()) return "{}";
      out += "{";
      bool first = true;
      for (auto& [k, v] : dict->items) {
        if (!first) out += item_sep;
        first = false;
        newline(level + 1);
        json_string(out, k);
        out += ": ";
        out += v.to_json(indent, level + 1);
      }
      newline(level);
      return out + "}";
    }
  }
  return "null";
}

const char* Value::type_name() const {
  switch (kind) {
    case Kind::Undefined: return "undefined";
    case Kind::None: return "none";
    case Kind::Bool: return "bool";
    case Kind::Int: return "int";
    case Kind::Float: return "float";
    case Kind::Str: return "string";
    case Kind::List: return "list";
    case Kind::Dict: return dict->is_namespace ? "namespace" : "dict";
    case Kind::Func: return "function";
  }
  return "?";
}

bool equals(const Value& a, const Value& b) {
  using K = Value::Kind;
  if ((a.is_number() || a.kind == K::Bool) && (b.is_number() || b.kind == K::Bool)) {
    if (a.kind != K::Float && b.kind != K::Float) {
      int64_t x = a.kind == K::Bool ? a.b : a.i, y = b.kind == K::Bool ? b.b : b.i;
      return x == y;
    }
    return a.as_double() == b.as_double();
  }
  if (a.kind != b.kind) return false;
  switch (a.kind) {
    case K::Undefined:
    case K::None: return true;
    case K::Str: return a.s == b.s;
    case K::List:
      if (a.list->size() != b.list->size()) return false;
      for (size_t k = 0; k < a.list->size(); ++k)
        if (!equals((*a.list)[k], (*b.list)[k])) return false;
      return true;
    case K::Dict:
      if (a.dict == b.dict) return true;
      if (a.dict->items.size() != b.dict->items.size()) return false;
      for (auto& [k, v] : a.dict->items) {
        const Value* o = b.dict->find(k);
        if (!o || !equals(v, *o)) return false;
      }
      return true;
    case K::Func: return a.fn == b.fn;
    default: return false;
  }
}

}  // namespace nestedfp::chat::jinja
