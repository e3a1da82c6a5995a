//! `equireg bench restore`: a DPS restoration end to end on synthetic weights (timing does not
//! depend on them): seconds per restoration, ms per step split by what the step does (UNet
//! forward, UNet VJP, operator and loss, sampler update) from GPU timestamps, and what crosses
//! the bus per step (submits, uploads, readbacks: the loop should show 1, 0, 0).

use std::time::Instant;

use equireg::restore::simulate;
use equireg::solver::{DiffusionConfig, Guidance, Solver};
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
    /// GPU ms per step by section (forward, vjp, operator, update), from one profiled step;
    /// empty when the adapter has no timestamps inside passes.
    pub gpu_ms_by_section: Vec<(String, f64)>,
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
    let guidance = Guidance {
        operator: measured.operator,
        measurement: y,
        zeta,
        regularizer: None,
    };
    let mut solver = Solver::new(gpu, &unet, [batch, size, size], &diffusion, Some(guidance))?;
    solver.begin(0, 0)?;
    // Warm-up step: pipelines, params and bind groups are created here.
    solver.step()?;
    gpu.sync()?;
    let setup_seconds = started.elapsed().as_secs_f64();

    // One profiled step, split by section.
    gpu.set_profiling(true);
    let mut rec = gpu.recorder();
    let profiled = solver.record_step(&mut rec).and_then(|_| Ok(rec.submit()?));
    gpu.set_profiling(false);
    let mut by: Vec<(String, f64)> = Vec::new();
    for d in profiled?.unwrap_or_default() {
        match by.iter_mut().find(|(s, _)| s == d.section) {
            Some((_, ms)) => *ms += d.ms,
            None => by.push((d.section.to_string(), d.ms)),
        }
    }

    let timed = timed_steps
        .unwrap_or(steps)
        .clamp(1, steps.saturating_sub(2).max(1));
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
        dispatches_per_step: per(d.dispatches),
        submits_per_step: per(d.submits),
        uploads_per_step: per(d.uploads),
        readbacks_per_step: per(d.readbacks),
    })
}
