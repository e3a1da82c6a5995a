#!/usr/bin/env python3
"""Gate 1 of the prior recipe (shared/specs/prior.md 4.5): held-out denoising, paired.

For two prior folders (config.json + weights.safetensors), the x0 estimate
x0_hat = clip((x_t - sqrt(1 - abar_t) eps_hat) / sqrt(abar_t), -1, 1) of each model from the
*same* noisy inputs, PSNR on [0, 1] against the clean crop, at six timesteps of the linear
1000-step schedule. Crops: --per-image fixed 64x64 crops of each validation photograph
(data/corpus_val.npz, tools/build_corpus_gcompris.py's hold-out), side log-uniform between
64 and the short side as in training, downscaled with antialiasing, drawn with --seed; --draws
noise draws per crop and timestep, also from --seed. A crop's PSNR is the mean over its draws;
the table pairs the crops.

    python tools/denoise_gate.py assets/models/prior build/prior_run/model
    python tools/denoise_gate.py A B --corpus data/corpus_gcompris.npz   # training crops (memorisation gap)

Pass (declared in the spec before any run): B >= A at every timestep and a mean gain over
t = 27..259 of at least +0.2 dB.
"""
import argparse
import json
import math
import os
import sys

# Passive OpenMP waiting: on these shared 2-core machines the default spin-wait made a
# 2-thread step about 6x slower whenever another process held a core (measured: 18-22 s
# against 2.7-3.9 s per 32x32 batch-64 photo64s step). Must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from equireg_train.diffusion import linear_betas  # noqa: E402
from equireg_train.unet import UNet  # noqa: E402


def load_prior(folder):
    from safetensors.torch import load_file

    with open(os.path.join(folder, "config.json")) as f:
        cfg = json.load(f)
    m = UNet(cfg)
    m.load_state_dict(load_file(os.path.join(folder, "weights.safetensors")))
    return m.eval()


def fixed_crops(corpus, per_image, seed, size=64, limit=None):
    data = np.load(corpus)
    rng = np.random.default_rng(seed)
    crops = []
    for k in sorted(data.files):
        im = torch.from_numpy(data[k]).permute(2, 0, 1).float().div(255.0)
        _, h, w = im.shape
        short = min(h, w)
        for _ in range(per_image):
            side = int(round(size * 2.0 ** rng.uniform(0.0, math.log2(short / size))))
            side = max(size, min(side, short))
            top, left = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
            c = im[:, top : top + side, left : left + side].unsqueeze(0)
            c = F.interpolate(c, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
            crops.append(c[0].clamp(0, 1))
    crops = torch.stack(crops)
    return crops[:limit] if limit else crops


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a", help="reference prior folder (e.g. the shipped assets/models/prior)")
    ap.add_argument("b", help="candidate prior folder")
    ap.add_argument("--corpus", default="data/corpus_val.npz")
    ap.add_argument("--per-image", type=int, default=2, help="fixed crops per photograph")
    ap.add_argument("--limit", type=int, default=None, help="use only the first N crops")
    ap.add_argument("--t", default="11,27,58,145,259,498", help="timesteps (sigma 0.05, 0.1, 0.2, 0.5, 1, 3.4)")
    ap.add_argument("--draws", type=int, default=4, help="noise draws per crop and timestep")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", default=None, help="also write the table as JSON")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    x0 = fixed_crops(args.corpus, args.per_image, args.seed, limit=args.limit) * 2 - 1  # [-1, 1]
    n = x0.shape[0]
    acp = torch.tensor(np.cumprod(1.0 - linear_betas(1000)), dtype=torch.float64)
    models = [load_prior(args.a), load_prior(args.b)]
    ts = [int(v) for v in args.t.split(",")]
    print(f"{n} crops of {args.corpus} (seed {args.seed}), {args.draws} noise draws each; A = {args.a}, B = {args.b}")
    print("| t | sigma | PSNR A (dB) | PSNR B (dB) | B - A (dB) | s.e. | B better (crops) |")
    print("|---|---|---|---|---|---|---|")
    g = torch.Generator().manual_seed(args.seed + 1)
    rows = []
    for t in ts:
        a = acp[t].item()
        psnr = torch.zeros(2, n, args.draws, dtype=torch.float64)
        for d in range(args.draws):
            noise = torch.randn(x0.shape, generator=g)
            xt = math.sqrt(a) * x0 + math.sqrt(1 - a) * noise
            tt = torch.full((n,), t, dtype=torch.long)
            for i, m in enumerate(models):
                with torch.no_grad():
                    eps = m(xt, tt)[:, : x0.shape[1]]
                x0h = ((xt - math.sqrt(1 - a) * eps) / math.sqrt(a)).clamp(-1, 1)
                mse = (((x0h - x0) / 2.0) ** 2).double().mean(dim=(1, 2, 3))
                psnr[i, :, d] = -10 * torch.log10(mse.clamp(min=1e-12))
        per = psnr.mean(dim=2)
        diff = per[1] - per[0]
        se = diff.std(unbiased=True).item() / math.sqrt(n) if n > 1 else float("nan")
        sigma = math.sqrt((1 - a) / a)
        row = dict(t=t, sigma=sigma, psnr_a=per[0].mean().item(), psnr_b=per[1].mean().item(),
                   diff=diff.mean().item(), se=se, b_better=int((diff > 0).sum()), n=n)
        rows.append(row)
        print(f"| {t} | {sigma:.3f} | {row['psnr_a']:.3f} | {row['psnr_b']:.3f} | {row['diff']:+.3f} | {se:.3f} | "
              f"{row['b_better']}/{n} |", flush=True)
    mid = [r["diff"] for r in rows if 27 <= r["t"] <= 259]
    worse = [r["t"] for r in rows if r["diff"] < 0]
    mid_gain = sum(mid) / len(mid) if mid else float("nan")
    print(f"mean B - A over t = 27..259: {mid_gain:+.3f} dB; timesteps where B is worse: {worse or 'none'}")
    print("gate 1:", "PASS" if not worse and mid_gain >= 0.2 else "FAIL",
          "(B >= A at every t and mean gain >= +0.2 dB over t = 27..259)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(a=args.a, b=args.b, corpus=args.corpus, crops=n, draws=args.draws, seed=args.seed,
                           rows=rows, mid_gain=mid_gain), f, indent=1)


if __name__ == "__main__":
    main()
