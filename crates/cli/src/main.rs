//! The `equireg` command-line tool.

mod bench;
mod checks;
mod devices;
mod mpe_check_cmd;
mod outdir;
mod pde_cmd;
mod restore_cmd;
mod sample_cmd;
mod tasks_cmd;
mod unet_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use equireg_gpu::{Gpu, GpuOptions};

#[derive(Parser)]
#[command(
    name = "equireg",
    version,
    about = "GPU diffusion posterior sampling with equivariance regularization (EquiReg)",
    long_about = "GPU diffusion posterior sampling with equivariance regularization (EquiReg).\n\n\
                  Runs on any Vulkan, Metal or DX12 adapter; on a machine without a GPU, install \
                  Mesa's software Vulkan driver (apt-get install mesa-vulkan-drivers)."
)]
struct Cli {
    /// Backends to consider, comma separated (vulkan, metal, dx12); default: $WGPU_BACKEND or all
    #[arg(long, global = true)]
    backend: Option<String>,
    /// Use the adapter whose name contains this (case-insensitive); default: $WGPU_ADAPTER_NAME
    /// or the most capable one
    #[arg(long, global = true)]
    adapter: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the GPU adapters with their backend, type, limits and features
    Devices(devices::DevicesArgs),
    /// Run benchmarks
    Bench(bench::BenchArgs),
    /// Restore images with diffusion posterior sampling (DPS) on the GPU
    Restore(restore_cmd::RestoreArgs),
    /// Is an MPE function manifold-preferential on your images? Its equivariance error on clean
    /// images against noised and blurred copies (table, JSON, histogram)
    MpeCheck(mpe_check_cmd::MpeCheckArgs),
    /// Reconstruct joint PDE fields (coefficient, solution) from random point observations
    Pde(pde_cmd::PdeArgs),
    /// Draw unconditional samples from a diffusion model (a sanity check of any checkpoint)
    Sample(sample_cmd::SampleArgs),
    /// One forward of the guided-diffusion UNet on .npy arrays (parity checks against PyTorch)
    Unet(unet_cmd::UnetArgs),
    /// The task presets as restore runs them: operator, noise, DPS step size, EquiReg settings
    Tasks(tasks_cmd::TasksArgs),
}

impl Cli {
    fn gpu_options(&self) -> anyhow::Result<GpuOptions> {
        // WGPU_BACKEND is read here rather than by wgpu, so that a bad value is named (wgpu
        // would take it as "no backend" and report that no adapter exists).
        let env = std::env::var("WGPU_BACKEND")
            .ok()
            .filter(|s| !s.trim().is_empty());
        let (given, what) = match (&self.backend, env) {
            (Some(s), _) => (Some(s.clone()), "--backend"),
            (None, Some(s)) => (Some(s), "WGPU_BACKEND"),
            (None, None) => (None, ""),
        };
        let backends = match given {
            None => None,
            Some(s) => {
                let b = wgpu::Backends::from_comma_list(&s);
                if b.is_empty() {
                    anyhow::bail!("{what} '{s}': no known backend (use vulkan, metal or dx12)");
                }
                Some(b)
            }
        };
        Ok(GpuOptions {
            backends,
            adapter_name: self.adapter.clone(),
        })
    }

    fn open_gpu(&self) -> anyhow::Result<Gpu> {
        Ok(Gpu::new(&self.gpu_options()?)?)
    }
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Devices(a) => devices::run(a, &cli.gpu_options()?),
        Command::Bench(a) => bench::run(a, &cli.open_gpu()?),
        Command::Restore(a) => restore_cmd::run(a, &cli.open_gpu()?),
        Command::MpeCheck(a) => mpe_check_cmd::run(a, &cli.open_gpu()?),
        Command::Pde(a) => pde_cmd::run(a, &cli.open_gpu()?),
        Command::Sample(a) => sample_cmd::run(a, &cli.open_gpu()?),
        Command::Unet(a) => unet_cmd::run(a, &cli.open_gpu()?),
        Command::Tasks(a) => tasks_cmd::run(a),
    }
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
