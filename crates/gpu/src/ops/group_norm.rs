//! GroupNorm with the optional scale-shift and SiLU of guided-diffusion's ResBlocks, fused into
//! one dispatch (one workgroup per sample and group), and its VJP with respect to x.
//!
//! Planes whose size is a multiple of 4 run the shader's vec4 entry points; the workgroup width
//! is the adapter's (see [`GroupNormParams::width`]).

use bytemuck::{Pod, Zeroable};

use super::{expect_disjoint, expect_f32, expect_shape, reduction_width, to_u32};
use crate::error::{GpuError, Result};
use crate::kernels::{Bind, Kernel};
use crate::recorder::Recorder;
use crate::tensor::Tensor;

#[derive(Clone, Copy, Debug)]
pub struct GroupNormParams {
    pub groups: u32,
    pub eps: f32,
    /// Apply y * sigmoid(y) after the normalisation (and the scale-shift, if any).
    pub silu: bool,
    /// Invocations per workgroup, a power of two up to 256; None: the adapter's choice (256 on
    /// GPUs, 16 on CPU adapters unless the group is very large; see `reduction_width`). The
    /// reduction order, and so the last bits of the result, depend on it; tests set it to
    /// check every width on one adapter.
    pub width: Option<u32>,
}

impl Default for GroupNormParams {
    /// guided-diffusion's GroupNorm32: 32 groups, eps 1e-5, no SiLU.
    fn default() -> Self {
        GroupNormParams {
            groups: 32,
            eps: 1e-5,
            silu: false,
            width: None,
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

/// Dispatches one call: the entry point of `entries` (the scalar one and its vec4 twin, used
/// when the plane size is a multiple of 4) at the adapter's workgroup width (or `width`), one
/// workgroup per (sample, group).
fn dispatch(
    rec: &mut Recorder,
    op: &'static str,
    entries: (&'static str, &'static str),
    params: &Params,
    width: Option<u32>,
    binds: &[Bind],
) -> Result<()> {
    let vec4 = params.plane.is_multiple_of(4);
    let units = if vec4 {
        params.group_len / 4
    } else {
        params.group_len
    };
    // The VJP reads the group four times (mean, variance, the two gradient means, dx).
    let wg = reduction_width(op, rec.gpu().caps(), units as usize, 4, width)?;
    let entry = if vec4 { entries.1 } else { entries.0 };
    let groups = rec.gpu().grid(params.total);
    let mut all = vec![Bind::Params(bytemuck::bytes_of(params))];
    all.extend_from_slice(binds);
    rec.dispatch(
        &Kernel::new("group_norm", entry).with(&[("WG", wg as f64)]),
        &all,
        groups,
    )
}

/// Checks the shapes shared by the forward and the VJP and returns the kernel parameters, or
/// None when there is nothing to compute. `out` is the tensor the kernel writes (out or dx);
/// `extra` are further inputs of that shape (dy).
#[allow(clippy::too_many_arguments)]
fn prepare(
    op: &'static str,
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    scale_shift: Option<&Tensor>,
    extra: Option<(&str, &Tensor)>,
    out: (&str, &Tensor),
    p: GroupNormParams,
) -> Result<Option<Params>> {
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
    let (out_name, out) = out;
    expect_f32(op, "x", x)?;
    expect_f32(op, "gamma", gamma)?;
    expect_f32(op, "beta", beta)?;
    expect_f32(op, out_name, out)?;
    expect_shape(op, "gamma", gamma, &[c])?;
    expect_shape(op, "beta", beta, &[c])?;
    let mut inputs = vec![x, gamma, beta];
    if let Some((name, t)) = extra {
        expect_f32(op, name, t)?;
        expect_shape(op, name, t, shape)?;
        inputs.push(t);
    }
    expect_shape(op, out_name, out, shape)?;
    if let Some(ss) = scale_shift {
        expect_f32(op, "scale_shift", ss)?;
        expect_shape(op, "scale_shift", ss, &[n, 2 * c])?;
        inputs.push(ss);
    }
    expect_disjoint(op, out, &inputs)?;
    to_u32(op, "element count", x.numel())?;
    let cpg = c / p.groups as usize;
    let total = n * p.groups as usize;
    if plane == 0 || total == 0 {
        return Ok(None);
    }
    Ok(Some(Params {
        group_len: to_u32(op, "group size", cpg * plane)?,
        plane: to_u32(op, "plane size", plane)?,
        cpg: cpg as u32,
        groups: p.groups,
        eps: p.eps,
        silu: p.silu as u32,
        total: to_u32(op, "N * groups", total)?,
        _pad: 0,
    }))
}

/// `out = GroupNorm(x) * gamma[c] + beta[c]`, then `* (1 + scale[n, c]) + shift[n, c]` when
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
    let Some(params) = prepare(op, x, gamma, beta, scale_shift, None, ("out", out), p)? else {
        return Ok(());
    };
    let mut binds = vec![
        Bind::Tensor(x),
        Bind::Tensor(gamma),
        Bind::Tensor(beta),
        Bind::Tensor(out),
    ];
    let entries = match scale_shift {
        None => ("normalize", "normalize4"),
        Some(ss) => {
            binds.push(Bind::Tensor(ss));
            ("normalize_ss", "normalize_ss4")
        }
    };
    dispatch(rec, op, entries, &params, p.width, &binds)
}

/// The VJP of [`group_norm`] with respect to x: dx = (d out / d x)^T dy, with gamma, beta and
/// scale_shift held constant (no gradients for them). The statistics and the pre-SiLU values
/// are recomputed from x, so nothing from the forward needs to be kept. x, dy and dx are
/// [N, C, ...]; the other arguments are those of the forward. One dispatch, deterministic.
#[allow(clippy::too_many_arguments)]
pub fn group_norm_vjp(
    rec: &mut Recorder,
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    scale_shift: Option<&Tensor>,
    dy: &Tensor,
    dx: &Tensor,
    p: GroupNormParams,
) -> Result<()> {
    let op = "group_norm_vjp";
    let Some(params) = prepare(
        op,
        x,
        gamma,
        beta,
        scale_shift,
        Some(("dy", dy)),
        ("dx", dx),
        p,
    )?
    else {
        return Ok(());
    };
    let mut binds = vec![
        Bind::Tensor(x),
        Bind::Tensor(gamma),
        Bind::Tensor(beta),
        Bind::Tensor(dx),
        Bind::Tensor(dy),
    ];
    let entries = match scale_shift {
        None => ("normalize_vjp", "normalize_vjp4"),
        Some(ss) => {
            binds.push(Bind::Tensor(ss));
            ("normalize_ss_vjp", "normalize_ss_vjp4")
        }
    };
    dispatch(rec, op, entries, &params, p.width, &binds)
}
