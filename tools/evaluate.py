#!/usr/bin/env python3
"""The evaluation table of docs/RESULTS.md: naive baseline vs DPS vs DPS+EquiReg with the
embedded default models on the scikit-image photographs in assets/images (64x64 crops made by
tools/make_eval_images.py; the models never saw them).

    cargo build --release
    python tools/evaluate.py                          # the full protocol (hours on a CPU)
    python tools/evaluate.py --steps 50,100 --seeds 0 # a subset

For every task, step count and seed it runs
    equireg restore --task T --input assets/images --batch B --compare --steps K --seed S
(which writes the naive baseline, DPS and DPS+EquiReg from the same measurement and seed) into
OUT/T/K/seed-S, skipping runs whose metrics.json exists (so the script resumes), then writes
the table: for each cell the mean over images and seeds, and +- the standard deviation over
seeds of the per-seed mean. Needs only the Python standard library.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

TASKS = ["sr4", "gaussian-deblur", "motion-deblur", "box-inpaint", "random-inpaint", "phase-retrieval"]
SOLVERS = [("baseline", "naive baseline"), ("dps", "DPS"), ("dps+equireg", "DPS+EquiReg")]


def run(args, task, steps, seed):
    out = os.path.join(args.out, task, str(steps), f"seed-{seed}")
    metrics = os.path.join(out, "metrics.json")
    if not os.path.exists(metrics):
        cmd = [args.binary, "restore", "--task", task, "--input", args.images, "--batch", str(args.batch),
               "--compare", "--steps", str(steps), "--seed", str(seed), "--out", out]
        if args.equireg:
            cmd += ["--equireg", args.equireg]
        print(" ".join(cmd), flush=True)
        t0 = time.time()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        print(f"  {time.time() - t0:.0f} s", flush=True)
    with open(metrics) as f:
        return json.load(f)


def cell(per_seed, key):
    """mean over seeds of the per-seed mean over images, and the std over seeds."""
    vals = [statistics.fmean(r[key] for r in rows) for rows in per_seed]
    mean = statistics.fmean(vals)
    spread = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return mean, spread


def fmt(ms, digits):
    mean, spread = ms
    return f"{mean:.{digits}f} ± {spread:.{digits}f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default="target/release/equireg")
    ap.add_argument("--images", default="assets/images")
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--steps", default="50,100,250")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--equireg", default=None, help="--equireg settings on top of the task presets")
    ap.add_argument("--out", default="build/eval")
    ap.add_argument("--table", default="build/eval/results.md", help="where to write the markdown table")
    args = ap.parse_args()
    tasks = args.tasks.split(",")
    steps_list = [int(s) for s in args.steps.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]

    results = {}  # (task, steps) -> [per-seed list of image records]
    adapter = None
    for steps in steps_list:
        for task in tasks:
            for seed in seeds:
                doc = run(args, task, steps, seed)
                adapter = doc["adapter"]
                results.setdefault((task, steps), []).append(doc["images"])

    def rows_of(task, steps, solver):
        return [[r for r in seed_rows if r["solver"] == solver] for seed_rows in results[(task, steps)]]

    lines = [
        f"Images: {', '.join(sorted(f[:-4] for f in os.listdir(args.images) if f.endswith('.png')))} "
        f"({args.images}); seeds {', '.join(map(str, seeds))}; adapter: {adapter}.",
        "Each cell: mean over images and seeds ± standard deviation over seeds of the per-seed mean.",
        "",
        "| task | steps | " + " | ".join(f"{label} PSNR | {label} SSIM" for _, label in SOLVERS) + " |",
        "|---|---|" + "---|---|" * len(SOLVERS),
    ]
    for steps in steps_list:
        for task in tasks:
            cells = []
            for solver, _ in SOLVERS:
                per_seed = rows_of(task, steps, solver)
                cells += [fmt(cell(per_seed, "psnr"), 2), fmt(cell(per_seed, "ssim"), 3)]
            lines.append(f"| {task} | {steps} | " + " | ".join(cells) + " |")
        # The average over tasks, per seed, then mean and spread over seeds.
        cells = []
        for solver, _ in SOLVERS:
            for key, digits in (("psnr", 2), ("ssim", 3)):
                per_seed_avg = [
                    statistics.fmean(
                        statistics.fmean(r[key] for r in rows_of(task, steps, solver)[i]) for task in tasks
                    )
                    for i in range(len(seeds))
                ]
                mean = statistics.fmean(per_seed_avg)
                spread = statistics.stdev(per_seed_avg) if len(per_seed_avg) > 1 else 0.0
                cells.append(fmt((mean, spread), digits))
        lines.append(f"| **mean of the {len(tasks)} tasks** | {steps} | " + " | ".join(cells) + " |")
    table = "\n".join(lines) + "\n"
    os.makedirs(os.path.dirname(args.table) or ".", exist_ok=True)
    with open(args.table, "w") as f:
        f.write(table)
    sys.stdout.write(table)


if __name__ == "__main__":
    main()
