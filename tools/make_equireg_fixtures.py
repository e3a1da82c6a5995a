#!/usr/bin/env python3
"""Fixtures for EquiReg: the penalty and its gradient with respect to x_t, restated in PyTorch
(float64) from the reference semantics (Anima-Lab/Equireg penalty.py / groups.py):

    x0   = clamp(sqrt(1/abar) x_t - sqrt(1/abar - 1) eps(x_t, t), -1, 1)     (DPS's x0_hat)
    equi:      P = alpha * sum_n red( rho(g) f(x0_n) - f(g x0_n) )
    equi_plus: P = alpha * sum_n red( x0_n - g^-1 f(g x0_n) )
    grad = dP / dx_t  (torch.autograd, through f, the clamp and the UNet)

with reductions norm / sqnorm / mse per sample (the reference reduces over its batch of one),
rho(g) = g on f's output grid (shifts divided by f's downsampling factor) and the identity for
vector outputs. The element g is the one equireg draws on the GPU for that step (Philox,
restated here). The UNet is tiny32 (tools/make_fixtures.py) and the MPE networks are the PyTorch
re-statements of tools/make_mpe_fixtures.py, all with tools/synthetic.py weights.

Usage: /work/venv/bin/python tools/make_equireg_fixtures.py  (writes tests/fixtures/equireg/)
"""
import json
import math
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import synthetic  # noqa: E402
from make_dps_fixtures import philox  # noqa: E402
from make_fixtures import build_unet, weight_items  # noqa: E402
from make_mpe_fixtures import LDM, SMALL_CNN, FirstStageEncoder, SmallCNN, load_synthetic  # noqa: E402
from deepinv.models import diffunet as du  # noqa: E402

OUT = os.path.join(REPO, "tests", "fixtures", "equireg")
UNET_SEED, MPE_SEED, DRAW_SEED = 5, 3, 21
ROW, T_MODEL, ABAR_STEPS = 4, 555, 1000
STREAM_GROUP = 7

# Dihedral codes as equireg numbers them; each as a torch map on the last two axes.
DIHEDRAL = [
    lambda x: x,
    lambda x: torch.rot90(x, 1, dims=(-2, -1)),
    lambda x: torch.rot90(x, 2, dims=(-2, -1)),
    lambda x: torch.rot90(x, 3, dims=(-2, -1)),
    lambda x: torch.flip(x, dims=(-1,)),
    lambda x: torch.flip(x, dims=(-2,)),
    lambda x: x.transpose(-2, -1),
    lambda x: x.transpose(-2, -1).flip(-2).flip(-1),
]
INVERSE = [0, 3, 2, 1, 4, 5, 6, 7]
GROUPS = {"hflip": ([4], 0), "rot90": ([1, 3], 0), "d4": (list(range(8)), 0), "shift:2": ([0], 2)}


def draw(group, step, multiple):
    elements, max_shift = GROUPS[group]
    w = philox((0, STREAM_GROUP, step, 0), (DRAW_SEED & 0xFFFFFFFF, DRAW_SEED >> 32))
    span = 2 * max_shift + 1
    dy = ((w[1] % span) - max_shift) * multiple
    dx = ((w[2] % span) - max_shift) * multiple
    return elements[w[0] % len(elements)], dy, dx


def act(x, code, dy, dx, inverse=False):
    if inverse:
        return DIHEDRAL[INVERSE[code]](torch.roll(x, (-dy, -dx), dims=(-2, -1)))
    return torch.roll(DIHEDRAL[code](x), (dy, dx), dims=(-2, -1))


def reduce(r, how):
    flat = r.reshape(r.shape[0], -1)
    sq = (flat * flat).sum(dim=1)
    if how == "norm":
        return sq.sqrt()
    if how == "sqnorm":
        return sq
    return sq / flat.shape[1]


def abar_full():
    betas = np.linspace(1e-4, 0.02, 1000, dtype=np.float64)
    return np.cumprod(1.0 - betas)


def build_tiny_unet():
    unet = build_unet("tiny32")
    sd = weight_items(unet)
    new = {k: torch.from_numpy(synthetic.tensor(UNET_SEED, k, tuple(v.shape))) for k, v in sd.items()}
    unet.load_state_dict(new, strict=False)
    unet = unet.double()
    unet.dtype = torch.float64
    du.GroupNorm32.forward = lambda self, x: torch.nn.GroupNorm.forward(self, x)
    unet.time_embed.register_forward_pre_hook(lambda mod, args: tuple(a.double() for a in args))
    return unet.eval()


def main():
    torch.manual_seed(0)
    unet = build_tiny_unet()
    ab = abar_full()
    c1, c2 = math.sqrt(1 / ab[T_MODEL]), math.sqrt(1 / ab[T_MODEL] - 1)
    t_f = 200
    d1, d2 = math.sqrt(1 / ab[t_f]), math.sqrt(1 / ab[t_f] - 1)

    def denoiser(x):
        eps = unet.forward_diffusion(x, torch.full((x.shape[0],), t_f, dtype=torch.int64))[:, :3]
        return d1 * x - d2 * eps

    mpes = {
        "ldm-tiny": (load_synthetic(FirstStageEncoder(LDM["ldm-tiny"]), MPE_SEED), 2, True),
        "vq-f4": (load_synthetic(FirstStageEncoder(LDM["vq-f4"]), MPE_SEED), 4, True),
        "small-cnn": (load_synthetic(SmallCNN(**SMALL_CNN), MPE_SEED), 1, False),
        "denoiser:200": (denoiser, 1, True),
    }
    cases = [
        # (mpe, form, reduction, group, batch)
        ("ldm-tiny", "equi", "norm", "hflip", 2),
        ("ldm-tiny", "equi", "sqnorm", "hflip", 2),
        ("ldm-tiny", "equi", "mse", "hflip", 2),
        ("ldm-tiny", "equi", "norm", "rot90", 2),
        ("ldm-tiny", "equi", "mse", "d4", 2),
        ("ldm-tiny", "equi", "norm", "shift:2", 2),
        ("vq-f4", "equi", "norm", "hflip", 1),
        ("vq-f4", "equi", "sqnorm", "rot90", 1),
        ("small-cnn", "equi", "norm", "hflip", 2),
        ("small-cnn", "equi", "sqnorm", "d4", 2),
        ("denoiser:200", "equi_plus", "norm", "rot90", 2),
        ("denoiser:200", "equi_plus", "sqnorm", "hflip", 2),
        ("denoiser:200", "equi_plus", "mse", "shift:2", 2),
    ]
    os.makedirs(OUT, exist_ok=True)
    alpha = 0.3
    index = []
    for k, (mpe_name, form, how, group, batch) in enumerate(cases):
        f, factor, spatial = mpes[mpe_name]
        code, dy, dx = draw(group, ROW, factor)
        x_t = synthetic.tensor(40 + batch, "x_t", (batch, 3, 32, 32))
        xt = torch.from_numpy(x_t).double().requires_grad_(True)
        eps = unet.forward_diffusion(xt, torch.full((batch,), T_MODEL, dtype=torch.int64))[:, :3]
        x0 = torch.clamp(c1 * xt - c2 * eps, -1, 1)
        gx0 = act(x0, code, dy, dx)
        if form == "equi":
            fx, fgx = f(x0), f(gx0)
            lhs = act(fx, code, dy // factor, dx // factor) if spatial else fx
            r = lhs - fgx
        else:
            r = x0 - act(f(gx0), code, dy, dx, inverse=True)
        pen = alpha * reduce(r, how)
        (grad,) = torch.autograd.grad(pen.sum(), xt)
        name = f"{k:02d}-{mpe_name.replace(':', '')}-{form}-{how}-{group.replace(':', '')}"
        d = os.path.join(OUT, name)
        os.makedirs(d, exist_ok=True)
        np.save(os.path.join(d, "x_t.npy"), x_t)
        np.save(os.path.join(d, "grad.npy"), grad.float().numpy())
        meta = dict(mpe=mpe_name, form=form, reduction=how, group=group, batch=batch, alpha=alpha,
                    row=ROW, t_model=T_MODEL, draw_seed=DRAW_SEED, unet="tiny32", unet_seed=UNET_SEED,
                    mpe_seed=MPE_SEED, element=[code, dy, dx],
                    penalty=[float(v) for v in pen.detach()])
        with open(os.path.join(d, "meta.json"), "w") as fh:
            json.dump(meta, fh, indent=1)
        index.append(name)
        print(name, meta["element"], meta["penalty"], float(grad.norm()))
    with open(os.path.join(OUT, "cases.json"), "w") as fh:
        json.dump(index, fh, indent=1)


if __name__ == "__main__":
    main()
