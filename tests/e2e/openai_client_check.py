"""The official `openai` client (pinned in scripts/setup.sh) against a running `nestedfp serve`:
list models, complete, stream, chat (plain and streamed), logprobs, and an error mapped to 400."""
import sys

import openai

base_url = sys.argv[1]
client = openai.OpenAI(base_url=base_url + "/v1", api_key="unused")

models = client.models.list()
model = models.data[0].id
assert model, "no model listed"

c = client.completions.create(model=model, prompt="def add(a, b):", max_tokens=12, temperature=0, seed=1)
text = c.choices[0].text
assert c.usage.completion_tokens > 0 and text, f"empty completion: {c}"

# The same greedy request streamed must give the same text.
chunks = client.completions.create(model=model, prompt="def add(a, b):", max_tokens=12, temperature=0,
                                   seed=1, stream=True)
streamed = "".join(ch.choices[0].text for ch in chunks if ch.choices)
assert streamed == text, f"stream {streamed!r} != {text!r}"

lp = client.completions.create(model=model, prompt="import os\n", max_tokens=4, temperature=0, logprobs=3)
lps = lp.choices[0].logprobs
assert len(lps.tokens) == len(lps.token_logprobs) > 0 and all(v <= 0 for v in lps.token_logprobs)
assert all(len(alt) >= 1 for alt in lps.top_logprobs)

chat = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "print hello"}],
                                      max_tokens=8, temperature=0)
assert chat.choices[0].message.role == "assistant" and chat.usage.completion_tokens > 0

parts = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "x = 1"}],
                                       max_tokens=8, temperature=0.7, seed=3, stream=True)
assert sum(1 for p in parts if p.choices and p.choices[0].delta.content) > 0

try:
    client.completions.create(model=model, prompt="x", max_tokens=-5)
    raise AssertionError("max_tokens=-5 was accepted")
except openai.BadRequestError as e:
    assert e.status_code == 400

print(f"openai {openai.__version__}: models, completion, stream, logprobs, chat, chat stream, 400: ok")
