//! `equireg bench ...`: benchmarks; results as a table or JSON.

use std::time::Duration;

use clap::{Args, Subcommand};
use equireg_benches::{BenchOptions, harness};
use equireg_gpu::Gpu;

use crate::checks;

#[derive(Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    what: BenchWhat,
}

#[derive(Subcommand)]
enum BenchWhat {
    /// Kernel benchmarks: conv2d, matmul, group_norm, attention, elementwise, reductions, RNG
    Kernels(KernelArgs),
    /// UNet forward: ms, GFLOP per forward, GFLOP/s, planned memory (synthetic weights)
    Unet(UnetBenchArgs),
    /// A restoration end to end (synthetic weights): seconds per restoration, ms per step (for
    /// DPS split into forward, VJP, operator and update), network evaluations,
    /// submits/uploads/readbacks per step
    Restore(RestoreBenchArgs),
}

#[derive(Args)]
struct RestoreBenchArgs {
    /// Task preset (sr4, gaussian-deblur, motion-deblur, box-inpaint, random-inpaint,
    /// phase-retrieval, hdr)
    #[arg(long, default_value = "sr4")]
    task: String,
    /// Solver: dps (profiled by section), daps, ddnm, diffpir, pigdm, sitcom or red-diff (the task preset's
    /// settings)
    #[arg(long, default_value = "dps")]
    solver: String,
    /// Architecture preset: ffhq256, imagenet256, small64, photo64, tiny32
    #[arg(long, default_value = "small64")]
    preset: String,
    /// Image side in pixels (default: the preset's image_size)
    #[arg(long)]
    size: Option<usize>,
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Sampling steps (respacing for dps, a count for the other solvers)
    #[arg(long, default_value = "100")]
    steps: String,
    /// Time only this many steps and extrapolate the total (slow adapters)
    #[arg(long)]
    timed_steps: Option<usize>,
    /// With EquiReg (settings as `restore --equireg`); mpe=synthetic:vq-f4 (the default here)
    /// times the VQ-f4 encoder with synthetic weights
    #[arg(long, value_name = "KEY=VALUE,...")]
    equireg: Option<String>,
    /// Print JSON instead of text
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct UnetBenchArgs {
    /// Architecture preset: ffhq256, imagenet256, small64, photo64, tiny32
    #[arg(long, default_value = "small64")]
    preset: String,
    /// Image side in pixels (default: the preset's image_size)
    #[arg(long)]
    size: Option<usize>,
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Also time forward + VJP (the gradient DPS needs) and report the VJP/forward ratio
    #[arg(long)]
    vjp: bool,
    /// Print JSON instead of text
    #[arg(long)]
    json: bool,
    /// Seconds to spend repeating after the warm-up
    #[arg(long, default_value_t = 5.0)]
    min_time: f64,
    /// At least this many timed repetitions
    #[arg(long, default_value_t = 3)]
    min_reps: usize,
}

#[derive(Args)]
struct KernelArgs {
    /// Print a JSON array (case, ms, gflops, gbps, adapter, ...) instead of a table
    #[arg(long)]
    json: bool,
    /// Only cases whose name contains this
    #[arg(long)]
    filter: Option<String>,
    /// Seconds to spend repeating each case after its warm-up
    #[arg(long, default_value_t = 2.0)]
    min_time: f64,
    /// Time with the wall clock even when the adapter has GPU timestamps
    #[arg(long)]
    wall_clock: bool,
}

pub fn run(args: &BenchArgs, gpu: &Gpu) -> anyhow::Result<()> {
    match &args.what {
        BenchWhat::Kernels(k) => {
            let min_time = checks::non_negative("--min-time", k.min_time)?;
            let opts = BenchOptions {
                min_time: Duration::from_secs_f64(min_time),
                timestamps: !k.wall_clock,
                ..Default::default()
            };
            if !k.json {
                eprintln!("adapter: {}", gpu.caps().describe());
            }
            let results = equireg_benches::kernels::run(gpu, k.filter.as_deref(), &opts)?;
            if results.is_empty() {
                anyhow::bail!("no benchmark case matches the filter");
            }
            if k.json {
                println!("{}", serde_json::to_string_pretty(&results)?);
            } else {
                print!("{}", harness::table(&results));
            }
        }
        BenchWhat::Restore(r) => {
            checks::at_least_one("--batch", r.batch)?;
            if let Some(s) = r.size {
                checks::side("--size", s)?;
            }
            if let Some(t) = r.timed_steps {
                checks::at_least_one("--timed-steps", t)?;
            }
            let equireg = r.equireg.as_ref().map(|s| {
                if s.contains("mpe=") {
                    s.clone()
                } else {
                    format!("mpe=synthetic:vq-f4,{s}")
                }
            });
            let config = equireg_nn::UNetConfig::preset(&r.preset)?;
            let size = r.size.unwrap_or(config.image_size);
            let solver = equireg::solvers::SolverKind::parse(&r.solver)?;
            if solver != equireg::solvers::SolverKind::Dps {
                if equireg.is_some() {
                    anyhow::bail!("bench restore --equireg profiles DPS only; drop --solver");
                }
                let b = equireg_benches::solver::run(
                    gpu,
                    &r.task,
                    &r.preset,
                    &config,
                    size,
                    r.batch,
                    solver,
                    &r.steps,
                    r.timed_steps,
                )?;
                if r.json {
                    println!("{}", serde_json::to_string_pretty(&b)?);
                } else {
                    println!("adapter: {}", gpu.caps().describe());
                    println!("{} ({})", b.case, b.solver);
                    println!(
                        "  {:.1} s per restoration ({} steps x {:.1} ms + {:.1} s setup; {} \
                         steps timed); {} UNet forwards, {} VJPs per run",
                        b.seconds_per_restoration,
                        b.steps,
                        b.ms_per_step,
                        b.setup_seconds,
                        b.timed_steps,
                        b.network_forwards,
                        b.network_vjps
                    );
                    println!(
                        "  per step: {:.0} dispatches, {:.0} submits, {:.0} uploads, {:.0} \
                         readbacks",
                        b.dispatches_per_step,
                        b.submits_per_step,
                        b.uploads_per_step,
                        b.readbacks_per_step
                    );
                }
                return Ok(());
            }
            let b = equireg_benches::restore::run(
                gpu,
                &r.task,
                &r.preset,
                &config,
                size,
                r.batch,
                &r.steps,
                r.timed_steps,
                equireg.as_deref(),
            )?;
            if r.json {
                println!("{}", serde_json::to_string_pretty(&b)?);
            } else {
                println!("adapter: {}", gpu.caps().describe());
                println!("{}", b.case);
                println!(
                    "  {:.1} s per restoration ({} steps x {:.1} ms + {:.1} s setup; {} steps timed)",
                    b.seconds_per_restoration,
                    b.steps,
                    b.ms_per_step,
                    b.setup_seconds,
                    b.timed_steps
                );
                println!(
                    "  per step: {:.0} dispatches, {:.0} submits, {:.0} uploads, {:.0} readbacks",
                    b.dispatches_per_step,
                    b.submits_per_step,
                    b.uploads_per_step,
                    b.readbacks_per_step
                );
                if let (Some(p), Some(a)) = (
                    b.equireg_percent_per_firing_step,
                    b.equireg_percent_averaged,
                ) {
                    println!(
                        "  EquiReg: +{p:.1} % on a firing step, +{a:.1} % averaged over the run \
                         (plain step {:.1} GPU ms)",
                        b.gpu_ms_plain_step
                    );
                }
                let total: f64 = b.gpu_ms_by_section.iter().map(|(_, ms)| ms).sum();
                for (s, ms) in &b.gpu_ms_by_section {
                    println!(
                        "  GPU {s:<10} {ms:>10.1} ms ({:.0} %)",
                        100.0 * ms / total.max(1e-9)
                    );
                }
                if !b.equireg_ms_by_kernel.is_empty() {
                    println!("GPU ms by kernel in the equireg section of a firing step:");
                    for (k, ms) in &b.equireg_ms_by_kernel {
                        println!("  {k:<40} {ms:>10.1}");
                    }
                }
            }
        }
        BenchWhat::Unet(u) => {
            let min_time = checks::non_negative("--min-time", u.min_time)?;
            checks::at_least_one("--min-reps", u.min_reps)?;
            checks::at_least_one("--batch", u.batch)?;
            if let Some(s) = u.size {
                checks::side("--size", s)?;
            }
            let config = equireg_nn::UNetConfig::preset(&u.preset)?;
            let size = u.size.unwrap_or(config.image_size);
            let opts = BenchOptions {
                min_time: Duration::from_secs_f64(min_time),
                min_reps: u.min_reps,
                max_reps: 50,
                timestamps: true,
            };
            let r =
                equireg_benches::unet::run(gpu, &u.preset, &config, size, u.batch, u.vjp, &opts)?;
            if u.json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!("adapter: {}", gpu.caps().describe());
                print!("{}", harness::table(std::slice::from_ref(&r.timing)));
                println!(
                    "GFLOP per forward: {:.2}, parameters: {:.2} M, weights: {:.1} MiB, planned activations: {:.1} MiB, dispatches per forward: {}",
                    r.gflop_per_forward,
                    r.parameters as f64 / 1e6,
                    r.weights_mib,
                    r.planned_mib,
                    r.dispatches_per_forward
                );
                if let (Some(f), Some(ratio), Some(mib)) =
                    (&r.forward_vjp, r.vjp_over_forward, r.vjp_planned_mib)
                {
                    print!("{}", harness::table(std::slice::from_ref(f)));
                    println!(
                        "VJP / forward time: {ratio:.2}, forward+VJP planned memory: {mib:.1} MiB"
                    );
                }
                if !r.ms_by_kernel.is_empty() {
                    println!(
                        "GPU ms by kernel (one {}):",
                        if u.vjp { "forward + VJP" } else { "forward" }
                    );
                    for (k, ms) in &r.ms_by_kernel {
                        println!("  {k:<40} {ms:>10.1}");
                    }
                }
            }
        }
    }
    Ok(())
}
