//! The library's error type: every failure a user can cause is a value, never a panic.

use equireg_gpu::GpuError;
use equireg_nn::NnError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Gpu(#[from] GpuError),
    #[error(transparent)]
    Nn(#[from] NnError),
    /// A bad argument or configuration value: what is wrong, in one line.
    #[error("{0}")]
    Invalid(String),
    /// An image or file that cannot be read or written.
    #[error("{path}: {message}")]
    Io { path: String, message: String },
}

impl Error {
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::Invalid(message.into())
    }
    pub fn io(path: impl AsRef<std::path::Path>, message: impl std::fmt::Display) -> Self {
        Error::Io {
            path: path.as_ref().display().to_string(),
            message: message.to_string(),
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
