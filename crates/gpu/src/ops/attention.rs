//! Multi-head self-attention over packed qkv, as guided-diffusion's QKVAttentionLegacy: one
//! flash-style dispatch (online softmax, no T x T matrix in memory).

use bytemuck::{Pod, Zeroable};

use super::{expect_disjoint, expect_f32, expect_rank, to_u32};
use crate::error::{GpuError, Result};
use crate::kernels::{Bind, Kernel};
use crate::recorder::Recorder;
use crate::tensor::Tensor;

/// Queries per workgroup and keys per tile; must equal `BQ` and `BK` in attention.wgsl.
const BQ: u32 = 64;
const BK: u64 = 32;
/// Largest head size the kernel's register arrays hold: `DMAX4 * 4` in attention.wgsl.
pub const MAX_HEAD_CHANNELS: usize = 64;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    tokens: u32,
    heads: u32,
    scale: f32,
    _pad: u32,
}

/// out[n, h*ch + c, t] = sum_s softmax_s(w)[t, s] * v[c, s] with
/// w[t, s] = sum_c (q[c, t] * scale) * (k[c, s] * scale), scale = ch^(-1/4), where for head h
/// of sample n the channels [3*h*ch, 3*h*ch + ch) of qkv are q, the next ch are k and the next
/// ch are v. qkv is [N, 3*C, T], out is [N, C, T], ch = C / heads <= [`MAX_HEAD_CHANNELS`].
pub fn attention_legacy(rec: &mut Recorder, qkv: &Tensor, out: &Tensor, heads: u32) -> Result<()> {
    let op = "attention_legacy";
    expect_rank(op, "qkv", qkv, 3)?;
    expect_rank(op, "out", out, 3)?;
    expect_f32(op, "qkv", qkv)?;
    expect_f32(op, "out", out)?;
    let [n, c3, t] = [qkv.shape()[0], qkv.shape()[1], qkv.shape()[2]];
    if heads == 0 || !c3.is_multiple_of(3 * heads as usize) {
        return Err(GpuError::shape(
            op,
            format!("qkv has {c3} channels, not a multiple of 3 * {heads} heads"),
        ));
    }
    let c = c3 / 3;
    let ch = c / heads as usize;
    if out.shape() != [n, c, t] {
        return Err(GpuError::shape(
            op,
            format!(
                "out has shape {:?}, expected {:?} for qkv {:?}",
                out.shape(),
                [n, c, t],
                qkv.shape()
            ),
        ));
    }
    if ch > MAX_HEAD_CHANNELS {
        return Err(GpuError::shape(
            op,
            format!("{ch} channels per head, the kernel holds at most {MAX_HEAD_CHANNELS}"),
        ));
    }
    expect_disjoint(op, out, &[qkv])?;
    to_u32(op, "qkv element count", qkv.numel())?;
    let limits = &rec.gpu().caps().limits;
    // The k and v tiles as vec4 over channels, plus the per-query max and sum of the merge.
    let shared = 2 * (ch as u64).div_ceil(4) * BK * 16 + 2 * BQ as u64 * 4;
    if shared > limits.max_compute_workgroup_storage_size as u64 {
        return Err(GpuError::OverLimit {
            what: format!("{op} key/value tiles for {ch} channels per head"),
            needed: shared,
            limit_name: "max_compute_workgroup_storage_size",
            limit: limits.max_compute_workgroup_storage_size as u64,
        });
    }
    if qkv.numel() == 0 {
        return Ok(());
    }
    let params = Params {
        tokens: to_u32(op, "tokens", t)?,
        heads,
        scale: (1.0 / (ch as f64).sqrt().sqrt()) as f32,
        _pad: 0,
    };
    let groups = [params.tokens.div_ceil(BQ), heads, to_u32(op, "batch", n)?];
    rec.dispatch(
        &Kernel::new("attention", "attention_legacy").with(&[("D", ch as f64)]),
        &[
            Bind::Params(bytemuck::bytes_of(&params)),
            Bind::Tensor(qkv),
            Bind::Tensor(out),
        ],
        groups,
    )
}
