#!/usr/bin/env bash
# Re-runs a kernel table's own "command" field (its `nestedfp tune` commands, from an empty table)
# with the binary BIN, in this checkout: the same models, --tp sizes and options, the same --out
# path, so the command field stays as it was. The old table (.json, .md, .candidates.csv) is kept
# in DIR/old; the new one is copied to DIR. A command that fails stops the run and puts the old
# table back (exit 1). Used by scripts/device-chain.sh (RETUNE=) and, with binaries built here,
#
#   bash scripts/device-prebuilt.sh bash scripts/retune-table.sh build/prebuilt/nestedfp \
#     bench/kernel-tables/h200.json $OUT/retune
#
# Each device command gets a fresh copy of the checkout: bring the table back from DIR.
# TUNE_TIMEOUT_S (600) per command.
set -u
cd "$(dirname "$0")/.."
[ $# = 3 ] || { sed -n '2,12p' "$0"; exit 2; }
bin=$1 table=$2 dir=$3
base=${table%.json}
rm -rf "$dir/old"; mkdir -p "$dir/old"
cmds=""
[ -f "$table" ] && cmds=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1])).get("command", ""))' "$table")
if [ -z "$cmds" ]; then
  echo "retune: $table is missing, unreadable or has no command field" >&2
  exit 1
fi
cp "$base".* "$dir/old/" 2>/dev/null
restore() {
  rm -f "$table" "$base.md" "$base.candidates.csv"
  cp "$dir/old/"* "$(dirname "$table")/"
  echo "retune failed: $1; the old table is back in place" >&2
  exit 1
}
rm -f "$table" "$base.md" "$base.candidates.csv"
IFS=';' read -ra parts <<< "$cmds"
for c in "${parts[@]}"; do
  read -ra words <<< "$c"; c="${words[*]}"  # trimmed
  [ -z "$c" ] && continue
  if [[ $c != "nestedfp tune "* ]]; then
    echo "retune: not a tune command: $c" >&2
    rc=2
  else
    timeout -k 30 "${TUNE_TIMEOUT_S:-600}" bash -c "$bin ${c#nestedfp }" \
      >> "$dir/stdout.txt" 2>> "$dir/tune.log"
    rc=$?
    echo "retune exit $rc: $c"
  fi
  [ "$rc" = 0 ] || restore "exit $rc"
done
[ -f "$table" ] || restore "the commands wrote no $table"
cp "$base".* "$dir/"
