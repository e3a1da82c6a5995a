#!/usr/bin/env python3
"""Parity fixtures for the MPE networks of crates/nn/src/mpe (the EquiReg f functions).

Both networks are restated here in PyTorch from their reference definitions and run in float64:
- CompVis latent-diffusion's first-stage Encoder (ldm/modules/diffusionmodules/model.py:
  ResnetBlock, Downsample with the (0, 1, 0, 1) pad, AttnBlock, Normalize = GroupNorm(32, eps
  1e-6)) then quant_conv and post_quant_conv with no quantization (Equireg's
  _FirstStageEncoder);
- Equireg's SmallCNN (equireg/mpe/models.py), BatchNorm in eval mode (not folded: the Rust side
  folds it, so the fixture also checks the folding).
Weights come from tools/synthetic.py (equireg_nn::synthetic reproduces them bit for bit), so no
weight files are committed. BatchNorm running_var would be drawn in [-1, 1): both sides use
1 + 0.5 v instead (computed in float64 from the float32 draw, rounded to float32).

Per case, tests/fixtures/mpe/<case>/ gets x.npy (input), y.npy (f(x)), v.npy (a cotangent
shaped like y), g.npy (J^T v by torch.autograd), u.npy (a direction shaped like x) and
meta.json with ju_dot_v = <J u, v> (torch.func.jvp), all float64 results rounded to float32.

It also checks tools/convert_mpe.py on synthetic torch checkpoints (a CompVis LDM state dict
with decoder, codebook and UNet tensors around the first stage; an Equireg SmallCNN checkpoint
with num_batches_tracked): the converted tensors must equal the originals exactly and the
inferred configs the presets; the configs are written to tests/fixtures/mpe/convert/.

  python tools/make_mpe_fixtures.py            # regenerate tests/fixtures/mpe/
"""
import json
import os
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import convert_mpe  # noqa: E402
import synthetic  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(REPO, "tests", "fixtures", "mpe")

# Mirrors crates/nn/src/mpe presets.
LDM = {
    "vq-f4": dict(ch=128, ch_mult=[1, 2, 4], num_res_blocks=2, attn_resolutions=[], z_channels=3,
                  embed_dim=3, in_channels=3, resolution=256),
    "ldm-tiny": dict(ch=32, ch_mult=[1, 2], num_res_blocks=1, attn_resolutions=[16], z_channels=4,
                     embed_dim=3, in_channels=3, resolution=32),
}
SMALL_CNN = dict(in_channels=3, base_channels=64, num_blocks=4, num_classes=4)


# ---- CompVis first-stage encoder -------------------------------------------------------------

def norm(c):
    return nn.GroupNorm(32, c, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.norm1 = norm(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, 1, 1)
        self.norm2 = norm(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.shortcut = cin != cout
        if self.shortcut:
            self.nin_shortcut = nn.Conv2d(cin, cout, 1, 1, 0)

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return (self.nin_shortcut(x) if self.shortcut else x) + h


class AttnBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.norm = norm(c)
        self.q, self.k, self.v, self.proj_out = (nn.Conv2d(c, c, 1) for _ in range(4))

    def forward(self, x):
        b, c, hh, ww = x.shape
        h = self.norm(x)
        q, k, v = (m(h).reshape(b, c, hh * ww) for m in (self.q, self.k, self.v))
        att = torch.softmax(torch.einsum("bci,bcj->bij", q, k) * float(c) ** -0.5, dim=-1)
        out = torch.einsum("bcj,bij->bci", v, att).reshape(b, c, hh, ww)
        return x + self.proj_out(out)


class Downsample(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, 2, 0)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Encoder(nn.Module):
    def __init__(self, ch, ch_mult, num_res_blocks, attn_resolutions, z_channels, in_channels,
                 resolution, **_):
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, ch, 3, 1, 1)
        self.down = nn.ModuleList()
        cin, res = ch, resolution
        for level, mult in enumerate(ch_mult):
            d = nn.Module()
            d.block, d.attn = nn.ModuleList(), nn.ModuleList()
            for _ in range(num_res_blocks):
                d.block.append(ResnetBlock(cin, ch * mult))
                cin = ch * mult
                if res in attn_resolutions:
                    d.attn.append(AttnBlock(cin))
            if level != len(ch_mult) - 1:
                d.downsample = Downsample(cin)
                res //= 2
            self.down.append(d)
        self.mid = nn.Module()
        self.mid.block_1, self.mid.attn_1, self.mid.block_2 = (
            ResnetBlock(cin, cin), AttnBlock(cin), ResnetBlock(cin, cin))
        self.norm_out = norm(cin)
        self.conv_out = nn.Conv2d(cin, z_channels, 3, 1, 1)

    def forward(self, x):
        h = self.conv_in(x)
        for d in self.down:
            for i, blk in enumerate(d.block):
                h = blk(h)
                if len(d.attn) > 0:
                    h = d.attn[i](h)
            if hasattr(d, "downsample"):
                h = d.downsample(h)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        return self.conv_out(F.silu(self.norm_out(h)))


class FirstStageEncoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.encoder = Encoder(**cfg)
        self.quant_conv = nn.Conv2d(cfg["z_channels"], cfg["embed_dim"], 1)
        self.post_quant_conv = nn.Conv2d(cfg["embed_dim"], cfg["z_channels"], 1)

    def forward(self, x):
        return self.post_quant_conv(self.quant_conv(self.encoder(x)))


# ---- Equireg SmallCNN ------------------------------------------------------------------------

class SmallCNN(nn.Module):
    def __init__(self, in_channels=3, base_channels=64, num_blocks=4, num_classes=4):
        super().__init__()
        layers, c, cin = [], base_channels, in_channels
        for _ in range(num_blocks):
            layers += [nn.Conv2d(cin, c, 3, 2, 1), nn.BatchNorm2d(c), nn.ReLU()]
            cin, c = c, min(2 * c, 4 * base_channels)
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(cin, num_classes)

    def forward(self, x):
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


# ---- synthetic weights, fixtures -------------------------------------------------------------

def synthetic_state(model, seed):
    """Synthetic float32 values for every float tensor of the state dict (running_var made
    positive as 1 + 0.5 v), as the Rust tests build them."""
    sd = {}
    for name, t in model.state_dict().items():
        if not t.is_floating_point():
            sd[name] = t
            continue
        v = synthetic.tensor(seed, name, list(t.shape))
        if name.endswith("running_var"):
            v = (1.0 + 0.5 * v.astype(np.float64)).astype(np.float32)
        sd[name] = torch.from_numpy(v.copy())
    return sd


def load_synthetic(model, seed):
    model.load_state_dict(synthetic_state(model, seed))
    return model.double().eval()


def save_npy(path, t):
    np.save(path, t.detach().to(torch.float32).numpy())


def case(name, model, preset, seed, batch, size):
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    shape = [batch, 3, size, size]
    x = torch.from_numpy(synthetic.tensor(seed, "x", shape).astype(np.float64))
    u = torch.from_numpy(synthetic.tensor(seed, "u", shape).astype(np.float64))
    xg = x.clone().requires_grad_(True)
    y = model(xg)
    v = torch.from_numpy(synthetic.tensor(seed, "v", list(y.shape)).astype(np.float64))
    (g,) = torch.autograd.grad((y * v).sum(), xg)
    _, ju = torch.func.jvp(model, (x,), (u,))
    for k, t in dict(x=x, y=y, v=v, g=g, u=u).items():
        save_npy(os.path.join(d, f"{k}.npy"), t)
    meta = {
        "preset": preset,
        "size": size,
        "batch": batch,
        "seed": seed,
        "output_shape": list(y.shape),
        "weights": "tools/synthetic.py (BatchNorm running_var = 1 + 0.5 v)",
        "reference": "tools/make_mpe_fixtures.py, float64; g by torch.autograd, ju by torch.func.jvp",
        "ju_dot_v": float((ju * v).sum().detach()),
        "y_norm": float(y.detach().norm()),
    }
    with open(os.path.join(d, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    print(f"{name}: y {list(y.shape)} |y| {meta['y_norm']:.4g} <Ju, v> {meta['ju_dot_v']:.6g}")


def check_conversion():
    """convert_mpe.py on synthetic checkpoints: exact tensors, the presets' configs."""
    conv_dir = os.path.join(OUT, "convert")
    os.makedirs(conv_dir, exist_ok=True)
    from safetensors.torch import load_file

    with tempfile.TemporaryDirectory() as tmp:
        # A whole-LDM state dict: the first stage among decoder, codebook and UNet tensors.
        enc = FirstStageEncoder(LDM["ldm-tiny"])
        sd = synthetic_state(enc, 5)
        full = {f"first_stage_model.{k}": v for k, v in sd.items()}
        full["first_stage_model.decoder.conv_in.weight"] = torch.zeros(64, 4, 3, 3)
        full["first_stage_model.quantize.embedding.weight"] = torch.zeros(16, 3)
        full["model.diffusion_model.input_blocks.0.0.weight"] = torch.zeros(8, 3, 3, 3)
        full["cond_stage_model.encoder.conv_in.weight"] = torch.zeros(8, 3, 3, 3)
        ckpt = os.path.join(tmp, "model.ckpt")
        torch.save({"state_dict": full, "global_step": 7}, ckpt)
        t, cfg = convert_mpe.convert_ldm(convert_mpe.load(ckpt, False), 32)
        convert_mpe.save(os.path.join(tmp, "ldm"), t, cfg)
        back = load_file(os.path.join(tmp, "ldm", "weights.safetensors"))
        assert set(back) == set(sd), sorted(set(back) ^ set(sd))
        assert all(torch.equal(back[k], sd[k]) for k in sd)
        want = dict(kind="ldm_encoder", **LDM["ldm-tiny"], double_z=False)
        assert cfg == want, (cfg, want)
        # A bare first-stage autoencoder file (no prefix) gives the same.
        torch.save({"state_dict": sd}, ckpt)
        t2, cfg2 = convert_mpe.convert_ldm(convert_mpe.load(ckpt, False), 32)
        assert cfg2 == cfg and set(t2) == set(sd)
        with open(os.path.join(conv_dir, "ldm-tiny.json"), "w") as f:
            json.dump(cfg, f, indent=1)
            f.write("\n")

        vq = FirstStageEncoder(LDM["vq-f4"])
        t3, cfg3 = convert_mpe.convert_ldm({"state_dict": vq.state_dict()}, 256)
        assert cfg3 == dict(kind="ldm_encoder", **LDM["vq-f4"], double_z=False), cfg3
        with open(os.path.join(conv_dir, "vq-f4.json"), "w") as f:
            json.dump(cfg3, f, indent=1)
            f.write("\n")

        # An Equireg SmallCNN checkpoint as equireg/mpe/train.py saves it (hflip: 2 classes).
        cnn = SmallCNN(num_classes=2)
        sd = synthetic_state(cnn, 6)
        assert any(k.endswith("num_batches_tracked") for k in sd)
        pt = os.path.join(tmp, "cnn.pt")
        torch.save({"model_state": sd, "arch": "small_cnn", "num_classes": 2, "channels": 3,
                    "base_channels": 64, "num_blocks": 4, "group": "hflip",
                    "mean": [0.5] * 3, "std": [0.5] * 3}, pt)
        t, cfg = convert_mpe.convert_small_cnn(convert_mpe.load(pt, False))
        convert_mpe.save(os.path.join(tmp, "cnn"), t, cfg)
        back = load_file(os.path.join(tmp, "cnn", "weights.safetensors"))
        floats = {k: v for k, v in sd.items() if v.is_floating_point()}
        assert set(back) == set(floats), sorted(set(back) ^ set(floats))
        assert all(torch.equal(back[k], floats[k]) for k in floats)
        assert cfg == dict(kind="small_cnn", in_channels=3, base_channels=64, num_blocks=4,
                           num_classes=2, output="logits"), cfg
        with open(os.path.join(conv_dir, "small-cnn-hflip.json"), "w") as f:
            json.dump(cfg, f, indent=1)
            f.write("\n")
    print("convert_mpe.py: LDM (prefixed and bare) and SmallCNN conversions exact")


def main():
    torch.manual_seed(0)
    tiny = load_synthetic(FirstStageEncoder(LDM["ldm-tiny"]), 1)
    case("ldm-tiny-32-b2", tiny, "ldm-tiny", 1, 2, 32)
    vq = load_synthetic(FirstStageEncoder(LDM["vq-f4"]), 2)
    print("vq-f4 parameters:", sum(p.numel() for p in vq.parameters()))
    case("vq-f4-32-b1", vq, "vq-f4", 2, 1, 32)
    cnn = load_synthetic(SmallCNN(**SMALL_CNN), 3)
    print("SmallCNN state-dict floats:",
          sum(t.numel() for t in cnn.state_dict().values() if t.is_floating_point()))
    case("small-cnn-32-b2", cnn, "small-cnn", 3, 2, 32)
    check_conversion()


if __name__ == "__main__":
    main()
