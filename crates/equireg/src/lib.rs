//! equireg: the library users embed. Diffusion schedules and samplers, measurement operators
//! (each with forward and VJP on the GPU and a CPU twin), posterior samplers (DPS, DiffPIR)
//! whose reverse loops stay on the GPU, image I/O and metrics.

pub mod default_models;
pub mod error;
pub mod images;
pub mod lpips;
pub mod metrics;
pub mod mpe;
pub mod operators;
pub mod pde;
pub mod regularizer;
pub mod restore;
pub mod schedule;
pub mod solvers;
pub mod task;

pub use error::{Error, Result};
