//! The Darcy-flow PDE residual of a joint field `[N, 2, H, W]` (coefficient, solution) and its
//! gradient, for the residual penalty of PDE guidance (`shaders/pde_residual.wgsl` states the
//! formulas; [`crate::reference::pde_residual`] is the CPU twin).

use bytemuck::{Pod, Zeroable};

use super::{expect_disjoint, expect_f32, expect_rank, expect_shape, to_u32};
use crate::error::{GpuError, Result};
use crate::kernels::{Bind, Kernel};
use crate::recorder::Recorder;
use crate::tensor::Tensor;

const WG: u32 = 256;

/// The residual's settings: the affine map from the field's range to physical units per
/// channel, the grid spacing, the cropped border, the weight and the loss.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DarcyResidualParams {
    /// Physical a = `a_mean + a_scale * x[:, 0]`.
    pub a_mean: f32,
    pub a_scale: f32,
    /// Physical u = `u_mean + u_scale * x[:, 1]`.
    pub u_mean: f32,
    pub u_scale: f32,
    /// Grid spacing (1 / (S - 1) on the unit square's S vertices).
    pub spacing: f32,
    /// Border pixels left out of the loss on every side (FunDPS: 2).
    pub crop: usize,
    pub weight: f32,
    /// Huber threshold; 0 for the squared loss.
    pub delta: f32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    n: u32,
    h: u32,
    w: u32,
    crop: u32,
    count: f32,
    inv2h: f32,
    ma: f32,
    sa: f32,
    mu: f32,
    su: f32,
    weight: f32,
    delta: f32,
}

fn params(op: &'static str, x: &Tensor, p: &DarcyResidualParams) -> Result<Params> {
    expect_rank(op, "x", x, 4)?;
    expect_f32(op, "x", x)?;
    let s = x.shape();
    if s[1] != 2 {
        return Err(GpuError::shape(
            op,
            format!("x must be a joint field [N, 2, H, W], got {s:?}"),
        ));
    }
    let (h, w) = (s[2], s[3]);
    if h <= 2 * p.crop || w <= 2 * p.crop {
        return Err(GpuError::shape(
            op,
            format!("a crop of {} leaves no interior of a {h}x{w} grid", p.crop),
        ));
    }
    let values = [
        p.a_mean, p.a_scale, p.u_mean, p.u_scale, p.spacing, p.weight, p.delta,
    ];
    if values.iter().any(|v| !v.is_finite()) || p.spacing <= 0.0 || p.delta < 0.0 {
        return Err(GpuError::shape(
            op,
            format!("settings must be finite, spacing > 0 and delta >= 0: {p:?}"),
        ));
    }
    let count = (h - 2 * p.crop) * (w - 2 * p.crop);
    Ok(Params {
        n: to_u32(op, "batch", s[0])?,
        h: to_u32(op, "height", h)?,
        w: to_u32(op, "width", w)?,
        crop: to_u32(op, "crop", p.crop)?,
        count: count as f32,
        inv2h: 0.5 / p.spacing,
        ma: p.a_mean,
        sa: p.a_scale,
        mu: p.u_mean,
        su: p.u_scale,
        weight: p.weight,
        delta: p.delta,
    })
}

fn dispatch(
    rec: &mut Recorder,
    entry: &'static str,
    p: &Params,
    tensors: &[&Tensor],
) -> Result<()> {
    let mut binds = vec![Bind::Params(bytemuck::bytes_of(p))];
    binds.extend(tensors.iter().map(|t| Bind::Tensor(t)));
    let pixels = p.n * p.h * p.w;
    rec.dispatch(
        &Kernel::new("pde_residual", entry).with(&[("WG", WG as f64)]),
        &binds,
        rec.gpu().grid(pixels.div_ceil(WG)),
    )
}

/// `r [N, H, W]`: the residual (0 on the cropped border), and `g [N, H, W]`: dL/dr.
pub fn darcy_residual(
    rec: &mut Recorder,
    x: &Tensor,
    p: &DarcyResidualParams,
    r: &Tensor,
    g: &Tensor,
) -> Result<()> {
    let op = "darcy_residual";
    let q = params(op, x, p)?;
    let s = x.shape();
    let plane = [s[0], s[2], s[3]];
    for (name, t) in [("r", r), ("g", g)] {
        expect_f32(op, name, t)?;
        expect_shape(op, name, t, &plane)?;
    }
    expect_disjoint(op, r, &[x, g])?;
    expect_disjoint(op, g, &[x])?;
    dispatch(rec, "darcy_residual", &q, &[x, r, g])
}

/// `dx += dL/dx` from `g` (what [`darcy_residual`] wrote), with `s [N, 2, H, W]` as scratch.
pub fn darcy_residual_grad(
    rec: &mut Recorder,
    x: &Tensor,
    p: &DarcyResidualParams,
    g: &Tensor,
    s: &Tensor,
    dx: &Tensor,
) -> Result<()> {
    let op = "darcy_residual_grad";
    let q = params(op, x, p)?;
    let shape = x.shape();
    expect_f32(op, "g", g)?;
    expect_shape(op, "g", g, &[shape[0], shape[2], shape[3]])?;
    for (name, t) in [("s", s), ("dx", dx)] {
        expect_f32(op, name, t)?;
        expect_shape(op, name, t, shape)?;
    }
    expect_disjoint(op, s, &[g, x, dx])?;
    expect_disjoint(op, dx, &[x, g])?;
    dispatch(rec, "darcy_adjoint", &q, &[g, s])?;
    dispatch(rec, "darcy_grad", &q, &[x, s, dx])
}
