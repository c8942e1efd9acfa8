#!/usr/bin/env bash
# Starts `nestedfp serve` on a model in the background, waits for /health, sends one completion
# with curl, prints it and stops the server.
#   bash scripts/demo.sh [MODEL_DIR] [PROMPT]
# Environment: NESTEDFP (the binary; default: build it with scripts/build.sh), PORT (default 8137),
# PRECISION (default dynamic).
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-models/pystd-16m}
prompt=${2:-"def fibonacci(n):"}
port=${PORT:-8137}
bin=${NESTEDFP:-$(bash scripts/build.sh)}
log=$(mktemp)

"$bin" serve "$model" --port "$port" --precision "${PRECISION:-dynamic}" >"$log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -f "$log"' EXIT

for _ in $(seq 1 300); do
  curl -sf "http://127.0.0.1:$port/health" >/dev/null && break
  kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; echo "demo: the server exited" >&2; exit 1; }
  sleep 0.1
done
curl -sf "http://127.0.0.1:$port/health" >/dev/null || { cat "$log" >&2; echo "demo: no /health after 30 s" >&2; exit 1; }

body=$(python3 -c 'import json,sys; print(json.dumps({"prompt": sys.argv[1], "max_tokens": 64, "temperature": 0}))' "$prompt")
reply=$(curl -sS "http://127.0.0.1:$port/v1/completions" -H 'Content-Type: application/json' -d "$body")
echo "POST /v1/completions $body"
python3 -c '
import json, sys
r = json.loads(sys.argv[1])
if "error" in r: sys.exit("demo: " + r["error"]["message"])
print("--- completion (%s, %d prompt + %d generated tokens) ---" % (r["model"], r["usage"]["prompt_tokens"], r["usage"]["completion_tokens"]))
print(sys.argv[2] + r["choices"][0]["text"])
' "$reply" "$prompt"
