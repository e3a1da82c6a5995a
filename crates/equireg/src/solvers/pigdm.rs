//! PiGDM (Song et al. 2023): pseudo-inverse guided diffusion. Each step pulls the
//! pseudo-inverse residual `v` back through the denoiser, `g = J_x0(x_t)^T v` (one UNet VJP),
//! and adds it to a DDIM step. After `NVlabs/RED-diff` (`algos/pgdm.py`, `pgdm.yaml`: eta 0,
//! grad_term_weight 1, awd), with the noisy-case `v` of InverseBench's restatement:
//!
//! ```text
//! x_T = sqrt(abar_T) A^+ y + sqrt(1 - abar_T) z          (T the top timestep of the grid)
//! for t in t_{K-1}, ..., t_0 (t_i = i * 1000 / K), s the next one (abar_s = 1 after t_0):
//!     eps^, x0 = model(x_t)                               (not clipped)
//!     v  = filtered_pinv(y - A x0; c_t),  c_t = sigma_y^2 / (1 - abar_t)
//!          (= A^+ y - A^+ A x0 without noise: the reference's form)
//!     g  = grad_x_t <v, x0(x_t)>                          (v held fixed)
//!     c1 = eta sqrt((1 - abar_t / abar_s)(1 - abar_s) / (1 - abar_t));  c2 = sqrt(1 - abar_s - c1^2)
//!     x_s = sqrt(abar_s) x0 + c1 z + c2 eps^ + sqrt(abar_s) sqrt(abar_t) w g
//! ```
//!
//! On the seam: Tweedie, the operator and the spectral pseudo-inverse (one filter per step),
//! the Tweedie cotangent and the UNet VJP, one affine update. EquiReg (and PDE residuals) act
//! on x0 before the denoiser VJP, as in DPS: their gradient, negated, joins v (v is a descent
//! direction of the data term), so it rides on the same VJP. The operators are those with a
//! spectral form; the others are refused.

use std::cell::Cell;

use equireg_gpu::ops::diffusion::advance_step;
use equireg_gpu::ops::elementwise::{add, axpby, copy, fill};
use equireg_gpu::ops::rng::rng_normal_items;
use equireg_gpu::ops::solver_step::{
    AffineTerms, StepTable, affine_update, step_timesteps, tweedie, tweedie_cotangent,
};
use equireg_gpu::{DType, Gpu, Tensor};
use equireg_nn::{UNet, UNetRun};

use super::penalty::{Penalties, StepPosition};
use super::table::{self, StepRow};
use super::{Evaluations, PosteriorSampler, Problem, STREAM_INITIAL, STREAM_STEP};
use crate::operators::Operator;
use crate::operators::spectral::Spectral;
use crate::schedule::BetaSchedule;
use crate::{Error, Result};

/// PiGDM's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct PigdmSettings {
    /// Steps K.
    pub steps: usize,
    /// The DDIM step's eta in [0, 1] (0).
    pub eta: f64,
    /// The guidance weight w (`grad_term_weight`, 1).
    pub weight: f64,
    /// The measurement's noise level in [-1, 1] units (the task's).
    pub noise_sigma: f64,
}

impl PigdmSettings {
    pub fn validate(&self) -> Result<()> {
        if !(1..=1000).contains(&self.steps) {
            return Err(Error::invalid(format!(
                "pigdm runs 1 to 1000 steps, got {}",
                self.steps
            )));
        }
        if !(0.0..=1.0).contains(&self.eta) {
            return Err(Error::invalid(format!(
                "solver.eta (pigdm) must be in [0, 1], got {}",
                self.eta
            )));
        }
        for (name, v) in [("weight", self.weight), ("noise_sigma", self.noise_sigma)] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(Error::invalid(format!(
                    "solver.{name} (pigdm) must be finite and >= 0, got {v}"
                )));
            }
        }
        Ok(())
    }

    pub fn describe(&self) -> String {
        format!(
            "pigdm: steps={}, eta={}, weight={}, noise_sigma={}",
            self.steps, self.eta, self.weight, self.noise_sigma
        )
    }

    /// The model timesteps in loop order: `i * 1000 / K` for i = K-1 down to 0.
    pub fn timesteps(&self) -> Vec<usize> {
        (0..self.steps)
            .rev()
            .map(|i| i * 1000 / self.steps)
            .collect()
    }

    fn abar() -> Vec<f64> {
        BetaSchedule::Linear.alphas_cumprod(1000)
    }

    /// abar at the first (top) timestep, for x_T.
    pub fn abar_top(&self) -> f64 {
        Self::abar()[self.timesteps()[0]]
    }

    /// Per step: the filtered pseudo-inverse's c and the update's row.
    pub fn rows(&self) -> Vec<(f64, StepRow)> {
        let abar = Self::abar();
        let ts = self.timesteps();
        ts.iter()
            .enumerate()
            .map(|(i, &t)| {
                let a = abar[t];
                let a_s = ts.get(i + 1).map_or(1.0, |&s| abar[s]);
                let c1 = self.eta * ((1.0 - a / a_s) * (1.0 - a_s) / (1.0 - a)).max(0.0).sqrt();
                let c2 = (1.0 - a_s - c1 * c1).max(0.0).sqrt();
                let c = self.noise_sigma * self.noise_sigma / (1.0 - a);
                let row = StepRow {
                    coef_x0: a_s.sqrt(),
                    coef_eps: c2,
                    coef_noise: c1,
                    coef_grad: a_s.sqrt() * a.sqrt() * self.weight,
                    ..StepRow::at(t as f64, a)
                };
                (c, row)
            })
            .collect()
    }
}

/// PiGDM planned for one batch shape.
pub struct Pigdm<'a> {
    gpu: &'a Gpu,
    unet: &'a UNet,
    run: UNetRun,
    shape: [usize; 4],
    steps: usize,
    abar_top: f32,
    operator: &'a dyn Operator,
    spectral: &'a Spectral,
    measurement: &'a Tensor,
    /// The filter of each step (its c), and the plain pseudo-inverse's for x_T.
    filters: Vec<Tensor>,
    pinv_filter: Tensor,
    table: Tensor,
    step: Tensor,
    sigmas: Vec<f64>,
    x0: Tensor,
    a_x0: Tensor,
    residual: Tensor,
    v: Tensor,
    penalty: Tensor,
    direct: Tensor,
    grad: Tensor,
    noise: Tensor,
    next: Tensor,
    penalties: Penalties<'a>,
    seed: u64,
    first_item: u32,
    k: Cell<usize>,
}

impl<'a> Pigdm<'a> {
    pub fn new(
        gpu: &'a Gpu,
        unet: &'a UNet,
        [n, h, w]: [usize; 3],
        settings: &PigdmSettings,
        problem: Problem<'a>,
    ) -> Result<Self> {
        settings.validate()?;
        let c = unet.config().in_channels;
        let shape = [n, c, h, w];
        let (operator, measurement, penalties) = problem.split();
        let spectral = super::ddnm::needs_spectral("pigdm", operator)?;
        if operator.input_shape() != shape {
            return Err(Error::invalid(format!(
                "the {} operator was built for images {:?}, the solver runs {:?}",
                operator.name(),
                operator.input_shape(),
                shape
            )));
        }
        let rows = settings.rows();
        let filters = rows
            .iter()
            .map(|(c, _)| spectral.filter(gpu, *c))
            .collect::<Result<Vec<_>>>()?;
        let update: Vec<StepRow> = rows.iter().map(|(_, r)| *r).collect();
        let sigmas = update.iter().map(StepRow::sigma).collect();
        let out = operator.output_shape();
        let alloc = || gpu.alloc(&shape, DType::F32);
        Ok(Self {
            gpu,
            unet,
            run: unet.plan_with_vjp(gpu, n, h, w)?,
            shape,
            steps: settings.steps,
            abar_top: settings.abar_top() as f32,
            operator,
            spectral,
            measurement,
            filters,
            pinv_filter: spectral.filter(gpu, 0.0)?,
            table: table::upload(gpu, &update)?,
            step: gpu.upload_u32(&[1], &[0])?,
            sigmas,
            x0: alloc()?,
            a_x0: gpu.alloc(&out, DType::F32)?,
            residual: gpu.alloc(&out, DType::F32)?,
            v: alloc()?,
            penalty: alloc()?,
            direct: alloc()?,
            grad: alloc()?,
            noise: alloc()?,
            next: alloc()?,
            penalties,
            seed: 0,
            first_item: 0,
            k: Cell::new(0),
        })
    }

    /// Starts from a given state (host data of the batch shape) at step row `row` (0 for x_T)
    /// instead of drawing x_T: for tests against references and for resuming.
    pub fn begin_from(
        &mut self,
        seed: u64,
        first_item: u32,
        x_t: &[f32],
        row: usize,
    ) -> Result<()> {
        if row >= self.steps {
            return Err(Error::invalid(format!(
                "step row {row} is past the last of {} steps",
                self.steps
            )));
        }
        super::check_state_len("x_T", x_t.len(), self.shape)?;
        self.reset(seed, first_item, row)?;
        self.gpu.write(self.run.input(), x_t)?;
        Ok(())
    }

    fn reset(&mut self, seed: u64, first_item: u32, row: usize) -> Result<()> {
        self.seed = seed;
        self.first_item = first_item;
        self.k.set(row);
        self.penalties.set_seed(seed);
        self.gpu.write(&self.step, &[row as u32])?;
        Ok(())
    }
}

impl PosteriorSampler for Pigdm<'_> {
    fn name(&self) -> &'static str {
        "pigdm"
    }

    fn steps(&self) -> usize {
        self.steps
    }

    fn shape(&self) -> [usize; 4] {
        self.shape
    }

    /// x_T = sqrt(abar_T) A^+ y + sqrt(1 - abar_T) z.
    fn begin(&mut self, seed: u64, first_item: u32) -> Result<()> {
        self.reset(seed, first_item, 0)?;
        let a = self.abar_top;
        let mut rec = self.gpu.recorder();
        rng_normal_items(
            &mut rec,
            &self.noise,
            seed,
            STREAM_INITIAL,
            0,
            &self.step,
            first_item,
        )?;
        self.spectral.record_filtered_pinv(
            &mut rec,
            self.measurement,
            &self.pinv_filter,
            &self.v,
        )?;
        axpby(
            &mut rec,
            a.sqrt(),
            &self.v,
            (1.0 - a).sqrt(),
            &self.noise,
            self.run.input(),
        )?;
        rec.submit()?;
        Ok(())
    }

    fn step(&self) -> Result<()> {
        let k = self.k.get();
        let x = self.run.input();
        let out = self.run.output();
        let st = StepTable {
            table: &self.table,
            step: &self.step,
        };
        let mut rec = self.gpu.recorder();
        rec.section("forward");
        step_timesteps(&mut rec, st, self.run.timesteps())?;
        self.run.record_forward(&mut rec, self.unet)?;
        rec.section("update");
        tweedie(&mut rec, st, x, out, &self.x0, false)?;
        // v = filtered_pinv(y - A x0; c_t).
        rec.section("operator");
        self.operator
            .record_forward(&mut rec, &self.x0, &self.a_x0)?;
        axpby(
            &mut rec,
            1.0,
            self.measurement,
            -1.0,
            &self.a_x0,
            &self.residual,
        )?;
        self.spectral
            .record_filtered_pinv(&mut rec, &self.residual, &self.filters[k], &self.v)?;
        // Penalties descend: v -= dP/dx0.
        let at = StepPosition {
            k,
            steps: self.steps,
            sigma: self.sigmas[k],
            counter: &self.step,
        };
        fill(&mut rec, &self.penalty, 0.0)?;
        self.penalties
            .record(&mut rec, &self.x0, &self.penalty, at)?;
        axpby(&mut rec, 1.0, &self.v, -1.0, &self.penalty, &self.next)?;
        copy(&mut rec, &self.next, &self.v)?;
        // g = J_x0(x_t)^T v.
        tweedie_cotangent(
            &mut rec,
            st,
            x,
            out,
            &self.v,
            self.run.cotangent()?,
            &self.direct,
            false,
        )?;
        rec.section("vjp");
        self.run.record_vjp(&mut rec, self.unet)?;
        rec.section("update");
        add(&mut rec, &self.direct, self.run.input_grad()?, &self.grad)?;
        rng_normal_items(
            &mut rec,
            &self.noise,
            self.seed,
            STREAM_STEP,
            0,
            &self.step,
            self.first_item,
        )?;
        let terms = AffineTerms {
            x0: &self.x0,
            x,
            model_out: out,
            noise: &self.noise,
            grad: &self.grad,
        };
        affine_update(&mut rec, st, terms, &self.next)?;
        copy(&mut rec, &self.next, x)?;
        advance_step(&mut rec, &self.step)?;
        rec.section("");
        rec.submit()?;
        self.k.set(k + 1);
        Ok(())
    }

    fn state(&self) -> &Tensor {
        self.run.input()
    }

    fn x0(&self) -> &Tensor {
        &self.x0
    }

    fn evaluations(&self) -> Evaluations {
        Evaluations {
            forward: self.steps,
            vjp: self.steps,
        }
    }

    fn finish(&self) -> Result<Vec<f32>> {
        self.gpu.check_errors()?;
        Ok(self.gpu.download(self.run.input())?)
    }
}
