#!/usr/bin/env python3
"""Convert LPIPS-AlexNet weights (lpips v0.1) to the one safetensors file that
equireg::lpips::Lpips::load reads. Nothing is downloaded: pass your own copies.

    python tools/convert_lpips.py --alexnet alexnet-owt-7be5be79.pth \\
        --lin lpips/weights/v0.1/alex.pth lpips_alex.safetensors

--alexnet: torchvision's AlexNet state dict (the file torchvision.models.alexnet(weights=
    AlexNet_Weights.IMAGENET1K_V1) caches); only features.{0,3,6,8,10} are kept.
--lin: the lpips package's weights/v0.1/alex.pth (lin0..lin4), or the state dict of a whole
    lpips.LPIPS(net='alex') model, which holds the AlexNet features too (net.sliceK.N.*);
    then --alexnet may be left out.

The file holds float32 tensors named:
    features.0.weight  [64, 3, 11, 11]    features.0.bias  [64]     conv1, stride 4, pad 2
    features.3.weight  [192, 64, 5, 5]    features.3.bias  [192]    conv2, pad 2
    features.6.weight  [384, 192, 3, 3]   features.6.bias  [384]    conv3, pad 1
    features.8.weight  [256, 384, 3, 3]   features.8.bias  [256]    conv4, pad 1
    features.10.weight [256, 256, 3, 3]   features.10.bias [256]    conv5, pad 1
    lin0.model.1.weight [1, 64, 1, 1] ... lin4.model.1.weight [1, 256, 1, 1]
"""
import argparse
import re
import sys

import torch

CONVS = [(0, 3, 64, 11), (3, 64, 192, 5), (6, 192, 384, 3), (8, 384, 256, 3), (10, 256, 256, 3)]


def spec():
    """(name, shape) of every tensor, in the order of equireg::lpips::Lpips::spec()."""
    out = []
    for idx, cin, cout, k in CONVS:
        out.append((f"features.{idx}.weight", [cout, cin, k, k]))
        out.append((f"features.{idx}.bias", [cout]))
    for i, (_, _, cout, _) in enumerate(CONVS):
        out.append((f"lin{i}.model.1.weight", [1, cout, 1, 1]))
    return out


def load_state_dict(path):
    obj = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(torch.is_tensor(v) for v in obj.values()):
        sys.exit(f"error: {path} does not hold a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def convert(alexnet_sd, lin_sd):
    """The tensors of spec() from a torchvision AlexNet state dict (or None) and an lpips one."""
    found = {}
    for name, t in lin_sd.items():
        m = re.fullmatch(r"lin(\d)\.model\.[01]\.weight", name)
        if m:
            found[f"lin{m.group(1)}.model.1.weight"] = t
        m = re.fullmatch(r"net\.slice\d\.(\d+)\.(weight|bias)", name)
        if m:
            found[f"features.{m.group(1)}.{m.group(2)}"] = t
    for name, t in (alexnet_sd or {}).items():
        if re.fullmatch(r"features\.\d+\.(weight|bias)", name):
            found[name] = t
    out, problems = {}, []
    for name, shape in spec():
        t = found.get(name)
        if t is None:
            problems.append(f"missing {name} {shape}")
        elif list(t.shape) != shape:
            problems.append(f"{name} has shape {list(t.shape)}, expected {shape}")
        else:
            out[name] = t.detach().to(torch.float32).contiguous()
    if problems:
        raise ValueError("; ".join(problems))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--alexnet", help="torchvision AlexNet state dict (.pth)")
    ap.add_argument("--lin", required=True, help="lpips weights/v0.1/alex.pth or an LPIPS model state dict")
    ap.add_argument("output", help="the .safetensors file to write")
    args = ap.parse_args()
    from safetensors.torch import save_file

    alexnet = load_state_dict(args.alexnet) if args.alexnet else None
    try:
        out = convert(alexnet, load_state_dict(args.lin))
    except ValueError as e:
        sys.exit(f"error: {e}")
    if any(float(out[f"lin{i}.model.1.weight"].min()) < 0 for i in range(5)):
        print("warning: negative lin weights; lpips' trained weights are non-negative", file=sys.stderr)
    save_file(out, args.output)
    n = sum(t.numel() for t in out.values())
    print(f"wrote {len(out)} tensors, {n / 1e6:.2f} M parameters, to {args.output}")


if __name__ == "__main__":
    main()
