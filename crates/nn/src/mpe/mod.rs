//! Manifold-preferential (MPE) functions for EquiReg: networks f whose equivariance error
//! `||rho(g) f(x) - f(g x)||` is small on the data manifold, penalised during posterior sampling
//! with the gradient flowing back through f. Each runs forward and its input VJP (weights frozen)
//! on the GPU, planned for one (batch, height, width) like [`crate::UNetRun`].
//!
//! The two networks of the EquiReg release (Anima-Lab/Equireg, `equireg/mpe/models.py`):
//! - [`LdmEncoderConfig`]: CompVis latent-diffusion's first-stage `Encoder`, then `quant_conv`
//!   and `post_quant_conv` with no quantization in between (EquiReg's `_FirstStageEncoder`), on
//!   images in [-1, 1]. The VQ-f4 FFHQ autoencoder is the preset `vq-f4`.
//! - [`SmallCnnConfig`]: EquiReg's `SmallCNN` (4 x [conv3x3 stride 2, BatchNorm, ReLU], global
//!   average pool, linear), its BatchNorm folded into the convolutions at load time.
//!
//! A JSON file picks one, tagged by `kind`:
//!
//! ```json
//! {"kind": "ldm_encoder", "ch": 128, "ch_mult": [1, 2, 4], "num_res_blocks": 2,
//!  "attn_resolutions": [], "z_channels": 3, "embed_dim": 3, "in_channels": 3,
//!  "resolution": 256, "double_z": false}
//! {"kind": "small_cnn", "in_channels": 3, "base_channels": 64, "num_blocks": 4,
//!  "num_classes": 2, "output": "logits"}
//! ```
//!
//! Weights are safetensors with the reference state-dict names (`tools/convert_mpe.py` writes
//! them from a CompVis `.ckpt` or an EquiReg SmallCNN `.pt`); loading is strict.

pub mod ldm;
pub mod small_cnn;

use std::path::Path;

use equireg_gpu::ops::pad::Pad2d;
use equireg_gpu::{Gpu, Recorder, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{NnError, Result};
use crate::graph::{Graph, Node, ParamId, ValueId};
use crate::planned::PlannedModel;
use crate::weights::{WeightSpec, Weights};

pub use ldm::LdmEncoderConfig;
pub use small_cnn::{SmallCnnConfig, SmallCnnOutput};

/// Which MPE network, with its configuration. Serialised with a `kind` tag.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MpeConfig {
    /// CompVis first-stage encoder -> quant_conv -> post_quant_conv.
    LdmEncoder(LdmEncoderConfig),
    /// EquiReg's SmallCNN.
    SmallCnn(SmallCnnConfig),
}

/// Names accepted by [`MpeConfig::preset`].
pub const MPE_PRESETS: &[&str] = &["vq-f4", "ldm-tiny", "small-cnn", "small-cnn-features"];

impl MpeConfig {
    /// `vq-f4` (the CompVis FFHQ VQ-f4 autoencoder's encoder), `ldm-tiny` (a small encoder with
    /// every block type, for tests), `small-cnn` (EquiReg's SmallCNN with its defaults, logits
    /// out), `small-cnn-features` (the same, its last feature map out).
    pub fn preset(name: &str) -> Result<Self> {
        match name {
            "vq-f4" => Ok(MpeConfig::LdmEncoder(LdmEncoderConfig::vq_f4())),
            "ldm-tiny" => Ok(MpeConfig::LdmEncoder(LdmEncoderConfig::tiny())),
            "small-cnn" => Ok(MpeConfig::SmallCnn(SmallCnnConfig::default())),
            "small-cnn-features" => Ok(MpeConfig::SmallCnn(SmallCnnConfig {
                output: SmallCnnOutput::Features,
                ..SmallCnnConfig::default()
            })),
            _ => Err(NnError::Config(format!(
                "unknown MPE preset '{name}' (known: {})",
                MPE_PRESETS.join(", ")
            ))),
        }
    }

    /// Parses and validates a JSON config (unknown fields are errors).
    pub fn from_json(text: &str) -> Result<Self> {
        let c: MpeConfig = serde_json::from_str(text)
            .map_err(|e| NnError::Config(format!("MPE config JSON: {e}")))?;
        c.validate()?;
        Ok(c)
    }

    /// Reads a JSON config file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| NnError::Config(format!("cannot read {}: {e}", path.display())))?;
        Self::from_json(&text).map_err(|e| NnError::Config(format!("{}: {e}", path.display())))
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("the config serialises")
    }

    pub fn validate(&self) -> Result<()> {
        match self {
            MpeConfig::LdmEncoder(c) => c.validate(),
            MpeConfig::SmallCnn(c) => c.validate(),
        }
    }

    /// The `kind` tag: `ldm_encoder` or `small_cnn`.
    pub fn kind(&self) -> &'static str {
        match self {
            MpeConfig::LdmEncoder(_) => "ldm_encoder",
            MpeConfig::SmallCnn(_) => "small_cnn",
        }
    }

    pub fn in_channels(&self) -> usize {
        match self {
            MpeConfig::LdmEncoder(c) => c.in_channels,
            MpeConfig::SmallCnn(c) => c.in_channels,
        }
    }

    /// The output shape for an input [n, in_channels, h, w], or why that input is refused.
    pub fn output_shape(&self, n: usize, h: usize, w: usize) -> Result<Vec<usize>> {
        self.validate()?;
        check_input(self, n, h, w)?;
        let b = build(self, n, h, w, false)?;
        Ok(b.graph.shape(b.out).to_vec())
    }
}

fn check_input(config: &MpeConfig, n: usize, h: usize, w: usize) -> Result<()> {
    if n == 0 || h == 0 || w == 0 {
        return Err(NnError::Input(format!(
            "input {n}x{h}x{w}: batch, height and width must be positive"
        )));
    }
    if let MpeConfig::LdmEncoder(c) = config {
        let f = c.downsampling_factor();
        if h < f || w < f {
            return Err(NnError::Input(format!(
                "input {h}x{w} is too small: the encoder halves it {} times, so each side \
                 must be at least {f}",
                c.ch_mult.len() - 1
            )));
        }
    }
    Ok(())
}

/// Declares parameters (name, shape) and graph nodes while walking a network's construction.
pub(crate) struct Net {
    pub(crate) spec: WeightSpec,
    pub(crate) g: Graph,
    pub(crate) n: usize,
}

impl Net {
    pub(crate) fn param(&mut self, name: String, shape: &[usize]) -> ParamId {
        self.spec.push((name, shape.to_vec()));
        ParamId(self.spec.len() - 1)
    }

    pub(crate) fn value(&mut self, c: usize, h: usize, w: usize) -> ValueId {
        self.g.value(&[self.n, c, h, w])
    }

    pub(crate) fn dims(&self, v: ValueId) -> (usize, usize, usize) {
        let s = self.g.shape(v);
        (s[1], s[2], s[3])
    }

    /// nn.Conv2d(cin, cout, k, stride, padding) with bias; `residual` is added to the output.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn conv(
        &mut self,
        prefix: &str,
        x: ValueId,
        cout: usize,
        k: usize,
        stride: usize,
        padding: usize,
        residual: Option<ValueId>,
    ) -> ValueId {
        let (cin, h, w) = self.dims(x);
        let wt = self.param(format!("{prefix}.weight"), &[cout, cin, k, k]);
        let b = self.param(format!("{prefix}.bias"), &[cout]);
        let out = self.value(
            cout,
            (h + 2 * padding - k) / stride + 1,
            (w + 2 * padding - k) / stride + 1,
        );
        self.g.push(Node::Conv {
            x,
            w: wt,
            b: Some(b),
            residual,
            out,
            k: k as u32,
            stride: stride as u32,
            padding: padding as u32,
        });
        out
    }

    pub(crate) fn group_norm(
        &mut self,
        prefix: &str,
        x: ValueId,
        groups: u32,
        eps: f32,
        silu: bool,
    ) -> ValueId {
        let (c, h, w) = self.dims(x);
        let gamma = self.param(format!("{prefix}.weight"), &[c]);
        let beta = self.param(format!("{prefix}.bias"), &[c]);
        let out = self.value(c, h, w);
        self.g.push(Node::GroupNormEps {
            x,
            gamma,
            beta,
            groups,
            eps,
            silu,
            out,
        });
        out
    }

    pub(crate) fn pad(&mut self, x: ValueId, pad: Pad2d) -> ValueId {
        let (c, h, w) = self.dims(x);
        let out = self.value(
            c,
            h + (pad.top + pad.bottom) as usize,
            w + (pad.left + pad.right) as usize,
        );
        self.g.push(Node::Pad { x, pad, out });
        out
    }

    pub(crate) fn relu(&mut self, x: ValueId) -> ValueId {
        let shape = self.g.shape(x).to_vec();
        let out = self.g.value(&shape);
        self.g.push(Node::Relu { x, out });
        out
    }

    pub(crate) fn global_avg_pool(&mut self, x: ValueId) -> ValueId {
        let c = self.dims(x).0;
        let out = self.g.value(&[self.n, c]);
        self.g.push(Node::GlobalAvgPool { x, out });
        out
    }

    pub(crate) fn linear(&mut self, prefix: &str, x: ValueId, fout: usize) -> ValueId {
        let fin = self.g.shape(x)[1];
        let w = self.param(format!("{prefix}.weight"), &[fout, fin]);
        let b = self.param(format!("{prefix}.bias"), &[fout]);
        let out = self.g.value(&[self.n, fout]);
        self.g.push(Node::Linear {
            x,
            w,
            b: Some(b),
            out,
        });
        out
    }

    pub(crate) fn matmul(
        &mut self,
        a: ValueId,
        b: ValueId,
        trans_a: bool,
        trans_b: bool,
        out_shape: &[usize],
    ) -> ValueId {
        let out = self.g.value(out_shape);
        self.g.push(Node::MatMul {
            a,
            b,
            trans_a,
            trans_b,
            out,
        });
        out
    }

    pub(crate) fn softmax(&mut self, x: ValueId, scale: f32) -> ValueId {
        let shape = self.g.shape(x).to_vec();
        let out = self.g.value(&shape);
        self.g.push(Node::Softmax { x, scale, out });
        out
    }
}

struct Built {
    /// The graph's parameters, in ParamId order (SmallCNN: the folded convolutions).
    spec: WeightSpec,
    graph: Graph,
    x: ValueId,
    out: ValueId,
    forward_nodes: usize,
    vjp: Option<(ValueId, ValueId)>,
}

fn build(config: &MpeConfig, n: usize, h: usize, w: usize, with_vjp: bool) -> Result<Built> {
    let mut net = Net {
        spec: Vec::new(),
        g: Graph::default(),
        n,
    };
    let x = net.value(config.in_channels(), h, w);
    let out = match config {
        MpeConfig::LdmEncoder(c) => ldm::build(c, &mut net, x),
        MpeConfig::SmallCnn(c) => small_cnn::build(c, &mut net, x),
    };
    net.g.keep(x);
    net.g.keep(out);
    let forward_nodes = net.g.nodes().len();
    let vjp = if with_vjp {
        Some(net.g.append_vjp(x, out)?)
    } else {
        None
    };
    Ok(Built {
        spec: net.spec,
        graph: net.g,
        x,
        out,
        forward_nodes,
        vjp,
    })
}

/// An MPE network with its weights on the GPU.
pub struct Mpe {
    config: MpeConfig,
    spec: WeightSpec,
    params: Vec<Tensor>,
}

/// An MPE network planned for one (batch, height, width): write the input, record the forward,
/// read the output; with the VJP, write the cotangent, record the VJP, read the input gradient.
/// Running it again at the same size allocates nothing. Derefs to its [`PlannedModel`]. Output:
/// LDM encoder [N, z_channels, H / f, W / f]; SmallCNN [N, num_classes] (logits) or
/// [N, C, H', W'] (features).
pub struct MpeRun {
    model: PlannedModel,
}

impl Mpe {
    /// The tensors a weights file must hold for `config` (names and shapes of the reference
    /// state dict), in construction order. SmallCNN's include the BatchNorm parameters and
    /// running statistics, which are folded into the convolutions on load.
    /// The synthetic weights that tools/make_mpe_fixtures.py also builds: tools/synthetic.py's
    /// tensors, with BatchNorm running_var = 1 + 0.5 v (in f64 from the f32 draw) so that it is
    /// positive. For parity fixtures and benchmarks; they compute nothing meaningful.
    pub fn synthetic_weights(config: &MpeConfig, seed: u64) -> Result<Weights> {
        let spec = Mpe::weight_spec(config)?;
        let mut w = crate::synthetic::weights(seed, &spec);
        for (name, shape) in &spec {
            if name.ends_with("running_var") {
                let v = crate::synthetic::tensor(seed, name, shape)
                    .iter()
                    .map(|&v| (1.0 + 0.5 * v as f64) as f32)
                    .collect();
                w.insert(name, shape, v);
            }
        }
        Ok(w)
    }

    pub fn weight_spec(config: &MpeConfig) -> Result<WeightSpec> {
        config.validate()?;
        Ok(match config {
            MpeConfig::LdmEncoder(c) => {
                let f = c.downsampling_factor();
                build(config, 1, f, f, false)?.spec
            }
            MpeConfig::SmallCnn(c) => c.file_spec(),
        })
    }

    /// Checks the weights strictly against the config (one error lists every missing, unexpected
    /// and mis-shaped tensor), prepares them (SmallCNN: BatchNorm folding) and uploads them.
    pub fn new(gpu: &Gpu, config: &MpeConfig, weights: &Weights) -> Result<Mpe> {
        let spec = Self::weight_spec(config)?;
        weights.check(&spec)?;
        let folded;
        let source = match config {
            MpeConfig::LdmEncoder(_) => weights,
            MpeConfig::SmallCnn(c) => {
                folded = c.fold(weights)?;
                &folded
            }
        };
        let side = match config {
            MpeConfig::LdmEncoder(c) => c.downsampling_factor(),
            MpeConfig::SmallCnn(_) => 1,
        };
        let graph_spec = build(config, 1, side, side, false)?.spec;
        let params = graph_spec
            .iter()
            .map(|(name, shape)| {
                let (s, data) = source
                    .get(name)
                    .ok_or_else(|| NnError::Weights(format!("internal: no tensor '{name}'")))?;
                if s != shape.as_slice() {
                    return Err(NnError::Weights(format!(
                        "internal: tensor '{name}' is {s:?}, the graph needs {shape:?}"
                    )));
                }
                gpu.upload(shape, data).map_err(NnError::from)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Mpe {
            config: config.clone(),
            spec,
            params,
        })
    }

    /// Loads a JSON config (see the module docs) and a safetensors weights file.
    pub fn load(gpu: &Gpu, config: &Path, weights: &Path) -> Result<Mpe> {
        let cfg = MpeConfig::load(config)?;
        let w = Weights::load(weights)?;
        Self::new(gpu, &cfg, &w)
    }

    pub fn config(&self) -> &MpeConfig {
        &self.config
    }

    /// Elements of the weights file (SmallCNN: before folding, running statistics included).
    pub fn parameter_count(&self) -> usize {
        self.spec
            .iter()
            .map(|(_, s)| s.iter().product::<usize>())
            .sum()
    }

    /// Plans memory for the forward of a batch of `n` images of `h` x `w`.
    pub fn plan(&self, gpu: &Gpu, n: usize, h: usize, w: usize) -> Result<MpeRun> {
        self.plan_with(gpu, n, h, w, false)
    }

    /// Plans memory for the forward and its VJP (the forward keeps what the VJP reads).
    pub fn plan_with_vjp(&self, gpu: &Gpu, n: usize, h: usize, w: usize) -> Result<MpeRun> {
        self.plan_with(gpu, n, h, w, true)
    }

    fn plan_with(&self, gpu: &Gpu, n: usize, h: usize, w: usize, with_vjp: bool) -> Result<MpeRun> {
        check_input(&self.config, n, h, w)?;
        let b = build(&self.config, n, h, w, with_vjp)?;
        Ok(MpeRun {
            model: PlannedModel::new(b.graph.plan(gpu)?, b.x, b.out, b.forward_nodes, b.vjp),
        })
    }
}

impl std::ops::Deref for MpeRun {
    type Target = PlannedModel;
    fn deref(&self) -> &PlannedModel {
        &self.model
    }
}

impl MpeRun {
    pub fn record_forward(&self, rec: &mut Recorder, mpe: &Mpe) -> Result<()> {
        self.model.record_forward_with(rec, &mpe.params)
    }

    /// Records the VJP; the forward must have been recorded (in this or an earlier submit) with
    /// the input it is the gradient at.
    pub fn record_vjp(&self, rec: &mut Recorder, mpe: &Mpe) -> Result<()> {
        self.model.record_vjp_with(rec, &mpe.params)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid_and_round_trip_through_json() {
        for p in MPE_PRESETS {
            let c = MpeConfig::preset(p).unwrap();
            c.validate().unwrap();
            assert_eq!(MpeConfig::from_json(&c.to_json()).unwrap(), c, "{p}");
        }
        assert!(MpeConfig::preset("vq-f8").is_err());
    }

    #[test]
    fn json_is_tagged_and_strict() {
        let c = MpeConfig::from_json(
            r#"{"kind": "small_cnn", "num_classes": 2, "output": "features"}"#,
        )
        .unwrap();
        let MpeConfig::SmallCnn(s) = &c else {
            panic!("{c:?}")
        };
        assert_eq!((s.num_classes, s.base_channels), (2, 64));
        assert_eq!(s.output, SmallCnnOutput::Features);
        let e = MpeConfig::from_json(r#"{"kind": "small_cnn", "num_clases": 2}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("num_clases"), "{e}");
        let e = MpeConfig::from_json(r#"{"kind": "resnet50"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("resnet50"), "{e}");
        let vq = r#"{"kind": "ldm_encoder", "ch": 128, "ch_mult": [1, 2, 4],
            "num_res_blocks": 2, "attn_resolutions": [], "z_channels": 3, "embed_dim": 3,
            "in_channels": 3, "resolution": 256, "double_z": false}"#;
        assert_eq!(
            MpeConfig::from_json(vq).unwrap(),
            MpeConfig::preset("vq-f4").unwrap()
        );
        let e = MpeConfig::from_json(&vq.replace("\"ch\"", "\"chan\""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("chan"), "{e}");
    }

    #[test]
    fn output_shapes() {
        let vq = MpeConfig::preset("vq-f4").unwrap();
        assert_eq!(vq.output_shape(2, 64, 48).unwrap(), vec![2, 3, 16, 12]);
        // The asymmetric pad + stride-2 conv floors odd sizes, as in PyTorch.
        assert_eq!(vq.output_shape(1, 33, 35).unwrap(), vec![1, 3, 8, 8]);
        assert!(vq.output_shape(1, 3, 64).is_err());
        let cnn = MpeConfig::preset("small-cnn").unwrap();
        assert_eq!(cnn.output_shape(2, 32, 32).unwrap(), vec![2, 4]);
        let feats = MpeConfig::preset("small-cnn-features").unwrap();
        assert_eq!(feats.output_shape(1, 33, 64).unwrap(), vec![1, 256, 3, 4]);
    }
}
