#!/usr/bin/env bash
# One detached chain of GPU work on the device machine (CONTRIBUTING.md "GPU workflow" step 6):
# scripts/gpu-check.sh, then the stages asked for, each stamped with its start time in
# $CHAIN/chain.log; $CHAIN/DONE is written last. Start it detached and poll with device-poll.sh:
#
#   rm -rf build/chain; setsid nohup env E2E=1 NCU_POINTS="4096x4096:16" \
#     bash scripts/device-chain.sh > /dev/null 2>&1 < /dev/null &
#   bash scripts/device-poll.sh 540        # again, within 30 s, until it prints DONE
# (removing build/chain first keeps a poll in the same command from seeing the last chain's DONE)
#
# Stages (environment; gpu-check.sh's own knobs pass through, e.g. SKIP_TESTS=1, GTEST_ARGS):
#   CHAIN=build/chain         where everything goes (gpu-check logs in $CHAIN/gc)
#   NESTEDFP_CUDA_KERNEL_SET  default here (gpu-check's own default is all: ~5x the build time)
#   E2E=1                     scripts/e2e-experiment.sh into $CHAIN/e2e (its E2E_* knobs pass
#                             through; full run ~10 min)
#   PROBE=1                   bench/nfp16/mma_stream_probe.cu, built with nvcc alone (~20 s)
#   NCU_POINTS="NxK:M ..."    Nsight Compute on `bench kernels --shapes NxK --m M` per point, then
#                             bench/ncu_summary.py into $CHAIN/ncu.md (~7 s per point)
#   TUNE_ARGS="..."           `nestedfp tune $TUNE_ARGS --out $CHAIN/tune/table.json` (e.g. "--shapes
#                             4096x4096 --m 64,256"; with NESTEDFP_CUDA_KERNEL_SET=all every candidate)
#   KBENCH_ARGS="..."         `nestedfp bench kernels $KBENCH_ARGS` into $CHAIN/kb, with the table
#                             TUNE_ARGS wrote when it ran (TUNE_TIMEOUT_S / KBENCH_TIMEOUT_S, 600 s
#                             each: a hanging kernel ends its stage, exit 124)
#   RETUNE=bench/kernel-tables/h200.json   runs that table's "command" field again (its tune
#                             commands, from an empty table) and copies the new table (.json, .md,
#                             .candidates.csv) to $CHAIN/retune; it replaces the table there, so
#                             later stages load it (before KBENCH_ARGS, after TUNE_ARGS); the
#                             next device command gets a fresh copy of this checkout, so bring the
#                             table back from $CHAIN/retune and commit it
#   KBENCH_TABLE=FILE         the table KBENCH_ARGS loads (default TUNE_ARGS's, else auto)
#   SPLITS_SHAPES="NxK,..."   `tune --shapes ... --m 1,8,16 --kernel-set-only` once with the mma
#                             launch's own cluster split, once with NFP_MMA_SPLITS=resident (split
#                             halved until every cluster is resident) and once per forced split
#                             (NFP_MMA_SPLITS=1,2,4,8), then bench/mma_splits.py into
#                             $CHAIN/splits/splits.md (scripts/mma-splits-probe.sh): does a
#                             smaller split of the 4-stage kernel match
#                             the 2-stage one (KERNELS.md §2.4)? (~10-20 s per run and shape)
#   NCU_SET=full              every section with PC sampling (the stall reasons appear in the rule
#                             texts of the details page), for the kernels matching NCU_KERNELS
#                             (a regex of mangled names, default NestedFp16): tens of passes each
set -u
cd "$(dirname "$0")/.."
CHAIN=${CHAIN:-build/chain}
rm -rf "$CHAIN"; mkdir -p "$CHAIN"
exec > "$CHAIN/chain.log" 2>&1
echo $$ > "$CHAIN/pid"  # device-poll.sh stops waiting when this process is gone without DONE
t0=$(date +%s)
stamp() { echo "== $(( $(date +%s) - t0 )) s: $*"; }

stamp "gpu-check"
OUT=$CHAIN/gc NESTEDFP_CUDA_KERNEL_SET=${NESTEDFP_CUDA_KERNEL_SET:-default} bash scripts/gpu-check.sh
stamp "gpu-check exit $?"
# A failed build leaves an older nestedfp on a warm machine: the later stages would measure it.
if grep -q "nestedfp failed to build" "$CHAIN/chain.log"; then
  stamp "nestedfp did not build: the later stages are skipped"
  touch "$CHAIN/DONE"
  exit 1
fi
# Commands outside gpu-check need the carried sysroot's libraries (httplib, Brotli).
sysroot_lib=$(ls -td /tmp/nfp-sysroot.*/sysroot/lib 2>/dev/null | head -1)
[ -n "$sysroot_lib" ] && export LD_LIBRARY_PATH=$sysroot_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
# Results name the commit that was built (the device copy's git may answer another one).
[ -f .carry/git-commit ] && export NESTEDFP_GIT_COMMIT=$(cat .carry/git-commit)

if [ -n "${TUNE_ARGS:-}" ]; then
  stamp "tune $TUNE_ARGS"
  mkdir -p "$CHAIN/tune"
  # shellcheck disable=SC2086
  # A candidate that hangs must not hold the machine: the Llama-3.1-8B tune over every candidate
  # took 73 s on the H200.
  timeout -k 30 "${TUNE_TIMEOUT_S:-600}" build/cuda/nestedfp tune $TUNE_ARGS --out "$CHAIN/tune/table.json" \
    > "$CHAIN/tune/stdout.txt" 2> "$CHAIN/tune/tune.log"
  stamp "tune exit $?"
fi

if [ -n "${RETUNE:-}" ]; then
  # The table's own "command" field, run again (scripts/retune-table.sh): a failed command stops
  # the stage and puts the old table back.
  stamp "retune $RETUNE"
  bash scripts/retune-table.sh build/cuda/nestedfp "$RETUNE" "$CHAIN/retune"
  stamp "retune exit $?"
fi

if [ -n "${KBENCH_ARGS:-}" ]; then
  table=(); [ -f "$CHAIN/tune/table.json" ] && table=(--kernel-table "$CHAIN/tune/table.json")
  [ -n "${KBENCH_TABLE:-}" ] && table=(--kernel-table "$KBENCH_TABLE")
  stamp "bench kernels $KBENCH_ARGS ${table[*]}"
  mkdir -p "$CHAIN/kb"
  # shellcheck disable=SC2086
  timeout -k 30 "${KBENCH_TIMEOUT_S:-600}" build/cuda/nestedfp bench kernels --out "$CHAIN/kb" $KBENCH_ARGS "${table[@]}" \
    > "$CHAIN/kb/stdout.txt" 2> "$CHAIN/kb/bench.log"
  stamp "bench kernels exit $?"
fi

if [ -n "${SPLITS_SHAPES:-}" ]; then
  stamp "mma splits probe: $SPLITS_SHAPES"
  bash scripts/mma-splits-probe.sh build/cuda/nestedfp "$CHAIN/splits" "$SPLITS_SHAPES" > "$CHAIN/splits.log" 2>&1
  stamp "mma splits probe exit $?"
fi

if [ -n "${E2E:-}" ]; then
  stamp "e2e"
  OUT=$CHAIN/e2e bash scripts/e2e-experiment.sh > "$CHAIN/e2e.log" 2>&1
  stamp "e2e exit $?"
fi

if [ -n "${PROBE:-}" ]; then
  stamp "mma probe"
  nvcc -std=c++20 -O3 -gencode=arch=compute_90a,code=sm_90a -Isrc -DNESTEDFP_CUDA_KERNEL_SET_LEVEL=1 \
    bench/nfp16/mma_stream_probe.cu -o /tmp/mma_probe > "$CHAIN/probe-build.txt" 2>&1 &&
    timeout 150 /tmp/mma_probe > "$CHAIN/probe.txt" 2>&1
  stamp "mma probe exit $?"
fi

if [ -n "${NCU_POINTS:-}" ]; then
  ncu=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
  if [ -z "$ncu" ]; then
    stamp "ncu: not found"
  else
    "$ncu" --version > "$CHAIN/ncu-version.txt" 2>&1
    for pt in $NCU_POINTS; do
      shape=${pt%:*}; m=${pt#*:}
      # The second launch of every distinct kernel; clocks left alone (METHOD.md).
      if [ "${NCU_SET:-}" = full ]; then
        what=(--set full --import-source yes --kernel-id "::regex:${NCU_KERNELS:-NestedFp16}:2")
      else
        what=(--kernel-id '::regex:.*:2' --section SpeedOfLight --section MemoryWorkloadAnalysis
          --section Occupancy --section WarpStateStats --section LaunchStats
          --section ComputeWorkloadAnalysis)
      fi
      timeout 300 "$ncu" --clock-control none --graph-profiling node --kernel-name-base mangled \
        "${what[@]}" --csv --page details \
        build/cuda/nestedfp bench kernels --shapes "$shape" --m "$m" --target-ms 1 --out /tmp/ncu-bk \
        > "$CHAIN/ncu-$shape-m$m.csv" 2> "$CHAIN/ncu-$shape-m$m.log"
      stamp "ncu $pt exit $?"
    done
    python3 bench/ncu_summary.py "$CHAIN"/ncu-*.csv > "$CHAIN/ncu.md" 2>&1
  fi
fi
stamp "done"
touch "$CHAIN/DONE"
