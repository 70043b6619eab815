"""The paired comparisons and rank correlations that docs/findings.md quotes, from a committed run store.

Reads results/NAME.sqlite (Python's sqlite3, read-only; nothing else needed) and prints markdown:
- `table1`: each autoencoder's difference from the plain AE (same seed, so paired) in reconstruction
  (test PSNR, rFID on the classifier) and generation (FID and class accuracy of the samples, without and
  with guidance, per generator); MAR against dit on the same tokenizer; per aligned tokenizer run
  the Spearman rank correlation between the L_align and k-NN NLL series logged during training; and
  generators of another length kept in the store, against the sweep's on the same tokenizers.
- `ablations`: (a) the largest lambda against the smallest, per projection, paired by seed, with the
  Spearman correlation of each metric with lambda per seed; (b) each pair of projection operators at
  lambda 0.01, paired by seed, against the paper's ranking (random, then PCA, then average pooling);
  (c) generators of another length kept in the store, as for table1.
A verdict per comparison: "holds" when the paired difference has the expected sign in every seed and
its mean is more than twice its standard error; "does not hold" when the same is true of the opposite
sign; "inconclusive" otherwise.

- `toy`: per target, how far the free points' NLL fell, how close it came to the target's own
  samples', and how many mixture modes hold them.
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
        ae, g, seed = lab["autoencoder"], lab["model"], lab["seed"]
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
    generator_length(db, pts, "table1", lambda lab: lab["autoencoder"])


def ablations(db):
    pts = points(db, "ablations")
    tok, gen = defaultdict(dict), defaultdict(dict)
    for lab, runs in pts:
        key = (lab["prior.projection"], lab["tokenizer.lambda"])
        tok[key][lab["seed"]] = runs["tokenizer"]
        if "generator" in runs:
            gen[key][lab["seed"]] = runs["generator"]
    metrics = (
        # (name, table, key, sign expected of (larger lambda) - (smaller lambda))
        ("PSNR", tok, "test/psnr", -1),
        ("rFID", tok, "rfid/classifier", +1),
        ("L_align", tok, "align/l_align", -1),
        ("k-NN NLL", tok, "align/knn_nll", -1),
        ("FID w/o CFG", gen, "gen/fid_classifier", -1),
        ("FID w/ CFG", gen, "gen_cfg/fid_classifier", -1),
        ("class acc. w/ CFG", gen, "gen_cfg/class_acc_classifier", +1),
    )

    def values(table, metric, keys):
        return {k: {s: final(db, r, metric) for s, r in table.get(k, {}).items()} for k in keys}

    lambdas = sorted({lam for _, lam in tok})
    projections = sorted({p for p, _ in tok})
    lo, hi = lambdas[0], lambdas[-1]
    print(f"## ablations (a): lambda {hi} against lambda {lo} (paired by seed; paper Table 2b)\n")
    print("Expected (paper): larger lambda, worse reconstruction, lower L_align, easier generation. "
          "rho: Spearman correlation of the metric with lambda over the "
          f"{len(lambdas)} lambdas, per seed.\n")
    print("| projection | metric | expected | difference | verdict | rho per seed |")
    print("|---|---|---|---|---|---|")
    for proj in projections:
        for name, table, metric, sign in metrics:
            vals = values(table, metric, [(proj, lam) for lam in lambdas])
            d = paired(vals, (proj, lo), (proj, hi))
            if not d:
                continue
            seeds = sorted(set.intersection(*(set(v) for v in vals.values())))
            rhos = []
            for s in seeds:
                ys = [vals[(proj, lam)][s] for lam in lambdas]
                if all(y is not None for y in ys):
                    rhos.append(spearman(lambdas, ys))
            exp = "higher" if sign > 0 else "lower"
            rho = ", ".join(f"{r:+.1f}" for r in rhos)
            print(f"| {proj} | {name} | {exp} | {fmt(d)} | {verdict(d, sign)} | {rho} |")
    mid = 0.01 if 0.01 in lambdas else lambdas[len(lambdas) // 2]
    print(f"\n## ablations (b): projection operators at lambda {mid} (paired by seed; paper Table 2a)\n")
    print("Paper: FID w/o CFG random 11.89 < PCA 14.95 < avg. pooling 16.06, reconstruction within "
          "0.09 rFID. The verdict reads the expected sign as the paper's ranking.\n")
    print("| comparison | metric | expected | difference | verdict |")
    print("|---|---|---|---|---|")
    order = [p for p in ("random", "pca", "avgpool") if p in projections]
    for i, a in enumerate(order):
        for b in order[i + 1:]:
            for name, table, metric, _ in metrics:
                if metric.startswith("align/"):
                    continue  # measured in each projection's own space
                vals = values(table, metric, [(a, mid), (b, mid)])
                d = paired(vals, (a, mid), (b, mid))
                if not d:
                    continue
                if metric.startswith("gen"):
                    sign = +1 if "fid" in metric else -1
                    exp = ("higher" if sign > 0 else "lower") + f" ({a} better)"
                    word = verdict(d, sign)
                else:
                    exp = "about equal"
                    word = {"holds": f"{b} reconstructs worse", "does not hold": f"{b} reconstructs better",
                            "inconclusive": "no paired difference"}.get(
                        verdict(d, +1 if metric == "rfid/classifier" else -1), "n < 2")
                print(f"| {b} - {a} | {name} | {exp} | {fmt(d)} | {word} |")
    generator_length(db, pts, "ablations", lambda lab: f"{lab['prior.projection']}, lambda {lab['tokenizer.lambda']}")


def generator_length(db, pts, sweep, row):
    """Generators of another length kept in the store on the sweep's own tokenizers (an earlier
    preset's, outside the report): each against the sweep's generator whose configuration is the same
    but for `steps` (same kind, same tokenizer), paired by seed. `row(labels)` names the table row of a
    grid point."""
    mine = {}  # (tokenizer hash, generator kind) -> (labels, run, configuration)
    for lab, runs in pts:
        if "generator" in runs:
            (h,) = db.execute("SELECT config_hash FROM runs WHERE id = ?", (runs["tokenizer"],)).fetchone()
            (text,) = db.execute("SELECT config FROM runs WHERE id = ?", (runs["generator"],)).fetchone()
            cfg = json.loads(text)
            mine[(h, cfg.get("generator"))] = (lab, runs["generator"], cfg)
    own = {r for _, r, _ in mine.values()}
    other = defaultdict(lambda: defaultdict(dict))  # (kind, steps, sweep's steps) -> row -> seed -> runs
    for run, text in db.execute("SELECT id, config FROM runs WHERE stage = 'generator' AND status = 'finished'"):
        cfg = json.loads(text)
        key = (cfg.get("inputs", {}).get("tokenizer"), cfg.get("generator"))
        if run in own or key not in mine:
            continue
        lab, new, new_cfg = mine[key]
        if {k for k in cfg.keys() | new_cfg.keys() if cfg.get(k) != new_cfg.get(k)} != {"steps"}:
            continue  # differs in more than its length
        other[(cfg.get("generator"), cfg.get("steps"), new_cfg.get("steps"))][row(lab)][lab["seed"]] = (run, new)
    for (kind, steps, sweep_steps), cells in sorted(other.items()):
        print(f"\n## {sweep}: the same tokenizers with {steps}-step {kind} against the sweep's "
              f"{sweep_steps}-step {kind} ({sweep_steps} - {steps}, paired by seed)\n")
        print("| row | FID w/o CFG | FID w/ CFG | class acc. w/ CFG |")
        print("|---|---|---|---|")
        for key in sorted(cells):
            out = []
            for metric in ("gen/fid_classifier", "gen_cfg/fid_classifier", "gen_cfg/class_acc_classifier"):
                d = []
                for _, (old, new) in sorted(cells[key].items()):
                    a, b = final(db, new, metric), final(db, old, metric)
                    if a is not None and b is not None:
                        d.append(a - b)
                out.append(fmt(d))
            print(f"| {key} | {' | '.join(out)} |")


def toy(db):
    pts = points(db, "toy")
    runs = defaultdict(dict)  # target -> seed -> toy_align run
    for lab, r in pts:
        runs[lab["toy_prior.target"]][lab["seed"]] = r["toy_align"]
    print("## toy (e): free points on L_align alone, per target (paired by seed)\n")
    print("NLL under the true target density (nats, KDE of true samples). fall: points NLL - start NLL "
          "(expected lower); gap: points NLL - true-sample NLL (0 = as likely as the target's own "
          "samples); energy: the points' energy distance to the target, and two true samples' (floor).\n")
    print("| target | start NLL | points NLL | true NLL | fall | verdict | gap | energy (floor) | modes >= 5% | largest mode |")
    print("|---|---|---|---|---|---|---|---|---|---|")

    def ms(xs):
        xs = [x for x in xs if x is not None]
        if not xs:
            return "n/a"
        m = sum(xs) / len(xs)
        sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else float("nan")
        return f"{m:.2f} ± {sd:.2f}"

    for target in sorted(runs):
        by = runs[target]
        get = lambda key: {s: final(db, r, key) for s, r in by.items()}
        start, pts_nll, true = get("final/start_nll"), get("final/points_nll"), get("final/true_nll")
        fall = paired({"s": start, "p": pts_nll}, "s", "p")
        gap = paired({"t": true, "p": pts_nll}, "t", "p")
        energy, floor = get("final/energy_distance"), get("final/energy_distance_ref")
        modes = [v for v in get("final/modes_covered").values() if v is not None]
        share = get("final/largest_mode_share")
        print(f"| {target} | {ms(start.values())} | {ms(pts_nll.values())} | {ms(true.values())} | "
              f"{fmt(fall)} | {verdict(fall, -1)} | {fmt(gap)} | {ms(energy.values())} "
              f"({ms(floor.values())}) | {', '.join(f'{m:.0f}' for m in modes) or 'n/a'} | "
              f"{ms(share.values()) if modes else 'n/a'} |")


def main():
    for path in sys.argv[1:]:
        db = connect(path)
        names = [n for (n,) in db.execute("SELECT name FROM sweeps")]
        for name in names:
            {"table1": table1, "ablations": ablations, "toy": toy}.get(name, lambda _db: None)(db)
        print()


if __name__ == "__main__":
    main()
