//! `equireg unet`: one forward of the guided-diffusion UNet on arrays from .npy files, for
//! parity checks against PyTorch.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use equireg_gpu::Gpu;
use equireg_nn::{UNet, UNetConfig, Weights};

use equireg_nn::npy;

#[derive(Args)]
pub struct UnetArgs {
    /// Weights as safetensors with guided-diffusion's state-dict names
    #[arg(long)]
    weights: PathBuf,
    /// Architecture preset: ffhq256, imagenet256, small64, photo64, tiny32
    #[arg(long, conflicts_with = "config", required_unless_present = "config")]
    preset: Option<String>,
    /// Architecture as a JSON file with guided-diffusion's create_model field names
    #[arg(long)]
    config: Option<PathBuf>,
    /// Input x_t: float32 NCHW .npy
    #[arg(long)]
    input: PathBuf,
    /// Timesteps: int64 or int32 .npy vector, one per batch item
    #[arg(long)]
    t: PathBuf,
    /// Output: float32 NCHW .npy with the model's output channels, or with --vjp the gradient
    /// of sum(unet(x, t) * V) with respect to x (the input's shape)
    #[arg(long)]
    out: PathBuf,
    /// Cotangent V: float32 .npy with the output's shape; writes the vector-Jacobian product
    #[arg(long)]
    vjp: Option<PathBuf>,
}

pub fn load_config(preset: Option<&str>, config: Option<&PathBuf>) -> anyhow::Result<UNetConfig> {
    Ok(match (preset, config) {
        (Some(p), None) => UNetConfig::preset(p)?,
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            UNetConfig::from_json(&text).with_context(|| format!("{}", path.display()))?
        }
        _ => bail!("give exactly one of --preset and --config"),
    })
}

pub fn run(args: &UnetArgs, gpu: &Gpu) -> anyhow::Result<()> {
    let config = load_config(args.preset.as_deref(), args.config.as_ref())?;
    let (xs, x) = npy::read_f32_finite(&args.input)?;
    let (ts, t) = npy::read_int(&args.t)?;
    if xs.len() != 4 || xs[1] != config.in_channels {
        bail!(
            "{}: input has shape {xs:?}; expected [N, {}, H, W]",
            args.input.display(),
            config.in_channels
        );
    }
    if ts != [xs[0]] {
        bail!(
            "{}: timesteps have shape {ts:?}; expected [{}] (one per batch item)",
            args.t.display(),
            xs[0]
        );
    }
    if let Some(bad) = t.iter().find(|&&v| v < 0) {
        bail!("{}: timestep {bad} is negative", args.t.display());
    }
    let cotangent = match &args.vjp {
        None => None,
        Some(path) => {
            let (vs, v) = npy::read_f32_finite(path)?;
            let want = [xs[0], config.model_out_channels(), xs[2], xs[3]];
            if vs != want {
                bail!(
                    "{}: cotangent has shape {vs:?}; expected the output's shape {want:?}",
                    path.display()
                );
            }
            Some(v)
        }
    };
    let weights = Weights::load(&args.weights)?;
    let unet = UNet::new(gpu, &config, &weights)?;
    let run = if cotangent.is_some() {
        unet.plan_with_vjp(gpu, xs[0], xs[2], xs[3])?
    } else {
        unet.plan(gpu, xs[0], xs[2], xs[3])?
    };
    gpu.write(run.input(), &x)?;
    let tf: Vec<f32> = t.iter().map(|&v| v as f32).collect();
    gpu.write(run.timesteps(), &tf)?;
    let mut rec = gpu.recorder();
    run.record_forward(&mut rec, &unet)?;
    let result = match &cotangent {
        Some(v) => {
            gpu.write(run.cotangent()?, v)?;
            run.record_vjp(&mut rec, &unet)?;
            run.input_grad()?
        }
        None => run.output(),
    };
    rec.submit()?;
    let y = gpu.download(result)?;
    npy::write_f32(&args.out, result.shape(), &y)?;
    Ok(())
}
