#!/usr/bin/env bash
# `nestedfp bench spec` on pystd-16m, cpu backend, a few tokens: it runs, writes spec.json/.md,
# measures some acceptance, and speculative greedy output equals NestedFP16's (bit-identical on
# the cpu backend). Also: a bad --speculative spec and --speculative with --weights fp16 are
# refused with a message saying what to do.
set -euo pipefail
BIN=${1:?usage: bench_spec_smoke.sh NESTEDFP_BINARY MODEL_DIR}
MODEL=${2:?usage: bench_spec_smoke.sh NESTEDFP_BINARY MODEL_DIR}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Random prompts when the eval text is absent (the same code path otherwise).
fmt=auto
[ -n "${NESTEDFP_PYSTD_TEXT:-}" ] || [ -f ../shared/data/eval/pystd_public.txt.gz ] || fmt=dummy
"$BIN" bench spec "$MODEL" --device cpu --load-format "$fmt" --k 1,4 --batch 1,3 --accept-batch 3 \
  --max-tokens 10 --prompt-len 24 --skip-plain --out "$work/out" >"$work/stdout" 2>"$work/stderr" ||
  { cat "$work/stderr"; exit 1; }
for f in spec.json spec.md; do [ -s "$work/out/$f" ] || { echo "FAIL: no $f"; exit 1; }; done
grep -q "Acceptance per k" "$work/stdout" || { echo "FAIL: no acceptance table"; exit 1; }
python3 - "$work/out/spec.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
acc = j["acceptance_by_k"]
assert [a["k"] for a in acc] == [1, 4], acc
assert all(a["drafted"] > 0 and 0 < a["acceptance"] <= 1 for a in acc), acc
assert all(a["identical_to_nested_fp16"] == 1.0 for a in acc), acc
spec = [r for r in j["results"] if r["engine"].startswith("spec")]
assert [r["batch"] for r in spec] == [1, 3], spec
assert all(r["identical_to_nested_fp16"] == 1.0 and r["decode_tok_s"] > 0 for r in spec), spec
print("ok: bench spec", [round(a["acceptance"], 3) for a in acc])
PY
refused() {  # refused PATTERN ARGS...
  local pat=$1; shift
  if "$BIN" generate "$MODEL" --device cpu --prompt "def f(x):" --max-tokens 2 "$@" >/dev/null 2>"$work/err"; then
    echo "FAIL: accepted $*"; exit 1
  fi
  grep -q "$pat" "$work/err" || { echo "FAIL: '$*' error lacks '$pat'"; cat "$work/err"; exit 1; }
  echo "ok: refused $*"
}
refused "accepted forms" --speculative fp8:k=0
refused "use --weights nested" --speculative fp8 --weights fp16
