#!/usr/bin/env bash
# Polls a detached scripts/device-chain.sh on the device machine: waits up to $1 seconds (default
# 540, under the 10-minute command limit) for $CHAIN/DONE, packing $CHAIN into $OUT/chain.tgz
# every 30 s and at the end, so a call cut short (time limit, device budget spent) still brings
# back what the chain wrote so far (keep it under the 16 MiB a returned file may have). Issue the
# next call within the machine's 30 s idle release.
set -u
cd "$(dirname "$0")/.."
CHAIN=${CHAIN:-build/chain}
limit=${1:-540}
pack() { [ -n "${OUT:-}" ] && tar -C "$(dirname "$CHAIN")" -czf "$OUT/chain.tgz" "$(basename "$CHAIN")" 2>/dev/null; }
t=0
alive() { [ ! -f "$CHAIN/pid" ] || kill -0 "$(cat "$CHAIN/pid")" 2>/dev/null; }
while [ ! -f "$CHAIN/DONE" ] && [ "$t" -lt "$limit" ] && alive; do
  sleep 10; t=$((t + 10))
  [ $((t % 30)) = 0 ] && pack
done
pack
grep "^== " "$CHAIN/chain.log" 2>/dev/null | tail -8
if [ -f "$CHAIN/DONE" ]; then echo "DONE"
elif ! alive; then echo "the chain died without DONE: see chain.log"; exit 1
else echo "still running after ${t} s: poll again"; fi
