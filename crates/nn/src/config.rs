//! The guided-diffusion (ADM) UNet configuration, with the field names of guided-diffusion's
//! `create_model`, and the presets of the published checkpoints.

use serde::{Deserialize, Serialize};

use crate::error::{NnError, Result};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UNetConfig {
    /// The training resolution; attention_resolutions are relative to it. The network itself
    /// runs at any size divisible by `downsampling_factor()`.
    pub image_size: usize,
    pub in_channels: usize,
    /// Output channels before learn_sigma doubles them (3 for RGB epsilon).
    pub out_channels: usize,
    pub model_channels: usize,
    pub channel_mult: Vec<usize>,
    pub num_res_blocks: usize,
    /// Resolutions (at image_size) that get attention, e.g. `[16]` for ffhq_10m.pt.
    pub attention_resolutions: Vec<usize>,
    #[serde(default = "default_one")]
    pub num_heads: usize,
    /// Channels per head; when set (not -1) it decides the head count.
    #[serde(default = "default_minus_one")]
    pub num_head_channels: i64,
    /// Heads in the decoder's attention; -1 means num_heads.
    #[serde(default = "default_minus_one")]
    pub num_heads_upsample: i64,
    #[serde(default)]
    pub use_scale_shift_norm: bool,
    #[serde(default)]
    pub resblock_updown: bool,
    #[serde(default = "default_true")]
    pub conv_resample: bool,
    #[serde(default)]
    pub learn_sigma: bool,
}

fn default_one() -> usize {
    1
}
fn default_minus_one() -> i64 {
    -1
}
fn default_true() -> bool {
    true
}

impl UNetConfig {
    /// DPS's FFHQ model, `ffhq_10m.pt`.
    pub fn ffhq256() -> Self {
        UNetConfig {
            image_size: 256,
            in_channels: 3,
            out_channels: 3,
            model_channels: 128,
            channel_mult: vec![1, 1, 2, 2, 4, 4],
            num_res_blocks: 1,
            attention_resolutions: vec![16],
            num_heads: 4,
            num_head_channels: 64,
            num_heads_upsample: -1,
            use_scale_shift_norm: true,
            resblock_updown: true,
            conv_resample: true,
            learn_sigma: true,
        }
    }

    /// guided-diffusion's `256x256_diffusion_uncond.pt` (ImageNet).
    pub fn imagenet256() -> Self {
        UNetConfig {
            model_channels: 256,
            num_res_blocks: 2,
            attention_resolutions: vec![32, 16, 8],
            ..Self::ffhq256()
        }
    }

    /// The small prior of the embedded default model (64x64 natural images).
    pub fn small64() -> Self {
        UNetConfig {
            image_size: 64,
            model_channels: 64,
            channel_mult: vec![1, 2, 2, 2],
            num_res_blocks: 1,
            attention_resolutions: vec![16, 8],
            num_heads: 4,
            num_head_channels: 32,
            ..Self::ffhq256()
        }
    }

    /// The embedded default prior: small64 at half the width (32 base channels) with
    /// attention only at 8x8, sized so that a 100-step DPS restoration of a 64x64 image runs
    /// in under two minutes on a 2-core software Vulkan adapter (attention at 16x16 alone
    /// doubled the VJP there). Trained by `tools/train_prior.py`.
    pub fn photo64() -> Self {
        UNetConfig {
            model_channels: 32,
            attention_resolutions: vec![8],
            num_heads: 2,
            ..Self::small64()
        }
    }

    /// A tiny network for tests: every block type, a few thousand parameters per layer.
    pub fn tiny32() -> Self {
        UNetConfig {
            image_size: 32,
            model_channels: 32,
            channel_mult: vec![1, 2],
            num_res_blocks: 1,
            attention_resolutions: vec![16],
            num_heads: 2,
            num_head_channels: -1,
            ..Self::ffhq256()
        }
    }

    pub fn preset(name: &str) -> Result<Self> {
        match name {
            "ffhq256" => Ok(Self::ffhq256()),
            "imagenet256" => Ok(Self::imagenet256()),
            "small64" => Ok(Self::small64()),
            "photo64" => Ok(Self::photo64()),
            "tiny32" => Ok(Self::tiny32()),
            _ => Err(NnError::Config(format!(
                "unknown preset '{name}' (known: {})",
                PRESETS.join(", ")
            ))),
        }
    }

    pub fn from_json(text: &str) -> Result<Self> {
        let c: UNetConfig =
            serde_json::from_str(text).map_err(|e| NnError::Config(format!("config JSON: {e}")))?;
        c.validate()?;
        Ok(c)
    }

    pub fn model_out_channels(&self) -> usize {
        if self.learn_sigma {
            2 * self.out_channels
        } else {
            self.out_channels
        }
    }

    /// Input sides must be multiples of this.
    pub fn downsampling_factor(&self) -> usize {
        1 << (self.channel_mult.len() - 1)
    }

    /// Downsampling factors ("ds") whose blocks get attention, as create_model computes them.
    pub fn attention_ds(&self) -> Vec<usize> {
        self.attention_resolutions
            .iter()
            .map(|&r| self.image_size / r)
            .collect()
    }

    /// Heads of an attention block with `channels` channels (encoder/middle or decoder).
    pub fn heads(&self, channels: usize, upsample: bool) -> usize {
        if self.num_head_channels > 0 {
            channels / self.num_head_channels as usize
        } else if upsample && self.num_heads_upsample > 0 {
            self.num_heads_upsample as usize
        } else {
            self.num_heads
        }
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(NnError::Config(m));
        if self.channel_mult.is_empty() {
            return bad("channel_mult is empty".into());
        }
        if self.model_channels == 0 || self.in_channels == 0 || self.out_channels == 0 {
            return bad("channel counts must be positive".into());
        }
        for &m in &self.channel_mult {
            if !(m * self.model_channels).is_multiple_of(32) {
                return bad(format!(
                    "model_channels * channel_mult = {} is not divisible by the 32 norm groups",
                    m * self.model_channels
                ));
            }
        }
        for &r in &self.attention_resolutions {
            if r == 0 || !self.image_size.is_multiple_of(r) {
                return bad(format!(
                    "attention resolution {r} does not divide image_size {}",
                    self.image_size
                ));
            }
        }
        if self.num_head_channels == 0 || self.num_head_channels < -1 {
            return bad("num_head_channels must be positive or -1".into());
        }
        let mut chans: Vec<usize> = self
            .channel_mult
            .iter()
            .map(|m| m * self.model_channels)
            .collect();
        chans.push(self.model_channels);
        for c in chans {
            for up in [false, true] {
                let h = self.heads(c, up);
                if h == 0 || c % h != 0 {
                    return bad(format!(
                        "{c} channels cannot be split into {h} attention heads"
                    ));
                }
            }
        }
        Ok(())
    }
}

pub const PRESETS: &[&str] = &["ffhq256", "imagenet256", "small64", "photo64", "tiny32"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid_and_match_the_published_configs() {
        for p in PRESETS {
            UNetConfig::preset(p).unwrap().validate().unwrap();
        }
        let f = UNetConfig::ffhq256();
        assert_eq!(f.attention_ds(), vec![16]);
        assert_eq!(f.heads(512, false), 8);
        assert_eq!(f.model_out_channels(), 6);
        assert_eq!(f.downsampling_factor(), 32);
        assert_eq!(UNetConfig::imagenet256().attention_ds(), vec![8, 16, 32]);
    }

    #[test]
    fn json_round_trip_and_unknown_fields_rejected() {
        let c = UNetConfig::small64();
        let s = serde_json::to_string(&c).unwrap();
        assert_eq!(UNetConfig::from_json(&s).unwrap(), c);
        let e = UNetConfig::from_json(r#"{"image_size": 64, "bogus": 1}"#).unwrap_err();
        assert!(
            e.to_string().contains("bogus") || e.to_string().contains("unknown field"),
            "{e}"
        );
    }
}
