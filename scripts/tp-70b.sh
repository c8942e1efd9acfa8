#!/usr/bin/env bash
# The 4-GPU experiment of the NestedFP paper on this engine (docs/DESIGN.md §3.14): Llama-3.1-70B
# (bench/configs/llama-3.1-70b, dummy weights) at tensor-parallel size 4, --max-num-batched-tokens
# 2048. Run on an nvidia-h200-x4 machine from the repository root after scripts/gpu-check.sh has
# built build/cuda (or with BUILD=1 to build nestedfp here first).
#   1. `bench engine`: decode step time per batch for plain FP16, NestedFP16, NestedFP8 against the
#      per-GPU floor (decoder weights / 4 + the replicated lm_head, at the measured copy bandwidth),
#      with the default one-GPU FP8 numerics, then NestedFP8 alone with --tp-fp8-numerics per-rank
#      (their cost: engine-tp4.* against engine-tp4-per-rank.*);
#   2. scripts/e2e-experiment.sh with the 70B model at TP 4: Azure conv/code trace replays under
#      the fp16, fp8, dynamic and slo policies and the throughput grid (its E2E_* knobs apply).
# Knobs: OUT (default build/tp-70b), TP (4), PARTS ("bench e2e": run them as two commands where a
#   command may take at most 10 minutes), E2E_DEADLINE_S (420),
#   ENGINE_BENCH_ARGS ("--batch 1,8,64 --context 1024 --offline-requests 500").
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-build/tp-70b}
TP=${TP:-4}
BIN=build/cuda/nestedfp
CONFIG=bench/configs/llama-3.1-70b
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
PARTS=${PARTS:-bench e2e}
if [[ " $PARTS " == *" bench "* ]]; then
t0=$(date +%s)
# shellcheck disable=SC2086
"$BIN" bench engine "$CONFIG" --device cuda --tensor-parallel-size "$TP" --max-num-batched-tokens 2048 \
  --out "$OUT" ${ENGINE_BENCH_ARGS:---batch 1,8,64 --context 1024 --offline-requests 500} \
  > "$OUT/bench-engine-stdout.txt" \
  2> "$OUT/bench-engine.log" || { tail -20 "$OUT/bench-engine.log"; status=1; }
note "bench engine exit $status in $(( $(date +%s) - t0 )) s"
cat "$OUT/bench-engine-stdout.txt"
# shellcheck disable=SC2086
"$BIN" bench engine "$CONFIG" --device cuda --tensor-parallel-size "$TP" --max-num-batched-tokens 2048 \
  --tp-fp8-numerics per-rank --weights-list nested --out "$OUT" \
  ${ENGINE_BENCH_ARGS:---batch 1,8,64 --context 1024 --offline-requests 500} \
  > "$OUT/bench-engine-per-rank-stdout.txt" 2> "$OUT/bench-engine-per-rank.log" \
  || { tail -20 "$OUT/bench-engine-per-rank.log"; status=1; }
fi
[[ " $PARTS " == *" e2e "* ]] || exit $status

# ---- 2. trace replays per policy (scripts/e2e-experiment.sh at TP 4) -------------------------------
# serve needs a tokenizer beside config.json; the replays send token-id prompts, so pystd-16m's
# tokenizer (ids < 8192 of the 128256) only names the model and decodes the text it returns.
model=$(mktemp -d /tmp/llama-3.1-70b.XXXX)
cp "$CONFIG/config.json" models/pystd-16m/tokenizer.json models/pystd-16m/tokenizer_config.json "$model/"
# fp16, fp8, dynamic and slo on one nested server, the throughput grid on a plain FP16 one; the
# report (<date>-e2e.md/.json/.png) lands in $OUT/e2e/results/.
MODEL=$model SERVE_ARGS="--tensor-parallel-size $TP" OUT=$OUT/e2e \
  E2E_TITLE="Llama-3.1-70B config, dummy weights, TP $TP over $TP H200" \
  E2E_DEADLINE_S=${E2E_DEADLINE_S:-420} bash scripts/e2e-experiment.sh || status=1
rm -rf "$model"
exit $status
