#!/usr/bin/env bash
# Accuracy of `nestedfp serve` under the real lm-eval harness, in fp16 and fp8 (NestedFP8).
#   bash scripts/lm-eval.sh [MODEL_DIR]          (default models/pystd-16m)
# 1. creates .deps/lm-eval-venv with the pinned harness (lm_eval[api], transformers for the
#    tokenizer; no torch) unless it is there already;
# 2. checks that eval/lm_eval/pystd_nextline.jsonl is what eval/lm_eval/make_task.py builds;
# 3. for each precision: starts the server, runs lm_eval's `local-completions` model on the tasks
#    in eval/lm_eval (pystd_nextline_mc: 4-way next-line choice by loglikelihood;
#    pystd_linecomp: greedy line completion, exact match), stops the server;
# 4. writes bench/results/<model>-lm-eval.{md,json} (scores, commit, exact commands, versions).
# Environment: NESTEDFP (the binary; default: build it with scripts/build.sh), PORT (default 8139),
# PRECISIONS (default "fp16 fp8"), LIMIT (items per task, for a quick try; results then go to
# /tmp instead of bench/results), THREADS (server cpu threads, default 0 = all cores).
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-models/pystd-16m}
name=$(basename "$model")
port=${PORT:-8139}
bin=${NESTEDFP:-$(bash scripts/build.sh)}
venv=.deps/lm-eval-venv
pins=("lm_eval[api]==0.4.13" "transformers==5.23.0")

if ! "$venv/bin/python" -c 'import lm_eval, transformers, sys
sys.exit(not (__import__("importlib.metadata").metadata.version("lm_eval") == "0.4.13"))' 2>/dev/null; then
  echo "lm-eval: creating $venv with ${pins[*]}" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q "${pins[@]}"
fi

tmp=$(mktemp -d)
python3 eval/lm_eval/make_task.py --out "$tmp/items.jsonl" >/dev/null
cmp -s "$tmp/items.jsonl" eval/lm_eval/pystd_nextline.jsonl ||
  { echo "lm-eval: eval/lm_eval/pystd_nextline.jsonl is stale: run python3 eval/lm_eval/make_task.py" >&2; exit 1; }

pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"' EXIT
limit_args=(); [ -n "${LIMIT:-}" ] && limit_args=(--limit "$LIMIT")
commands="$tmp/commands.txt"; : >"$commands"
for precision in ${PRECISIONS:-fp16 fp8}; do
  serve=("$bin" serve "$model" --port "$port" --precision "$precision" --threads "${THREADS:-0}")
  "${serve[@]}" >"$tmp/serve-$precision.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 300); do
    curl -sf "http://127.0.0.1:$port/health" >/dev/null && break
    kill -0 "$pid" 2>/dev/null || { cat "$tmp/serve-$precision.log" >&2; echo "lm-eval: the server exited" >&2; exit 1; }
    sleep 0.1
  done
  eval_cmd=("$venv/bin/lm_eval" run --model local-completions
    --model_args "model=$name,base_url=http://127.0.0.1:$port/v1/completions,tokenizer_backend=huggingface,tokenizer=$model,max_length=1024,num_concurrent=1,max_retries=1"
    --batch_size 16 --include_path eval/lm_eval --tasks pystd_nextline_mc,pystd_linecomp
    --output_path "$tmp/out-$precision" --log_samples "${limit_args[@]}")
  python3 -c 'import shlex, sys; print(shlex.join(sys.argv[1:]))' "${serve[@]}" >>"$commands"
  python3 -c 'import shlex, sys; print(shlex.join(sys.argv[1:]))' "${eval_cmd[@]}" >>"$commands"
  echo "lm-eval: $precision" >&2
  start=$(date +%s)
  "${eval_cmd[@]}" 2>"$tmp/lm_eval-$precision.log" | tee "$tmp/table-$precision.txt"
  echo "$(( $(date +%s) - start ))" >"$tmp/seconds-$precision"
  curl -s "http://127.0.0.1:$port/metrics" >"$tmp/metrics-$precision.txt" || true
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
done

dest=bench/results; [ -n "${LIMIT:-}" ] && dest=$tmp/results && mkdir -p "$dest"
"$venv/bin/python" eval/lm_eval/summarize.py --work "$tmp" --model "$model" --commands "$commands" \
  --out "$dest/$name-lm-eval"
[ -n "${LIMIT:-}" ] && cat "$dest/$name-lm-eval.md"
exit 0
