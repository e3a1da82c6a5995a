//! The reverse diffusion on the GPU: unconditional sampling (DDPM / DDIM) and Diffusion
//! Posterior Sampling (Chung et al. 2023), with the whole loop resident on the GPU.
//!
//! One step, recorded into one pass and submitted once:
//!
//! ```text
//! t          = table[step].timestep                      (set_timesteps)
//! eps, v     = unet(x_t, t)                              (UNet forward)
//! x0         = clip(c1 x_t - c2 eps)                     (posterior_step, with
//! x'         = a x0 + b x_t + sigma(v) z                  z from the counted Philox draw)
//! -- DPS only --
//! r          = y - A(x0);  L = sum_n ||r_n||             (data term: operator forward,
//! dL/dA(x0)  = -r_n / ||r_n||                             reduce per sample, cotangent,
//! dL/dx0     = J_A^T dL/dA(x0)                            operator VJP)
//! dL/dx0    += d penalties / dx0                         (PDE residuals, EquiReg)
//! dL/dx_t    = c1 m dx0 + J_unet^T (-c2 m dx0)           (x0_cotangent, UNet VJP)
//! x_{t-1}    = x' - zeta dL/dx_t                         (guided_update)
//! -- unguided: x_{t-1} = x' --
//! step      += 1                                         (advance_step)
//! ```
//!
//! Every per-step number lives in a coefficient table and a step counter on the GPU, so the
//! steps record identical dispatches, upload nothing and read nothing back. The norm is taken per
//! sample (the reference takes it over the whole batch, coupling the images), so an image's
//! result does not depend on what else is in its batch. The noise of image `k` is keyed by its
//! item index (`first_item + slot`), not by its batch slot, for the same reason.

use equireg_gpu::ops::diffusion::{
    StepState, TweedieOptions, advance_step, guided_update, posterior_step, set_timesteps,
    x0_cotangent,
};
use equireg_gpu::ops::elementwise::copy;
use equireg_gpu::ops::rng::rng_normal_items;
use equireg_gpu::{DType, Gpu, Recorder, Tensor};
use equireg_nn::{UNet, UNetConfig, UNetRun};

use std::cell::Cell;

use super::data_term::{DataLoss, DataTerm};
use super::penalty::{Penalties, StepPosition};
use super::{Evaluations, PosteriorSampler, Problem, STREAM_INITIAL, STREAM_STEP};
use crate::regularizer::EquiReg;
use crate::schedule::{BetaSchedule, Diffusion, Sampler, StepCoefficients, VarianceKind};
use crate::{Error, Result};

/// How the reverse process is discretised.
#[derive(Clone, Debug)]
pub struct DiffusionConfig {
    pub schedule: BetaSchedule,
    /// Training timesteps of the model (1000 for every published checkpoint).
    pub train_steps: usize,
    /// guided-diffusion respacing: "100", "ddim50", "10,20,30".
    pub respacing: String,
    pub sampler: Sampler,
    pub variance: VarianceKind,
    /// Clamp Tweedie's x0 to [-1, 1] (the reference's clip_denoised).
    pub clip_denoised: bool,
}

impl DiffusionConfig {
    /// The reference settings for a model: linear schedule over 1000 steps, ancestral sampling,
    /// the learned-range variance for learn_sigma models (fixed-large otherwise), clipping on.
    pub fn for_model(model: &UNetConfig, respacing: &str) -> Self {
        Self {
            schedule: BetaSchedule::Linear,
            train_steps: 1000,
            respacing: respacing.to_string(),
            sampler: Sampler::Ddpm,
            variance: if model.learn_sigma {
                VarianceKind::LearnedRange
            } else {
                VarianceKind::FixedLarge
            },
            clip_denoised: true,
        }
    }

    pub fn diffusion(&self) -> Result<Diffusion> {
        Diffusion::new(self.schedule, self.train_steps, &self.respacing)
    }
}

/// DPS's guidance: the problem and the step size zeta.
pub struct Guidance<'m> {
    pub problem: Problem<'m>,
    pub zeta: f32,
}

/// The guidance term's pieces and tensors, allocated once.
struct GuidanceState<'m> {
    data: DataTerm<'m>,
    penalties: Penalties<'m>,
    zeta: f32,
    dx0: Tensor,
    direct: Tensor,
}

/// A reverse-diffusion run planned for one batch shape: UNet activations, coefficient table,
/// step counter and every intermediate tensor are allocated here, once.
pub struct Solver<'a> {
    gpu: &'a Gpu,
    unet: &'a UNet,
    run: UNetRun,
    shape: [usize; 4],
    steps: usize,
    table: Tensor,
    step: Tensor,
    noise: Tensor,
    x0: Tensor,
    x_prev: Tensor,
    opts: TweedieOptions,
    guidance: Option<GuidanceState<'a>>,
    seed: u64,
    first_item: u32,
    /// Per step row: the noise level sqrt((1 - abar_t) / abar_t), for penalties' schedules.
    sigmas: Vec<f64>,
    /// Loop index of the next step (the CPU's copy of the GPU counter, for schedules).
    k: Cell<usize>,
}

impl<'a> Solver<'a> {
    /// Plans a run for `n` images of `h` x `w`. With `guidance`, each step also differentiates
    /// the data term through the operator and the UNet (DPS).
    pub fn new(
        gpu: &'a Gpu,
        unet: &'a UNet,
        [n, h, w]: [usize; 3],
        config: &DiffusionConfig,
        guidance: Option<Guidance<'a>>,
    ) -> Result<Solver<'a>> {
        let mc = unet.config();
        let c = mc.in_channels;
        let shape = [n, c, h, w];
        let model_out = mc.model_out_channels();
        if model_out != c && model_out != 2 * c {
            return Err(Error::invalid(format!(
                "the model outputs {model_out} channels for {c} input channels; a diffusion \
                 model must output epsilon (C) or epsilon and variance (2C)"
            )));
        }
        let learned = config.variance == VarianceKind::LearnedRange;
        if learned && model_out != 2 * c {
            return Err(Error::invalid(
                "the learned-range variance needs a learn_sigma model (2C output channels)",
            ));
        }
        let diffusion = config.diffusion()?;
        let table = diffusion.step_table(config.sampler, config.variance);
        let rows: Vec<f32> = table.iter().flat_map(StepCoefficients::row).collect();
        let sigmas: Vec<f64> = table
            .iter()
            .map(|c| {
                (c.sqrt_recip_abar * c.sqrt_recip_abar - 1.0)
                    .max(0.0)
                    .sqrt()
            })
            .collect();
        let steps = diffusion.steps();
        let run = if guidance.is_some() {
            unet.plan_with_vjp(gpu, n, h, w)?
        } else {
            unet.plan(gpu, n, h, w)?
        };
        let guidance = match guidance {
            None => None,
            Some(g) => Some(GuidanceState::new(gpu, g, shape)?),
        };
        Ok(Solver {
            gpu,
            unet,
            run,
            shape,
            steps,
            table: gpu.upload(&[steps, StepCoefficients::ROW], &rows)?,
            step: gpu.upload_u32(&[1], &[0])?,
            noise: gpu.alloc(&shape, DType::F32)?,
            x0: gpu.alloc(&shape, DType::F32)?,
            x_prev: gpu.alloc(&shape, DType::F32)?,
            opts: TweedieOptions {
                learned_variance: learned,
                clip: config.clip_denoised,
            },
            guidance,
            seed: 0,
            first_item: 0,
            sigmas,
            k: Cell::new(0),
        })
    }

    pub fn steps(&self) -> usize {
        self.steps
    }

    pub fn shape(&self) -> [usize; 4] {
        self.shape
    }

    /// The current x_t (after [`Solver::finish`]: the result).
    pub fn state(&self) -> &Tensor {
        self.run.input()
    }

    /// The current step's clean estimate x0 (for progress frames).
    pub fn x0(&self) -> &Tensor {
        &self.x0
    }

    /// The current step's proposal x' (before the guidance correction).
    pub fn proposal(&self) -> &Tensor {
        &self.x_prev
    }

    /// The current step's ||y - A(x0)|| per sample, when guided.
    pub fn residual_norm(&self) -> Option<&Tensor> {
        self.guidance.as_ref().map(|g| g.data.residual_norm())
    }

    /// Starts a run: step counter 0 and x_T drawn on the GPU from `seed`; image `k` of the
    /// batch draws as item `first_item + k`, so its noise is that of a single run of that item.
    pub fn begin(&mut self, seed: u64, first_item: u32) -> Result<()> {
        self.seed = seed;
        self.first_item = first_item;
        self.k.set(0);
        if let Some(g) = self.guidance.as_mut() {
            g.penalties.set_seed(seed);
        }
        self.gpu.write(&self.step, &[0u32])?;
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

    /// Starts a run from a given x_t (host data of the batch shape) at step row `row` (0 for
    /// x_T) instead of drawing x_T: for tests against references and for resuming.
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
        self.seed = seed;
        self.first_item = first_item;
        self.k.set(row);
        if let Some(g) = self.guidance.as_mut() {
            g.penalties.set_seed(seed);
        }
        self.gpu.write(&self.step, &[row as u32])?;
        self.gpu.write(self.run.input(), x_t)?;
        Ok(())
    }

    /// Records one reverse step (see the module docs), labelled by section for profiles. Steps
    /// must be recorded and submitted in order (`step` does both); EquiReg's schedule follows the
    /// CPU's count of them.
    pub fn record_step(&self, rec: &mut Recorder) -> Result<()> {
        let st = StepState {
            table: &self.table,
            step: &self.step,
        };
        let x = self.run.input();
        rec.section("forward");
        set_timesteps(rec, st, self.run.timesteps())?;
        self.run.record_forward(rec, self.unet)?;
        rec.section("update");
        rng_normal_items(
            rec,
            &self.noise,
            self.seed,
            STREAM_STEP,
            0,
            &self.step,
            self.first_item,
        )?;
        posterior_step(
            rec,
            st,
            x,
            self.run.output(),
            &self.noise,
            &self.x0,
            &self.x_prev,
            self.opts,
        )?;
        match &self.guidance {
            None => copy(rec, &self.x_prev, x)?,
            Some(g) => {
                rec.section("operator");
                g.data.record_grad(rec, &self.x0, &g.dx0)?;
                let k = self.k.get();
                let at = StepPosition {
                    k,
                    steps: self.steps,
                    sigma: self.sigmas.get(k).copied().unwrap_or(0.0),
                    counter: &self.step,
                };
                g.penalties.record(rec, &self.x0, &g.dx0, at)?;
                x0_cotangent(
                    rec,
                    st,
                    x,
                    self.run.output(),
                    &g.dx0,
                    self.run.cotangent()?,
                    &g.direct,
                    self.opts.clip,
                )?;
                rec.section("vjp");
                self.run.record_vjp(rec, self.unet)?;
                rec.section("update");
                guided_update(
                    rec,
                    &self.x_prev,
                    &g.direct,
                    self.run.input_grad()?,
                    x,
                    g.zeta,
                )?;
            }
        }
        advance_step(rec, &self.step)?;
        rec.section("");
        Ok(())
    }

    /// Counts a step recorded with [`Solver::record_step`] and submitted by the caller (what
    /// [`Solver::step`] does itself), so that EquiReg's schedule stays in step.
    pub fn advance_cpu_step(&self) {
        self.k.set(self.k.get() + 1);
    }

    /// Records and submits one step.
    pub fn step(&self) -> Result<()> {
        let mut rec = self.gpu.recorder();
        self.record_step(&mut rec)?;
        rec.submit()?;
        self.k.set(self.k.get() + 1);
        Ok(())
    }

    /// The regularizer, when the run has one.
    pub fn regularizer(&self) -> Option<&EquiReg<'a>> {
        self.guidance.as_ref()?.penalties.regularizer.as_ref()
    }

    /// Runs all steps from [`Solver::begin`]; `each_step(k)` is called after step k is submitted
    /// (it may read frames back; by default nothing is). Returns the final batch, downloaded.
    pub fn run(&self, mut each_step: impl FnMut(usize) -> Result<()>) -> Result<Vec<f32>> {
        for k in 0..self.steps {
            self.step()?;
            each_step(k)?;
        }
        self.finish()
    }

    /// Waits for the GPU and downloads x (the result once every step has run).
    pub fn finish(&self) -> Result<Vec<f32>> {
        self.gpu.check_errors()?;
        Ok(self.gpu.download(self.run.input())?)
    }
}

impl<'m> GuidanceState<'m> {
    fn new(gpu: &Gpu, g: Guidance<'m>, shape: [usize; 4]) -> Result<Self> {
        if !g.zeta.is_finite() || g.zeta < 0.0 {
            return Err(Error::invalid(format!(
                "the guidance step size must be finite and >= 0, got {}",
                g.zeta
            )));
        }
        let (operator, measurement, penalties) = g.problem.split();
        Ok(Self {
            data: DataTerm::new(gpu, operator, measurement, DataLoss::Norm, shape)?,
            penalties,
            zeta: g.zeta,
            dx0: gpu.alloc(&shape, DType::F32)?,
            direct: gpu.alloc(&shape, DType::F32)?,
        })
    }
}

impl PosteriorSampler for Solver<'_> {
    fn name(&self) -> &'static str {
        if self.guidance.is_some() {
            "dps"
        } else {
            "unconditional"
        }
    }

    fn steps(&self) -> usize {
        self.steps
    }

    fn shape(&self) -> [usize; 4] {
        self.shape
    }

    fn begin(&mut self, seed: u64, first_item: u32) -> Result<()> {
        Solver::begin(self, seed, first_item)
    }

    fn step(&self) -> Result<()> {
        Solver::step(self)
    }

    fn state(&self) -> &Tensor {
        Solver::state(self)
    }

    fn x0(&self) -> &Tensor {
        Solver::x0(self)
    }

    fn evaluations(&self) -> Evaluations {
        Evaluations {
            forward: self.steps,
            vjp: if self.guidance.is_some() {
                self.steps
            } else {
                0
            },
        }
    }

    fn finish(&self) -> Result<Vec<f32>> {
        Solver::finish(self)
    }
}
