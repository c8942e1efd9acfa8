#!/usr/bin/env bash
# The one GPU command (docs/KERNELS.md §2, CONTRIBUTING.md "GPU workflow"): on a Hopper machine, from
# the repository root, with .carry/ made by scripts/pack-device.sh beside it. Unpacks the carried
# headers and sysroot, builds the `cuda` preset, runs tests/gpu, the engine on the GPU
# (test_gpu_engine, serve e2e on cuda, `bench engine`) and `nestedfp bench kernels`, writes every
# log under $OUT (default: build/gpu-check) and prints the benchmark table, then the test summary
# (GPU, commit, each test passed/failed), which it also appends to the results .md/.json with the
# test log beside them.
#   BENCH_ARGS="--shapes 4096x4096 --m 1,128"  extra arguments for the benchmark
#   GTEST_ARGS="--gtest_filter=Split*"         extra arguments for test_gpu
#   SKIP_BENCH=1 / SKIP_TESTS=1                 skip the kernel benchmark / all tests
#   SKIP_ENGINE_TESTS=1                          run test_gpu only (not test_gpu_engine, serve e2e)
#   TEST_TIMEOUT_S=300                           each test binary is killed past this (a hang)
#   SKIP_ENGINE_BENCH=1, ENGINE_BENCH_ARGS="..."  skip or shape `bench engine` (Llama-3.1-8B, dummy)
#   SKIP_SPEC_BENCH=1, SPEC_BENCH_ARGS="..."      skip or shape `bench spec` (pystd-16m, then
#                                                 Llama-3.1-8B dummy projected at pystd's acceptance)
#   TP_CHECK=1                                   tensor parallelism on 2 GPUs (an nvidia-h200-x2):
#                                                its GPU tests, pystd-16m perplexity at TP 1 and 2,
#                                                `bench engine` at TP 2 (TP_ENGINE_BENCH_ARGS;
#                                                docs/DESIGN.md §3.14)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-build/gpu-check}
mkdir -p "$OUT"
status=0
note() { echo "gpu-check: $*" >&2; }

{
  echo "== nvidia-smi"; nvidia-smi
  echo "== nvcc"; nvcc --version
  echo "== cmake"; cmake --version; ninja --version
  echo "== headers"; ls /usr/include | grep -i -E "gtest|nlohmann|CLI|spdlog|fmt|zlib|openssl|brotli|pcre2|httplib"
  echo "== pkg-config"; pkg-config --list-all | sort
  echo "== runtime libraries"; ldconfig -p | grep -E "libssl\.so|libcrypto\.so|libbrotli|libz\.so|libpcre2-8"
  echo "== cpus"; nproc
} > "$OUT/env.txt" 2>&1

# ---- carried dependencies ----------------------------------------------------------------------
if [ -f .carry/deps-headers.tar.xz ]; then
  mkdir -p .deps && tar -C .deps -xJf .carry/deps-headers.tar.xz || { note "cannot unpack headers"; exit 1; }
fi
[ -f .deps/cutlass/include/cutlass/cutlass.h ] || { note "no CUTLASS headers: run scripts/pack-device.sh and carry .carry"; exit 1; }
sysroot_parent=$(mktemp -d /tmp/nfp-sysroot.XXXX)
if [ -f .carry/sysroot.tar.xz ]; then
  tar -C "$sysroot_parent" -xJf .carry/sysroot.tar.xz || { note "cannot unpack sysroot"; exit 1; }
  sysroot=$sysroot_parent/sysroot
  sed -i "s|@SYSROOT@|$sysroot|" "$sysroot"/lib/pkgconfig/*.pc
  export PKG_CONFIG_PATH=$sysroot/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
  export LD_LIBRARY_PATH=$sysroot/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  export CMAKE_PREFIX_PATH=$sysroot${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}
fi

[ -f .carry/git-commit ] && export NESTEDFP_GIT_COMMIT=$(cat .carry/git-commit)

# ---- build -------------------------------------------------------------------------------------
t0=$(date +%s)
# Kernel set all: every GEMM configuration is tested and benchmarked on the GPU (CI compiles the ci set).
if ! cmake --preset cuda -DNESTEDFP_CUDA_KERNEL_SET=${NESTEDFP_CUDA_KERNEL_SET:-all} > "$OUT/build.log" 2>&1; then
  tail -40 "$OUT/build.log"; note "configure failed (log: build.log)"; exit 1
fi
jobs=$(nproc); [ "$jobs" -gt 16 ] && jobs=16
# test_gpu needs only the CUDA library and src/format; the executable needs the whole core library,
# so a broken unrelated source can stop the benchmark but not the tests.
have_tests=1; have_bench=1
if ! cmake --build build/cuda -j "$jobs" --target test_gpu >> "$OUT/build.log" 2>&1; then
  grep -E "error|FAILED" "$OUT/build.log" | head -30; note "test_gpu failed to build (log: build.log)"; have_tests=0; status=1
fi
have_engine_tests=1
if ! cmake --build build/cuda -j "$jobs" --target test_gpu_engine >> "$OUT/build.log" 2>&1; then
  grep -E "error|FAILED" "$OUT/build.log" | head -30; note "test_gpu_engine failed to build (log: build.log)"; have_engine_tests=0; status=1
fi
if ! cmake --build build/cuda -j "$jobs" --target nestedfp >> "$OUT/build.log" 2>&1; then
  grep -E "error|FAILED" "$OUT/build.log" | head -30; note "nestedfp failed to build (log: build.log)"; have_bench=0; status=1
fi
grep -E "C7510|warning.*wgmma" "$OUT/build.log" | head -5
note "built in $(( $(date +%s) - t0 )) s"

# ---- tests -------------------------------------------------------------------------------------
# test-summary.md says which tests passed on which GPU at which commit; it is appended to the
# benchmark's results .md (and put in its .json) so that a results file always carries it.
commit=${NESTEDFP_GIT_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
gpu=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1)
tests_state="not run (SKIP_TESTS set)"
[ $have_tests = 1 ] || tests_state="not run: test_gpu failed to build (build.log)"
if [ -z "${SKIP_TESTS:-}" ] && [ $have_tests = 1 ]; then
  t0=$(date +%s)
  # A kernel that deadlocks must not eat the device time: test_gpu takes ~1 min (kernel set all).
  timeout -k 30 "${TEST_TIMEOUT_S:-300}" build/cuda/test_gpu --gtest_color=no ${GTEST_ARGS:-} > "$OUT/test_gpu.log" 2>&1
  rc=$?
  [ $rc -eq 124 ] && echo "test_gpu: killed after ${TEST_TIMEOUT_S:-300} s (a hang: see the last test started in test_gpu.log)" | tee -a "$OUT/test_gpu.log"
  grep -E "^\[  (PASSED|FAILED) |^\[==========\]|FAILED" "$OUT/test_gpu.log" | tail -20
  note "test_gpu exit $rc in $(( $(date +%s) - t0 )) s"
  [ $rc -eq 0 ] || status=1
  tests_state="exit $rc"
fi
{
  echo "## GPU tests (\`build/cuda/test_gpu ${GTEST_ARGS:-}\`)"
  echo
  echo "- GPU: ${gpu:-unknown}; commit: $commit; date: $(date -u +%Y-%m-%d)"
  if [ -f "$OUT/test_gpu.log" ] && [ "${tests_state#exit}" != "$tests_state" ]; then
    # One row per finished test: "[       OK ] A.B (12 ms)", "[  FAILED  ] A.B (3 ms)", "[  SKIPPED ] ...".
    awk '/^\[ +(OK|FAILED|SKIPPED) +\] / && / ms\)$/ {
           r = $2; name = $4; sub(/,$/, "", name); ms = $(NF - 1); sub(/^\(/, "", ms)
           n[r]++; rows = rows sprintf("| %s | %s | %s |\n", name, r == "OK" ? "passed" : tolower(r), ms) }
         END { printf "- result: %d passed, %d failed, %d skipped\n\n| test | result | ms |\n|---|---|---|\n%s",
                      n["OK"], n["FAILED"], n["SKIPPED"], rows }' "$OUT/test_gpu.log"
    echo
    echo "test_gpu $tests_state; the full log is committed beside this file (*-tests.log)."
  else
    echo "- tests $tests_state"
  fi
} > "$OUT/test-summary.md"

# ---- the engine on the GPU: pystd-16m against the cpu backend, then HTTP + bench serve ---------
# The device has no ../shared: the eval text and the trace travel in .carry (pack-device.sh).
export NESTEDFP_PYSTD_TEXT=${NESTEDFP_PYSTD_TEXT:-$PWD/.carry/pystd_public.txt.gz}
if [ -z "${SKIP_TESTS:-}${SKIP_ENGINE_TESTS:-}" ] && [ $have_engine_tests = 1 ]; then
  t0=$(date +%s)
  timeout -k 30 "${TEST_TIMEOUT_S:-300}" build/cuda/test_gpu_engine --gtest_color=no > "$OUT/test_gpu_engine.log" 2>&1
  rc=$?
  [ $rc -eq 124 ] && echo "test_gpu_engine: killed after ${TEST_TIMEOUT_S:-300} s (a hang)" | tee -a "$OUT/test_gpu_engine.log"
  grep -E "^\[  (PASSED|FAILED) |^\[==========\]|FAILED|perplexity" "$OUT/test_gpu_engine.log" | tail -20
  note "test_gpu_engine exit $rc in $(( $(date +%s) - t0 )) s"
  [ $rc -eq 0 ] || status=1
fi
if [ -z "${SKIP_TESTS:-}${SKIP_ENGINE_TESTS:-}" ] && [ $have_bench = 1 ]; then
  t0=$(date +%s)
  # The openai client is not installed there; curl and `bench serve` exercise the same server.
  SERVE_E2E_NO_OPENAI=1 SERVE_E2E_ARGS="--device cuda" NESTEDFP_TRACE=$PWD/.carry/azure_llm_2023_conv.csv \
    bash tests/e2e/serve_e2e.sh build/cuda/nestedfp > "$OUT/serve_e2e_cuda.log" 2>&1
  rc=$?
  tail -5 "$OUT/serve_e2e_cuda.log"
  note "serve e2e on cuda exit $rc in $(( $(date +%s) - t0 )) s"
  [ $rc -eq 0 ] || status=1
fi
# The engine on Llama-3.1-8B with dummy weights, plain FP16 and nested (two loads): decode step time
# at batch 1..256 (context 1024) against the copy-bandwidth floor, prefill, the precision-switch
# cost, a per-op breakdown of eager steps, offline throughput (2000 x 512/128 through the Engine),
# memory and the goals table: engine.{md,json,png} under $OUT (docs/MEASURING.md §5.5). About 4
# min on an H200 with the defaults; ENGINE_BENCH_EAGER=1 adds the same run with --enforce-eager.
if [ -z "${SKIP_ENGINE_BENCH:-}" ] && [ $have_bench = 1 ]; then
  t0=$(date +%s)
  # shellcheck disable=SC2086
  build/cuda/nestedfp bench engine bench/configs/llama-3.1-8b --device cuda --out "$OUT" \
    ${ENGINE_BENCH_ARGS:-} > "$OUT/bench-engine-stdout.txt" 2> "$OUT/bench-engine.log"
  rc=$?
  if [ -n "${ENGINE_BENCH_EAGER:-}" ]; then  # the same without CUDA graphs: what the graphs save
    # shellcheck disable=SC2086
    build/cuda/nestedfp bench engine bench/configs/llama-3.1-8b --device cuda --out "$OUT" --enforce-eager \
      ${ENGINE_BENCH_ARGS:-} >> "$OUT/bench-engine-stdout.txt" 2>> "$OUT/bench-engine.log" || rc=1
  fi
  note "bench engine exit $rc in $(( $(date +%s) - t0 )) s"
  [ $rc -eq 0 ] || { tail -20 "$OUT/bench-engine.log"; status=1; }
  cat "$OUT/bench-engine-stdout.txt"
fi

# Self-speculative decoding (DESIGN §3.13): acceptance per k and decode tok/s on pystd-16m (real
# weights), then Llama-3.1-8B shapes (dummy weights) with a projection at pystd's tokens per cycle.
if [ -z "${SKIP_SPEC_BENCH:-}" ] && [ $have_bench = 1 ]; then
  t0=$(date +%s)
  # shellcheck disable=SC2086
  build/cuda/nestedfp bench spec models/pystd-16m --device cuda --out "$OUT/spec-pystd" \
    ${SPEC_BENCH_ARGS:---k 1..8 --batch 1,4,8,32 --max-tokens 128} \
    > "$OUT/bench-spec-stdout.txt" 2> "$OUT/bench-spec.log"
  rc=$?
  # shellcheck disable=SC2086
  [ $rc -ne 0 ] || build/cuda/nestedfp bench spec bench/configs/llama-3.1-8b --device cuda \
    --load-format dummy --out "$OUT/spec-llama" --acceptance-from "$OUT/spec-pystd/spec.json" \
    ${SPEC_BENCH_ARGS:---k 1,2,4,8 --batch 1,4,8,32 --max-tokens 64} \
    >> "$OUT/bench-spec-stdout.txt" 2>> "$OUT/bench-spec.log" || rc=1
  note "bench spec exit $rc in $(( $(date +%s) - t0 )) s"
  [ $rc -eq 0 ] || { tail -20 "$OUT/bench-spec.log"; status=1; }
  cat "$OUT/bench-spec-stdout.txt"
fi

# ---- tensor parallelism on 2 GPUs (TP_CHECK=1) --------------------------------------------------
if [ -n "${TP_CHECK:-}" ] && [ $have_bench = 1 ]; then
  t0=$(date +%s)
  build/cuda/test_gpu_engine --gtest_color=no --gtest_filter='TensorParallelGpu*' > "$OUT/test_tp.log" 2>&1
  rc=$?
  grep -E "^\[  (PASSED|FAILED|SKIPPED) |^\[==========\]|FAILED|SKIPPED|perplexity" "$OUT/test_tp.log" | tail -20
  note "tensor-parallel GPU tests exit $rc in $(( $(date +%s) - t0 )) s"
  [ $rc -eq 0 ] || status=1
  : > "$OUT/tp-ppl.txt"
  for tp in 1 2; do
    for p in fp16 fp8; do
      build/cuda/nestedfp eval ppl models/pystd-16m --device cuda --tensor-parallel-size $tp \
        --text "$NESTEDFP_PYSTD_TEXT" --chunks 64 --precision $p --json \
        > "$OUT/tp-ppl-tp$tp-$p.json" 2>> "$OUT/tp-ppl.log" || { note "eval ppl TP $tp $p failed"; status=1; }
      echo "TP $tp $p: $(grep -o '"ppl": *[0-9.]*' "$OUT/tp-ppl-tp$tp-$p.json")" | tee -a "$OUT/tp-ppl.txt"
    done
  done
  # shellcheck disable=SC2086
  build/cuda/nestedfp bench engine bench/configs/llama-3.1-8b --device cuda --tensor-parallel-size 2 \
    --out "$OUT" ${TP_ENGINE_BENCH_ARGS:---batch 1,8,64 --offline-requests 200} > "$OUT/bench-engine-tp2-stdout.txt" \
    2> "$OUT/bench-engine-tp2.log" || { tail -20 "$OUT/bench-engine-tp2.log"; status=1; }
  cat "$OUT/bench-engine-tp2-stdout.txt"
fi

# ---- benchmark ---------------------------------------------------------------------------------
if [ -z "${SKIP_BENCH:-}" ] && [ $have_bench = 1 ]; then
  t0=$(date +%s)
  # shellcheck disable=SC2086
  build/cuda/nestedfp bench kernels --out "$OUT" ${BENCH_ARGS:-} > "$OUT/bench-stdout.txt" 2> "$OUT/bench.log"
  rc=$?
  note "bench exit $rc in $(( $(date +%s) - t0 )) s"
  [ $rc -eq 0 ] || { tail -20 "$OUT/bench.log"; status=1; }
  cat "$OUT/bench-stdout.txt"
fi

# ---- test summary into the results -------------------------------------------------------------
for md in "$OUT"/*-kernels.md; do
  [ -f "$md" ] || continue
  stem=${md%.md}
  { echo; cat "$OUT/test-summary.md"; } >> "$md"
  [ -f "$OUT/test_gpu.log" ] && cp "$OUT/test_gpu.log" "$stem-tests.log"
  if [ -f "$stem.json" ] && command -v python3 >/dev/null; then
    python3 - "$stem.json" "$OUT/test-summary.md" <<'PY' || note "could not add the test summary to $stem.json"
import json, sys
path, summary = sys.argv[1], open(sys.argv[2]).read()
j = json.load(open(path))
j["tests"] = {"summary_md": summary,
              "results": [dict(zip(("test", "result", "ms"), [c.strip() for c in l.strip("|\n").split("|")]))
                          for l in summary.splitlines() if l.startswith("| ") and not l.startswith("| test ")]}
json.dump(j, open(path, "w"), indent=1)
PY
  fi
  note "test summary added to ${md#$OUT/}"
done
cat "$OUT/test-summary.md"
exit $status
