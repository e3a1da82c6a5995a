"""Writes tests/fixtures/metrics/: small RGB image pairs as 8-bit PNGs and scikit-image's PSNR and
SSIM of each pair (pairs.json), for crates/equireg/tests/metrics.rs, and LPIPS values
(lpips.json) for crates/equireg/tests/metrics.rs.

PSNR/SSIM: the Rust test loads the PNGs
with equireg::images::load_rgb, which maps an 8-bit value v to float32(v / 255); scikit-image is
given exactly those values as float64, so both sides see the same numbers.

SSIM settings (Wang et al. 2004): channel_axis=-1, gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=1.

LPIPS (AlexNet, v0.1): the AlexNet and lin weights are synthetic (tools/synthetic.py, which the
Rust test regenerates bit for bit through equireg_nn::synthetic, so no 10 MB weight file is
committed), with the lin weights made non-negative by abs() as the trained ones are. The images
are synthetic too: a = (tensor(seed, f"lpips.case{i}.a", [3, h, w]) + 1) * 0.5 in float32, and b
either the same from ".b" or clip(a + 0.1 * tensor(".noise")). The reference is an independent
re-statement of LPIPS in float64 with torch.nn.functional; when the lpips package is installed it
is checked against lpips.LPIPS(net='alex') too (float32, relative 1e-4). The names and shapes the
Rust loader expects are recorded from tools/convert_lpips.py's output.

Run from the repository root: /work/venv/bin/python tools/make_metric_fixtures.py
"""
import json
import os
import sys

import numpy as np
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
import skimage
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import convert_lpips  # noqa: E402
import synthetic  # noqa: E402

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
    lpips_fixture()
    total = sum(os.path.getsize(os.path.join(OUT, n)) for n in os.listdir(OUT))
    print(f"wrote {len(images)} images and {len(records)} pairs to {OUT} ({total} bytes)")


SHIFT = [-0.030, -0.088, -0.188]
SCALE = [0.458, 0.448, 0.450]
# (torchvision features index, stride, padding, max-pool before)
ALEX = [(0, 4, 2, False), (3, 1, 2, True), (6, 1, 1, True), (8, 1, 1, False), (10, 1, 1, False)]


def lpips_weights(seed):
    """Synthetic weights by the names of convert_lpips.spec(), lin weights made non-negative."""
    w = {}
    for name, shape in convert_lpips.spec():
        t = synthetic.tensor(seed, name, shape)
        w[name] = np.abs(t) if name.startswith("lin") else t
    return w


def lpips_reference(w, a, b):
    """LPIPS-AlexNet v0.1 of float32 CHW images in [0, 1], in float64: the five layer terms."""
    def taps(img):
        x = torch.from_numpy(img.astype(np.float64))[None]
        x = 2 * x - 1
        x = (x - torch.tensor(SHIFT, dtype=torch.float64)[None, :, None, None]) / torch.tensor(
            SCALE, dtype=torch.float64
        )[None, :, None, None]
        out = []
        for idx, stride, pad, pool in ALEX:
            if pool:
                x = F.max_pool2d(x, kernel_size=3, stride=2)
            wt = torch.from_numpy(w[f"features.{idx}.weight"].astype(np.float64))
            bs = torch.from_numpy(w[f"features.{idx}.bias"].astype(np.float64))
            x = F.relu(F.conv2d(x, wt, bs, stride=stride, padding=pad))
            out.append(x)
        return out

    layers = []
    for k, (fa, fb) in enumerate(zip(taps(a), taps(b))):
        na = fa / (fa.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)
        nb = fb / (fb.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)
        lin = torch.from_numpy(w[f"lin{k}.model.1.weight"].astype(np.float64))
        layers.append(float(F.conv2d((na - nb) ** 2, lin).mean()))
    return layers


def lpips_package(w, a, b):
    """The same through the lpips package (float32), or None when it is not installed."""
    try:
        import lpips
    except ImportError:
        return None
    model = lpips.LPIPS(net="alex", pretrained=False, pnet_rand=True, verbose=False).eval()
    slice_of = {0: 1, 3: 2, 6: 3, 8: 4, 10: 5}
    sd = {}
    for name, t in w.items():
        if name.startswith("features."):
            idx = int(name.split(".")[1])
            name = f"net.slice{slice_of[idx]}.{idx}.{name.split('.')[2]}"
        sd[name] = torch.from_numpy(t)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    assert not unexpected and all(m.startswith(("scaling_layer", "lins.")) for m in missing), missing
    with torch.no_grad():
        total, res = model(
            torch.from_numpy(a)[None], torch.from_numpy(b)[None], retPerLayer=True, normalize=True
        )
    from importlib.metadata import version

    return [float(r) for r in res], "lpips " + version("lpips")


def lpips_fixture():
    # The converter's output names and shapes, from a torchvision-layout AlexNet and lpips-layout
    # lin weights: what the Rust loader must accept.
    seed = 5
    w = lpips_weights(seed)
    alex_sd = {k: torch.from_numpy(v) for k, v in w.items() if k.startswith("features.")}
    alex_sd["classifier.1.weight"] = torch.zeros(4, 9216)
    lin_sd = {k: torch.from_numpy(v) for k, v in w.items() if k.startswith("lin")}
    converted = convert_lpips.convert(alex_sd, lin_sd)
    spec = [[k, list(v.shape)] for k, v in converted.items()]
    assert [tuple(x) for x in spec] == [(n, s) for n, s in convert_lpips.spec()]
    for k, v in converted.items():
        assert np.array_equal(v.numpy(), w[k]), k

    cases = []
    for i, (h, wd, mode) in enumerate([(64, 64, "independent"), (45, 37, "noisy"), (31, 40, "noisy")]):
        a = (synthetic.tensor(seed, f"lpips.case{i}.a", (3, h, wd)) + np.float32(1)) * np.float32(0.5)
        if mode == "independent":
            b = (synthetic.tensor(seed, f"lpips.case{i}.b", (3, h, wd)) + np.float32(1)) * np.float32(0.5)
        else:
            noise = synthetic.tensor(seed, f"lpips.case{i}.noise", (3, h, wd))
            b = np.clip(a + np.float32(0.1) * noise, np.float32(0), np.float32(1))
        assert a.dtype == np.float32 and b.dtype == np.float32
        layers = lpips_reference(w, a, b)
        checked = None
        pkg = lpips_package(w, a, b)
        if pkg is not None:
            got, checked = pkg
            for r, g in zip(layers, got):
                assert abs(r - g) <= 1e-4 * abs(r), (layers, got)
        cases.append(
            {
                "seed": seed,
                "height": h,
                "width": wd,
                "b": mode,
                "layers": layers,
                "total": sum(layers),
                "lpips_package_agrees": checked,
            }
        )
    meta = {
        "generator": "tools/make_metric_fixtures.py",
        "torch": torch.__version__,
        "spec": spec,
        "cases": cases,
    }
    with open(os.path.join(OUT, "lpips.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    print("LPIPS:", [round(c["total"], 6) for c in cases], "lpips package:", cases[0]["lpips_package_agrees"])


if __name__ == "__main__":
    main()
