//! DAPS (Zhang et al. 2025): decoupled annealing posterior sampling. Each annealing level runs a
//! few Euler steps of the probability-flow ODE from the level's noise to an x0 estimate, then
//! Langevin dynamics on x0 under a Gaussian prior around that estimate and the measurement's
//! likelihood, then re-noises to the next level with fresh noise. After
//! `zhangbingliang2019/DAPS` (`sampler.py::DAPS`, `cores/mcmc.py` with `mc_algo langevin` and
//! `prior_solver gaussian`, `cores/scheduler.py` EDM poly-7, `model/precond.py::VPPrecond`,
//! `configs/sampler/edm_daps.yaml`, `configs/task/*.yaml` group `pixel`):
//!
//! ```text
//! sigma_i = (s_max^(1/7) + i/K (s_min^(1/7) - s_max^(1/7)))^7, i < K;  sigma_K = 0
//!           (s_max 100, s_min 0.1: the grid's K + 1 points without the last, then 0)
//! x = sigma_0 z
//! for i in 0..K:
//!     xh = x;  s_j = poly-7 grid from sigma_i to 0.01 with n + 1 points   (n ODE steps)
//!     for j in 0..n:  xh += (s_{j+1} - s_j) eps^(xh / sqrt(1 + s_j^2), 999 t(s_j))
//!                     t(s) = (sqrt(0.1^2 + 2 19.9 ln(1 + s^2)) - 0.1) / 19.9
//!     lr = lr0 (1 + i / (K + 1) (lr_min_ratio - 1));  u = xh
//!     for m in 0..M:  u += lr (-grad_u ||A(u) - y||^2 / tau^2 + (xh - u) / sigma_i^2)
//!                          + sqrt(2 lr) z
//!     x = u + sigma_{i+1} z
//! return x
//! ```
//!
//! The Euler step `xh + (s' - s)(xh - D(xh, s)) / s` with `D = xh - s eps^` is
//! `xh + (s' - s) eps^`; the ODE returns x at s = 0.01, not D(x, 0.01), as the reference's
//! `DiffusionPFODE.sample` does. x0 is never clipped (VPPrecond). The loss is per sample, so the
//! batch is independent, as in the reference.
//!
//! On the seam: two tables over the ODE counter (the network input `c_in xh` with its
//! timestep, and the Euler update), two over the level counter (the Langevin update and the
//! re-noising), one affine update each. Each annealing level is one submit: n network
//! evaluations and M operator forward + VJP pairs, no readback.
//!
//! Penalties (EquiReg, PDE residuals) join the data term inside the Langevin potential, under
//! its `1 / tau^2` weight: at every Langevin step of a level where they fire, their gradient at
//! u is added to the data term's, so the potential is `(||A(u) - y||^2 + P(u)) / tau^2 +
//! ||u - xh||^2 / (2 sigma^2)`. EquiReg's group element is drawn afresh at each Langevin step.
//!
//! Deviations, on purpose: the reference returns zeros when an iterate holds a NaN (a host
//! check per Langevin step); the engine does not read back, and a non-finite result is refused
//! when the run's output is written. Phase retrieval uses the engine's operator (DPS's
//! convention, the [-1, 1] image padded), not DAPS's [0, 1] variant. The noise comes from the
//! engine's Philox streams.

use std::cell::Cell;

use equireg_gpu::ops::diffusion::advance_step;
use equireg_gpu::ops::elementwise::{copy, fill, scale};
use equireg_gpu::ops::rng::rng_normal_items;
use equireg_gpu::ops::solver_step::{AffineTerms, StepTable, affine_update, step_timesteps};
use equireg_gpu::{DType, Gpu, Tensor};
use equireg_nn::{UNet, UNetRun};

use super::data_term::{DataLoss, DataTerm};
use super::penalty::{Penalties, StepPosition};
use super::table::{self, StepRow};
use super::{Evaluations, PosteriorSampler, Problem, STREAM_INITIAL, STREAM_RENOISE, STREAM_STEP};
use crate::{Error, Result};

/// DAPS's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct DapsSettings {
    /// Annealing levels K (the outer steps).
    pub steps: usize,
    /// Euler steps of the probability-flow ODE per level (`edm_daps.yaml`: 5).
    pub ode_steps: usize,
    /// Langevin steps per level (`configs/task/*.yaml`: 100).
    pub langevin_steps: usize,
    /// The Langevin step size at the first level (per task in the reference).
    pub lr: f64,
    /// The step size's final fraction (linear decay over the levels; 0.01).
    pub lr_min_ratio: f64,
    /// The likelihood's standard deviation tau (0.01).
    pub tau: f64,
    /// The annealing grid's first noise level (100).
    pub sigma_max: f64,
    /// The annealing grid's end point, itself never used (0.1).
    pub sigma_min: f64,
    /// Where each level's ODE stops (0.01).
    pub ode_sigma_min: f64,
}

impl DapsSettings {
    pub fn validate(&self) -> Result<()> {
        if !(1..=1000).contains(&self.steps) {
            return Err(Error::invalid(format!(
                "daps runs 1 to 1000 annealing levels, got {}",
                self.steps
            )));
        }
        for (name, v) in [
            ("ode_steps", self.ode_steps),
            ("langevin_steps", self.langevin_steps),
        ] {
            if !(1..=1000).contains(&v) {
                return Err(Error::invalid(format!(
                    "solver.{name} (daps) must be 1 to 1000, got {v}"
                )));
            }
        }
        for (name, v) in [
            ("lr", self.lr),
            ("lr_min_ratio", self.lr_min_ratio),
            ("tau", self.tau),
            ("sigma_max", self.sigma_max),
            ("sigma_min", self.sigma_min),
            ("ode_sigma_min", self.ode_sigma_min),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(Error::invalid(format!(
                    "solver.{name} (daps) must be finite and > 0, got {v}"
                )));
            }
        }
        if self.sigma_min >= self.sigma_max {
            return Err(Error::invalid(format!(
                "solver.sigma_min (daps) must be below sigma_max {}, got {}",
                self.sigma_max, self.sigma_min
            )));
        }
        if self.ode_sigma_min >= self.sigma_min {
            return Err(Error::invalid(format!(
                "solver.ode_sigma_min (daps) must be below sigma_min {}, got {}",
                self.sigma_min, self.ode_sigma_min
            )));
        }
        Ok(())
    }

    pub fn describe(&self) -> String {
        format!(
            "daps: steps={}, ode_steps={}, langevin_steps={}, lr={}, lr_min_ratio={}, tau={}, \
             sigma_max={}, sigma_min={}, ode_sigma_min={}",
            self.steps,
            self.ode_steps,
            self.langevin_steps,
            self.lr,
            self.lr_min_ratio,
            self.tau,
            self.sigma_max,
            self.sigma_min,
            self.ode_sigma_min
        )
    }

    /// The annealing levels sigma_0 .. sigma_K (sigma_K = 0).
    pub fn levels(&self) -> Vec<f64> {
        let k = self.steps;
        let mut s: Vec<f64> = (0..k)
            .map(|i| poly7(self.sigma_max, self.sigma_min, i as f64 / k as f64))
            .collect();
        s.push(0.0);
        s
    }

    /// Level i's ODE grid: n + 1 points from sigma_i down to `ode_sigma_min`.
    pub fn ode_grid(&self, sigma: f64) -> Vec<f64> {
        let n = self.ode_steps;
        (0..=n)
            .map(|j| poly7(sigma, self.ode_sigma_min, j as f64 / n as f64))
            .collect()
    }

    /// Level i's Langevin step size.
    pub fn lr_at(&self, i: usize) -> f64 {
        let ratio = i as f64 / (self.steps + 1) as f64;
        self.lr * (1.0 + ratio * (self.lr_min_ratio - 1.0))
    }

    /// Per ODE step, in loop order: the network input `c_in xh` at its timestep.
    pub fn ode_input_rows(&self) -> Vec<StepRow> {
        self.ode_rows(|s, _| {
            let abar = 1.0 / (1.0 + s * s);
            StepRow {
                coef_x: abar.sqrt(),
                ..StepRow::at(vp_timestep(s), abar)
            }
        })
    }

    /// Per ODE step, in loop order: the Euler update `xh + (s' - s) eps^`.
    pub fn ode_update_rows(&self) -> Vec<StepRow> {
        self.ode_rows(|s, next| StepRow {
            coef_x: 1.0,
            coef_eps: next - s,
            ..StepRow::at(vp_timestep(s), 1.0 / (1.0 + s * s))
        })
    }

    fn ode_rows(&self, row: impl Fn(f64, f64) -> StepRow) -> Vec<StepRow> {
        let levels = self.levels();
        levels[..self.steps]
            .iter()
            .flat_map(|&sigma| {
                let grid = self.ode_grid(sigma);
                grid.windows(2).map(|w| row(w[0], w[1])).collect::<Vec<_>>()
            })
            .collect()
    }

    /// Per level: the Langevin update `u + lr ((xh - u) / sigma^2 - g / tau^2) + sqrt(2 lr) z`
    /// (g the gradient of `||A(u) - y||^2` plus the penalties').
    pub fn langevin_rows(&self) -> Vec<StepRow> {
        let levels = self.levels();
        (0..self.steps)
            .map(|i| {
                let (sigma, lr) = (levels[i], self.lr_at(i));
                let pull = lr / (sigma * sigma);
                StepRow {
                    coef_x0: pull,
                    coef_x: 1.0 - pull,
                    coef_noise: (2.0 * lr).sqrt(),
                    coef_grad: -lr / (self.tau * self.tau),
                    ..StepRow::at(vp_timestep(sigma), 1.0 / (1.0 + sigma * sigma))
                }
            })
            .collect()
    }

    /// Per level: the re-noising `u + sigma_{i+1} z`.
    pub fn renoise_rows(&self) -> Vec<StepRow> {
        let levels = self.levels();
        (0..self.steps)
            .map(|i| StepRow {
                coef_x: 1.0,
                coef_noise: levels[i + 1],
                ..StepRow::at(vp_timestep(levels[i]), 1.0 / (1.0 + levels[i] * levels[i]))
            })
            .collect()
    }
}

/// The EDM poly-7 interpolation between noise levels `from` (r = 0) and `to` (r = 1).
fn poly7(from: f64, to: f64, r: f64) -> f64 {
    let p = 7.0;
    (from.powf(1.0 / p) + r * (to.powf(1.0 / p) - from.powf(1.0 / p))).powf(p)
}

/// VPPrecond's model timestep for noise level `sigma`: `999 t(sigma)`, the inverse of the
/// linear VP schedule (beta_min 0.1, beta_d 19.9) that the discrete 1000-step schedule samples.
pub fn vp_timestep(sigma: f64) -> f64 {
    let (beta_min, beta_d) = (0.1f64, 19.9f64);
    let t = ((beta_min * beta_min + 2.0 * beta_d * (1.0 + sigma * sigma).ln()).sqrt() - beta_min)
        / beta_d;
    999.0 * t
}

/// `table` read through `counter`.
fn on<'t>(table: &'t Tensor, counter: &'t Tensor) -> StepTable<'t> {
    StepTable {
        table,
        step: counter,
    }
}

/// DAPS planned for one batch shape.
pub struct Daps<'a> {
    gpu: &'a Gpu,
    unet: &'a UNet,
    run: UNetRun,
    shape: [usize; 4],
    steps: usize,
    ode_steps: usize,
    langevin_steps: usize,
    sigma_max: f32,
    levels: Vec<f64>,
    ode_input: Tensor,
    ode_update: Tensor,
    langevin: Tensor,
    renoise: Tensor,
    /// Counts ODE steps over the run.
    ode_step: Tensor,
    /// Counts Langevin steps over the run (their noise draws and EquiReg's elements).
    mc_step: Tensor,
    /// Counts annealing levels.
    level: Tensor,
    x: Tensor,
    xh: Tensor,
    u: Tensor,
    next: Tensor,
    noise: Tensor,
    grad: Tensor,
    data: DataTerm<'a>,
    penalties: Penalties<'a>,
    seed: u64,
    first_item: u32,
    k: Cell<usize>,
}

impl<'a> Daps<'a> {
    pub fn new(
        gpu: &'a Gpu,
        unet: &'a UNet,
        [n, h, w]: [usize; 3],
        settings: &DapsSettings,
        problem: Problem<'a>,
    ) -> Result<Self> {
        settings.validate()?;
        let c = unet.config().in_channels;
        let shape = [n, c, h, w];
        let (operator, measurement, penalties) = problem.split();
        let alloc = || gpu.alloc(&shape, DType::F32);
        let counter = || gpu.upload_u32(&[1], &[0]);
        Ok(Self {
            gpu,
            unet,
            run: unet.plan(gpu, n, h, w)?,
            shape,
            steps: settings.steps,
            ode_steps: settings.ode_steps,
            langevin_steps: settings.langevin_steps,
            sigma_max: settings.sigma_max as f32,
            levels: settings.levels(),
            ode_input: table::upload(gpu, &settings.ode_input_rows())?,
            ode_update: table::upload(gpu, &settings.ode_update_rows())?,
            langevin: table::upload(gpu, &settings.langevin_rows())?,
            renoise: table::upload(gpu, &settings.renoise_rows())?,
            ode_step: counter()?,
            mc_step: counter()?,
            level: counter()?,
            x: alloc()?,
            xh: alloc()?,
            u: alloc()?,
            next: alloc()?,
            noise: alloc()?,
            grad: alloc()?,
            data: DataTerm::new(gpu, operator, measurement, DataLoss::SquaredNorm, shape)?,
            penalties,
            seed: 0,
            first_item: 0,
            k: Cell::new(0),
        })
    }

    /// Starts from a given state x (host data of the batch shape) at annealing level `level`
    /// (0 for the start) instead of drawing it: for tests against references and for resuming.
    pub fn begin_from(
        &mut self,
        seed: u64,
        first_item: u32,
        x: &[f32],
        level: usize,
    ) -> Result<()> {
        if level >= self.steps {
            return Err(Error::invalid(format!(
                "annealing level {level} is past the last of {} levels",
                self.steps
            )));
        }
        super::check_state_len("x", x.len(), self.shape)?;
        self.reset(seed, first_item, level)?;
        self.gpu.write(&self.x, x)?;
        Ok(())
    }

    fn reset(&mut self, seed: u64, first_item: u32, level: usize) -> Result<()> {
        self.seed = seed;
        self.first_item = first_item;
        self.k.set(level);
        self.penalties.set_seed(seed);
        self.gpu
            .write(&self.ode_step, &[(level * self.ode_steps) as u32])?;
        self.gpu
            .write(&self.mc_step, &[(level * self.langevin_steps) as u32])?;
        self.gpu.write(&self.level, &[level as u32])?;
        // Terms an update reads with weight 0 need only be finite.
        let mut rec = self.gpu.recorder();
        fill(&mut rec, self.run.output(), 0.0)?;
        fill(&mut rec, &self.grad, 0.0)?;
        fill(&mut rec, &self.noise, 0.0)?;
        rec.submit()?;
        Ok(())
    }
}

impl PosteriorSampler for Daps<'_> {
    fn name(&self) -> &'static str {
        "daps"
    }

    fn steps(&self) -> usize {
        self.steps
    }

    fn shape(&self) -> [usize; 4] {
        self.shape
    }

    /// x = sigma_max z, z the run's initial draw.
    fn begin(&mut self, seed: u64, first_item: u32) -> Result<()> {
        self.reset(seed, first_item, 0)?;
        let mut rec = self.gpu.recorder();
        rng_normal_items(
            &mut rec,
            &self.noise,
            seed,
            STREAM_INITIAL,
            0,
            &self.level,
            first_item,
        )?;
        scale(&mut rec, &self.noise, &self.x, self.sigma_max, 0.0)?;
        rec.submit()?;
        Ok(())
    }

    fn step(&self) -> Result<()> {
        let k = self.k.get();
        let out = self.run.output();
        let mut rec = self.gpu.recorder();
        // 1. The prior: Euler steps of the probability-flow ODE from x to xh.
        rec.section("update");
        copy(&mut rec, &self.x, &self.xh)?;
        for _ in 0..self.ode_steps {
            let input = on(&self.ode_input, &self.ode_step);
            let euler = on(&self.ode_update, &self.ode_step);
            let terms = AffineTerms {
                x0: &self.xh,
                x: &self.xh,
                model_out: out,
                noise: &self.noise,
                grad: &self.grad,
            };
            rec.section("update");
            affine_update(&mut rec, input, terms, self.run.input())?;
            rec.section("forward");
            step_timesteps(&mut rec, input, self.run.timesteps())?;
            self.run.record_forward(&mut rec, self.unet)?;
            rec.section("update");
            affine_update(&mut rec, euler, terms, &self.next)?;
            copy(&mut rec, &self.next, &self.xh)?;
            advance_step(&mut rec, &self.ode_step)?;
        }
        // 2. Langevin dynamics on x0 around xh.
        copy(&mut rec, &self.xh, &self.u)?;
        let at = StepPosition {
            k,
            steps: self.steps,
            sigma: self.levels[k],
            counter: &self.mc_step,
        };
        for _ in 0..self.langevin_steps {
            rec.section("operator");
            self.data.record_grad(&mut rec, &self.u, &self.grad)?;
            self.penalties.record(&mut rec, &self.u, &self.grad, at)?;
            rec.section("update");
            rng_normal_items(
                &mut rec,
                &self.noise,
                self.seed,
                STREAM_STEP,
                0,
                &self.mc_step,
                self.first_item,
            )?;
            let terms = AffineTerms {
                x0: &self.xh,
                x: &self.u,
                model_out: out,
                noise: &self.noise,
                grad: &self.grad,
            };
            affine_update(&mut rec, on(&self.langevin, &self.level), terms, &self.next)?;
            copy(&mut rec, &self.next, &self.u)?;
            advance_step(&mut rec, &self.mc_step)?;
        }
        // 3. Re-noising to the next level, with fresh noise.
        rng_normal_items(
            &mut rec,
            &self.noise,
            self.seed,
            STREAM_RENOISE,
            0,
            &self.level,
            self.first_item,
        )?;
        let terms = AffineTerms {
            x0: &self.u,
            x: &self.u,
            model_out: out,
            noise: &self.noise,
            grad: &self.grad,
        };
        affine_update(&mut rec, on(&self.renoise, &self.level), terms, &self.x)?;
        advance_step(&mut rec, &self.level)?;
        rec.section("");
        rec.submit()?;
        self.k.set(k + 1);
        Ok(())
    }

    fn state(&self) -> &Tensor {
        &self.x
    }

    /// The level's Langevin result (the ODE's estimate corrected by the measurement).
    fn x0(&self) -> &Tensor {
        &self.u
    }

    fn evaluations(&self) -> Evaluations {
        Evaluations {
            forward: self.steps * self.ode_steps,
            vjp: 0,
        }
    }

    fn finish(&self) -> Result<Vec<f32>> {
        self.gpu.check_errors()?;
        Ok(self.gpu.download(&self.x)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference() -> DapsSettings {
        DapsSettings {
            steps: 200,
            ode_steps: 5,
            langevin_steps: 100,
            lr: 1e-4,
            lr_min_ratio: 0.01,
            tau: 0.01,
            sigma_max: 100.0,
            sigma_min: 0.1,
            ode_sigma_min: 0.01,
        }
    }

    #[test]
    fn levels_follow_the_reference_grid() {
        let s = reference();
        let l = s.levels();
        assert_eq!(l.len(), 201);
        assert!((l[0] - 100.0).abs() < 1e-12);
        // The grid's end point 0.1 is dropped and 0 appended.
        assert!(l[199] > 0.1 && l[199] < 0.11, "{}", l[199]);
        assert_eq!(l[200], 0.0);
        let g = s.ode_grid(l[10]);
        assert_eq!(g.len(), 6);
        assert!((g[0] - l[10]).abs() < 1e-12 && (g[5] - 0.01).abs() < 1e-12);
        // The reference's ratio is level / (K + 1).
        assert!((s.lr_at(200) - 1e-4 * (1.0 - 200.0 / 201.0 * 0.99)).abs() < 1e-15);
    }

    #[test]
    fn vp_timestep_inverts_the_vp_schedule() {
        // abar(t) = exp(-(0.1 t + 19.9 t^2 / 2)) at t = 0.5, sigma = sqrt(1 / abar - 1).
        let t: f64 = 0.5;
        let abar = (-(0.1 * t + 19.9 * t * t / 2.0)).exp();
        let sigma = (1.0 / abar - 1.0).sqrt();
        assert!((vp_timestep(sigma) - 999.0 * t).abs() < 1e-9);
        assert_eq!(vp_timestep(0.0), 0.0);
    }

    #[test]
    fn the_euler_rows_step_along_the_grid() {
        let s = DapsSettings {
            steps: 3,
            ..reference()
        };
        let up = s.ode_update_rows();
        assert_eq!(up.len(), 15);
        let total: f64 = up[..5].iter().map(|r| r.coef_eps).sum();
        assert!((total - (0.01 - s.levels()[0])).abs() < 1e-9);
        let input = s.ode_input_rows();
        assert!((input[0].coef_x - 1.0 / (1.0f64 + 1e4).sqrt()).abs() < 1e-12);
        assert_eq!(s.renoise_rows()[2].coef_noise, 0.0);
    }
}
