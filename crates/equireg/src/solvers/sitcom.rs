//! SITCOM (Alkhouri et al. 2025): step-wise triple-consistent sampling. At each of a few
//! diffusion steps the network input is optimised with Adam so that the clean estimate it
//! yields fits the measurement (backward and measurement consistency), with a per-sample early
//! stop at the noise level, then the estimate is re-noised to the next step (forward
//! consistency). After `sjames40/SITCOM` (`SITCOM_with_noise.py`, its copy of diffusers'
//! `DDIMScheduler`; argparse and README: 20 steps, 30 Adam iterations, lr 0.02, noise level
//! 0.05):
//!
//! ```text
//! x ~ N(0, I)
//! for t in (N-1) d, ..., d, 0   (d = 1000 / N, integer division):
//!     abar = abar_t;  abar' = abar_{t-d}, or abar_0 at the last step
//!     v = x;  Adam(v, lr, betas (0.9, 0.999)), fresh
//!     for k in 1..K:
//!         x0 = clamp((v - sqrt(1 - abar) eps^(v, t)) / sqrt(abar), -1, 1)
//!         L  = ||A(x0) - y||^2
//!         if L < (sigma_stop + 0.001)^2 m: stop        (m: values of one measurement)
//!         v  <- Adam step on dL/dv                    (through A, the clamp and the UNet)
//!     (inpainting) x0 = clamp(x0 - scale grad ||A(x0) - y||^2)
//!     x = sqrt(abar') x0 + sqrt(1 - abar') z
//! ```
//!
//! With EquiReg (the official integration, `Anima-Lab/Equireg` `src/sitcom`): after the data
//! loop of a step where EquiReg fires, a separate phase of `equireg_steps` Adam steps (SITCOM's
//! lr, fresh state) on u = x0 with EquiReg's penalty alone; u replaces x0 for the re-noising.
//! Other penalties (PDE residuals) join the data term at x0 inside the Adam loop, and so does
//! EquiReg with `equireg_at = "inner"` (on x0 before the UNet VJP, as in DPS).
//!
//! On the GPU, the inner loop is recorded K times in the step's one submit: every sample
//! carries an active flag that the loss kernel clears once its loss is below the threshold, and
//! the Adam kernel leaves a stopped sample's input and moments alone, so each image of a batch
//! stops on its own (the reference's test is on the whole batch's loss) without a readback.
//! A stopped sample's later forwards recompute the same x0 from the same input. The last
//! iteration's gradient and Adam step are not recorded: the reference computes them and then
//! overwrites v by the re-noising. So a step is K network forwards and K - 1 VJPs.
//!
//! The result is the last step's clean estimate x0. The noisy script instead returns the
//! intermediate x0 with the best PSNR against the ground truth; the engine never looks at the
//! ground truth. Deviations, on purpose: x_T is one N(0, I) draw (the reference mixes two draws
//! to the same law); phase retrieval uses the engine's operator (the [-1, 1] image padded), not
//! SITCOM's [0, 1] variant; the noise comes from the engine's Philox streams.

use std::cell::Cell;

use equireg_gpu::ops::diffusion::advance_step;
use equireg_gpu::ops::elementwise::{add, axpby, clamp, copy, fill};
use equireg_gpu::ops::rng::rng_normal_items;
use equireg_gpu::ops::solver_step::{
    AdamSettings, AdamState, AffineTerms, StepTable, adam_step, affine_update, reset_counter,
    step_timesteps, stop_flags, tweedie, tweedie_cotangent,
};
use equireg_gpu::{DType, Gpu, Tensor};
use equireg_nn::{UNet, UNetRun};

use super::data_term::{DataLoss, DataTerm};
use super::penalty::{Penalties, StepPosition};
use super::table::{self, StepRow};
use super::{Evaluations, PosteriorSampler, Problem, STREAM_INITIAL, STREAM_STEP};
use crate::schedule::BetaSchedule;
use crate::{Error, Result};

/// SITCOM's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct SitcomSettings {
    /// Diffusion steps N.
    pub steps: usize,
    /// Adam iterations per step K (network forwards; the stop may end them early).
    pub inner_steps: usize,
    /// Adam's learning rate (also the EquiReg phase's).
    pub lr: f64,
    /// The stopping rule's noise level (`--noiselevel`, [-1, 1] units).
    pub noise_level: f64,
    /// The inpainting scripts' hard data-consistency step size on x0 (0: none).
    pub dc_scale: f64,
    /// Adam steps of the EquiReg phase (30 in the official integration).
    pub equireg_steps: usize,
    /// Where EquiReg acts.
    pub equireg_at: EquiRegAt,
}

/// Where SITCOM's EquiReg acts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EquiRegAt {
    /// The official integration: a separate Adam phase on x0 after the data loop.
    Phase,
    /// Inside the data loop: its gradient at x0 joins the data term's before the UNet VJP, as
    /// in DPS (no extra steps).
    Inner,
}

impl EquiRegAt {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "phase" => Ok(Self::Phase),
            "inner" => Ok(Self::Inner),
            _ => Err(Error::invalid(format!(
                "solver.equireg_at (sitcom) must be \"phase\" or \"inner\", got {s:?}"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Phase => "phase",
            Self::Inner => "inner",
        }
    }
}

impl SitcomSettings {
    pub fn validate(&self) -> Result<()> {
        if !(1..=1000).contains(&self.steps) {
            return Err(Error::invalid(format!(
                "sitcom runs 1 to 1000 steps, got {}",
                self.steps
            )));
        }
        for (name, v) in [
            ("inner_steps", self.inner_steps),
            ("equireg_steps", self.equireg_steps),
        ] {
            if v > 1000 || (name == "inner_steps" && v == 0) {
                return Err(Error::invalid(format!(
                    "solver.{name} (sitcom) must be {} to 1000, got {v}",
                    if name == "inner_steps" { 1 } else { 0 }
                )));
            }
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(Error::invalid(format!(
                "solver.lr (sitcom) must be finite and > 0, got {}",
                self.lr
            )));
        }
        for (name, v) in [
            ("noise_level", self.noise_level),
            ("dc_scale", self.dc_scale),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(Error::invalid(format!(
                    "solver.{name} (sitcom) must be finite and >= 0, got {v}"
                )));
            }
        }
        Ok(())
    }

    pub fn describe(&self) -> String {
        format!(
            "sitcom: steps={}, inner_steps={}, lr={}, noise_level={}, dc_scale={}, \
             equireg_steps={}, equireg_at={}",
            self.steps,
            self.inner_steps,
            self.lr,
            self.noise_level,
            self.dc_scale,
            self.equireg_steps,
            self.equireg_at.name()
        )
    }

    /// The model timesteps in loop order: `(N - 1 - i) (1000 / N)`, diffusers' DDIM spacing.
    pub fn timesteps(&self) -> Vec<usize> {
        let d = 1000 / self.steps;
        (0..self.steps).rev().map(|i| i * d).collect()
    }

    /// One row per step: Tweedie at t, and the re-noising `sqrt(abar') x0 + sqrt(1 - abar') z`.
    pub fn rows(&self) -> Vec<StepRow> {
        let abar: Vec<f64> = BetaSchedule::Linear.alphas_cumprod(1000);
        let d = 1000 / self.steps;
        self.timesteps()
            .iter()
            .map(|&t| {
                // diffusers' prev_timestep < 0 takes final_alpha_cumprod = alphas_cumprod[0].
                let next = abar[t.saturating_sub(d)];
                StepRow {
                    coef_x0: next.sqrt(),
                    coef_noise: (1.0 - next).sqrt(),
                    ..StepRow::at(t as f64, abar[t])
                }
            })
            .collect()
    }
}

/// Adam's constants in the reference (torch's defaults).
const BETA1: f32 = 0.9;
const BETA2: f32 = 0.999;
const EPS: f32 = 1e-8;

/// SITCOM planned for one batch shape.
pub struct Sitcom<'a> {
    gpu: &'a Gpu,
    unet: &'a UNet,
    run: UNetRun,
    shape: [usize; 4],
    steps: usize,
    inner_steps: usize,
    equireg_steps: usize,
    dc_scale: f32,
    equireg_at: EquiRegAt,
    threshold: f32,
    adam: AdamSettings,
    table: Tensor,
    step: Tensor,
    /// Adam's step count within the current optimisation (reset for each).
    adam_iter: Tensor,
    /// Counts the EquiReg phase's steps over the run (its group elements are keyed by it).
    phase_step: Tensor,
    sigmas: Vec<f64>,
    x0: Tensor,
    dx0: Tensor,
    direct: Tensor,
    grad: Tensor,
    scratch: Tensor,
    noise: Tensor,
    m: Tensor,
    v: Tensor,
    active: Tensor,
    data: DataTerm<'a>,
    penalties: Penalties<'a>,
    seed: u64,
    first_item: u32,
    k: Cell<usize>,
}

impl<'a> Sitcom<'a> {
    pub fn new(
        gpu: &'a Gpu,
        unet: &'a UNet,
        [n, h, w]: [usize; 3],
        settings: &SitcomSettings,
        problem: Problem<'a>,
    ) -> Result<Self> {
        settings.validate()?;
        let c = unet.config().in_channels;
        let shape = [n, c, h, w];
        let rows = settings.rows();
        let sigmas = rows.iter().map(StepRow::sigma).collect();
        let (operator, measurement, penalties) = problem.split();
        let per_measurement = operator.output_shape().iter().product::<usize>() / n;
        let stop = settings.noise_level + 0.001;
        let alloc = || gpu.alloc(&shape, DType::F32);
        let counter = || gpu.upload_u32(&[1], &[0]);
        Ok(Self {
            gpu,
            unet,
            run: unet.plan_with_vjp(gpu, n, h, w)?,
            shape,
            steps: settings.steps,
            inner_steps: settings.inner_steps,
            equireg_steps: settings.equireg_steps,
            dc_scale: settings.dc_scale as f32,
            equireg_at: settings.equireg_at,
            threshold: (stop * stop * per_measurement as f64) as f32,
            adam: AdamSettings {
                lr: settings.lr as f32,
                beta1: BETA1,
                beta2: BETA2,
                eps: EPS,
            },
            table: table::upload(gpu, &rows)?,
            step: counter()?,
            adam_iter: counter()?,
            phase_step: counter()?,
            sigmas,
            x0: alloc()?,
            dx0: alloc()?,
            direct: alloc()?,
            grad: alloc()?,
            scratch: alloc()?,
            noise: alloc()?,
            m: alloc()?,
            v: alloc()?,
            active: gpu.alloc(&[n], DType::F32)?,
            data: DataTerm::new(gpu, operator, measurement, DataLoss::SquaredNorm, shape)?,
            penalties,
            seed: 0,
            first_item: 0,
            k: Cell::new(0),
        })
    }

    /// Starts from a given x (host data of the batch shape) at step row `row` (0 for x_T)
    /// instead of drawing x_T: for tests against references and for resuming.
    pub fn begin_from(&mut self, seed: u64, first_item: u32, x: &[f32], row: usize) -> Result<()> {
        if row >= self.steps {
            return Err(Error::invalid(format!(
                "step row {row} is past the last of {} steps",
                self.steps
            )));
        }
        super::check_state_len("x_T", x.len(), self.shape)?;
        self.reset(seed, first_item, row)?;
        self.gpu.write(self.run.input(), x)?;
        Ok(())
    }

    fn reset(&mut self, seed: u64, first_item: u32, row: usize) -> Result<()> {
        self.seed = seed;
        self.first_item = first_item;
        self.k.set(row);
        self.penalties.set_seed(seed);
        self.gpu.write(&self.step, &[row as u32])?;
        self.gpu
            .write(&self.phase_step, &[(row * self.equireg_steps) as u32])?;
        // Terms an update reads with weight 0 need only be finite.
        let mut rec = self.gpu.recorder();
        fill(&mut rec, self.run.output(), 0.0)?;
        fill(&mut rec, &self.grad, 0.0)?;
        rec.submit()?;
        Ok(())
    }

    /// The noisy state x of the next step (the network input before its optimisation).
    pub fn noisy_state(&self) -> &Tensor {
        self.run.input()
    }

    /// A fresh Adam optimisation: zero moments and step count.
    fn fresh_adam(&self, rec: &mut equireg_gpu::Recorder) -> Result<()> {
        fill(rec, &self.m, 0.0)?;
        fill(rec, &self.v, 0.0)?;
        reset_counter(rec, &self.adam_iter)?;
        Ok(())
    }
}

impl PosteriorSampler for Sitcom<'_> {
    fn name(&self) -> &'static str {
        "sitcom"
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
        let st = StepTable {
            table: &self.table,
            step: &self.step,
        };
        let v_in = self.run.input();
        let out = self.run.output();
        let at = StepPosition {
            k,
            steps: self.steps,
            sigma: self.sigmas[k],
            counter: &self.step,
        };
        let mut rec = self.gpu.recorder();
        // Backward and measurement consistency: Adam on the network input v (= x at first).
        rec.section("update");
        self.fresh_adam(&mut rec)?;
        fill(&mut rec, &self.active, 1.0)?;
        rec.section("forward");
        step_timesteps(&mut rec, st, self.run.timesteps())?;
        for i in 0..self.inner_steps {
            rec.section("forward");
            self.run.record_forward(&mut rec, self.unet)?;
            rec.section("update");
            tweedie(&mut rec, st, v_in, out, &self.x0, true)?;
            rec.section("operator");
            self.data.record_grad(&mut rec, &self.x0, &self.dx0)?;
            stop_flags(
                &mut rec,
                self.data.residual_norm(),
                &self.active,
                self.threshold,
            )?;
            if i + 1 == self.inner_steps {
                break;
            }
            self.penalties
                .record_extra(&mut rec, &self.x0, &self.dx0, at)?;
            if self.equireg_at == EquiRegAt::Inner {
                self.penalties
                    .record_regularizer(&mut rec, &self.x0, &self.dx0, at)?;
            }
            tweedie_cotangent(
                &mut rec,
                st,
                v_in,
                out,
                &self.dx0,
                self.run.cotangent()?,
                &self.direct,
                true,
            )?;
            rec.section("vjp");
            self.run.record_vjp(&mut rec, self.unet)?;
            rec.section("update");
            add(&mut rec, &self.direct, self.run.input_grad()?, &self.grad)?;
            let state = AdamState {
                m: &self.m,
                v: &self.v,
                iter: &self.adam_iter,
                active: Some(&self.active),
            };
            adam_step(&mut rec, state, &self.grad, v_in, self.adam)?;
            advance_step(&mut rec, &self.adam_iter)?;
        }
        // The inpainting scripts' hard data consistency on x0.
        if self.dc_scale > 0.0 {
            rec.section("operator");
            self.data.record_grad(&mut rec, &self.x0, &self.dx0)?;
            rec.section("update");
            axpby(
                &mut rec,
                1.0,
                &self.x0,
                -self.dc_scale,
                &self.dx0,
                &self.scratch,
            )?;
            clamp(&mut rec, &self.scratch, &self.x0, -1.0, 1.0)?;
        }
        // EquiReg's phase: Adam on u = x0 with the penalty alone.
        if self.equireg_at == EquiRegAt::Phase
            && self.equireg_steps > 0
            && self.penalties.regularizer_fires(at)
        {
            self.fresh_adam(&mut rec)?;
            let phase = StepPosition {
                counter: &self.phase_step,
                ..at
            };
            for _ in 0..self.equireg_steps {
                fill(&mut rec, &self.grad, 0.0)?;
                self.penalties
                    .record_regularizer(&mut rec, &self.x0, &self.grad, phase)?;
                rec.section("update");
                let state = AdamState {
                    m: &self.m,
                    v: &self.v,
                    iter: &self.adam_iter,
                    active: None,
                };
                adam_step(&mut rec, state, &self.grad, &self.x0, self.adam)?;
                advance_step(&mut rec, &self.adam_iter)?;
                advance_step(&mut rec, &self.phase_step)?;
            }
        }
        // Forward consistency: re-noise x0 to the next step.
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
            x: &self.x0,
            model_out: out,
            noise: &self.noise,
            grad: &self.grad,
        };
        affine_update(&mut rec, st, terms, &self.scratch)?;
        copy(&mut rec, &self.scratch, v_in)?;
        advance_step(&mut rec, &self.step)?;
        rec.section("");
        rec.submit()?;
        self.k.set(k + 1);
        Ok(())
    }

    /// The last step's clean estimate (the result after the last step).
    fn state(&self) -> &Tensor {
        &self.x0
    }

    fn x0(&self) -> &Tensor {
        &self.x0
    }

    fn evaluations(&self) -> Evaluations {
        Evaluations {
            forward: self.steps * self.inner_steps,
            vjp: self.steps * (self.inner_steps - 1),
        }
    }

    fn finish(&self) -> Result<Vec<f32>> {
        self.gpu.check_errors()?;
        Ok(self.gpu.download(&self.x0)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timesteps_and_rows_follow_diffusers_ddim_spacing() {
        let s = SitcomSettings {
            steps: 20,
            inner_steps: 30,
            lr: 0.02,
            noise_level: 0.05,
            dc_scale: 0.0,
            equireg_steps: 30,
            equireg_at: EquiRegAt::Phase,
        };
        let t = s.timesteps();
        assert_eq!((t[0], t[1], t[19]), (950, 900, 0));
        let rows = s.rows();
        // The last step re-noises with abar_0, not 1.
        let abar0 = 1.0 - 1e-4;
        assert!((rows[19].coef_x0 - f64::sqrt(abar0)).abs() < 1e-12);
        assert!(rows[19].coef_noise > 0.0);
        assert_eq!(rows[0].timestep, 950.0);
    }
}
