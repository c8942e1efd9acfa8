#!/usr/bin/env bash
# End-to-end over real HTTP on loopback with the bundled model: the official openai client, then
# `nestedfp bench serve` replaying a short slice of the Azure conv trace (table, JSON, PNG plots).
#   tests/e2e/serve_e2e.sh NESTEDFP_BINARY
set -euo pipefail
bin=$(realpath "$1")
root=$(cd "$(dirname "$0")/../.." && pwd)
py=$root/.deps/venv/bin/python3
# NESTEDFP_TRACE: the trace elsewhere; SERVE_E2E_NO_OPENAI=1: curl instead of the openai client
# (a GPU machine without the venv); SERVE_E2E_ARGS: more `serve` options (e.g. --device cuda).
trace=${NESTEDFP_TRACE:-$root/../shared/data/traces/azure_llm_2023_conv.csv}
if [ -n "${SERVE_E2E_NO_OPENAI:-}" ]; then py=python3; fi
[ -x "$py" ] || command -v "$py" >/dev/null || { echo "serve_e2e: $py missing: run scripts/setup.sh" >&2; exit 1; }
[ -f "$trace" ] || { echo "serve_e2e: $trace missing (../shared beside the checkout)" >&2; exit 1; }
# A bad --max-connections is refused with its range before anything listens (0 is the default:
# up to 4096 as the open-file limit allows; a negative value must not fall back to it silently).
if bad=$(timeout 20 "$bin" serve "$root/models/pystd-16m" --port 0 --max-connections -5 2>&1); then
  echo "serve_e2e: --max-connections -5 was accepted" >&2; exit 1
fi
echo "$bad" | grep -q "max-connections must be between 2 and" ||
  { echo "serve_e2e: --max-connections -5 failed without the range: $bad" >&2; exit 1; }
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin" serve "$root/models/pystd-16m" --port "$port" --precision dynamic:threshold=64 \
  --max-num-batched-tokens 256 ${SERVE_E2E_ARGS:-} >"$work/server.log" 2>&1 &
pid=$!
cleanup() { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
for _ in $(seq 1 300); do
  curl -sf "http://127.0.0.1:$port/health" >/dev/null && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/server.log"; echo "serve_e2e: server exited" >&2; exit 1; }
  sleep 0.1
done

if [ -z "${SERVE_E2E_NO_OPENAI:-}" ]; then
  "$py" "$root/tests/e2e/openai_client_check.py" "http://127.0.0.1:$port"
else
  out=$(curl -sf "http://127.0.0.1:$port/v1/completions" -H 'Content-Type: application/json' \
    -d '{"model": "pystd-16m", "prompt": "def add(a, b):", "max_tokens": 16, "temperature": 0}')
  echo "$out" | grep -q '"text"' || { echo "serve_e2e: no completion: $out" >&2; exit 1; }
  echo "serve_e2e: completion: $out"
  grep -i "backend\|cuda" "$work/server.log" | head -3 || true
fi

"$bin" bench serve --url "http://127.0.0.1:$port" --mode trace --trace "$trace" --duration 30 \
  --time-scale 4 --num-requests 24 --middle-ratio 0.8 --max-input-len 256 --max-output-len 24 \
  --out "$work/bench" | tee "$work/bench.txt"
for f in bench_serve_trace.json latency_over_time.png precision_share.png; do
  [ -s "$work/bench/$f" ] || { ls -la "$work/bench"; echo "serve_e2e: $f not written" >&2; exit 1; }
done
head -c 8 "$work/bench/latency_over_time.png" | od -An -c | grep -q 'P   N   G' || { echo "serve_e2e: not a PNG" >&2; exit 1; }
"$py" - "$work/bench/bench_serve_trace.json" 24 <<'PY'
# The trace replay sent exactly N requests and every one completed: counts, not just field names.
import json, sys
j = json.load(open(sys.argv[1]))
n = int(sys.argv[2])
runs = j["runs"]
assert len(runs) == 1, f"expected one trace run, got {len(runs)}"
reqs, s = runs[0]["requests"], runs[0]["summary"]
assert len(reqs) == n, f"{len(reqs)} request records, expected {n}"
bad = [r for r in reqs if not r["ok"]]
assert not bad, f"{len(bad)} requests failed, first: {bad[0].get('error')}"
assert all(0 < r["output_tokens"] <= r["max_tokens"] for r in reqs), "a request has no or too many output tokens"
assert all(r["ttft_ms"] > 0 and r["e2e_ms"] >= r["ttft_ms"] for r in reqs), "a request has impossible latencies"
# The summary covers the middle 80% of the run: completed == requests, none failed.
assert s["failed"] == 0 and not s["errors"], f"summary: failed={s['failed']} errors={s['errors']}"
assert 0 < s["completed"] == s["requests"] <= n, f"summary: completed={s['completed']} of {s['requests']}"
assert s["ttft_ms"]["n"] == s["completed"], "TTFT samples != completed requests"
assert s["tpot_ms"]["n"] > 0 and s["tpot_ms"]["mean"] > 0, "no TPOT samples"
assert s["output_tokens"] > 0, "summary counts no output tokens"
PY
grep -qi "ttft" "$work/bench.txt" || { echo "serve_e2e: no table printed" >&2; exit 1; }

# The slo policy at run time: canonical spec back, then its decisions and the latency model in
# /metrics after one light request (FP16, nothing to save: reason "none").
r=$(curl -sf -X POST "http://127.0.0.1:$port/admin/precision" -H 'Content-Type: application/json' \
  -d '{"precision": "slo:ttft=5000"}')
echo "$r" | grep -q '"slo:ttft=5000,tpot=0,hysteresis=0.2,gain=0.05,forecast=1,hold=0.8"' || { echo "serve_e2e: slo policy not set: $r" >&2; exit 1; }
curl -sf "http://127.0.0.1:$port/v1/completions" -H 'Content-Type: application/json' \
  -d '{"model": "pystd-16m", "prompt": "x = 1", "max_tokens": 4, "temperature": 0}' >/dev/null
m=$(curl -sf "http://127.0.0.1:$port/metrics")
echo "$m" | grep -Eq '^nestedfp_slo_decisions_total\{precision="fp16",reason="none"\} [1-9]' \
  || { echo "$m" | grep nestedfp_slo >&2; echo "serve_e2e: no slo decisions in /metrics" >&2; exit 1; }
echo "$m" | grep -Eq '^nestedfp_latency_model_coefficient\{precision="fp8",term="b"\} ' \
  || { echo "serve_e2e: no latency model in /metrics" >&2; exit 1; }
echo "serve_e2e: ok"
