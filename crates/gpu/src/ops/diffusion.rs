//! Reverse-diffusion step kernels (shaders/diffusion.wgsl): Tweedie's x0 and the sampler's
//! proposal, the DPS loss cotangent and its pull-back through Tweedie's formula, the guided
//! update, and the GPU-resident step counter.
//!
//! Per-step numbers come from a coefficient table `[K, ROW]` on the GPU indexed by a `[1]` u32
//! step counter, also on the GPU (see the shader's header for the row layout), so a reverse loop
//! records identical dispatches every step and uploads nothing.

use bytemuck::{Pod, Zeroable};

use super::{expect_disjoint, expect_f32, expect_rank, expect_shape, to_u32};
use crate::error::{GpuError, Result};
use crate::kernels::{Bind, Kernel};
use crate::recorder::Recorder;
use crate::tensor::{DType, Tensor};

const WG: u32 = 256;

/// Floats per row of the coefficient table.
pub const TABLE_ROW: usize = 8;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
struct Params {
    total: u32,
    hw: u32,
    channels: u32,
    model_channels: u32,
    steps: u32,
    learned: u32,
    clip: u32,
    batch: u32,
    zeta: f32,
    _pad: [u32; 3],
}

/// The tensors that every table-driven kernel reads: the coefficient table and the counter.
#[derive(Clone, Copy)]
pub struct StepState<'a> {
    /// `[K, TABLE_ROW]` f32.
    pub table: &'a Tensor,
    /// `[1]` u32: the index of the current row.
    pub step: &'a Tensor,
}

impl StepState<'_> {
    fn check(&self, op: &'static str) -> Result<u32> {
        expect_rank(op, "table", self.table, 2)?;
        expect_f32(op, "table", self.table)?;
        let s = self.table.shape();
        if s[1] != TABLE_ROW || s[0] == 0 {
            return Err(GpuError::shape(
                op,
                format!("table must be [K > 0, {TABLE_ROW}], got {s:?}"),
            ));
        }
        if self.step.dtype() != DType::U32 || self.step.numel() != 1 {
            return Err(GpuError::shape(
                op,
                format!(
                    "step must be one u32, got {:?} {:?}",
                    self.step.dtype(),
                    self.step.shape()
                ),
            ));
        }
        to_u32(op, "table rows", s[0])
    }
}

/// Shape facts shared by the image-space kernels: x `[N, C, H, W]` and, when given, the model
/// output `[N, MC, H, W]` with MC = C or 2C.
fn image_params(op: &'static str, x: &Tensor, model: Option<&Tensor>) -> Result<Params> {
    expect_rank(op, "x", x, 4)?;
    expect_f32(op, "x", x)?;
    let s = x.shape();
    let mut model_channels = s[1];
    if let Some(m) = model {
        expect_rank(op, "model output", m, 4)?;
        expect_f32(op, "model output", m)?;
        let ms = m.shape();
        if ms[0] != s[0] || ms[2..] != s[2..] || (ms[1] != s[1] && ms[1] != 2 * s[1]) {
            return Err(GpuError::shape(
                op,
                format!(
                    "model output {ms:?} must be [N, C or 2C, H, W] for x {s:?} (epsilon, then \
                     the variance channels of learn_sigma models)"
                ),
            ));
        }
        model_channels = ms[1];
    }
    Ok(Params {
        total: to_u32(op, "element count", x.numel())?,
        hw: to_u32(op, "H * W", s[2] * s[3])?,
        channels: s[1] as u32,
        model_channels: model_channels as u32,
        batch: s[0] as u32,
        ..Params::default()
    })
}

fn dispatch(rec: &mut Recorder, entry: &'static str, p: Params, binds: &[Bind]) -> Result<()> {
    let groups = rec.gpu().grid(p.total.max(1).div_ceil(WG));
    rec.dispatch(
        &Kernel::new("diffusion", entry).with(&[("WG", WG as f64)]),
        &[&[Bind::Params(bytemuck::bytes_of(&p))], binds].concat(),
        groups,
    )
}

/// `t[n] = table[step][0]` for every sample: the model timestep of the current step, `t` `[N]`.
pub fn set_timesteps(rec: &mut Recorder, state: StepState, t: &Tensor) -> Result<()> {
    let op = "set_timesteps";
    let steps = state.check(op)?;
    expect_rank(op, "t", t, 1)?;
    expect_f32(op, "t", t)?;
    let p = Params {
        total: to_u32(op, "batch", t.numel())?,
        batch: t.numel() as u32,
        steps,
        ..Params::default()
    };
    dispatch(
        rec,
        op,
        p,
        &[
            Bind::Tensor(state.table),
            Bind::Tensor(state.step),
            Bind::Tensor(t),
        ],
    )
}

/// Options of [`posterior_step`] and [`x0_cotangent`].
#[derive(Clone, Copy, Debug)]
pub struct TweedieOptions {
    /// Mix the log-variance bounds with the model's variance channels (learned range).
    pub learned_variance: bool,
    /// Clamp x0 to [-1, 1].
    pub clip: bool,
}

/// `x0 = clip(c1 x - c2 eps)` and
/// `x_prev = a x0 + b x + gate exp(0.5 (frac max + (1 - frac) min)) noise` for the current row.
#[allow(clippy::too_many_arguments)]
pub fn posterior_step(
    rec: &mut Recorder,
    state: StepState,
    x: &Tensor,
    model_out: &Tensor,
    noise: &Tensor,
    x0: &Tensor,
    x_prev: &Tensor,
    opts: TweedieOptions,
) -> Result<()> {
    let op = "posterior_step";
    let steps = state.check(op)?;
    let mut p = image_params(op, x, Some(model_out))?;
    if opts.learned_variance && p.model_channels != 2 * p.channels {
        return Err(GpuError::shape(
            op,
            format!(
                "a learned variance needs 2C model channels, got {:?} for x {:?}",
                model_out.shape(),
                x.shape()
            ),
        ));
    }
    for (name, t) in [("noise", noise), ("x0", x0), ("x_prev", x_prev)] {
        expect_shape(op, name, t, x.shape())?;
        expect_f32(op, name, t)?;
    }
    expect_disjoint(op, x0, &[x, model_out, noise, x_prev])?;
    expect_disjoint(op, x_prev, &[x, model_out, noise])?;
    p.steps = steps;
    p.learned = opts.learned_variance as u32;
    p.clip = opts.clip as u32;
    dispatch(
        rec,
        op,
        p,
        &[
            Bind::Tensor(state.table),
            Bind::Tensor(state.step),
            Bind::Tensor(x),
            Bind::Tensor(model_out),
            Bind::Tensor(noise),
            Bind::Tensor(x0),
            Bind::Tensor(x_prev),
        ],
    )
}

/// `out = -r / ||r_n||` per sample `n` (rows of `residual` `[N, ...]`; 0 where the norm is 0):
/// the cotangent of the loss `sum_n ||r_n||` at `A(x0)` when `r = y - A(x0)`. `norm` is `[N]`.
pub fn loss_cotangent(
    rec: &mut Recorder,
    residual: &Tensor,
    norm: &Tensor,
    out: &Tensor,
) -> Result<()> {
    let op = "loss_cotangent";
    expect_f32(op, "residual", residual)?;
    expect_f32(op, "norm", norm)?;
    expect_f32(op, "out", out)?;
    expect_shape(op, "out", out, residual.shape())?;
    let n = residual.shape().first().copied().unwrap_or(0);
    if n == 0 || norm.numel() != n {
        return Err(GpuError::shape(
            op,
            format!(
                "norm {:?} must hold one value per sample of residual {:?}",
                norm.shape(),
                residual.shape()
            ),
        ));
    }
    expect_disjoint(op, out, &[residual, norm])?;
    let p = Params {
        total: to_u32(op, "element count", residual.numel())?,
        hw: to_u32(op, "row length", residual.numel() / n)?,
        ..Params::default()
    };
    dispatch(
        rec,
        op,
        p,
        &[
            Bind::Tensor(residual),
            Bind::Tensor(norm),
            Bind::Tensor(out),
        ],
    )
}

/// Pulls `dx0` back through `x0 = clip(c1 x - c2 eps)`: `direct = c1 m dx0` (the part of the
/// gradient with respect to x that skips the network) and `d_model_out` = `-c2 m dx0` on the
/// epsilon channels, 0 on the variance channels (m = 1 inside the clip range, inclusive).
#[allow(clippy::too_many_arguments)]
pub fn x0_cotangent(
    rec: &mut Recorder,
    state: StepState,
    x: &Tensor,
    model_out: &Tensor,
    dx0: &Tensor,
    d_model_out: &Tensor,
    direct: &Tensor,
    clip: bool,
) -> Result<()> {
    let op = "x0_cotangent";
    let steps = state.check(op)?;
    let mut p = image_params(op, x, Some(model_out))?;
    expect_shape(op, "dx0", dx0, x.shape())?;
    expect_shape(op, "direct", direct, x.shape())?;
    expect_shape(op, "d_model_out", d_model_out, model_out.shape())?;
    expect_f32(op, "dx0", dx0)?;
    expect_f32(op, "direct", direct)?;
    expect_f32(op, "d_model_out", d_model_out)?;
    expect_disjoint(op, direct, &[x, model_out, dx0, d_model_out])?;
    expect_disjoint(op, d_model_out, &[x, model_out, dx0])?;
    p.steps = steps;
    p.clip = clip as u32;
    dispatch(
        rec,
        op,
        p,
        &[
            Bind::Tensor(state.table),
            Bind::Tensor(state.step),
            Bind::Tensor(x),
            Bind::Tensor(model_out),
            Bind::Tensor(dx0),
            Bind::Tensor(d_model_out),
            Bind::Tensor(direct),
        ],
    )
}

/// `x = x_prev - zeta (direct + through_unet)`.
pub fn guided_update(
    rec: &mut Recorder,
    x_prev: &Tensor,
    direct: &Tensor,
    through_unet: &Tensor,
    x: &Tensor,
    zeta: f32,
) -> Result<()> {
    let op = "guided_update";
    let mut p = image_params(op, x, None)?;
    for (name, t) in [
        ("x_prev", x_prev),
        ("direct", direct),
        ("through_unet", through_unet),
    ] {
        expect_shape(op, name, t, x.shape())?;
        expect_f32(op, name, t)?;
    }
    expect_disjoint(op, x, &[x_prev, direct, through_unet])?;
    p.zeta = zeta;
    dispatch(
        rec,
        op,
        p,
        &[
            Bind::Tensor(x_prev),
            Bind::Tensor(direct),
            Bind::Tensor(through_unet),
            Bind::Tensor(x),
        ],
    )
}

/// `step += 1` on the GPU.
pub fn advance_step(rec: &mut Recorder, step: &Tensor) -> Result<()> {
    let op = "advance_step";
    if step.dtype() != DType::U32 || step.numel() != 1 {
        return Err(GpuError::shape(
            op,
            format!(
                "step must be one u32, got {:?} {:?}",
                step.dtype(),
                step.shape()
            ),
        ));
    }
    let p = Params {
        steps: 1,
        ..Params::default()
    };
    rec.dispatch(
        &Kernel::new("diffusion", op).with(&[("WG", WG as f64)]),
        &[Bind::Params(bytemuck::bytes_of(&p)), Bind::Tensor(step)],
        [1, 1, 1],
    )
}
