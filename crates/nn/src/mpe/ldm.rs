//! CompVis latent-diffusion's first-stage encoder (`ldm/modules/diffusionmodules/model.py`
//! `Encoder`) followed by the autoencoder's `quant_conv` and `post_quant_conv`
//! (`ldm/models/autoencoder.py` `VQModel`), as EquiReg's `_FirstStageEncoder` runs it: no
//! quantization between the two 1x1 convolutions. Parameter names are those of the CompVis state
//! dict with the `first_stage_model.` prefix removed.
//!
//! Blocks, as in the reference:
//! - `Normalize`: GroupNorm(32 groups, eps 1e-6, affine); `nonlinearity`: SiLU (fused into the
//!   norm that precedes it);
//! - `ResnetBlock` (no timestep embedding in the encoder): norm1, SiLU, conv1 3x3, norm2, SiLU,
//!   (dropout), conv2 3x3, plus the input (through `nin_shortcut`, a 1x1 conv, when the channel
//!   count changes);
//! - `Downsample` (with_conv): zero pad (left 0, right 1, top 0, bottom 1), conv 3x3 stride 2,
//!   padding 0;
//! - `AttnBlock`: one head over all C channels, q, k, v and proj_out 1x1 convs,
//!   softmax(q^T k * C^-1/2) over the keys, plus the input. Run as matmul -> row softmax ->
//!   matmul (C = 512 in VQ-f4 is wider than the fused attention kernel's heads), so its VJP is
//!   matmuls and the softmax VJP.

use equireg_gpu::ops::pad::Pad2d;
use serde::{Deserialize, Serialize};

use super::Net;
use crate::error::{NnError, Result};
use crate::graph::ValueId;

/// GroupNorm of CompVis' `Normalize`.
const GROUPS: u32 = 32;
const EPS: f32 = 1e-6;

/// The `ddconfig` of a CompVis autoencoder (the fields the encoder reads) and its `embed_dim`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdmEncoderConfig {
    pub ch: usize,
    pub ch_mult: Vec<usize>,
    pub num_res_blocks: usize,
    /// Resolutions (relative to `resolution`) whose down blocks get attention; the middle block
    /// always has one.
    #[serde(default)]
    pub attn_resolutions: Vec<usize>,
    pub z_channels: usize,
    pub embed_dim: usize,
    #[serde(default = "three")]
    pub in_channels: usize,
    /// The training resolution `attn_resolutions` refers to; the network runs at any size.
    pub resolution: usize,
    /// true for KL autoencoders (the encoder outputs mean and log-variance). Refused: EquiReg's
    /// wrapper applies post_quant_conv (embed_dim inputs) to quant_conv's 2 embed_dim outputs,
    /// which only works for VQ models.
    #[serde(default)]
    pub double_z: bool,
}

fn three() -> usize {
    3
}

impl LdmEncoderConfig {
    /// The CompVis FFHQ-256 LDM's first stage (`models/first_stage_models/vq-f4`): VQ, ch 128,
    /// ch_mult [1, 2, 4], 2 res blocks, no attention outside the middle block, z 3, embed 3.
    pub fn vq_f4() -> Self {
        LdmEncoderConfig {
            ch: 128,
            ch_mult: vec![1, 2, 4],
            num_res_blocks: 2,
            attn_resolutions: vec![],
            z_channels: 3,
            embed_dim: 3,
            in_channels: 3,
            resolution: 256,
            double_z: false,
        }
    }

    /// A small encoder with every block type (nin_shortcut, attention in a down level,
    /// embed_dim != z_channels), for tests.
    pub fn tiny() -> Self {
        LdmEncoderConfig {
            ch: 32,
            ch_mult: vec![1, 2],
            num_res_blocks: 1,
            attn_resolutions: vec![16],
            z_channels: 4,
            embed_dim: 3,
            in_channels: 3,
            resolution: 32,
            double_z: false,
        }
    }

    /// Input sides are floored by this (2 per Downsample) and must be at least this.
    pub fn downsampling_factor(&self) -> usize {
        1 << (self.ch_mult.len().max(1) - 1)
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(NnError::Config(m));
        if self.ch_mult.is_empty() {
            return bad("ch_mult is empty".into());
        }
        if self.ch_mult.len() > 12 {
            return bad(format!("{} levels are too many", self.ch_mult.len()));
        }
        if self.ch == 0 || self.in_channels == 0 || self.z_channels == 0 || self.embed_dim == 0 {
            return bad("ch, in_channels, z_channels and embed_dim must be positive".into());
        }
        for &m in std::iter::once(&1).chain(&self.ch_mult) {
            let c = m * self.ch;
            if c == 0 || !c.is_multiple_of(GROUPS as usize) {
                return bad(format!(
                    "ch * ch_mult = {c} is not divisible by the {GROUPS} GroupNorm groups"
                ));
            }
        }
        if self.double_z {
            return bad(
                "double_z = true (a KL autoencoder) is not supported: EquiReg's first-stage \
                 wrapper feeds quant_conv's 2 * embed_dim channels to post_quant_conv, which \
                 takes embed_dim; use a VQ autoencoder (double_z = false)"
                    .into(),
            );
        }
        Ok(())
    }
}

/// Encoder.__init__ and forward interleaved, then quant_conv and post_quant_conv.
pub(crate) fn build(cfg: &LdmEncoderConfig, net: &mut Net, x: ValueId) -> ValueId {
    let ch = cfg.ch;
    let mut h = net.conv("encoder.conv_in", x, ch, 3, 1, 1, None);
    let mut curr_res = cfg.resolution;
    let levels = cfg.ch_mult.len();
    for (level, &mult) in cfg.ch_mult.iter().enumerate() {
        let block_out = ch * mult;
        for i in 0..cfg.num_res_blocks {
            h = res_block(
                net,
                &format!("encoder.down.{level}.block.{i}"),
                h,
                block_out,
            );
            if cfg.attn_resolutions.contains(&curr_res) {
                h = attn_block(net, &format!("encoder.down.{level}.attn.{i}"), h);
            }
        }
        if level != levels - 1 {
            let p = net.pad(h, Pad2d::BOTTOM_RIGHT_1);
            let c = net.dims(h).0;
            let prefix = format!("encoder.down.{level}.downsample.conv");
            h = net.conv(&prefix, p, c, 3, 2, 0, None);
            curr_res /= 2;
        }
    }
    let c = net.dims(h).0;
    h = res_block(net, "encoder.mid.block_1", h, c);
    h = attn_block(net, "encoder.mid.attn_1", h);
    h = res_block(net, "encoder.mid.block_2", h, c);
    h = net.group_norm("encoder.norm_out", h, GROUPS, EPS, true);
    h = net.conv("encoder.conv_out", h, cfg.z_channels, 3, 1, 1, None);
    h = net.conv("quant_conv", h, cfg.embed_dim, 1, 1, 0, None);
    net.conv("post_quant_conv", h, cfg.z_channels, 1, 1, 0, None)
}

fn res_block(net: &mut Net, p: &str, x: ValueId, cout: usize) -> ValueId {
    let cin = net.dims(x).0;
    let h = net.group_norm(&format!("{p}.norm1"), x, GROUPS, EPS, true);
    let h = net.conv(&format!("{p}.conv1"), h, cout, 3, 1, 1, None);
    let h = net.group_norm(&format!("{p}.norm2"), h, GROUPS, EPS, true);
    let skip = if cin == cout {
        x
    } else {
        net.conv(&format!("{p}.nin_shortcut"), x, cout, 1, 1, 0, None)
    };
    net.conv(&format!("{p}.conv2"), h, cout, 3, 1, 1, Some(skip))
}

fn attn_block(net: &mut Net, p: &str, x: ValueId) -> ValueId {
    let (c, hh, ww) = net.dims(x);
    let t = hh * ww;
    let hn = net.group_norm(&format!("{p}.norm"), x, GROUPS, EPS, false);
    let q = net.conv(&format!("{p}.q"), hn, c, 1, 1, 0, None);
    let k = net.conv(&format!("{p}.k"), hn, c, 1, 1, 0, None);
    let v = net.conv(&format!("{p}.v"), hn, c, 1, 1, 0, None);
    // scores[n, i, j] = sum_c q[n, c, i] k[n, c, j]: queries along rows, keys along columns.
    let n = net.n;
    let scores = net.matmul(q, k, true, false, &[n, t, t]);
    // int(c) ** (-0.5) in Python double, rounded once.
    let probs = net.softmax(scores, (c as f64).powf(-0.5) as f32);
    // out[n, c, i] = sum_j v[n, c, j] probs[n, i, j]
    let attended = net.matmul(v, probs, false, true, &[n, c, hh, ww]);
    net.conv(&format!("{p}.proj_out"), attended, c, 1, 1, 0, Some(x))
}
