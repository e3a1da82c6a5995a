//! `equireg sample`: unconditional samples from a diffusion checkpoint, a sanity check of any
//! weights (a model that loads but was converted wrongly draws noise, not images).

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use equireg::images;
use equireg::schedule::Sampler;
use equireg::solver::{DiffusionConfig, Solver};
use equireg_gpu::Gpu;
use equireg_nn::{UNet, Weights};

use crate::unet_cmd::load_config;

#[derive(Args)]
pub struct SampleArgs {
    /// Model weights (safetensors, guided-diffusion names)
    #[arg(long)]
    weights: PathBuf,
    /// Architecture preset of the weights (ffhq256, imagenet256, small64, photo64, tiny32)
    #[arg(long, conflicts_with = "config", required_unless_present = "config")]
    preset: Option<String>,
    /// Architecture as a JSON file with guided-diffusion's create_model field names
    #[arg(long)]
    config: Option<PathBuf>,
    /// Sampling steps (respaced from 1000), or a respacing like "ddim50"
    #[arg(long, default_value = "100")]
    steps: String,
    /// ddpm (ancestral) or ddim
    #[arg(long, default_value = "ddpm")]
    sampler: String,
    /// DDIM stochasticity
    #[arg(long, default_value_t = 0.0)]
    eta: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Samples drawn together
    #[arg(long, default_value_t = 4)]
    batch: usize,
    /// Image side (default: the model's image_size)
    #[arg(long)]
    size: Option<usize>,
    /// Output folder: sample_{k}.png and grid.png
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: &SampleArgs, gpu: &Gpu) -> anyhow::Result<()> {
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    let config = load_config(args.preset.as_deref(), args.config.as_ref())?;
    let unet = UNet::new(gpu, &config, &Weights::load(&args.weights)?)?;
    let size = args.size.unwrap_or(config.image_size);
    let mut diffusion = DiffusionConfig::for_model(&config, args.steps.trim());
    diffusion.sampler = Sampler::parse(&args.sampler, args.eta)?;
    let mut solver = Solver::new(gpu, &unet, [args.batch, size, size], &diffusion, None)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    solver.begin(args.seed, 0)?;
    let started = std::time::Instant::now();
    let out = solver.run(|_| Ok(()))?;
    let imgs = images::from_model(&out, args.batch, size, size)?;
    for (k, img) in imgs.iter().enumerate() {
        images::save_png(&args.out.join(format!("sample_{k}.png")), img)?;
    }
    let refs: Vec<&images::RgbImage> = imgs.iter().collect();
    images::save_png(&args.out.join("grid.png"), &images::grid(&refs, 4)?)?;
    eprintln!(
        "{} samples of {size}x{size} in {:.1} s ({} steps); wrote {}",
        args.batch,
        started.elapsed().as_secs_f64(),
        solver.steps(),
        args.out.display()
    );
    Ok(())
}
