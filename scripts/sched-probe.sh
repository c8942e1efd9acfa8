#!/usr/bin/env bash
# The tile-scheduler probe (docs/KERNELS.md §2.7): `nestedfp tune` of SHAPES at the M values MS,
# once per decomposition of the CUTLASS stream-K kernels (NFP16_SCHED and NFP8_SCHED: the
# heuristic `auto`, data-parallel `dp`, stream-K `sk`, split-K into 2 and 4 slices `k2` `k4`),
# then bench/sched_probe.py's table into DIR/sched.md. Run on the GPU machine:
#
#   bash scripts/sched-probe.sh build/cuda/nestedfp build/chain/sched "4096x4096,5120x4096" 64,256
#
# TARGET_MS (5) per candidate and point; each run under TUNE_TIMEOUT_S (600). Exits 1 when a run
# failed (its column is then missing), 2 on bad arguments.
set -u
cd "$(dirname "$0")/.."
[ $# = 4 ] || { sed -n '2,10p' "$0"; exit 2; }
bin=$1 dir=$2 shapes=$3 ms=$4
mkdir -p "$dir"
fail=0
for run in auto dp sk k2 k4; do
  case $run in
    auto) s= ;;
    dp) s=decomp=1 ;;
    sk) s=decomp=3 ;;
    k2) s=decomp=2,splits=2 ;;
    k4) s=decomp=2,splits=4 ;;
  esac
  rm -f "$dir/$run".*  # a run that fails must not leave an earlier run's file to be summarised
  if [ -z "$s" ]; then env=(env -u NFP16_SCHED -u NFP8_SCHED); else env=(env NFP16_SCHED=$s NFP8_SCHED=$s); fi
  timeout -k 30 "${TUNE_TIMEOUT_S:-600}" "${env[@]}" "$bin" tune --shapes "$shapes" --m "$ms" \
    --kernel-set-only --target-ms "${TARGET_MS:-5}" --out "$dir/$run.json" > /dev/null 2>> "$dir/tune.log"
  rc=$?
  echo "sched $run: exit $rc"
  [ "$rc" = 0 ] || fail=1
done
python3 bench/sched_probe.py "$dir" > "$dir/sched.md" 2>> "$dir/tune.log" || fail=1
exit $fail
