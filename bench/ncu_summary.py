#!/usr/bin/env python3
"""One Markdown table from Nsight Compute CSV exports of `nestedfp bench kernels` runs.

Each input is `ncu --csv --page details ... nestedfp bench kernels --shapes NxK --m M` saved as
`ncu-<NxK>-m<M>.csv` (the NCU_POINTS stage of scripts/device-chain.sh; docs/KERNELS.md §2.7),
optionally gzipped. Prints, per
profiled kernel: family (cuBLAS FP16, cuBLASLt FP8, NestedFP16, NestedFP8, quantize), CUTLASS tile
/ stages / schedule, duration (cold L2: ncu flushes caches between passes), DRAM and SM
throughput as % of peak, issue-slot use, achieved occupancy and L2 hit rate.

    python3 bench/ncu_summary.py build/chain/ncu-*.csv > bench/results/<date>-h200-ncu.md
    python3 bench/ncu_summary.py --rules build/chain/ncu-*.csv   # also ncu's rule texts (with
                                                                 # --set full: the stall reasons)
"""
import csv
import gzip
import os
import re
import sys

FIELDS = [
    ("Duration", "us"),
    ("DRAM Throughput", "DRAM %"),
    ("Compute (SM) Throughput", "SM %"),
    ("Issue Slots Busy", "issue %"),
    ("Achieved Occupancy", "occupancy %"),
    ("L2 Hit Rate", "L2 hit %"),
    ("Registers Per Thread", "regs"),
    ("Grid Size", "grid"),
]


def family(name):
    if "fill_kernel" in name:
        return None  # the benchmark's own data fill
    if "NestedFp16" in name:
        return "NestedFP16"
    if "float_e4m3_t" in name and "cutlass" in name:
        return "NestedFP8 (CUTLASS FP8)"
    if "quant_kernel" in name:
        return "quantize (per token)"
    if "splitKreduce" in name:
        return "cuBLAS split-K reduce"
    if name.startswith("nvjet") and "qq" in name.split("_")[2]:
        return "cuBLASLt FP8"
    if name.startswith("nvjet"):
        return "cuBLAS FP16"
    if "mma_stream" in name:
        return "mma stream"
    return name[:40]


def config(name):
    if not name.startswith("void cutlass"):
        m = re.match(r"nvjet_sm90_\w+?_(\d+x\d+_\d+x\d+)", name)
        return m.group(1) if m else ""
    tile = re.search(r">, cute::tuple<cute::C<(\d+)>, cute::C<(\d+)>, cute::C<(\d+)>>", name)
    stages = re.search(r"Mainloop\w*?<(\d+),", name)
    # The mainloop's first template tuple after the stage count is the cluster shape.
    cluster = re.search(r"Mainloop\w*?<\d+, cute::tuple<cute::C<(\d+)>, cute::C<(\d+)>, cute::C<1>>", name)
    sched = "stream-K" if "StreamK" in name else ""
    for s in ("Pingpong", "Cooperative"):
        if "KernelTmaWarpSpecialized" + s in name:
            sched = (s.lower() + (" stream-K" if sched else "")).strip()
    parts = []
    if tile:
        parts.append("x".join(tile.groups()))
    if stages:
        parts.append(f"{stages.group(1)} stages")
    if cluster and cluster.groups() != ("1", "1"):
        parts.append("cluster " + "x".join(cluster.groups()))
    if sched:
        parts.append(sched)
    return ", ".join(parts)


def number(v):
    return float(v.replace(",", "")) if v not in ("", "n/a") else float("nan")


def csv_from_id(path):
    """The rows of an `ncu --csv` export (optionally gzipped) from its header row ("ID", ...) on,
    skipping the profiled program's own output before it; [] when there is none."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", newline="") as f:
        rows = list(csv.reader(f))
    head = next((i for i, r in enumerate(rows) if r and r[0] == "ID"), None)
    return [] if head is None else rows[head:]


def read(path):
    rows = csv_from_id(path)
    if not rows:
        return []
    h = rows[0]
    head = 0
    kernels = {}
    rule_col = h.index("Rule Description") if "Rule Description" in h else None
    for r in rows[head + 1:]:
        d = dict(zip(h, r))
        k = kernels.setdefault(d["ID"], {"name": d["Kernel Name"], "m": {}, "rules": []})
        k["m"][d["Metric Name"]] = (d["Metric Value"], d["Metric Unit"])
        # Rule rows carry their text in the columns after the metric (not named in the header).
        text = r[rule_col] if rule_col is not None and len(r) > rule_col else (r[17] if len(r) > 17 else "")
        if text and (d["Section Name"], text) not in k["rules"]:
            k["rules"].append((d["Section Name"], text))
    return list(kernels.values())


def main(args):
    rules = "--rules" in args
    paths = [a for a in args if a != "--rules"]
    if not paths:
        sys.exit("usage: ncu_summary.py [--rules] ncu-<NxK>-m<M>.csv ...")
    notes = []
    print("| shape | M | kernel | configuration | " + " | ".join(t for _, t in FIELDS) + " |")
    print("|---|---|---|---|" + "---|" * len(FIELDS))
    for p in paths:
        m = re.search(r"ncu-(\d+x\d+)-m(\d+)", os.path.basename(p))
        shape, tokens = (m.group(1), m.group(2)) if m else (os.path.basename(p), "")
        for k in read(p):
            fam = family(k["name"])
            if fam is None:
                continue
            cells = []
            for metric, _ in FIELDS:
                v, unit = k["m"].get(metric, ("", ""))
                x = number(v) if v else float("nan")
                if metric == "Duration":
                    x = x / 1e3 if unit == "ns" else x * 1e3 if unit == "ms" else x
                    cells.append(f"{x:.1f}")
                elif metric in ("Registers Per Thread", "Grid Size"):
                    cells.append(f"{x:.0f}")
                else:
                    cells.append(f"{x:.1f}")
            print(f"| {shape} | {tokens} | {fam} | {config(k['name'])} | " + " | ".join(cells) + " |")
            if rules:
                notes.append((f"{shape} M={tokens} {fam} {config(k['name'])}", k["rules"]))
    for title, rs in notes:
        print(f"\n### {title}\n")
        for section, text in rs:
            print(f"- {section}: {text}")


if __name__ == "__main__":
    main(sys.argv[1:])
