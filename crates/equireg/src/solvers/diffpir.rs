//! DiffPIR (Zhu et al. 2023), gradient form: the data step is one gradient step on the clean
//! estimate, so it serves every operator, linear or not. After `yuanzhi-zhu/DiffPIR`
//! (`main_ddpir*.py`, `generate_mode 'DiffPIR'`, `sub_1_analytic False`, eta 0):
//!
//! ```text
//! t_i    = 999 - int(sqrt(i / (K-1)) 1000), the last t = 0        ('quad' skip, t_start 999)
//! x0     = clip(Tweedie(x_t_i))                                   (denoiser)
//! rho_i  = lambda sigma_n^2 / sigmabar_i^2,  sigmabar = sqrt((1 - abar) / abar)
//! x0    <- x0 - (1 / rho_i) grad_x0 1/2 ||y - A(x0)||^2           (norm_grad * norm / rho)
//! eps'   = (x_t - sqrt(abar_i) x0) / sqrt(1 - abar_i)             (from the corrected x0)
//! x_next = sqrt(abar') x0 + sqrt(1 - zeta) sqrt(1 - abar') eps' + sqrt(zeta) sqrt(1 - abar') z
//! ```
//!
//! At the last step (t = 0) the reference calls the network and keeps x as it is: its result
//! is the state after step K-1. The engine skips that unused call, so a run is K - 1 network
//! evaluations and the same result. Everything after the denoiser is one affine update
//! `a x0 + b x_t + d z + e g` with g the gradient at the clipped x0, so a step is: UNet
//! forward, Tweedie, data gradient (+ penalties), update.
//!
//! Units: as the reference's super-resolution script (and its unified script for every task
//! but deblurring), the data step is taken in [-1, 1] units against the measurement in [-1, 1]
//! units, while `sigma_n` is the noise level in [0, 1] units (half the task's std, floored at
//! 0.001 as the reference's `max(0.001, noise_level)`). The deblurring script steps on
//! `x / 2 + 1 / 2` against a [0, 1] measurement, a quarter of this step for a linear operator:
//! its lambda is 4 times the lambda here.
//!
//! The proximal form (`data_step = prox`, the reference's `sub_1_analytic True` closed forms)
//! replaces the gradient step by the exact minimiser of `||y - A u||^2 + rho ||u - x0||^2`:
//! `x0 <- x0 + filtered_pinv(y - A x0; rho)`, with the operator's spectral pseudo-inverse
//! (the reference solves it by FFT with circular boundaries, the engine exactly for the
//! operators' own reflect boundaries). It is written as the gradient-form update with
//! `g = rho filtered_pinv(A x0 - y; rho)` (the filter of each step scaled by its rho), so the
//! two forms share the table and the penalties keep the 1 / rho step. It serves the operators
//! with a spectral form (inpainting, super-resolution, Gaussian blur).
//!
//! Deviations, on purpose: x_T is drawn from N(0, I) for every operator (the reference starts
//! super-resolution from the upsampled measurement mixed at sqrt(abar_999) = 0.006, an
//! invisible difference); the noise comes from the engine's Philox streams; penalties
//! (EquiReg, PDE residuals) join the data step's objective at x0, so they take its step.

use std::cell::Cell;

use equireg_gpu::ops::diffusion::advance_step;
use equireg_gpu::ops::elementwise::{axpby, copy};
use equireg_gpu::ops::rng::rng_normal_items;
use equireg_gpu::ops::solver_step::{
    AffineTerms, StepTable, affine_update, step_timesteps, tweedie,
};
use equireg_gpu::{DType, Gpu, Tensor};
use equireg_nn::{UNet, UNetRun};

use super::data_term::{DataLoss, DataTerm};
use super::penalty::{Penalties, StepPosition};
use super::table::{self, StepRow};
use super::{Evaluations, PosteriorSampler, Problem, STREAM_INITIAL, STREAM_STEP};
use crate::operators::spectral::Spectral;
use crate::schedule::BetaSchedule;
use crate::{Error, Result};

/// The reference's floor on the noise level, in [0, 1] units.
const MIN_NOISE_LEVEL: f64 = 0.001;

/// DiffPIR's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct DiffPirSettings {
    /// Outer steps K (the reference's `iter_num`).
    pub steps: usize,
    /// The data step's weight lambda (rho = lambda sigma_n^2 / sigmabar^2).
    pub lambda: f64,
    /// The re-noising mix zeta in [0, 1]: 0 is deterministic (DDIM-like), 1 fully fresh noise.
    pub zeta: f64,
    /// The measurement's noise std in the engine's [-1, 1] units (the task's).
    pub noise_sigma: f64,
    /// Clamp x0 to [-1, 1] (the reference's clip_denoised).
    pub clip: bool,
    /// The data step: a gradient step (every operator) or the proximal step (operators
    /// with a pseudo-inverse).
    pub data_step: DataStep,
}

/// DiffPIR's data step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataStep {
    Gradient,
    Prox,
}

impl DataStep {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "gradient" => Ok(Self::Gradient),
            "prox" => Ok(Self::Prox),
            _ => Err(Error::invalid(format!(
                "solver.data_step (diffpir) must be \"gradient\" or \"prox\", got {s:?}"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Gradient => "gradient",
            Self::Prox => "prox",
        }
    }
}

impl DiffPirSettings {
    pub fn validate(&self) -> Result<()> {
        if self.steps < 2 {
            return Err(Error::invalid(format!(
                "diffpir needs at least 2 steps, got {}",
                self.steps
            )));
        }
        if self.steps > 1000 {
            return Err(Error::invalid(format!(
                "diffpir runs at most 1000 steps (one per training timestep), got {}",
                self.steps
            )));
        }
        if !(self.lambda.is_finite() && self.lambda > 0.0) {
            return Err(Error::invalid(format!(
                "solver.lambda (diffpir) must be finite and > 0, got {}",
                self.lambda
            )));
        }
        if !(0.0..=1.0).contains(&self.zeta) {
            return Err(Error::invalid(format!(
                "solver.zeta (diffpir) must be in [0, 1], got {}",
                self.zeta
            )));
        }
        if !(self.noise_sigma.is_finite() && self.noise_sigma >= 0.0) {
            return Err(Error::invalid(format!(
                "the noise level must be finite and >= 0, got {}",
                self.noise_sigma
            )));
        }
        Ok(())
    }

    pub fn describe(&self) -> String {
        format!(
            "diffpir: steps={}, lambda={}, zeta={}, noise_sigma={}, clip={}, data_step={}",
            self.steps,
            self.lambda,
            self.zeta,
            self.noise_sigma,
            self.clip,
            self.data_step.name()
        )
    }

    /// The model timesteps of the K steps, in loop order: the reference's 'quad' skip.
    pub fn timesteps(&self) -> Vec<usize> {
        let k = self.steps;
        (0..k)
            .map(|i| {
                if i + 1 == k {
                    return 0;
                }
                // seq[i] = int(sqrt(linspace(0, 1000^2, K))[i]); t = 999 - seq[i]. numpy's
                // linspace is i * (stop / (K - 1)): the same product, the same truncation.
                let s = (i as f64 * (1.0e6 / (k - 1) as f64)).sqrt() as usize;
                999 - s.min(999)
            })
            .collect()
    }

    fn abar() -> Vec<f64> {
        BetaSchedule::Linear.alphas_cumprod(1000)
    }

    /// The data step's rho of each step that takes one (all but the last).
    pub fn rhos(&self) -> Vec<f64> {
        let abar = Self::abar();
        let ts = self.timesteps();
        ts[..ts.len() - 1]
            .iter()
            .map(|&t| self.rho(abar[t]))
            .collect()
    }

    fn rho(&self, abar: f64) -> f64 {
        let sigma_n = (self.noise_sigma / 2.0).max(MIN_NOISE_LEVEL);
        self.lambda * sigma_n * sigma_n * abar / (1.0 - abar)
    }

    /// The step table, one row per step.
    pub fn rows(&self) -> Vec<StepRow> {
        let abar = Self::abar();
        let ts = self.timesteps();
        ts.iter()
            .enumerate()
            .map(|(i, &t)| {
                let ab = abar[t];
                let mut row = StepRow::at(t as f64, ab);
                match ts.get(i + 1) {
                    // The last step keeps x (the engine does not record it at all).
                    None => row.coef_x = 1.0,
                    Some(&t_next) => {
                        let ab_next = abar[t_next];
                        let step = 1.0 / self.rho(ab);
                        let keep = (1.0 - self.zeta).sqrt() * (1.0 - ab_next).sqrt();
                        let b = keep / (1.0 - ab).sqrt();
                        let a = ab_next.sqrt() - b * ab.sqrt();
                        row.coef_x0 = a;
                        row.coef_x = b;
                        row.coef_noise = self.zeta.sqrt() * (1.0 - ab_next).sqrt();
                        row.coef_grad = -a * step;
                    }
                }
                row
            })
            .collect()
    }
}

/// DiffPIR planned for one batch shape.
pub struct DiffPir<'a> {
    gpu: &'a Gpu,
    unet: &'a UNet,
    run: UNetRun,
    shape: [usize; 4],
    steps: usize,
    clip: bool,
    table: Tensor,
    step: Tensor,
    sigmas: Vec<f64>,
    x0: Tensor,
    noise: Tensor,
    grad: Tensor,
    next: Tensor,
    data: DataTerm<'a>,
    /// The proximal form's spectral pseudo-inverse and its filter per step (each scaled by
    /// the step's rho), with the residual `A x0 - y` between.
    prox: Option<Prox<'a>>,
    penalties: Penalties<'a>,
    seed: u64,
    first_item: u32,
    k: Cell<usize>,
}

struct Prox<'a> {
    spectral: &'a Spectral,
    filters: Vec<Tensor>,
    a_x0: Tensor,
    residual: Tensor,
}

impl<'a> DiffPir<'a> {
    pub fn new(
        gpu: &'a Gpu,
        unet: &'a UNet,
        [n, h, w]: [usize; 3],
        settings: &DiffPirSettings,
        problem: Problem<'a>,
    ) -> Result<Self> {
        settings.validate()?;
        let c = unet.config().in_channels;
        let shape = [n, c, h, w];
        let rows = settings.rows();
        let sigmas = rows.iter().map(StepRow::sigma).collect();
        let (operator, measurement, penalties) = problem.split();
        let prox = match settings.data_step {
            DataStep::Gradient => None,
            DataStep::Prox => {
                let spectral = super::ddnm::needs_spectral("diffpir's prox step", operator)?;
                let out = operator.output_shape();
                Some(Prox {
                    spectral,
                    filters: settings
                        .rhos()
                        .iter()
                        .map(|&rho| spectral.filter_scaled(gpu, rho, rho))
                        .collect::<Result<_>>()?,
                    a_x0: gpu.alloc(&out, DType::F32)?,
                    residual: gpu.alloc(&out, DType::F32)?,
                })
            }
        };
        Ok(Self {
            gpu,
            unet,
            run: unet.plan(gpu, n, h, w)?,
            shape,
            steps: rows.len(),
            clip: settings.clip,
            table: table::upload(gpu, &rows)?,
            step: gpu.upload_u32(&[1], &[0])?,
            sigmas,
            x0: gpu.alloc(&shape, DType::F32)?,
            noise: gpu.alloc(&shape, DType::F32)?,
            grad: gpu.alloc(&shape, DType::F32)?,
            next: gpu.alloc(&shape, DType::F32)?,
            data: DataTerm::new(gpu, operator, measurement, DataLoss::HalfSquaredNorm, shape)?,
            prox,
            penalties,
            seed: 0,
            first_item: 0,
            k: Cell::new(0),
        })
    }

    /// The current step's `||y - A(x0)||` per sample.
    pub fn residual_norm(&self) -> &Tensor {
        self.data.residual_norm()
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
        self.reset(seed, first_item)?;
        self.k.set(row);
        self.gpu.write(&self.step, &[row as u32])?;
        self.gpu.write(self.run.input(), x_t)?;
        Ok(())
    }

    fn reset(&mut self, seed: u64, first_item: u32) -> Result<()> {
        self.seed = seed;
        self.first_item = first_item;
        self.k.set(0);
        self.penalties.set_seed(seed);
        self.gpu.write(&self.step, &[0u32])?;
        Ok(())
    }
}

impl PosteriorSampler for DiffPir<'_> {
    fn name(&self) -> &'static str {
        "diffpir"
    }

    fn steps(&self) -> usize {
        self.steps
    }

    fn shape(&self) -> [usize; 4] {
        self.shape
    }

    fn begin(&mut self, seed: u64, first_item: u32) -> Result<()> {
        self.reset(seed, first_item)?;
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
        let st = StepTable {
            table: &self.table,
            step: &self.step,
        };
        let x = self.run.input();
        if k + 1 >= self.steps {
            // The reference's last step calls the network and keeps x: nothing to record.
            self.k.set(k + 1);
            return Ok(());
        }
        let mut rec = self.gpu.recorder();
        rec.section("forward");
        step_timesteps(&mut rec, st, self.run.timesteps())?;
        self.run.record_forward(&mut rec, self.unet)?;
        rec.section("update");
        tweedie(&mut rec, st, x, self.run.output(), &self.x0, self.clip)?;
        rec.section("operator");
        match &self.prox {
            None => self.data.record_grad(&mut rec, &self.x0, &self.grad)?,
            // g = rho filtered_pinv(A x0 - y; rho): the update's -g / rho is the prox step.
            Some(p) => {
                let op = self.data.operator();
                op.record_forward(&mut rec, &self.x0, &p.a_x0)?;
                axpby(
                    &mut rec,
                    1.0,
                    &p.a_x0,
                    -1.0,
                    self.data.measurement(),
                    &p.residual,
                )?;
                p.spectral.record_filtered_pinv(
                    &mut rec,
                    &p.residual,
                    &p.filters[k],
                    &self.grad,
                )?;
            }
        }
        let at = StepPosition {
            k,
            steps: self.steps,
            sigma: self.sigmas[k],
            counter: &self.step,
        };
        self.penalties.record(&mut rec, &self.x0, &self.grad, at)?;
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
        let terms = AffineTerms {
            x0: &self.x0,
            x,
            model_out: self.run.output(),
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
            forward: self.steps - 1,
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

    fn settings(steps: usize) -> DiffPirSettings {
        DiffPirSettings {
            steps,
            lambda: 7.0,
            zeta: 0.3,
            noise_sigma: 0.05,
            clip: true,
            data_step: DataStep::Gradient,
        }
    }

    #[test]
    fn quad_timesteps_follow_the_reference() {
        // numpy: 999 - int(sqrt(linspace(0, 1e6, 5))), last 0.
        assert_eq!(settings(5).timesteps(), vec![999, 499, 292, 133, 0]);
        let t = settings(100).timesteps();
        assert_eq!((t[0], t[1], t[98], t[99]), (999, 899, 5, 0));
        assert!(t.windows(2).all(|w| w[0] > w[1]));
    }

    #[test]
    fn zeta_one_and_zero_are_fresh_noise_and_no_noise() {
        let mut s = settings(10);
        s.zeta = 1.0;
        let rows = s.rows();
        // zeta = 1: x_next = sqrt(abar') x0 + sqrt(1 - abar') z, no x_t.
        assert!(rows[3].coef_x.abs() < 1e-15);
        s.zeta = 0.0;
        assert!(s.rows()[3].coef_noise == 0.0);
        let last = rows.last().unwrap();
        assert_eq!(
            (last.coef_x0, last.coef_x, last.coef_noise, last.coef_grad),
            (0.0, 1.0, 0.0, 0.0)
        );
    }
}
