#!/usr/bin/env python3
"""Sums up the SPLITS_SHAPES stage of scripts/device-chain.sh: `nestedfp tune` run once per forced
cluster split of the streaming mma kernels (NFP_MMA_SPLITS), once with the launch's own choice and
once with NFP_MMA_SPLITS=resident (the split halved until all clusters fit at once).
Prints, per family, shape and M, each mma candidate's time at every split, and the fastest CUTLASS
candidate of the `auto` run for scale (the variable does not touch it), as a markdown table.

    python3 bench/mma_splits.py DIR     # DIR holds auto.candidates.csv, s1.candidates.csv, ...

The question it answers (docs/KERNELS.md §2.4): is the 2-stage kernels' win on 4096-row layers a
second wave of K-split clusters, i.e. does the 4-stage kernel at a smaller split (or `resident`)
match it?
"""
import sys
from collections import defaultdict

import candidates

RUNS = ["auto", "resident", "s1", "s2", "s4", "s8"]


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    d = sys.argv[1]
    times = defaultdict(dict)  # (family, N, K, M, variant) -> {run: us}
    cutlass = defaultdict(dict)  # (family, N, K, M) -> {run: fastest non-mma us}
    found = []
    for run, key, variant, us in candidates.runs(d, RUNS):
        if run not in found:
            found.append(run)
        if variant.startswith("mma"):
            times[key + (variant,)][run] = us
        else:
            best = cutlass[key].get(run)
            cutlass[key][run] = us if best is None else min(best, us)
    if not found:
        print(f"mma_splits: no <run>.candidates.csv in {d} (runs: {', '.join(RUNS)})", file=sys.stderr)
        sys.exit(2)
    print("| family | N x K | M | variant | " + " | ".join(found) + " | best CUTLASS |")
    print("|---" * (5 + len(found)) + "|")
    def order(key):  # mma128x8 before mma128x16 ...; the 2-stage variant after its 4-stage one
        fam, n, k, m, v = key
        tokens = int(v.split("x", 1)[1].split("s")[0])
        return (fam, n, k, m, tokens, v)

    for key in sorted(times, key=order):
        fam, n, k, m, v = key
        cells = [f"{times[key][r]:.1f}" if r in times[key] else "-" for r in found]
        c = cutlass.get((fam, n, k, m), {})
        ref_us = c.get("auto", min(c.values())) if c else None
        ref = f"{ref_us:.1f}" if ref_us is not None else "-"
        print(f"| {fam} | {n} x {k} | {m} | {v} | " + " | ".join(cells) + f" | {ref} |")


if __name__ == "__main__":
    main()
