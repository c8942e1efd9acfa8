#!/usr/bin/env bash
# Nsight Compute stall breakdown of `nestedfp bench kernels` points (docs/KERNELS.md §2.7): per
# point "NxK:M", the second launch of every distinct kernel with the WarpStateStats,
# SpeedOfLight, ComputeWorkloadAnalysis and MemoryWorkloadAnalysis sections, exported as the raw
# page (every metric, including the per-reason stall counters the details page leaves out), then
# bench/ncu_stalls.py into OUT/stalls.md. Clocks are left alone (`--clock-control none`; the device rules forbid changing them).
#
#   bash scripts/ncu-stalls.sh build/cuda/nestedfp OUTDIR "4096x4096:256 4096x4096:64"
#   (with binaries built here: bash scripts/device-prebuilt.sh bash scripts/ncu-stalls.sh ...)
# BENCH_EXTRA: more `bench kernels` options, e.g. BENCH_EXTRA=--all-variants (every NestedFP8
# variant of the point is then profiled too).
set -u
[ $# -eq 3 ] || { sed -n '2,9p' "$0"; exit 2; }
bin=$1 out=$2 points=$3
mkdir -p "$out"
ncu=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
[ -n "$ncu" ] || { echo "ncu-stalls: ncu not found (PATH, /opt/nvidia/nsight-compute)" >&2; exit 1; }
"$ncu" --version > "$out/ncu-version.txt" 2>&1
rc=0
for pt in $points; do
  if [[ ! $pt =~ ^[0-9]+x[0-9]+:[0-9]+$ ]]; then
    echo "ncu-stalls: point '$pt' is not NxK:M (e.g. 4096x4096:256); skipped" >&2
    rc=1
    continue
  fi
  shape=${pt%:*} m=${pt#*:}
  rm -f "$out/raw-$shape-m$m".*  # no earlier run's export in the summary
  timeout 300 "$ncu" --clock-control none --graph-profiling node --kernel-name-base mangled \
    --kernel-id '::regex:.*:2' --section WarpStateStats --section SpeedOfLight \
    --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis --csv --page raw \
    "$bin" bench kernels --shapes "$shape" --m "$m" --target-ms 1 --out "/tmp/ncu-stalls-bk" ${BENCH_EXTRA:-} \
    > "$out/raw-$shape-m$m.csv" 2> "$out/raw-$shape-m$m.log" || { rc=1; echo "ncu-stalls: $pt failed (see $out/raw-$shape-m$m.log)" >&2; }
done
python3 "$(dirname "$0")/../bench/ncu_stalls.py" "$out"/raw-*.csv > "$out/stalls.md" || rc=1
exit $rc
