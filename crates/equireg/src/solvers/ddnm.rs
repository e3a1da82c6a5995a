//! DDNM+ (Wang et al. 2023): denoising diffusion null-space model, with its noisy-case scaling.
//! Each step replaces the range-space part of the clean estimate by the measurement's,
//! `x0' = x0 - lambda A^+ (A x0 - y)`, and keeps the network's null-space part, then takes a
//! DDIM-like step. The noisy form follows InverseBench's restatement (the spec's clean
//! reference: the official `simplified_ddnm_plus` compares sigma with `abar sigma_y` and scales
//! its DDIM noise by gamma, not the paper's rule), in variance-exploding units
//! `x_ve = x / sqrt(abar)`, `sigma = sqrt(1 / abar - 1)`:
//!
//! ```text
//! for t in t_{K-1}, ..., t_0  (t_i = i * 1000 / K), next t' (abar' = 1 after t_0):
//!     x0     = (x - sqrt(1 - abar) eps^) / sqrt(abar)              (not clipped)
//!     lambda = min(1, sigma' / sigma_y)   (1 without measurement noise)
//!     x0'    = x0 - lambda A^+ (A x0 - y)
//!     gamma  = sqrt(max(0, sigma'^2 - (lambda sigma_y)^2))
//!     x_ve'  = x0' + sqrt(1 - eta^2) (sigma' / sigma) (x_ve - x0') + eta gamma z
//! ```
//!
//! so in the model's units `x' = sqrt(abar') ((1 - k) x0' + k x / sqrt(abar) + eta gamma z)`
//! with `k = sqrt(1 - eta^2) sigma' / sigma`: one affine update. Without noise
//! (`sigma_y = 0`) this is DDNM's null-space projection with the DDIM step on the corrected
//! estimate; the official SVD code keeps the network's raw eps^ there instead.
//!
//! `A^+` is the operator's spectral pseudo-inverse (`operators::spectral`), so DDNM serves the
//! operators that factor (inpainting, super-resolution, Gaussian blur) and refuses the others.
//! EquiReg (and PDE residuals), having no denoiser VJP to ride on, take an extra gradient step
//! on the corrected estimate before the update: `x0' -= step_size dP/dx0'` (through f only).

use std::cell::Cell;

use equireg_gpu::ops::diffusion::advance_step;
use equireg_gpu::ops::elementwise::{axpby, copy, fill};
use equireg_gpu::ops::rng::rng_normal_items;
use equireg_gpu::ops::solver_step::{
    AffineTerms, StepTable, affine_update, step_timesteps, tweedie,
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

/// DDNM+'s settings.
#[derive(Clone, Debug, PartialEq)]
pub struct DdnmSettings {
    /// Steps K.
    pub steps: usize,
    /// The DDIM-like step's stochasticity eta in [0, 1] (0.85).
    pub eta: f64,
    /// The measurement's noise level in [-1, 1] units (the task's; 0: noiseless DDNM).
    pub noise_sigma: f64,
    /// The penalties' gradient step on the corrected estimate.
    pub penalty_step: f64,
}

impl DdnmSettings {
    pub fn validate(&self) -> Result<()> {
        if !(1..=1000).contains(&self.steps) {
            return Err(Error::invalid(format!(
                "ddnm runs 1 to 1000 steps, got {}",
                self.steps
            )));
        }
        if !(0.0..=1.0).contains(&self.eta) {
            return Err(Error::invalid(format!(
                "solver.eta (ddnm) must be in [0, 1], got {}",
                self.eta
            )));
        }
        for (name, v) in [
            ("noise_sigma", self.noise_sigma),
            ("penalty_step", self.penalty_step),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(Error::invalid(format!(
                    "solver.{name} (ddnm) must be finite and >= 0, got {v}"
                )));
            }
        }
        Ok(())
    }

    pub fn describe(&self) -> String {
        format!(
            "ddnm: steps={}, eta={}, noise_sigma={}, penalty_step={}",
            self.steps, self.eta, self.noise_sigma, self.penalty_step
        )
    }

    /// The model timesteps in loop order: `i * 1000 / K` for i = K-1 down to 0.
    pub fn timesteps(&self) -> Vec<usize> {
        (0..self.steps)
            .rev()
            .map(|i| i * 1000 / self.steps)
            .collect()
    }

    /// Per step: the data-step weight, the step's abar and the update's row (its Tweedie
    /// coefficients, and `a x0' + b x + d z`).
    pub fn rows(&self) -> Vec<DdnmStep> {
        let abar: Vec<f64> = BetaSchedule::Linear.alphas_cumprod(1000);
        let ts = self.timesteps();
        ts.iter()
            .enumerate()
            .map(|(i, &t)| {
                let a = abar[t];
                let a_next = ts.get(i + 1).map_or(1.0, |&n| abar[n]);
                let sigma = (1.0 / a - 1.0).sqrt();
                let sigma_next = (1.0 / a_next - 1.0).max(0.0).sqrt();
                let lambda = if self.noise_sigma > 0.0 {
                    (sigma_next / self.noise_sigma).min(1.0)
                } else {
                    1.0
                };
                let gamma = (sigma_next * sigma_next - (lambda * self.noise_sigma).powi(2))
                    .max(0.0)
                    .sqrt();
                let k = (1.0 - self.eta * self.eta).sqrt() * sigma_next / sigma;
                let s = a_next.sqrt();
                let update = StepRow {
                    coef_x0: s * (1.0 - k),
                    coef_x: s * k / a.sqrt(),
                    coef_noise: s * self.eta * gamma,
                    ..StepRow::at(t as f64, a)
                };
                DdnmStep {
                    lambda,
                    abar: a,
                    update,
                }
            })
            .collect()
    }
}

/// One step of [`DdnmSettings::rows`].
#[derive(Clone, Copy, Debug)]
pub struct DdnmStep {
    /// The range-space correction's weight.
    pub lambda: f64,
    pub abar: f64,
    pub update: StepRow,
}

/// The error of a solver that needs a pseudo-inverse on an operator without a spectral form.
pub(crate) fn needs_spectral<'a>(solver: &str, op: &'a dyn Operator) -> Result<&'a Spectral> {
    op.spectral().ok_or_else(|| {
        Error::invalid(format!(
            "{solver} needs the operator's pseudo-inverse, which {} does not have (inpainting, \
             super-resolution and Gaussian blur do); use dps, daps, diffpir, sitcom or red-diff",
            op.name()
        ))
    })
}

/// DDNM+ planned for one batch shape.
pub struct Ddnm<'a> {
    gpu: &'a Gpu,
    unet: &'a UNet,
    run: UNetRun,
    shape: [usize; 4],
    steps: usize,
    penalty_step: f32,
    operator: &'a dyn Operator,
    spectral: &'a Spectral,
    measurement: &'a Tensor,
    pinv_filter: Tensor,
    /// The data step `x0 - lambda p` (coef_x0 1, coef_grad -lambda) and the update, over one
    /// counter.
    data_table: Tensor,
    update_table: Tensor,
    step: Tensor,
    sigmas: Vec<f64>,
    /// The network's x0 (Tweedie).
    estimate: Tensor,
    /// x0 after the range-space correction (and the penalties' step).
    corrected: Tensor,
    a_x0: Tensor,
    residual: Tensor,
    pinv: Tensor,
    grad: Tensor,
    noise: Tensor,
    next: Tensor,
    penalties: Penalties<'a>,
    seed: u64,
    first_item: u32,
    k: Cell<usize>,
}

impl<'a> Ddnm<'a> {
    pub fn new(
        gpu: &'a Gpu,
        unet: &'a UNet,
        [n, h, w]: [usize; 3],
        settings: &DdnmSettings,
        problem: Problem<'a>,
    ) -> Result<Self> {
        settings.validate()?;
        let c = unet.config().in_channels;
        let shape = [n, c, h, w];
        let (operator, measurement, penalties) = problem.split();
        let spectral = needs_spectral("ddnm", operator)?;
        if operator.input_shape() != shape {
            return Err(Error::invalid(format!(
                "the {} operator was built for images {:?}, the solver runs {:?}",
                operator.name(),
                operator.input_shape(),
                shape
            )));
        }
        let rows = settings.rows();
        let data_rows: Vec<StepRow> = rows
            .iter()
            .map(|r| StepRow {
                coef_x0: 1.0,
                coef_grad: -r.lambda,
                ..StepRow::at(r.update.timestep, r.abar)
            })
            .collect();
        let update_rows: Vec<StepRow> = rows.iter().map(|r| r.update).collect();
        let sigmas = update_rows.iter().map(StepRow::sigma).collect();
        let out = operator.output_shape();
        let alloc = || gpu.alloc(&shape, DType::F32);
        Ok(Self {
            gpu,
            unet,
            run: unet.plan(gpu, n, h, w)?,
            shape,
            steps: settings.steps,
            penalty_step: settings.penalty_step as f32,
            operator,
            spectral,
            measurement,
            pinv_filter: spectral.filter(gpu, 0.0)?,
            data_table: table::upload(gpu, &data_rows)?,
            update_table: table::upload(gpu, &update_rows)?,
            step: gpu.upload_u32(&[1], &[0])?,
            sigmas,
            estimate: alloc()?,
            corrected: alloc()?,
            a_x0: gpu.alloc(&out, DType::F32)?,
            residual: gpu.alloc(&out, DType::F32)?,
            pinv: alloc()?,
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

impl PosteriorSampler for Ddnm<'_> {
    fn name(&self) -> &'static str {
        "ddnm"
    }

    fn steps(&self) -> usize {
        self.steps
    }

    fn shape(&self) -> [usize; 4] {
        self.shape
    }

    fn begin(&mut self, seed: u64, first_item: u32) -> Result<()> {
        self.reset(seed, first_item, 0)?;
        let mut rec = self.gpu.recorder();
        rng_normal_items(
            &mut rec,
            self.run.input(),
            seed,
            STREAM_INITIAL,
            0,
            &self.step,
            first_item,
        )?;
        rec.submit()?;
        Ok(())
    }

    fn step(&self) -> Result<()> {
        let k = self.k.get();
        let x = self.run.input();
        let out = self.run.output();
        let data = StepTable {
            table: &self.data_table,
            step: &self.step,
        };
        let update = StepTable {
            table: &self.update_table,
            step: &self.step,
        };
        let mut rec = self.gpu.recorder();
        rec.section("forward");
        step_timesteps(&mut rec, update, self.run.timesteps())?;
        self.run.record_forward(&mut rec, self.unet)?;
        rec.section("update");
        tweedie(&mut rec, update, x, out, &self.estimate, false)?;
        // The range-space correction x0' = x0 - lambda A^+ (A x0 - y).
        rec.section("operator");
        self.operator
            .record_forward(&mut rec, &self.estimate, &self.a_x0)?;
        axpby(
            &mut rec,
            1.0,
            &self.a_x0,
            -1.0,
            self.measurement,
            &self.residual,
        )?;
        self.spectral.record_filtered_pinv(
            &mut rec,
            &self.residual,
            &self.pinv_filter,
            &self.pinv,
        )?;
        rec.section("update");
        let terms = AffineTerms {
            x0: &self.estimate,
            x,
            model_out: out,
            noise: &self.noise,
            grad: &self.pinv,
        };
        affine_update(&mut rec, data, terms, &self.corrected)?;
        // Penalties: one gradient step on the corrected estimate.
        let at = StepPosition {
            k,
            steps: self.steps,
            sigma: self.sigmas[k],
            counter: &self.step,
        };
        if self.penalty_step > 0.0 {
            fill(&mut rec, &self.grad, 0.0)?;
            self.penalties
                .record(&mut rec, &self.corrected, &self.grad, at)?;
            rec.section("update");
            axpby(
                &mut rec,
                1.0,
                &self.corrected,
                -self.penalty_step,
                &self.grad,
                &self.next,
            )?;
            copy(&mut rec, &self.next, &self.corrected)?;
        }
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
            x0: &self.corrected,
            x,
            model_out: out,
            noise: &self.noise,
            grad: &self.pinv,
        };
        affine_update(&mut rec, update, terms, &self.next)?;
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
        &self.corrected
    }

    fn evaluations(&self) -> Evaluations {
        Evaluations {
            forward: self.steps,
            vjp: 0,
        }
    }

    fn finish(&self) -> Result<Vec<f32>> {
        self.gpu.check_errors()?;
        Ok(self.gpu.download(self.run.input())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_step_lands_on_the_corrected_estimate() {
        let s = DdnmSettings {
            steps: 10,
            eta: 0.85,
            noise_sigma: 0.05,
            penalty_step: 0.0,
        };
        let rows = s.rows();
        let (lambda, last) = (rows[9].lambda, rows[9].update);
        // abar' = 1: sigma' = 0, so lambda = 0 (the estimate is noisy; keep the network's), and
        // x' = x0'.
        assert_eq!(lambda, 0.0);
        assert!((last.coef_x0 - 1.0).abs() < 1e-12 && last.coef_x == 0.0);
        assert_eq!(last.coef_noise, 0.0);
        // Early steps, sigma' >> sigma_y: the full projection.
        assert_eq!(rows[0].lambda, 1.0);
        let noiseless = DdnmSettings {
            noise_sigma: 0.0,
            ..s
        };
        assert_eq!(noiseless.rows()[9].lambda, 1.0);
    }
}
