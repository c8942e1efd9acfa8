#!/usr/bin/env python3
"""Collect the lm-eval runs of scripts/lm-eval.sh into <out>.json and <out>.md.

Besides the harness's own scores it compares precisions item by item (same MC choice, mean
|delta loglikelihood|, identical generations): that is what shows fp8 differs from fp16 yet
stays close, which equal headline scores alone would not.
"""
import argparse
import glob
import json
import platform
import re
import subprocess
from importlib.metadata import version
from pathlib import Path


def load_run(run_dir):
    results = json.load(open(sorted(glob.glob(f"{run_dir}/*/results_*.json"))[-1]))
    samples = {}
    for task in results["results"]:
        path = sorted(glob.glob(f"{run_dir}/*/samples_{task}_*.jsonl"))[-1]
        samples[task] = {d["doc_id"]: d for d in map(json.loads, open(path))}
    return results, samples


def mc_logliks(sample):
    return [float(r[0]) for r in sample["filtered_resps"]]


def compare(a, b):
    """Item-level agreement between two precisions' samples."""
    out = {}
    if "pystd_nextline_mc" in a:
        sa, sb = a["pystd_nextline_mc"], b["pystd_nextline_mc"]
        same, deltas = 0, []
        for i in sa:
            la, lb = mc_logliks(sa[i]), mc_logliks(sb[i])
            same += la.index(max(la)) == lb.index(max(lb))
            deltas += [abs(x - y) for x, y in zip(la, lb)]
        out["mc_same_choice"] = same / len(sa)
        out["mc_mean_abs_delta_loglik"] = sum(deltas) / len(deltas)
        out["mc_max_abs_delta_loglik"] = max(deltas)
        out["mc_identical_logliks"] = sum(d == 0 for d in deltas) / len(deltas)
    if "pystd_linecomp" in a:
        ga, gb = a["pystd_linecomp"], b["pystd_linecomp"]
        out["gen_identical_text"] = sum(ga[i]["filtered_resps"][0] == gb[i]["filtered_resps"][0] for i in ga) / len(ga)
    return out


def metric_value(text, name, precision):
    m = re.search(rf'^{name}{{precision="{precision}"}} (\S+)$', text, re.M)
    return float(m.group(1)) if m else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--commands", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    work = Path(args.work)

    def git(*a):
        return subprocess.run(["git", *a], capture_output=True, text=True).stdout.strip()
    commit = git("rev-parse", "HEAD")
    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))

    runs, samples = {}, {}
    for run_dir in sorted(work.glob("out-*")):
        precision = run_dir.name[len("out-"):]
        res, samples[precision] = load_run(run_dir)
        metrics = (work / f"metrics-{precision}.txt").read_text()
        runs[precision] = {
            "results": res["results"],
            "n_samples": res["n-samples"],
            "seconds": int((work / f"seconds-{precision}").read_text()),
            "server_steps": {p: metric_value(metrics, "nestedfp_steps_total", p) for p in ("fp16", "fp8")},
        }
    precisions = list(runs)
    comparison = compare(samples[precisions[0]], samples[precisions[1]]) if len(precisions) == 2 else {}
    record = {
        "model": args.model, "commit": commit, "dirty_tree": dirty,
        "commands": Path(args.commands).read_text().splitlines(),
        "versions": {"lm_eval": version("lm_eval"), "transformers": version("transformers"),
                     "python": platform.python_version()},
        "tasks": {"pystd_nextline_mc": "4-way choice of the real next line (same-indent distractors), chance 0.25",
                  "pystd_linecomp": "greedy completion of a cut line, stop at newline, exact match"},
        "runs": runs, "comparison": comparison,
    }
    Path(args.out + ".json").write_text(json.dumps(record, indent=2) + "\n")

    rows = [("pystd_nextline_mc", "acc"), ("pystd_nextline_mc", "acc_norm"), ("pystd_linecomp", "exact_match")]
    md = [f"# lm-eval on `nestedfp serve` — {Path(args.model).name}", "",
          f"Commit `{commit[:12]}`{' (with uncommitted changes)' if dirty else ''}; "
          f"lm_eval {record['versions']['lm_eval']}, transformers {record['versions']['transformers']} "
          "(`local-completions` model, tokenizer from the model directory, token-id prompts).",
          "Tasks in `eval/lm_eval/` (200 items built by `make_task.py` from the public pystd eval text): "
          "`pystd_nextline_mc` picks the real next line among 4 with the same indentation by loglikelihood "
          "(chance 0.25); `pystd_linecomp` completes a line cut before a word, greedy, stop at `\\n`, exact match.", "",
          "| task | metric | " + " | ".join(precisions) + " |", "|---|---|" + "---:|" * len(precisions)]
    for task, metric in rows:
        cells = []
        for p in precisions:
            r = runs[p]["results"].get(task, {})
            v, se = r.get(f"{metric},none"), r.get(f"{metric}_stderr,none")
            cells.append("—" if v is None else f"{v:.3f} ± {se:.3f}")
        md.append(f"| {task} | {metric} | " + " | ".join(cells) + " |")
    md += ["", "Server engine steps by precision (from /metrics, proving which path ran): " +
           "; ".join(f"{p} run: fp16 {runs[p]['server_steps']['fp16']:.0f}, fp8 {runs[p]['server_steps']['fp8']:.0f}"
                     for p in precisions) + ".",
           "Wall time of each lm_eval run: " + ", ".join(f"{p} {runs[p]['seconds']} s" for p in precisions) + "."]
    if comparison:
        c = comparison
        md += ["", f"Item by item, {precisions[1]} vs {precisions[0]}: same multiple-choice answer on "
               f"{c['mc_same_choice']:.1%} of items; loglikelihoods differ by {c['mc_mean_abs_delta_loglik']:.4f} nats "
               f"on average (max {c['mc_max_abs_delta_loglik']:.4f}; {c['mc_identical_logliks']:.1%} bit-identical); "
               f"identical generated text on {c['gen_identical_text']:.1%} of line completions."]
    md += ["", "Reproduce: `bash scripts/lm-eval.sh` (exact commands it ran:)", "", "```"] + record["commands"] + ["```", ""]
    Path(args.out + ".md").write_text("\n".join(md))
    print(f"summarize: wrote {args.out}.json and {args.out}.md")


if __name__ == "__main__":
    main()
