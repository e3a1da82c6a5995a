//! `equireg bench restore --solver S`: any posterior sampler on the seam, end to end on
//! synthetic weights (timing does not depend on them): ms per outer step, network evaluations,
//! and what crosses the bus per step (dispatches, submits, uploads, readbacks).

use std::time::Instant;

use equireg::restore::{RestoreSettings, simulate};
use equireg::schedule::Sampler;
use equireg::solvers::{self, Problem, SolverKind};
use equireg::task::Task;
use equireg_gpu::Gpu;
use equireg_nn::{UNet, UNetConfig, synthetic};
use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct SolverBench {
    pub case: String,
    pub adapter: String,
    /// The solver's resolved settings.
    pub solver: String,
    pub steps: usize,
    pub timed_steps: usize,
    pub ms_per_step: f64,
    /// Planning + `steps` x ms_per_step.
    pub seconds_per_restoration: f64,
    pub setup_seconds: f64,
    /// UNet forwards and input VJPs of a whole run.
    pub network_forwards: usize,
    pub network_vjps: usize,
    pub dispatches_per_step: f64,
    pub submits_per_step: f64,
    pub uploads_per_step: f64,
    pub readbacks_per_step: f64,
}

/// Times `timed_steps` (default: all but the two warm-up steps) outer steps of `solver` on
/// `task` with a `preset` network of synthetic weights at `size` x `size`, batch `batch`.
#[allow(clippy::too_many_arguments)]
pub fn run(
    gpu: &Gpu,
    task_name: &str,
    preset: &str,
    config: &UNetConfig,
    size: usize,
    batch: usize,
    solver: SolverKind,
    steps: &str,
    timed_steps: Option<usize>,
) -> equireg::Result<SolverBench> {
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
    let settings = RestoreSettings {
        solver,
        respacing: steps.to_string(),
        sampler: Sampler::Ddpm,
        zeta: None,
        seed: 0,
    };
    let spec = settings.resolve(&task, &unet)?;
    let y = gpu.upload(&measured.operator.output_shape(), &measured.y)?;
    let problem = Problem::new(measured.operator.as_ref(), &y);
    let mut s = solvers::build(gpu, &unet, [batch, size, size], &spec, problem)?;
    let steps = s.steps();
    s.begin(0, 0)?;
    // Warm-up: pipelines, params and bind groups are created in the first steps.
    let warm = 2.min(steps.saturating_sub(1));
    for _ in 0..warm {
        s.step()?;
    }
    gpu.sync()?;
    let setup_seconds = started.elapsed().as_secs_f64();
    let timed = timed_steps.unwrap_or(steps).clamp(1, (steps - warm).max(1));
    let before = gpu.counters();
    let t0 = Instant::now();
    for _ in 0..timed {
        s.step()?;
    }
    gpu.sync()?;
    let ms_per_step = t0.elapsed().as_secs_f64() * 1e3 / timed as f64;
    let d = gpu.counters() - before;
    let per = |v: u64| v as f64 / timed as f64;
    let ev = s.evaluations();
    Ok(SolverBench {
        case: format!(
            "restore-{}-{task_name}-{preset}-{size}x{size}-b{batch}-{steps}steps",
            solver.name()
        ),
        adapter: gpu.caps().adapter_name.clone(),
        solver: spec.describe(),
        steps,
        timed_steps: timed,
        ms_per_step,
        seconds_per_restoration: setup_seconds + steps as f64 * ms_per_step / 1e3,
        setup_seconds,
        network_forwards: ev.forward,
        network_vjps: ev.vjp,
        dispatches_per_step: per(d.dispatches),
        submits_per_step: per(d.submits),
        uploads_per_step: per(d.uploads),
        readbacks_per_step: per(d.readbacks),
    })
}
