#!/usr/bin/env python3
"""Train the embedded default diffusion prior (a small guided-diffusion UNet) on the corpus.

    python tools/build_corpus.py                       # data/corpus.npz (once)
    python tools/train_prior.py --minutes 90           # CPU: resumes from build/prior/ckpt.pt
    python tools/train_prior.py --init-from assets/models/prior --work build/prior_run \
        --out build/prior_run/model --threads 2 --save-minutes 10   # continue the shipped EMA weights
    python tools/train_prior.py --bench 3 --threads 2  # time fp32 / channels-last / bf16 and exit

Recipe (photographs): timesteps 80 % from EDM's log-normal sigma (ln sigma ~ N(-1.2, 1.2^2),
mapped to the timestep of nearest sigma_t = sqrt((1 - abar_t) / abar_t)), 20 % uniform; each
step is drawn to be 32x32 windows at batch 64 (75 %) or full 64x64 crops at batch 16 (25 %).
--init-from loads exported EMA weights into model and EMA with a 100-step LR re-warm-up; a
checkpoint in --work (optimizer state, build/ only) takes precedence, so rerunning the same
command continues. Each run appends a record (steps, seconds, recipe, final loss) to
OUT/training.json's "runs" and extends OUT/loss.csv / loss.png.
    python tools/train_prior.py --steps 40000 --batch 64 --device cuda   # on a GPU

Linear schedule, 1000 steps, learn_sigma with the hybrid loss (epsilon MSE + VB term), AdamW,
EMA weights. Every --save-every steps it writes a resumable checkpoint and exports the EMA
weights as safetensors under guided-diffusion's names plus equireg's config.json to --out,
with the loss log (CSV) and curve (PNG). Load in equireg with
`--weights OUT/weights.safetensors --config OUT/config.json`.
"""
import argparse
import csv
import copy
import json
import os
import sys
import time

# Passive OpenMP waiting: on these shared 2-core machines the default spin-wait made a
# 2-thread step about 6x slower whenever another process held a core (measured: 18-22 s
# against 2.7-3.9 s per 32x32 batch-64 photo64s step). Must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from equireg_train.data import CropSampler  # noqa: E402
from equireg_train.diffusion import Diffusion  # noqa: E402
from equireg_train.fields import FieldSampler  # noqa: E402
from equireg_train.export import log_progress, plot_losses, recent_loss, save_safetensors  # noqa: E402
from equireg_train.unet import UNet  # noqa: E402

# equireg's UNetConfig presets (crates/nn/src/config.rs), field for field.
PRESETS = {
    "photo64": dict(image_size=64, in_channels=3, out_channels=3, model_channels=32, channel_mult=[1, 2, 2, 2],
                    num_res_blocks=1, attention_resolutions=[8], num_heads=2, num_head_channels=32,
                    num_heads_upsample=-1, use_scale_shift_norm=True, resblock_updown=True, conv_resample=True,
                    learn_sigma=True),
    "small64": dict(image_size=64, in_channels=3, out_channels=3, model_channels=64, channel_mult=[1, 2, 2, 2],
                    num_res_blocks=1, attention_resolutions=[16, 8], num_heads=4, num_head_channels=32,
                    num_heads_upsample=-1, use_scale_shift_norm=True, resblock_updown=True, conv_resample=True,
                    learn_sigma=True),
    # The CPU-shaped candidate of the prior recipe (shared/specs/prior.md 4.1): no 64-channel
    # level at 64x64, attention only in the middle block. Not an engine preset yet: the engine
    # loads it from the exported config.json.
    "photo64s": dict(image_size=64, in_channels=3, out_channels=3, model_channels=32, channel_mult=[1, 1, 2, 2],
                     num_res_blocks=1, attention_resolutions=[], num_heads=2, num_head_channels=32,
                     num_heads_upsample=-1, use_scale_shift_norm=True, resblock_updown=True, conv_resample=True,
                     learn_sigma=True),
}


def check_against_deepinv(cfg):
    """Our UNet vs one assembled from deepinv's guided-diffusion blocks with the same weights."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from make_fixtures import as_float64_reference, assemble  # deepinv-based

    torch.manual_seed(0)
    ours = UNet(cfg).double()
    for p in ours.parameters():
        torch.nn.init.normal_(p, std=0.05)
    ref = as_float64_reference(assemble(cfg))
    missing = set(ref.state_dict()) ^ set(ours.state_dict())
    if missing:
        raise SystemExit(f"state dict names differ: {sorted(missing)[:8]}")
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    t = torch.tensor([3, 731])
    a, b = ours(x, t), ref.forward_diffusion(x, t)
    rel = ((a - b).norm() / b.norm()).item()
    print(f"ours vs deepinv blocks: relative L2 {rel:.2e}")
    if rel > 1e-10:
        raise SystemExit("mismatch")


def export(ema, cfg, out, log_rows, meta):
    os.makedirs(out, exist_ok=True)
    save_safetensors(ema.state_dict(), os.path.join(out, "weights.safetensors"))
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    with open(os.path.join(out, "training.json"), "w") as f:
        json.dump(meta, f, indent=1)
    with open(os.path.join(out, "loss.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "loss", "mse", "vb", "patch"])
        w.writerows(log_rows)
    plot_losses([(r[0], r[1]) for r in log_rows], os.path.join(out, "loss.png"), "prior: hybrid loss")
    # The parity fixture: x_t, t and the network's float64 output, compared by the Rust tests.
    g = torch.Generator().manual_seed(7)
    x = torch.randn(1, cfg["in_channels"], 64, 64, generator=g, dtype=torch.float64)
    t = torch.tensor([250])
    ref = UNet(cfg).double()
    ref.load_state_dict({k: v.double() for k, v in ema.state_dict().items()})
    with torch.no_grad():
        y = ref(x, t)
    save_safetensors({"input": x, "timesteps": t.double(), "output": y}, os.path.join(out, "check.safetensors"))


def load_init(folder, model, ema, dev):
    """Weights, step count, loss log and training record of an exported folder (EMA weights
    into both the model and the EMA, as EDM's resume does; no optimizer state)."""
    from safetensors.torch import load_file

    sd = load_file(os.path.join(folder, "weights.safetensors"), device=str(dev))
    model.load_state_dict(sd)
    ema.load_state_dict(sd)
    meta = {}
    if os.path.exists(os.path.join(folder, "training.json")):
        with open(os.path.join(folder, "training.json")) as f:
            meta = json.load(f)
    rows = []
    if os.path.exists(os.path.join(folder, "loss.csv")):
        with open(os.path.join(folder, "loss.csv")) as f:
            r = csv.reader(f)
            next(r)
            for row in r:
                rows.append(tuple([int(row[0])] + [float(v) for v in row[1:4]] + row[4:]))
    step = int(meta.get("steps", rows[-1][0] if rows else 0))
    return step, rows, meta


def autocast_dtype(bf16):
    return torch.bfloat16 if bf16 else None


def bench(args, cfg, dev, sampler, diffusion):
    """Interleaved A/B timing of fp32 / channels-last / bf16 autocast on the recipe's two batch
    shapes, plus each variant's loss on one fixed batch against fp32's."""
    variants = [("fp32", False, False), ("channels_last", True, False), ("bf16", False, True),
                ("channels_last+bf16", True, True)]
    shapes = [(args.small_patch, args.small_batch), (cfg["image_size"], args.full_batch)]
    base = UNet(cfg).to(dev)
    if args.init_from:
        load_init(args.init_from, base, copy.deepcopy(base), dev)
    models = {}
    for name, cl, _ in variants:
        m = copy.deepcopy(base)
        if cl:
            m = m.to(memory_format=torch.channels_last)
        models[name] = (m, torch.optim.AdamW(m.parameters(), lr=1e-5))
    times = {(v[0], s[0]): [] for v in variants for s in shapes}
    g = torch.Generator().manual_seed(0)
    fixed = {p: (sampler.batch(b, p), torch.randint(0, 1000, (b,), generator=g)) for p, b in shapes}

    def one_step(name, cl, bf, p):
        m, opt = models[name]
        x0, t = fixed[p]
        if cl:
            x0 = x0.contiguous(memory_format=torch.channels_last)
        t0 = time.time()
        loss, _, _ = diffusion.loss(m, x0, learn_sigma=cfg["learn_sigma"], t=t, autocast=autocast_dtype(bf))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return time.time() - t0

    for name, cl, bf in variants:  # warm-up, untimed
        for p, _ in shapes:
            one_step(name, cl, bf, p)
    for r in range(args.bench):
        order = variants if r % 2 == 0 else variants[::-1]
        for name, cl, bf in order:
            for p, _ in shapes:
                times[(name, p)].append(one_step(name, cl, bf, p))
    # the loss of each variant on one fixed batch, same noise, same weights (forward only)
    x0, t = fixed[shapes[1][0]]
    losses = {}
    for name, cl, bf in variants:
        m = copy.deepcopy(base)
        if cl:
            m = m.to(memory_format=torch.channels_last)
        torch.manual_seed(123)
        with torch.no_grad():
            xin = x0.contiguous(memory_format=torch.channels_last) if cl else x0
            losses[name] = [v.item() for v in diffusion.loss(m, xin, cfg["learn_sigma"], t=t, autocast=autocast_dtype(bf))]
    print(f"threads {torch.get_num_threads()}, {args.bench} interleaved rounds, median seconds per optimizer step")
    print("| variant | %s | hybrid loss / mse on a fixed 64x64 batch (fp32: %.5f / %.5f) |" % (
        " | ".join(f"{p}x{p} batch {b}" for p, b in shapes), losses["fp32"][0], losses["fp32"][1]))
    for name, _, _ in variants:
        med = [sorted(times[(name, p)])[len(times[(name, p)]) // 2] for p, _ in shapes]
        print(f"| {name} | " + " | ".join(f"{m:.3f} s" for m in med) +
              f" | {losses[name][0]:.5f} / {losses[name][1]:.5f} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default="data/corpus.npz,data/corpus_gcompris.npz",
                    help="one or more .npz corpora, comma-separated")
    ap.add_argument("--preset", default="photo64", choices=sorted(PRESETS))
    ap.add_argument("--fields", default=None,
                    help="train on joint PDE fields [N, 2, 64, 64] (tools/pde_data.py) instead of the photo corpus")
    ap.add_argument("--group", default="d4", help="--fields: augmentation group (d4, d4-sign, none)")
    ap.add_argument("--work", default="build/prior", help="checkpoint folder (resumed from)")
    ap.add_argument("--out", default="assets/models/prior")
    ap.add_argument("--init-from", default=None,
                    help="when --work has no checkpoint: start from an exported folder's weights.safetensors "
                         "(into model and EMA), its step count, loss.csv and training.json")
    ap.add_argument("--steps", type=int, default=1_000_000, help="stop after this many optimizer steps")
    ap.add_argument("--minutes", type=float, default=None, help="stop after this much wall time (this run)")
    ap.add_argument("--batch", type=int, default=None, help="legacy: one batch size for every step (= --full-batch)")
    ap.add_argument("--patch", type=int, default=None,
                    help="legacy: every step on patch x patch windows (sets --full-frac 0, --small-patch)")
    ap.add_argument("--small-patch", type=int, default=32, help="window side of the small steps")
    ap.add_argument("--small-batch", type=int, default=64, help="batch of the small steps")
    ap.add_argument("--full-batch", type=int, default=16, help="batch of the full-size (64x64) steps")
    ap.add_argument("--full-frac", type=float, default=None,
                    help="fraction of steps on full-size crops (photos: 0.25; --fields: 1)")
    ap.add_argument("--lognormal-frac", type=float, default=None,
                    help="fraction of timesteps from EDM's log-normal sigma (photos: 0.8; --fields: 0 = uniform)")
    ap.add_argument("--p-mean", type=float, default=-1.2)
    ap.add_argument("--p-std", type=float, default=1.2)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--warmup", type=int, default=200, help="LR warm-up steps from scratch")
    ap.add_argument("--rewarm", type=int, default=100, help="LR warm-up steps after --init-from (fresh Adam moments)")
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--save-every", type=int, default=250, help="checkpoint every this many steps")
    ap.add_argument("--save-minutes", type=float, default=None, help="and/or every this many minutes")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast for the network (fp32 weights and loss)")
    ap.add_argument("--bench", type=int, default=0, help="time fp32 / channels-last / bf16 for N rounds and exit")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--check", action="store_true", help="compare the UNet with deepinv's blocks and exit")
    args = ap.parse_args()

    cfg = dict(PRESETS[args.preset])
    if args.fields:
        cfg["in_channels"] = cfg["out_channels"] = 2
    if args.check:
        check_against_deepinv(cfg)
        return
    if args.full_frac is None:
        args.full_frac = 1.0 if args.fields else (0.0 if args.patch else 0.25)
    if args.lognormal_frac is None:
        args.lognormal_frac = 0.0 if args.fields else 0.8
    if args.batch:
        args.full_batch = args.batch
        if args.patch:
            args.small_batch = args.batch
    if args.patch:
        args.small_patch = args.patch
    if args.threads:
        torch.set_num_threads(args.threads)
        torch.set_num_interop_threads(1)
    torch.manual_seed(args.seed)
    dev = torch.device(args.device)
    model = UNet(cfg).to(dev)
    ema = copy.deepcopy(model).requires_grad_(False)
    diffusion = Diffusion(1000, device=dev)
    if args.bench:
        bench(args, cfg, dev, CropSampler(args.corpus, size=cfg["image_size"], seed=args.seed, device=dev),
              diffusion)
        return
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    step, log_rows, seconds, phases, runs, base_meta = 0, [], 0.0, [], [], {}
    warm_start, warm_len = 0, args.warmup
    ckpt_path = os.path.join(args.work, "ckpt.pt")
    if os.path.exists(ckpt_path):
        ck = torch.load(ckpt_path, map_location=dev, weights_only=False)
        model.load_state_dict(ck["model"])
        ema.load_state_dict(ck["ema"])
        opt.load_state_dict(ck["opt"])
        step, log_rows, seconds, phases = ck["step"], ck["log"], ck["seconds"], ck.get("phases", [])
        runs, base_meta = ck.get("runs", []), ck.get("base_meta", {})
        warm_start, warm_len = ck.get("warm_start", 0), ck.get("warm_len", args.warmup)
        torch.set_rng_state(ck["rng"])
        print(f"resumed at step {step}")
    elif args.init_from:
        step, log_rows, base_meta = load_init(args.init_from, model, ema, dev)
        seconds = float(base_meta.get("train_seconds", 0))
        phases = list(base_meta.get("phases", []))
        runs = list(base_meta.get("runs", []))
        warm_start, warm_len = step, args.rewarm
        print(f"initialised from {args.init_from} (EMA weights, step {step}); LR re-warm-up {warm_len} steps")
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if args.fields:
        sampler = FieldSampler(args.fields, group=args.group, seed=args.seed + step, device=dev)
    else:
        sampler = CropSampler(args.corpus, size=cfg["image_size"], seed=args.seed + step, device=dev)
    full = cfg["image_size"]
    recipe = dict(lr=args.lr, t_sampling=dict(lognormal_frac=args.lognormal_frac, p_mean=args.p_mean,
                                               p_std=args.p_std, rest="uniform"),
                  steps_mix=[dict(patch=args.small_patch, batch=args.small_batch, frac=round(1 - args.full_frac, 4)),
                             dict(patch=full, batch=args.full_batch, frac=args.full_frac)],
                  warmup=dict(first_step=warm_start + 1, steps=warm_len), channels_last=args.channels_last,
                  bf16_autocast=args.bf16, threads=torch.get_num_threads(),
                  device=str(dev) if dev.type == "cpu" else torch.cuda.get_device_name(dev),
                  corpus=args.fields or args.corpus, init_from=args.init_from)
    run = dict(first_step=step + 1, started=time.strftime("%Y-%m-%dT%H:%M:%S"), recipe=recipe)
    runs.append(run)
    run_seconds0 = seconds
    params = sum(p.numel() for p in model.parameters())
    print(f"{args.preset}: {params / 1e6:.2f} M parameters, device {dev}, "
          f"{args.small_patch}x{args.small_patch} x{args.small_batch} / {full}x{full} x{args.full_batch} "
          f"(full fraction {args.full_frac}), log-normal t fraction {args.lognormal_frac}", flush=True)
    step_rng = torch.Generator().manual_seed(args.seed * 1000003 + step)

    def save():
        run["last_step"] = step
        run["seconds"] = round(seconds - run_seconds0)
        run["final_loss_mean_last_200"] = recent_loss(log_rows, 200)
        os.makedirs(args.work, exist_ok=True)
        torch.save(dict(model=model.state_dict(), ema=ema.state_dict(), opt=opt.state_dict(), step=step,
                        log=log_rows, seconds=seconds, phases=phases, runs=runs, base_meta=base_meta,
                        warm_start=warm_start, warm_len=warm_len, rng=torch.get_rng_state()), ckpt_path + ".tmp")
        os.replace(ckpt_path + ".tmp", ckpt_path)
        meta = dict(base_meta)
        meta.update(preset=args.preset, steps=step, ema=args.ema, phases=phases, runs=runs,
                    train_seconds=round(seconds), parameters=params,
                    final_loss_mean_last_200=recent_loss(log_rows, 200),
                    corpus=args.fields or args.corpus)
        if args.fields:
            meta["augmentation"] = args.group
        export(ema, cfg, args.out, log_rows, meta)
        if args.fields:
            # The field normalisation the engine needs to map samples to physical units.
            with open(os.path.join(args.out, "field.json"), "w") as f:
                json.dump(dict(sampler.normalisation(), data=args.fields, augmentation=args.group), f, indent=1)
        print(f"saved step {step} to {ckpt_path} and {args.out}", flush=True)

    start = time.time()
    last_save = time.time()
    budget = args.minutes * 60 if args.minutes else float("inf")
    model.train()
    ac = autocast_dtype(args.bf16)
    while step < args.steps and time.time() - start < budget:
        t0 = time.time()
        is_full = args.fields or torch.rand((), generator=step_rng).item() < args.full_frac
        if args.fields:
            x0 = sampler.batch(args.full_batch)
        elif is_full:
            x0 = sampler.batch(args.full_batch, full)
        else:
            x0 = sampler.batch(args.small_batch, args.small_patch)
        if args.channels_last:
            x0 = x0.contiguous(memory_format=torch.channels_last)
        t = diffusion.sample_t(x0.shape[0], args.lognormal_frac, args.p_mean, args.p_std, device=dev)
        loss, mse, vb = diffusion.loss(model, x0, learn_sigma=cfg["learn_sigma"], t=t, autocast=ac)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        warm = min(1.0, (step - warm_start + 1) / max(1, warm_len))
        for g in opt.param_groups:
            g["lr"] = args.lr * warm
        opt.step()
        decay = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.mul_(decay).add_(pm.detach(), alpha=1 - decay)
        step += 1
        seconds += time.time() - t0
        log_rows.append((step, round(loss.item(), 6), round(mse.item(), 6), round(vb.item(), 6),
                         x0.shape[-1]))
        log_progress(step, log_rows, seconds)
        if step % args.save_every == 0 or (args.save_minutes and time.time() - last_save > args.save_minutes * 60):
            save()
            last_save = time.time()
    save()
    print(f"done: {step} steps, exported to {args.out}")


if __name__ == "__main__":
    main()
