"""Reading `nestedfp tune`'s `<out>.candidates.csv` files (one row per timed candidate:
shape,N,K,M,family,variant,us,heuristic,chosen) for the probe summaries (mma_splits.py,
sched_probe.py), which compare one tune run per setting."""
import csv
import glob
import gzip
import os


def runs(directory, names):
    """Yields (run, key, variant, us) for every row of DIR/<run>.candidates.csv, or of a committed
    copy DIR/<prefix>-<run>.candidates.csv.gz (bench/results/<probe>/<date>-<run>...), in the
    order of `names`; key = (family, N, K, M). Missing runs are skipped."""
    for run in names:
        found = [os.path.join(directory, run + ".candidates.csv" + gz) for gz in ("", ".gz")]
        found += sorted(glob.glob(os.path.join(directory, "*-" + run + ".candidates.csv*")))
        found = [p for p in found if os.path.exists(p)]
        if not found:
            continue
        path = found[0]
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rt", newline="") as f:
            for r in csv.DictReader(f):
                key = (r["family"], int(r["N"]), int(r["K"]), int(r["M"]))
                yield run, key, r["variant"], float(r["us"])
