#!/usr/bin/env python3
"""Navier-Stokes on the torus (FNO / DiffusionPDE's "ns-nonbounded" problem) at 64x64: pairs
(w0, w at T = 1), deterministic by seed, and a numerical check of which symmetry elements the
forced dynamics keep.

    python tools/ns_data.py generate --count 50 --seed 1000000 --out assets/pde/ns_test.npy
    python tools/ns_data.py check-group            # which elements are symmetries, measured
    python tools/ns_data.py check-dt               # dt = 2.5e-3 against dt = 1e-4

Vorticity form on [0, 1)^2, w_t + u . grad w = nu Laplace w + f, u = (psi_y, -psi_x),
-Laplace psi = w; nu = 1e-3, f = 0.1 (sin 2 pi (x + y) + cos 2 pi (x + y)), grid x_i = i / 64
with `meshgrid(..., indexing="ij")` (x along axis 0, y along axis 1). w0 ~ GaussianRF(alpha 2.5,
tau 7): per Fourier mode k, complex coefficients of std sqrt(2) sigma (4 pi^2 |k|^2 + tau^2)^(-alpha / 2)
per part with sigma = tau^(alpha - 1) (the periodic GRF of FNO's random_fields.py, mean mode 0). The step is
FNO's ns_2d.py: pseudo-spectral, 2/3-rule dealiasing, Crank-Nicolson for the viscosity and
explicit Euler for advection and forcing, here with dt = 2.5e-3 (400 steps to T = 1; `check-dt`
measures the difference against FNO's dt = 1e-4). Files are float32 [N, 2, 64, 64]: channel 0
w0, channel 1 w(T); case n uses default_rng(seed + n); a JSON sidecar records the parameters.
"""
import argparse
import json
import os

import numpy as np

N = 64
NU = 1e-3
T = 1.0
VERSION = 1


def grid():
    t = np.arange(N) / N
    return np.meshgrid(t, t, indexing="ij")


def forcing():
    x, y = grid()
    return 0.1 * (np.sin(2 * np.pi * (x + y)) + np.cos(2 * np.pi * (x + y)))


def wavenumbers():
    k = np.fft.fftfreq(N, d=1.0 / N)
    kx, ky = np.meshgrid(k, k, indexing="ij")
    return kx, ky


def grf(rng, count, alpha=2.5, tau=7.0):
    kx, ky = wavenumbers()
    sigma = tau ** (alpha - 1.0)
    # FNO's random_fields.py: size^2 sqrt(2) sigma (...)^(-alpha/2) on a complex normal whose real
    # and imaginary parts have variance 1 (its torch.randn(..., 2) form); this reproduces the
    # published std of w0, 0.26.
    sqrt_eig = N * N * np.sqrt(2.0) * sigma * (4 * np.pi**2 * (kx**2 + ky**2) + tau**2) ** (-alpha / 2)
    sqrt_eig[0, 0] = 0.0
    xi = rng.standard_normal((count, N, N)) + 1j * rng.standard_normal((count, N, N))
    return np.fft.ifft2(sqrt_eig * xi).real


def solve(w0, dt=2.5e-3, t_end=T, f=None):
    """w at t_end from w0 [B, N, N] (FNO's scheme)."""
    f = forcing() if f is None else f
    kx, ky = wavenumbers()
    lap = 4 * np.pi**2 * (kx**2 + ky**2)
    lap_psi = lap.copy()
    lap_psi[0, 0] = 1.0
    kmax = N // 2
    dealias = ((np.abs(kx) <= (2.0 / 3.0) * kmax) & (np.abs(ky) <= (2.0 / 3.0) * kmax)).astype(float)
    f_h = np.fft.fft2(f)
    w_h = np.fft.fft2(w0)
    steps = int(round(t_end / dt))
    for _ in range(steps):
        psi_h = w_h / lap_psi
        psi_h[..., 0, 0] = 0.0
        u = np.fft.ifft2(2j * np.pi * ky * psi_h).real
        v = np.fft.ifft2(-2j * np.pi * kx * psi_h).real
        wx = np.fft.ifft2(2j * np.pi * kx * w_h).real
        wy = np.fft.ifft2(2j * np.pi * ky * w_h).real
        adv_h = np.fft.fft2(u * wx + v * wy) * dealias
        w_h = (-dt * adv_h + dt * f_h + (1.0 - 0.5 * dt * NU * lap) * w_h) / (1.0 + 0.5 * dt * NU * lap)
    return np.fft.ifft2(w_h).real


def generate(count, seed, batch=100):
    out = np.zeros((count, 2, N, N), dtype=np.float32)
    for start in range(0, count, batch):
        n = min(batch, count - start)
        w0 = np.stack([grf(np.random.default_rng(seed + start + k), 1)[0] for k in range(n)])
        out[start : start + n, 0] = w0
        out[start : start + n, 1] = solve(w0)
        print(f"navier-stokes: {start + n}/{count}", flush=True)
    return out


# Point operations of D4 on the index grid (i -> N - 1 - i is a reflection about -1/(2N)).
POINT_OPS = {
    "id": lambda w: w,
    "rot90": lambda w: np.rot90(w, 1, axes=(-2, -1)),
    "rot180": lambda w: np.rot90(w, 2, axes=(-2, -1)),
    "rot270": lambda w: np.rot90(w, 3, axes=(-2, -1)),
    "flip_i": lambda w: np.flip(w, -2),
    "flip_j": lambda w: np.flip(w, -1),
    "transpose": lambda w: np.swapaxes(w, -1, -2),
    "antitranspose": lambda w: np.flip(np.swapaxes(np.flip(w, (-2, -1)), -1, -2), ()),
}


def element(op, sign, shift):
    return lambda w: sign * np.roll(POINT_OPS[op](w), shift, axis=(-2, -1))


def check_group(seed=7):
    """For every D4 point operation, sign and roll: does it fix the forcing? Then, for those
    that do and a few that do not, the relative equivariance error of the dynamics,
    ||solve(g w0) - g solve(w0)|| / ||solve(w0)||, on one GRF sample (short horizon T = 0.25)."""
    f = forcing()
    keep = []
    for op in POINT_OPS:
        for sign in (1.0, -1.0):
            g = POINT_OPS[op](f) * sign
            for a in range(N):
                for b in range(N):
                    if np.abs(np.roll(g, (a, b), axis=(0, 1)) - f).max() < 1e-12:
                        keep.append((op, sign, (a, b)))
    ops = sorted({(op, s) for op, s, _ in keep})
    print(f"{len(keep)} elements (point operation x sign x roll) fix the forcing; point parts: {ops}")
    w0 = grf(np.random.default_rng(seed), 1)
    w1 = solve(w0, t_end=0.25)
    norm = np.linalg.norm(w1)
    report = []
    examples = {}
    for op, s, sh in keep:
        examples.setdefault((op, s), (op, s, sh))
    named = list(examples.values())
    named += [("rot90", 1.0, (0, 0)), ("flip_j", 1.0, (0, 0)), ("rot180", 1.0, (0, 0)),
              ("flip_j", -1.0, (0, 0)), ("id", 1.0, (5, 0)), ("id", 1.0, (3, -3))]
    for op, s, sh in named:
        g = element(op, s, sh)
        err = np.linalg.norm(solve(g(w0), t_end=0.25) - g(w1)) / norm
        fixes = (op, s, tuple(x % N for x in sh)) in {(o, z, h) for o, z, h in keep}
        report.append(dict(element=op, sign=s, roll=list(sh), fixes_forcing=bool(fixes), equivariance_error=float(err)))
        print(f"{op:>13} sign {s:+.0f} roll {str(sh):>9}: fixes forcing {fixes!s:>5}, dynamics error {err:.2e}")
    return report


def check_dt(seed=11, count=4):
    w0 = np.stack([grf(np.random.default_rng(seed + k), 1)[0] for k in range(count)])
    fine = solve(w0, dt=1e-4)
    coarse = solve(w0, dt=2.5e-3)
    rel = np.linalg.norm(coarse - fine, axis=(1, 2)) / np.linalg.norm(fine, axis=(1, 2))
    print(f"dt 2.5e-3 vs 1e-4 at T = 1: relative L2 difference per sample {rel}")
    return rel


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate")
    g.add_argument("--count", type=int, required=True)
    g.add_argument("--seed", type=int, required=True)
    g.add_argument("--out", required=True)
    sub.add_parser("check-group")
    sub.add_parser("check-dt")
    args = ap.parse_args()
    if args.cmd == "check-group":
        check_group()
        return
    if args.cmd == "check-dt":
        check_dt()
        return
    if args.count <= 0:
        raise SystemExit("--count must be positive")
    data = generate(args.count, args.seed)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = args.out + ".tmp.npy"
    np.save(tmp, data)
    os.replace(tmp, args.out)
    meta = dict(problem="navier-stokes", count=args.count, seeds=[args.seed, args.seed + args.count - 1],
                grid="64x64 torus, x_i = i/64, meshgrid ij", nu=NU, T=T, dt=2.5e-3, grf=dict(alpha=2.5, tau=7.0),
                forcing="0.1 (sin 2 pi (x+y) + cos 2 pi (x+y))", generator_version=VERSION,
                layout="[N, 2, 64, 64] float32: channel 0 w0, 1 w(T)",
                channel_std=[float(data[:, c].std()) for c in range(2)])
    with open(args.out + ".json", "w") as f:
        json.dump(meta, f, indent=1)
    print(json.dumps(meta))


if __name__ == "__main__":
    main()
