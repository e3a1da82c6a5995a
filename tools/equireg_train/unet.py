"""The guided-diffusion (ADM) UNet in plain PyTorch, written for training the default prior.

Parameter names and the forward computation follow guided-diffusion's `UNetModel` (ResBlock
with scale-shift norm and resblock_updown, legacy QKV attention order, GroupNorm(32) in f32),
so that the state dict loads in equireg under the original names. tools/train_prior.py
--check compares it with deepinv's DiffUNet blocks, an independent implementation.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def group_norm(ch):
    return nn.GroupNorm(32, ch, eps=1e-5)


def zero(module):
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def timestep_embedding(t, dim, dtype=torch.float32, max_period=10000):
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t[:, None].float() * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1).to(dtype)


class ResBlock(nn.Module):
    def __init__(self, ch, emb_ch, out_ch, up=False, down=False):
        super().__init__()
        self.up, self.down = up, down
        self.in_layers = nn.Sequential(group_norm(ch), nn.SiLU(), nn.Conv2d(ch, out_ch, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_ch, 2 * out_ch))
        self.out_layers = nn.Sequential(
            group_norm(out_ch), nn.SiLU(), nn.Dropout(0.0), zero(nn.Conv2d(out_ch, out_ch, 3, padding=1))
        )
        self.skip_connection = nn.Identity() if out_ch == ch else nn.Conv2d(ch, out_ch, 1)

    def resample(self, x):
        if self.up:
            return F.interpolate(x, scale_factor=2, mode="nearest")
        if self.down:
            return F.avg_pool2d(x, 2)
        return x

    def forward(self, x, emb):
        h = self.in_layers[1](self.in_layers[0](x))
        h = self.in_layers[2](self.resample(h))
        x = self.resample(x)
        scale, shift = self.emb_layers(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.out_layers[0](h) * (1 + scale) + shift
        h = self.out_layers[3](self.out_layers[2](self.out_layers[1](h)))
        return self.skip_connection(x) + h


class AttentionBlock(nn.Module):
    def __init__(self, ch, heads):
        super().__init__()
        self.heads = heads
        self.norm = group_norm(ch)
        self.qkv = nn.Conv1d(ch, 3 * ch, 1)
        self.proj_out = zero(nn.Conv1d(ch, ch, 1))

    def forward(self, x, emb=None):
        b, c, hgt, wid = x.shape
        x = x.reshape(b, c, -1)
        qkv = self.qkv(self.norm(x))
        length = qkv.shape[-1]
        ch = c // self.heads
        # Legacy order: heads split before q, k, v ([h][qkv][c] along channels).
        q, k, v = qkv.reshape(b * self.heads, 3 * ch, length).split(ch, dim=1)
        scale = 1.0 / math.sqrt(math.sqrt(ch))
        w = torch.einsum("bct,bcs->bts", q * scale, k * scale).softmax(dim=-1)
        a = torch.einsum("bts,bcs->bct", w, v).reshape(b, c, length)
        return (x + self.proj_out(a)).reshape(b, c, hgt, wid)


class Sequential(nn.ModuleList):
    """guided-diffusion's TimestepEmbedSequential: passes emb to the blocks that take it."""

    def forward(self, x, emb):
        for layer in self:
            x = layer(x, emb) if isinstance(layer, (ResBlock, AttentionBlock)) else layer(x)
        return x


class UNet(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        mc = cfg["model_channels"]
        ted = 4 * mc
        mults = cfg["channel_mult"]
        attn_ds = {cfg["image_size"] // r for r in cfg["attention_resolutions"]}
        out_ch = cfg["out_channels"] * (2 if cfg["learn_sigma"] else 1)

        def heads(ch):
            return ch // cfg["num_head_channels"] if cfg["num_head_channels"] != -1 else cfg["num_heads"]

        self.time_embed = nn.Sequential(nn.Linear(mc, ted), nn.SiLU(), nn.Linear(ted, ted))
        ch = mults[0] * mc
        self.input_blocks = nn.ModuleList([Sequential([nn.Conv2d(cfg["in_channels"], ch, 3, padding=1)])])
        chans, ds = [ch], 1
        for level, mult in enumerate(mults):
            for _ in range(cfg["num_res_blocks"]):
                layers = [ResBlock(ch, ted, mult * mc)]
                ch = mult * mc
                if ds in attn_ds:
                    layers.append(AttentionBlock(ch, heads(ch)))
                self.input_blocks.append(Sequential(layers))
                chans.append(ch)
            if level != len(mults) - 1:
                self.input_blocks.append(Sequential([ResBlock(ch, ted, ch, down=True)]))
                chans.append(ch)
                ds *= 2
        self.middle_block = Sequential([ResBlock(ch, ted, ch), AttentionBlock(ch, heads(ch)), ResBlock(ch, ted, ch)])
        self.output_blocks = nn.ModuleList()
        for level, mult in list(enumerate(mults))[::-1]:
            for i in range(cfg["num_res_blocks"] + 1):
                layers = [ResBlock(ch + chans.pop(), ted, mult * mc)]
                ch = mult * mc
                if ds in attn_ds:
                    layers.append(AttentionBlock(ch, heads(ch)))
                if level and i == cfg["num_res_blocks"]:
                    layers.append(ResBlock(ch, ted, ch, up=True))
                    ds //= 2
                self.output_blocks.append(Sequential(layers))
        self.out = nn.Sequential(group_norm(ch), nn.SiLU(), zero(nn.Conv2d(ch, out_ch, 3, padding=1)))

    def forward(self, x, t):
        emb = self.time_embed(timestep_embedding(t, self.cfg["model_channels"], x.dtype))
        hs, h = [], x
        for block in self.input_blocks:
            h = block(h, emb)
            hs.append(h)
        h = self.middle_block(h, emb)
        for block in self.output_blocks:
            h = block(torch.cat([h, hs.pop()], dim=1), emb)
        return self.out(h)
