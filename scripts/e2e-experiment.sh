#!/usr/bin/env bash
# End-to-end experiment (issue 16, docs/MEASURING.md §5.6): precision policies fp16, fp8, dynamic
# (threshold 1024 of a 2048 budget) and slo under Azure trace replays at rising load, plus a closed
# loop throughput grid for plain FP16, NestedFP16 and NestedFP8; then `nestedfp bench e2e-report`
# writes <date>-e2e.{md,json,png} and -throughput.png with the goals met or not.
#
# On the H200, after the build (e.g. `SKIP_TESTS=1 SKIP_BENCH=1 NESTEDFP_CUDA_KERNEL_SET=default
# bash scripts/gpu-check.sh`): `bash scripts/e2e-experiment.sh`. Takes ~11 minutes (detach it): it
# prints an estimate first. One nested server serves every policy (POST /admin/precision, no
# reload); a second, plain FP16 server (--weights fp16) serves its throughput grid.
#
# Knobs (environment):
#   OUT=build/e2e           where runs, server logs and the report go (report: $OUT/results/)
#   E2E_SMALL=1             the cpu backend with models/pystd-16m, tiny sizes (a ~1 minute check)
#   E2E_SHRINK=F            multiply every replay duration by F (e.g. 0.5) to save time; past
#                           capacity attainment rises with shorter windows (less queue builds up),
#                           so compare runs only at the same F
#   E2E_SCALES="1 4 6 8 12" conv-trace time scales, light load to past FP16 saturation (on the
#                           H200 FP16 met 99.4% at x4, 71% at x6, 7% at x8; FP8-only 54% at x8,
#                           1.3% at x12: 2026-12-02-e2e-complete.md)
#   E2E_REPLAY_S=14         seconds of replay per run (the trace window is scale x this)
#   E2E_CODE=1              also replay the code trace (bursty) at E2E_CODE_SCALE, one window
#   E2E_GRID=1              the throughput grid (E2E_IN, E2E_OUT, E2E_CONC, E2E_PROMPTS=32 per cell:
#                           at 16 a cell lasted 0.2-7 s on the H200)
#   E2E_PLAIN=1             the plain FP16 server for the grid
#   E2E_POLICIES="fp16 fp8 dynamic slo"  the policies replayed, fp16 first (its run measures the
#                           unloaded FP16 latency the SLOs are multiples of); e.g. "fp16 fp8 slo"
#                           with E2E_SLO_EXTRA to try an slo variant in less time
#   E2E_SLO_AIM=8           the slo policy's targets, x the unloaded FP16 TTFT/TPOT (SLOs: 10x, 15x)
#   E2E_SLO_EXTRA=",forecast=0"  appended to the slo spec (e.g. the queue model alone, to compare)
#   E2E_DEADLINE_S=800      no run starts (or continues) later than this; the report follows
#                           (the complete H200 run with these defaults took 737 s, estimate 689 s:
#                           longer than one command, so start it detached, CONTRIBUTING.md "GPU
#                           workflow" step 6)
#   BIN, MODEL, DEVICE, PORT, TRACES (../shared/data/traces, else .carry/ on the GPU machine)
#   SERVE_ARGS="..."        extra arguments of every server (scripts/tp-70b.sh: --tensor-parallel-size 4)
#   E2E_TITLE="..."         the report's title
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
small=${E2E_SMALL:-0}
if [ "$small" = 1 ]; then
  BIN=${BIN:-build/cpu/nestedfp}; MODEL=${MODEL:-models/pystd-16m}; DEVICE=${DEVICE:-cpu}
  load_args=(); budget=256; seqs=32
  scales=${E2E_SCALES:-"1 4"}; replay=${E2E_REPLAY_S:-3}; code_scale=${E2E_CODE_SCALE:-1}
  lens=(--max-input-len 128 --max-output-len 8)
  grid_in=${E2E_IN:-32,128}; grid_out=${E2E_OUT:-8}; grid_conc=${E2E_CONC:-2,4}; prompts=${E2E_PROMPTS:-4}
  load_s=3; title="pystd-16m (cpu backend, E2E_SMALL)"
else
  BIN=${BIN:-build/cuda/nestedfp}; MODEL=${MODEL:-bench/configs/llama-3.1-8b}; DEVICE=${DEVICE:-cuda}
  load_args=(--load-format dummy); budget=2048; seqs=256
  scales=${E2E_SCALES:-"1 4 6 8 12"}; replay=${E2E_REPLAY_S:-14}; code_scale=${E2E_CODE_SCALE:-1.5}
  lens=(--max-input-len 4096 --max-output-len 512)
  grid_in=${E2E_IN:-128,512,2048}; grid_out=${E2E_OUT:-32,512}; grid_conc=${E2E_CONC:-8,16}
  prompts=${E2E_PROMPTS:-32}; load_s=35; title="Llama-3.1-8B config, dummy weights, one H200"
fi
OUT=${OUT:-build/e2e}
title=${E2E_TITLE:-$title}
# The GPU machine has no ../shared: pack-device.sh carries the traces in .carry/.
if [ -z "${TRACES:-}" ]; then
  TRACES=$root/../shared/data/traces; [ -d "$TRACES" ] || TRACES=$root/.carry
fi
PORT=${PORT:-18431}
shrink=${E2E_SHRINK:-1}
aim=${E2E_SLO_AIM:-8}
deadline=${E2E_DEADLINE_S:-$([ "$small" = 1 ] && echo 300 || echo 800)}  # s after start; then the report
replay=$(awk -v r="$replay" -v s="$shrink" 'BEGIN { printf "%.1f", r * s }')
do_code=${E2E_CODE:-1}; do_grid=${E2E_GRID:-1}; do_plain=${E2E_PLAIN:-1}
policies=${E2E_POLICIES:-"fp16 fp8 dynamic slo"}
url=http://127.0.0.1:$PORT
note() { echo "e2e: $*" >&2; }

# Ascending, so the highest load runs last (see the replays below).
read -r -a conv_scales <<< "$(echo $scales | tr ' ' '\n' | sort -g | tr '\n' ' ')"
[ "${#conv_scales[@]}" -gt 0 ] || { note "E2E_SCALES is empty: give at least one conv-trace time scale"; exit 1; }
read -r -a policy_list <<< "$policies"
[ "${policy_list[0]:-}" = fp16 ] || { note "E2E_POLICIES must start with fp16 (its first run measures the unloaded FP16 latency); got '$policies'"; exit 1; }
for p in "${policy_list[@]}"; do
  case $p in fp16|fp8|dynamic|slo) ;; *) note "E2E_POLICIES: unknown policy '$p' (fp16, fp8, dynamic, slo)"; exit 1 ;; esac
done
n_policies=${#policy_list[@]}
[ -x "$BIN" ] || { note "$BIN missing: build it first (scripts/gpu-check.sh, or cmake --build build/cpu --target nestedfp)"; exit 1; }
[ -f "$TRACES/azure_llm_2023_conv.csv" ] || { note "$TRACES/azure_llm_2023_conv.csv missing (../shared beside the checkout, .carry/ from pack-device.sh, or TRACES=)"; exit 1; }
if [ "$do_code" = 1 ] && [ ! -f "$TRACES/azure_llm_2023_code.csv" ]; then
  note "$TRACES/azure_llm_2023_code.csv missing: no code-trace replay (re-run scripts/pack-device.sh)"; do_code=0
fi
command -v curl >/dev/null || { note "curl is needed to switch policies"; exit 1; }
# The GPU machine's libraries come from the carried sysroot, as in gpu-check.sh.
if [ -f .carry/sysroot.tar.xz ] && [ "$DEVICE" != cpu ]; then
  sr=$(mktemp -d /tmp/nfp-e2e-sysroot.XXXX); tar -C "$sr" -xJf .carry/sysroot.tar.xz
  export LD_LIBRARY_PATH=$sr/sysroot/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
fi
commit=$(cat .carry/git-commit 2>/dev/null || git rev-parse --short HEAD 2>/dev/null || echo "?")
device=$([ "$DEVICE" = cpu ] && echo "cpu ($(nproc) cores)" || nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1)

# Estimate: each replay runs its window plus a drain; the grid one wave per prompts/conc.
n_scales=$(echo $scales | wc -w)
est=$(awk -v ns="$n_scales" -v r="$replay" -v code="$do_code" -v grid="$do_grid" -v plain="$do_plain" \
  -v load="$load_s" -v small="$small" -v np="$n_policies" 'BEGIN {
    drain = small ? 2 : 7; t = load + np * ns * (r + drain) + (code ? np * (r + drain) : 0)
    if (grid) t += (small ? 6 : 35) * (plain ? 3 : 2) + (plain ? load : 0)
    printf "%d", t + 10 }')
note "estimate: ~${est} s, deadline ${deadline} s + report ($n_scales conv scales x $n_policies policies x ${replay} s replays, code trace: $do_code, grid: $do_grid, plain FP16: $do_plain)"
rm -rf "$OUT"; mkdir -p "$OUT/results"
t_start=$(date +%s)

pid=""
start_server() {  # name, extra serve args...
  local name=$1; shift
  # shellcheck disable=SC2086
  "$BIN" serve "$MODEL" --device "$DEVICE" "${load_args[@]}" ${SERVE_ARGS:-} --port "$PORT" \
    --max-num-batched-tokens "$budget" --max-num-seqs "$seqs" --max-queue 100000 \
    --no-enable-prefix-caching "$@" > "$OUT/server-$name.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 1200); do
    curl -sf "$url/health" >/dev/null 2>&1 && { note "server $name up after $(( $(date +%s) - t_start )) s"; return 0; }
    kill -0 "$pid" 2>/dev/null || { tail -30 "$OUT/server-$name.log"; note "server $name exited"; exit 1; }
    sleep 0.25
  done
  note "server $name not healthy after 300 s"; exit 1
}
stop_server() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pid=""; fi
}
trap stop_server EXIT
set_policy() {
  local r; r=$(curl -sf -X POST "$url/admin/precision" -H 'Content-Type: application/json' -d "{\"precision\": \"$1\"}") \
    || { note "POST /admin/precision $1 failed"; exit 1; }
  note "policy: $r"
}
# Every run must end by the deadline: a run that cannot start with `need` seconds left is skipped,
# one still going at the deadline is stopped; the report covers what finished.
left() { echo $(( deadline - ($(date +%s) - t_start) )); }
bench() {  # need_s, bench serve args...
  local need=$1 rest rc=0; shift; rest=$(left)
  if [ "$rest" -lt "$need" ]; then note "skipped (${rest} s left before the deadline): $*"; return 1; fi
  timeout "$rest" "$BIN" bench serve --url "$url" --ignore-eos --timeout 120 --metrics-interval 0.5 "$@" \
    > "$OUT/bench.log" 2>&1 || rc=$?
  if [ "$rc" = 124 ]; then note "stopped at the deadline: $*"; return 1; fi
  # A failed run loses only itself: the report covers the others, and the script exits non-zero
  # at the end (one run of the H200 experiment once exited 12 s in with no message, and took the
  # whole report with it).
  if [ "$rc" != 0 ]; then
    tail -20 "$OUT/bench.log"; note "bench serve $* failed (exit $rc)"
    echo "exit $rc: bench serve $*" >> "$OUT/failed-runs.txt"
    cp "$OUT/bench.log" "$OUT/failed-run-$(wc -l < "$OUT/failed-runs.txt").log"; return 1
  fi
  tail -2 "$OUT/bench.log" | head -1 >&2
}

# The nested server starts with an slo policy so its latency model is calibrated once, at start;
# the placeholder targets are replaced after the unloaded latency is measured.
start_server nested --precision slo:ttft=1000,tpot=100
declare -A slo_specs  # per trace: the slo spec from its unloaded latency (set by its first run)
replay_trace() {  # trace, start, scales; the trace's first run (fp16) measures the unloaded latency
  local trace=$1 start=$2 sc p dir extra slo_spec=${slo_specs[$1]:-}
  for sc in $3; do
    for p in $policies; do
      dir=$OUT/trace-$trace/$p-x$sc; extra=()
      if [ -z "$slo_spec" ]; then extra=(--slo-scale 10 --unloaded-requests 3); fi
      case $p in
        dynamic) set_policy "dynamic:threshold=$((budget / 2))" ;;
        slo) set_policy "$slo_spec${E2E_SLO_EXTRA:-}" ;;
        *) set_policy "$p" ;;
      esac
      note "$trace x$sc $p ($(( $(date +%s) - t_start )) s so far)"
      bench "$(awk -v r="$replay" 'BEGIN { printf "%d", r + 3 }')" --mode trace --trace "$TRACES/azure_llm_2023_$trace.csv" --start "$start" \
        --duration "$(awk -v s="$sc" -v r="$replay" 'BEGIN { print s * r }')" --time-scale "$sc" \
        --middle-ratio 0.7 "${lens[@]}" "${extra[@]}" --out "$dir" || { rm -rf "$dir"; [ -n "$slo_spec" ] || return 0; continue; }
      [ "$p" = slo ] && { curl -s "$url/metrics" | grep -E "^nestedfp_(slo|latency_model)" > "$dir/slo-metrics.txt" || true; }
      if [ -z "$slo_spec" ]; then  # slo aims inside the stricter SLO (10x): a margin for misprediction
        slo_spec=$("$BIN" bench e2e-report --slo-spec-from "$dir/bench_serve_trace.json" --scale "$aim")
        slo_specs[$trace]=$slo_spec
        note "slo policy: $slo_spec"
      fi
    done
  done
}
# Grid first on the nested server (the throughput goal), then the replays, then the plain server.
grid=(--mode throughput --input-lens "$grid_in" --output-lens "$grid_out" --concurrency "$grid_conc" --num-prompts "$prompts")
grid_s=$([ "$small" = 1 ] && echo 5 || echo 30)
if [ "$do_grid" = 1 ]; then
  set_policy fp16; note "grid nested-fp16"; bench "$grid_s" "${grid[@]}" --out "$OUT/throughput/nested-fp16" || rm -rf "$OUT/throughput/nested-fp16"
  set_policy fp8; note "grid nested-fp8"; bench "$grid_s" "${grid[@]}" --out "$OUT/throughput/nested-fp8" || rm -rf "$OUT/throughput/nested-fp8"
fi
# The highest conv scale last: past every policy's capacity it tells least, so when the deadline
# is near it is the one to lose (a late deadline once skipped the code window's slo run instead).
replay_trace conv 60 "${conv_scales[*]:0:${#conv_scales[@]}-1}"
[ "$do_code" = 1 ] && replay_trace code 186 "$code_scale"  # 196-200 s: ~25 requests/s of ~2k tokens
replay_trace conv 60 "${conv_scales[-1]}"
stop_server
if [ "$do_grid" = 1 ] && [ "$do_plain" = 1 ] && [ "$(left)" -gt $((load_s + grid_s)) ]; then
  start_server plain --weights fp16 --precision fp16
  note "grid fp16-plain"; bench "$grid_s" "${grid[@]}" --out "$OUT/throughput/fp16-plain" || rm -rf "$OUT/throughput/fp16-plain"
  stop_server
fi

prefix=$OUT/results/$(date -u +%F)-e2e
"$BIN" bench e2e-report "$OUT" --out "$prefix" --title "$title" --device "$device" --commit "$commit" \
  --command "bash scripts/e2e-experiment.sh$([ "$small" = 1 ] && echo " (E2E_SMALL=1)")" | tee "$OUT/report.txt"
note "done in $(( $(date +%s) - t_start )) s (estimate was ${est} s); report: $prefix.md"
if [ -s "$OUT/failed-runs.txt" ]; then note "failed runs (missing from the report):"; cat "$OUT/failed-runs.txt" >&2; exit 1; fi
cat "$prefix.md"
