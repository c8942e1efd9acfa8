"""Reading `nestedfp tune`'s `<out>.candidates.csv` files (one row per timed candidate:
shape,N,K,M,family,variant,us,heuristic,chosen) for the probe summaries (mma_splits.py,
sched_probe.py), which compare one tune run per setting."""
import csv
import gzip
import os


def runs(directory, names):
    """Yields (run, key, variant, us) for every row of DIR/<run>.candidates.csv[.gz] that exists,
    in the order of `names`; key = (family, N, K, M). Missing runs are skipped."""
    for run in names:
        path = os.path.join(directory, run + ".candidates.csv")
        if not os.path.exists(path) and os.path.exists(path + ".gz"):
            path += ".gz"
        if not os.path.exists(path):
            continue
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rt", newline="") as f:
            for r in csv.DictReader(f):
                key = (r["family"], int(r["N"]), int(r["K"]), int(r["M"]))
                yield run, key, r["variant"], float(r["us"])
