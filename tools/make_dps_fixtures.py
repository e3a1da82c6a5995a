#!/usr/bin/env python3
"""Fixtures for one DPS step: a PyTorch re-statement of the reference update.

The reference is DPS2022/diffusion-posterior-sampling (p_sample with learned-range variance,
clip_denoised, and the 'ps' conditioning: x_{t-1} = x' - zeta * grad_{x_t} ||y - A(x0_hat)||),
with guided-diffusion's respacing. Everything here is written independently of the Rust code:

- the schedule and `space_timesteps` in numpy float64;
- the operators in torch float64 from the reference's definitions (DPS's Resizer for SR x4,
  scipy's gaussian_filter kernel + ReflectionPad2d + depthwise conv for the blur, a box mask,
  |fftshift(fft2(ifftshift(pad(x)), ortho))| for phase retrieval);
- the UNet is deepinv's DiffUNet (guided-diffusion's ADM) with the synthetic weights of
  tools/synthetic.py, in float64, the gradient by torch.autograd;
- the step noise is the project's Philox4x32-10 + Box-Muller scheme (per-item draw, counter word
  3 = the image's item index, offset = the step row, stream 1), restated here in Python so the
  engine's own GPU draw can be used unchanged.

The one difference from the reference, on purpose: the norm is taken per sample (the reference
takes it over the batch; it only ever runs batch 1).

Usage: /work/venv/bin/python tools/make_dps_fixtures.py  (writes tests/fixtures/dps/<task>/)
"""

import json
import math
import os
import sys

import numpy as np
import scipy.ndimage
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import synthetic  # noqa: E402
from make_fixtures import build_unet, weight_items  # noqa: E402
from deepinv.models import diffunet as du  # noqa: E402

WEIGHT_SEED = 11
RESPACING = "100"
ROW = 50  # step row of the respaced loop (row 0 is the first step, t = K - 1)
SEED = 1234  # the sampler's Philox seed for the step noise
STREAM_STEP = 1

# ---------------------------------------------------------------- Philox4x32-10, Box-Muller

M0, M1, W0, W1 = 0xD2511F53, 0xCD9E8D57, 0x9E3779B9, 0xBB67AE85
MASK = 0xFFFFFFFF


def philox(counter, key):
    c0, c1, c2, c3 = counter
    k0, k1 = key
    for r in range(10):
        if r > 0:
            k0, k1 = (k0 + W0) & MASK, (k1 + W1) & MASK
        p0 = M0 * c0
        p1 = M1 * c2
        c0, c1, c2, c3 = ((p1 >> 32) ^ c1 ^ k0) & MASK, p1 & MASK, ((p0 >> 32) ^ c3 ^ k1) & MASK, p0 & MASK
    return (c0, c1, c2, c3)


def normal_item(n, seed, stream, offset, item):
    key = (seed & MASK, seed >> 32)
    out = np.empty(n, dtype=np.float64)
    for b in range((n + 3) // 4):
        w = philox((b, stream, offset, item), key)
        for pair in range(2):
            u1 = ((w[2 * pair] >> 8) + 1) / 2.0**24
            u2 = (w[2 * pair + 1] >> 8) / 2.0**24
            r = math.sqrt(-2.0 * math.log(u1))
            for q in range(2):
                i = 4 * b + 2 * pair + q
                if i < n:
                    out[i] = r * (math.cos(2 * math.pi * u2) if q == 0 else math.sin(2 * math.pi * u2))
    return out.astype(np.float32)

# ---------------------------------------------------------------- schedule


def space_timesteps(num, spec):
    counts = [int(s) for s in spec.split(",")]
    size_per, extra = divmod(num, len(counts))
    start, kept = 0, []
    for i, count in enumerate(counts):
        size = size_per + (1 if i < extra else 0)
        stride = 1 if count <= 1 else (size - 1) / (count - 1)
        cur = 0.0
        for _ in range(count):
            kept.append(start + round(cur))
            cur += stride
        start += size
    return sorted(set(kept))


def respaced():
    betas = np.linspace(1e-4, 0.02, 1000, dtype=np.float64)
    abar_full = np.cumprod(1.0 - betas)
    kept = space_timesteps(1000, RESPACING)
    last, new_betas = 1.0, []
    for t in kept:
        new_betas.append(1.0 - abar_full[t] / last)
        last = abar_full[t]
    b = np.array(new_betas)
    ab = np.cumprod(1.0 - b)
    ab_prev = np.append(1.0, ab[:-1])
    post_var = b * (1.0 - ab_prev) / (1.0 - ab)
    return dict(
        kept=kept, betas=b, ab=ab,
        post_log_var_clipped=np.log(np.append(post_var[1], post_var[1:])),
        coef1=b * np.sqrt(ab_prev) / (1.0 - ab),
        coef2=(1.0 - ab_prev) * np.sqrt(1.0 - b) / (1.0 - ab),
    )

# ---------------------------------------------------------------- operators (float64 torch)


def cubic(x):
    a = np.abs(x)
    return ((1.5 * a**3 - 2.5 * a**2 + 1) * (a <= 1)
            + (-0.5 * a**3 + 2.5 * a**2 - 4 * a + 2) * ((1 < a) & (a <= 2)))


def resize_matrix(n_in, scale):
    """The reference Resizer's 1-D map (downscaling by 1/scale with antialiasing) as a matrix."""
    n_out = int(math.ceil(n_in * scale))
    width = 4.0 / scale
    coords = np.arange(1, n_out + 1) - (n_out - n_in * scale) / 2
    match = coords / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(match - width / 2)
    taps = int(np.ceil(width) + 2)
    fov = (left[:, None] + np.arange(taps) - 1).astype(np.int64)
    w = scale * cubic(scale * (match[:, None] - fov - 1))
    s = w.sum(axis=1)
    s[s == 0] = 1.0
    w = w / s[:, None]
    mirror = np.concatenate([np.arange(n_in), np.arange(n_in - 1, -1, -1)])
    fov = mirror[np.mod(fov, len(mirror))]
    m = np.zeros((n_out, n_in))
    for i in range(n_out):
        for j in range(taps):
            m[i, fov[i, j]] += w[i, j]
    # The reference stores the weights as float32.
    return torch.from_numpy(m.astype(np.float32).astype(np.float64))


def op_sr4(h, w):
    mh, mw = resize_matrix(h, 0.25), resize_matrix(w, 0.25)
    return (lambda x: torch.einsum("ih,nchw,jw->ncij", mh, x, mw)), {}


def gaussian_kernel61():
    delta = np.zeros((61, 61))
    delta[30, 30] = 1.0
    return scipy.ndimage.gaussian_filter(delta, sigma=3.0)


def op_gaussian_blur(h, w):
    k = gaussian_kernel61()
    kt = torch.from_numpy(k.astype(np.float32).astype(np.float64)).expand(3, 1, 61, 61)

    def a(x):
        return F.conv2d(F.pad(x, (30, 30, 30, 30), mode="reflect"), kt, groups=3)
    return a, {"kernel": k.astype(np.float32)}


def op_box_inpaint(h, w):
    mask = np.ones((h, w), dtype=np.float32)
    top, left, side = 9, 21, h // 2  # a 32x32 hole at 64x64, inside the [4, 28) corner range
    mask[top:top + side, left:left + side] = 0
    mt = torch.from_numpy(mask).double()
    return (lambda x: x * mt), {"mask": mask}


def op_phase_retrieval(h, w):
    ph, pw = int(2.0 / 8.0 * h), int(2.0 / 8.0 * w)

    def a(x):
        xp = F.pad(x, (pw, pw, ph, ph))
        z = torch.fft.fftshift(torch.fft.fft2(torch.fft.ifftshift(xp, dim=(-2, -1)), norm="ortho"), dim=(-2, -1))
        return z.abs()
    return a, {}


TASKS = {
    # task: (operator builder, batch, zeta)
    "sr4": (op_sr4, 2, 1.0),
    "gaussian-deblur": (op_gaussian_blur, 1, 1.0),
    "box-inpaint": (op_box_inpaint, 1, 1.0),
    "phase-retrieval": (op_phase_retrieval, 1, 0.5),
}


def make(task, unet, sched, size=64):
    build, batch, zeta = TASKS[task]
    a, extra = build(size, size)
    seed = 100 + len(task)
    gt = np.clip(synthetic.tensor(seed, "gt", (batch, 3, size, size)) * 0.5, -1, 1)
    x_t = synthetic.tensor(seed, "x_t", (batch, 3, size, size))
    with torch.no_grad():
        y = a(torch.from_numpy(gt).double())
    y = (y + 0.05 * torch.from_numpy(synthetic.tensor(seed, "n", tuple(y.shape))).double()).float()

    i = len(sched["kept"]) - 1 - ROW  # respaced index of this row
    t_model = sched["kept"][i]
    ab = sched["ab"][i]
    c1, c2 = math.sqrt(1.0 / ab), math.sqrt(1.0 / ab - 1.0)
    item_len = 3 * size * size
    z = np.stack([normal_item(item_len, SEED, STREAM_STEP, ROW, k).reshape(3, size, size) for k in range(batch)])

    xt = torch.from_numpy(x_t).double().requires_grad_(True)
    out = unet.forward_diffusion(xt, torch.full((batch,), t_model, dtype=torch.int64))
    eps, v = out[:, :3], out[:, 3:]
    x0_raw = c1 * xt - c2 * eps
    x0 = torch.clamp(x0_raw, -1.0, 1.0)
    clipped = float((x0_raw.abs() > 1).double().mean())
    frac = (v + 1.0) / 2.0
    log_var = frac * math.log(sched["betas"][i]) + (1.0 - frac) * sched["post_log_var_clipped"][i]
    mean = sched["coef1"][i] * x0 + sched["coef2"][i] * xt
    x_prime = mean + torch.exp(0.5 * log_var) * torch.from_numpy(z).double()
    diff = y.double() - a(x0)
    norm = torch.linalg.norm(diff.reshape(batch, -1), dim=1)  # per sample
    (grad,) = torch.autograd.grad(norm.sum(), xt)
    x_next = (x_prime - zeta * grad).detach()

    out_dir = os.path.join(REPO, "tests", "fixtures", "dps", task)
    os.makedirs(out_dir, exist_ok=True)
    np.save(os.path.join(out_dir, "x_t.npy"), x_t)
    np.save(os.path.join(out_dir, "y.npy"), y.numpy())
    np.save(os.path.join(out_dir, "x_prime.npy"), x_prime.detach().float().numpy())
    np.save(os.path.join(out_dir, "x_next.npy"), x_next.float().numpy())
    for k, val in extra.items():
        np.save(os.path.join(out_dir, f"{k}.npy"), val)
    meta = dict(task=task, config="ffhq256", weight_seed=WEIGHT_SEED, size=size, batch=batch,
                respacing=RESPACING, row=ROW, t_model=int(t_model), seed=SEED, zeta=zeta,
                norm=[float(v) for v in norm.detach()], clipped_fraction=clipped,
                reference="DPS p_sample + ps conditioning, restated in torch float64 (tools/make_dps_fixtures.py)")
    with open(os.path.join(out_dir, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(f"{task}: batch {batch}, t {t_model}, norm {meta['norm']}, clipped {clipped:.3f}, "
          f"|x_next - x'| / |x'| = {float((x_next - x_prime.detach()).norm() / x_prime.detach().norm()):.3e}")


def main():
    torch.manual_seed(0)
    unet = build_unet("ffhq256")
    sd = weight_items(unet)
    new = {k: torch.from_numpy(synthetic.tensor(WEIGHT_SEED, k, tuple(v.shape))) for k, v in sd.items()}
    unet.load_state_dict(new, strict=False)
    unet = unet.double()
    unet.dtype = torch.float64
    du.GroupNorm32.forward = lambda self, x: torch.nn.GroupNorm.forward(self, x)
    unet.time_embed.register_forward_pre_hook(lambda mod, args: tuple(a.double() for a in args))
    sched = respaced()
    for task in (sys.argv[1:] or TASKS):
        make(task, unet, sched)


if __name__ == "__main__":
    main()
