#!/usr/bin/env python3
"""Converts the published MPE networks of EquiReg to safetensors + a JSON config for
equireg_nn::mpe (`Mpe::load(gpu, config.json, weights.safetensors)`).

  # CompVis latent-diffusion checkpoint: a whole LDM (`first_stage_model.*` keys, e.g. the FFHQ
  # LDM's model.ckpt) or a first-stage autoencoder alone (vq-f4/model.ckpt: `encoder.*` keys)
  python tools/convert_mpe.py ldm --ckpt model.ckpt --out models/mpe/vq-f4 [--resolution 256]

  # EquiReg SmallCNN checkpoint (equireg/mpe/train.py: {"model_state": ..., "arch": ...})
  python tools/convert_mpe.py small-cnn --ckpt ffhq256_hflip_equiv_CNN.pt \
      --out models/mpe/hflip-cnn [--output logits|features]

Writes OUT/weights.safetensors (float32, reference state-dict names) and OUT/config.json.

LDM: keeps encoder.*, quant_conv.* and post_quant_conv.* (the `first_stage_model.` prefix
removed) and drops everything else (decoder, codebook, loss, the diffusion UNet). The encoder's
configuration is read off the tensor shapes, which determine it completely; `resolution` only
names the levels in `attn_resolutions` (resolution / 2^level) and defaults to 256. KL
autoencoders (double_z) are refused: EquiReg's first-stage wrapper only works for VQ models.

SmallCNN: keeps model_state without `num_batches_tracked` (an integer counter, not a weight);
BatchNorm is folded into the convolutions when the Rust side loads the file. The config comes
from the checkpoint's metadata with SmallCNN's defaults (in_channels 3, base_channels 64,
num_blocks 4, num_classes 4), as Equireg's load_checkpoint_encoder reads it.

Lightning checkpoints may pickle more than tensors: pass --trust to load them with
weights_only=False (only for files you trust).
"""
import argparse
import json
import os
import re
import sys

import torch


def load(path, trust):
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust)
    except Exception as e:  # noqa: BLE001
        if trust:
            raise
        sys.exit(f"{path}: cannot load with weights_only=True ({e}); rerun with --trust if you "
                 "trust the file")


def save(out_dir, tensors, config):
    from safetensors.torch import save_file

    os.makedirs(out_dir, exist_ok=True)
    tensors = {k: v.detach().to(torch.float32).contiguous() for k, v in tensors.items()}
    save_file(tensors, os.path.join(out_dir, "weights.safetensors"))
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=1)
        f.write("\n")


def ldm_tensors(state):
    """The encoder, quant_conv and post_quant_conv tensors under our names."""
    if "state_dict" in state:
        state = state["state_dict"]
    prefix = "first_stage_model." if any(k.startswith("first_stage_model.") for k in state) else ""
    keep = {}
    for k, v in state.items():
        if not k.startswith(prefix):
            continue
        name = k[len(prefix):]
        if name.startswith(("encoder.", "quant_conv.", "post_quant_conv.")):
            keep[name] = v
    if "encoder.conv_in.weight" not in keep:
        sys.exit("no first-stage encoder found (expected first_stage_model.encoder.* or "
                 "encoder.* keys)")
    return keep


def ldm_config(t, resolution):
    """The LdmEncoderConfig that the tensor shapes determine."""
    ch = t["encoder.conv_in.weight"].shape[0]
    in_channels = t["encoder.conv_in.weight"].shape[1]
    levels = sorted({int(m.group(1)) for k in t if (m := re.match(r"encoder\.down\.(\d+)\.", k))})
    if levels != list(range(len(levels))) or not levels:
        sys.exit(f"unexpected encoder levels {levels}")
    ch_mult, attn = [], []
    blocks = sorted({int(m.group(1)) for k in t
                     if (m := re.match(r"encoder\.down\.0\.block\.(\d+)\.", k))})
    for lv in levels:
        ch_mult.append(t[f"encoder.down.{lv}.block.0.conv1.weight"].shape[0] // ch)
        if f"encoder.down.{lv}.attn.0.q.weight" in t:
            attn.append(resolution >> lv)
    z_out = t["encoder.conv_out.weight"].shape[0]
    quant, post = t["quant_conv.weight"].shape, t["post_quant_conv.weight"].shape
    double_z = quant[1] != post[0]
    if double_z:
        sys.exit("this is a KL autoencoder (double_z): EquiReg's first-stage wrapper feeds "
                 "quant_conv's 2*embed_dim channels to post_quant_conv, which takes embed_dim, "
                 "so only VQ autoencoders are supported")
    return {
        "kind": "ldm_encoder",
        "ch": ch,
        "ch_mult": ch_mult,
        "num_res_blocks": len(blocks),
        "attn_resolutions": attn,
        "z_channels": z_out,
        "embed_dim": quant[0],
        "in_channels": in_channels,
        "resolution": resolution,
        "double_z": False,
    }


def convert_ldm(state, resolution):
    t = ldm_tensors(state)
    return t, ldm_config(t, resolution)


def convert_small_cnn(ckpt, output="logits"):
    if "model_state" not in ckpt:
        sys.exit("not an EquiReg SmallCNN checkpoint (no 'model_state')")
    arch = ckpt.get("arch", "small_cnn")
    if arch != "small_cnn":
        sys.exit(f"arch is '{arch}', not small_cnn")
    t = {k: v for k, v in ckpt["model_state"].items() if not k.endswith("num_batches_tracked")}
    config = {
        "kind": "small_cnn",
        "in_channels": int(ckpt.get("channels", 3)),
        "base_channels": int(ckpt.get("base_channels", 64)),
        "num_blocks": int(ckpt.get("num_blocks", 4)),
        "num_classes": int(ckpt.get("num_classes", 4)),
        "output": output,
    }
    return t, config


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", choices=["ldm", "small-cnn"])
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--resolution", type=int, default=256, help="ldm: the training resolution")
    ap.add_argument("--output", choices=["logits", "features"], default="logits",
                    help="small-cnn: what f returns")
    ap.add_argument("--trust", action="store_true", help="torch.load with weights_only=False")
    a = ap.parse_args()
    ckpt = load(a.ckpt, a.trust)
    if a.model == "ldm":
        t, config = convert_ldm(ckpt, a.resolution)
    else:
        t, config = convert_small_cnn(ckpt, a.output)
    save(a.out, t, config)
    n = sum(v.numel() for v in t.values())
    print(f"{a.out}: {len(t)} tensors, {n} values; config {json.dumps(config)}")


if __name__ == "__main__":
    main()
