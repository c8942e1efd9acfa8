#!/usr/bin/env bash
# `nestedfp tune` and `--kernel-table` from the command line: argument errors are refused before
# any GPU work with a message naming the option; a build or machine without a Hopper GPU says so;
# the cpu backend ignores an existing --kernel-table (its GEMMs have no variants) and refuses a
# path that does not exist, as the GPU would.
set -uo pipefail
BIN=${1:?usage: tune_cli.sh NESTEDFP_BINARY MODEL_DIR}
MODEL=${2:?usage: tune_cli.sh NESTEDFP_BINARY MODEL_DIR}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

expect() {  # expect CODE PATTERN DESCRIPTION -- ARGS...
  local code=$1 pattern=$2 what=$3
  shift 4
  "$BIN" "$@" >"$work/out" 2>"$work/err"
  rc=$?
  if [ "$rc" != "$code" ]; then echo "FAIL ($what): exit $rc, expected $code"; cat "$work/err"; exit 1; fi
  if [ -n "$pattern" ] && ! grep -q -- "$pattern" "$work/err"; then
    echo "FAIL ($what): stderr lacks '$pattern'"; cat "$work/err"; exit 1
  fi
  echo "ok: $what (exit $rc)"
}

expect 1 "exactly one of --model" "neither --model nor --shapes" -- tune --out "$work/t.json"
expect 1 "exactly one of --model" "both --model and --shapes" -- \
  tune --model "$ROOT/bench/configs/llama-3.1-8b" --shapes 4096,4096 --out "$work/t.json"
expect 1 "applies to --model" "--tp with --shapes" -- tune --shapes 4096,4096 --tp 2 --out "$work/t.json"
expect 1 "bad item '4096'" "a malformed shape" -- tune --shapes 4096 --out "$work/t.json"
expect 1 "not divisible by 3" "--tp that does not divide the model" -- \
  tune --model "$ROOT/bench/configs/llama-3.1-8b" --tp 3 --out "$work/t.json"
expect 1 "--m '1,0'" "a bad token count" -- tune --shapes 4096,4096 --m 1,0 --out "$work/t.json"
expect 1 "is a .json file" "--out without .json" -- tune --shapes 4096,4096 --out "$work/t.txt"
# Valid arguments: here (no Hopper GPU, or no CUDA in the build) a clear refusal, not a crash.
if ! command -v nvidia-smi >/dev/null || ! nvidia-smi >/dev/null 2>&1; then
  expect 1 "GPU" "valid arguments without a GPU" -- \
    tune --model "$ROOT/bench/configs/llama-3.1-8b" --tp 4 --m 1,16 --out "$work/t.json"
  [ ! -e "$work/t.json" ] || { echo "FAIL: a table was written without a GPU"; exit 1; }
fi
echo '{}' > "$work/table.json"
expect 0 "ignored" "--kernel-table FILE on the cpu backend" -- \
  generate "$MODEL" --device cpu --kernel-table "$work/table.json" --prompt "def" --max-tokens 2
expect 1 "no such file" "a --kernel-table path that does not exist" -- \
  generate "$MODEL" --device cpu --kernel-table "$work/none.json" --prompt "def" --max-tokens 2
expect 0 "" "--kernel-table none on the cpu backend" -- \
  generate "$MODEL" --device cpu --kernel-table none --prompt "def" --max-tokens 2
echo "tune_cli: all ok"
