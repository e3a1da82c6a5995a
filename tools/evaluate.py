#!/usr/bin/env python3
"""The evaluation table of docs/RESULTS.md: naive baseline vs DPS vs DPS+EquiReg with the
embedded default models on the scikit-image photographs in assets/images (64x64 crops made by
tools/make_eval_images.py; the models never saw them).

    cargo build --release
    python tools/evaluate.py                          # the full protocol (hours on a CPU)
    python tools/evaluate.py --steps 50,100 --seeds 0 # a subset
    python tools/evaluate.py --solver diffpir --out build/eval-diffpir   # another solver

For every task, step count and seed it runs
    equireg restore --task T --input assets/images --batch B --compare --steps K --seed S
(which writes the naive baseline, DPS and DPS+EquiReg from the same measurement and seed) into
OUT/T/K/seed-S/chunk-J (the images in runs of --batch), skipping runs whose metrics.json
exists (so the script resumes; --no-run only tabulates), then writes the table: for each
cell the mean over images and seeds, and +- the standard deviation over seeds of the
per-seed mean, plus the paired DPS+EquiReg - DPS difference with its standard error. Needs
only the Python standard library.
A folder whose run used other EquiReg settings than asked (the task preset with --equireg on
top, as `equireg tasks --json` resolves them) is refused, never mixed into the table.

Choices (EquiReg settings, a retrained prior) are made on the validation crops of
tools/make_validation_images.py, never on the evaluation photographs, e.g. a candidate prior
against the embedded one, DPS only:

    python tools/evaluate.py --images build/validation --dps-only --steps 100 --seeds 0 \
        --out build/val/embedded
    python tools/evaluate.py --images build/validation --dps-only --steps 100 --seeds 0 \
        --out build/val/candidate --weights W.safetensors --config config.json \
        --paired-against build/val/embedded

The last column then holds the paired DPS gain of the candidate over the embedded prior (same
image, task and seed), the rule a new prior must pass before it ships.

DPS and the naive baseline do not depend on the EquiReg settings, so other EquiReg settings can
be evaluated at half the cost against runs that hold them already:

    python tools/evaluate.py --steps 100 --seeds 0 --equireg alpha=0.02 --dps-from build/eval \
        --out build/eval-alpha

runs DPS+EquiReg only and pairs it with the baseline and DPS rows of the same run (task, steps,
seed, chunk) in build/eval, which must be made with the same prior. It refuses a pair whose
baseline rows differ in any bit: the baseline depends only on the measurement, so that proves
the two runs restored the same measurement.
"""
import argparse
import functools
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

TASKS = ["sr4", "gaussian-deblur", "motion-deblur", "box-inpaint", "random-inpaint", "phase-retrieval"]
SOLVERS = [("baseline", "naive baseline"), ("dps", "DPS"), ("dps+equireg", "DPS+EquiReg")]
LABELS = {"dps": "DPS", "daps": "DAPS", "ddnm": "DDNM+", "diffpir": "DiffPIR", "sitcom": "SITCOM", "red-diff": "RED-diff"}


def solver_columns(solver):
    """(metrics name, table label) of the naive baseline, the solver and the solver+EquiReg."""
    label = LABELS.get(solver, solver)
    return [("baseline", "naive baseline"), (solver, label), (f"{solver}+equireg", f"{label}+EquiReg")]


def stage_chunks(args):
    """Splits the images into chunks of --batch, each copied into its own folder under OUT/images,
    so that every chunk is one resumable run."""
    names = sorted(f for f in os.listdir(args.images) if f.endswith(".png"))
    chunks = []
    for j in range(0, len(names), args.batch):
        folder = os.path.join(args.out, "images", f"chunk-{j // args.batch}")
        os.makedirs(folder, exist_ok=True)
        members = names[j : j + args.batch]
        # A folder left by a run with another --batch holds other images: make it exact.
        for stale in set(os.listdir(folder)) - set(members):
            os.remove(os.path.join(folder, stale))
        for name in members:
            dst = os.path.join(folder, name)
            if not os.path.exists(dst):
                shutil.copyfile(os.path.join(args.images, name), dst)
        chunks.append(folder)
    return names, chunks


def run_dir(root, task, steps, seed, chunk, restarts):
    """Where one chunk's run lives under an --out folder. Best-of-N runs live apart from single
    runs of the same seed."""
    seed_dir = f"seed-{seed}" + (f"-best-of-{restarts}" if restarts > 1 else "")
    return os.path.join(root, task, str(steps), seed_dir, f"chunk-{chunk}")


def read_run(out, folder):
    """A finished run's metrics.json, refused if it holds other images than the chunk's folder:
    a folder left by another --batch or --images would mix into the table silently."""
    with open(os.path.join(out, "metrics.json")) as f:
        doc = json.load(f)
    wanted = {f[:-4] for f in os.listdir(folder) if f.endswith(".png")}
    if {r["name"] for r in doc["images"]} != wanted:
        sys.exit(f"{out} holds a run of other images than {folder} (another --batch or --images?); "
                 "use another --out")
    return doc


def reference_run(args, flag, root, task, steps, seed, chunk, folder):
    """The same run (task, steps, seed, chunk, restarts) in the folder `root` given by `flag`
    (--paired-against, --dps-from), which must hold it already: it is read, never run, since it
    was made with other settings. Returns its folder and its metrics."""
    out = run_dir(root, task, steps, seed, chunk, args.restarts_of.get(task, 1))
    if not os.path.exists(os.path.join(out, "metrics.json")):
        sys.exit(f"{flag}: {out}/metrics.json is missing; run that configuration first")
    return out, read_run(out, folder)


def with_dps_from(args, task, steps, seed, chunk, folder, out, doc):
    """An EquiReg-only run's rows completed with the baseline and DPS rows of the same run in
    --dps-from, after checking both restored the same measurement (bit-identical baselines)."""
    ref_out, ref = reference_run(args, "--dps-from", args.dps_from, task, steps, seed, chunk, folder)
    def rows(d, solver):
        """solver's scores by image (the fields every engine version has written; no timings)."""
        return {r["name"]: (r["psnr"], r["ssim"], r["psnr_measurement"])
                for r in d["images"] if r["solver"] == solver}
    if rows(ref, "baseline") != rows(doc, "baseline"):
        sys.exit(f"{out} and {ref_out} have different baselines, so different measurements "
                 "(another seed, --batch or binary?); they cannot be paired")
    if set(rows(ref, "dps")) != set(rows(doc, "baseline")):
        sys.exit(f"--dps-from: {ref_out} holds no DPS run of every image")
    # A --compare run left in OUT has its own DPS: it must be the same, and is not added twice.
    if own_dps := rows(doc, "dps"):
        if own_dps != rows(ref, "dps"):
            sys.exit(f"{out} and {ref_out} hold different DPS results of the same measurement")
        return doc
    merged = dict(doc)
    merged["images"] = [r for r in ref["images"] if r["solver"] == "dps"] + doc["images"]
    return merged


def run(args, task, steps, seed, chunk, folder):
    """One `restore --compare` run of one chunk (`--no-equireg` with --dps-only; EquiReg alone
    with --dps-from). Chunk j runs with --seed seed + 1000 j, so the chunks draw independent
    noise (the CLI keys its streams by the image's index in its run)."""
    restarts = args.restarts_of.get(task, 1)
    out = run_dir(args.out, task, steps, seed, chunk, restarts)
    metrics = os.path.join(out, "metrics.json")
    if not os.path.exists(metrics):
        if args.no_run:
            sys.exit(f"{metrics} is missing and --no-run starts no run")
        cmd = [args.binary, "restore", "--task", task, "--input", folder, "--batch", str(args.batch),
               "--steps", str(steps), "--seed", str(seed + 1000 * chunk), "--out", out]
        if args.solver != "dps":
            cmd += ["--solver", args.solver]
        for kv in args.set:
            cmd += ["--set", kv]
        if not args.dps_from:
            cmd.append("--no-equireg" if args.dps_only else "--compare")
        if restarts > 1:
            cmd += ["--restarts", str(restarts)]
        if args.equireg:
            cmd += ["--equireg", args.equireg]
        if args.weights:
            cmd += ["--weights", args.weights, "--config", args.config]
        print(" ".join(cmd), flush=True)
        t0 = time.time()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        print(f"  {time.time() - t0:.0f} s", flush=True)
    doc = read_run(out, folder)
    if args.dps_from:
        doc = with_dps_from(args, task, steps, seed, chunk, folder, out, doc)
    # A run with/without EquiReg left in this folder would mix into the table silently too.
    ran = {r["solver"] for r in doc["images"]}
    # Runs made before the solver seam record no solver: they are DPS's.
    recorded_solver = doc.get("solver", "dps:").split(":")[0]
    if recorded_solver != args.solver:
        sys.exit(f"{out} holds a run of {recorded_solver}, not {args.solver}; use another --out")
    if (f"{args.solver}+equireg" in ran) == args.dps_only:
        sys.exit(f"{out} holds a run {'with' if args.dps_only else 'without'} EquiReg; "
                 "use another --out for --dps-only runs")
    # So would one made with other EquiReg settings (another count, alpha, group, encoder).
    if not args.dps_only:
        wanted = equireg_settings(args.binary, task, args.equireg)
        recorded = doc.get("equireg")
        if recorded is None:
            # Runs made before commit dee8cdb do not record their settings: the presets of the
            # time, which counted loop steps (0 up); only the count can have changed since.
            same = settings_value(wanted, "count") == "loop"
        else:
            same = recorded == wanted
        if not same:
            sys.exit(f"{out} holds a run made with EquiReg {recorded or 'count=loop'}, not {wanted} "
                     "(the task preset with --equireg on top); pass --equireg to match it, or use "
                     "another --out")
    return doc


def settings_value(settings, key):
    """The value of `key` in a `key=value,...` string, or None."""
    for kv in (settings or "").split(","):
        k, _, v = kv.partition("=")
        if k.strip() == key:
            return v.strip()
    return None


@functools.cache
def equireg_settings(binary, task, equireg):
    """The EquiReg settings a run of `task` records in metrics.json: the task preset with
    `equireg` on top, as the binary resolves them (`equireg tasks --json`)."""
    cmd = [binary, "tasks", task, "--json"] + (["--equireg", equireg] if equireg else [])
    done = subprocess.run(cmd, stdout=subprocess.PIPE)
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed (a binary older than `equireg tasks`? cargo build --release)")
    return json.loads(done.stdout)[0]["equireg"]


def fmt(ms, digits):
    mean, spread = ms
    return f"{mean:.{digits}f} ± {spread:.{digits}f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default="target/release/equireg")
    ap.add_argument("--solver", default="dps", help="restore's --solver (dps, daps, ddnm, diffpir, sitcom, red-diff); one per --out")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="restore's --set, passed to every run (repeatable; use a separate --out per setting)")
    ap.add_argument("--images", default="assets/images")
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--steps", default="50,100,250")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--batch", type=int, default=2, help="images per run (the protocol of docs/RESULTS.md: 2)")
    ap.add_argument("--equireg", default=None, help="--equireg settings on top of the task presets")
    ap.add_argument("--weights", default=None,
                    help="a prior's weights.safetensors instead of the embedded one (with --config)")
    ap.add_argument("--config", default=None, help="the prior's config.json (with --weights)")
    ap.add_argument("--out", default="build/eval")
    ap.add_argument("--table", default="build/eval/results.md", help="where to write the markdown table")
    ap.add_argument("--task-seeds", action="append", default=[], metavar="TASK=S,S,...",
                    help="seeds for one task instead of --seeds (repeatable), e.g. more draws for an "
                         "unstable task")
    ap.add_argument("--task-restarts", action="append", default=[], metavar="TASK=N",
                    help="best of N sampler restarts per image for one task (repeatable), judged by the "
                         "data residual: DPS's practice on phase retrieval")
    ap.add_argument("--paired-against", default=None, metavar="OUT",
                    help="another --out folder holding the same runs made with other settings (another "
                         "prior, other --equireg): adds, per solver, the paired PSNR difference this "
                         "run - that one (same image, task, steps and seed)")
    ap.add_argument("--no-run", action="store_true",
                    help="tabulate the runs that exist; a missing one is an error, never started "
                         "(retabulating without the CPU hours a forgotten seed would cost)")
    ap.add_argument("--dps-only", action="store_true",
                    help="run the naive baseline and DPS only (half the time), e.g. to compare priors")
    ap.add_argument("--dps-from", default=None, metavar="OUT",
                    help="run DPS+EquiReg only (half the time) and take the baseline and DPS of each run "
                         "from the same run in OUT (same prior; refused unless the baselines are "
                         "bit-identical)")
    args = ap.parse_args()
    if bool(args.weights) != bool(args.config):
        ap.error("--weights and --config go together")
    if args.dps_only and args.equireg:
        ap.error("--dps-only runs no EquiReg: drop --equireg")
    if args.dps_only and args.dps_from:
        ap.error("--dps-from completes EquiReg-only runs: drop --dps-only")
    if args.dps_from and args.solver != "dps":
        ap.error("--dps-from pairs with DPS runs: drop --solver")
    all_solvers = solver_columns(args.solver)
    solvers = all_solvers[:2] if args.dps_only else all_solvers
    tasks = args.tasks.split(",")
    steps_list = [int(s) for s in args.steps.split(",")]
    seeds_of = {task: [int(s) for s in args.seeds.split(",")] for task in tasks}
    def per_task(flag, items, form, parse):
        """TASK=VALUE items of a repeatable option, each value parsed (None: malformed)."""
        out = {}
        for item in items:
            task, _, value = item.partition("=")
            parsed = parse(value) if task in tasks else None
            if parsed is None:
                ap.error(f"{flag} {item!r}: expected TASK={form}, TASK one of {', '.join(tasks)}")
            out[task] = parsed
        return out

    def seed_list(v):
        return [int(s) for s in v.split(",")] if v else None

    seeds_of.update(per_task("--task-seeds", args.task_seeds, "S,S,...", seed_list))
    args.restarts_of = per_task("--task-restarts", args.task_restarts, "N with N >= 1",
                                lambda v: int(v) if v.isdigit() and int(v) >= 1 else None)
    all_seeds = sorted({s for seeds in seeds_of.values() for s in seeds})

    names, chunks = stage_chunks(args)
    # Run everything first (cheapest settings first), then read: a crash loses no finished run.
    for steps in steps_list:
        for seed in all_seeds:
            for chunk, folder in enumerate(chunks):
                for task in tasks:
                    if seed in seeds_of[task]:
                        run(args, task, steps, seed, chunk, folder)
    results = {}  # (task, steps) -> [per-seed list of image records]
    reference = {}  # the same, from --paired-against
    adapter = None
    for steps in steps_list:
        for task in tasks:
            for seed in seeds_of[task]:
                rows = []
                for chunk, folder in enumerate(chunks):
                    doc = run(args, task, steps, seed, chunk, folder)
                    adapter = doc["adapter"]
                    rows += doc["images"]
                results.setdefault((task, steps), []).append(rows)
                if args.paired_against:
                    ref_rows = []
                    for chunk, folder in enumerate(chunks):
                        _, ref = reference_run(args, "--paired-against", args.paired_against,
                                               task, steps, seed, chunk, folder)
                        ref_rows += ref["images"]
                    reference.setdefault((task, steps), []).append(ref_rows)

    def rows_of(task, steps, solver):
        return [[r for r in seed_rows if r["solver"] == solver] for seed_rows in results[(task, steps)]]

    def per_seed_means(task, steps, solver, key):
        return [statistics.fmean(r[key] for r in rows) for rows in rows_of(task, steps, solver)]

    def mean_spread(vals):
        return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)

    same_seeds = all(seeds_of[t] == seeds_of[tasks[0]] for t in tasks)
    seeds_line = (
        f"seeds {', '.join(map(str, seeds_of[tasks[0]]))}"
        if same_seeds
        else "seeds: " + "; ".join(f"{t} {', '.join(map(str, seeds_of[t]))}" for t in tasks)
    )
    lines = [
        f"Images: {', '.join(n[:-4] for n in names)} ({args.images}, runs of {args.batch}); "
        f"{seeds_line}; adapter: {adapter}."
        + "".join(f" {t}: best of {n} restarts per image (smallest ||y - A(x)||)."
                  for t, n in args.restarts_of.items() if n > 1)
        + ("" if args.dps_only else
           f" EquiReg: the task presets{' with --equireg ' + args.equireg if args.equireg else ''}.")
        + (f" Baseline and DPS: the same runs in {args.dps_from} (bit-identical baselines)."
           if args.dps_from else ""),
        "Each cell: mean over images and seeds ± standard deviation over seeds of the per-seed mean."
        + ("" if args.dps_only else
           f" The last column is the paired difference {solvers[2][1]} − {solvers[1][1]} in PSNR (same measurement, same "
           "seed): mean ± standard error over the image×seed pairs."),
    ]
    def paired_gains(task, steps, solver, base_solver, base=None):
        """PSNR of solver minus that of base_solver on the same (image, seed), both read from
        results, or base_solver's from base (the --paired-against runs)."""
        gains = []
        for i, seed_rows in enumerate(results[(task, steps)]):
            base_rows = (base or results)[(task, steps)][i]
            ref = {r["name"]: r["psnr"] for r in base_rows if r["solver"] == base_solver}
            if any(r["solver"] == solver and r["name"] not in ref for r in seed_rows):
                sys.exit(f"no {base_solver} run of {task} at {steps} steps to pair {solver} with "
                         "(a --dps-only --paired-against folder?)")
            gains += [r["psnr"] - ref[r["name"]] for r in seed_rows if r["solver"] == solver]
        return gains

    # (label, (task, steps) -> paired differences) of the last columns.
    paired = []
    if not args.dps_only:
        name = solvers[1][1]
        paired.append((f"EquiReg − {name} (dB)",
                       lambda t, k: paired_gains(t, k, f"{args.solver}+equireg", args.solver)))
    if args.paired_against:
        ref_name = os.path.basename(os.path.normpath(args.paired_against))
        for solver, label in solvers[1:]:
            paired.append((f"{label} − {label} of {ref_name} (dB)",
                           lambda t, k, s=solver: paired_gains(t, k, s, s, reference)))
        lines.append(f"Columns \"of {ref_name}\": the paired difference against the same runs in "
                     f"{args.paired_against} (mean ± standard error over the image×seed pairs).")
    header = [
        "",
        "| task | steps | "
        + " | ".join([f"{label} PSNR | {label} SSIM" for _, label in solvers] + [p for p, _ in paired])
        + " |",
        "|---|---|" + "---|---|" * len(solvers) + "---|" * len(paired),
    ]

    def mean_stderr(vals):
        mean, spread = mean_spread(vals)
        return mean, spread / len(vals) ** 0.5

    # (solver, metric, decimals) of the table's columns before the paired difference.
    columns = [(solver, key, digits) for solver, _ in solvers for key, digits in (("psnr", 2), ("ssim", 3))]
    for steps in steps_list:
        lines += header
        for task in tasks:
            cells = []
            for solver, key, digits in columns:
                cells.append(fmt(mean_spread(per_seed_means(task, steps, solver, key)), digits))
            for _, gains in paired:
                cells.append(fmt(mean_stderr(gains(task, steps)), 2))
            lines.append(f"| {task} | {steps} | " + " | ".join(cells) + " |")
        # The average over tasks of each task's mean; with one seed list for all tasks also its
        # spread over seeds (the per-seed average over tasks).
        cells = []
        for solver, key, digits in columns:
            series = {t: per_seed_means(t, steps, solver, key) for t in tasks}
            mean = statistics.fmean(statistics.fmean(v) for v in series.values())
            if same_seeds:
                per_seed = [statistics.fmean(series[t][i] for t in tasks) for i in range(len(seeds_of[tasks[0]]))]
                cells.append(fmt(mean_spread(per_seed), digits))
            else:
                cells.append(f"{mean:.{digits}f}")
        # The paired gain averaged over tasks; its standard error from the tasks' (independent).
        for _, gains in paired:
            per_task = [mean_stderr(gains(t, steps)) for t in tasks]
            gain = statistics.fmean(m for m, _ in per_task)
            cells.append(fmt((gain, sum(se * se for _, se in per_task) ** 0.5 / len(tasks)), 2))
        lines.append(f"| **mean of the {len(tasks)} tasks** | {steps} | " + " | ".join(cells) + " |")
    table = "\n".join(lines) + "\n"
    os.makedirs(os.path.dirname(args.table) or ".", exist_ok=True)
    with open(args.table, "w") as f:
        f.write(table)
    sys.stdout.write(table)


if __name__ == "__main__":
    main()
