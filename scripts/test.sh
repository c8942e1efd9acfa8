#!/usr/bin/env bash
# The test command (README, .ci/run): CPU build + all CPU tests, bounded fuzzing, and a compile of
# the CUDA preset wherever nvcc exists (no GPU needed to compile). Run scripts/setup.sh first.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-$(nproc)}
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
t0=$(date +%s)
step() { echo; echo "==> $* (+$(( $(date +%s) - t0 ))s)"; }

# ccache (scripts/setup.sh) lets the mutation check below reuse this build's objects. The base dir
# makes its cache keys independent of where the checkout (and the mutants' scratch copy) lives.
if command -v ccache >/dev/null; then
  export CMAKE_CXX_COMPILER_LAUNCHER=${CMAKE_CXX_COMPILER_LAUNCHER:-ccache}
  export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$(dirname "$PWD")}
fi

step "build: cpu preset"
cmake --preset cpu >/dev/null
cmake --build --preset cpu -j "$JOBS"

step "tests: ctest (cpu)"
ctest --preset cpu -j "$JOBS"

# Every source mutation of scripts/mutants.tsv must fail a test: ~5 minutes with ccache (report
# in bench/results/mutants.md); CI must not spend more than 10 on it, so it stops there.
step "mutants: scripts/mutants.sh"
if command -v ccache >/dev/null; then
  rc=0
  MUTANTS_REPORT=build/mutants/report.md JOBS=$JOBS timeout 600 bash scripts/mutants.sh || rc=$?
  if [ $rc = 124 ]; then
    echo "mutants: took more than 10 minutes; CI must not run it this long: take it out of scripts/test.sh" \
      "and run it by hand before resolving issues that touch the mutated parts (README)" >&2
  fi
  [ $rc = 0 ] || exit 1
else
  bash scripts/mutants.sh --check
  echo "mutants: not run (no ccache: the scratch build would recompile everything); run scripts/setup.sh"
fi

step "soak: the server under AddressSanitizer + LeakSanitizer (${SOAK_SECONDS:-120}s)"
cmake --preset asan >/dev/null
cmake --build --preset asan -j "$JOBS" --target test_server
NESTEDFP_SOAK_SECONDS=${SOAK_SECONDS:-120} build/asan/test_server --gtest_filter='Soak*'

step "fuzz: ${FUZZ_SECONDS}s per target"
cmake --preset fuzz >/dev/null
fuzzers=$(cd tests/fuzz && ls fuzz_*.cpp 2>/dev/null | sed 's/\.cpp$//' || true)
if [ -n "$fuzzers" ]; then
  cmake --build --preset fuzz -j "$JOBS" --target $fuzzers
  for f in $fuzzers; do
    corpus=build/fuzz/corpus-$f; mkdir -p "$corpus"
    seeds=tests/fuzz/seeds/$f; [ -d "$seeds" ] || seeds=""
    echo "fuzz: $f"
    build/fuzz/$f -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 \
      "$corpus" $seeds 2>&1 | tail -n 12
  done
fi

NVCC=$(command -v nvcc || true); [ -n "$NVCC" ] || { [ -x /usr/local/cuda/bin/nvcc ] && NVCC=/usr/local/cuda/bin/nvcc; }
if [ -n "$NVCC" ]; then
  step "build: cuda preset (compile only, with $NVCC)"
  export PATH="$(dirname "$NVCC"):$PATH"
  # CI has no GPU: compile and link every CUDA source with one GEMM configuration per kernel
  # family (NESTEDFP_CUDA_KERNEL_SET=ci); the full set is built by scripts/gpu-check.sh on a GPU.
  cmake --preset cuda -DNESTEDFP_CUDA_KERNEL_SET=${NESTEDFP_CUDA_KERNEL_SET:-ci} >/dev/null
  cmake --build --preset cuda -j "$JOBS"
else
  step "build: cuda preset skipped (no nvcc on this machine)"
fi
step "all tests passed"
