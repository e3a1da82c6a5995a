#!/usr/bin/env python3
"""Generate joint (coefficient, solution) PDE fields on a 64x64 vertex grid, deterministic by seed.

    python tools/pde_data.py darcy --count 20000 --seed 0 --out build/pde/darcy_train.npy
    python tools/pde_data.py darcy --count 100 --seed 1000000 --out assets/pde/darcy_test.npy

Every file is float32 [N, 2, 64, 64] in physical units: channel 0 the coefficient (Darcy's a,
Poisson's and Helmholtz's source f), channel 1 the solution u. Case n of a file is generated
from the random stream seeded with `seed + n`, so any case can be regenerated alone, and a
held-out set is a file made from a seed range that no training file uses (training files use
seeds below 1,000,000; held-out sets start at 1,000,000). A JSON sidecar (`OUT.json`) records
the problem, its parameters, the seeds and the generator's version.

Problems (`../shared/specs/pde.md`, section 1; the engine's issue on PDE reconstruction):

- **darcy**: -div(a grad u) = 1 on (0,1)^2, u = 0 on the boundary. Vertices x_i = i/63.
  psi = sum over (k1, k2) in 0..63 (not both 0) of xi_k (pi^2 |k|^2 + tau^2)^(-alpha/2)
  cos(pi k1 x) cos(pi k2 y), xi_k standard normal, alpha = 2, tau = 3; a = 12 where psi >= 0,
  else 3. u from the 5-point finite-volume stencil with arithmetic face averages
  (a_i + a_j)/2, solved directly (sparse LU) on the 62x62 interior vertices.
- **poisson**: Laplace_h(u) = f, and **helmholtz**: Laplace_h(u) + k^2 u = f with k = 1 and f
  zeroed on the boundary; 5-point Laplacian, u = 0 on the boundary. f is the same cosine
  series scaled as FNO's GRF.m (orthonormal inverse DCT of s * tau^(alpha-1) * coefficient), so
  its standard deviation is near the published 0.29.

The channel layout is [row = y index i, column = x index j]; the a and u of one case share it
(no transpose), so D4 acting on both channels at once maps a pair to a pair.
"""
import argparse
import json
import os

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

VERSION = 1
S = 64
H = 1.0 / (S - 1)
ALPHA, TAU = 2.0, 3.0


def cosine_basis():
    """C[i, k] = cos(pi k x_i) at the vertices x_i = i / (S - 1)."""
    x = np.arange(S) / (S - 1)
    return np.cos(np.pi * np.outer(x, np.arange(S)))


def grf(rng, basis, fno_scale):
    """The cosine-series Gaussian field psi (mean mode zero) at the 64x64 vertices."""
    k1, k2 = np.meshgrid(np.arange(S), np.arange(S), indexing="ij")
    coef = (np.pi**2 * (k1**2 + k2**2) + TAU**2) ** (-ALPHA / 2)
    if fno_scale:
        # GRF.m: idct2(s * tau^(alpha-1) * coef * xi); the orthonormal DCT's weights times s
        # are 2 for k1, k2 > 0 and sqrt(2) where one index is 0.
        w = np.where(np.arange(S) == 0, 1.0, np.sqrt(2.0))
        coef = coef * TAU ** (ALPHA - 1) * np.outer(w, w)
    coef[0, 0] = 0.0
    xi = rng.standard_normal((S, S))
    return basis @ (coef * xi) @ basis.T


def interior_index():
    idx = -np.ones((S, S), dtype=np.int64)
    idx[1:-1, 1:-1] = np.arange((S - 2) ** 2).reshape(S - 2, S - 2)
    return idx


def darcy_matrix(a, idx):
    """The finite-volume matrix of -div(a grad u) with face values (a_p + a_q)/2, over h^2."""
    rows, cols, vals = [], [], []
    n = S - 2
    diag = np.zeros(n * n)
    for di, dj in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        ii, jj = np.meshgrid(np.arange(1, S - 1), np.arange(1, S - 1), indexing="ij")
        ni, nj = ii + di, jj + dj
        face = 0.5 * (a[ii, jj] + a[ni, nj]) / H**2
        p = idx[ii, jj].ravel()
        diag[p] += face.ravel()
        q = idx[ni, nj].ravel()
        inside = q >= 0
        rows.append(p[inside])
        cols.append(q[inside])
        vals.append(-face.ravel()[inside])
    rows.append(np.arange(n * n))
    cols.append(np.arange(n * n))
    vals.append(diag)
    return sp.csc_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n * n, n * n))


def laplacian_matrix(idx, k2):
    """Laplace_h + k^2 on the interior vertices (zero Dirichlet), as a sparse matrix."""
    ones = np.ones((S, S))
    return -darcy_matrix(ones, idx) + k2 * sp.identity((S - 2) ** 2, format="csc")


def generate(problem, count, seed):
    basis = cosine_basis()
    idx = interior_index()
    out = np.zeros((count, 2, S, S), dtype=np.float32)
    lu = None
    if problem in ("poisson", "helmholtz"):
        lu = spla.splu(laplacian_matrix(idx, 1.0 if problem == "helmholtz" else 0.0))
    for n in range(count):
        rng = np.random.default_rng(seed + n)
        u = np.zeros((S, S))
        if problem == "darcy":
            psi = grf(rng, basis, fno_scale=False)
            a = np.where(psi >= 0.0, 12.0, 3.0)
            u[1:-1, 1:-1] = spla.spsolve(darcy_matrix(a, idx), np.ones((S - 2) ** 2)).reshape(S - 2, S - 2)
        else:
            a = grf(rng, basis, fno_scale=True)
            if problem == "helmholtz":
                a[0, :] = a[-1, :] = a[:, 0] = a[:, -1] = 0.0
            u[1:-1, 1:-1] = lu.solve(a[1:-1, 1:-1].ravel()).reshape(S - 2, S - 2)
        out[n, 0] = a
        out[n, 1] = u
        if (n + 1) % 1000 == 0:
            print(f"{problem}: {n + 1}/{count}", flush=True)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("problem", choices=["darcy", "poisson", "helmholtz"])
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--seed", type=int, required=True, help="case n uses seed + n")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    if args.count <= 0:
        raise SystemExit("--count must be positive")
    data = generate(args.problem, args.count, args.seed)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = args.out + ".tmp.npy"
    np.save(tmp, data)
    os.replace(tmp, args.out)
    meta = dict(problem=args.problem, count=args.count, seeds=[args.seed, args.seed + args.count - 1],
                grid="64x64 vertices x_i = i/63", alpha=ALPHA, tau=TAU, generator_version=VERSION,
                layout="[N, 2, 64, 64] float32: channel 0 coefficient, 1 solution; [row=y, col=x]",
                channel_std=[float(data[:, c].std()) for c in range(2)],
                channel_mean=[float(data[:, c].mean()) for c in range(2)])
    if args.problem == "darcy":
        meta["coefficient_values"] = [3.0, 12.0]
    if args.problem == "helmholtz":
        meta["k"] = 1.0
    with open(args.out + ".json", "w") as f:
        json.dump(meta, f, indent=1)
    print(json.dumps(meta))


if __name__ == "__main__":
    main()
