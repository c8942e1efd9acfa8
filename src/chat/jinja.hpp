#pragma once
// A small Jinja2 interpreter: the subset Hugging Face chat templates use (see chat_template.hpp).
// Values follow Python semantics where templates can observe them (truthiness, str(), ==, slicing).
// Configured like transformers' environment: trim_blocks and lstrip_blocks on, loop controls on.
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace nestedfp::chat::jinja {

struct Value;
using List = std::vector<Value>;

// Insertion-ordered string-keyed map (Python dicts keep insertion order; tojson shows it).
struct Dict {
  std::vector<std::pair<std::string, Value>> items;
  bool is_namespace = false;  // namespace() objects accept `{% set ns.attr = ... %}`
  const Value* find(const std::string& key) const;
  void set(const std::string& key, Value v);
};

struct CallArgs {
  std::vector<Value> pos;
  std::vector<std::pair<std::string, Value>> kw;
  const Value* kwarg(const std::string& name) const;
};
using Func = std::function<Value(CallArgs&)>;

struct Value {
  enum class Kind { Undefined, None, Bool, Int, Float, Str, List, Dict, Func };
  Kind kind = Kind::Undefined;
  bool b = false;
  int64_t i = 0;
  double f = 0;
  std::string s;  // the string, or for Undefined the description used in error messages
  std::shared_ptr<jinja::List> list;
  std::shared_ptr<jinja::Dict> dict;
  std::shared_ptr<jinja::Func> fn;

  static Value undefined(std::string what = {});
  static Value none();
  static Value boolean(bool v);
  static Value integer(int64_t v);
  static Value number(double v);
  static Value str(std::string v);
  static Value make_list(jinja::List v = {});
  static Value make_dict(bool is_namespace = false);
  static Value func(jinja::Func f);
  static Value from_json(const nlohmann::json& j);

  bool is_undefined() const { return kind == Kind::Undefined; }
  bool is_none() const { return kind == Kind::None; }
  bool is_str() const { return kind == Kind::Str; }
  bool is_list() const { return kind == Kind::List; }
  bool is_dict() const { return kind == Kind::Dict; }
  bool is_number() const { return kind == Kind::Int || kind == Kind::Float; }
  double as_double() const { return kind == Kind::Float ? f : double(kind == Kind::Bool ? b : i); }
  bool truthy() const;
  std::string to_str() const;  // Python str()
  std::string repr() const;    // Python repr() (inside lists and dicts)
  std::string to_json(int indent = -1, int level = 0) const;  // json.dumps(ensure_ascii=False)
  const char* type_name() const;
};

bool equals(const Value& a, const Value& b);

// ---- syntax tree ----------------------------------------------------------------------------
struct Expr;
using ExprP = std::unique_ptr<Expr>;
struct Expr {
  enum class Op {
    Literal,
    Name,
    ListLit,
    DictLit,
    Attr,
    Index,
    Slice,
    Call,
    Filter,
    Test,
    Unary,
    Binary,
    And,
    Or,
    Cond
  };
  Op op;
  size_t pos = 0;
  Value literal;
  std::string name;         // variable/attribute/filter/test name or operator
  bool negate = false;      // `is not`
  std::vector<ExprP> args;  // operands; null entries are omitted slice parts / else branch
  std::vector<std::pair<std::string, ExprP>> kwargs;
};

struct Node;
using NodeP = std::unique_ptr<Node>;
using Body = std::vector<NodeP>;
struct Node {
  enum class Kind { Text, Output, If, For, Set, SetBlock, Macro, Break, Continue, Scope };
  Kind kind;
  size_t pos = 0;
  std::string text;                  // Text: the text; Macro: its name
  ExprP expr;                        // Output/Set value, For iterable
  ExprP filter;                      // For ... if filter
  std::vector<std::string> targets;  // For/Set names, Macro parameters
  std::string attr;                  // Set ns.attr
  std::vector<ExprP> conds;          // If/elif conditions; Macro parameter defaults (nullable)
  std::vector<Body> bodies;          // If branches; For/Set/Macro/Scope body is bodies[0]
  Body else_body;
};

struct Template {
  std::string source;
  Body body;
};

// Parse errors throw nestedfp::Error naming line and column.
std::shared_ptr<Template> parse(std::string source);

// Render with the given global variables. Runtime errors (undefined names used in operations,
// type errors, raise_exception) throw nestedfp::Error naming line and column.
std::string render(const Template& t, const std::vector<std::pair<std::string, Value>>& globals);

// "line L, column C" for an offset into `src`.
std::string where(std::string_view src, size_t pos);

}  // namespace nestedfp::chat::jinja
