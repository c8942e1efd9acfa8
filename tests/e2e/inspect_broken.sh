#!/usr/bin/env bash
# `nestedfp inspect` exits 0 on a sound model directory and 1, naming the file, when config.json
# or tokenizer.json is present but broken (the weights report is still printed).
set -euo pipefail
BIN=${1:?usage: inspect_broken.sh NESTEDFP_BINARY MODEL_DIR}
MODEL=${2:?usage: inspect_broken.sh NESTEDFP_BINARY MODEL_DIR}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tmp=$work/model
mkdir "$tmp"
for f in "$MODEL"/*.safetensors "$MODEL"/*.json; do ln -s "$(realpath "$f")" "$tmp/"; done

expect() {  # expect CODE PATTERN DESCRIPTION
  set +e
  "$BIN" inspect "$tmp" >"$work/out" 2>"$work/err"
  rc=$?
  set -e
  if [ "$rc" != "$1" ]; then echo "FAIL ($3): exit $rc, expected $1"; cat "$work/err"; exit 1; fi
  if [ -n "$2" ] && ! grep -q "$2" "$work/err"; then echo "FAIL ($3): stderr lacks '$2'"; cat "$work/err"; exit 1; fi
  grep -q "summary" "$work/out" || { echo "FAIL ($3): no weights report"; exit 1; }
  echo "ok: $3 (exit $rc)"
}

expect 0 "" "sound model"
rm "$tmp/config.json"; printf '{"model_type": "llama", ' >"$tmp/config.json"
expect 1 "config.json" "truncated config.json"
rm "$tmp/config.json"; ln -s "$(realpath "$MODEL/config.json")" "$tmp/config.json"
rm "$tmp/tokenizer.json"; printf '{"model": {"type": "BPE", "vocab": [1,2' >"$tmp/tokenizer.json"
expect 1 "tokenizer.json" "truncated tokenizer.json"
rm "$tmp/tokenizer.json"
expect 0 "" "no tokenizer.json (the weights alone can be inspected)"
