#!/usr/bin/env python3
"""Classical baselines for `equireg pde --problem darcy`: the same cases and observation masks,
the same metrics files, so that tools/pde_evaluate.py can pair them with the diffusion runs.

    # on the masks an `equireg pde` run used (DIR/case-NNNN/observed.npy), written to DIR/baselines
    python tools/pde_baselines.py --cases assets/pde/darcy_test.npy --observe a --run DIR
    # masks drawn here: P distinct points per observed channel, default_rng(seed + case index)
    python tools/pde_baselines.py --cases assets/pde/darcy_test.npy --observe u --points 123 \
        --seed 0 --out build/pde/baselines/inverse-123
    python tools/pde_baselines.py --self-test

Input: float32 [N, 2, 64, 64] in physical units (tools/pde_data.py): channel 0 Darcy's
coefficient a in {3, 12}, channel 1 the solution u of -div(a grad u) = 1, u = 0 on the
boundary, on the 64x64 vertices x_i = i/63 (h = 1/63). Observations are noiseless values of the
observed channels at the mask's points.

Masks drawn here (--points P --seed S): for case n, rng = numpy default_rng(S + n); for each
observed channel in the order a, u: rng.choice(4096, P, replace=False) flat indices
(row-major [row = y, column = x]).

Methods (each its own row in metrics.csv, its reconstruction DIR/case-NNNN/reconstruction_<method>.npy,
float32 [2, 64, 64] physical units). All are deterministic; nothing is tuned on test cases.

Forward (a observed; u ignored if also observed):
- interp_nearest_solve: a from the nearest observed point (a is binary, so the estimate is
  binary), then the exact Darcy solve (pde_data.darcy_matrix, sparse LU) for u. The issue's
  "interpolate-then-solve" reference.
- interp_linear_solve / interp_cubic_solve: scipy griddata linear (Delaunay) / cubic
  (Clough-Tocher) interpolation of a, nearest-neighbour outside the points' convex hull,
  thresholded at 7.5 into {3, 12}, then the exact solve.

Inverse (u observed; a ignored if also observed). u is interpolated from the observed points
plus the 252 boundary vertices, where u = 0 is known from the boundary condition:
- interp_cubic_rule: griddata cubic (Clough-Tocher) u, nearest outside the hull (never needed:
  the boundary points make the hull the whole square);
- interp_tps_rule: thin-plate-spline RBF (scipy RBFInterpolator, degree-1 polynomial, exact
  interpolation) u.
  Both then apply the pointwise rule for a below. On darcy_val.npy the thin-plate spline is the
  better interpolant of u (rel L2 2.26 % vs 2.49 % at 123 points, 0.71 % vs 0.75 % at 500), but
  with the tuned rule the cubic interpolant gives the lower error rate of a (14.9 % vs 16.6 % at
  123, 12.0 % vs 12.5 % at 500); both rows are reported.

  The rule. Expanding the PDE, -a Lap(u) - grad(a).grad(u) = 1. Inside a region of constant a
  (grad a = 0), a = 1 / (-Lap u) exactly: -Lap u = 1/3 where a = 3 and 1/12 where a = 12. The
  interface term grad(a).grad(u) is a line measure, and the interpolant cannot resolve it, so
  the rule uses only the first term: q = -Lap_h(u_hat) (5-point Laplacian of the interpolated
  u on the interior vertices; the boundary rows/columns copy their interior neighbour),
  smoothed by a Gaussian of RULE_SIGMA pixels (the interpolant's Laplacian is noisy at the
  scale of the point spacing), and a = 12 where q < 1/RULE_CUT, else 3; i.e. a_est = 1/q
  thresholded at RULE_CUT (q <= 0, a locally convex u, gives 12: the large-a side of an
  interface, where the flux turns). The derived cut: the two levels of q are 1/3 and 1/12;
  their geometric midpoint, which is symmetric in log a, is 1/6, i.e. a_est = 6 = sqrt(3 * 12).
  RULE_CUT and RULE_SIGMA were then chosen on darcy_val.npy only (`--tune`: 10 cases x 3 masks,
  cut in {4, 4.8, 6, 7.5, 9, 10.5, 12}, sigma in {0, 1, 2, 3, 4} pixels, minimum mean error rate
  over both interpolants and both point counts, 123 and 500): cut 9, sigma 3 (mean 14.0 %; the
  derived cut 6 gives 16.0 % with sigma 3 and 18.4 % with no smoothing). The cut moves above 6
  because smoothing and the interpolant flatten u's curvature, and mix the q of both regions near
  interfaces. On the true u (no interpolation, no smoothing) the derived cut 6 gives ~4 %.

Both (a and u observed): the forward and inverse families above, each from its own channel.

LMMSE / kriging (every setting): x = (a, u) as one 8192-vector, each channel standardised by
its training mean field and one global std per channel; mu and the covariance are the
empirical ones of the first --train-count (5000) training fields of build/pde/darcy_train.npy.
x_hat = mu + S_xo (S_oo + eps I)^-1 (y - mu_o), computed without the 8192^2 covariance:
S_oo = X_o^T X_o / (n-1) and S_xo w = X^T (X_o w) / (n-1), X the centred training matrix.
The observed entries are then set to the observations (noiseless data; eps -> 0 limit).
eps = LMMSE_EPS (standardised units) was chosen on darcy_val.npy from {1e-6, ..., 1e-1}: 1e-5
(observing u it matters: 1e-1 costs 2-3 points of error rate; observing a it barely does).
- lmmse: the raw x_hat (a continuous);
- lmmse_threshold: a thresholded at 7.5, u as in lmmse;
- lmmse_threshold_solve (a observed only): u solved exactly from the thresholded a.

Metrics (the `equireg pde` contract): rel_l2_c = ||pred_c - truth_c||_2 / ||truth_c||_2 over the
whole 64x64 channel; error_rate_a = fraction of pixels where (pred_a >= 7.5) != (truth_a >= 7.5).
Files: OUT/metrics.csv (case, index, method, rel_l2_a, rel_l2_u, error_rate_a), OUT/metrics.json
(settings, constants, rows, per-method means), OUT/case-NNNN/observed.npy and the reconstructions.
"""
import argparse
import csv
import json
import os
import sys
import time

import numpy as np
import scipy.linalg as sla
import scipy.sparse.linalg as spla
from scipy.interpolate import RBFInterpolator, griddata
from scipy.ndimage import gaussian_filter

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pde_data  # noqa: E402

S = pde_data.S
H = pde_data.H
THRESH = 7.5
A_LO, A_HI = 3.0, 12.0

# Chosen on assets/pde/darcy_val.npy only (see the module docstring and assets/pde/README.md).
RULE_CUT = 9.0
RULE_SIGMA = 3.0
LMMSE_EPS = 1e-5

IDX = pde_data.interior_index()
GRID = np.stack(np.meshgrid(np.arange(S), np.arange(S), indexing="ij"), -1).reshape(-1, 2) / (S - 1)
BOUNDARY = np.flatnonzero((IDX < 0).ravel())

FORWARD = ["interp_nearest_solve", "interp_linear_solve", "interp_cubic_solve"]
INVERSE = ["interp_cubic_rule", "interp_tps_rule"]


# ---------------------------------------------------------------- pieces

def solve_darcy(a):
    """u of -div(a grad u) = 1, u = 0 on the boundary: pde_data's finite-volume matrix, sparse LU."""
    u = np.zeros((S, S))
    lu = spla.splu(pde_data.darcy_matrix(np.asarray(a, dtype=np.float64), IDX))
    u[1:-1, 1:-1] = lu.solve(np.ones((S - 2) ** 2)).reshape(S - 2, S - 2)
    return u


def binarise(a):
    return np.where(a >= THRESH, A_HI, A_LO)


def interpolate(flat_idx, values, method, boundary_zero=False):
    """Interpolate values known at flat indices of the grid onto the whole grid (unit coordinates).

    method: nearest | linear | cubic (griddata; NaN outside the hull filled by nearest) | tps.
    boundary_zero adds the boundary vertices with value 0 (u's Dirichlet condition)."""
    flat_idx = np.asarray(flat_idx)
    values = np.asarray(values, dtype=np.float64)
    if boundary_zero:
        extra = np.setdiff1d(BOUNDARY, flat_idx)
        flat_idx = np.concatenate([flat_idx, extra])
        values = np.concatenate([values, np.zeros(len(extra))])
    pts = GRID[flat_idx]
    if method == "tps":
        out = RBFInterpolator(pts, values, kernel="thin_plate_spline", degree=1)(GRID)
    else:
        out = griddata(pts, values, GRID, method=method)
        bad = np.isnan(out)
        if bad.any():
            out[bad] = griddata(pts, values, GRID[bad], method="nearest")
    out = out.reshape(S, S)
    out.flat[flat_idx] = values  # exact at the data
    return out


def rule_a(u, cut=None, sigma=None):
    """The pointwise rule of the module docstring: a = 12 where smoothed -Lap_h(u) < 1/cut, else 3."""
    cut = RULE_CUT if cut is None else cut
    sigma = RULE_SIGMA if sigma is None else sigma
    lap = (u[2:, 1:-1] + u[:-2, 1:-1] + u[1:-1, 2:] + u[1:-1, :-2] - 4 * u[1:-1, 1:-1]) / H**2
    q = np.pad(-lap, 1, mode="edge")
    if sigma > 0:
        q = gaussian_filter(q, sigma, mode="nearest")
    return np.where(q < 1.0 / cut, A_HI, A_LO)


def metrics(pred, truth):
    r = [float(np.linalg.norm(pred[c] - truth[c]) / np.linalg.norm(truth[c])) for c in range(2)]
    err = float(np.mean((pred[0] >= THRESH) != (truth[0] >= THRESH)))
    return dict(rel_l2_a=r[0], rel_l2_u=r[1], error_rate_a=err)


def draw_masks(n, observe, points, seed):
    masks = np.zeros((n, 2, S, S), dtype=np.float32)
    chans = channels(observe)
    for k in range(n):
        rng = np.random.default_rng(seed + k)
        for c in chans:
            masks[k, c].flat[rng.choice(S * S, points, replace=False)] = 1.0
    return masks


def channels(observe):
    return {"a": [0], "u": [1], "both": [0, 1]}[observe]


class Lmmse:
    """Empirical-covariance kriging of the joint (a, u) vector, see the module docstring."""

    def __init__(self, train, eps=None):
        train = np.asarray(train, dtype=np.float64)
        self.mu = train.mean(0)  # [2, S, S]
        self.scale = np.array([train[:, c].std() for c in range(train.shape[1])])
        x = (train - self.mu) / self.scale[None, :, None, None]
        self.X = x.reshape(len(train), -1)
        self.n = len(train)
        self.eps = LMMSE_EPS if eps is None else eps
        self.shape = train.shape[1:]

    def estimate(self, mask, truth, eps=None):
        eps = self.eps if eps is None else eps
        o = np.flatnonzero(mask.ravel() > 0)
        ys = ((truth - self.mu) / self.scale[:, None, None]).ravel()[o]
        Xo = self.X[:, o]
        soo = Xo.T @ Xo / (self.n - 1)
        soo[np.diag_indices_from(soo)] += eps
        w = sla.solve(soo, ys, assume_a="pos")
        xs = self.X.T @ (Xo @ w) / (self.n - 1)
        xs[o] = ys
        return xs.reshape(self.shape) * self.scale[:, None, None] + self.mu


# ---------------------------------------------------------------- one case

def reconstruct(truth, mask, lmmse, cut=None, sigma=None, eps=None):
    """All methods that apply to this mask: {method: [2, S, S] float64}."""
    truth = np.asarray(truth, dtype=np.float64)
    obs_a = np.flatnonzero(mask[0].ravel() > 0)
    obs_u = np.flatnonzero(mask[1].ravel() > 0)
    out = {}
    if len(obs_a):
        ya = truth[0].ravel()[obs_a]
        for method, kind in zip(FORWARD, ["nearest", "linear", "cubic"]):
            a = binarise(interpolate(obs_a, ya, kind))
            out[method] = np.stack([a, solve_darcy(a)])
    if len(obs_u):
        yu = truth[1].ravel()[obs_u]
        for method, kind in zip(INVERSE, ["cubic", "tps"]):
            u = interpolate(obs_u, yu, kind, boundary_zero=True)
            out[method] = np.stack([rule_a(u, cut, sigma), u])
    if lmmse is not None:
        x = lmmse.estimate(mask, truth, eps)
        out["lmmse"] = x
        at = binarise(x[0])
        out["lmmse_threshold"] = np.stack([at, x[1]])
        if len(obs_a):
            out["lmmse_threshold_solve"] = np.stack([at, solve_darcy(at)])
    return out


def load_lmmse(path, count, eps=None):
    train = np.load(path, mmap_mode="r")
    if len(train) < count:
        raise SystemExit(f"{path} holds {len(train)} fields, --train-count asks {count}")
    return Lmmse(np.array(train[:count]), eps)


def read_run_masks(run, n):
    dirs = sorted(d for d in os.listdir(run) if d.startswith("case-") and os.path.isdir(os.path.join(run, d)))
    if len(dirs) != n:
        raise SystemExit(f"{run} has {len(dirs)} case folders, the cases file {n}")
    return dirs, np.stack([np.load(os.path.join(run, d, "observed.npy")) for d in dirs]).astype(np.float32)


def write_outputs(out, rows, meta):
    os.makedirs(out, exist_ok=True)
    cols = ["case", "index", "method", "rel_l2_a", "rel_l2_u", "error_rate_a"]
    with open(os.path.join(out, "metrics.csv.tmp"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for r in rows:
            w.writerow([r["case"], r["index"], r["method"], f"{r['rel_l2_a']:.6f}", f"{r['rel_l2_u']:.6f}",
                        f"{r['error_rate_a']:.6f}"])
    os.replace(os.path.join(out, "metrics.csv.tmp"), os.path.join(out, "metrics.csv"))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    mean = {m: {k: float(np.mean([r[k] for r in rows if r["method"] == m]))
                for k in ("rel_l2_a", "rel_l2_u", "error_rate_a")} for m in methods}
    doc = dict(meta, rows=rows, mean=mean)
    with open(os.path.join(out, "metrics.json.tmp"), "w") as f:
        json.dump(doc, f, indent=1)
    os.replace(os.path.join(out, "metrics.json.tmp"), os.path.join(out, "metrics.json"))
    return mean


def run(args):
    cases = np.load(args.cases)
    if cases.ndim != 4 or cases.shape[1:] != (2, S, S):
        raise SystemExit(f"{args.cases}: expected [N, 2, {S}, {S}], got {cases.shape}")
    if args.limit:
        cases = cases[: args.limit]
    n = len(cases)
    if args.run:
        names, masks = read_run_masks(args.run, n)
        seen = [c for c in range(2) if masks[:, c].any()]
        if seen != channels(args.observe):
            raise SystemExit(f"{args.run}'s masks observe channels {seen}, --observe {args.observe} means "
                             f"{channels(args.observe)}")
        out = args.out or os.path.join(args.run, "baselines")
        source = dict(run=os.path.abspath(args.run))
    else:
        if args.points is None:
            raise SystemExit("give --run DIR or --points P (with --seed S)")
        masks = draw_masks(n, args.observe, args.points, args.seed)
        names = [f"case-{k:04d}" for k in range(n)]
        if not args.out:
            raise SystemExit("--out is required with --points")
        out = args.out
        source = dict(points=args.points, seed=args.seed, masks="default_rng(seed + index).choice(4096, P, "
                      "replace=False) per observed channel, a then u")
    lmmse = None if args.no_lmmse else load_lmmse(args.train, args.train_count)
    rows = []
    t0 = time.time()
    for k in range(n):
        recs = reconstruct(cases[k], masks[k], lmmse)
        d = os.path.join(out, names[k])
        os.makedirs(d, exist_ok=True)
        np.save(os.path.join(d, "observed.npy"), masks[k])
        for method, x in recs.items():
            np.save(os.path.join(d, f"reconstruction_{method}.npy"), x.astype(np.float32))
            rows.append(dict(case=names[k], index=k, method=method, **metrics(x, cases[k])))
    meta = dict(tool="tools/pde_baselines.py", problem="darcy", cases=os.path.abspath(args.cases), count=n,
                observe=args.observe, **source,
                points_per_channel=int(masks[0].sum() / len(channels(args.observe))),
                lmmse=None if lmmse is None else dict(train=args.train, train_count=args.train_count, eps=lmmse.eps),
                rule=dict(cut=RULE_CUT, sigma=RULE_SIGMA), seconds=round(time.time() - t0, 1))
    mean = write_outputs(out, rows, meta)
    print(f"{n} cases, observe {args.observe}, {meta['points_per_channel']} points -> {out} "
          f"({meta['seconds']} s)")
    print(f"{'method':24s} {'rel_l2_a':>9s} {'rel_l2_u':>9s} {'err_a':>7s}")
    for m, v in mean.items():
        print(f"{m:24s} {v['rel_l2_a']:9.4f} {v['rel_l2_u']:9.4f} {v['error_rate_a']:7.4f}")


# ---------------------------------------------------------------- tuning on validation

def tune(args):
    """Grid over the rule's cut/sigma and LMMSE's eps on the validation cases (never the test)."""
    base = np.load(args.cases).astype(np.float64)
    lmmse = None if args.no_lmmse else load_lmmse(args.train, args.train_count)
    reps = 3  # each case under 3 masks (seeds seed, seed + 10000, seed + 20000) to average over masks
    cases = np.concatenate([base] * reps)
    cuts, sigmas = [4.0, 4.8, 6.0, 7.5, 9.0, 10.5, 12.0], [0.0, 1.0, 2.0, 3.0, 4.0]
    epss = [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1]
    grid = {}
    for P in (123, 500):
        print(f"== {P} points, {len(cases)} cases ({args.cases})")
        for observe in ("u", "a"):
            masks = np.concatenate([draw_masks(len(base), observe, P, args.seed + 10000 * r) for r in range(reps)])
            if observe == "u":
                us = {kind: [interpolate(np.flatnonzero(m[1].ravel()), c[1].ravel()[np.flatnonzero(m[1].ravel())],
                                         kind, boundary_zero=True) for c, m in zip(cases, masks)]
                      for kind in ("cubic", "tps")}
                for kind, ul in us.items():
                    ru = np.mean([np.linalg.norm(u - c[1]) / np.linalg.norm(c[1]) for u, c in zip(ul, cases)])
                    print(f"inverse {kind}: rel_l2_u {ru:.4f}; error rate of a by (cut, sigma):")
                    for sg in sigmas:
                        row = [np.mean([np.mean((rule_a(u, ct, sg) >= THRESH) != (c[0] >= THRESH))
                                        for u, c in zip(ul, cases)]) for ct in cuts]
                        print(f"  sigma {sg}: " + "  ".join(f"cut {ct}: {e:.4f}" for ct, e in zip(cuts, row)))
                        for ct, e in zip(cuts, row):
                            grid.setdefault((sg, ct), []).append(e)
            for eps in epss if lmmse is not None else []:
                m = [metrics(lmmse.estimate(mk, c, eps), c) for mk, c in zip(masks, cases)]
                mt = [metrics(np.stack([binarise(lmmse.estimate(mk, c, eps)[0]), c[1]]), c)
                      for mk, c in zip(masks, cases)]
                print(f"lmmse observe {observe} eps {eps:g}: rel_l2_a {np.mean([r['rel_l2_a'] for r in m]):.4f} "
                      f"rel_l2_u {np.mean([r['rel_l2_u'] for r in m]):.4f} "
                      f"err_a(thresholded) {np.mean([r['error_rate_a'] for r in mt]):.4f}")
    best = sorted((float(np.mean(v)), k) for k, v in grid.items())[:5]
    print("rule: mean error rate over both interpolants and point counts, best (sigma, cut) first:")
    for e, (sg, ct) in best:
        print(f"  sigma {sg} cut {ct}: {e:.4f}")


# ---------------------------------------------------------------- self-test

def self_test(args):
    ok = True

    def check(name, cond, detail=""):
        nonlocal ok
        ok &= bool(cond)
        print(f"{'ok  ' if cond else 'FAIL'} {name} {detail}")

    path = args.cases if args.cases and os.path.exists(args.cases) else None
    if path is None:
        # regenerate three cases exactly as tools/pde_data.py does (seed 1000000 + n)
        cases = pde_data.generate("darcy", 3, 1000000).astype(np.float32)
        src = "pde_data.generate(darcy, 3, 1000000)"
    else:
        cases = np.load(path)[:3]
        src = path
    for k, c in enumerate(cases):
        u = solve_darcy(c[0])
        rel = np.linalg.norm(u - c[1]) / np.linalg.norm(c[1])
        check(f"exact solve of the true a reproduces u (case {k} of {src})", rel < 1e-6, f"rel {rel:.2e}")
    c = cases[0].astype(np.float64)
    full = np.arange(S * S)
    a = binarise(interpolate(full, c[0].ravel(), "nearest"))
    check("nearest interpolation from every point returns a", np.array_equal(a, c[0]))
    m = metrics(c, c)
    check("metrics of the truth are 0", max(m.values()) == 0.0, str(m))
    flip = c.copy()
    flip[0] = np.where(c[0] >= THRESH, A_LO, A_HI)
    check("error rate of the flipped a is 1", metrics(flip, c)["error_rate_a"] == 1.0)
    masks = draw_masks(4, "both", 123, 7)
    check("masks: exactly P distinct points per observed channel",
          all(masks[k, ch].sum() == 123 for k in range(4) for ch in range(2)))
    check("masks: deterministic by seed + index", np.array_equal(masks[2], draw_masks(3, "both", 123, 7)[2]))
    check("masks: observe u leaves a unobserved", draw_masks(2, "u", 50, 0)[:, 0].sum() == 0)
    # rule: on the true u (no interpolation), a = 1/(-Lap u) with the derived cut recovers most of a
    err = np.mean([np.mean((rule_a(x[1].astype(np.float64), 6.0, 0.0) >= THRESH) != (x[0] >= THRESH))
                   for x in cases])
    check("rule on the true u: error rate < 10 %", err < 0.10, f"{err:.4f}")
    # LMMSE: the fast formula against the explicit covariance on a small synthetic Gaussian
    rng = np.random.default_rng(0)
    d = 2 * 4 * 4
    L = rng.standard_normal((d, d)) / np.sqrt(d)
    train = (rng.standard_normal((400, d)) @ L.T + 1.0).reshape(400, 2, 4, 4)
    lm = Lmmse(train, eps=1e-3)
    truth = (rng.standard_normal(d) @ L.T + 1.0).reshape(2, 4, 4)
    mask = np.zeros((2, 4, 4))
    mask.flat[rng.choice(d, 9, replace=False)] = 1
    got = lm.estimate(mask, truth)
    Z = (train - lm.mu) / lm.scale[None, :, None, None]
    Z = Z.reshape(400, -1)
    cov = Z.T @ Z / 399
    o = np.flatnonzero(mask.ravel())
    ys = ((truth - lm.mu) / lm.scale[:, None, None]).ravel()[o]
    ref = cov[:, o] @ np.linalg.solve(cov[np.ix_(o, o)] + 1e-3 * np.eye(len(o)), ys)
    ref[o] = ys
    ref = ref.reshape(2, 4, 4) * lm.scale[:, None, None] + lm.mu
    check("LMMSE: fast formula = explicit covariance formula", np.allclose(got, ref, atol=1e-10),
          f"max diff {np.abs(got - ref).max():.1e}")
    lm0 = Lmmse(train, eps=1e-12)
    got_all = lm0.estimate(np.ones((2, 4, 4)), truth)
    check("LMMSE: every point observed returns the truth", np.allclose(got_all, truth, atol=1e-9))
    lm_raw = Lmmse(train, eps=1e-10)
    o = np.flatnonzero(mask.ravel())
    Xo = lm_raw.X[:, o]
    w = np.linalg.solve(Xo.T @ Xo / 399 + 1e-10 * np.eye(len(o)), ys)
    fit = (lm_raw.X.T @ (Xo @ w) / 399)[o]
    check("LMMSE: eps -> 0 interpolates the observations before the override",
          np.allclose(fit, ys, atol=1e-6), f"max {np.abs(fit - ys).max():.1e}")
    print("self-test", "passed" if ok else "FAILED")
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", help="float32 [N, 2, 64, 64] (e.g. assets/pde/darcy_test.npy)")
    ap.add_argument("--observe", choices=["a", "u", "both"])
    ap.add_argument("--run", help="an `equireg pde` output folder: its case-NNNN/observed.npy masks")
    ap.add_argument("--points", type=int, help="draw P points per observed channel here (no --run)")
    ap.add_argument("--seed", type=int, default=0, help="with --points: case n uses default_rng(seed + n)")
    ap.add_argument("--out", help="output folder (default: RUN/baselines)")
    ap.add_argument("--train", default="build/pde/darcy_train.npy", help="LMMSE statistics source")
    ap.add_argument("--train-count", type=int, default=5000, help="first N training fields for LMMSE")
    ap.add_argument("--no-lmmse", action="store_true")
    ap.add_argument("--limit", type=int, default=0, help="only the first N cases")
    ap.add_argument("--tune", action="store_true", help="print the validation grids (use darcy_val.npy)")
    ap.add_argument("--self-test", action="store_true")
    args = ap.parse_args()
    if args.self_test:
        return self_test(args)
    if not args.cases:
        ap.error("--cases is required")
    if args.tune:
        return tune(args)
    if not args.observe:
        ap.error("--observe is required")
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
