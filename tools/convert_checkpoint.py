#!/usr/bin/env python3
"""Convert a PyTorch checkpoint (.pt/.pth state dict) to safetensors for equireg.

Keeps the original state-dict names (input_blocks.0.0.weight, ...), stores every tensor as
float32, and drops buffers that are not weights (deepinv's DiffUNet schedule buffers). With
--prefix, only tensors under that prefix are kept and the prefix is stripped (for example
`--prefix first_stage_model.` on a CompVis latent-diffusion checkpoint).

    python tools/convert_checkpoint.py ffhq_10m.pt ffhq_10m.safetensors
"""
import argparse
import sys

import torch
from safetensors.torch import save_file

NOT_WEIGHTS = {"sqrt_alphas_cumprod", "sqrt_1m_alphas_cumprod"}


def load_state_dict(path):
    obj = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "ema"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(torch.is_tensor(v) for v in obj.values()):
        sys.exit(f"error: {path} does not hold a state dict of tensors")
    return obj


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("input")
    ap.add_argument("output")
    ap.add_argument("--prefix", default="", help="keep only tensors under this prefix, stripped")
    args = ap.parse_args()
    sd = load_state_dict(args.input)
    out = {}
    for name, t in sd.items():
        if args.prefix:
            if not name.startswith(args.prefix):
                continue
            name = name[len(args.prefix):]
        if name.split(".")[-1] in NOT_WEIGHTS or not t.is_floating_point():
            continue
        out[name] = t.detach().to(torch.float32).contiguous()
    if not out:
        sys.exit("error: no floating-point tensors to convert")
    save_file(out, args.output)
    n = sum(t.numel() for t in out.values())
    print(f"wrote {len(out)} tensors, {n / 1e6:.1f} M parameters, to {args.output}")


if __name__ == "__main__":
    main()
