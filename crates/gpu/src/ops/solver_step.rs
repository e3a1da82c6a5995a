//! The step kernels shared by the posterior samplers (shaders/solver_step.wgsl): the current
//! row's model timestep, Tweedie's clean estimate, and the general affine update
//! `x_next = A x0 + B x + C eps + D z + E g`.
//!
//! Every coefficient comes from a step table `[K, Column::COUNT]` on the GPU indexed by a `[1]`
//! u32 step counter (advanced by `ops::diffusion::advance_step`), so a sampler's steps record
//! identical dispatches and upload nothing. The columns are named by [`Column`]; the shader
//! reads them through override constants set from it, so the layout has this one definition.

use bytemuck::{Pod, Zeroable};

use super::{expect_disjoint, expect_f32, expect_rank, expect_shape, to_u32};
use crate::error::{GpuError, Result};
use crate::kernels::{Bind, Kernel};
use crate::recorder::Recorder;
use crate::tensor::{DType, Tensor};

const WG: u32 = 256;

/// The named columns of a sampler's step table, one row per network evaluation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Column {
    /// The model timestep (f32: continuous-time samplers pass fractions).
    Timestep,
    /// `sqrt(1 / abar)`: Tweedie's coefficient of x.
    SqrtRecipAbar,
    /// `sqrt(1 / abar - 1)`: Tweedie's coefficient of epsilon.
    SqrtRecipm1Abar,
    /// The update's coefficient of the clean estimate x0.
    CoefX0,
    /// ... of the current state x.
    CoefX,
    /// ... of the model's raw epsilon.
    CoefEps,
    /// ... of the fresh noise z.
    CoefNoise,
    /// ... of the gradient g (data term and penalties, taken at x0).
    CoefGrad,
}

impl Column {
    /// Every column, in table order.
    pub const ALL: [Column; 8] = [
        Column::Timestep,
        Column::SqrtRecipAbar,
        Column::SqrtRecipm1Abar,
        Column::CoefX0,
        Column::CoefX,
        Column::CoefEps,
        Column::CoefNoise,
        Column::CoefGrad,
    ];
    /// Floats per row.
    pub const COUNT: usize = Self::ALL.len();

    /// The column's index in a row.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The shader's override constant for this column.
    const fn constant(self) -> &'static str {
        match self {
            Column::Timestep => "COL_T",
            Column::SqrtRecipAbar => "COL_C1",
            Column::SqrtRecipm1Abar => "COL_C2",
            Column::CoefX0 => "COL_A",
            Column::CoefX => "COL_B",
            Column::CoefEps => "COL_C",
            Column::CoefNoise => "COL_D",
            Column::CoefGrad => "COL_E",
        }
    }
}

/// The override constants that tell the shader the table layout.
const LAYOUT: [(&str, f64); Column::COUNT + 2] = {
    let mut out = [("", 0.0); Column::COUNT + 2];
    out[0] = ("WG", WG as f64);
    out[1] = ("ROW", Column::COUNT as f64);
    let mut i = 0;
    while i < Column::COUNT {
        out[i + 2] = (Column::ALL[i].constant(), Column::ALL[i].index() as f64);
        i += 1;
    }
    out
};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
struct Params {
    total: u32,
    hw: u32,
    channels: u32,
    model_channels: u32,
    steps: u32,
    clip: u32,
    _pad: [u32; 2],
}

/// The step table `[K, Column::COUNT]` and the `[1]` u32 counter that selects its row.
#[derive(Clone, Copy)]
pub struct StepTable<'a> {
    pub table: &'a Tensor,
    pub step: &'a Tensor,
}

impl StepTable<'_> {
    fn rows(&self, op: &'static str) -> Result<u32> {
        expect_rank(op, "table", self.table, 2)?;
        expect_f32(op, "table", self.table)?;
        let s = self.table.shape();
        if s[1] != Column::COUNT || s[0] == 0 {
            return Err(GpuError::shape(
                op,
                format!("table must be [K > 0, {}], got {s:?}", Column::COUNT),
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

/// Shape facts of x `[N, C, H, W]` and the model output `[N, C or 2C, H, W]`.
fn image_params(op: &'static str, x: &Tensor, model: &Tensor) -> Result<Params> {
    expect_rank(op, "x", x, 4)?;
    expect_f32(op, "x", x)?;
    expect_rank(op, "model output", model, 4)?;
    expect_f32(op, "model output", model)?;
    let s = x.shape();
    let ms = model.shape();
    if ms[0] != s[0] || ms[2..] != s[2..] || (ms[1] != s[1] && ms[1] != 2 * s[1]) {
        return Err(GpuError::shape(
            op,
            format!("model output {ms:?} must be [N, C or 2C, H, W] for x {s:?}"),
        ));
    }
    Ok(Params {
        total: to_u32(op, "element count", x.numel())?,
        hw: to_u32(op, "H * W", s[2] * s[3])?,
        channels: s[1] as u32,
        model_channels: ms[1] as u32,
        ..Params::default()
    })
}

fn dispatch(rec: &mut Recorder, entry: &'static str, p: Params, binds: &[Bind]) -> Result<()> {
    let groups = rec.gpu().grid(p.total.max(1).div_ceil(WG));
    rec.dispatch(
        &Kernel::new("solver_step", entry).with(&LAYOUT),
        &[&[Bind::Params(bytemuck::bytes_of(&p))], binds].concat(),
        groups,
    )
}

/// `t[n] = table[step][Timestep]` for every sample `n` of `t` `[N]`.
pub fn step_timesteps(rec: &mut Recorder, table: StepTable, t: &Tensor) -> Result<()> {
    let op = "step_timesteps";
    let steps = table.rows(op)?;
    expect_rank(op, "t", t, 1)?;
    expect_f32(op, "t", t)?;
    let p = Params {
        total: to_u32(op, "batch", t.numel())?,
        steps,
        ..Params::default()
    };
    dispatch(
        rec,
        op,
        p,
        &[
            Bind::Tensor(table.table),
            Bind::Tensor(table.step),
            Bind::Tensor(t),
        ],
    )
}

/// `x0 = SqrtRecipAbar x - SqrtRecipm1Abar eps`, clamped to [-1, 1] when `clip`.
pub fn tweedie(
    rec: &mut Recorder,
    table: StepTable,
    x: &Tensor,
    model_out: &Tensor,
    x0: &Tensor,
    clip: bool,
) -> Result<()> {
    let op = "tweedie";
    let steps = table.rows(op)?;
    let mut p = image_params(op, x, model_out)?;
    expect_shape(op, "x0", x0, x.shape())?;
    expect_f32(op, "x0", x0)?;
    expect_disjoint(op, x0, &[x, model_out])?;
    p.steps = steps;
    p.clip = clip as u32;
    dispatch(
        rec,
        op,
        p,
        &[
            Bind::Tensor(table.table),
            Bind::Tensor(table.step),
            Bind::Tensor(x),
            Bind::Tensor(model_out),
            Bind::Tensor(x0),
        ],
    )
}

/// The inputs of [`affine_update`], each `[N, C, H, W]` but the model output.
#[derive(Clone, Copy)]
pub struct AffineTerms<'a> {
    pub x0: &'a Tensor,
    pub x: &'a Tensor,
    /// The model output; its epsilon channels are read.
    pub model_out: &'a Tensor,
    pub noise: &'a Tensor,
    pub grad: &'a Tensor,
}

/// `out = CoefX0 x0 + CoefX x + CoefEps eps + CoefNoise z + CoefGrad g` for the current row.
pub fn affine_update(
    rec: &mut Recorder,
    table: StepTable,
    terms: AffineTerms,
    out: &Tensor,
) -> Result<()> {
    let op = "affine_update";
    let steps = table.rows(op)?;
    let mut p = image_params(op, terms.x, terms.model_out)?;
    for (name, t) in [
        ("x0", terms.x0),
        ("noise", terms.noise),
        ("grad", terms.grad),
        ("out", out),
    ] {
        expect_shape(op, name, t, terms.x.shape())?;
        expect_f32(op, name, t)?;
    }
    expect_disjoint(
        op,
        out,
        &[terms.x0, terms.x, terms.model_out, terms.noise, terms.grad],
    )?;
    p.steps = steps;
    dispatch(
        rec,
        op,
        p,
        &[
            Bind::Tensor(table.table),
            Bind::Tensor(table.step),
            Bind::Tensor(terms.x0),
            Bind::Tensor(terms.x),
            Bind::Tensor(terms.model_out),
            Bind::Tensor(terms.noise),
            Bind::Tensor(terms.grad),
            Bind::Tensor(out),
        ],
    )
}

/// The settings of [`adam_step`] (torch.optim.Adam's, without weight decay).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamSettings {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct AdamParams {
    total: u32,
    per_sample: u32,
    ln_beta1: f32,
    ln_beta2: f32,
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
}

/// The state of one Adam optimisation: first and second moments shaped as the variable.
pub struct AdamState<'a> {
    pub m: &'a Tensor,
    pub v: &'a Tensor,
    /// `[1]` u32: the number of steps taken before this one (the bias corrections use it + 1).
    pub iter: &'a Tensor,
    /// `[N]` per-sample flags (1 active, 0 stopped) for a variable `[N, ...]`: a stopped sample's
    /// variable and moments are left as they are. `None`: every sample steps.
    pub active: Option<&'a Tensor>,
}

/// One Adam step on `u` with gradient `g`, in torch's order of operations:
/// `m = b1 m + (1 - b1) g`, `v = b2 v + (1 - b2) g^2`,
/// `u -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)` with `t = iter + 1`.
/// The caller advances `iter` (`ops::diffusion::advance_step`).
pub fn adam_step(
    rec: &mut Recorder,
    state: AdamState,
    g: &Tensor,
    u: &Tensor,
    settings: AdamSettings,
) -> Result<()> {
    let op = "adam_step";
    for (name, t) in [("g", g), ("m", state.m), ("v", state.v)] {
        expect_shape(op, name, t, u.shape())?;
        expect_f32(op, name, t)?;
    }
    expect_f32(op, "u", u)?;
    if state.iter.dtype() != DType::U32 || state.iter.numel() != 1 {
        return Err(GpuError::shape(
            op,
            format!(
                "iter must be one u32, got {:?} {:?}",
                state.iter.dtype(),
                state.iter.shape()
            ),
        ));
    }
    let AdamSettings {
        lr,
        beta1,
        beta2,
        eps,
    } = settings;
    let valid = lr.is_finite()
        && lr > 0.0
        && (0.0..1.0).contains(&beta1)
        && (0.0..1.0).contains(&beta2)
        && eps.is_finite()
        && eps > 0.0;
    if !valid {
        return Err(GpuError::shape(
            op,
            format!("needs lr > 0, betas in [0, 1) and eps > 0, got {settings:?}"),
        ));
    }
    expect_disjoint(op, u, &[g, state.m, state.v])?;
    expect_disjoint(op, state.m, &[g, state.v])?;
    expect_disjoint(op, state.v, &[g])?;
    let per_sample = match state.active {
        None => 0,
        Some(a) => {
            let items = u.shape().first().copied().unwrap_or(0);
            expect_shape(op, "active", a, &[items])?;
            expect_f32(op, "active", a)?;
            to_u32(op, "values per sample", u.numel() / items.max(1))?
        }
    };
    let p = AdamParams {
        total: to_u32(op, "element count", u.numel())?,
        per_sample,
        ln_beta1: (beta1 as f64).ln() as f32,
        ln_beta2: (beta2 as f64).ln() as f32,
        lr,
        beta1,
        beta2,
        eps,
    };
    let groups = rec.gpu().grid(p.total.max(1).div_ceil(WG));
    let mut binds = vec![
        Bind::Params(bytemuck::bytes_of(&p)),
        Bind::Tensor(state.iter),
        Bind::Tensor(g),
        Bind::Tensor(state.m),
        Bind::Tensor(state.v),
        Bind::Tensor(u),
    ];
    let entry = match state.active {
        None => op,
        Some(a) => {
            binds.push(Bind::Tensor(a));
            "adam_step_masked"
        }
    };
    rec.dispatch(
        &Kernel::new("solver_step", entry).with(&LAYOUT),
        &binds,
        groups,
    )
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct StopParams {
    items: u32,
    _pad: [u32; 3],
    threshold: f32,
    _pad_f: [f32; 3],
}

/// Per-sample early stopping without a readback: `active[n] = 0` where `norm[n]^2 <
/// threshold` (`norm` a per-sample residual norm, `[N]`); a stopped sample stays stopped.
pub fn stop_flags(
    rec: &mut Recorder,
    norm: &Tensor,
    active: &Tensor,
    threshold: f32,
) -> Result<()> {
    let op = "stop_flags";
    expect_rank(op, "norm", norm, 1)?;
    expect_shape(op, "active", active, norm.shape())?;
    expect_f32(op, "norm", norm)?;
    expect_f32(op, "active", active)?;
    expect_disjoint(op, active, &[norm])?;
    if !threshold.is_finite() {
        return Err(GpuError::shape(
            op,
            format!("the threshold must be finite, got {threshold}"),
        ));
    }
    let p = StopParams {
        items: to_u32(op, "samples", norm.numel())?,
        _pad: [0; 3],
        threshold,
        _pad_f: [0.0; 3],
    };
    rec.dispatch(
        &Kernel::new("solver_step", op).with(&LAYOUT),
        &[
            Bind::Params(bytemuck::bytes_of(&p)),
            Bind::Tensor(norm),
            Bind::Tensor(active),
        ],
        [p.items.div_ceil(64).max(1), 1, 1],
    )
}

/// Sets a `[1]` u32 step counter back to 0 on the GPU (a fresh inner optimisation's Adam).
pub fn reset_counter(rec: &mut Recorder, counter: &Tensor) -> Result<()> {
    let op = "reset_counter";
    if counter.dtype() != DType::U32 || counter.numel() != 1 {
        return Err(GpuError::shape(
            op,
            format!(
                "the counter must be one u32, got {:?} {:?}",
                counter.dtype(),
                counter.shape()
            ),
        ));
    }
    rec.dispatch(
        &Kernel::new("solver_step", op).with(&LAYOUT),
        &[Bind::Tensor(counter)],
        [1, 1, 1],
    )
}

/// Pulls `dx0` back through Tweedie's `x0 = clip(c1 x - c2 eps)` of the current row:
/// `direct = c1 m dx0` and the model output's cotangent `-c2 m dx0` on the epsilon channels
/// (0 on the variance channels). The DPS table's kernel serves, as the two layouts agree on
/// the Tweedie columns.
#[allow(clippy::too_many_arguments)]
pub fn tweedie_cotangent(
    rec: &mut Recorder,
    table: StepTable,
    x: &Tensor,
    model_out: &Tensor,
    dx0: &Tensor,
    d_model_out: &Tensor,
    direct: &Tensor,
    clip: bool,
) -> Result<()> {
    const _: () = assert!(
        Column::SqrtRecipAbar.index() == 1
            && Column::SqrtRecipm1Abar.index() == 2
            && Column::COUNT == 8,
        "the DPS table's x0_cotangent reads c1 and c2 from columns 1 and 2 of 8"
    );
    let state = super::diffusion::StepState {
        table: table.table,
        step: table.step,
    };
    super::diffusion::x0_cotangent(rec, state, x, model_out, dx0, d_model_out, direct, clip)
}
