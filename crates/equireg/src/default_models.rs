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

const DARCY_CONFIG: &str = include_str!("../../../assets/models/darcy/config.json");
const DARCY_WEIGHTS: &[u8] = include_bytes!("../../../assets/models/darcy/weights.safetensors");
const DARCY_FIELD: &str = include_str!("../../../assets/models/darcy/field.json");

/// The embedded Darcy-flow field prior (the `photo64` architecture with 2 channels, trained by
/// `tools/train_prior.py --fields` on `tools/pde_data.py darcy` pairs with D4 augmentation).
pub fn darcy_config() -> Result<UNetConfig> {
    Ok(UNetConfig::from_json(DARCY_CONFIG)?)
}

pub fn darcy_weights() -> Result<Weights> {
    Ok(Weights::from_safetensors(DARCY_WEIGHTS)?)
}

/// The Darcy prior's field normalisation (`field.json`).
pub fn darcy_norm() -> Result<crate::pde::FieldNorm> {
    crate::pde::FieldNorm::from_json(DARCY_FIELD, "the embedded Darcy prior's field.json")
}
