//! EquiReg's `SmallCNN` (Anima-Lab/Equireg, `equireg/mpe/models.py`): `num_blocks` x
//! [Conv2d(3x3, stride 2, padding 1), BatchNorm2d, ReLU] with `base_channels` doubling per block
//! up to 4 x base_channels (64, 128, 256, 256 by default), then AdaptiveAvgPool2d(1) and a linear
//! classifier. EquiReg calls the model itself as f, so the default output is the logits
//! [N, num_classes]; `output: features` gives `forward_features` instead (the last ReLU's map).
//!
//! BatchNorm runs in eval form (running statistics), so it is an affine map per channel and is
//! folded into the preceding convolution when the weights are loaded, in f64:
//! s = gamma / sqrt(running_var + eps), w' = w * s (per output channel),
//! b' = (b - running_mean) * s + beta, with PyTorch's default eps 1e-5. The weights file keeps
//! the original state-dict names (`features.{3i}.weight/bias` for the convolutions,
//! `features.{3i+1}.weight/bias/running_mean/running_var` for the norms, `classifier.*`);
//! `num_batches_tracked` (an integer counter) is not a weight and must be left out.

use serde::{Deserialize, Serialize};

use super::Net;
use crate::error::{NnError, Result};
use crate::graph::ValueId;
use crate::weights::{WeightSpec, Weights};

/// nn.BatchNorm2d's default eps.
pub const BATCH_NORM_EPS: f64 = 1e-5;

/// What the network returns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmallCnnOutput {
    /// `model(x)`: the classifier's logits [N, num_classes] (what EquiReg penalises).
    #[default]
    Logits,
    /// `model.forward_features(x)`: [N, C, H', W'] after the last block.
    Features,
}

/// SmallCNN's constructor arguments (defaults as in the reference) and the output choice.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmallCnnConfig {
    pub in_channels: usize,
    pub base_channels: usize,
    pub num_blocks: usize,
    /// The checkpoint's `num_classes` (the training group's order: 2 for hflip, 4 for rot90).
    pub num_classes: usize,
    pub output: SmallCnnOutput,
}

impl Default for SmallCnnConfig {
    fn default() -> Self {
        SmallCnnConfig {
            in_channels: 3,
            base_channels: 64,
            num_blocks: 4,
            num_classes: 4,
            output: SmallCnnOutput::Logits,
        }
    }
}

impl SmallCnnConfig {
    /// Output channels of each block: base, 2 base, 4 base, 4 base, ...
    pub fn block_channels(&self) -> Vec<usize> {
        let mut c = self.base_channels;
        (0..self.num_blocks)
            .map(|_| {
                let this = c;
                c = (c * 2).min(self.base_channels * 4);
                this
            })
            .collect()
    }

    pub fn validate(&self) -> Result<()> {
        if self.in_channels == 0 || self.base_channels == 0 || self.num_classes == 0 {
            return Err(NnError::Config(
                "in_channels, base_channels and num_classes must be positive".into(),
            ));
        }
        if self.num_blocks == 0 || self.num_blocks > 16 {
            return Err(NnError::Config(format!(
                "num_blocks = {} must be in 1..=16",
                self.num_blocks
            )));
        }
        Ok(())
    }

    /// The tensors of the reference state dict (without `num_batches_tracked`).
    pub fn file_spec(&self) -> WeightSpec {
        let mut spec = Vec::new();
        let mut cin = self.in_channels;
        for (i, &c) in self.block_channels().iter().enumerate() {
            spec.push((format!("features.{}.weight", 3 * i), vec![c, cin, 3, 3]));
            spec.push((format!("features.{}.bias", 3 * i), vec![c]));
            for leaf in ["weight", "bias", "running_mean", "running_var"] {
                spec.push((format!("features.{}.{leaf}", 3 * i + 1), vec![c]));
            }
            cin = c;
        }
        spec.push(("classifier.weight".into(), vec![self.num_classes, cin]));
        spec.push(("classifier.bias".into(), vec![self.num_classes]));
        spec
    }

    /// The convolutions with their BatchNorm folded in (under the convolutions' names) and the
    /// classifier, from weights already checked against [`Self::file_spec`].
    pub(crate) fn fold(&self, w: &Weights) -> Result<Weights> {
        let get = |name: String| -> Result<Vec<f64>> {
            w.get(&name)
                .map(|(_, d)| d.iter().map(|&v| v as f64).collect())
                .ok_or_else(|| NnError::Weights(format!("missing tensor '{name}'")))
        };
        let mut out = Weights::new();
        let mut cin = self.in_channels;
        for (i, &c) in self.block_channels().iter().enumerate() {
            let (conv, bn) = (
                format!("features.{}", 3 * i),
                format!("features.{}", 3 * i + 1),
            );
            let wt = get(format!("{conv}.weight"))?;
            let b = get(format!("{conv}.bias"))?;
            let gamma = get(format!("{bn}.weight"))?;
            let beta = get(format!("{bn}.bias"))?;
            let mean = get(format!("{bn}.running_mean"))?;
            let var = get(format!("{bn}.running_var"))?;
            if let Some(v) = var
                .iter()
                .find(|&&v| v.is_nan() || v + BATCH_NORM_EPS <= 0.0)
            {
                return Err(NnError::Weights(format!(
                    "{bn}.running_var holds {v}: a variance must be >= 0"
                )));
            }
            let scale: Vec<f64> = gamma
                .iter()
                .zip(&var)
                .map(|(g, v)| g / (v + BATCH_NORM_EPS).sqrt())
                .collect();
            let per = cin * 9;
            let wf: Vec<f32> = wt
                .iter()
                .enumerate()
                .map(|(j, &v)| (v * scale[j / per]) as f32)
                .collect();
            let bf: Vec<f32> = (0..c)
                .map(|o| ((b[o] - mean[o]) * scale[o] + beta[o]) as f32)
                .collect();
            out.insert(&format!("{conv}.weight"), &[c, cin, 3, 3], wf);
            out.insert(&format!("{conv}.bias"), &[c], bf);
            cin = c;
        }
        for name in ["classifier.weight", "classifier.bias"] {
            let (s, d) = w
                .get(name)
                .ok_or_else(|| NnError::Weights(format!("missing tensor '{name}'")))?;
            out.insert(name, s, d.to_vec());
        }
        Ok(out)
    }
}

/// The graph: folded conv (stride 2, padding 1) + ReLU per block, then pool and classifier.
pub(crate) fn build(cfg: &SmallCnnConfig, net: &mut Net, x: ValueId) -> ValueId {
    let mut h = x;
    for (i, &c) in cfg.block_channels().iter().enumerate() {
        h = net.conv(&format!("features.{}", 3 * i), h, c, 3, 2, 1, None);
        h = net.relu(h);
    }
    match cfg.output {
        SmallCnnOutput::Features => h,
        SmallCnnOutput::Logits => {
            let pooled = net.global_avg_pool(h);
            net.linear("classifier", pooled, cfg.num_classes)
        }
    }
}
