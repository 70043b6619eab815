"""The paired comparisons and rank correlations that docs/findings.md quotes, from a committed run store.

Reads results/NAME.sqlite (Python's sqlite3, read-only; nothing else needed) and prints markdown:
- `table1`: each autoencoder's difference from the plain AE (same seed, so paired) in reconstruction
  (test PSNR, rFID on the classifier) and generation (FID and class accuracy of the samples, without and
  with guidance, per generator); MAR against dit on the same tokenizer; and per aligned tokenizer run
  the Spearman rank correlation between the L_align and k-NN NLL series logged during training.
- `ablations`: each lambda's and projection's difference from the paper's default (lambda 0.01, random
  projection), paired by seed.
A verdict per comparison: "holds" when the paired difference has the expected sign in every seed and
its mean is more than twice its standard error; "does not hold" when the same is true of the opposite
sign; "inconclusive" otherwise.

Usage: python3 scripts/findings.py results/table1.sqlite [results/ablations.sqlite ...]
"""
import json
import math
import sqlite3
import sys
from collections import defaultdict


def connect(path):
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def points(db, sweep):
    """[(labels, {stage: run_id})] of the sweep's grid points."""
    by_point = defaultdict(dict)
    labels = {}
    for point, lab, stage, run in db.execute(
        "SELECT point, labels, stage, run_id FROM sweep_points WHERE sweep = ?", (sweep,)
    ):
        by_point[point][stage] = run
        labels[point] = json.loads(lab)
    return [(labels[p], by_point[p]) for p in sorted(by_point)]


def final(db, run, key):
    row = db.execute(
        "SELECT value FROM metrics WHERE run_id = ? AND key = ? ORDER BY step DESC LIMIT 1",
        (run, key),
    ).fetchone()
    return None if row is None or row[0] is None else float(row[0])


def series(db, run, key):
    return [v for _, v in db.execute(
        "SELECT step, value FROM metrics WHERE run_id = ? AND key = ? ORDER BY step", (run, key)
    )]


def ranks(xs):
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    r = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for k in range(i, j + 1):
            r[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return r


def spearman(a, b):
    ra, rb = ranks(a), ranks(b)
    ma, mb = sum(ra) / len(ra), sum(rb) / len(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    va = math.sqrt(sum((x - ma) ** 2 for x in ra))
    vb = math.sqrt(sum((y - mb) ** 2 for y in rb))
    return cov / (va * vb) if va > 0 and vb > 0 else float("nan")


def verdict(diffs, expected_sign):
    """The rule of the module docstring; `expected_sign` +1 or -1."""
    n = len(diffs)
    if n < 2:
        return "inconclusive (n < 2)"
    mean = sum(diffs) / n
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
    se = sd / math.sqrt(n)
    for sign, word in ((expected_sign, "holds"), (-expected_sign, "does not hold")):
        if all(d * sign > 0 for d in diffs) and abs(mean) > 2 * se:
            return word
    return "inconclusive"


def fmt(diffs):
    n = len(diffs)
    if n == 0:
        return "n/a (no finished pair)"
    mean = sum(diffs) / n
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1)) if n > 1 else float("nan")
    per = ", ".join(f"{d:+.3g}" for d in diffs)
    return f"{mean:+.3g} ± {sd:.2g} (n = {n}: {per})"


def paired(values, base, other):
    """Differences other - base over the seeds both have."""
    seeds = sorted(set(values[base]) & set(values[other]))
    return [
        values[other][s] - values[base][s]
        for s in seeds
        if values[other][s] is not None and values[base][s] is not None
    ]


def table1(db):
    pts = points(db, "table1")
    tok = defaultdict(dict)  # autoencoder -> seed -> tokenizer run
    gen = defaultdict(dict)  # (autoencoder, generator) -> seed -> generator run
    for lab, runs in pts:
        ae, g, seed = lab["autoencoder"], lab["generator.generator"], lab["seed"]
        tok[ae][seed] = runs["tokenizer"]
        gen[(ae, g)][seed] = runs["generator"]
    rows = list(tok)
    print("## table1: each autoencoder against the plain AE (row - AE, paired by seed)\n")
    print("| autoencoder | metric | expected | difference | verdict |")
    print("|---|---|---|---|---|")
    recon = [("test/psnr", "PSNR", -1), ("rfid/classifier", "rFID", +1)]
    for ae in rows[1:]:
        for key, name, sign in recon:
            vals = {r: {s: final(db, run, key) for s, run in tok[r].items()} for r in ("AE", ae)}
            d = paired(vals, "AE", ae)
            exp = "lower" if sign < 0 else "higher"
            print(f"| {ae} | {name} | {exp} (worse) | {fmt(d)} | {verdict(d, sign)} |")
        for g in ("mar", "dit"):
            for key, name, sign in (
                ("gen/fid_classifier", f"{g} FID", -1),
                ("gen_cfg/fid_classifier", f"{g} FID w/ CFG", -1),
                ("gen/class_acc_classifier", f"{g} class acc.", +1),
                ("gen_cfg/class_acc_classifier", f"{g} class acc. w/ CFG", +1),
            ):
                vals = {r: {s: final(db, run, key) for s, run in gen[(r, g)].items()} for r in ("AE", ae)}
                d = paired(vals, "AE", ae)
                exp = "lower (better)" if sign < 0 else "higher (better)"
                print(f"| {ae} | {name} | {exp} | {fmt(d)} | {verdict(d, sign)} |")
    print("\n## table1: MAR against dit on the same tokenizer (mar - dit, paired by seed)\n")
    print("| autoencoder | metric | difference |")
    print("|---|---|---|")
    for ae in rows:
        for key, name in (("gen/fid_classifier", "FID"), ("gen_cfg/fid_classifier", "FID w/ CFG"),
                          ("gen/class_acc_classifier", "class acc."),
                          ("gen_cfg/class_acc_classifier", "class acc. w/ CFG")):
            vals = {g: {s: final(db, run, key) for s, run in gen[(ae, g)].items()} for g in ("mar", "dit")}
            print(f"| {ae} | {name} | {fmt(paired(vals, 'dit', 'mar'))} |")
    print("\n## table1: L_align against the k-NN NLL during training (Spearman rank correlation per run)\n")
    print("| autoencoder | seed | points | rho |")
    print("|---|---|---|---|")
    for ae in rows:
        for seed, run in sorted(tok[ae].items()):
            a, b = series(db, run, "align/l_align"), series(db, run, "align/knn_nll")
            if len(a) >= 3 and len(a) == len(b):
                print(f"| {ae} | {seed} | {len(a)} | {spearman(a, b):+.2f} |")


def ablations(db):
    pts = points(db, "ablations")
    tok, gen = defaultdict(dict), defaultdict(dict)
    for lab, runs in pts:
        key = (lab["prior.projection"], lab["tokenizer.lambda"])
        tok[key][lab["seed"]] = runs["tokenizer"]
        if "generator" in runs:
            gen[key][lab["seed"]] = runs["generator"]
    base = ("random", 0.01)
    print("## ablations: against lambda 0.01 with the random projection (setting - default, paired by seed)\n")
    print("| projection | lambda | metric | difference |")
    print("|---|---|---|---|")
    for key in sorted(tok):
        if key == base:
            continue
        for name, table, metric in (("PSNR", tok, "test/psnr"), ("rFID", tok, "rfid/classifier"),
                                    ("L_align", tok, "align/l_align"),
                                    ("FID w/o CFG", gen, "gen/fid_classifier"),
                                    ("FID w/ CFG", gen, "gen_cfg/fid_classifier")):
            if key not in table or base not in table:
                continue
            vals = {k: {s: final(db, r, metric) for s, r in table[k].items()} for k in (base, key)}
            print(f"| {key[0]} | {key[1]} | {name} | {fmt(paired(vals, base, key))} |")


def main():
    for path in sys.argv[1:]:
        db = connect(path)
        names = [n for (n,) in db.execute("SELECT name FROM sweeps")]
        for name in names:
            {"table1": table1, "ablations": ablations}.get(name, lambda _db: None)(db)
        print()


if __name__ == "__main__":
    main()
