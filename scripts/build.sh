#!/usr/bin/env bash
# Builds the `nestedfp` binary: the cuda preset where nvcc and a GPU exist, else the cpu preset.
set -euo pipefail
cd "$(dirname "$0")/.."
preset=cpu
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && command -v nvcc >/dev/null 2>&1; then
  preset=cuda
fi
cmake --preset "$preset" >/dev/null
cmake --build --preset "$preset" -j "$(nproc)" --target nestedfp >&2
ln -sfn "$preset" build/current
echo "build/$preset/nestedfp"
