#pragma once
// Internal to src/chat: the runtime library the Jinja evaluator calls (jinja_builtins.cpp).
// Functions report errors by throwing FuncError; the evaluator adds the template position.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "chat/jinja.hpp"

namespace nestedfp::chat::jinja::builtins {

using K = Value::Kind;

// Thrown by built-in functions; the call site adds the template position.
struct FuncError {
  std::string msg;
};
[[noreturn]] inline void func_fail(std::string msg) { throw FuncError{std::move(msg)}; }

inline constexpr const char* kSpace = " \t\n\r\f\v";

// ---- strings (UTF-8 aware where Python counts characters) -----------------------------------
std::vector<std::string> chars_of(const std::string& s);
std::string strip_chars(const std::string& s, const std::string& chars, bool left, bool right);
std::string replace_all(const std::string& s, const std::string& from, const std::string& to,
                        int64_t count);
std::string upper(std::string s);
std::string lower(std::string s);
std::string capitalize(const std::string& s);
std::string title(const std::string& s);

// ---- arguments ------------------------------------------------------------------------------
const std::string& need_str(const Value& v, const char* what);
int64_t need_int(const Value& v, const char* what);
// Positional argument k, else the keyword argument `name`; null if neither was given.
const Value* arg(CallArgs& a, size_t k, const char* name);

// ---- Python semantics on values -------------------------------------------------------------
List iterate(const Value& v);  // list elements, dict keys, string characters
int64_t length(const Value& v);
std::vector<int64_t> slice_indices(int64_t n, const Value& start, const Value& stop,
                                   const Value& stepv);
int compare(const Value& a, const Value& b);
bool contains(const Value& container, const Value& item);

// ---- `is` tests, attributes and str/dict methods --------------------------------------------
bool run_test(const std::string& name, const Value& v, const std::vector<Value>& args);
Value attribute(const Value& obj, const std::string& name);
Value method(const Value& obj, const std::string& name);

// ---- global functions -----------------------------------------------------------------------
Value builtin_range(CallArgs& a);
Value builtin_namespace(CallArgs& a);
Value builtin_dict(CallArgs& a);
Value builtin_strftime_now(CallArgs& a);

}  // namespace nestedfp::chat::jinja::builtins
