//! RED-diff (Mardani et al. 2024): variational posterior sampling as regularisation by
//! denoising. The clean estimate mu is optimised with Adam, one step per diffusion level, on the
//! measurement's loss plus the denoiser's score-matching term. After `NVlabs/RED-diff`
//! (`algos/reddiff.py`, `_configs/algo/reddiff.yaml`: lr 0.1, betas (0.9, 0.99),
//! grad_term_weight 0.25, obs_weight 1, denoise_term_weight "linear", sigma_x0 0, eta 0):
//!
//! ```text
//! mu     = mu_0;  Adam(mu, lr, betas (0.9, 0.99))
//! for t in t_{K-1}, ..., t_0  (t_i = i * 1000 / K):
//!     eps  ~ N(0, I);  x_t = sqrt(abar_t) mu + sqrt(1 - abar_t) eps
//!     eps^ = UNet(x_t, t)                                   (no gradient through it)
//!     loss = lambda snr_inv_t mean((eps^ - eps) * mu) + v mean((y - A(mu))^2) / 2
//!            snr_inv_t = sqrt(1 - abar_t) / sqrt(abar_t)
//!     mu  <- Adam step on d loss / d mu
//! return mu as it was before the last (t = 0) step
//! ```
//!
//! The reference's `main.py` keeps `x0_pred`, mu before the final Adam step: the t = 0 step is
//! computed and discarded. The engine skips it, so a run is K - 1 network evaluations and the
//! reference's result.
//!
//! On the seam: `x_t` and the gradient `lambda snr_inv (eps^ - eps) / n_x + v dL_obs/dmu` are two
//! affine updates (two tables over one step counter), then one Adam kernel. Means are per
//! sample (n_x, n_y: one image's values), so an image's result does not depend on its batch
//! (the reference averages over the batch; Adam hardly sees that constant factor).
//! Penalties (EquiReg, PDE residuals) add their gradient at mu to the objective Adam sees.
//!
//! Deviations, on purpose: the reference starts from the pseudo-inverse `A^+ y`; the engine's
//! operators have no pseudo-inverse yet, so mu_0 is the operator's naive estimate from y
//! (bicubic upsampling, the blurred measurement, the observed mean in holes, y / scale for HDR,
//! a flat image for phase retrieval), the images' baseline. The noise comes from the engine's
//! Philox streams.

use std::cell::Cell;

use equireg_gpu::ops::diffusion::advance_step;
use equireg_gpu::ops::elementwise::fill;
use equireg_gpu::ops::rng::rng_normal_items;
use equireg_gpu::ops::solver_step::{
    AdamSettings, AdamState, AffineTerms, StepTable, adam_step, affine_update, step_timesteps,
};
use equireg_gpu::{DType, Gpu, Tensor};
use equireg_nn::{UNet, UNetRun};

use super::data_term::{DataLoss, DataTerm};
use super::penalty::{Penalties, StepPosition};
use super::table::{self, StepRow};
use super::{Evaluations, PosteriorSampler, Problem, STREAM_STEP};
use crate::schedule::BetaSchedule;
use crate::{Error, Result};

/// RED-diff's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct RedDiffSettings {
    /// Outer steps K (diffusion levels, one Adam step each).
    pub steps: usize,
    /// Adam's learning rate.
    pub lr: f64,
    /// The denoising term's weight lambda (`grad_term_weight`).
    pub lambda: f64,
    /// The observation term's weight v (`obs_weight`).
    pub obs_weight: f64,
}

impl RedDiffSettings {
    pub fn validate(&self) -> Result<()> {
        if !(2..=1000).contains(&self.steps) {
            return Err(Error::invalid(format!(
                "red-diff runs 2 to 1000 steps, got {}",
                self.steps
            )));
        }
        for (name, v) in [
            ("lr", self.lr),
            ("lambda", self.lambda),
            ("obs_weight", self.obs_weight),
        ] {
            if !(v.is_finite() && v >= 0.0) || (name == "lr" && v == 0.0) {
                return Err(Error::invalid(format!(
                    "solver.{name} (red-diff) must be finite and {}, got {v}",
                    if name == "lr" { "> 0" } else { ">= 0" }
                )));
            }
        }
        Ok(())
    }

    pub fn describe(&self) -> String {
        format!(
            "red-diff: steps={}, lr={}, lambda={}, obs_weight={}",
            self.steps, self.lr, self.lambda, self.obs_weight
        )
    }

    /// The model timesteps in loop order: `i * 1000 / K` for i = K-1 down to 0.
    pub fn timesteps(&self) -> Vec<usize> {
        (0..self.steps)
            .rev()
            .map(|i| i * 1000 / self.steps)
            .collect()
    }

    fn abar(&self) -> Vec<f64> {
        BetaSchedule::Linear.alphas_cumprod(1000)
    }

    /// The rows that noise mu into x_t: `sqrt(abar) mu + sqrt(1 - abar) eps`.
    pub fn noising_rows(&self) -> Vec<StepRow> {
        let abar = self.abar();
        self.timesteps()
            .iter()
            .map(|&t| StepRow {
                coef_x0: abar[t].sqrt(),
                coef_noise: (1.0 - abar[t]).sqrt(),
                ..StepRow::at(t as f64, abar[t])
            })
            .collect()
    }

    /// The rows that assemble the gradient `w (eps^ - eps) / n_x + v g_obs` (`g` holds the data
    /// gradient of `mean / 2` and the penalties), `w = lambda sqrt(1 - abar) / sqrt(abar)`.
    pub fn gradient_rows(&self, image_values: usize) -> Vec<StepRow> {
        let abar = self.abar();
        self.timesteps()
            .iter()
            .map(|&t| {
                let w = self.lambda * ((1.0 - abar[t]) / abar[t]).sqrt() / image_values as f64;
                StepRow {
                    coef_eps: w,
                    coef_noise: -w,
                    coef_grad: 1.0,
                    ..StepRow::at(t as f64, abar[t])
                }
            })
            .collect()
    }
}

/// Adam's constants in the reference.
const BETA1: f32 = 0.9;
const BETA2: f32 = 0.99;
const EPS: f32 = 1e-8;

/// RED-diff planned for one batch shape.
pub struct RedDiff<'a> {
    gpu: &'a Gpu,
    unet: &'a UNet,
    run: UNetRun,
    shape: [usize; 4],
    steps: usize,
    lr: f32,
    noising: Tensor,
    gradient: Tensor,
    step: Tensor,
    sigmas: Vec<f64>,
    mu: Tensor,
    noise: Tensor,
    g_obs: Tensor,
    grad: Tensor,
    m: Tensor,
    v: Tensor,
    data: DataTerm<'a>,
    penalties: Penalties<'a>,
    seed: u64,
    first_item: u32,
    k: Cell<usize>,
}

impl<'a> RedDiff<'a> {
    pub fn new(
        gpu: &'a Gpu,
        unet: &'a UNet,
        [n, h, w]: [usize; 3],
        settings: &RedDiffSettings,
        problem: Problem<'a>,
    ) -> Result<Self> {
        settings.validate()?;
        let c = unet.config().in_channels;
        let shape = [n, c, h, w];
        let noising = settings.noising_rows();
        let sigmas = noising.iter().map(StepRow::sigma).collect();
        let (operator, measurement, penalties) = problem.split();
        let alloc = || gpu.alloc(&shape, DType::F32);
        Ok(Self {
            gpu,
            unet,
            run: unet.plan(gpu, n, h, w)?,
            shape,
            steps: settings.steps,
            lr: settings.lr as f32,
            noising: table::upload(gpu, &noising)?,
            gradient: table::upload(gpu, &settings.gradient_rows(c * h * w))?,
            step: gpu.upload_u32(&[1], &[0])?,
            sigmas,
            mu: alloc()?,
            noise: alloc()?,
            g_obs: alloc()?,
            grad: alloc()?,
            m: alloc()?,
            v: alloc()?,
            data: DataTerm::new(gpu, operator, measurement, DataLoss::HalfMean, shape)?
                .weighted(settings.obs_weight as f32)?,
            penalties,
            seed: 0,
            first_item: 0,
            k: Cell::new(0),
        })
    }

    /// Starts from a given mu_0 (host data of the batch shape) instead of the naive estimate.
    pub fn begin_from(&mut self, seed: u64, first_item: u32, mu0: &[f32]) -> Result<()> {
        super::check_state_len("mu_0", mu0.len(), self.shape)?;
        self.seed = seed;
        self.first_item = first_item;
        self.k.set(0);
        self.penalties.set_seed(seed);
        self.gpu.write(&self.step, &[0u32])?;
        self.gpu.write(&self.mu, mu0)?;
        // Fresh Adam moments; the model output of a previous run is read with weight 0 by the
        // noising update, so it only needs to be finite.
        let mut rec = self.gpu.recorder();
        fill(&mut rec, &self.m, 0.0)?;
        fill(&mut rec, &self.v, 0.0)?;
        fill(&mut rec, &self.grad, 0.0)?;
        fill(&mut rec, self.run.output(), 0.0)?;
        rec.submit()?;
        Ok(())
    }
}

impl PosteriorSampler for RedDiff<'_> {
    fn name(&self) -> &'static str {
        "red-diff"
    }

    fn steps(&self) -> usize {
        self.steps
    }

    fn shape(&self) -> [usize; 4] {
        self.shape
    }

    /// mu_0 is the operator's naive estimate from y (one readback of y per run).
    fn begin(&mut self, seed: u64, first_item: u32) -> Result<()> {
        let y = self.gpu.download(self.data.measurement())?;
        let mu0 = self.data.operator().naive_estimate(&y);
        self.begin_from(seed, first_item, &mu0)
    }

    fn step(&self) -> Result<()> {
        let k = self.k.get();
        if k + 1 >= self.steps {
            // The reference computes the t = 0 step and keeps mu from before it.
            self.k.set(k + 1);
            return Ok(());
        }
        let noising = StepTable {
            table: &self.noising,
            step: &self.step,
        };
        let gradient = StepTable {
            table: &self.gradient,
            step: &self.step,
        };
        let x_t = self.run.input();
        let mut rec = self.gpu.recorder();
        rec.section("update");
        rng_normal_items(
            &mut rec,
            &self.noise,
            self.seed,
            STREAM_STEP,
            0,
            &self.step,
            self.first_item,
        )?;
        let noise_terms = AffineTerms {
            x0: &self.mu,
            x: &self.mu,
            model_out: self.run.output(),
            noise: &self.noise,
            grad: &self.grad,
        };
        affine_update(&mut rec, noising, noise_terms, x_t)?;
        rec.section("forward");
        step_timesteps(&mut rec, noising, self.run.timesteps())?;
        self.run.record_forward(&mut rec, self.unet)?;
        rec.section("operator");
        self.data.record_grad(&mut rec, &self.mu, &self.g_obs)?;
        let at = StepPosition {
            k,
            steps: self.steps,
            sigma: self.sigmas[k],
            counter: &self.step,
        };
        self.penalties.record(&mut rec, &self.mu, &self.g_obs, at)?;
        rec.section("update");
        let grad_terms = AffineTerms {
            x0: &self.mu,
            x: &self.mu,
            model_out: self.run.output(),
            noise: &self.noise,
            grad: &self.g_obs,
        };
        affine_update(&mut rec, gradient, grad_terms, &self.grad)?;
        let state = AdamState {
            m: &self.m,
            v: &self.v,
            iter: &self.step,
            active: None,
        };
        let settings = AdamSettings {
            lr: self.lr,
            beta1: BETA1,
            beta2: BETA2,
            eps: EPS,
        };
        adam_step(&mut rec, state, &self.grad, &self.mu, settings)?;
        advance_step(&mut rec, &self.step)?;
        rec.section("");
        rec.submit()?;
        self.k.set(k + 1);
        Ok(())
    }

    fn state(&self) -> &Tensor {
        &self.mu
    }

    fn x0(&self) -> &Tensor {
        &self.mu
    }

    fn evaluations(&self) -> Evaluations {
        Evaluations {
            forward: self.steps - 1,
            vjp: 0,
        }
    }

    fn finish(&self) -> Result<Vec<f32>> {
        self.gpu.check_errors()?;
        Ok(self.gpu.download(&self.mu)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timesteps_visit_the_reference_grid_from_the_top() {
        let s = RedDiffSettings {
            steps: 50,
            lr: 0.1,
            lambda: 0.25,
            obs_weight: 1.0,
        };
        let t = s.timesteps();
        assert_eq!((t[0], t[1], t[49]), (980, 960, 0));
        let g = s.gradient_rows(10);
        // The denoising weight is lambda snr_inv / n_x on eps^ and minus that on eps.
        assert_eq!(g[3].coef_eps, -g[3].coef_noise);
        assert!(g[0].coef_eps > g[49].coef_eps);
    }
}
