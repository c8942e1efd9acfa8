// Chat templates of real model families (written from memory in their published shape) rendered
// against outputs derived by hand, plus unit checks of the Jinja subset and its errors.
#include "chat/chat_template.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "chat/jinja.hpp"
#include "nestedfp/error.hpp"

using nestedfp::chat::render_chat;
using json = nlohmann::json;

namespace {

json msgs(std::initializer_list<std::pair<const char*, const char*>> rc) {
  json m = json::array();
  for (auto& [r, c] : rc) m.push_back({{"role", r}, {"content", c}});
  return m;
}

std::string jinja(const std::string& src, const json& vars = json::object()) {
  std::vector<std::pair<std::string, nestedfp::chat::jinja::Value>> g;
  for (auto it = vars.begin(); it != vars.end(); ++it)
    g.emplace_back(it.key(), nestedfp::chat::jinja::Value::from_json(it.value()));
  return nestedfp::chat::jinja::render(*nestedfp::chat::jinja::parse(src), g);
}

std::string error_of(const std::string& src, const json& vars = json::object()) {
  try {
    jinja(src, vars);
  } catch (const nestedfp::Error& e) {
    return e.what();
  }
  return "(no error)";
}

const char* kLlama3 =
    R"TPL({% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %})TPL";

const char* kLlama31 = R"TPL({{- bos_token }}
{%- if custom_tools is defined %}
    {%- set tools = custom_tools %}
{%- endif %}
{%- if not tools_in_user_message is defined %}
    {%- set tools_in_user_message = true %}
{%- endif %}
{%- if not date_string is defined %}
    {%- set date_string = "26 Jul 2024" %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}

{#- This block extracts the system message, so we can slot it into the right place. #}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}

{#- System message #}
{{- "<|start_header_id|>system<|end_header_id|>\n\n" }}
{%- if tools is not none %}
    {{- "Environment: ipython\n" }}
{%- endif %}
{{- "Cutting Knowledge Date: December 2023\n" }}
{{- "Today Date: " + date_string + "\n\n" }}
{{- system_message }}
{{- "<|eot_id|>" }}

{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' }}
    {%- elif 'tool_calls' in message %}
        {%- if not message.tool_calls|length == 1 %}
            {{- raise_exception("This model only supports single tool-calls at once!") }}
        {%- endif %}
        {%- set tool_call = message.tool_calls[0].function %}
        {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
        {{- '{"name": "' + tool_call.name + '", ' }}
        {{- '"parameters": ' }}
        {{- tool_call.arguments | tojson }}
        {{- "}" }}
        {{- "<|eot_id|>" }}
    {%- elif message.role == "tool" or message.role == "ipython" %}
        {{- "<|start_header_id|>ipython<|end_header_id|>\n\n" }}
        {%- if message.content is mapping or message.content is iterable %}
            {{- message.content | tojson }}
        {%- else %}
            {{- message.content }}
        {%- endif %}
        {{- "<|eot_id|>" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- endif %}
)TPL";

const char* kMistralV1 =
    R"TPL({{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %})TPL";

const char* kMistralV3 = R"TPL({%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content'] %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set loop_messages = messages %}
{%- endif %}

{{- bos_token }}
{%- for message in loop_messages %}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}
        {{- raise_exception('After the optional system message, conversation roles must alternate user/assistant/user/assistant/...') }}
    {%- endif %}
    {%- if message['role'] == 'user' %}
        {%- if loop.last and system_message is defined %}
            {{- '[INST] ' + system_message + '\n\n' + message['content'] + '[/INST]' }}
        {%- else %}
            {{- '[INST] ' + message['content'] + '[/INST]' }}
        {%- endif %}
    {%- elif message['role'] == 'assistant' %}
        {{- ' ' + message['content']|trim + eos_token}}
    {%- else %}
        {{- raise_exception('Only user and assistant roles are supported, with the exception of an initial optional system message!') }}
    {%- endif %}
{%- endfor %}
)TPL";

const char* kChatML =
    R"TPL({% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %})TPL";

const char* kQwen3 = R"TPL({%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0].role == 'system' %}
        {{- messages[0].content + '\n\n' }}
    {%- endif %}
    {{- "# Tools\n\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools><|im_end|>\n" }}
{%- else %}
    {%- if messages[0].role == 'system' %}
        {{- '<|im_start|>system\n' + messages[0].content + '<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}
{%- for message in messages[::-1] %}
    {%- set index = (messages|length - 1) - loop.index0 %}
    {%- if ns.multi_step_tool and message.role == "user" and message.content is string and not(message.content.startswith('<tool_response>') and message.content.endswith('</tool_response>')) %}
        {%- set ns.multi_step_tool = false %}
        {%- set ns.last_query_index = index %}
    {%- endif %}
{%- endfor %}
{%- for message in messages %}
    {%- if message.content is string %}
        {%- set content = message.content %}
    {%- else %}
        {%- set content = '' %}
    {%- endif %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) %}
        {{- '<|im_start|>' + message.role + '\n' + content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {%- set reasoning_content = '' %}
        {%- if message.reasoning_content is string %}
            {%- set reasoning_content = message.reasoning_content %}
        {%- else %}
            {%- if '</think>' in content %}
                {%- set reasoning_content = content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n') %}
                {%- set content = content.split('</think>')[-1].lstrip('\n') %}
            {%- endif %}
        {%- endif %}
        {%- if loop.index0 > ns.last_query_index %}
            {%- if loop.last or (not loop.last and reasoning_content) %}
                {{- '<|im_start|>' + message.role + '\n<think>\n' + reasoning_content.strip('\n') + '\n</think>\n\n' + content.lstrip('\n') }}
            {%- else %}
                {{- '<|im_start|>' + message.role + '\n' + content }}
            {%- endif %}
        {%- else %}
            {{- '<|im_start|>' + message.role + '\n' + content }}
        {%- endif %}
        {%- if message.tool_calls %}
            {%- for tool_call in message.tool_calls %}
                {%- if (loop.first and content) or (not loop.first) %}
                    {{- '\n' }}
                {%- endif %}
                {%- if tool_call.function %}
                    {%- set tool_call = tool_call.function %}
                {%- endif %}
                {{- '<tool_call>\n{"name": "' }}
                {{- tool_call.name }}
                {{- '", "arguments": ' }}
                {%- if tool_call.arguments is string %}
                    {{- tool_call.arguments }}
                {%- else %}
                    {{- tool_call.arguments | tojson }}
                {%- endif %}
                {{- '}\n</tool_call>' }}
            {%- endfor %}
        {%- endif %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if loop.first or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
    {%- if enable_thinking is defined and enable_thinking is false %}
        {{- '<think>\n\n</think>\n\n' }}
    {%- endif %}
{%- endif %}
)TPL";

const char* kPhi3 =
    R"TPL({% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\n' + message['content'] + '<|end|>\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\n' + message['content'] + '<|end|>\n'}}{% elif message['role'] == 'assistant' %}{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %})TPL";

// Phi-3 laid out over lines without '-': only trim_blocks/lstrip_blocks keep it compact.
const char* kPhi3Lines = R"TPL({% for message in messages %}
  {% if message['role'] == 'user' %}
<|user|>
{{ message['content'] }}<|end|>
  {% elif message['role'] == 'assistant' %}
<|assistant|>
{{ message['content'] }}<|end|>
  {% endif %}
{% endfor %}
{% if add_generation_prompt %}
<|assistant|>
{% endif %}
)TPL";

}  // namespace

TEST(ChatTemplate, Llama3) {
  auto out = render_chat(kLlama3, msgs({{"system", "You are helpful."}, {"user", " Hi "}}), true,
                         "<|begin_of_text|>", "<|end_of_text|>");
  EXPECT_EQ(
      out,
      "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are helpful.<|eot_id|>"
      "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
      "<|start_header_id|>assistant<|end_header_id|>\n\n");
  auto no_gen = render_chat(kLlama3, msgs({{"user", "x"}}), false, "<B>", "<E>");
  EXPECT_EQ(no_gen, "<B><|start_header_id|>user<|end_header_id|>\n\nx<|eot_id|>");
}

TEST(ChatTemplate, Llama31WithToolCall) {
  json m = msgs({{"system", "You are a bot.  "}, {"user", "What's the weather in Paris?"}});
  m.push_back({{"role", "assistant"},
               {"content", nullptr},
               {"tool_calls",
                {{{"type", "function"},
                  {"function",
                   {{"name", "get_weather"},
                    {"arguments", {{"location", "Paris"}, {"unit", "celsius"}}}}}}}}});
  m.push_back({{"role", "tool"}, {"content", "22C"}});
  auto out = render_chat(kLlama31, m, true, "<|begin_of_text|>", "<|eot_id|>");
  EXPECT_EQ(out,
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
            "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n"
            "You are a bot.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nWhat's the weather in Paris?<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n"
            "{\"name\": \"get_weather\", \"parameters\": {\"location\": \"Paris\", \"unit\": "
            "\"celsius\"}}<|eot_id|>"
            "<|start_header_id|>ipython<|end_header_id|>\n\n\"22C\"<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  // Two tool calls trip the template's raise_exception.
  m[2]["tool_calls"].push_back(m[2]["tool_calls"][0]);
  try {
    render_chat(kLlama31, m, true, "", "");
    FAIL() << "expected an error";
  } catch (const nestedfp::Error& e) {
    EXPECT_NE(std::string(e.what()).find("only supports single tool-calls"), std::string::npos)
        << e.what();
  }
}

TEST(ChatTemplate, MistralInstruct) {
  auto out = render_chat(
      kMistralV1, msgs({{"user", "Hello"}, {"assistant", "Hi there"}, {"user", "How are you?"}}),
      true, "<s>", "</s>");
  EXPECT_EQ(out, "<s>[INST] Hello [/INST]Hi there</s>[INST] How are you? [/INST]");
  try {
    render_chat(kMistralV1, msgs({{"user", "a"}, {"user", "b"}}), true, "<s>", "</s>");
    FAIL() << "expected an error";
  } catch (const nestedfp::Error& e) {
    std::string w = e.what();
    EXPECT_NE(w.find("Conversation roles must alternate"), std::string::npos) << w;
    EXPECT_NE(w.find("line 1, column"), std::string::npos) << w;
  }
}

TEST(ChatTemplate, MistralV3SystemAndWhitespaceControl) {
  auto out = render_chat(
      kMistralV3,
      msgs({{"system", "Be terse."}, {"user", "A"}, {"assistant", " B "}, {"user", "C"}}), true,
      "<s>", "</s>");
  EXPECT_EQ(out, "<s>[INST] A[/INST] B</s>[INST] Be terse.\n\nC[/INST]");
  EXPECT_EQ(render_chat(kMistralV3, msgs({{"user", "only"}}), true, "<s>", "</s>"),
            "<s>[INST] only[/INST]");
}

TEST(ChatTemplate, ChatML) {
  EXPECT_EQ(
      render_chat(kChatML, msgs({{"user", "Hi"}}), true, "", "<|im_end|>"),
      "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
      "<|im_start|>assistant\n");
  EXPECT_EQ(render_chat(kChatML, msgs({{"system", "S"}, {"user", "U"}}), false, "", ""),
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n");
}

TEST(ChatTemplate, Qwen3ThinkingHistory) {
  auto out = render_chat(kQwen3,
                         msgs({{"user", "Q1"},
                               {"assistant", "<think>\nreasoning here\n</think>\n\nA1"},
                               {"user", "Q2"}}),
                         true, "", "<|im_end|>");
  EXPECT_EQ(out,
            "<|im_start|>user\nQ1<|im_end|>\n<|im_start|>assistant\nA1<|im_end|>\n"
            "<|im_start|>user\nQ2<|im_end|>\n<|im_start|>assistant\n");
  auto last =
      render_chat(kQwen3, msgs({{"user", "Q"}, {"assistant", "<think>r</think>A"}}), false, "", "");
  EXPECT_EQ(last,
            "<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n<think>\nr\n</"
            "think>\n\nA<|im_end|>\n");
}

TEST(ChatTemplate, Qwen3ToolCallsAndResponses) {
  json m = msgs({{"system", "S"}, {"user", "Q"}});
  m.push_back({{"role", "assistant"},
               {"content", ""},
               {"tool_calls", {{{"function", {{"name", "f"}, {"arguments", {{"x", 1}}}}}}}}});
  m.push_back({{"role", "tool"}, {"content", "out1"}});
  m.push_back({{"role", "tool"}, {"content", "out2"}});
  auto out = render_chat(kQwen3, m, true, "", "");
  EXPECT_EQ(out,
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nQ<|im_end|>\n"
            "<|im_start|>assistant\n<tool_call>\n{\"name\": \"f\", \"arguments\": {\"x\": "
            "1}}\n</tool_call><|im_end|>\n"
            "<|im_start|>user\n<tool_response>\nout1\n</tool_response>\n<tool_response>\nout2\n</"
            "tool_response><|im_end|>\n"
            "<|im_start|>assistant\n");
}

TEST(ChatTemplate, Phi3) {
  EXPECT_EQ(render_chat(kPhi3, msgs({{"system", "S"}, {"user", "U"}, {"assistant", "A"}}), false,
                        "<s>", "<|endoftext|>"),
            "<|system|>\nS<|end|>\n<|user|>\nU<|end|>\n<|assistant|>\nA<|end|>\n<|endoftext|>");
  EXPECT_EQ(render_chat(kPhi3Lines, msgs({{"user", "U"}, {"assistant", "A"}}), true, "", ""),
            "<|user|>\nU<|end|>\n<|assistant|>\nA<|end|>\n<|assistant|>\n");
}

TEST(ChatTemplate, ContentPartsAreFlattened) {
  json m = json::array(
      {{{"role", "user"},
        {"content", {{{"type", "text"}, {"text", "a"}}, {{"type", "text"}, {"text", "b"}}}}}});
  EXPECT_EQ(render_chat(kChatML, m, false, "", ""),
            "<|im_start|>system\nYou are a helpful "
            "assistant.<|im_end|>\n<|im_start|>user\na\nb<|im_end|>\n");
  json bad = json::array({{{"role", "user"}, {"content", {{{"type", "image_url"}}}}}});
  EXPECT_THROW(render_chat(kChatML, bad, false, "", ""), nestedfp::Error);
  EXPECT_THROW(render_chat(kChatML, json::object(), false, "", ""), nestedfp::Error);
  EXPECT_THROW(render_chat(kChatML, json::array({{{"content", "x"}}}), false, "", ""),
               nestedfp::Error);
}

TEST(ChatTemplate, DefaultPrompt) {
  EXPECT_EQ(nestedfp::chat::default_chat_prompt(msgs({{"system", "Be brief."}, {"user", "Hi"}})),
            "System: Be brief.\n\nUser: Hi\n\nAssistant:");
  EXPECT_EQ(nestedfp::chat::default_chat_prompt(
                msgs({{"user", "1+1?"}, {"assistant", "2"}, {"user", "2+2?"}})),
            "User: 1+1?\n\nAssistant: 2\n\nUser: 2+2?\n\nAssistant:");
}

TEST(Jinja, ExpressionsAndFilters) {
  EXPECT_EQ(jinja("{{ 'a' ~ 1 ~ none }}"), "a1None");
  EXPECT_EQ(jinja("{{ [1,2,3][::-1] }}|{{ [1,2,3][1:] }}|{{ 'hello'[1:3] }}|{{ 'hello'[-1] }}"),
            "[3, 2, 1]|[2, 3]|el|o");
  EXPECT_EQ(jinja("{{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 10 ** 2 }} {{ 2 * 3 + 1 "
                  "}} {{ (1 + 2) * 3 }}"),
            "3 -4 2 3.5 100 7 9");
  EXPECT_EQ(jinja("{{ 1.5 + 1 }} {{ 1.0 }} {{ 0.1 }}"), "2.5 1.0 0.1");
  EXPECT_EQ(jinja("{{ 'yes' if 2 in [1,2] else 'no' }}{{ 'x' not in 'abc' }}{{ 1 if false }}"),
            "yesTrue");
  EXPECT_EQ(jinja("{{ foo is defined }}{{ none is none }}{{ 'a' is string }}{{ 3 is odd }}{{ 4 is "
                  "divisibleby 2 }}"),
            "FalseTrueTrueTrueTrue");
  EXPECT_EQ(jinja("{{ not true or true }}{{ not (true or true) }}{{ 1 < 2 and 'b' > 'a' }}"),
            "TrueFalseTrue");
  EXPECT_EQ(jinja(R"({{ {'b': 1, 'a': [true, none, 'q"\n', 1.5]}|tojson }})"),
            R"({"b": 1, "a": [true, null, "q\"\n", 1.5]})");
  EXPECT_EQ(jinja("{{ {'a': [1]}|tojson(indent=2) }}"), "{\n  \"a\": [\n    1\n  ]\n}");
  EXPECT_EQ(jinja("{{ ['a','b']|join(', ')|upper }}|{{ '  x  '|trim|length }}|{{ "
                  "'abc'|replace('b', 'X') }}"),
            "A, B|1|aXc");
  EXPECT_EQ(jinja("{{ 'a,b,,c'.split(',') }}{{ '  a  b '.split() }}{{ 'a b c'.split(' ', 1) }}"),
            "['a', 'b', '', 'c']['a', 'b']['a', 'b c']");
  EXPECT_EQ(
      jinja("{{ undefined_var|default('d') }}{{ ''|default('e', true) }}{{ 'v'|default('f') }}"),
      "dev");
  EXPECT_EQ(jinja("{{ 'Hello'.startswith('He') and 'Hello'.endswith(('x', 'lo')) }}{{ "
                  "'xxhixx'.strip('x') }}"),
            "Truehi");
  EXPECT_EQ(jinja("{{ [3,1,2]|sort|first }}{{ [3,1,2]|last }}{{ [3,1,2]|max }}{{ [1,2]|sum }}"),
            "1233");
  EXPECT_EQ(jinja("{{ 'héllo'|length }}{{ 'héllo'[1] }}{{ 'héllo'[::-1] }}"), "5éolléh");
  EXPECT_EQ(jinja("{{ 'Hi'|lower }}{{ 'hi there'|title }}{{ '\\u00e9' }}"), "hiHi Thereé");
  EXPECT_EQ(
      jinja("{{ x.a }}{{ x['b'] }}{{ x.get('c', 9) }}{{ x.missing is defined }}{{ x.keys()|list }}",
            {{"x", {{"a", 1}, {"b", 2}}}}),
      "129False['a', 'b']");
  EXPECT_EQ(
      jinja("{{ m|selectattr('role', 'equalto', 'user')|map(attribute='content')|join('|') }}",
            {{"m", msgs({{"user", "u1"}, {"assistant", "a"}, {"user", "u2"}})}}),
      "u1|u2");
  EXPECT_EQ(jinja("{{ ['a', 'B']|map('upper')|list }}{{ [0, 1, 2]|select('odd')|list }}{{ [1, "
                  "none]|reject('none')|list }}"),
            "['A', 'B'][1][1]");
}

TEST(Jinja, Statements) {
  EXPECT_EQ(jinja("{% for x in [1,2,3] %}{{ loop.index }}/{{ loop.length }}{% if not loop.last "
                  "%},{% endif %}{% endfor %}"),
            "1/3,2/3,3/3");
  EXPECT_EQ(jinja("{% for x in 'ab' %}{{ loop.index0 }}{{ x }}{{ loop.revindex }}{% endfor %}"),
            "0a21b1");
  EXPECT_EQ(jinja("{% set ns = namespace(n=0) %}{% for x in range(5) %}{% set ns.n = ns.n + x %}{% "
                  "endfor %}{{ ns.n }}"),
            "10");
  // A plain set inside a loop does not leak out of it (the reason templates use namespace()).
  EXPECT_EQ(jinja("{% set n = 0 %}{% for x in range(3) %}{% set n = n + 1 %}{% endfor %}{{ n }}"),
            "0");
  EXPECT_EQ(jinja("{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }};{% endfor %}"),
            "a=1;b=2;");
  EXPECT_EQ(jinja("{% macro tag(x, y='!') %}<{{ x }}{{ y }}>{% endmacro %}{{ tag('a') }}{{ "
                  "tag('b', y='?') }}"),
            "<a!><b?>");
  EXPECT_EQ(jinja("{% for x in range(10) %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 4 "
                  "%}{% break %}{% endif %}{{ x }}{% endfor %}"),
            "013");
  EXPECT_EQ(jinja("{% for x in [1,2,3,4] if x is even %}{{ x }}{% else %}none{% endfor %}{% for x "
                  "in [] %}{% else %}empty{% endfor %}"),
            "24empty");
  EXPECT_EQ(jinja("{% set a, b = 1, 2 %}{{ a + b }}{% set x %}in{{ 1 }}{% endset %}[{{ x }}]"),
            "3[in1]");
  EXPECT_EQ(jinja("{% if false %}a{% elif 0 %}b{% elif [1] %}c{% else %}d{% endif %}"), "c");
  EXPECT_EQ(jinja("{% raw %}{{ x }}{% endraw %}a{# comment #}b"), "{{ x }}ab");
}

TEST(Jinja, WhitespaceControl) {
  EXPECT_EQ(jinja("a  {%- if true -%}  b  {%- endif -%}  c"), "abc");
  EXPECT_EQ(jinja("a\n  {{- 'x' -}}  \nb"), "axb");
  // trim_blocks + lstrip_blocks: a block tag alone on its line leaves no trace.
  EXPECT_EQ(jinja("  {% if true %}\nX\n  {% endif %}\nY"), "X\nY");
  // ...but expression tags keep their surroundings, and {%+ disables lstrip.
  EXPECT_EQ(jinja("  {{ 'v' }}\n"), "  v\n");
  EXPECT_EQ(jinja("  {%+ if true %}x{% endif %}"), "  x");
  EXPECT_EQ(jinja("a {# note #}\nb"), "a b");
}

TEST(Jinja, ErrorsNamePosition) {
  auto has = [](const std::string& w, const std::string& part) {
    return w.find(part) != std::string::npos;
  };
  std::string e = error_of("{{ x|frobnicate }}");
  EXPECT_TRUE(has(e, "unknown filter 'frobnicate'") && has(e, "line 1, column 6")) << e;
  e = error_of("{% include 'x' %}");
  EXPECT_TRUE(has(e, "unsupported tag 'include'")) << e;
  e = error_of("{% if true %}x");
  EXPECT_TRUE(has(e, "unexpected end of template") && has(e, "{% endif %}")) << e;
  e = error_of("a\n{{ 1 + }}");
  EXPECT_TRUE(has(e, "line 2, column 8")) << e;
  e = error_of("{{ 'x' is frob }}");
  EXPECT_TRUE(has(e, "unknown test 'frob'")) << e;
  e = error_of("{{ 'unterminated }}");
  EXPECT_TRUE(has(e, "unterminated string")) << e;
  e = error_of("\n\n  {{ x + 1 }}");
  EXPECT_TRUE(has(e, "'x' is undefined") && has(e, "line 3, column 6")) << e;
  e = error_of("{{ x.y }}");
  EXPECT_TRUE(has(e, "'x' is undefined")) << e;
  e = error_of("{{ 'a' + 1 }}");
  EXPECT_TRUE(has(e, "unsupported operand types for +: 'string' and 'int'")) << e;
  e = error_of("{% set d = {} %}{% set d.x = 1 %}");
  EXPECT_TRUE(has(e, "namespace")) << e;
  e = error_of("{{ raise_exception('bad roles') }}");
  EXPECT_TRUE(has(e, "raise_exception: bad roles") && has(e, "line 1")) << e;
  e = error_of("{% endif %}");
  EXPECT_TRUE(has(e, "without a matching opening tag")) << e;
  e = error_of("{{ 'abc'.nosuchmethod() }}");
  EXPECT_TRUE(has(e, "has no attribute 'nosuchmethod'")) << e;
  // Printing an undefined value is allowed (renders empty), as in Jinja.
  EXPECT_EQ(jinja("[{{ nothing }}]"), "[]");
}
