//! Errors of the network layer: configuration, weights and the GPU underneath.

use equireg_gpu::GpuError;

#[derive(Debug, thiserror::Error)]
pub enum NnError {
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Weights(String),
    #[error("{0}")]
    Input(String),
    #[error(transparent)]
    Gpu(#[from] GpuError),
}

pub type Result<T, E = NnError> = std::result::Result<T, E>;
