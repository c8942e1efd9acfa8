#!/usr/bin/env python3
"""Sums up scripts/sched-probe.sh: `nestedfp tune` run once per decomposition of the CUTLASS
stream-K kernels (auto = the launch's heuristic, dp = data-parallel, sk = stream-K, k2 / k4 =
split-K into 2 / 4 K slices; NFP16_SCHED and NFP8_SCHED). Prints, per family, shape and M, the
fastest candidate of each run and how much the best of all runs saves against `auto`, then the
geometric mean of that saving per family, as markdown.

    python3 bench/sched_probe.py DIR     # DIR holds auto.candidates.csv, dp.candidates.csv, ...

The question it answers (docs/KERNELS.md §2.7): would tuning the decomposition at run time (no new
kernel instantiations) close part of the mid-M gap?
"""
import math
import sys
from collections import defaultdict

import candidates

RUNS = ["auto", "dp", "sk", "k2", "k4"]


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    d = sys.argv[1]
    best = defaultdict(dict)  # (family, N, K, M) -> {run: (us, variant)}
    found = []
    for run, key, variant, us in candidates.runs(d, RUNS):
        if run not in found:
            found.append(run)
        if run not in best[key] or us < best[key][run][0]:
            best[key][run] = (us, variant)
    if "auto" not in found:
        sys.exit("sched_probe.py: no auto.candidates.csv in " + d)
    print("| family | N x K | M | " + " | ".join(found) + " | best / auto |")
    print("|---|---|---|" + "---|" * len(found) + "---|")
    gains = defaultdict(list)
    for key in sorted(best):
        fam, n, k, m = key
        row = best[key]
        if "auto" not in row:
            continue
        cells = [f"{row[r][0]:.1f} {row[r][1]}" if r in row else "-" for r in found]
        b = min(v[0] for v in row.values())
        ratio = b / row["auto"][0]
        gains[fam].append(ratio)
        print(f"| {fam} | {n} x {k} | {m} | " + " | ".join(cells) + f" | {ratio:.3f} |")
    print()
    for fam, g in sorted(gains.items()):
        gm = math.exp(sum(math.log(x) for x in g) / len(g))
        print(f"- {fam}: best of all decompositions / auto, geomean {gm:.3f}, min {min(g):.3f} "
              f"over {len(g)} points")


if __name__ == "__main__":
    main()
