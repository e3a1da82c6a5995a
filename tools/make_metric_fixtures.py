"""Writes tests/fixtures/metrics/: small RGB image pairs as 8-bit PNGs and scikit-image's PSNR and
SSIM of each pair (pairs.json), for crates/equireg/tests/metrics.rs. The Rust test loads the PNGs
with equireg::images::load_rgb, which maps an 8-bit value v to float32(v / 255); scikit-image is
given exactly those values as float64, so both sides see the same numbers.

SSIM settings (Wang et al. 2004): channel_axis=-1, gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=1.

Run from the repository root: /work/venv/bin/python tools/make_metric_fixtures.py
"""
import json
import os

import numpy as np
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
import skimage

OUT = os.path.join("tests", "fixtures", "metrics")


def smooth(h, w, phase):
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    chans = [
        0.5 + 0.3 * np.sin(2 * np.pi * (x / w * 1.5 + phase)) * np.cos(2 * np.pi * y / h),
        0.2 + 0.6 * (x + y) / (h + w),
        0.5 + 0.4 * np.cos(2 * np.pi * (y / h * 2.0 - phase)) * (x / w),
    ]
    return np.stack(chans, axis=-1)


def to_u8(v):
    return np.round(np.clip(v, 0.0, 1.0) * 255.0).astype(np.uint8)


def blur(img):
    """3x3 box blur with edge replication (any degradation does; it need not match anything)."""
    p = np.pad(img.astype(np.float64), ((1, 1), (1, 1), (0, 0)), mode="edge")
    h, w = img.shape[:2]
    acc = sum(p[dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3))
    return acc / 9.0 / 255.0


def as_loaded(u8):
    """What load_rgb gives for these bytes, as float64 for scikit-image."""
    return (u8.astype(np.float64) / 255.0).astype(np.float32).astype(np.float64)


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(20240611)
    images = {}
    for h, w, tag in [(64, 64, "64x64"), (37, 50, "37x50"), (11, 13, "11x13")]:
        ref = to_u8(smooth(h, w, phase=0.1 * len(images)))
        images[f"smooth_{tag}"] = ref
        images[f"noisy_{tag}"] = to_u8(ref / 255.0 + rng.normal(0.0, 0.08, ref.shape))
        images[f"random_{tag}"] = rng.integers(0, 256, ref.shape, dtype=np.uint8)
        images[f"blurred_{tag}"] = to_u8(blur(ref))
    pairs = []
    for tag in ["64x64", "37x50", "11x13"]:
        for a, b in [("smooth", "noisy"), ("smooth", "random"), ("smooth", "blurred"), ("noisy", "blurred")]:
            pairs.append((f"{a}_{tag}", f"{b}_{tag}"))
    for name, u8 in images.items():
        Image.fromarray(u8, "RGB").save(os.path.join(OUT, name + ".png"), optimize=True)
    records = []
    for a, b in pairs:
        # Read back what was written, as the Rust test will.
        ua = np.asarray(Image.open(os.path.join(OUT, a + ".png")).convert("RGB"))
        ub = np.asarray(Image.open(os.path.join(OUT, b + ".png")).convert("RGB"))
        fa, fb = as_loaded(ua), as_loaded(ub)
        records.append(
            {
                "a": a + ".png",
                "b": b + ".png",
                "psnr": float(peak_signal_noise_ratio(fa, fb, data_range=1.0)),
                "ssim": float(
                    structural_similarity(
                        fa,
                        fb,
                        channel_axis=-1,
                        gaussian_weights=True,
                        sigma=1.5,
                        use_sample_covariance=False,
                        data_range=1.0,
                    )
                ),
            }
        )
    meta = {
        "generator": "tools/make_metric_fixtures.py",
        "scikit-image": skimage.__version__,
        "pairs": records,
    }
    with open(os.path.join(OUT, "pairs.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(OUT, n)) for n in os.listdir(OUT))
    print(f"wrote {len(images)} images and {len(records)} pairs to {OUT} ({total} bytes)")


if __name__ == "__main__":
    main()
