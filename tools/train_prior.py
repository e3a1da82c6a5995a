#!/usr/bin/env python3
"""Train the embedded default diffusion prior (a small guided-diffusion UNet) on the corpus.

    python tools/build_corpus.py                       # data/corpus.npz (once)
    python tools/train_prior.py --minutes 90           # CPU: resumes from build/prior/ckpt.pt
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
        w.writerow(["step", "loss", "mse", "vb"])
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


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default="data/corpus.npz")
    ap.add_argument("--preset", default="photo64", choices=sorted(PRESETS))
    ap.add_argument("--fields", default=None,
                    help="train on joint PDE fields [N, 2, 64, 64] (tools/pde_data.py) instead of the photo corpus")
    ap.add_argument("--group", default="d4", help="--fields: augmentation group (d4, d4-sign, none)")
    ap.add_argument("--work", default="build/prior", help="checkpoint folder (resumed from)")
    ap.add_argument("--out", default="assets/models/prior")
    ap.add_argument("--steps", type=int, default=1_000_000, help="stop after this many optimizer steps")
    ap.add_argument("--minutes", type=float, default=None, help="stop after this much wall time")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--patch", type=int, default=None,
                    help="train on random patch x patch windows of the crops (CPU: 32 is 4.6x faster)")
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--save-every", type=int, default=250)
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
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    dev = torch.device(args.device)
    model = UNet(cfg).to(dev)
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    step, log_rows, seconds, phases = 0, [], 0.0, []
    ckpt_path = os.path.join(args.work, "ckpt.pt")
    if os.path.exists(ckpt_path):
        ck = torch.load(ckpt_path, map_location=dev)
        model.load_state_dict(ck["model"])
        ema.load_state_dict(ck["ema"])
        opt.load_state_dict(ck["opt"])
        step, log_rows, seconds, phases = ck["step"], ck["log"], ck["seconds"], ck.get("phases", [])
        torch.set_rng_state(ck["rng"])
        print(f"resumed at step {step}")
    if args.fields:
        sampler = FieldSampler(args.fields, group=args.group, seed=args.seed + step, device=dev)
    else:
        sampler = CropSampler(args.corpus, size=cfg["image_size"], seed=args.seed + step, device=dev,
                              patch=args.patch)
    phase = dict(first_step=step + 1, patch=args.patch or cfg["image_size"], batch=args.batch, lr=args.lr,
                 device=str(dev) if dev.type == "cpu" else torch.cuda.get_device_name(dev))
    phases.append(phase)
    diffusion = Diffusion(1000, device=dev)
    params = sum(p.numel() for p in model.parameters())
    print(f"{args.preset}: {params / 1e6:.2f} M parameters, device {dev}, batch {args.batch}")

    def save():
        phase["last_step"] = step
        os.makedirs(args.work, exist_ok=True)
        torch.save(dict(model=model.state_dict(), ema=ema.state_dict(), opt=opt.state_dict(), step=step,
                        log=log_rows, seconds=seconds, phases=phases, rng=torch.get_rng_state()), ckpt_path + ".tmp")
        os.replace(ckpt_path + ".tmp", ckpt_path)
        meta = dict(preset=args.preset, steps=step, ema=args.ema, phases=phases,
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

    start = time.time()
    budget = args.minutes * 60 if args.minutes else float("inf")
    model.train()
    while step < args.steps and time.time() - start < budget:
        t0 = time.time()
        x0 = sampler.batch(args.batch)
        loss, mse, vb = diffusion.loss(model, x0, learn_sigma=cfg["learn_sigma"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        warm = min(1.0, (step + 1) / 200)
        for g in opt.param_groups:
            g["lr"] = args.lr * warm
        opt.step()
        decay = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.mul_(decay).add_(pm.detach(), alpha=1 - decay)
        step += 1
        seconds += time.time() - t0
        log_rows.append((step, round(loss.item(), 6), round(mse.item(), 6), round(vb.item(), 6)))
        log_progress(step, log_rows, seconds)
        if step % args.save_every == 0:
            save()
    save()
    print(f"done: {step} steps, exported to {args.out}")


if __name__ == "__main__":
    main()
