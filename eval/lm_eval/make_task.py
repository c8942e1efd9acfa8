#!/usr/bin/env python3
"""Build the small lm-eval tasks kept in this folder from the public pystd eval text.

Deterministic (fixed seed, no network): running it again must give byte-identical
pystd_nextline.jsonl. Each item is one position in the text:
  context   the up to 16 lines before the target line (at most 800 characters), ending in "\n"
  choices   the real next line and 3 distractor lines with the same indentation taken from
            elsewhere in the text (multiple choice, chance = 25%)
  label     index of the real line in choices
  prefix    the target line cut before a word in its second half (line-completion task)
  rest      what follows prefix on that line (exact-match target, generation stops at "\n")
Usage: python3 eval/lm_eval/make_task.py [--text PATH] [--items N] [--out PATH]
"""
import argparse
import gzip
import json
import random
import re
from collections import Counter, defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_TEXT = str(HERE.parents[2] / "shared/data/eval/pystd_public.txt.gz")  # ../shared from the repo
SEED = 20261122
CONTEXT_LINES = 16
CONTEXT_CHARS = 800


def indent_of(line):
    return line[: len(line) - len(line.lstrip(" "))]


def usable(line):
    body = line.strip()
    # Lines that carry content: not blank, not comments/docstring fragments, not too long.
    return (15 <= len(body) <= 80 and not body.startswith(("#", '"', "'")) and "\t" not in line
            and line.isascii())


def cut_points(line):
    """Cuts before a space-preceded word in the second half of the line (natural token boundaries)."""
    start = len(indent_of(line))
    body_mid = start + (len(line) - start) // 2
    return [m.start() for m in re.finditer(r" [A-Za-z_]", line) if m.start() >= max(body_mid, start + 1)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--text", default=DEFAULT_TEXT)
    ap.add_argument("--items", type=int, default=200)
    ap.add_argument("--out", default=str(HERE / "pystd_nextline.jsonl"))
    args = ap.parse_args()

    with gzip.open(args.text, "rt", encoding="utf-8") as f:
        lines = f.read().split("\n")
    counts = Counter(lines)
    rng = random.Random(SEED)

    # Distractor pools by indentation: usable lines that occur once in the whole text.
    pool = defaultdict(list)
    for line in lines:
        if usable(line) and counts[line] == 1:
            pool[indent_of(line)].append(line)

    candidates = []
    for i in range(CONTEXT_LINES, len(lines)):
        line = lines[i]
        if not (usable(line) and counts[line] == 1 and len(pool[indent_of(line)]) > 100
                and cut_points(line)):
            continue
        ctx = lines[i - CONTEXT_LINES:i]
        if sum(1 for c in ctx if c.strip()) < 4:
            continue
        candidates.append(i)

    # Spread items over the whole text: one random candidate from each of N equal slices.
    items = []
    step = len(candidates) / args.items
    for n in range(args.items):
        lo, hi = int(n * step), int((n + 1) * step)
        i = candidates[rng.randrange(lo, hi)]
        line = lines[i]
        ctx = lines[i - CONTEXT_LINES:i]
        while len("\n".join(ctx)) + 1 > CONTEXT_CHARS:
            ctx = ctx[1:]
        context = "\n".join(ctx) + "\n"
        nearby = set(lines[max(0, i - 200):i + 200])
        distractors = []
        while len(distractors) < 3:
            d = rng.choice(pool[indent_of(line)])
            if d != line and d not in nearby and d not in distractors:
                distractors.append(d)
        label = rng.randrange(4)
        choices = distractors[:label] + [line] + distractors[label:]
        cut = rng.choice(cut_points(line))
        items.append({"id": n, "line_no": i + 1, "context": context, "choices": choices,
                      "label": label, "prefix": line[:cut], "rest": line[cut:]})

    with open(args.out, "w", encoding="utf-8") as f:
        for it in items:
            f.write(json.dumps(it, ensure_ascii=False) + "\n")
    print(f"make_task: {len(items)} items from {len(candidates)} candidates -> {args.out}")


if __name__ == "__main__":
    main()
