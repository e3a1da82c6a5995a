#!/usr/bin/env python3
"""Fixtures from independent implementations, for the Rust tests and for reviewers.

UNet parity: deepinv's DiffUNet (guided-diffusion's ADM UNet) with synthetic weights in every
layer (tools/synthetic.py: the zero-initialised output convolutions are re-drawn too), run in
float64 on the CPU (the attention softmax stays float32 as in guided-diffusion), so the
reference carries almost no float32 error.

  python tools/make_fixtures.py unet --config ffhq256 --size 64 --batch 2 --seed 1 \
      --t 3,997 --out /tmp/fx [--weights]      # any seed, timesteps and batch
  python tools/make_fixtures.py all            # regenerate tests/fixtures/ (small files only)

Writes x.npy (float32 NCHW), t.npy (int64), y.npy (float32 NCHW, the raw network output),
v.npy (a cotangent shaped like y) and g.npy (torch autograd's gradient of sum(y * v) with
respect to x), meta.json, and with --weights also weights.safetensors (original state-dict names), so that
`equireg unet --weights W --preset P --input x.npy --t t.npy --out ours.npy` can be compared.

ffhq256 comes straight from deepinv (DiffUNet(pretrained=None)); other configs are assembled
here from deepinv's own blocks (ResBlock, AttentionBlock, ...) with DiffUNet's forward.
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import synthetic  # noqa: E402

from deepinv.models import diffunet as du  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CONFIGS = {
    # Mirrors crates/nn/src/config.rs presets.
    "ffhq256": dict(image_size=256, model_channels=128, channel_mult=[1, 1, 2, 2, 4, 4], num_res_blocks=1,
                    attention_resolutions=[16], num_heads=4, num_head_channels=64),
    "small64": dict(image_size=64, model_channels=64, channel_mult=[1, 2, 2, 2], num_res_blocks=1,
                    attention_resolutions=[16, 8], num_heads=4, num_head_channels=32),
    "tiny32": dict(image_size=32, model_channels=32, channel_mult=[1, 2], num_res_blocks=1,
                   attention_resolutions=[16], num_heads=2, num_head_channels=-1),
}


def assemble(cfg, in_ch=3, out_ch=6):
    """A DiffUNet with another configuration (scale-shift norm, resblock_updown, learn_sigma as
    the presets), built from deepinv's blocks in guided-diffusion's order."""
    m = du.DiffUNet.__new__(du.DiffUNet)
    torch.nn.Module.__init__(m)
    mc = cfg["model_channels"]
    ted = 4 * mc
    attn_ds = [cfg["image_size"] // r for r in cfg["attention_resolutions"]]
    heads, hc = cfg["num_heads"], cfg["num_head_channels"]

    def res(cin, cout, **kw):
        return du.ResBlock(cin, ted, 0.0, out_channels=cout, use_scale_shift_norm=True, **kw)

    def attn(c):
        return du.AttentionBlock(c, num_heads=heads, num_head_channels=hc)

    m.model_channels, m.num_classes, m.dtype = mc, None, torch.float32
    m.time_embed = torch.nn.Sequential(torch.nn.Linear(mc, ted), torch.nn.SiLU(), torch.nn.Linear(ted, ted))
    ch = cfg["channel_mult"][0] * mc
    m.input_blocks = torch.nn.ModuleList([du.TimestepEmbedSequential(du.conv_nd(2)(in_ch, ch, 3, padding=1))])
    chans, ds = [ch], 1
    for level, mult in enumerate(cfg["channel_mult"]):
        for _ in range(cfg["num_res_blocks"]):
            layers = [res(ch, mult * mc)]
            ch = mult * mc
            if ds in attn_ds:
                layers.append(attn(ch))
            m.input_blocks.append(du.TimestepEmbedSequential(*layers))
            chans.append(ch)
        if level != len(cfg["channel_mult"]) - 1:
            m.input_blocks.append(du.TimestepEmbedSequential(res(ch, ch, down=True)))
            chans.append(ch)
            ds *= 2
    m.middle_block = du.TimestepEmbedSequential(res(ch, ch), attn(ch), res(ch, ch))
    m.output_blocks = torch.nn.ModuleList()
    for level, mult in list(enumerate(cfg["channel_mult"]))[::-1]:
        for i in range(cfg["num_res_blocks"] + 1):
            layers = [res(ch + chans.pop(), mult * mc)]
            ch = mult * mc
            if ds in attn_ds:
                layers.append(attn(ch))
            if level and i == cfg["num_res_blocks"]:
                layers.append(res(ch, ch, up=True))
                ds //= 2
            m.output_blocks.append(du.TimestepEmbedSequential(*layers))
    m.out = torch.nn.Sequential(du.normalization(ch), torch.nn.SiLU(),
                                du.conv_nd(2)(cfg["channel_mult"][0] * mc, out_ch, 3, padding=1))
    return m


def build_unet(name):
    if name == "ffhq256":
        m = du.DiffUNet(in_channels=3, out_channels=3, large_model=False, pretrained=None)
    else:
        m = assemble(CONFIGS[name])
    return m.eval()


def weight_items(model):
    """The state dict without deepinv's schedule buffers: exactly what equireg loads."""
    return {k: v for k, v in model.state_dict().items()
            if k not in ("sqrt_alphas_cumprod", "sqrt_1m_alphas_cumprod")}


def as_float64_reference(model):
    """deepinv's UNet run wholly in float64: GroupNorm32 casts to float32, so it gets the same
    normalisation in float64; the timestep embedding is computed from float32 frequencies (as in
    guided-diffusion) and then enters the float64 MLP."""
    du.GroupNorm32.forward = lambda self, x: torch.nn.GroupNorm.forward(self, x)
    model = model.double()
    model.dtype = torch.float64
    model.time_embed.register_forward_pre_hook(lambda mod, args: tuple(a.double() for a in args))
    return model


def unet_fixture(config, size, batch, seed, timesteps, out, write_weights):
    model = build_unet(config)
    sd = weight_items(model)
    new = {k: torch.from_numpy(synthetic.tensor(seed, k, tuple(v.shape))) for k, v in sd.items()}
    model.load_state_dict(new, strict=False)
    model = as_float64_reference(model)
    x = synthetic.tensor(seed, "x", (batch, 3, size, size))
    t = np.array(timesteps, dtype=np.int64)
    assert t.shape == (batch,), "one timestep per batch item"
    xt = torch.from_numpy(x).double().requires_grad_(True)
    yt = model.forward_diffusion(xt, torch.from_numpy(t))
    y = yt.detach().float().numpy()
    # The vector-Jacobian product: gradient of sum(unet(x, t) * v) with respect to x.
    v = synthetic.tensor(seed, "v", tuple(yt.shape))
    (g,) = torch.autograd.grad((yt * torch.from_numpy(v).double()).sum(), xt)
    g = g.float().numpy()
    # For the dot-product test <J u, v> = <u, J^T v>: torch's forward-mode JVP along u.
    u = synthetic.tensor(seed, "u", x.shape)
    _, ju = torch.func.jvp(lambda inp: model.forward_diffusion(inp, torch.from_numpy(t)),
                           (torch.from_numpy(x).double(),), (torch.from_numpy(u).double(),))
    ju_dot_v = float((ju * torch.from_numpy(v).double()).sum())
    os.makedirs(out, exist_ok=True)
    np.save(os.path.join(out, "x.npy"), x)
    np.save(os.path.join(out, "t.npy"), t)
    np.save(os.path.join(out, "y.npy"), y)
    np.save(os.path.join(out, "v.npy"), v)
    np.save(os.path.join(out, "g.npy"), g)
    np.save(os.path.join(out, "u.npy"), u)
    meta = dict(kind="unet", config=config, size=size, batch=batch, seed=seed, t=timesteps,
                weights="tools/synthetic.py", reference="deepinv.models.DiffUNet.forward_diffusion, float64; g by torch.autograd",
                ju_dot_v=ju_dot_v)
    with open(os.path.join(out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    if write_weights:
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in new.items()}, os.path.join(out, "weights.safetensors"))
    print(f"{out}: {config} {batch}x3x{size}x{size}, t={timesteps}, |y|={np.linalg.norm(y):.4f}")


def regenerate_all():
    fx = os.path.join(REPO, "tests", "fixtures", "unet")
    unet_fixture("tiny32", 32, 2, 7, [5, 990], os.path.join(fx, "tiny32-32-b2"), write_weights=True)
    unet_fixture("ffhq256", 64, 2, 11, [2, 996], os.path.join(fx, "ffhq256-64-b2"), write_weights=False)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    u = sub.add_parser("unet")
    u.add_argument("--config", choices=sorted(CONFIGS), default="ffhq256")
    u.add_argument("--size", type=int, default=64)
    u.add_argument("--batch", type=int, default=2)
    u.add_argument("--seed", type=int, default=0)
    u.add_argument("--t", default="3,997", help="comma-separated timesteps, one per batch item")
    u.add_argument("--out", required=True)
    u.add_argument("--weights", action="store_true", help="also write weights.safetensors")
    sub.add_parser("all")
    args = ap.parse_args()
    if args.cmd == "all":
        regenerate_all()
    else:
        unet_fixture(args.config, args.size, args.batch, args.seed,
                     [int(v) for v in args.t.split(",")], args.out, args.weights)


if __name__ == "__main__":
    main()
