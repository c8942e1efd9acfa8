#!/usr/bin/env bash
# The 4-GPU experiment of the NestedFP paper on this engine (docs/DESIGN.md §3.12): Llama-3.1-70B
# (bench/configs/llama-3.1-70b, dummy weights) at tensor-parallel size 4, --max-num-batched-tokens
# 2048. Run on an nvidia-h200-x4 machine from the repository root after scripts/gpu-check.sh has
# built build/cuda (or with BUILD=1 to build nestedfp here first).
#   1. `bench engine`: decode step time per batch for plain FP16, NestedFP16, NestedFP8 against the
#      per-GPU floor (decoder weights / 4 + the replicated lm_head, at the measured copy bandwidth);
#   2. the Azure conv trace replayed against `nestedfp serve` under each precision policy
#      (fp16, fp8, dynamic). The paper's SLO-driven policy is not built (DESIGN §3.8): skipped.
# Knobs: OUT (default build/tp-70b), TP (4), TRACE (.carry/azure_llm_2023_conv.csv or ../shared),
#   DURATION (trace window, s; 120), TIME_SCALE (1), POLICIES ("fp16 fp8 dynamic"),
#   ENGINE_BENCH_ARGS ("--batch 1,8,64 --context 1024 --offline-requests 500").
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-build/tp-70b}
TP=${TP:-4}
BIN=build/cuda/nestedfp
CONFIG=bench/configs/llama-3.1-70b
TRACE=${TRACE:-.carry/azure_llm_2023_conv.csv}
[ -f "$TRACE" ] || TRACE=../shared/data/traces/azure_llm_2023_conv.csv
mkdir -p "$OUT"
status=0
note() { echo "tp-70b: $*" >&2; }

if [ -n "${BUILD:-}" ]; then
  cmake --preset cuda > "$OUT/build.log" 2>&1 && cmake --build build/cuda -j 16 --target nestedfp >> "$OUT/build.log" 2>&1 \
    || { tail -30 "$OUT/build.log"; note "build failed"; exit 1; }
fi
[ -x "$BIN" ] || { note "$BIN missing: run scripts/gpu-check.sh first, or BUILD=1"; exit 1; }
ngpu=$(nvidia-smi -L 2>/dev/null | wc -l)
[ "$ngpu" -ge "$TP" ] || { note "needs $TP GPUs, found $ngpu"; exit 1; }
{ nvidia-smi; nvidia-smi topo -m; } > "$OUT/env.txt" 2>&1
[ -f .carry/git-commit ] && export NESTEDFP_GIT_COMMIT=$(cat .carry/git-commit)

# ---- 1. decode step time against the floor ---------------------------------------------------------
t0=$(date +%s)
# shellcheck disable=SC2086
"$BIN" bench engine "$CONFIG" --device cuda --tensor-parallel-size "$TP" --max-num-batched-tokens 2048 \
  --out "$OUT" ${ENGINE_BENCH_ARGS:---batch 1,8,64 --context 1024 --offline-requests 500} \
  > "$OUT/bench-engine-stdout.txt" \
  2> "$OUT/bench-engine.log" || { tail -20 "$OUT/bench-engine.log"; status=1; }
note "bench engine exit $status in $(( $(date +%s) - t0 )) s"
cat "$OUT/bench-engine-stdout.txt"

# ---- 2. trace replay per policy --------------------------------------------------------------------
# serve needs a tokenizer beside config.json; bench serve sends token-id prompts, so pystd-16m's
# tokenizer (ids < 8192 of the 128256) only names the model and decodes the text it returns.
model=$(mktemp -d /tmp/llama-3.1-70b.XXXX)
cp "$CONFIG/config.json" models/pystd-16m/tokenizer.json models/pystd-16m/tokenizer_config.json "$model/"
port=18123
for policy in ${POLICIES:-fp16 fp8 dynamic}; do
  log="$OUT/serve-$policy.log"
  "$BIN" serve "$model" --load-format dummy --device cuda --tensor-parallel-size "$TP" \
    --max-num-batched-tokens 2048 --precision "$policy" --port $port > "$log" 2>&1 &
  pid=$!
  ok=0
  for _ in $(seq 1 600); do  # dummy 70B weights load in well under 10 minutes
    curl -sf "http://127.0.0.1:$port/health" > /dev/null && { ok=1; break; }
    kill -0 $pid 2> /dev/null || break
    sleep 1
  done
  if [ $ok = 1 ]; then
    "$BIN" bench serve --url "http://127.0.0.1:$port" --mode trace --trace "$TRACE" \
      --duration "${DURATION:-120}" --time-scale "${TIME_SCALE:-1}" --middle-ratio 0.8 \
      --token-range 100:8000 --ignore-eos --out "$OUT/trace-$policy" > "$OUT/trace-$policy.txt" 2>&1 \
      || { note "bench serve ($policy) failed"; status=1; }
    tail -25 "$OUT/trace-$policy.txt"
  else
    note "serve ($policy) did not come up: $(tail -3 "$log")"; status=1
  fi
  kill $pid 2> /dev/null; wait $pid 2> /dev/null
done
note "slo policy: not built (docs/DESIGN.md §3.8), skipped"
rm -rf "$model"
exit $status
