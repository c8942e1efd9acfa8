#!/usr/bin/env python3
"""Stall breakdown per kernel from Nsight Compute raw-page CSV exports (scripts/ncu-stalls.sh).

Input: `ncu --csv --page raw ... nestedfp bench kernels --shapes NxK --m M` saved as
`raw-<NxK>-m<M>.csv` (optionally gzipped): a header row starting with "ID", a row of units, then
one row per profiled kernel. Prints one table of throughputs (duration, DRAM / L2 / L1 / SM as
% of peak, tensor and ALU pipes, active cycles per SM, issued instructions per scheduler cycle) and one of the stall reasons:
warp cycles stalled per issued instruction, by reason (`smsp__average_warps_issue_stalled_<reason>
_per_issue_active.ratio`), the largest first. What a reason means: the Nsight Compute Kernel
Profiling Guide, "Warp Scheduler States".

    python3 bench/ncu_stalls.py OUT/raw-*.csv > bench/results/<date>-h200-ncu-stalls.md
"""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ncu_summary import config, csv_from_id, family  # noqa: E402

STALL = re.compile(r"^smsp__average_warps_issue_stalled_(\w+?)_per_issue_active\.ratio$")
# (column title, metric names tried in order: ncu versions name some differently)
THROUGHPUT = [
    ("us", ["gpu__time_duration.sum"]),
    ("DRAM %", ["gpu__dram_throughput.avg.pct_of_peak_sustained_elapsed",
                "dram__throughput.avg.pct_of_peak_sustained_elapsed"]),
    ("L2 %", ["lts__throughput.avg.pct_of_peak_sustained_elapsed"]),
    ("L1 %", ["l1tex__throughput.avg.pct_of_peak_sustained_active",
              "l1tex__throughput.avg.pct_of_peak_sustained_elapsed"]),
    ("SM %", ["sm__throughput.avg.pct_of_peak_sustained_elapsed"]),
    ("tensor pipe %", ["sm__pipe_tensor_cycles_active.avg.pct_of_peak_sustained_active"]),
    ("ALU pipe %", ["sm__pipe_alu_cycles_active.avg.pct_of_peak_sustained_active"]),
    ("SM active cycles", ["sm__cycles_active.avg"]),
    ("issued / cycle", ["smsp__issue_active.avg.per_cycle_active"]),
]


def number(v):
    try:
        return float(v.replace(",", ""))
    except (ValueError, AttributeError):
        return float("nan")


def read(path):
    rows = csv_from_id(path)
    if len(rows) < 2:
        return []
    h, units = rows[0], rows[1]
    out = []
    for r in rows[2:]:
        if len(r) != len(h):
            continue  # the benchmark's own output between ncu's lines
        out.append({"name": r[h.index("Kernel Name")],
                    "m": {k: (v, units[i]) for i, (k, v) in enumerate(zip(h, r))}})
    return out


def value(k, names):
    for n in names:
        if n in k["m"]:
            v, unit = k["m"][n]
            x = number(v)
            if n == "gpu__time_duration.sum":
                x = x / 1e3 if unit == "nsecond" or unit == "ns" else x * 1e3 if unit in ("msecond", "ms") else x
            return x
    return float("nan")


def main(paths):
    if not paths:
        sys.exit("usage: ncu_stalls.py raw-<NxK>-m<M>.csv ...")
    kernels = []
    for p in paths:
        m = re.search(r"raw-(\d+x\d+)-m(\d+)", os.path.basename(p))
        shape, tokens = (m.group(1), m.group(2)) if m else (os.path.basename(p), "")
        for k in read(p):
            fam = family(k["name"])
            if fam is not None:
                kernels.append((shape, tokens, fam, config(k["name"]), k))
    if not kernels:
        sys.exit("ncu_stalls.py: no profiled kernels in " + " ".join(paths))
    print("## Throughput\n")
    print("| shape | M | kernel | configuration | " + " | ".join(t for t, _ in THROUGHPUT) + " |")
    print("|---|---|---|---|" + "---|" * len(THROUGHPUT))
    for shape, tokens, fam, cfg, k in kernels:
        cells = [f"{value(k, names):.2f}" if t.startswith("issued") else f"{value(k, names):.0f}" if t.startswith("SM active") else f"{value(k, names):.1f}"
                 for t, names in THROUGHPUT]
        print(f"| {shape} | {tokens} | {fam} | {cfg} | " + " | ".join(cells) + " |")
    print("\n## Stall reasons (warp cycles per issued instruction; the five largest)\n")
    print("| shape | M | kernel | configuration | total | largest reasons |")
    print("|---|---|---|---|---|---|")
    for shape, tokens, fam, cfg, k in kernels:
        stalls = {}
        for name, (v, _) in k["m"].items():
            s = STALL.match(name)
            if s and not s.group(1).endswith("_not_issued"):
                stalls[s.group(1)] = number(v)
        total = sum(x for x in stalls.values() if x == x)
        top = sorted(((x, r) for r, x in stalls.items() if x == x), reverse=True)[:5]
        print(f"| {shape} | {tokens} | {fam} | {cfg} | {total:.1f} | "
              + ", ".join(f"{r} {x:.1f}" for x, r in top) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
