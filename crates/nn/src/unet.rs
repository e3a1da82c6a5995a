//! The guided-diffusion (ADM) UNet, built from the layer ops in the order and with the
//! state-dict names of guided-diffusion's `UNetModel`, so converted published checkpoints load as
//! they are.

use equireg_gpu::{Gpu, Recorder, Tensor};

use crate::config::UNetConfig;
use crate::error::{NnError, Result};
use crate::graph::{Graph, Node, ParamId, ValueId};
use crate::planned::PlannedModel;
use crate::weights::{WeightSpec, Weights};

/// A UNet with its weights on the GPU.
pub struct UNet {
    config: UNetConfig,
    spec: WeightSpec,
    params: Vec<Tensor>,
}

/// The UNet planned for one (batch, height, width): write the input and timesteps, record the
/// forward, read the output. Running it again at the same size allocates nothing. Derefs to its
/// [`PlannedModel`] (input [N, in_channels, H, W], output [N, model_out_channels, H, W], VJP,
/// FLOPs).
pub struct UNetRun {
    model: PlannedModel,
    t: ValueId,
}

enum Resample {
    None,
    Up,
    Down,
}

/// Walks guided-diffusion's construction, declaring parameters (name, shape) and graph nodes.
struct Builder<'c> {
    cfg: &'c UNetConfig,
    spec: WeightSpec,
    g: Graph,
    n: usize,
}

impl Builder<'_> {
    fn param(&mut self, name: String, shape: &[usize]) -> ParamId {
        self.spec.push((name, shape.to_vec()));
        ParamId(self.spec.len() - 1)
    }

    fn value(&mut self, c: usize, h: usize, w: usize) -> ValueId {
        self.g.value(&[self.n, c, h, w])
    }

    fn dims(&self, v: ValueId) -> (usize, usize, usize) {
        let s = self.g.shape(v);
        (s[1], s[2], s[3])
    }

    /// conv_nd(2, cin, cout, k, padding=k/2, stride) with bias.
    fn conv(
        &mut self,
        prefix: &str,
        x: ValueId,
        cout: usize,
        k: usize,
        stride: usize,
        residual: Option<ValueId>,
    ) -> ValueId {
        let (cin, h, w) = self.dims(x);
        let wt = self.param(format!("{prefix}.weight"), &[cout, cin, k, k]);
        let b = self.param(format!("{prefix}.bias"), &[cout]);
        let pad = k / 2;
        let out = self.value(
            cout,
            (h + 2 * pad - k) / stride + 1,
            (w + 2 * pad - k) / stride + 1,
        );
        self.g.push(Node::Conv {
            x,
            w: wt,
            b: Some(b),
            residual,
            out,
            k: k as u32,
            stride: stride as u32,
            padding: pad as u32,
        });
        out
    }

    fn group_norm(
        &mut self,
        prefix: &str,
        x: ValueId,
        scale_shift: Option<ValueId>,
        silu: bool,
    ) -> ValueId {
        let (c, h, w) = self.dims(x);
        let gamma = self.param(format!("{prefix}.weight"), &[c]);
        let beta = self.param(format!("{prefix}.bias"), &[c]);
        let out = self.value(c, h, w);
        self.g.push(Node::GroupNorm {
            x,
            gamma,
            beta,
            scale_shift,
            silu,
            out,
        });
        out
    }

    fn linear(&mut self, prefix: &str, x: ValueId, fout: usize) -> ValueId {
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

    fn resample(&mut self, x: ValueId, how: &Resample) -> ValueId {
        let (c, h, w) = self.dims(x);
        match how {
            Resample::None => x,
            Resample::Up => {
                let out = self.value(c, 2 * h, 2 * w);
                self.g.push(Node::Upsample { x, out });
                out
            }
            Resample::Down => {
                let out = self.value(c, h / 2, w / 2);
                self.g.push(Node::AvgPool { x, out });
                out
            }
        }
    }

    /// guided-diffusion ResBlock; `semb` is SiLU(emb), shared by all blocks (emb_layers starts
    /// with that SiLU).
    fn res_block(
        &mut self,
        p: &str,
        x: ValueId,
        semb: ValueId,
        cout: usize,
        how: Resample,
    ) -> ValueId {
        let cin = self.dims(x).0;
        let h = self.group_norm(&format!("{p}.in_layers.0"), x, None, true);
        let h = self.resample(h, &how);
        let xs = self.resample(x, &how);
        let h = self.conv(&format!("{p}.in_layers.2"), h, cout, 3, 1, None);
        let ss = self.cfg.use_scale_shift_norm;
        let emb_out = self.linear(
            &format!("{p}.emb_layers.1"),
            semb,
            if ss { 2 * cout } else { cout },
        );
        let h = if ss {
            self.group_norm(&format!("{p}.out_layers.0"), h, Some(emb_out), true)
        } else {
            let (c, hh, ww) = self.dims(h);
            let hb = self.value(c, hh, ww);
            self.g.push(Node::AddChannelBias {
                x: h,
                bias: emb_out,
                out: hb,
            });
            self.group_norm(&format!("{p}.out_layers.0"), hb, None, true)
        };
        let skip = if cout == cin {
            xs
        } else {
            self.conv(&format!("{p}.skip_connection"), xs, cout, 1, 1, None)
        };
        self.conv(&format!("{p}.out_layers.3"), h, cout, 3, 1, Some(skip))
    }

    /// guided-diffusion AttentionBlock (legacy QKV order), residual fused into proj_out.
    fn attention(&mut self, p: &str, x: ValueId, heads: usize) -> ValueId {
        let (c, h, w) = self.dims(x);
        let hn = self.group_norm(&format!("{p}.norm"), x, None, false);
        let qkv = self.conv1d(&format!("{p}.qkv"), hn, 3 * c, None);
        let a = self.value(c, h, w);
        self.g.push(Node::Attention {
            qkv,
            heads: heads as u32,
            out: a,
        });
        self.conv1d(&format!("{p}.proj_out"), a, c, Some(x))
    }

    /// conv_nd(1, cin, cout, 1): weights (cout, cin, 1), run as a 1x1 conv2d.
    fn conv1d(
        &mut self,
        prefix: &str,
        x: ValueId,
        cout: usize,
        residual: Option<ValueId>,
    ) -> ValueId {
        let (cin, h, w) = self.dims(x);
        let wt = self.param(format!("{prefix}.weight"), &[cout, cin, 1]);
        let b = self.param(format!("{prefix}.bias"), &[cout]);
        let out = self.value(cout, h, w);
        self.g.push(Node::Conv {
            x,
            w: wt,
            b: Some(b),
            residual,
            out,
            k: 1,
            stride: 1,
            padding: 0,
        });
        out
    }

    fn downsample(&mut self, p: &str, x: ValueId, semb: ValueId) -> ValueId {
        let c = self.dims(x).0;
        if self.cfg.resblock_updown {
            self.res_block(&format!("{p}.0"), x, semb, c, Resample::Down)
        } else if self.cfg.conv_resample {
            self.conv(&format!("{p}.0.op"), x, c, 3, 2, None)
        } else {
            self.resample(x, &Resample::Down)
        }
    }

    fn upsample(&mut self, p: &str, x: ValueId, semb: ValueId) -> ValueId {
        let c = self.dims(x).0;
        if self.cfg.resblock_updown {
            self.res_block(p, x, semb, c, Resample::Up)
        } else {
            let u = self.resample(x, &Resample::Up);
            if self.cfg.conv_resample {
                self.conv(&format!("{p}.conv"), u, c, 3, 1, None)
            } else {
                u
            }
        }
    }

    /// The whole network: UNetModel.__init__ and forward, interleaved.
    fn build(&mut self, x: ValueId, t: ValueId) -> ValueId {
        let cfg = self.cfg;
        let mc = cfg.model_channels;
        let attn_ds = cfg.attention_ds();

        let temb = self.g.value(&[self.n, mc]);
        self.g.push(Node::TimestepEmbedding { t, out: temb });
        let e = self.linear("time_embed.0", temb, 4 * mc);
        let es = self.g.value(&[self.n, 4 * mc]);
        self.g.push(Node::Silu { x: e, out: es });
        let emb = self.linear("time_embed.2", es, 4 * mc);
        let semb = self.g.value(&[self.n, 4 * mc]);
        self.g.push(Node::Silu { x: emb, out: semb });

        let mut h = self.conv("input_blocks.0.0", x, cfg.channel_mult[0] * mc, 3, 1, None);
        let mut hs = vec![h];
        let mut block = 1;
        let mut ds = 1;
        for (level, &mult) in cfg.channel_mult.iter().enumerate() {
            for _ in 0..cfg.num_res_blocks {
                let p = format!("input_blocks.{block}");
                h = self.res_block(&format!("{p}.0"), h, semb, mult * mc, Resample::None);
                if attn_ds.contains(&ds) {
                    let heads = cfg.heads(mult * mc, false);
                    h = self.attention(&format!("{p}.1"), h, heads);
                }
                hs.push(h);
                block += 1;
            }
            if level != cfg.channel_mult.len() - 1 {
                h = self.downsample(&format!("input_blocks.{block}"), h, semb);
                hs.push(h);
                block += 1;
                ds *= 2;
            }
        }

        let c = self.dims(h).0;
        h = self.res_block("middle_block.0", h, semb, c, Resample::None);
        h = self.attention("middle_block.1", h, cfg.heads(c, false));
        h = self.res_block("middle_block.2", h, semb, c, Resample::None);

        let mut block = 0;
        for (level, &mult) in cfg.channel_mult.iter().enumerate().rev() {
            for i in 0..=cfg.num_res_blocks {
                let skip = hs.pop().expect("one skip per output block");
                let (ch, hh, ww) = self.dims(h);
                let cat = self.value(ch + self.dims(skip).0, hh, ww);
                self.g.push(Node::Concat {
                    a: h,
                    b: skip,
                    out: cat,
                });
                let p = format!("output_blocks.{block}");
                h = self.res_block(&format!("{p}.0"), cat, semb, mult * mc, Resample::None);
                let mut layer = 1;
                if attn_ds.contains(&ds) {
                    h = self.attention(&format!("{p}.1"), h, cfg.heads(mult * mc, true));
                    layer += 1;
                }
                if level > 0 && i == cfg.num_res_blocks {
                    h = self.upsample(&format!("{p}.{layer}"), h, semb);
                    ds /= 2;
                }
                block += 1;
            }
        }

        let h = self.group_norm("out.0", h, None, true);
        self.conv("out.2", h, cfg.model_out_channels(), 3, 1, None)
    }
}

struct Built {
    spec: WeightSpec,
    graph: Graph,
    x: ValueId,
    t: ValueId,
    out: ValueId,
    forward_nodes: usize,
    vjp: Option<(ValueId, ValueId)>,
}

fn build(cfg: &UNetConfig, n: usize, h: usize, w: usize, with_vjp: bool) -> Result<Built> {
    let mut b = Builder {
        cfg,
        spec: Vec::new(),
        g: Graph::default(),
        n,
    };
    let x = b.value(cfg.in_channels, h, w);
    let t = b.g.value(&[n]);
    let out = b.build(x, t);
    b.g.keep(x);
    b.g.keep(t);
    b.g.keep(out);
    let forward_nodes = b.g.nodes().len();
    let vjp = if with_vjp {
        Some(b.g.append_vjp(x, out)?)
    } else {
        None
    };
    Ok(Built {
        spec: b.spec,
        graph: b.g,
        x,
        t,
        out,
        forward_nodes,
        vjp,
    })
}

impl UNet {
    /// The parameters a config needs, in construction order, with PyTorch names and shapes.
    pub fn weight_spec(config: &UNetConfig) -> Result<WeightSpec> {
        config.validate()?;
        let f = config.downsampling_factor();
        Ok(build(config, 1, f, f, false)?.spec)
    }

    /// Checks the weights strictly against the config and uploads them.
    pub fn new(gpu: &Gpu, config: &UNetConfig, weights: &Weights) -> Result<UNet> {
        let spec = Self::weight_spec(config)?;
        weights.check(&spec)?;
        let params = spec
            .iter()
            .map(|(name, shape)| {
                let (_, data) = weights.get(name).expect("checked above");
                gpu.upload(shape, data).map_err(NnError::from)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(UNet {
            config: config.clone(),
            spec,
            params,
        })
    }

    pub fn config(&self) -> &UNetConfig {
        &self.config
    }

    pub fn parameter_count(&self) -> usize {
        self.spec
            .iter()
            .map(|(_, s)| s.iter().product::<usize>())
            .sum()
    }

    /// Plans memory for the forward of a batch of `n` images of `h` x `w`.
    pub fn plan(&self, gpu: &Gpu, n: usize, h: usize, w: usize) -> Result<UNetRun> {
        self.plan_with(gpu, n, h, w, false)
    }

    /// Plans memory for the forward and its VJP (the forward keeps what the VJP reads).
    pub fn plan_with_vjp(&self, gpu: &Gpu, n: usize, h: usize, w: usize) -> Result<UNetRun> {
        self.plan_with(gpu, n, h, w, true)
    }

    fn plan_with(
        &self,
        gpu: &Gpu,
        n: usize,
        h: usize,
        w: usize,
        with_vjp: bool,
    ) -> Result<UNetRun> {
        let f = self.config.downsampling_factor();
        if n == 0 || h == 0 || w == 0 || !h.is_multiple_of(f) || !w.is_multiple_of(f) {
            return Err(NnError::Input(format!(
                "input {n}x{h}x{w}: height and width must be positive multiples of {f}                  (the network downsamples {} times)",
                self.config.channel_mult.len() - 1
            )));
        }
        let b = build(&self.config, n, h, w, with_vjp)?;
        Ok(UNetRun {
            model: PlannedModel::new(b.graph.plan(gpu)?, b.x, b.out, b.forward_nodes, b.vjp),
            t: b.t,
        })
    }
}

impl std::ops::Deref for UNetRun {
    type Target = PlannedModel;
    fn deref(&self) -> &PlannedModel {
        &self.model
    }
}

impl UNetRun {
    /// `[N]` timesteps as f32
    pub fn timesteps(&self) -> &Tensor {
        self.model.tensor(self.t)
    }

    pub fn record_forward(&self, rec: &mut Recorder, unet: &UNet) -> Result<()> {
        self.model.record_forward_with(rec, &unet.params)
    }

    /// Records the VJP; the forward must have been recorded (in this or an earlier submit).
    pub fn record_vjp(&self, rec: &mut Recorder, unet: &UNet) -> Result<()> {
        self.model.record_vjp_with(rec, &unet.params)
    }
}
