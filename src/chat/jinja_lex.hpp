#pragma once
// Internal to src/chat: the Jinja lexer (jinja_lex.cpp) that the parser (jinja_parse.cpp) reads.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace nestedfp::chat::jinja::lex {

struct Token {
  enum class T { Name, Int, Float, Str, Op, End } t;
  std::string s;
  int64_t i = 0;
  double f = 0;
  size_t pos = 0;
};

struct Segment {
  enum class T { Text, Var, Block } t;
  std::string text;           // Text
  std::vector<Token> tokens;  // Var/Block, terminated by an End token
  size_t pos = 0;
};

// Throws nestedfp::Error "chat template syntax error at line L, column C: <msg>".
[[noreturn]] void syntax_error(std::string_view src, size_t pos, const std::string& msg);

// Splits the source into segments (text / {{ }} / {% %}, comments dropped) and applies whitespace
// control; tags are lexed into tokens.
std::vector<Segment> segment(std::string_view src);

}  // namespace nestedfp::chat::jinja::lex
