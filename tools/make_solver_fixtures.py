#!/usr/bin/env python3
"""Fixtures for the posterior samplers beside DPS: PyTorch re-statements of their reference
implementations, run in float64 on a small network with synthetic weights.

DiffPIR (yuanzhi-zhu/DiffPIR, main_ddpir_sisr.py / main_ddpir.py, generate_mode 'DiffPIR',
model_out_type 'pred_xstart', sub_1_analytic False, eta 0, skip_type 'quad', t_start 999),
restated from the reference's loop:

    sigma_ks[t] = sqrt(1 - abar_t) / sqrt(abar_t);  rhos[t] = lambda sigma^2 / sigma_ks[t]^2
    seq = int(sqrt(linspace(0, 1000^2, K))), seq[-1] -= 1;  t_i = 999 - seq[i]
    x0 = clip(pred_xstart(x, t_i))
    if not last: norm_grad, norm = grad and value of ||y - A(x0)|| ;  x0 -= norm_grad * norm / rhos[t_i]
                 eps = (x - sqrt(abar_i) x0) / sqrt(1 - abar_i)
                 x = sqrt(abar_im1) x0 + sqrt(1 - zeta) sqrt(1 - abar_im1) eps + sqrt(zeta) sqrt(1 - abar_im1) z
    last: x is kept (the result)

with sigma = max(0.001, noise level in [0, 1] units) and the data step in [-1, 1] units as the
super-resolution script (measurement 2 y - 1). The network is deepinv's DiffUNet blocks in
guided-diffusion's order (tools/make_fixtures.py, preset tiny32, synthetic weights of
tools/synthetic.py), in float64. The operators are those of tools/make_dps_fixtures.py (DPS's
Resizer, |FFT| phase retrieval). The noise is the engine's Philox scheme restated in Python
(make_dps_fixtures.normal_item): x_T is stream 0 at offset 0, the step noise stream 1 at the
step's row, both keyed by the image's item index, so the engine's own draws can be used.

RED-diff (NVlabs/RED-diff, algos/reddiff.py; reddiff.yaml: Adam lr 0.1, betas (0.9, 0.99),
grad_term_weight 0.25, obs_weight 1, denoise_term_weight linear, sigma_x0 0, awd, eta 0),
restated from the reference's loop:

    ts = range(0, 1000, 1000 // K), visited from the top; mu Adam-optimised from mu_0
    noise_xt ~ N(0, I); xt = sqrt(abar_t) mu + sqrt(1 - abar_t) noise_xt; et = eps(xt, t) (no grad)
    loss = 0.25 snr_inv mean((et - noise_xt).detach() * mu) + mean((y - A(mu))^2) / 2
    snr_inv = sqrt(1 - abar_t) / sqrt(abar_t); one Adam step
    the result: x0_pred of the last step, mu before its Adam step (main.py keeps algo.sample's
    first value); states[K - 1] below

with the means per sample (summed over the batch) and mu_0 given (the engine's own start is its
operator's naive estimate: the reference's pseudo-inverse does not exist for every operator).

DAPS (zhangbingliang2019/DAPS, sampler.py::DAPS, cores/mcmc.py langevin with prior_solver
gaussian, cores/scheduler.py EDM poly-7, model/precond.py::VPPrecond), restated from the
reference's loop:

    sigma_i = poly7(100, 0.1, i / K) for i < K, sigma_K = 0;  x = sigma_0 z
    per level: xh = x; Euler on the poly-7 grid sigma_i -> 0.01 (n + 1 points):
               xh += (s' - s) (xh - D(xh, s)) / s,  D(x, s) = x - s eps(x / sqrt(1 + s^2), 999 t(s))
               lr = lr0 (1 + i / (K + 1) (lr_min_ratio - 1));  u = xh
               M times: u += lr (-grad sum ||A(u) - y||^2 / tau^2 + (xh - u) / s^2) + sqrt(2 lr) z
               x = u + sigma_{i+1} z

with the engine's Philox draws: x's start stream 0 at offset 0, the Langevin noise stream 1 at
offset i M + m, the re-noising stream 2 at offset i.

SITCOM (sjames40/SITCOM, SITCOM_with_noise.py with its diffusers DDIMScheduler copy), restated
from the reference's loop, one image at a time as the reference runs (batch 1):

    t_i = (N - 1 - i) (1000 // N);  abar' = abar_{t - 1000 // N}, abar_0 at the last step
    v = x; Adam(v, lr, (0.9, 0.999)) fresh; K times:
        x0 = clamp((v - sqrt(1 - abar) eps(v, t)) / sqrt(abar), -1, 1); L = ||A(x0) - y||^2
        if L < (noise_level + 0.001)^2 numel(y): break
        Adam step on dL/dv
    inpainting: x0 = clamp(x0 - dc_scale grad ||A(x0) - y||^2)
    x = sqrt(abar') x0 + sqrt(1 - abar') z       (z: stream 1 at the step's row)

saving x after every step and the last x0 (the result).

DDNM+ (wyhuai/DDNM, with the noisy-case scaling in InverseBench's form), restated in variance-
exploding units x_ve = x / sqrt(abar), sigma = sqrt(1 / abar - 1):

    t_i = i * 1000 // K from the top, abar' = 1 after t_0
    x0 = (x - sqrt(1 - abar) eps) / sqrt(abar); lam = min(1, sigma' / sigma_y)
    x0' = x0 - lam pinv(A) (A x0 - y)          (pinv: torch.linalg.pinv of each axis matrix)
    gamma = sqrt(max(0, sigma'^2 - (lam sigma_y)^2))
    x' = sqrt(abar') (x0' + sqrt(1 - eta^2) (sigma' / sigma) (x / sqrt(abar) - x0') + eta gamma z)

PiGDM (NVlabs/RED-diff algos/pgdm.py: eta 0, grad_term_weight 1, awd) with InverseBench's noisy v:

    x_T = sqrt(abar_T) pinv(A) y + sqrt(1 - abar_T) z;  t_i = i * 1000 // K from the top, abar_s = 1 after t_0
    v = (A^T A + c I)^-1 A^T (y - A x0),  c = sigma_y^2 / (1 - abar_t)   (a dense solve)
    g = grad_x <v, x0(x)>;  x_s = sqrt(abar_s) x0 + sqrt(1 - abar_s) eps + sqrt(abar_s) sqrt(abar_t) w g

Besides the final sample, every intermediate state is saved, so that each step can also be
checked on its own from the reference's state (a step from a state far from the data takes a
large data step, and float32 differences grow over a run).

Usage: build/venv/bin/python tools/make_solver_fixtures.py   (writes tests/fixtures/solvers/)
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
from make_dps_fixtures import normal_item, op_box_inpaint, op_phase_retrieval, op_sr4  # noqa: E402
from make_fixtures import as_float64_reference, build_unet, weight_items  # noqa: E402

WEIGHT_SEED = 11
SIZE = 32
SEED = 77


def unet64():
    model = build_unet("tiny32")
    sd = weight_items(model)
    new = {k: torch.from_numpy(synthetic.tensor(WEIGHT_SEED, k, tuple(v.shape))) for k, v in sd.items()}
    model.load_state_dict(new, strict=False)
    return as_float64_reference(model)


def linear_abar():
    betas = np.linspace(1e-4, 0.02, 1000, dtype=np.float64)
    return np.cumprod(1.0 - betas)


def quad_seq(k):
    seq = [int(s) for s in np.sqrt(np.linspace(0, 1000**2, k))]
    seq[-1] -= 1
    return seq


def dense_prox(a, shape):
    """u -> (A^T A + rho I)^-1 (A^T r) for one channel of a linear operator, by a dense solve
    (independent of the engine's SVDs): A's matrix from its action on unit images."""
    h, w = shape
    eye = torch.eye(h * w, dtype=torch.float64).reshape(h * w, 1, h, w)
    cols = torch.cat([a(eye[i:i + 1]).reshape(1, -1) for i in range(h * w)])  # [hw, m]
    mat = cols.T  # [m, hw]

    def prox(r, rho):
        n, c = r.shape[:2]
        rr = r.reshape(n * c, -1).T  # [m, nc]
        lhs = mat.T @ mat + rho * torch.eye(h * w, dtype=torch.float64)
        sol = torch.linalg.solve(lhs, mat.T @ rr)
        return sol.T.reshape(n, c, h, w)
    return prox


def diffpir(unet, a, y, batch, steps, lam, zeta, noise_level, prox=None):
    abar = linear_abar()
    sqrt_ac, sqrt_1m = np.sqrt(abar), np.sqrt(1.0 - abar)
    sigma = max(0.001, noise_level)
    rhos = lam * sigma**2 / (sqrt_1m / sqrt_ac) ** 2
    seq = quad_seq(steps)
    n = 3 * SIZE * SIZE
    x = torch.from_numpy(np.stack([normal_item(n, SEED, 0, 0, k) for k in range(batch)])
                         .reshape(batch, 3, SIZE, SIZE)).double()
    states = [x.clone()]
    for i in range(len(seq)):
        t_i = 999 - seq[i]
        if seq[i] == seq[-1]:
            # The reference calls the network here and keeps x.
            states.append(x.clone())
            break
        with torch.no_grad():
            eps = unet.forward_diffusion(x, torch.full((batch,), t_i, dtype=torch.int64))[:, :3]
        x0 = torch.clamp((x - sqrt_1m[t_i] * eps) / sqrt_ac[t_i], -1.0, 1.0).requires_grad_(True)
        if prox is not None:
            # sub_1_analytic: the exact minimiser of ||y - A u||^2 + rho ||u - x0||^2.
            with torch.no_grad():
                x0 = x0 + prox(y - a(x0), rhos[t_i])
        else:
            # grad_and_value: the norm over the whole tensor in the reference (batch 1); per sample here.
            norm = torch.linalg.norm((y - a(x0)).reshape(batch, -1), dim=1)
            (norm_grad,) = torch.autograd.grad(norm.sum(), x0)
            x0 = (x0 - norm_grad * norm.reshape(batch, 1, 1, 1) / rhos[t_i]).detach()
        t_im1 = 999 - seq[i + 1]
        e = (x - sqrt_ac[t_i] * x0) / sqrt_1m[t_i]
        z = torch.from_numpy(np.stack([normal_item(n, SEED, 1, i, k) for k in range(batch)])
                             .reshape(batch, 3, SIZE, SIZE)).double()
        x = sqrt_ac[t_im1] * x0 + math.sqrt(1 - zeta) * sqrt_1m[t_im1] * e + math.sqrt(zeta) * sqrt_1m[t_im1] * z
        states.append(x.clone())
    return states


def red_diff(unet, a, y, mu0, steps, lr, lam, obs_weight):
    abar = linear_abar()
    batch = mu0.shape[0]
    n = 3 * SIZE * SIZE
    ts = list(range(0, 1000, 1000 // steps))
    mu = torch.from_numpy(mu0).double().requires_grad_(True)
    opt = torch.optim.Adam([mu], lr=lr, betas=(0.9, 0.99), weight_decay=0.0)
    states = [mu.detach().clone()]
    for row, t in enumerate(reversed(ts)):
        noise = torch.from_numpy(np.stack([normal_item(n, SEED, 1, row, k) for k in range(batch)])
                                 .reshape(batch, 3, SIZE, SIZE)).double()
        xt = math.sqrt(abar[t]) * mu.detach() + math.sqrt(1 - abar[t]) * noise
        with torch.no_grad():
            et = unet.forward_diffusion(xt, torch.full((batch,), t, dtype=torch.int64))[:, :3]
        e_obs = y - a(mu)
        loss_obs = ((e_obs**2).reshape(batch, -1).mean(dim=1) / 2).sum()
        loss_noise = (((et - noise).detach() * mu).reshape(batch, -1).mean(dim=1)).sum()
        w = lam * math.sqrt(1 - abar[t]) / math.sqrt(abar[t])
        loss = w * loss_noise + obs_weight * loss_obs
        opt.zero_grad()
        loss.backward()
        opt.step()
        states.append(mu.detach().clone())
    return states


CASES = {
    # name: (operator, batch, steps, lambda, zeta, noise std in [-1, 1] units)
    "diffpir-sr4": (op_sr4, 2, 8, 15.0, 0.25, 0.05),
    "diffpir-phase-retrieval": (op_phase_retrieval, 1, 6, 7.0, 0.1, 0.05),
    # The proximal form (sub_1_analytic), solved densely here.
    "diffpir-prox-sr4": (op_sr4, 2, 6, 15.0, 0.25, 0.05),
    "diffpir-prox-box-inpaint": (op_box_inpaint, 1, 5, 1.0, 1.0, 0.05),
}


def poly7(hi, lo, r):
    return (hi ** (1 / 7) + r * (lo ** (1 / 7) - hi ** (1 / 7))) ** 7


def vp_timestep(sigma):
    return 999.0 * (math.sqrt(0.1**2 + 2 * 19.9 * math.log(1 + sigma**2)) - 0.1) / 19.9


def daps(unet, a, y, batch, levels, ode_steps, mc, lr0, lr_min_ratio, tau, sigma_max):
    n = 3 * SIZE * SIZE

    def draw(stream, offset):
        return torch.from_numpy(np.stack([normal_item(n, SEED, stream, offset, k) for k in range(batch)])
                                .reshape(batch, 3, SIZE, SIZE)).double()

    sig = [poly7(sigma_max, 0.1, i / levels) for i in range(levels)] + [0.0]
    x = sig[0] * draw(0, 0)
    states = [x.clone()]
    for i in range(levels):
        s = sig[i]
        grid = [poly7(s, 0.01, j / ode_steps) for j in range(ode_steps + 1)]
        xh = x.clone()
        with torch.no_grad():
            for j in range(ode_steps):
                sj = grid[j]
                # The engine's table holds the timestep as float32, as the embedding reads it.
                t = torch.full((batch,), float(np.float32(vp_timestep(sj))), dtype=torch.float64)
                eps = unet.forward_diffusion(xh / math.sqrt(1 + sj * sj), t)[:, :3]
                d = xh - sj * eps
                xh = xh + (grid[j + 1] - sj) * (xh - d) / sj
        lr = lr0 * (1 + i / (levels + 1) * (lr_min_ratio - 1))
        u = xh.clone()
        for m in range(mc):
            u = u.detach().requires_grad_(True)
            loss = ((a(u) - y) ** 2).reshape(batch, -1).sum(1).sum() / tau**2
            (g,) = torch.autograd.grad(loss, u)
            score = -g + (xh - u.detach()) / s**2
            u = u.detach() + lr * score + math.sqrt(2 * lr) * draw(1, i * mc + m)
        x = u + sig[i + 1] * draw(2, i)
        states.append(x.clone())
    return states


def sitcom(unet, a, y, batch, steps, inner, lr, noise_level, dc_scale, log=None):
    abar = linear_abar()
    d = 1000 // steps
    ts = [(steps - 1 - i) * d for i in range(steps)]
    n = 3 * SIZE * SIZE
    m = y[0].numel()
    thr = (noise_level + 0.001) ** 2 * m
    xs = [torch.from_numpy(normal_item(n, SEED, 0, 0, k).reshape(1, 3, SIZE, SIZE)).double() for k in range(batch)]
    states = [torch.cat(xs)]
    x0s = [None] * batch
    for i, t in enumerate(ts):
        prev = abar[t - d] if t - d >= 0 else abar[0]
        for k in range(batch):
            v = xs[k].clone().requires_grad_(True)
            opt = torch.optim.Adam([v], lr=lr, betas=(0.9, 0.999))
            for it in range(inner):
                eps = unet.forward_diffusion(v, torch.full((1,), t, dtype=torch.int64))[:, :3]
                x0 = torch.clamp((v - math.sqrt(1 - abar[t]) * eps) / math.sqrt(abar[t]), -1.0, 1.0)
                loss = ((a(x0) - y[k:k + 1]) ** 2).sum()
                if log is not None:
                    log.append((i, k, it, float(loss.detach()), thr))
                if float(loss) < thr:
                    break
                opt.zero_grad()
                loss.backward()
                opt.step()
            x0 = x0.detach()
            if dc_scale > 0:
                x0 = x0.requires_grad_(True)
                (g,) = torch.autograd.grad(((a(x0) - y[k:k + 1]) ** 2).sum(), x0)
                x0 = torch.clamp(x0.detach() - dc_scale * g, -1.0, 1.0)
            z = torch.from_numpy(normal_item(n, SEED, 1, i, k).reshape(1, 3, SIZE, SIZE)).double()
            xs[k] = math.sqrt(prev) * x0 + math.sqrt(1 - prev) * z
            x0s[k] = x0
        states.append(torch.cat(xs))
    return states, torch.cat(x0s)


def ddnm(unet, pinv, a, y, batch, steps, eta, sigma_y):
    abar = linear_abar()
    ts = [i * 1000 // steps for i in reversed(range(steps))]
    n = 3 * SIZE * SIZE
    x = torch.from_numpy(np.stack([normal_item(n, SEED, 0, 0, k) for k in range(batch)])
                         .reshape(batch, 3, SIZE, SIZE)).double()
    states = [x.clone()]
    for i, t in enumerate(ts):
        ab = abar[t]
        ab_next = abar[ts[i + 1]] if i + 1 < len(ts) else 1.0
        sig, sig_next = math.sqrt(1 / ab - 1), math.sqrt(max(0.0, 1 / ab_next - 1))
        with torch.no_grad():
            eps = unet.forward_diffusion(x, torch.full((batch,), t, dtype=torch.int64))[:, :3]
            x0 = (x - math.sqrt(1 - ab) * eps) / math.sqrt(ab)
            lam = min(1.0, sig_next / sigma_y) if sigma_y > 0 else 1.0
            x0c = x0 - lam * pinv(a(x0) - y)
            gamma = math.sqrt(max(0.0, sig_next**2 - (lam * sigma_y) ** 2))
            z = torch.from_numpy(np.stack([normal_item(n, SEED, 1, i, k) for k in range(batch)])
                                 .reshape(batch, 3, SIZE, SIZE)).double()
            k = math.sqrt(1 - eta**2) * sig_next / sig
            x = math.sqrt(ab_next) * (x0c + k * (x / math.sqrt(ab) - x0c) + eta * gamma * z)
        states.append(x.clone())
    return states


def pinv_sr4(h, w):
    from make_dps_fixtures import resize_matrix
    mh, mw = resize_matrix(h, 0.25), resize_matrix(w, 0.25)
    ph, pw = torch.linalg.pinv(mh), torch.linalg.pinv(mw)
    # No singular value may fall below the engine's cut (3e-2 of the largest product).
    sh, sw = torch.linalg.svdvals(mh), torch.linalg.svdvals(mw)
    assert float(sh.min() * sw.min()) > 3e-2 * float(sh.max() * sw.max())
    return lambda r: torch.einsum("hi,ncij,wj->nchw", ph, r, pw)


def pinv_box(h, w):
    _, extra = op_box_inpaint(h, w)
    m = torch.from_numpy(extra["mask"]).double()
    return lambda r: r * m


def pigdm(unet, pinv, a, y, batch, steps, weight, sigma_y):
    abar = linear_abar()
    ts = [i * 1000 // steps for i in reversed(range(steps))]
    n = 3 * SIZE * SIZE
    solve = dense_prox(a, (SIZE, SIZE))
    z0 = torch.from_numpy(np.stack([normal_item(n, SEED, 0, 0, k) for k in range(batch)])
                          .reshape(batch, 3, SIZE, SIZE)).double()
    with torch.no_grad():
        x = math.sqrt(abar[ts[0]]) * pinv(y) + math.sqrt(1 - abar[ts[0]]) * z0
    states = [x.clone()]
    for i, t in enumerate(ts):
        ab = abar[t]
        ab_s = abar[ts[i + 1]] if i + 1 < len(ts) else 1.0
        xt = x.clone().requires_grad_(True)
        eps = unet.forward_diffusion(xt, torch.full((batch,), t, dtype=torch.int64))[:, :3]
        x0 = (xt - math.sqrt(1 - ab) * eps) / math.sqrt(ab)
        with torch.no_grad():
            v = solve(y - a(x0), sigma_y**2 / (1 - ab))
        (g,) = torch.autograd.grad((v * x0).sum(), xt)
        with torch.no_grad():
            x = math.sqrt(ab_s) * x0 + math.sqrt(1 - ab_s) * eps + math.sqrt(ab_s) * math.sqrt(ab) * weight * g
        states.append(x.detach().clone())
    return states


PIGDM_CASES = {
    # name: (operator, pseudo-inverse, batch, steps, weight, sigma_y)
    "pigdm-sr4": (op_sr4, pinv_sr4, 2, 4, 1.0, 0.05),
    "pigdm-box-inpaint": (op_box_inpaint, pinv_box, 1, 3, 1.0, 0.05),
}


DDNM_CASES = {
    # name: (operator, pseudo-inverse, batch, steps, eta, sigma_y)
    "ddnm-sr4": (op_sr4, pinv_sr4, 2, 4, 0.85, 0.05),
    "ddnm-box-inpaint": (op_box_inpaint, pinv_box, 1, 3, 0.85, 0.05),
}


SITCOM_CASES = {
    # name: (operator, batch, steps, inner, lr, noise_level, dc_scale)
    # sr4's noise level puts the stopping threshold inside the range of its losses, so that the
    # per-sample stop acts in the run (see the printed log); box inpainting has the hard step.
    "sitcom-sr4": (op_sr4, 2, 3, 5, 0.02, None, 0.0),
    "sitcom-box-inpaint": (op_box_inpaint, 1, 2, 3, 0.02, 0.05, 0.5),
}


DAPS_CASES = {
    # name: (operator, batch, levels, ode_steps, langevin_steps, lr, lr_min_ratio, tau, sigma_max)
    # (sr4 starts at sigma 2, so that the data term's share of each state is large enough to test)
    "daps-sr4": (op_sr4, 2, 3, 2, 4, 1e-4, 0.01, 0.01, 2.0),
    "daps-phase-retrieval": (op_phase_retrieval, 1, 3, 2, 3, 5e-5, 0.01, 0.01, 100.0),
}


RED_DIFF_CASES = {
    # name: (operator, batch, steps, lr, lambda, obs_weight)
    "red-diff-sr4": (op_sr4, 2, 5, 0.1, 0.25, 1.0),
    "red-diff-phase-retrieval": (op_phase_retrieval, 1, 4, 0.1, 0.25, 1.0),
}


def main():
    torch.manual_seed(0)
    unet = unet64()
    for name, (build, build_pinv, batch, steps, weight, sigma_y) in PIGDM_CASES.items():
        a, extra = build(SIZE, SIZE)
        pinv = build_pinv(SIZE, SIZE)
        gt = np.clip(synthetic.tensor(5, "gt", (batch, 3, SIZE, SIZE)) * 0.5, -1, 1)
        with torch.no_grad():
            y = a(torch.from_numpy(gt).double())
        y = (y + sigma_y * torch.from_numpy(synthetic.tensor(6, "n", tuple(y.shape))).double()).float().double()
        states = pigdm(unet, pinv, a, y, batch, steps, weight, sigma_y)
        out = os.path.join(REPO, "tests", "fixtures", "solvers", name)
        os.makedirs(out, exist_ok=True)
        np.save(os.path.join(out, "y.npy"), y.float().numpy())
        np.save(os.path.join(out, "states.npy"), torch.stack(states).float().numpy())
        if "mask" in extra:
            np.save(os.path.join(out, "mask.npy"), extra["mask"])
        meta = dict(solver="pigdm", config="tiny32", weight_seed=WEIGHT_SEED, size=SIZE, batch=batch,
                    steps=steps, seed=SEED, eta=0.0, weight=weight, noise_sigma=sigma_y,
                    reference="PiGDM (RED-diff's pgdm.py, InverseBench's noisy v), restated in torch "
                              "float64 (tools/make_solver_fixtures.py)")
        with open(os.path.join(out, "meta.json"), "w") as f:
            json.dump(meta, f, indent=1)
        with torch.no_grad():
            res = [float((a(s) - y).norm()) for s in states]
        print(f"{name}: |A(x) - y| per state {['%.3g' % v for v in res]}")
    for name, (build, build_pinv, batch, steps, eta, sigma_y) in DDNM_CASES.items():
        a, extra = build(SIZE, SIZE)
        pinv = build_pinv(SIZE, SIZE)
        gt = np.clip(synthetic.tensor(5, "gt", (batch, 3, SIZE, SIZE)) * 0.5, -1, 1)
        with torch.no_grad():
            y = a(torch.from_numpy(gt).double())
        y = (y + sigma_y * torch.from_numpy(synthetic.tensor(6, "n", tuple(y.shape))).double()).float().double()
        states = ddnm(unet, pinv, a, y, batch, steps, eta, sigma_y)
        out = os.path.join(REPO, "tests", "fixtures", "solvers", name)
        os.makedirs(out, exist_ok=True)
        np.save(os.path.join(out, "y.npy"), y.float().numpy())
        np.save(os.path.join(out, "states.npy"), torch.stack(states).float().numpy())
        if "mask" in extra:
            np.save(os.path.join(out, "mask.npy"), extra["mask"])
        meta = dict(solver="ddnm", config="tiny32", weight_seed=WEIGHT_SEED, size=SIZE, batch=batch,
                    steps=steps, seed=SEED, eta=eta, noise_sigma=sigma_y,
                    reference="DDNM+ (InverseBench's noisy form), restated in torch float64 "
                              "(tools/make_solver_fixtures.py)")
        with open(os.path.join(out, "meta.json"), "w") as f:
            json.dump(meta, f, indent=1)
        with torch.no_grad():
            res = [float((a(s) - y).norm()) for s in states]
        print(f"{name}: |A(x) - y| per state {['%.3g' % v for v in res]}")
    for name, (build, batch, steps, inner, lr, noise_level, dc) in SITCOM_CASES.items():
        a, extra = build(SIZE, SIZE)
        gt = np.clip(synthetic.tensor(5, "gt", (batch, 3, SIZE, SIZE)) * 0.5, -1, 1)
        with torch.no_grad():
            y = a(torch.from_numpy(gt).double())
        y = (y + 0.05 * torch.from_numpy(synthetic.tensor(6, "n", tuple(y.shape))).double()).float().double()
        if noise_level is None:
            # A first run without a stop, then a threshold between two losses of the last step.
            log = []
            sitcom(unet, a, y, batch, steps, inner, lr, 1e-9, dc, log)
            last = sorted(v[3] for v in log if v[0] == steps - 1 and v[1] == 0)
            thr = math.sqrt(last[len(last) // 2] * last[len(last) // 2 - 1])
            noise_level = math.sqrt(thr / y[0].numel()) - 0.001
        log = []
        states, x0 = sitcom(unet, a, y, batch, steps, inner, lr, noise_level, dc, log)
        stops = [(i, k, it) for (i, k, it, loss, thr) in log if loss < thr]
        out = os.path.join(REPO, "tests", "fixtures", "solvers", name)
        os.makedirs(out, exist_ok=True)
        np.save(os.path.join(out, "y.npy"), y.float().numpy())
        np.save(os.path.join(out, "states.npy"), torch.stack(states).float().numpy())
        np.save(os.path.join(out, "x0.npy"), x0.float().numpy())
        if "mask" in extra:
            np.save(os.path.join(out, "mask.npy"), extra["mask"])
        meta = dict(solver="sitcom", config="tiny32", weight_seed=WEIGHT_SEED, size=SIZE, batch=batch,
                    steps=steps, inner_steps=inner, seed=SEED, lr=lr, noise_level=noise_level, dc_scale=dc,
                    stops=stops,
                    reference="SITCOM, restated in torch float64 (tools/make_solver_fixtures.py)")
        with open(os.path.join(out, "meta.json"), "w") as f:
            json.dump(meta, f, indent=1)
        print(f"{name}: stops (step, image, iteration) {stops}; noise_level {noise_level:.4g}")
    for name, (build, batch, levels, ode, mc, lr, ratio, tau, smax) in DAPS_CASES.items():
        a, _ = build(SIZE, SIZE)
        gt = np.clip(synthetic.tensor(5, "gt", (batch, 3, SIZE, SIZE)) * 0.5, -1, 1)
        with torch.no_grad():
            y = a(torch.from_numpy(gt).double())
        y = (y + 0.05 * torch.from_numpy(synthetic.tensor(6, "n", tuple(y.shape))).double()).float().double()
        states = daps(unet, a, y, batch, levels, ode, mc, lr, ratio, tau, smax)
        out = os.path.join(REPO, "tests", "fixtures", "solvers", name)
        os.makedirs(out, exist_ok=True)
        np.save(os.path.join(out, "y.npy"), y.float().numpy())
        np.save(os.path.join(out, "states.npy"), torch.stack(states).float().numpy())
        meta = dict(solver="daps", config="tiny32", weight_seed=WEIGHT_SEED, size=SIZE, batch=batch,
                    steps=levels, ode_steps=ode, langevin_steps=mc, seed=SEED, lr=lr, lr_min_ratio=ratio,
                    tau=tau, sigma_max=smax, sigma_min=0.1, ode_sigma_min=0.01,
                    reference="DAPS, restated in torch float64 (tools/make_solver_fixtures.py)")
        with open(os.path.join(out, "meta.json"), "w") as f:
            json.dump(meta, f, indent=1)
        with torch.no_grad():
            res = [float((a(s) - y).norm()) for s in states]
        print(f"{name}: |x| per state {['%.3g' % float(s.norm()) for s in states]}, "
              f"|A(x) - y| {['%.3g' % v for v in res]}")
    for name, (build, batch, steps, lr, lam, obs) in RED_DIFF_CASES.items():
        a, _ = build(SIZE, SIZE)
        gt = np.clip(synthetic.tensor(5, "gt", (batch, 3, SIZE, SIZE)) * 0.5, -1, 1)
        with torch.no_grad():
            y = a(torch.from_numpy(gt).double())
        y = (y + 0.05 * torch.from_numpy(synthetic.tensor(6, "n", tuple(y.shape))).double()).float().double()
        mu0 = np.clip(synthetic.tensor(8, "mu0", (batch, 3, SIZE, SIZE)) * 0.5, -1, 1)
        states = red_diff(unet, a, y, mu0, steps, lr, lam, obs)
        out = os.path.join(REPO, "tests", "fixtures", "solvers", name)
        os.makedirs(out, exist_ok=True)
        np.save(os.path.join(out, "y.npy"), y.float().numpy())
        np.save(os.path.join(out, "mu0.npy"), mu0.astype(np.float32))
        np.save(os.path.join(out, "states.npy"), torch.stack(states).float().numpy())
        meta = dict(solver="red-diff", config="tiny32", weight_seed=WEIGHT_SEED, size=SIZE, batch=batch,
                    steps=steps, seed=SEED, lr=lr, **{"lambda": lam}, obs_weight=obs,
                    reference="RED-diff, restated in torch float64 (tools/make_solver_fixtures.py)")
        with open(os.path.join(out, "meta.json"), "w") as f:
            json.dump(meta, f, indent=1)
        moved = [float((states[i + 1] - states[i]).norm() / states[i].norm()) for i in range(steps)]
        print(f"{name}: relative move per step {['%.3g' % v for v in moved]}")
    for name, (build, batch, steps, lam, zeta, noise) in CASES.items():
        a, extra = build(SIZE, SIZE)
        gt = np.clip(synthetic.tensor(5, "gt", (batch, 3, SIZE, SIZE)) * 0.5, -1, 1)
        with torch.no_grad():
            y = a(torch.from_numpy(gt).double())
        y = (y + noise * torch.from_numpy(synthetic.tensor(6, "n", tuple(y.shape))).double()).float().double()
        is_prox = "-prox-" in name
        prox = dense_prox(a, (SIZE, SIZE)) if is_prox else None
        states = diffpir(unet, a, y, batch, steps, lam, zeta, noise / 2.0, prox)
        out = os.path.join(REPO, "tests", "fixtures", "solvers", name)
        os.makedirs(out, exist_ok=True)
        np.save(os.path.join(out, "y.npy"), y.float().numpy())
        np.save(os.path.join(out, "states.npy"), torch.stack(states).float().numpy())
        if "mask" in extra:
            np.save(os.path.join(out, "mask.npy"), extra["mask"])
        form = "proximal" if is_prox else "gradient"
        meta = dict(solver="diffpir", config="tiny32", weight_seed=WEIGHT_SEED, size=SIZE, batch=batch,
                    steps=steps, seed=SEED, **{"lambda": lam}, zeta=zeta, noise_sigma=noise,
                    data_step="prox" if is_prox else "gradient",
                    reference=f"DiffPIR {form} form, restated in torch float64 (tools/make_solver_fixtures.py)")
        with open(os.path.join(out, "meta.json"), "w") as f:
            json.dump(meta, f, indent=1)
        norms = [float(s.norm()) for s in states]
        print(f"{name}: |x| per state {['%.3g' % v for v in norms]}")


if __name__ == "__main__":
    main()
