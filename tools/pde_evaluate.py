#!/usr/bin/env python3
"""The paired evaluation table for `equireg pde` runs and tools/pde_baselines.py.

    python tools/pde_evaluate.py RUN/metrics.csv RUN/baselines/metrics.csv \
        --pair equireg-dps --pair dps-interp_nearest_solve --out RUN/table.md
    python tools/pde_evaluate.py A/metrics.csv=steps50: B/metrics.csv=steps100: \
        --pair "steps100:dps - steps50:dps"
    python tools/pde_evaluate.py --self-test

Input: one or more metrics.csv files with the columns case, index, method, rel_l2_a, rel_l2_u,
error_rate_a (error_rate_a may be empty: a non-Darcy problem). `FILE=PREFIX` prefixes that file's
method names (to tell apart runs whose methods share a name); a method that occurs in two files
without a prefix is refused, never merged. Rows are matched across methods by (case, index).

Output (stdout, and --out as markdown):
1. per method: the number of cases and, per metric, the mean over cases +- its standard error
   (sample sd / sqrt(n));
2. per --pair A-B (also written "A - B" or "A,B"): over the cases present for both methods only,
   the mean of the per-case difference A - B, its standard error, a 95 % t-interval
   (mean +- t_{0.975, n-1} SE) and a 95 % percentile bootstrap interval (--bootstrap resamples of
   the cases, seeded by --bootstrap-seed), per metric. Negative differences mean A has the lower
   error. Needs numpy and scipy.
"""
import argparse
import csv
import math
import os
import sys
import tempfile

import numpy as np
from scipy import stats

METRICS = ["rel_l2_a", "rel_l2_u", "error_rate_a"]


def read_csvs(specs):
    """{method: {(case, index): {metric: float or None}}} from FILE[=PREFIX] specs."""
    table, origin = {}, {}
    for spec in specs:
        path, prefix = (spec.rsplit("=", 1) + [""])[:2] if "=" in spec and not os.path.exists(spec) else (spec, "")
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        if rows and not {"case", "index", "method"} <= set(rows[0]):
            raise SystemExit(f"{path}: needs the columns case, index, method")
        seen_here = set()
        for r in rows:
            m = prefix + r["method"]
            if m in origin and origin[m] != path:
                raise SystemExit(f"method {m!r} occurs in {origin[m]} and {path}: give one of them a prefix "
                                 f"(FILE=PREFIX)")
            origin[m] = path
            key = (r["case"], int(r["index"]))
            if (m, key) in seen_here:
                raise SystemExit(f"{path}: method {m} has case {key} twice")
            seen_here.add((m, key))
            table.setdefault(m, {})[key] = {k: (float(r[k]) if r.get(k, "") not in ("", None) else None)
                                            for k in METRICS}
    return table


def parse_pair(text, methods):
    for sep in (" - ", ","):
        if sep in text:
            a, b = (s.strip() for s in text.split(sep, 1))
            return a, b
    # a single '-': try every split point for one that names two known methods
    cands = [(text[:i], text[i + 1:]) for i, ch in enumerate(text) if ch == "-"]
    good = [(a, b) for a, b in cands if a in methods and b in methods]
    if len(good) != 1:
        raise SystemExit(f"--pair {text!r}: write it as 'A - B' or 'A,B' (known methods: {', '.join(methods)})")
    return good[0]


def mean_se(v):
    v = np.asarray(v, dtype=np.float64)
    n = len(v)
    se = float(v.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
    return float(v.mean()), se


def paired(da, db, metric, boot, seed):
    keys = sorted(k for k in set(da) & set(db) if da[k][metric] is not None and db[k][metric] is not None)
    if not keys:
        return None
    d = np.array([da[k][metric] - db[k][metric] for k in keys])
    n = len(d)
    m, se = mean_se(d)
    if n > 1:
        t = float(stats.t.ppf(0.975, n - 1))
        tci = (m - t * se, m + t * se)
        rng = np.random.default_rng(seed)
        means = d[rng.integers(0, n, size=(boot, n))].mean(1)
        bci = (float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975)))
    else:
        tci = bci = (float("nan"), float("nan"))
    return dict(n=n, mean=m, se=se, t_ci=tci, boot_ci=bci)


def fmt(x, pct):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{100 * x:.2f}" if pct else f"{x:.4g}"


def build_table(table, pairs, boot=10000, seed=0, pct=True):
    unit = " (%)" if pct else ""
    lines = [f"Per method: mean over cases +- standard error{unit}.", "",
             "| method | n | " + " | ".join(METRICS) + " |", "|---|---|" + "---|" * len(METRICS)]
    results = {"methods": {}, "pairs": []}
    for m, rows in table.items():
        cells = []
        res = {"n": len(rows)}
        for k in METRICS:
            v = [r[k] for r in rows.values() if r[k] is not None]
            if v:
                mu, se = mean_se(v)
                cells.append(f"{fmt(mu, pct)} +- {fmt(se, pct)}")
                res[k] = dict(mean=mu, se=se, n=len(v))
            else:
                cells.append("")
        lines.append(f"| {m} | {len(rows)} | " + " | ".join(cells) + " |")
        results["methods"][m] = res
    if pairs:
        lines += ["", f"Paired differences A - B over the cases both hold{unit}: mean +- SE, "
                  f"95 % t-interval, 95 % bootstrap interval ({boot} resamples). Negative: A has the lower error.",
                  "", "| A - B | metric | n | mean +- SE | t 95 % CI | bootstrap 95 % CI |",
                  "|---|---|---|---|---|---|"]
        for a, b in pairs:
            for k in METRICS:
                r = paired(table[a], table[b], k, boot, seed)
                if r is None:
                    continue
                lines.append(f"| {a} - {b} | {k} | {r['n']} | {fmt(r['mean'], pct)} +- {fmt(r['se'], pct)} | "
                             f"[{fmt(r['t_ci'][0], pct)}, {fmt(r['t_ci'][1], pct)}] | "
                             f"[{fmt(r['boot_ci'][0], pct)}, {fmt(r['boot_ci'][1], pct)}] |")
                results["pairs"].append(dict(a=a, b=b, metric=k, **r))
    return "\n".join(lines) + "\n", results


def self_test():
    ok = True

    def check(name, cond, detail=""):
        nonlocal ok
        ok &= bool(cond)
        print(f"{'ok  ' if cond else 'FAIL'} {name} {detail}")

    rng = np.random.default_rng(1)
    n = 30
    base = rng.uniform(0.02, 0.08, n)
    diff = 0.01 + 0.005 * rng.standard_normal(n)
    with tempfile.TemporaryDirectory() as tmp:
        p1, p2 = os.path.join(tmp, "run.csv"), os.path.join(tmp, "base.csv")
        with open(p1, "w") as f:
            f.write("case,index,method,rel_l2_a,rel_l2_u,error_rate_a\n")
            for k in range(n):
                f.write(f"case-{k:04d},{k},dps,0.5,{base[k] + diff[k]:.9f},0.1\n")
                if k != 3:  # a case missing from one method: must drop out of the pair
                    f.write(f"case-{k:04d},{k},equireg,0.5,{base[k]:.9f},\n")
        with open(p2, "w") as f:
            f.write("case,index,method,rel_l2_a,rel_l2_u,error_rate_a\n")
            for k in range(n):
                f.write(f"case-{k:04d},{k},interp_nearest_solve,0.4,{base[k] + 0.02:.9f},0.2\n")
            f.write(f"case-0099,99,interp_nearest_solve,0.4,1.0,0.2\n")  # only here: unpaired
        table = read_csvs([p1, p2])
        pairs = [parse_pair("equireg-dps", list(table)), parse_pair("dps - interp_nearest_solve", list(table))]
        check("pair parsing", pairs == [("equireg", "dps"), ("dps", "interp_nearest_solve")], str(pairs))
        md, res = build_table(table, pairs, boot=4000)
        r = next(p for p in res["pairs"] if p["a"] == "equireg" and p["metric"] == "rel_l2_u")
        keep = np.arange(n) != 3
        d = -diff[keep]
        se = d.std(ddof=1) / math.sqrt(len(d))
        t = stats.t.ppf(0.975, len(d) - 1)
        check("paired n drops the unmatched case", r["n"] == n - 1, str(r["n"]))
        check("paired mean and SE", abs(r["mean"] - d.mean()) < 1e-8 and abs(r["se"] - se) < 1e-8,
              f"{r['mean']:.6f} +- {r['se']:.6f} vs {d.mean():.6f} +- {se:.6f}")
        check("t-interval", abs(r["t_ci"][0] - (d.mean() - t * se)) < 1e-8 and
              abs(r["t_ci"][1] - (d.mean() + t * se)) < 1e-8)
        check("bootstrap interval near the t-interval", abs(r["boot_ci"][0] - r["t_ci"][0]) < 0.5 * se and
              abs(r["boot_ci"][1] - r["t_ci"][1]) < 0.5 * se, f"{r['boot_ci']} vs {r['t_ci']}")
        r2 = next(p for p in res["pairs"] if p["a"] == "dps" and p["metric"] == "rel_l2_u")
        check("the case only in the baselines is ignored; constant difference",
              r2["n"] == n and abs(r2["mean"] - (diff.mean() - 0.02)) < 1e-8)
        check("an empty metric makes no pair row",
              not any(p["a"] == "equireg" and p["metric"] == "error_rate_a" for p in res["pairs"]))
        try:
            with open(os.path.join(tmp, "dup.csv"), "w") as f:
                f.write("case,index,method,rel_l2_a,rel_l2_u,error_rate_a\ncase-0000,0,dps,1,1,1\n")
            read_csvs([p1, os.path.join(tmp, "dup.csv")])
            check("a method in two files without a prefix is refused", False)
        except SystemExit:
            check("a method in two files without a prefix is refused", True)
        t2 = read_csvs([p1, os.path.join(tmp, "dup.csv") + "=other:"])
        check("FILE=PREFIX renames", "other:dps" in t2 and "dps" in t2)
    print("self-test", "passed" if ok else "FAILED")
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("csv", nargs="*", help="metrics.csv files, each optionally FILE=PREFIX")
    ap.add_argument("--pair", action="append", default=[], help="A-B: paired difference of methods A and B")
    ap.add_argument("--methods", help="comma-separated: only these methods in the per-method table")
    ap.add_argument("--out", help="write the markdown table here too")
    ap.add_argument("--raw", action="store_true", help="print fractions, not percent")
    ap.add_argument("--bootstrap", type=int, default=10000)
    ap.add_argument("--bootstrap-seed", type=int, default=0)
    ap.add_argument("--self-test", action="store_true")
    args = ap.parse_args()
    if args.self_test:
        return self_test()
    if not args.csv:
        ap.error("give at least one metrics.csv")
    table = read_csvs(args.csv)
    pairs = [parse_pair(p, list(table)) for p in args.pair]
    for a, b in pairs:
        for m in (a, b):
            if m not in table:
                raise SystemExit(f"--pair: no method {m!r} (known: {', '.join(table)})")
    shown = table
    if args.methods:
        want = [m.strip() for m in args.methods.split(",")]
        shown = {m: table[m] for m in want if m in table}
        shown.update({m: table[m] for ab in pairs for m in ab if m not in shown})
    md, _ = build_table(shown, pairs, args.bootstrap, args.bootstrap_seed, pct=not args.raw)
    header = "Sources: " + ", ".join(f"`{s}`" for s in args.csv) + "\n\n"
    print(header + md, end="")
    if args.out:
        with open(args.out, "w") as f:
            f.write(header + md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
