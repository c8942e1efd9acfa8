#!/usr/bin/env bash
# Standalone build + test + benchmark of the NestedFP16 GEMM on a Hopper machine (no CMake, so
# it does not depend on the rest of the tree). From the repository root, with .carry-nfp16/
# (cutlass.tar.xz = .deps/cutlass/include, fmt/ = /usr/include/fmt) beside it.
#   GTEST_ARGS, BENCH_ARGS, SKIP_BENCH=1, NFP16_SWEEP_SCHED=1 (scheduler sweep in the bench)
set -uo pipefail
OUT=${OUT:-/tmp/nfp16-out}; mkdir -p "$OUT"
SRC=src/backend/cuda
T=/tmp/nfp16; B=$T/build; mkdir -p $T/inc $B
tar -C $T -xJf .carry-nfp16/cutlass.tar.xz && cp -r .carry-nfp16/fmt $T/inc/
INC="-I$T/include -I$T/inc -Iinclude -Isrc"
NV="nvcc -DNESTEDFP_CUDA_KERNEL_SET_LEVEL=2 -std=c++20 -gencode=arch=compute_90a,code=sm_90a --expt-relaxed-constexpr -O3 -DNDEBUG -diag-suppress 2908 -Xptxas -v"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv > $OUT/env.txt 2>&1
t0=$(date +%s)
# One translation unit per NFP16_CUTLASS row of gemm_configs.def, as cmake/GemmConfigs.cmake makes them.
mkdir -p $T/gen
sed -nE 's/^NFP16_CUTLASS\(([A-Za-z0-9_]+), *(CI|DEFAULT|ALL),.*/\1 \2/p' $SRC/gemm_configs.def |
  while read -r name tier; do
    sed -e "s/@NAME@/$name/g; s/@TIER@/$tier/g; s/@FAMILY_TITLE@/NestedFP16/g; s/@NAMESPACE@/nfp16/g" \
        -e "s/@KERNELS_HEADER@/nested_fp16_gemm_kernels.hpp/g; s/@CONFIGS_HEADER@/nested_fp16_gemm_configs.cuh/g" \
        $SRC/gemm_config_tu.cu.in > $T/gen/nested_fp16_gemm_v_$name.cu
  done
pids=()
for f in $SRC/nested_fp16_gemm*.cu $T/gen/nested_fp16_gemm_v_*.cu; do
  ( $NV $INC -c $f -o $B/$(basename $f).o > $B/$(basename $f).log 2>&1 || echo "FAILED $f" ) & pids+=($!)
done
for f in src/format/*.cpp $SRC/nested_fp16_gemm_host.cpp tests/gpu/nested_fp16_gemm_test.cpp src/bench/nfp16/nested_fp16_bench.cpp; do
  ( g++ -std=c++20 -O2 -DFMT_HEADER_ONLY $INC -I/usr/local/cuda/include -c $f -o $B/$(basename $f).o > $B/$(basename $f).log 2>&1 || { echo "FAILED $f"; cat $B/$(basename $f).log | head -20; } ) & pids+=($!)
done
wait "${pids[@]}"
cat $B/*.cu.log | grep -v "bytes stack frame\|Compiling entry\|Function properties\|Compile time\|bytes gmem" > $OUT/build.log
grep -i "error\|warning\|C7510\|registers" $OUT/build.log | sort | uniq -c | head -30
echo "built in $(( $(date +%s) - t0 )) s"
LIBS="-L/usr/local/cuda/lib64 -lcudart -lcublas -lpthread"
common="$B/nested_fp16_gemm*.cu.o $B/nested_fp16_gemm_host.cpp.o"
fmtobjs=$(ls $B/*.cpp.o | grep -v "test\|bench\|nested_fp16_gemm_host")
nvcc -o $B/test $B/nested_fp16_gemm_test.cpp.o $common $fmtobjs -lgtest -lgtest_main $LIBS 2>&1 | tail -5
nvcc -o $B/bench $B/nested_fp16_bench.cpp.o $common $fmtobjs $LIBS 2>&1 | tail -5
for o in $B/nested_fp16_gemm_v_*.cu.o; do
  echo "== $(basename $o): $(cuobjdump -sass $o | grep -o 'HGMMA\.[^ ]*\|LDS\.[A-Z0-9.]*\|LDS \|LDSM[^ ]*\|LD\.E[^ ]*\|SHFL\.[A-Z]*\|PRMT\|WARPGROUP.DEPBAR[^ ]*' | sort | uniq -c | tr '\n' ' ')"
done > $OUT/sass_summary.txt 2>&1
cuobjdump -sass $B/nested_fp16_gemm_v_t128x128x64_coop_sk.cu.o > $OUT/sass_t128x128x64_coop_sk.txt 2>&1
${TEST_PREFIX:-} $B/test --gtest_color=no ${GTEST_ARGS:-} > $OUT/test.log 2>&1; echo "test exit $?"
grep -E "^\[  (PASSED|FAILED) |FAILED|rel_err" $OUT/test.log | tail -60
[ -n "${SKIP_BENCH:-}" ] || { $B/bench ${BENCH_ARGS:-} > $OUT/bench.txt 2>&1; echo "bench exit $?"; }
cat $OUT/sass_summary.txt
cat $OUT/bench.txt 2>/dev/null
