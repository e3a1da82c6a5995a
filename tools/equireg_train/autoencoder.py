"""A small CompVis-style first-stage autoencoder (ldm/modules/diffusionmodules/model.py
Encoder/Decoder layout and parameter names, VQModel's quant_conv/post_quant_conv, no
quantization), written for training the default MPE function.

The exported MPE is EquiReg's `_FirstStageEncoder`: post_quant_conv(quant_conv(encoder(x)))
on images in [-1, 1], which equireg runs as `kind: ldm_encoder` (crates/nn/src/mpe/ldm.rs).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


def norm(ch):
    return nn.GroupNorm(32, ch, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.norm1 = norm(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = norm(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        if cin != cout:
            self.nin_shortcut = nn.Conv2d(cin, cout, 1)

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return (self.nin_shortcut(x) if hasattr(self, "nin_shortcut") else x) + h


class AttnBlock(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.norm = norm(ch)
        self.q, self.k, self.v, self.proj_out = (nn.Conv2d(ch, ch, 1) for _ in range(4))

    def forward(self, x):
        h = self.norm(x)
        b, c, hh, ww = h.shape
        q = self.q(h).reshape(b, c, hh * ww).permute(0, 2, 1)
        k = self.k(h).reshape(b, c, hh * ww)
        w = torch.bmm(q, k).mul(int(c) ** (-0.5)).softmax(dim=2)
        v = self.v(h).reshape(b, c, hh * ww)
        a = torch.bmm(v, w.permute(0, 2, 1)).reshape(b, c, hh, ww)
        return x + self.proj_out(a)


class Downsample(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, stride=2, padding=0)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Level(nn.Module):
    pass


class Encoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        ch, mults, nrb = cfg["ch"], cfg["ch_mult"], cfg["num_res_blocks"]
        self.conv_in = nn.Conv2d(cfg["in_channels"], ch, 3, padding=1)
        self.down = nn.ModuleList()
        cin, res = ch, cfg["resolution"]
        for i, m in enumerate(mults):
            lv = Level()
            lv.block = nn.ModuleList()
            lv.attn = nn.ModuleList()
            for _ in range(nrb):
                lv.block.append(ResnetBlock(cin, ch * m))
                cin = ch * m
                if res in cfg["attn_resolutions"]:
                    lv.attn.append(AttnBlock(cin))
            if i != len(mults) - 1:
                lv.downsample = Downsample(cin)
                res //= 2
            self.down.append(lv)
        self.mid = Level()
        self.mid.block_1, self.mid.attn_1, self.mid.block_2 = ResnetBlock(cin, cin), AttnBlock(cin), ResnetBlock(cin, cin)
        self.norm_out = norm(cin)
        self.conv_out = nn.Conv2d(cin, cfg["z_channels"], 3, padding=1)

    def forward(self, x):
        h = self.conv_in(x)
        for lv in self.down:
            for j, blk in enumerate(lv.block):
                h = blk(h)
                if len(lv.attn):
                    h = lv.attn[j](h)
            if hasattr(lv, "downsample"):
                h = lv.downsample(h)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        ch, mults, nrb = cfg["ch"], cfg["ch_mult"], cfg["num_res_blocks"]
        cin = ch * mults[-1]
        self.conv_in = nn.Conv2d(cfg["z_channels"], cin, 3, padding=1)
        self.mid = Level()
        self.mid.block_1, self.mid.attn_1, self.mid.block_2 = ResnetBlock(cin, cin), AttnBlock(cin), ResnetBlock(cin, cin)
        self.up = nn.ModuleList([Level() for _ in mults])
        for i in reversed(range(len(mults))):
            lv = self.up[i]
            lv.block = nn.ModuleList()
            for _ in range(nrb + 1):
                lv.block.append(ResnetBlock(cin, ch * mults[i]))
                cin = ch * mults[i]
            if i != 0:
                lv.upsample = Upsample(cin)
        self.norm_out = norm(cin)
        self.conv_out = nn.Conv2d(cin, cfg["in_channels"], 3, padding=1)

    def forward(self, z):
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(self.conv_in(z))))
        for i in reversed(range(len(self.up))):
            lv = self.up[i]
            for blk in lv.block:
                h = blk(h)
            if hasattr(lv, "upsample"):
                h = lv.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Autoencoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.quant_conv = nn.Conv2d(cfg["z_channels"], cfg["embed_dim"], 1)
        self.post_quant_conv = nn.Conv2d(cfg["embed_dim"], cfg["z_channels"], 1)

    def mpe(self, x):
        """The MPE function f: what equireg's ldm_encoder computes."""
        return self.post_quant_conv(self.quant_conv(self.encoder(x)))

    def forward(self, x):
        return self.decoder(self.mpe(x))

    def mpe_state_dict(self):
        return {k: v for k, v in self.state_dict().items()
                if k.startswith(("encoder.", "quant_conv.", "post_quant_conv."))}
