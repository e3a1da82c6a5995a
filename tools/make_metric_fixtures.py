#!/usr/bin/env python3
"""Fixtures for equireg's image metrics: image pairs and scikit-image's PSNR and SSIM of them.

SSIM as the DPS/deepinv evaluations report it: structural_similarity(a, b, channel_axis=0,
gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1).

Usage: /work/venv/bin/python tools/make_metric_fixtures.py   (writes tests/fixtures/metrics/)
"""
import json
import os

import numpy as np
from scipy.ndimage import gaussian_filter
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(REPO, "tests", "fixtures", "metrics")


def pair(rng, h, w, kind):
    base = rng.random((3, h, w))
    if kind == "smooth":
        base = gaussian_filter(base, sigma=(0, 3, 3))
        base = (base - base.min()) / (base.max() - base.min())
    a = base.astype(np.float32)
    noise = {"random": 0.2, "smooth": 0.05, "tiny": 0.01}[kind]
    b = np.clip(a + noise * rng.standard_normal(a.shape), 0, 1).astype(np.float32)
    return a, b


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(7)
    cases = []
    for name, (h, w, kind) in {
        "random-64x64": (64, 64, "random"),
        "smooth-37x50": (37, 50, "smooth"),
        "tiny-16x12": (16, 12, "tiny"),
    }.items():
        a, b = pair(rng, h, w, kind)
        np.save(os.path.join(OUT, f"{name}-a.npy"), a)
        np.save(os.path.join(OUT, f"{name}-b.npy"), b)
        psnr = peak_signal_noise_ratio(a.astype(np.float64), b.astype(np.float64), data_range=1)
        ssim = structural_similarity(a.astype(np.float64), b.astype(np.float64), channel_axis=0,
                                     gaussian_weights=True, sigma=1.5,
                                     use_sample_covariance=False, data_range=1)
        cases.append(dict(name=name, psnr=float(psnr), ssim=float(ssim)))
        print(name, psnr, ssim)
    import skimage
    with open(os.path.join(OUT, "metrics.json"), "w") as f:
        json.dump(dict(reference=f"scikit-image {skimage.__version__}", cases=cases), f, indent=1)


if __name__ == "__main__":
    main()
