#!/usr/bin/env bash
# The mma cluster-split probe (docs/KERNELS.md §2.4): `nestedfp tune` of SHAPES at M = 1, 8, 16 once
# with the streaming mma launch's own split, once with NFP_MMA_SPLITS=resident and once per forced
# split (1, 2, 4, 8), then bench/mma_splits.py's table into DIR/splits.md. Run on the GPU machine:
#
#   bash scripts/mma-splits-probe.sh build/cuda/nestedfp build/chain/splits "4096x4096,3584x4096"
#
# TARGET_MS (10) per candidate and point; each run under TUNE_TIMEOUT_S (600). Exits 1 when a run
# failed (its column is then missing), 2 on bad arguments.
set -u
cd "$(dirname "$0")/.."
[ $# = 3 ] || { sed -n '2,9p' "$0"; exit 2; }
bin=$1 dir=$2 shapes=$3
mkdir -p "$dir"
fail=0
for run in auto resident s1 s2 s4 s8; do
  case $run in
    auto) env=(env -u NFP_MMA_SPLITS) ;;
    resident) env=(env NFP_MMA_SPLITS=resident) ;;
    *) env=(env NFP_MMA_SPLITS=${run#s}) ;;
  esac
  timeout -k 30 "${TUNE_TIMEOUT_S:-600}" "${env[@]}" "$bin" tune --shapes "$shapes" --m 1,8,16 \
    --kernel-set-only --target-ms "${TARGET_MS:-10}" --out "$dir/$run.json" > /dev/null 2>> "$dir/tune.log"
  rc=$?
  echo "splits $run: exit $rc"
  [ "$rc" = 0 ] || fail=1
done
python3 bench/mma_splits.py "$dir" > "$dir/splits.md" 2>> "$dir/tune.log" || fail=1
exit $fail
