//! The one error type of the GPU layer. Every failure a user can cause (bad shapes, buffers over
//! the adapter's limits, no adapter) is a value of this type, never a panic.

/// How to get an adapter when there is none; part of every "no adapter" message.
pub const INSTALL_HINT: &str = "install a GPU driver with Vulkan, Metal or DX12 support, or Mesa's \
software Vulkan driver (lavapipe): `apt-get install mesa-vulkan-drivers` on Debian/Ubuntu";

#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error("no GPU adapter found{detail}; {INSTALL_HINT}")]
    NoAdapter { detail: String },

    #[error("could not open a device on adapter '{adapter}': {reason}")]
    Device { adapter: String, reason: String },

    #[error("{op}: {msg}")]
    Shape { op: &'static str, msg: String },

    #[error("{what} needs {needed} bytes, over the adapter's limit {limit_name} = {limit}")]
    OverLimit {
        what: String,
        needed: u64,
        limit_name: &'static str,
        limit: u64,
    },

    #[error("unknown shader '{0}' (not in the kernel registry)")]
    UnknownShader(String),

    #[error("GPU validation error: {0}")]
    Validation(String),

    #[error("reading back from the GPU failed: {0}")]
    Readback(String),
}

pub type Result<T, E = GpuError> = std::result::Result<T, E>;

impl GpuError {
    /// Shorthand for the most common error: an op got tensors of the wrong shape.
    pub fn shape(op: &'static str, msg: impl Into<String>) -> Self {
        GpuError::Shape {
            op,
            msg: msg.into(),
        }
    }
}
