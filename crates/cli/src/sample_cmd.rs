//! `equireg sample`: unconditional samples from a diffusion checkpoint, a sanity check of any
//! weights (a model that loads but was converted wrongly draws noise, not images).

use std::path::PathBuf;

use clap::Args;
use equireg::images;
use equireg::schedule::Sampler;
use equireg::solvers::{DiffusionConfig, Solver};
use equireg_gpu::Gpu;
use equireg_nn::{UNet, Weights};

use crate::checks;
use crate::outdir::OutDir;
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
    /// Output folder: sample_{k}.png and grid.png. It must be empty or new, unless --overwrite
    #[arg(long)]
    out: PathBuf,
    /// Reuse a non-empty --out: first remove what the earlier equireg run recorded in its
    /// manifest, nothing else
    #[arg(long)]
    overwrite: bool,
}

pub fn run(args: &SampleArgs, gpu: &Gpu) -> anyhow::Result<()> {
    checks::at_least_one("--batch", args.batch)?;
    let sampler = Sampler::parse(&args.sampler, args.eta)?;
    if let Some(s) = args.size {
        checks::side("--size", s)?;
    }
    equireg::schedule::space_timesteps(1000, args.steps.trim())?;
    let config = load_config(args.preset.as_deref(), args.config.as_ref())?;
    let unet = UNet::new(gpu, &config, &Weights::load(&args.weights)?)?;
    let size = args.size.unwrap_or(config.image_size);
    let mut diffusion = DiffusionConfig::for_model(&config, args.steps.trim());
    diffusion.sampler = sampler;
    let mut solver = Solver::new(gpu, &unet, [args.batch, size, size], &diffusion, None)?;
    let mut dir = OutDir::open(&args.out, args.overwrite, "sample")?;
    solver.begin(args.seed, 0)?;
    let started = std::time::Instant::now();
    let out = solver.run(|_| Ok(()))?;
    let imgs = images::from_model(&out, args.batch, size, size)?;
    for (k, img) in imgs.iter().enumerate() {
        images::save_png(&dir.file(&format!("sample_{k}.png"))?, img)?;
    }
    let refs: Vec<&images::RgbImage> = imgs.iter().collect();
    images::save_png(&dir.file("grid.png")?, &images::grid(&refs, 4)?)?;
    eprintln!(
        "{} samples of {size}x{size} in {:.1} s ({} steps); wrote {}",
        args.batch,
        started.elapsed().as_secs_f64(),
        solver.steps(),
        args.out.display()
    );
    Ok(())
}
