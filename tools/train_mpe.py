#!/usr/bin/env python3
"""Train the default MPE function: a small CompVis-style first-stage autoencoder on the corpus
(flip and 90-degree-rotation augmentation, L1 + L2 reconstruction, no quantization), exporting
its encoder (+ quant_conv, post_quant_conv) as an equireg MPE folder.

An autoencoder trained for reconstruction alone is not manifold-preferential: its stride-2
downsampling puts the latent grid off-centre, so a flip or a rotation moves the sampling
points, and the equivariance error then tracks image detail (blurred images score best). Two
choices fix that: one downsampling level only (half a latent pixel of offset instead of
three input pixels at f4), and an equivariance term on clean crops only,
||g E(x) - E(g x)||^2 / ||E(x)||^2 for a random element g of D4, so that the encoder is
equivariant on the data. Reconstruction and that term alone still leave blurred images with
the smallest error (less detail, smaller residuals), so a third term, a hinge on degraded
copies of the crops (Gaussian noise of std 0.05-0.4, or a Gaussian blur of std 0.7-3 pixels,
drawn per image), asks the equivariance error there to be at least --margin (relative to the
clean latent's energy): f is trained to be equivariant on the manifold and not off it, which is
the property EquiReg's penalty uses. `equireg mpe-check` tests it on other photographs with its
own fixed degradations.

    python tools/train_mpe.py --minutes 20           # resumes from build/mpe/ckpt.pt
    equireg restore ... --equireg mpe=assets/models/mpe

The folder gets config.json (kind ldm_encoder), weights.safetensors (CompVis names),
check.safetensors (an input and this network's float64 output, which the Rust tests compare
with equireg's), training.json, loss.csv and loss.png.
"""
import argparse
import csv
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from equireg_train.autoencoder import Autoencoder  # noqa: E402
from equireg_train.data import CropSampler  # noqa: E402
from equireg_train.export import log_progress, plot_losses, recent_loss, save_safetensors  # noqa: E402

CONFIG = dict(kind="ldm_encoder", ch=32, ch_mult=[1, 2], num_res_blocks=1, attn_resolutions=[],
              z_channels=4, embed_dim=4, in_channels=3, resolution=64, double_z=False)


def degrade(x):
    """Per image: Gaussian noise (std 0.05-0.4) or a 13x13 Gaussian blur (std 0.7-3 px)."""
    n = x.shape[0]
    out = []
    for i in range(n):
        xi = x[i : i + 1]
        if torch.rand(()) < 0.5:
            out.append(xi + (0.05 + 0.35 * torch.rand(())) * torch.randn_like(xi))
        else:
            sigma = 0.7 + 2.3 * torch.rand(())
            r = torch.arange(-6, 7, dtype=x.dtype, device=x.device)
            k1 = torch.exp(-(r**2) / (2 * sigma**2))
            k1 = k1 / k1.sum()
            k = (k1[:, None] * k1[None, :]).expand(3, 1, 13, 13)
            out.append(F.conv2d(F.pad(xi, (6, 6, 6, 6), mode="reflect"), k, groups=3))
    return torch.cat(out)


def export(model, out, log_rows, meta):
    os.makedirs(out, exist_ok=True)
    save_safetensors(model.mpe_state_dict(), os.path.join(out, "weights.safetensors"))
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(CONFIG, f, indent=1)
    with open(os.path.join(out, "training.json"), "w") as f:
        json.dump(meta, f, indent=1)
    with open(os.path.join(out, "loss.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "loss"])
        w.writerows(log_rows)
    plot_losses(log_rows, os.path.join(out, "loss.png"), "MPE autoencoder: L1 + L2 reconstruction")
    # The parity fixture: a fixed input in [-1, 1] and f(x) in float64.
    g = torch.Generator().manual_seed(7)
    x = torch.rand(2, 3, 64, 64, generator=g, dtype=torch.float64) * 2 - 1
    ref = Autoencoder(CONFIG).double()
    ref.load_state_dict({k: v.double() for k, v in model.state_dict().items()})
    with torch.no_grad():
        y = ref.mpe(x)
    save_safetensors({"input": x, "output": y}, os.path.join(out, "check.safetensors"))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default="data/corpus.npz")
    ap.add_argument("--work", default="build/mpe")
    ap.add_argument("--out", default="assets/models/mpe")
    ap.add_argument("--steps", type=int, default=1_000_000)
    ap.add_argument("--minutes", type=float, default=None)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--patch", type=int, default=None, help="train on patch x patch windows of the 64x64 crops")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--equi-weight", type=float, default=1.0, help="weight of the equivariance term")
    ap.add_argument("--off-weight", type=float, default=1.0, help="weight of the hinge on degraded crops")
    ap.add_argument("--margin", type=float, default=0.3, help="hinge margin of the off-manifold error")
    ap.add_argument("--save-every", type=int, default=250)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    dev = torch.device(args.device)
    model = Autoencoder(CONFIG).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    step, log_rows, seconds, phases = 0, [], 0.0, []
    ckpt_path = os.path.join(args.work, "ckpt.pt")
    if os.path.exists(ckpt_path):
        ck = torch.load(ckpt_path, map_location=dev)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        step, log_rows, seconds, phases = ck["step"], ck["log"], ck["seconds"], ck["phases"]
        print(f"resumed at step {step}")
    sampler = CropSampler(args.corpus, size=CONFIG["resolution"], seed=args.seed + step, device=dev, patch=args.patch)
    phase = dict(first_step=step + 1, patch=args.patch or CONFIG["resolution"], batch=args.batch, lr=args.lr,
                 equi_weight=args.equi_weight, off_weight=args.off_weight, margin=args.margin,
                 device=str(dev) if dev.type == "cpu" else torch.cuda.get_device_name(dev))
    phases.append(phase)
    params = sum(p.numel() for p in model.encoder.parameters()) + 2 * CONFIG["z_channels"] * CONFIG["embed_dim"]
    print(f"autoencoder {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters, device {dev}")

    def save():
        phase["last_step"] = step
        os.makedirs(args.work, exist_ok=True)
        torch.save(dict(model=model.state_dict(), opt=opt.state_dict(), step=step, log=log_rows,
                        seconds=seconds, phases=phases), ckpt_path + ".tmp")
        os.replace(ckpt_path + ".tmp", ckpt_path)
        export(model, args.out, log_rows, dict(steps=step, phases=phases, train_seconds=round(seconds),
                                                encoder_parameters=params, corpus=args.corpus,
                                                final_loss_mean_last_200=recent_loss(log_rows, 200)))

    start = time.time()
    budget = args.minutes * 60 if args.minutes else float("inf")
    while step < args.steps and time.time() - start < budget:
        t0 = time.time()
        x = sampler.batch(args.batch)
        z = model.mpe(x)
        r = model.decoder(z)
        loss = (r - x).abs().mean() + ((r - x) ** 2).mean()
        if args.equi_weight > 0:
            k, flip = int(torch.randint(0, 4, ())), bool(torch.randint(0, 2, ()))

            def g(t):
                t = torch.rot90(t, k, dims=(2, 3))
                return torch.flip(t, dims=(3,)) if flip else t

            energy = (z.detach() ** 2).mean().clamp(min=1e-6)
            zg = model.mpe(g(x))
            equi = ((g(z) - zg) ** 2).mean() / energy
            loss = loss + args.equi_weight * equi
            if args.off_weight > 0:
                xd = degrade(x)
                zd, zdg = model.mpe(xd), model.mpe(g(xd))
                off = ((g(zd) - zdg) ** 2).mean(dim=(1, 2, 3)) / energy
                loss = loss + args.off_weight * F.relu(args.margin - off).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        for gr in opt.param_groups:
            gr["lr"] = args.lr * min(1.0, (step + 1) / 100)
        opt.step()
        step += 1
        seconds += time.time() - t0
        log_rows.append((step, round(loss.item(), 6)))
        log_progress(step, log_rows, seconds)
        if step % args.save_every == 0:
            save()
    save()
    print(f"done: {step} steps, exported to {args.out}")


if __name__ == "__main__":
    main()
