//! One restoration, end to end, for embedding: simulate a measurement of clean images with a
//! task's operator and seeded noise, then run a posterior sampler (DPS, DiffPIR) on the GPU to
//! restore them. The CLI's `restore` is a layer over these functions.
//!
//! Reproducibility: the operator's random parameters (motion kernel, mask) come from the run's
//! seed; the measurement noise and the sampler's noise of image `k` come from the seed and `k`
//! (its item index), never from its slot in a batch, so restoring images one at a time or in
//! batches gives the same bits.

use equireg_gpu::Gpu;
use equireg_nn::UNet;

use crate::mpe::Mpe;
use crate::operators::Operator;
use crate::regularizer::{EquiReg, EquiRegConfig};
use crate::schedule::{Sampler, space_timesteps};
use crate::solvers::daps::DapsSettings;
use crate::solvers::ddnm::DdnmSettings;
use crate::solvers::diffpir::{DataStep, DiffPirSettings};
use crate::solvers::pigdm::PigdmSettings;
use crate::solvers::red_diff::RedDiffSettings;
use crate::solvers::sitcom::{EquiRegAt, SitcomSettings};
use crate::solvers::{DiffusionConfig, Problem, SolverKind, SolverSpec};
use crate::task::Task;
use crate::{Error, Result};

/// A measurement and the operator that made it, for a batch `[N, C, H, W]`.
pub struct Measured {
    pub operator: Box<dyn Operator>,
    /// Host copy of y, `operator.output_shape()`.
    pub y: Vec<f32>,
}

/// The seed of item `item`'s measurement noise: a SplitMix64 mix, so neighbouring items and
/// seeds get unrelated streams.
pub fn item_seed(seed: u64, item: u64) -> u64 {
    let mut z = seed ^ item.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// y = A(x) + noise for clean images `x` (host, NCHW in [-1, 1], shape `shape`), images being
/// items `first_item..first_item + N`.
pub fn simulate(
    gpu: &Gpu,
    task: &Task,
    shape: [usize; 4],
    x: &[f32],
    seed: u64,
    first_item: u64,
) -> Result<Measured> {
    if x.len() != shape.iter().product::<usize>() {
        return Err(Error::invalid(format!(
            "{} values for images of shape {shape:?}",
            x.len()
        )));
    }
    let operator = task.build_operator(gpu, shape, seed)?;
    let out_shape = operator.output_shape();
    let xt = gpu.upload(&shape, x)?;
    let yt = gpu.alloc(&out_shape, equireg_gpu::DType::F32)?;
    let mut rec = gpu.recorder();
    operator.record_forward(&mut rec, &xt, &yt)?;
    rec.submit()?;
    let clean = gpu.download(&yt)?;
    let per = clean.len() / shape[0];
    let noise = task.noise();
    let mut y = Vec::with_capacity(clean.len());
    for (k, item) in clean.chunks(per).enumerate() {
        y.extend(noise.apply_cpu(item, item_seed(seed, first_item + k as u64)));
    }
    Ok(Measured { operator, y })
}

/// What a restoration runs, before the task resolves it.
#[derive(Clone, Debug)]
pub struct RestoreSettings {
    pub solver: SolverKind,
    /// The outer steps: for DPS a guided-diffusion respacing ("100", "ddim50"), for the other
    /// solvers a count.
    pub respacing: String,
    /// DPS's reverse-step rule.
    pub sampler: Sampler,
    /// DPS's step size; None: the task's zeta for the number of steps (`DpsConfig::zeta_for`).
    pub zeta: Option<f64>,
    pub seed: u64,
}

impl RestoreSettings {
    /// The number of outer steps.
    pub fn steps(&self) -> Result<usize> {
        match self.solver {
            SolverKind::Dps => Ok(space_timesteps(1000, self.respacing.trim())?.len()),
            _ => self.respacing.trim().parse::<usize>().map_err(|_| {
                Error::invalid(format!(
                    "--steps {:?}: {} takes a number of steps (respacings like \"ddim50\" are \
                     DPS's)",
                    self.respacing,
                    self.solver.name()
                ))
            }),
        }
    }

    /// The solver with the task's settings for it.
    pub fn resolve(&self, task: &Task, unet: &UNet) -> Result<SolverSpec> {
        let steps = self.steps()?;
        Ok(match self.solver {
            SolverKind::Dps => {
                let mut config = DiffusionConfig::for_model(unet.config(), &self.respacing);
                config.sampler = self.sampler;
                let zeta = match self.zeta {
                    Some(z) => z,
                    None => task.dps.zeta_for(steps)?,
                };
                SolverSpec::Dps { config, zeta }
            }
            SolverKind::Daps => {
                let p = &task.solver.daps;
                let s = DapsSettings {
                    steps,
                    ode_steps: p.ode_steps,
                    langevin_steps: p.langevin_steps,
                    lr: p.lr,
                    lr_min_ratio: p.lr_min_ratio,
                    tau: p.tau,
                    sigma_max: p.sigma_max,
                    sigma_min: p.sigma_min,
                    ode_sigma_min: p.ode_sigma_min,
                };
                s.validate()?;
                SolverSpec::Daps(s)
            }
            SolverKind::Ddnm => {
                let p = &task.solver.ddnm;
                let s = DdnmSettings {
                    steps,
                    eta: p.eta,
                    noise_sigma: task.noise().std(),
                    penalty_step: p.penalty_step,
                };
                s.validate()?;
                SolverSpec::Ddnm(s)
            }
            SolverKind::DiffPir => {
                let p = &task.solver.diffpir;
                let s = DiffPirSettings {
                    steps,
                    lambda: p.lambda,
                    zeta: p.zeta,
                    noise_sigma: task.noise().std(),
                    clip: true,
                    data_step: DataStep::parse(&p.data_step)?,
                };
                s.validate()?;
                SolverSpec::DiffPir(s)
            }
            SolverKind::Pigdm => {
                let p = &task.solver.pigdm;
                let s = PigdmSettings {
                    steps,
                    eta: p.eta,
                    weight: p.weight,
                    noise_sigma: task.noise().std(),
                };
                s.validate()?;
                SolverSpec::Pigdm(s)
            }
            SolverKind::Sitcom => {
                let p = &task.solver.sitcom;
                let s = SitcomSettings {
                    steps,
                    inner_steps: p.inner_steps,
                    lr: p.lr,
                    noise_level: p.noise_level.unwrap_or(task.noise().std()),
                    dc_scale: p.dc_scale,
                    equireg_steps: p.equireg_steps,
                    equireg_at: EquiRegAt::parse(&p.equireg_at)?,
                };
                s.validate()?;
                SolverSpec::Sitcom(s)
            }
            SolverKind::RedDiff => {
                let p = &task.solver.red_diff;
                let s = RedDiffSettings {
                    steps,
                    lr: p.lr,
                    lambda: p.lambda,
                    obs_weight: p.obs_weight,
                };
                s.validate()?;
                SolverSpec::RedDiff(s)
            }
        })
    }
}

/// Restores the images of a measurement with the solver `spec` (plus EquiReg's penalty when
/// given), from sampler seed `seed`. `each_step(k, total)` is called after each step is
/// submitted. Returns the restored batch (host, NCHW, unclamped model range).
#[allow(clippy::too_many_arguments)]
pub fn restore<'a>(
    gpu: &'a Gpu,
    unet: &'a UNet,
    spec: &SolverSpec,
    measured: &Measured,
    seed: u64,
    equireg: Option<(&EquiRegConfig, &'a dyn Mpe)>,
    first_item: u32,
    mut each_step: impl FnMut(usize, usize),
) -> Result<Vec<f32>> {
    let shape = measured.operator.input_shape();
    let [n, _, h, w] = shape;
    let y = gpu.upload(&measured.operator.output_shape(), &measured.y)?;
    let regularizer = match equireg {
        None => None,
        Some((cfg, mpe)) => Some(EquiReg::new(gpu, cfg.clone(), mpe, shape)?),
    };
    let problem = Problem {
        regularizer,
        ..Problem::new(measured.operator.as_ref(), &y)
    };
    let mut solver = crate::solvers::build(gpu, unet, [n, h, w], spec, problem)?;
    let steps = solver.steps();
    solver.begin(seed, first_item)?;
    solver.run(&mut |k| {
        each_step(k, steps);
        Ok(())
    })
}

/// The sampler seed of restart `r`; restart 0 is the run's own seed, so a single restart is a
/// plain run, bit for bit.
pub fn restart_seed(seed: u64, r: usize) -> u64 {
    if r == 0 {
        seed
    } else {
        item_seed(seed ^ 0x5245_5354_4152_5453, r as u64)
    }
}

/// Per image, the data residual ||y - A(clamp(x, -1, 1))|| (L2 over the image's measurement),
/// computed on the host with the operator's reference forward.
pub fn residuals(operator: &dyn Operator, y: &[f32], x: &[f32]) -> Result<Vec<f64>> {
    let n = operator.input_shape()[0];
    let ax = operator.forward_cpu(&x.iter().map(|v| v.clamp(-1.0, 1.0)).collect::<Vec<_>>());
    if ax.len() != y.len() || n == 0 {
        return Err(Error::invalid(format!(
            "measurement of {} values, operator output of {}",
            y.len(),
            ax.len()
        )));
    }
    let per = y.len() / n;
    Ok(ax
        .chunks(per)
        .zip(y.chunks(per))
        .map(|(a, b)| {
            a.iter()
                .zip(b)
                .map(|(p, q)| (*p as f64 - *q as f64).powi(2))
                .sum::<f64>()
                .sqrt()
        })
        .collect())
}

/// What `restore_best_of` returns.
pub struct BestOf {
    /// The kept result of every image (host, NCHW, unclamped model range).
    pub x: Vec<f32>,
    /// Per image, the restart that was kept.
    pub chosen: Vec<usize>,
    /// Per image, the kept result's data residual ||y - A(x)||.
    pub residuals: Vec<f64>,
}

/// `restore` run `restarts` times on the same measurement from different sampler seeds
/// (`restart_seed`), keeping for each image the result with the smallest data residual
/// ||y - A(x)||: no ground truth is involved. DPS on phase retrieval, whose runs often settle on a
/// shifted or twin-image solution, is reported as the best of several runs in the literature;
/// this is that protocol with the measurement as the judge. `each_step` gets (restart, step,
/// steps).
#[allow(clippy::too_many_arguments)]
pub fn restore_best_of<'a>(
    gpu: &'a Gpu,
    unet: &'a UNet,
    spec: &SolverSpec,
    measured: &Measured,
    seed: u64,
    equireg: Option<(&EquiRegConfig, &'a dyn Mpe)>,
    first_item: u32,
    restarts: usize,
    mut each_step: impl FnMut(usize, usize, usize),
) -> Result<BestOf> {
    if restarts == 0 {
        return Err(Error::invalid("restarts must be at least 1"));
    }
    let mut best: Option<BestOf> = None;
    for r in 0..restarts {
        let x = restore(
            gpu,
            unet,
            spec,
            measured,
            restart_seed(seed, r),
            equireg,
            first_item,
            |k, total| each_step(r, k, total),
        )?;
        let res = residuals(measured.operator.as_ref(), &measured.y, &x)?;
        match best.as_mut() {
            None => {
                best = Some(BestOf {
                    x,
                    chosen: vec![0; res.len()],
                    residuals: res,
                })
            }
            Some(b) => {
                let per = x.len() / res.len();
                for (k, rk) in res.into_iter().enumerate() {
                    if rk < b.residuals[k] {
                        b.x[k * per..(k + 1) * per].copy_from_slice(&x[k * per..(k + 1) * per]);
                        b.residuals[k] = rk;
                        b.chosen[k] = r;
                    }
                }
            }
        }
    }
    Ok(best.expect("restarts >= 1"))
}
