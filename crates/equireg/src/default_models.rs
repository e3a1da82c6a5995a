//! The embedded default models: a natural-image diffusion prior (`photo64`, a small
//! guided-diffusion UNet) and an MPE encoder (a small CompVis-style first-stage encoder), both
//! trained by the project's own tools (`tools/train_prior.py`, `tools/train_mpe.py`) on
//! openly licensed photographs from Debian's wallpaper packages. Their provenance, training
//! runs and evaluation are in `assets/models/README.md`.
//!
//! They are compiled into the library, so `equireg restore` works on a fresh machine with no
//! download and no file beyond the binary.

use equireg_gpu::Gpu;
use equireg_nn::mpe::MpeConfig;
use equireg_nn::{UNet, UNetConfig, Weights};

use crate::Result;
use crate::mpe::NetworkMpe;

const PRIOR_CONFIG: &str = include_str!("../../../assets/models/prior/config.json");
const PRIOR_WEIGHTS: &[u8] = include_bytes!("../../../assets/models/prior/weights.safetensors");
const MPE_CONFIG: &str = include_str!("../../../assets/models/mpe/config.json");
const MPE_WEIGHTS: &[u8] = include_bytes!("../../../assets/models/mpe/weights.safetensors");

/// How `--equireg mpe=...` names the embedded encoder.
pub const MPE_SPEC: &str = "default";

/// The default prior's architecture (the `photo64` preset).
pub fn prior_config() -> Result<UNetConfig> {
    Ok(UNetConfig::from_json(PRIOR_CONFIG)?)
}

pub fn prior_weights() -> Result<Weights> {
    Ok(Weights::from_safetensors(PRIOR_WEIGHTS)?)
}

/// The default prior on `gpu`.
pub fn prior(gpu: &Gpu) -> Result<UNet> {
    Ok(UNet::new(gpu, &prior_config()?, &prior_weights()?)?)
}

pub fn mpe_config() -> Result<MpeConfig> {
    Ok(MpeConfig::from_json(MPE_CONFIG)?)
}

pub fn mpe_weights() -> Result<Weights> {
    Ok(Weights::from_safetensors(MPE_WEIGHTS)?)
}

/// The default MPE function (the encoder) on `gpu`.
pub fn mpe(gpu: &Gpu) -> Result<NetworkMpe> {
    let net = equireg_nn::mpe::Mpe::new(gpu, &mpe_config()?, &mpe_weights()?)?;
    Ok(NetworkMpe {
        net,
        label: "ldm_encoder (embedded default)".into(),
    })
}
