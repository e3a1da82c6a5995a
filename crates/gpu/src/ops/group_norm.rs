//! GroupNorm with the optional scale-shift and SiLU of guided-diffusion's ResBlocks, fused into
//! one dispatch (one workgroup per sample and group).

use bytemuck::{Pod, Zeroable};

use super::{expect_disjoint, expect_f32, expect_shape, to_u32};
use crate::error::{GpuError, Result};
use crate::kernels::{Bind, Kernel};
use crate::recorder::Recorder;
use crate::tensor::Tensor;

/// Invocations per workgroup; a power of two (the shader reduces with a tree).
const WG: u32 = 256;

#[derive(Clone, Copy, Debug)]
pub struct GroupNormParams {
    pub groups: u32,
    pub eps: f32,
    /// Apply y * sigmoid(y) after the normalisation (and the scale-shift, if any).
    pub silu: bool,
}

impl Default for GroupNormParams {
    /// guided-diffusion's GroupNorm32: 32 groups, eps 1e-5, no SiLU.
    fn default() -> Self {
        GroupNormParams {
            groups: 32,
            eps: 1e-5,
            silu: false,
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    group_len: u32,
    plane: u32,
    cpg: u32,
    groups: u32,
    eps: f32,
    silu: u32,
    total: u32,
    _pad: u32,
}

/// out = GroupNorm(x) * gamma[c] + beta[c], then `* (1 + scale[n, c]) + shift[n, c]` when
/// `scale_shift` ([N, 2C]: scale in the first C columns, shift in the last C) is given, then
/// SiLU when `p.silu`. x is [N, C, ...] (e.g. [N, C, H, W] or [N, C, T]); statistics are over the
/// C / groups channels of a group and all trailing positions, with the biased variance.
pub fn group_norm(
    rec: &mut Recorder,
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    scale_shift: Option<&Tensor>,
    out: &Tensor,
    p: GroupNormParams,
) -> Result<()> {
    let op = "group_norm";
    let shape = x.shape();
    if shape.len() < 2 {
        return Err(GpuError::shape(
            op,
            format!("x must be [N, C, ...], got shape {shape:?}"),
        ));
    }
    let (n, c) = (shape[0], shape[1]);
    let plane: usize = shape[2..].iter().product();
    if p.groups == 0 || !c.is_multiple_of(p.groups as usize) {
        return Err(GpuError::shape(
            op,
            format!("{c} channels are not divisible into {} groups", p.groups),
        ));
    }
    if !(p.eps >= 0.0 && p.eps.is_finite()) {
        return Err(GpuError::shape(op, format!("eps {} must be >= 0", p.eps)));
    }
    expect_f32(op, "x", x)?;
    expect_f32(op, "gamma", gamma)?;
    expect_f32(op, "beta", beta)?;
    expect_f32(op, "out", out)?;
    expect_shape(op, "gamma", gamma, &[c])?;
    expect_shape(op, "beta", beta, &[c])?;
    expect_shape(op, "out", out, shape)?;
    if let Some(ss) = scale_shift {
        expect_f32(op, "scale_shift", ss)?;
        expect_shape(op, "scale_shift", ss, &[n, 2 * c])?;
        expect_disjoint(op, out, &[x, gamma, beta, ss])?;
    } else {
        expect_disjoint(op, out, &[x, gamma, beta])?;
    }
    to_u32(op, "element count", x.numel())?;
    let cpg = c / p.groups as usize;
    let total = n * p.groups as usize;
    if plane == 0 || total == 0 {
        return Ok(());
    }
    let params = Params {
        group_len: to_u32(op, "group size", cpg * plane)?,
        plane: to_u32(op, "plane size", plane)?,
        cpg: cpg as u32,
        groups: p.groups,
        eps: p.eps,
        silu: p.silu as u32,
        total: to_u32(op, "N * groups", total)?,
        _pad: 0,
    };
    let groups = rec.gpu().grid(params.total);
    let consts = [("WG", WG as f64)];
    let pb = bytemuck::bytes_of(&params);
    match scale_shift {
        None => rec.dispatch(
            &Kernel::new("group_norm", "normalize").with(&consts),
            &[
                Bind::Params(pb),
                Bind::Tensor(x),
                Bind::Tensor(gamma),
                Bind::Tensor(beta),
                Bind::Tensor(out),
            ],
            groups,
        ),
        Some(ss) => rec.dispatch(
            &Kernel::new("group_norm", "normalize_ss").with(&consts),
            &[
                Bind::Params(pb),
                Bind::Tensor(x),
                Bind::Tensor(gamma),
                Bind::Tensor(beta),
                Bind::Tensor(out),
                Bind::Tensor(ss),
            ],
            groups,
        ),
    }
}
