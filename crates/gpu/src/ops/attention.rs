//! Multi-head self-attention over packed qkv, as guided-diffusion's QKVAttentionLegacy: one
//! flash-style dispatch (online softmax, no T x T matrix in memory). Its VJP with respect to qkv
//! is three flash-attention-2 style dispatches (attention_vjp.wgsl).

use bytemuck::{Pod, Zeroable};

use super::{expect_disjoint, expect_f32, expect_rank, expect_shape, to_u32};
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

/// Checks qkv [N, 3C, T] against `heads` and the [N, C, T] tensor `other` (the forward's
/// output or the VJP's incoming gradient); returns (N, T, channels per head).
fn check_qkv(
    op: &'static str,
    qkv: &Tensor,
    heads: u32,
    what: &str,
    other: &Tensor,
) -> Result<(usize, usize, usize)> {
    expect_rank(op, "qkv", qkv, 3)?;
    expect_rank(op, what, other, 3)?;
    expect_f32(op, "qkv", qkv)?;
    expect_f32(op, what, other)?;
    let [n, c3, t] = [qkv.shape()[0], qkv.shape()[1], qkv.shape()[2]];
    if heads == 0 || !c3.is_multiple_of(3 * heads as usize) {
        return Err(GpuError::shape(
            op,
            format!("qkv has {c3} channels, not a multiple of 3 * {heads} heads"),
        ));
    }
    let c = c3 / 3;
    if other.shape() != [n, c, t] {
        return Err(GpuError::shape(
            op,
            format!(
                "{what} has shape {:?}, expected {:?} for qkv {:?}",
                other.shape(),
                [n, c, t],
                qkv.shape()
            ),
        ));
    }
    Ok((n, t, c / heads as usize))
}

/// out[n, h*ch + c, t] = sum_s softmax_s(w)[t, s] * v[c, s] with
/// w[t, s] = sum_c (q[c, t] * scale) * (k[c, s] * scale), scale = ch^(-1/4), where for head h
/// of sample n the channels [3*h*ch, 3*h*ch + ch) of qkv are q, the next ch are k and the next
/// ch are v. qkv is [N, 3*C, T], out is [N, C, T], ch = C / heads <= [`MAX_HEAD_CHANNELS`].
pub fn attention_legacy(rec: &mut Recorder, qkv: &Tensor, out: &Tensor, heads: u32) -> Result<()> {
    let op = "attention_legacy";
    let (n, t, ch) = check_qkv(op, qkv, heads, "out", out)?;
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

/// Rows per workgroup of the VJP kernels (`WG` in attention_vjp.wgsl).
const VJP_WG: u32 = 64;

/// The VJP of [`attention_legacy`] with respect to qkv: dqkv = (d out / d qkv)^T dout, for the q,
/// k and v channels alike (including the ch^(-1/4) scales on q and k). qkv and dqkv are
/// [N, 3*C, T], dout is [N, C, T], laid out as for the forward; every element of dqkv is written.
/// Needs 2 <= ch = C / heads <= [`MAX_HEAD_CHANNELS`]: between its dispatches the op keeps two
/// per-query statistics in the first two q rows of each head of dqkv (so it allocates nothing).
/// Deterministic (fixed-order sums).
pub fn attention_legacy_vjp(
    rec: &mut Recorder,
    qkv: &Tensor,
    dout: &Tensor,
    dqkv: &Tensor,
    heads: u32,
) -> Result<()> {
    let op = "attention_legacy_vjp";
    let (n, t, ch) = check_qkv(op, qkv, heads, "dout", dout)?;
    expect_f32(op, "dqkv", dqkv)?;
    expect_shape(op, "dqkv", dqkv, qkv.shape())?;
    if !(2..=MAX_HEAD_CHANNELS).contains(&ch) {
        return Err(GpuError::shape(
            op,
            format!("{ch} channels per head, the VJP needs 2 to {MAX_HEAD_CHANNELS}"),
        ));
    }
    expect_disjoint(op, dqkv, &[qkv, dout])?;
    to_u32(op, "qkv element count", qkv.numel())?;
    // Two tiles of vec4 rows plus the tile's lse and delta; 16 rows when 32 do not fit.
    let limit = rec.gpu().caps().limits.max_compute_workgroup_storage_size as u64;
    let shared = |bk: u64| 2 * (ch as u64).div_ceil(4) * bk * 16 + 2 * bk * 4;
    let Some(bk) = [32u64, 16].into_iter().find(|&bk| shared(bk) <= limit) else {
        return Err(GpuError::OverLimit {
            what: format!("{op} tiles for {ch} channels per head"),
            needed: shared(16),
            limit_name: "max_compute_workgroup_storage_size",
            limit,
        });
    };
    if qkv.numel() == 0 {
        return Ok(());
    }
    let params = Params {
        tokens: to_u32(op, "tokens", t)?,
        heads,
        scale: (1.0 / (ch as f64).sqrt().sqrt()) as f32,
        _pad: 0,
    };
    let groups = [
        params.tokens.div_ceil(VJP_WG),
        heads,
        to_u32(op, "batch", n)?,
    ];
    let consts = [("D", ch as f64), ("BK", bk as f64)];
    let binds = [
        Bind::Params(bytemuck::bytes_of(&params)),
        Bind::Tensor(qkv),
        Bind::Tensor(dout),
        Bind::Tensor(dqkv),
    ];
    // In this order: dkv reads the statistics, dq reads and then overwrites them.
    for entry in ["stats", "dkv", "dq"] {
        rec.dispatch(
            &Kernel::new("attention_vjp", entry).with(&consts),
            &binds,
            groups,
        )?;
    }
    Ok(())
}
