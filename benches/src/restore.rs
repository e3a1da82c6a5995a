//! `equireg bench restore`: a DPS restoration end to end on synthetic weights (timing does not
//! depend on them): seconds per restoration, ms per step split by what the step does (UNet
//! forward, UNet VJP, operator and loss, sampler update) from GPU timestamps, and what crosses
//! the bus per step (submits, uploads, readbacks: the loop should show 1, 0, 0).

use std::time::Instant;

use equireg::mpe::{self, Mpe, NetworkMpe};
use equireg::regularizer::{EquiReg, EquiRegConfig};
use equireg::restore::simulate;
use equireg::solvers::{DiffusionConfig, Guidance, Problem, Solver};
use equireg::task::Task;
use equireg_gpu::Gpu;
use equireg_nn::{UNet, UNetConfig, synthetic};
use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct RestoreBench {
    pub case: String,
    pub adapter: String,
    pub steps: usize,
    /// Steps actually run and timed (the total is extrapolated when fewer than `steps`).
    pub timed_steps: usize,
    pub ms_per_step: f64,
    /// Wall seconds for the whole restoration: planning + `steps` x ms_per_step.
    pub seconds_per_restoration: f64,
    pub setup_seconds: f64,
    /// GPU ms per step by section (forward, vjp, operator, update, and equireg on a step where
    /// it fires), from one profiled step; empty when the adapter has no timestamps inside
    /// passes.
    pub gpu_ms_by_section: Vec<(String, f64)>,
    /// EquiReg settings, when the run has the regularizer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub equireg: Option<String>,
    /// GPU ms of one step without the regularizer firing.
    pub gpu_ms_plain_step: f64,
    /// The regularizer's GPU ms on a firing step, as a percentage of a plain step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub equireg_percent_per_firing_step: Option<f64>,
    /// ... and averaged over the run (firing steps / all steps).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub equireg_percent_averaged: Option<f64>,
    /// GPU ms per kernel entry point in the equireg section of a firing step, largest first
    /// (f's forward and VJP on [x0; g x0], the transform, the error); empty without EquiReg or
    /// timestamps inside passes.
    pub equireg_ms_by_kernel: Vec<(String, f64)>,
    pub dispatches_per_step: f64,
    pub submits_per_step: f64,
    pub uploads_per_step: f64,
    pub readbacks_per_step: f64,
}

#[allow(clippy::too_many_arguments)]
pub fn run(
    gpu: &Gpu,
    task_name: &str,
    preset: &str,
    config: &UNetConfig,
    size: usize,
    batch: usize,
    respacing: &str,
    timed_steps: Option<usize>,
    equireg_settings: Option<&str>,
) -> equireg::Result<RestoreBench> {
    let started = Instant::now();
    let task = Task::load(task_name, &[])?;
    let unet = UNet::new(
        gpu,
        config,
        &synthetic::weights(0, &UNet::weight_spec(config)?),
    )?;
    let shape = [batch, config.in_channels, size, size];
    let clean: Vec<f32> = synthetic::tensor(1, "clean", &shape)
        .iter()
        .map(|v| (0.5 * v).clamp(-1.0, 1.0))
        .collect();
    let measured = simulate(gpu, &task, shape, &clean, 0, 0)?;
    let diffusion = DiffusionConfig::for_model(config, respacing);
    let steps = diffusion.diffusion()?.steps();
    let zeta = task.dps.zeta_for(steps)? as f32;
    let y = gpu.upload(&measured.operator.output_shape(), &measured.y)?;
    // EquiReg's f: "synthetic:<preset>" builds an MPE network with synthetic weights (timing
    // does not depend on them); anything else is an MPE spec (denoiser[:T], a folder).
    let cfg = match equireg_settings {
        None => None,
        Some(s) => Some(EquiRegConfig::default().with_settings(s)?),
    };
    let mpe: Option<Box<dyn Mpe + '_>> = match &cfg {
        None => None,
        Some(c) => Some(match c.mpe.strip_prefix("synthetic:") {
            Some(preset) => {
                let mc = equireg_nn::mpe::MpeConfig::preset(preset)?;
                let w = equireg_nn::mpe::Mpe::synthetic_weights(&mc, 0)?;
                Box::new(NetworkMpe {
                    net: equireg_nn::mpe::Mpe::new(gpu, &mc, &w)?,
                    label: c.mpe.clone(),
                })
            }
            None => mpe::from_spec(gpu, &c.mpe, &unet)?,
        }),
    };
    let regularizer = match (&cfg, &mpe) {
        (Some(c), Some(m)) => Some(EquiReg::new(gpu, c.clone(), m.as_ref(), shape)?),
        _ => None,
    };
    let fires = |k: usize| cfg.as_ref().is_some_and(|c| c.fires(k, steps));
    let guidance = Guidance {
        problem: Problem {
            regularizer,
            ..Problem::new(measured.operator.as_ref(), &y)
        },
        zeta,
    };
    let mut solver = Solver::new(gpu, &unet, [batch, size, size], &diffusion, Some(guidance))?;
    solver.begin(0, 0)?;
    // Warm-up: pipelines, params and bind groups are created in the first two steps (one where
    // the regularizer fires, one where it does not).
    solver.step()?;
    solver.step()?;
    gpu.sync()?;
    let setup_seconds = started.elapsed().as_secs_f64();

    // Profiled steps, split by section: the first step where EquiReg fires (when it is on) and
    // the first where it does not. Steps before them are skipped on the CPU counter only (the
    // weights are synthetic: what the sample holds does not change the time).
    solver.begin(0, 0)?;
    // (ms by section, ms by kernel within the equireg section)
    type Profile = (Vec<(String, f64)>, Vec<(String, f64)>);
    let profile_step = || -> equireg::Result<Profile> {
        gpu.set_profiling(true);
        let mut rec = gpu.recorder();
        let profiled = solver.record_step(&mut rec).and_then(|_| Ok(rec.submit()?));
        solver.advance_cpu_step();
        gpu.set_profiling(false);
        let add = |into: &mut Vec<(String, f64)>, key: &str, ms: f64| match into
            .iter_mut()
            .find(|(s, _)| s == key)
        {
            Some((_, total)) => *total += ms,
            None => into.push((key.to_string(), ms)),
        };
        let (mut by, mut kernels) = (Vec::new(), Vec::new());
        for d in profiled?.unwrap_or_default() {
            add(&mut by, d.section, d.ms);
            if d.section == "equireg" {
                add(&mut kernels, &d.kernel, d.ms);
            }
        }
        kernels.sort_by(|a, b| b.1.total_cmp(&a.1));
        Ok((by, kernels))
    };
    let first_firing = (0..steps).find(|&k| fires(k));
    let first_plain = (0..steps).find(|&k| !fires(k));
    let (mut by, mut plain, mut equireg_ms_by_kernel) = (Vec::new(), Vec::new(), Vec::new());
    for k in 0..steps {
        if Some(k) == first_firing {
            (by, equireg_ms_by_kernel) = profile_step()?;
        } else if Some(k) == first_plain {
            plain = profile_step()?.0;
        } else {
            solver.advance_cpu_step();
        }
        if first_firing.is_none_or(|f| f <= k) && first_plain.is_none_or(|f| f <= k) {
            break;
        }
    }
    if first_plain.is_none() {
        // EquiReg fires on every step: the plain step is the same step without its section.
        plain = by.iter().filter(|(s, _)| s != "equireg").cloned().collect();
    }
    if first_firing.is_none() {
        by = plain.clone();
    }
    let gpu_ms_plain_step: f64 = plain.iter().map(|(_, ms)| ms).sum();
    let equireg_ms: f64 = by
        .iter()
        .filter(|(s, _)| s == "equireg")
        .map(|(_, ms)| ms)
        .sum();
    let firing = (0..steps).filter(|&k| fires(k)).count();
    let (per_firing, averaged) = if cfg.is_some() && gpu_ms_plain_step > 0.0 {
        let p = 100.0 * equireg_ms / gpu_ms_plain_step;
        (Some(p), Some(p * firing as f64 / steps as f64))
    } else {
        (None, None)
    };

    let timed = timed_steps
        .unwrap_or(steps)
        .clamp(1, steps.saturating_sub(2).max(1));
    // From the first step again, so that the timed steps stay within the schedule.
    solver.begin(0, 0)?;
    gpu.sync()?;
    let before = gpu.counters();
    let t0 = Instant::now();
    for _ in 0..timed {
        solver.step()?;
    }
    gpu.sync()?;
    let ms_per_step = t0.elapsed().as_secs_f64() * 1e3 / timed as f64;
    let d = gpu.counters() - before;
    let per = |v: u64| v as f64 / timed as f64;
    Ok(RestoreBench {
        case: format!("restore-{task_name}-{preset}-{size}x{size}-b{batch}-{steps}steps"),
        adapter: gpu.caps().adapter_name.clone(),
        steps,
        timed_steps: timed,
        ms_per_step,
        seconds_per_restoration: setup_seconds + steps as f64 * ms_per_step / 1e3,
        setup_seconds,
        gpu_ms_by_section: by,
        equireg: equireg_settings.map(str::to_string),
        gpu_ms_plain_step,
        equireg_percent_per_firing_step: per_firing,
        equireg_percent_averaged: averaged,
        equireg_ms_by_kernel,
        dispatches_per_step: per(d.dispatches),
        submits_per_step: per(d.submits),
        uploads_per_step: per(d.uploads),
        readbacks_per_step: per(d.readbacks),
    })
}
