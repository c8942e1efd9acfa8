#!/usr/bin/env python3
"""Builds bench/results/pystd-16m-perplexity.{md,json} from `nestedfp eval ppl --json` outputs.

usage: bench/ppl_table.py RESULT_DIR COMMIT MACHINE
RESULT_DIR holds fp16.json nested-none.json nested-channel.json fp8-per-tensor.json
fp8-per-channel.json (one `eval ppl --chunks 400 --json` object each)."""
import json, math, pathlib, sys

MODES = [  # (file stem, REFERENCE.json key, label, eval ppl flags)
    ("fp16", "fp16", "FP16", "--precision fp16"),
    ("nested-none", "nested_fp8", "NestedFP8, scale none", "--precision fp8 --nested-scale none"),
    ("nested-channel", None, "NestedFP8, scale channel", "--precision fp8 --nested-scale channel"),
    ("fp8-per-tensor", "fp8_per_tensor", "FP8 per-tensor", "--precision fp8-per-tensor"),
    ("fp8-per-channel", "fp8_per_channel", "FP8 per-channel", "--precision fp8-per-channel"),
]
CMD = ("build/acc/nestedfp eval ppl models/pystd-16m --text ../shared/data/eval/pystd_public.txt.gz "
       "--chunks 400 {flags} --json")

def main():
    src, commit, machine = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    root = pathlib.Path(__file__).resolve().parent.parent
    ref = json.loads((root / "models/pystd-16m/REFERENCE.json").read_text())["perplexity"]["results"]
    rows, out = [], {"model": "models/pystd-16m", "text": "../shared/data/eval/pystd_public.txt.gz",
                     "chunks": 400, "commit": commit, "machine": machine, "modes": []}
    for stem, key, label, flags in MODES:
        r = json.loads((src / f"{stem}.json").read_text())
        assert r["chunks"] == 400, f"{stem}: {r['chunks']} chunks"
        first8 = r["chunk_nll"][:8]
        ref_ppl = ref[key]["ppl"] if key else None
        ref8 = ref[key]["chunk_mean_nll_first8"] if key else None
        out["modes"].append({"mode": stem, "label": label, "command": CMD.format(flags=flags),
                             "ppl": r["ppl"], "mean_nll": r["mean_nll"], "tokens": r["tokens"],
                             "seconds": r["seconds"], "backend": r["backend"],
                             "first8_mean_nll": sum(first8) / 8, "reference_key": key,
                             "reference_ppl": ref_ppl,
                             "reference_first8_mean_nll": sum(ref8) / 8 if ref8 else None})
        rows.append(out["modes"][-1])
    by = {m["mode"]: m for m in rows}
    goal = by["nested-channel"]["ppl"] <= by["fp8-per-channel"]["ppl"]
    out["goal_nested_channel_at_or_below_fp8_per_channel"] = goal
    lines = ["# pystd-16m perplexity: FP16, NestedFP8 and FP8 baselines on the same engine", "",
             f"Public text, REFERENCE.json protocol (400 chunks of 512 tokens, each fed alone, "
             f"{rows[0]['tokens']} scored targets). Commit `{commit}`; machine: {machine}.", "",
             "| mode | ppl (this engine) | ppl (REFERENCE.json) | Δ vs ref | Δ ppl vs FP16 | first-8 mean NLL | ref first-8 |",
             "|---|---|---|---|---|---|---|"]
    f16 = by["fp16"]["ppl"]
    for m in rows:
        rp = f"{m['reference_ppl']:.4f}" if m["reference_ppl"] else "—"
        d = f"{m['ppl'] - m['reference_ppl']:+.4f}" if m["reference_ppl"] else "—"
        r8 = f"{m['reference_first8_mean_nll']:.5f}" if m["reference_first8_mean_nll"] else "—"
        lines.append(f"| {m['label']} | {m['ppl']:.4f} | {rp} | {d} | {m['ppl'] - f16:+.4f} | "
                     f"{m['first8_mean_nll']:.5f} | {r8} |")
    lines += ["", f"Goal (NestedFP8 with channel scales at or below per-channel FP8): "
              f"**{'met' if goal else 'not met'}** — NestedFP8 channel {by['nested-channel']['ppl']:.4f} vs "
              f"FP8 per-channel {by['fp8-per-channel']['ppl']:.4f} "
              f"({by['nested-channel']['ppl'] - by['fp8-per-channel']['ppl']:+.4f}).", "",
              "REFERENCE.json has no NestedFP8-channel entry (Hugging Face reference on an H200).", "",
              "Why channel scales do not help here: a power-of-two row scale 2^k_r only moves weights to "
              "another binade, and E4M3 has the same 3-bit relative precision in every normal binade, so "
              "it changes only weights that fall into E4M3's subnormal range unscaled (|w| < 2^-14). "
              "`nestedfp eval layers` shows it: mean relative layer-output error over the 42 linears "
              "(1 chunk) is 0.025505 for NestedFP8 none and channel alike (per-layer differences ~1e-7), "
              "0.025453 for FP8 per-tensor and 0.025181 for FP8 per-channel, whose max-abs scale keeps "
              "each row's largest weight exact (largest gain on k_proj). The none/channel ppl gap "
              "(+0.0016) is the chaotic effect of per-token activation rounding, the size of the "
              "engine-vs-reference differences (±0.002).", "",
              "Commands (one after another, release build, CPU backend):", "", "```"]
    lines += [m["command"] for m in rows] + ["```", ""]
    dst = root / "bench/results"
    (dst / "pystd-16m-perplexity.json").write_text(json.dumps(out, indent=2) + "\n")
    (dst / "pystd-16m-perplexity.md").write_text("\n".join(lines))
    print("\n".join(lines))

if __name__ == "__main__":
    main()
