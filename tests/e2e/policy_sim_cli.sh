#!/usr/bin/env bash
# `nestedfp bench policy-sim` from the command line on the committed H200 inputs
# (bench/results/policy-sim/): the table of bench/results/2026-12-02-policy-sim.md comes back
# (fp8 ahead of slo on the code window, fixed policies at 0% / 100% FP16), and bad inputs are
# refused with a message naming what is wrong.
set -uo pipefail
BIN=${1:?usage: policy_sim_cli.sh NESTEDFP_BINARY}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
P=$ROOT/bench/results/policy-sim
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; cat "$work/out" "$work/err" 2>/dev/null; exit 1; }

"$BIN" bench policy-sim "$P/code-x1.5.json" --latency "$P/code-x1.5-metrics.txt" --slo-ttft 425 \
  --slo-tpot 60.5 --policy fp8 --policy fp16 --policy dynamic:threshold=1024 --policy slo:ttft=340,tpot=48.4 \
  >"$work/out" 2>"$work/err" ||
  fail "the committed inputs did not simulate"
row() { grep -E "^\| $1 \|" "$work/out"; }
row fp8 | grep -qE "^\| fp8 \| 68\.7% \|.*\| 0\.0% \| 0\.0% \|$" || fail "fp8 row differs from the committed result"
row fp16 | grep -qE "^\| fp16 \| 19\.4% \|.*\| 100\.0% \| 100\.0% \|$" || fail "fp16 row differs"
row "dynamic:threshold=1024,hysteresis=0" | grep -qE "\| 68\.7% \|.*\| 83\.2% \| 2\.9% \|$" || fail "dynamic row differs"
row "slo:ttft=340,tpot=48\.4,[^ ]*" | grep -qE "\| 64\.2% \|.*\| 85\.6% \| 22\.8% \|$" || fail "slo row differs"
echo "ok: committed inputs reproduce the table"

expect() {  # expect PATTERN DESCRIPTION -- ARGS...
  local pattern=$1 what=$2
  shift 3
  "$BIN" bench policy-sim "$@" >"$work/out" 2>"$work/err" && fail "$what: accepted"
  grep -q -- "$pattern" "$work/err" || fail "$what: stderr lacks '$pattern'"
  echo "ok: $what"
}
expect "cannot open" "a missing run" -- "$work/none.json" --latency "$P/code-x1.5-metrics.txt" --policy fp8
echo '{"mode":"trace"}' >"$work/norun.json"
expect "no runs\[0\].requests" "a JSON without runs" -- "$work/norun.json" --latency "$P/code-x1.5-metrics.txt" --policy fp8
grep -v 'term="c"' "$P/code-x1.5-metrics.txt" >"$work/m.txt"
expect 'term="c"' "metrics without a coefficient" -- "$P/code-x1.5.json" --latency "$work/m.txt" --policy fp8
expect "give a target" "slo without targets" -- "$P/code-x1.5.json" --latency "$P/code-x1.5-metrics.txt" --policy slo
expect "fp12" "an unknown policy" -- "$P/code-x1.5.json" --latency "$P/code-x1.5-metrics.txt" --policy fp12
echo "policy_sim_cli: all ok"
