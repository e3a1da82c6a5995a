//! equireg-nn: layers composed from the GPU kernel library, the guided-diffusion UNet, and
//! weights I/O with PyTorch state-dict names.

pub mod config;
pub mod error;
pub mod graph;
pub mod io;
pub mod mpe;
pub mod npy;
pub mod planned;
pub mod synthetic;
pub mod unet;
pub mod weights;

pub use config::UNetConfig;
pub use error::{NnError, Result};
pub use planned::PlannedModel;
pub use unet::{UNet, UNetRun};
pub use weights::{WeightSpec, Weights};
