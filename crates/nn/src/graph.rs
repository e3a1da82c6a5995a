//! A straight-line program of layer ops over value ids. Models build one per (batch, height,
//! width); the live interval of every value follows from its producer and last consumer, which is
//! exactly what the memory planner needs, and executing it records every op into one Recorder.
//! `append_vjp` appends the reverse-mode ops (input gradients) to the same program.

use equireg_gpu::ops::pad::Pad2d;
use equireg_gpu::ops::{
    attention, concat, conv, conv_vjp, elementwise, group_norm, matmul, pad, relu, resample,
    softmax, timestep_embedding,
};
use equireg_gpu::{DType, Gpu, MemoryPlan, PlannedMemory, Recorder, Tensor, TensorId};

use crate::error::Result;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ValueId(pub(crate) usize);

/// Index of a parameter tensor in the model's weight list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ParamId(pub(crate) usize);

#[derive(Clone, Debug)]
pub enum Node {
    Conv {
        x: ValueId,
        w: ParamId,
        b: Option<ParamId>,
        residual: Option<ValueId>,
        out: ValueId,
        /// Kernel side, for FLOP counts (the weight shape lives with the parameters).
        k: u32,
        stride: u32,
        padding: u32,
    },
    Linear {
        x: ValueId,
        w: ParamId,
        b: Option<ParamId>,
        out: ValueId,
    },
    GroupNorm {
        x: ValueId,
        gamma: ParamId,
        beta: ParamId,
        scale_shift: Option<ValueId>,
        silu: bool,
        out: ValueId,
    },
    Silu {
        x: ValueId,
        out: ValueId,
    },
    TimestepEmbedding {
        t: ValueId,
        out: ValueId,
    },
    /// qkv is [N, 3C, H, W] and out [N, C, H, W]; the op sees them as [N, 3C, T], [N, C, T].
    Attention {
        qkv: ValueId,
        heads: u32,
        out: ValueId,
    },
    Upsample {
        x: ValueId,
        out: ValueId,
    },
    AvgPool {
        x: ValueId,
        out: ValueId,
    },
    Concat {
        a: ValueId,
        b: ValueId,
        out: ValueId,
    },
    /// out[n, c, ...] = x[n, c, ...] + bias[n, c] (ResBlock without scale-shift norm).
    AddChannelBias {
        x: ValueId,
        bias: ValueId,
        out: ValueId,
    },

    // ---- vector-Jacobian products (input gradients; weights are frozen) ----
    /// out = d/dx of conv(x) applied to dy: a transposed convolution with the same weights.
    ConvInputGrad {
        dy: ValueId,
        w: ParamId,
        out: ValueId,
        k: u32,
        stride: u32,
        padding: u32,
    },
    /// Gradient through GroupNorm (+ scale-shift, + SiLU) with respect to x; the statistics are
    /// recomputed from the saved input.
    GroupNormGrad {
        x: ValueId,
        gamma: ParamId,
        beta: ParamId,
        scale_shift: Option<ValueId>,
        silu: bool,
        dy: ValueId,
        out: ValueId,
    },
    /// Gradient of the attention output with respect to qkv (all three parts).
    AttentionGrad {
        qkv: ValueId,
        dy: ValueId,
        heads: u32,
        out: ValueId,
    },
    UpsampleGrad {
        dy: ValueId,
        out: ValueId,
    },
    AvgPoolGrad {
        dy: ValueId,
        out: ValueId,
    },
    /// out = channels [start, start + C_out) of x (the VJP of a channel concat).
    SplitChannels {
        x: ValueId,
        start: u32,
        out: ValueId,
    },
    Add {
        a: ValueId,
        b: ValueId,
        out: ValueId,
    },

    // ---- the MPE networks (CompVis first-stage encoder, EquiReg SmallCNN) ----
    /// GroupNorm (+ SiLU) with an explicit group count and eps (CompVis' `Normalize`: 32 groups,
    /// eps 1e-6; [`Node::GroupNorm`] is guided-diffusion's, eps 1e-5).
    GroupNormEps {
        x: ValueId,
        gamma: ParamId,
        beta: ParamId,
        groups: u32,
        eps: f32,
        silu: bool,
        out: ValueId,
    },
    /// Zero padding of the spatial axes with per-side amounts.
    Pad {
        x: ValueId,
        pad: Pad2d,
        out: ValueId,
    },
    Relu {
        x: ValueId,
        out: ValueId,
    },
    /// out [N, C] = mean over the spatial axes of x [N, C, H, W].
    GlobalAvgPool {
        x: ValueId,
        out: ValueId,
    },
    /// out = op(a) op(b) per batch, op a transpose of the last two axes when asked. Operands
    /// and out are viewed as [B, rows, cols] with B = `shape[0]`, rows = `shape[1]` and cols = the
    /// product of the rest, so [N, C, H, W] values take part as [N, C, H W].
    MatMul {
        a: ValueId,
        b: ValueId,
        trans_a: bool,
        trans_b: bool,
        out: ValueId,
    },
    /// out = softmax(scale * x) along the last axis.
    Softmax {
        x: ValueId,
        scale: f32,
        out: ValueId,
    },
    GroupNormEpsGrad {
        x: ValueId,
        gamma: ParamId,
        beta: ParamId,
        groups: u32,
        eps: f32,
        silu: bool,
        dy: ValueId,
        out: ValueId,
    },
    /// The crop back to the interior.
    PadGrad {
        dy: ValueId,
        pad: Pad2d,
        out: ValueId,
    },
    /// dy where the forward input x > 0, else 0.
    ReluGrad {
        x: ValueId,
        dy: ValueId,
        out: ValueId,
    },
    GlobalAvgPoolGrad {
        dy: ValueId,
        out: ValueId,
    },
    /// From the forward output y: scale * y * (dy - <dy, y>) along the last axis.
    SoftmaxGrad {
        y: ValueId,
        dy: ValueId,
        scale: f32,
        out: ValueId,
    },
    /// out [N, in] = dy [N, out] w [out, in]: the input gradient of a linear layer.
    LinearInputGrad {
        dy: ValueId,
        w: ParamId,
        out: ValueId,
    },
}

impl Node {
    fn inputs(&self) -> Vec<ValueId> {
        match self {
            Node::Conv { x, residual, .. } => std::iter::once(*x).chain(*residual).collect(),
            Node::Linear { x, .. }
            | Node::Silu { x, .. }
            | Node::Upsample { x, .. }
            | Node::AvgPool { x, .. } => vec![*x],
            Node::GroupNorm { x, scale_shift, .. } => {
                std::iter::once(*x).chain(*scale_shift).collect()
            }
            Node::TimestepEmbedding { t, .. } => vec![*t],
            Node::Attention { qkv, .. } => vec![*qkv],
            Node::Concat { a, b, .. } => vec![*a, *b],
            Node::AddChannelBias { x, bias, .. } => vec![*x, *bias],
            Node::ConvInputGrad { dy, .. }
            | Node::UpsampleGrad { dy, .. }
            | Node::AvgPoolGrad { dy, .. } => vec![*dy],
            Node::GroupNormGrad {
                x, scale_shift, dy, ..
            } => [Some(*x), *scale_shift, Some(*dy)]
                .into_iter()
                .flatten()
                .collect(),
            Node::AttentionGrad { qkv, dy, .. } => vec![*qkv, *dy],
            Node::SplitChannels { x, .. } => vec![*x],
            Node::Add { a, b, .. } => vec![*a, *b],
            Node::GroupNormEps { x, .. }
            | Node::Pad { x, .. }
            | Node::Relu { x, .. }
            | Node::GlobalAvgPool { x, .. }
            | Node::Softmax { x, .. } => vec![*x],
            Node::MatMul { a, b, .. } => vec![*a, *b],
            Node::GroupNormEpsGrad { x, dy, .. } | Node::ReluGrad { x, dy, .. } => vec![*x, *dy],
            Node::SoftmaxGrad { y, dy, .. } => vec![*y, *dy],
            Node::PadGrad { dy, .. }
            | Node::GlobalAvgPoolGrad { dy, .. }
            | Node::LinearInputGrad { dy, .. } => vec![*dy],
        }
    }

    fn output(&self) -> ValueId {
        match self {
            Node::Conv { out, .. }
            | Node::Linear { out, .. }
            | Node::GroupNorm { out, .. }
            | Node::Silu { out, .. }
            | Node::TimestepEmbedding { out, .. }
            | Node::Attention { out, .. }
            | Node::Upsample { out, .. }
            | Node::AvgPool { out, .. }
            | Node::Concat { out, .. }
            | Node::AddChannelBias { out, .. }
            | Node::ConvInputGrad { out, .. }
            | Node::GroupNormGrad { out, .. }
            | Node::AttentionGrad { out, .. }
            | Node::UpsampleGrad { out, .. }
            | Node::AvgPoolGrad { out, .. }
            | Node::SplitChannels { out, .. }
            | Node::Add { out, .. }
            | Node::GroupNormEps { out, .. }
            | Node::Pad { out, .. }
            | Node::Relu { out, .. }
            | Node::GlobalAvgPool { out, .. }
            | Node::MatMul { out, .. }
            | Node::Softmax { out, .. }
            | Node::GroupNormEpsGrad { out, .. }
            | Node::PadGrad { out, .. }
            | Node::ReluGrad { out, .. }
            | Node::GlobalAvgPoolGrad { out, .. }
            | Node::SoftmaxGrad { out, .. }
            | Node::LinearInputGrad { out, .. } => *out,
        }
    }
}

/// How [`Node::MatMul`] sees a value: [B, rows, cols] = [`shape[0]`, `shape[1]`, product of the
/// rest] (a rank-2 value is one batch of [rows, cols]).
pub fn matmul_view(shape: &[usize]) -> [usize; 3] {
    match shape {
        [] => [1, 1, 1],
        [r] => [1, *r, 1],
        [r, c] => [1, *r, *c],
        [b, r, rest @ ..] => [*b, *r, rest.iter().product()],
    }
}

#[derive(Clone, Debug, Default)]
pub struct Graph {
    shapes: Vec<Vec<usize>>,
    nodes: Vec<Node>,
    persistent: Vec<ValueId>,
}

/// A graph with its memory: every value has a planned tensor.
pub struct PlannedGraph {
    graph: Graph,
    mem: PlannedMemory,
    ids: Vec<TensorId>,
}

impl Graph {
    pub fn value(&mut self, shape: &[usize]) -> ValueId {
        self.shapes.push(shape.to_vec());
        ValueId(self.shapes.len() - 1)
    }

    pub fn shape(&self, v: ValueId) -> &[usize] {
        &self.shapes[v.0]
    }

    pub fn push(&mut self, node: Node) {
        self.nodes.push(node);
    }

    /// Keeps a value live for the whole program (inputs, outputs, values a VJP will read).
    pub fn keep(&mut self, v: ValueId) {
        self.persistent.push(v);
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// FLOPs of the nodes in `range` (a multiply-add counts 2): convs, linears and attention.
    pub fn flops_of(&self, range: std::ops::Range<usize>) -> f64 {
        let mut f = 0.0;
        for node in &self.nodes[range] {
            f += match node {
                Node::Conv { x, out, k, .. } => {
                    let k = *k as usize;
                    2.0 * (self.shape(*x)[1] * k * k * self.shape(*out).iter().product::<usize>())
                        as f64
                }
                Node::ConvInputGrad { dy, out, k, .. } => {
                    let k = *k as usize;
                    2.0 * (self.shape(*dy)[1] * k * k * self.shape(*out).iter().product::<usize>())
                        as f64
                }
                Node::AttentionGrad { dy, .. } => {
                    // Recomputed scores and probabilities, then dV, dP, dQ, dK: about 2.5x the
                    // forward's two matmuls.
                    let s = self.shape(*dy);
                    let t = s[2] * s[3];
                    10.0 * (s[0] * s[1] * t * t) as f64
                }
                Node::Linear { x, out, .. } => {
                    2.0 * (self.shape(*x)[1] * self.shape(*out).iter().product::<usize>()) as f64
                }
                Node::Attention { out, .. } => {
                    let s = self.shape(*out);
                    let t = s[2] * s[3];
                    4.0 * (s[0] * s[1] * t * t) as f64
                }
                Node::MatMul {
                    a, trans_a, out, ..
                } => {
                    let [_, r, c] = matmul_view(self.shape(*a));
                    let k = if *trans_a { r } else { c };
                    2.0 * (k * self.shape(*out).iter().product::<usize>()) as f64
                }
                Node::LinearInputGrad { dy, out, .. } => {
                    2.0 * (self.shape(*dy)[1] * self.shape(*out).iter().product::<usize>()) as f64
                }
                _ => 0.0,
            };
        }
        f
    }

    /// Appends the vector-Jacobian product of the program: given a cotangent for `out`, the
    /// gradient with respect to `x` (weights frozen). Only values that depend on `x` get
    /// gradients; the timestep path is constant. Returns (cotangent value, gradient value).
    pub fn append_vjp(
        &mut self,
        x: ValueId,
        out: ValueId,
    ) -> crate::error::Result<(ValueId, ValueId)> {
        let forward: Vec<Node> = self.nodes.clone();
        let mut depends = vec![false; self.shapes.len()];
        depends[x.0] = true;
        for node in &forward {
            if node.inputs().iter().any(|v| depends[v.0]) {
                depends[node.output().0] = true;
            }
        }
        if !depends[out.0] {
            return Err(crate::error::NnError::Config(
                "the output does not depend on the input".into(),
            ));
        }
        let cotangent = self.value(&self.shapes[out.0].clone());
        let mut grad: Vec<Option<ValueId>> = vec![None; self.shapes.len()];
        grad[out.0] = Some(cotangent);
        for node in forward.iter().rev() {
            let Some(dy) = grad[node.output().0] else {
                continue;
            };
            let wants = |v: &ValueId| depends[v.0];
            match node {
                Node::Conv {
                    x: cx,
                    w,
                    residual,
                    k,
                    stride,
                    padding,
                    ..
                } => {
                    if wants(cx) {
                        let gx = self.value(&self.shapes[cx.0].clone());
                        self.push(Node::ConvInputGrad {
                            dy,
                            w: *w,
                            out: gx,
                            k: *k,
                            stride: *stride,
                            padding: *padding,
                        });
                        self.accumulate(&mut grad, *cx, gx);
                    }
                    if let Some(r) = residual.filter(|r| wants(r)) {
                        self.accumulate(&mut grad, r, dy);
                    }
                }
                Node::GroupNorm {
                    x: gx_in,
                    gamma,
                    beta,
                    scale_shift,
                    silu,
                    ..
                } if wants(gx_in) => {
                    let g = self.value(&self.shapes[gx_in.0].clone());
                    self.push(Node::GroupNormGrad {
                        x: *gx_in,
                        gamma: *gamma,
                        beta: *beta,
                        scale_shift: *scale_shift,
                        silu: *silu,
                        dy,
                        out: g,
                    });
                    self.accumulate(&mut grad, *gx_in, g);
                }
                Node::Attention { qkv, heads, .. } if wants(qkv) => {
                    let g = self.value(&self.shapes[qkv.0].clone());
                    self.push(Node::AttentionGrad {
                        qkv: *qkv,
                        dy,
                        heads: *heads,
                        out: g,
                    });
                    self.accumulate(&mut grad, *qkv, g);
                }
                Node::Upsample { x: ux, .. } if wants(ux) => {
                    let g = self.value(&self.shapes[ux.0].clone());
                    self.push(Node::UpsampleGrad { dy, out: g });
                    self.accumulate(&mut grad, *ux, g);
                }
                Node::AvgPool { x: px, .. } if wants(px) => {
                    let g = self.value(&self.shapes[px.0].clone());
                    self.push(Node::AvgPoolGrad { dy, out: g });
                    self.accumulate(&mut grad, *px, g);
                }
                Node::Concat { a, b, .. } => {
                    let ca = self.shapes[a.0][1] as u32;
                    for (v, start) in [(*a, 0), (*b, ca)] {
                        if wants(&v) {
                            let g = self.value(&self.shapes[v.0].clone());
                            self.push(Node::SplitChannels {
                                x: dy,
                                start,
                                out: g,
                            });
                            self.accumulate(&mut grad, v, g);
                        }
                    }
                }
                Node::AddChannelBias { x: bx, bias, .. } => {
                    if wants(bias) {
                        return Err(crate::error::NnError::Config(
                            "VJP through a bias that depends on the input is not supported".into(),
                        ));
                    }
                    if wants(bx) {
                        self.accumulate(&mut grad, *bx, dy);
                    }
                }
                Node::GroupNormEps {
                    x: gx_in,
                    gamma,
                    beta,
                    groups,
                    eps,
                    silu,
                    ..
                } if wants(gx_in) => {
                    let g = self.value(&self.shapes[gx_in.0].clone());
                    self.push(Node::GroupNormEpsGrad {
                        x: *gx_in,
                        gamma: *gamma,
                        beta: *beta,
                        groups: *groups,
                        eps: *eps,
                        silu: *silu,
                        dy,
                        out: g,
                    });
                    self.accumulate(&mut grad, *gx_in, g);
                }
                Node::Pad { x: px, pad, .. } if wants(px) => {
                    let g = self.value(&self.shapes[px.0].clone());
                    self.push(Node::PadGrad {
                        dy,
                        pad: *pad,
                        out: g,
                    });
                    self.accumulate(&mut grad, *px, g);
                }
                Node::Relu { x: rx, .. } if wants(rx) => {
                    let g = self.value(&self.shapes[rx.0].clone());
                    self.push(Node::ReluGrad { x: *rx, dy, out: g });
                    self.accumulate(&mut grad, *rx, g);
                }
                Node::GlobalAvgPool { x: px, .. } if wants(px) => {
                    let g = self.value(&self.shapes[px.0].clone());
                    self.push(Node::GlobalAvgPoolGrad { dy, out: g });
                    self.accumulate(&mut grad, *px, g);
                }
                Node::Softmax { x: sx, scale, out } if wants(sx) => {
                    let g = self.value(&self.shapes[sx.0].clone());
                    self.push(Node::SoftmaxGrad {
                        y: *out,
                        dy,
                        scale: *scale,
                        out: g,
                    });
                    self.accumulate(&mut grad, *sx, g);
                }
                Node::MatMul {
                    a,
                    b,
                    trans_a,
                    trans_b,
                    ..
                } => {
                    // out = A' B' with A' = op(a), B' = op(b): dA' = dy B'^T, dB' = A'^T dy, and
                    // a transposed operand takes the transpose of its gradient.
                    let (ta, tb) = (*trans_a, *trans_b);
                    if wants(a) {
                        let g = self.value(&self.shapes[a.0].clone());
                        self.push(if ta {
                            Node::MatMul {
                                a: *b,
                                b: dy,
                                trans_a: tb,
                                trans_b: true,
                                out: g,
                            }
                        } else {
                            Node::MatMul {
                                a: dy,
                                b: *b,
                                trans_a: false,
                                trans_b: !tb,
                                out: g,
                            }
                        });
                        self.accumulate(&mut grad, *a, g);
                    }
                    if wants(b) {
                        let g = self.value(&self.shapes[b.0].clone());
                        self.push(if tb {
                            Node::MatMul {
                                a: dy,
                                b: *a,
                                trans_a: true,
                                trans_b: ta,
                                out: g,
                            }
                        } else {
                            Node::MatMul {
                                a: *a,
                                b: dy,
                                trans_a: !ta,
                                trans_b: false,
                                out: g,
                            }
                        });
                        self.accumulate(&mut grad, *b, g);
                    }
                }
                Node::Linear { x: lx, w, .. } if wants(lx) => {
                    let g = self.value(&self.shapes[lx.0].clone());
                    self.push(Node::LinearInputGrad { dy, w: *w, out: g });
                    self.accumulate(&mut grad, *lx, g);
                }
                Node::GroupNorm { .. }
                | Node::Attention { .. }
                | Node::Upsample { .. }
                | Node::AvgPool { .. }
                | Node::GroupNormEps { .. }
                | Node::Pad { .. }
                | Node::Relu { .. }
                | Node::GlobalAvgPool { .. }
                | Node::Softmax { .. }
                | Node::Linear { .. } => {}
                other => {
                    return Err(crate::error::NnError::Config(format!(
                        "no VJP for {other:?} on the input path"
                    )));
                }
            }
        }
        let gx = grad[x.0]
            .ok_or_else(|| crate::error::NnError::Config("no gradient reached the input".into()))?;
        self.keep(cotangent);
        self.keep(gx);
        Ok((cotangent, gx))
    }

    /// grad[v] += g, as a new value (contributions are summed by an Add node).
    fn accumulate(&mut self, grad: &mut [Option<ValueId>], v: ValueId, g: ValueId) {
        grad[v.0] = Some(match grad[v.0] {
            None => g,
            Some(prev) => {
                let sum = self.value(&self.shapes[v.0].clone());
                self.push(Node::Add {
                    a: prev,
                    b: g,
                    out: sum,
                });
                sum
            }
        });
    }

    /// Plans memory from the live intervals and allocates it once.
    pub fn plan(self, gpu: &Gpu) -> Result<PlannedGraph> {
        let n = self.shapes.len();
        let mut first = vec![usize::MAX; n];
        let mut last = vec![0usize; n];
        for (i, node) in self.nodes.iter().enumerate() {
            let o = node.output().0;
            first[o] = first[o].min(i);
            last[o] = last[o].max(i);
            for v in node.inputs() {
                first[v.0] = first[v.0].min(i);
                last[v.0] = last[v.0].max(i);
            }
        }
        for v in &self.persistent {
            first[v.0] = 0;
            last[v.0] = usize::MAX;
        }
        let mut plan = MemoryPlan::new();
        let ids = (0..n)
            .map(|v| {
                let f = if first[v] == usize::MAX { 0 } else { first[v] };
                plan.request(&self.shapes[v], DType::F32, f, last[v].max(f))
            })
            .collect();
        let mem = plan.allocate(gpu)?;
        Ok(PlannedGraph {
            graph: self,
            mem,
            ids,
        })
    }
}

impl PlannedGraph {
    pub fn tensor(&self, v: ValueId) -> &Tensor {
        self.mem.get(self.ids[v.0])
    }

    pub fn planned_bytes(&self) -> u64 {
        self.mem.total_bytes()
    }

    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// Records every node, in order, into `rec`.
    pub fn record(&self, rec: &mut Recorder, params: &[Tensor]) -> Result<()> {
        self.record_range(rec, params, 0..self.graph.nodes.len())
    }

    /// Records the nodes of `range`, in order, into `rec`.
    pub fn record_range(
        &self,
        rec: &mut Recorder,
        params: &[Tensor],
        range: std::ops::Range<usize>,
    ) -> Result<()> {
        let t = |v: &ValueId| self.tensor(*v);
        let p = |id: &ParamId| &params[id.0];
        for node in &self.graph.nodes[range] {
            match node {
                Node::Conv {
                    x,
                    w,
                    b,
                    residual,
                    out,
                    stride,
                    padding,
                    ..
                } => {
                    let wt = p(w);
                    // Conv1d weights (out, in, 1) of the attention blocks are 1x1 convs.
                    let wt = if wt.shape().len() == 3 {
                        &wt.reshape(&[wt.shape()[0], wt.shape()[1], 1, 1])?
                    } else {
                        wt
                    };
                    let cp = conv::Conv2dParams {
                        stride: *stride,
                        padding: *padding,
                    };
                    conv::conv2d(
                        rec,
                        t(x),
                        wt,
                        b.as_ref().map(p),
                        residual.as_ref().map(t),
                        t(out),
                        cp,
                    )?;
                }
                Node::Linear { x, w, b, out } => {
                    matmul::linear(rec, t(x), p(w), b.as_ref().map(p), t(out))?
                }
                Node::GroupNorm {
                    x,
                    gamma,
                    beta,
                    scale_shift,
                    silu,
                    out,
                } => {
                    let gp = group_norm::GroupNormParams {
                        silu: *silu,
                        ..Default::default()
                    };
                    group_norm::group_norm(
                        rec,
                        t(x),
                        p(gamma),
                        p(beta),
                        scale_shift.as_ref().map(t),
                        t(out),
                        gp,
                    )?;
                }
                Node::Silu { x, out } => elementwise::silu(rec, t(x), t(out))?,
                Node::TimestepEmbedding { t: ts, out } => {
                    timestep_embedding::timestep_embedding(rec, t(ts), t(out))?
                }
                Node::Attention { qkv, heads, out } => {
                    let q = t(qkv);
                    let s = q.shape();
                    let q3 = q.reshape(&[s[0], s[1], s[2] * s[3]])?;
                    let o = t(out);
                    let so = o.shape();
                    let o3 = o.reshape(&[so[0], so[1], so[2] * so[3]])?;
                    attention::attention_legacy(rec, &q3, &o3, *heads)?;
                }
                Node::Upsample { x, out } => resample::upsample_nearest2x(rec, t(x), t(out))?,
                Node::AvgPool { x, out } => resample::avg_pool2x(rec, t(x), t(out))?,
                Node::Concat { a, b, out } => concat::concat_channels(rec, t(a), t(b), t(out))?,
                Node::AddChannelBias { x, bias, out } => {
                    elementwise::add_channel_bias(rec, t(x), t(bias), t(out))?
                }
                Node::ConvInputGrad {
                    dy,
                    w,
                    out,
                    stride,
                    padding,
                    ..
                } => {
                    let wt = p(w);
                    let wt = if wt.shape().len() == 3 {
                        &wt.reshape(&[wt.shape()[0], wt.shape()[1], 1, 1])?
                    } else {
                        wt
                    };
                    let cp = conv::Conv2dParams {
                        stride: *stride,
                        padding: *padding,
                    };
                    conv_vjp::conv2d_input_grad(rec, t(dy), wt, t(out), cp)?;
                }
                Node::GroupNormGrad {
                    x,
                    gamma,
                    beta,
                    scale_shift,
                    silu,
                    dy,
                    out,
                } => {
                    let gp = group_norm::GroupNormParams {
                        silu: *silu,
                        ..Default::default()
                    };
                    group_norm::group_norm_vjp(
                        rec,
                        t(x),
                        p(gamma),
                        p(beta),
                        scale_shift.as_ref().map(t),
                        t(dy),
                        t(out),
                        gp,
                    )?;
                }
                Node::AttentionGrad {
                    qkv,
                    dy,
                    heads,
                    out,
                } => {
                    let as3 = |v: &Tensor| {
                        let s = v.shape();
                        v.reshape(&[s[0], s[1], s[2] * s[3]])
                    };
                    attention::attention_legacy_vjp(
                        rec,
                        &as3(t(qkv))?,
                        &as3(t(dy))?,
                        &as3(t(out))?,
                        *heads,
                    )?;
                }
                Node::UpsampleGrad { dy, out } => {
                    resample::upsample_nearest2x_vjp(rec, t(dy), t(out))?
                }
                Node::AvgPoolGrad { dy, out } => resample::avg_pool2x_vjp(rec, t(dy), t(out))?,
                Node::SplitChannels { x, start, out } => {
                    concat::split_channels(rec, t(x), *start, t(out))?
                }
                Node::Add { a, b, out } => elementwise::add(rec, t(a), t(b), t(out))?,
                Node::GroupNormEps {
                    x,
                    gamma,
                    beta,
                    groups,
                    eps,
                    silu,
                    out,
                } => {
                    let gp = group_norm::GroupNormParams {
                        groups: *groups,
                        eps: *eps,
                        silu: *silu,
                        width: None,
                    };
                    group_norm::group_norm(rec, t(x), p(gamma), p(beta), None, t(out), gp)?;
                }
                Node::GroupNormEpsGrad {
                    x,
                    gamma,
                    beta,
                    groups,
                    eps,
                    silu,
                    dy,
                    out,
                } => {
                    let gp = group_norm::GroupNormParams {
                        groups: *groups,
                        eps: *eps,
                        silu: *silu,
                        width: None,
                    };
                    group_norm::group_norm_vjp(
                        rec,
                        t(x),
                        p(gamma),
                        p(beta),
                        None,
                        t(dy),
                        t(out),
                        gp,
                    )?;
                }
                Node::Pad { x, pad, out } => pad::pad2d(rec, t(x), t(out), *pad)?,
                Node::PadGrad { dy, pad, out } => pad::pad2d_vjp(rec, t(dy), t(out), *pad)?,
                Node::Relu { x, out } => relu::relu(rec, t(x), t(out))?,
                Node::ReluGrad { x, dy, out } => relu::relu_vjp(rec, t(x), t(dy), t(out))?,
                Node::GlobalAvgPool { x, out } => relu::global_avg_pool(rec, t(x), t(out))?,
                Node::GlobalAvgPoolGrad { dy, out } => {
                    relu::global_avg_pool_vjp(rec, t(dy), t(out))?
                }
                Node::MatMul {
                    a,
                    b,
                    trans_a,
                    trans_b,
                    out,
                } => {
                    let v = |x: &Tensor| x.reshape(&matmul_view(x.shape()));
                    matmul::matmul(rec, &v(t(a))?, &v(t(b))?, &v(t(out))?, *trans_a, *trans_b)?;
                }
                Node::Softmax { x, scale, out } => {
                    softmax::softmax_rows(rec, t(x), t(out), *scale)?
                }
                Node::SoftmaxGrad { y, dy, scale, out } => {
                    softmax::softmax_rows_vjp(rec, t(y), t(dy), t(out), *scale)?
                }
                Node::LinearInputGrad { dy, w, out } => {
                    matmul::matmul(rec, t(dy), p(w), t(out), false, false)?
                }
            }
        }
        Ok(())
    }
}
