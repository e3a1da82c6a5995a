//! `equireg bench ...`: benchmarks; results as a table or JSON.

use std::time::Duration;

use clap::{Args, Subcommand};
use equireg_benches::{BenchOptions, harness};
use equireg_gpu::Gpu;

#[derive(Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    what: BenchWhat,
}

#[derive(Subcommand)]
enum BenchWhat {
    /// Kernel benchmarks: conv2d, matmul, group_norm, attention, elementwise, reductions, RNG
    Kernels(KernelArgs),
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
            if !(k.min_time.is_finite() && k.min_time >= 0.0) {
                anyhow::bail!("--min-time must be a non-negative number of seconds");
            }
            let opts = BenchOptions {
                min_time: Duration::from_secs_f64(k.min_time),
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
    }
    Ok(())
}
