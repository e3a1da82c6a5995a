//! GPU ops: each records one or more dispatches into a [`Recorder`](crate::Recorder) after
//! checking shapes, and has a CPU twin in [`crate::reference`] that the tests compare against.

pub mod attention;
pub mod axis_matmul;
pub mod concat;
pub mod conv;
pub mod conv_vjp;
pub mod depthwise_conv;
pub mod diffusion;
pub mod elementwise;
pub mod equivariance;
pub mod fft;
pub mod group_norm;
pub mod matmul;
pub mod measurement;
pub mod pad;
pub mod reduce;
pub mod relu;
pub mod resample;
pub mod rng;
pub mod softmax;
pub mod timestep_embedding;
pub mod transforms;

use crate::error::{GpuError, Result};
use crate::tensor::{DType, Tensor};

/// Fails unless `t` has exactly `shape`.
pub(crate) fn expect_shape(
    op: &'static str,
    what: &str,
    t: &Tensor,
    shape: &[usize],
) -> Result<()> {
    if t.shape() != shape {
        return Err(GpuError::shape(
            op,
            format!("{what} has shape {:?}, expected {shape:?}", t.shape()),
        ));
    }
    Ok(())
}

/// Fails unless `t` has `rank` dimensions.
pub(crate) fn expect_rank(op: &'static str, what: &str, t: &Tensor, rank: usize) -> Result<()> {
    if t.shape().len() != rank {
        return Err(GpuError::shape(
            op,
            format!(
                "{what} must have {rank} dimensions, got shape {:?}",
                t.shape()
            ),
        ));
    }
    Ok(())
}

/// Fails unless `t` holds f32 values.
pub(crate) fn expect_f32(op: &'static str, what: &str, t: &Tensor) -> Result<()> {
    if t.dtype() != DType::F32 {
        return Err(GpuError::shape(
            op,
            format!("{what} must be f32, got {:?}", t.dtype()),
        ));
    }
    Ok(())
}

/// Fails if an output shares memory with an input (the kernels are not written for aliasing,
/// and wgpu rejects a buffer bound both read-only and writable).
pub(crate) fn expect_disjoint(op: &'static str, out: &Tensor, inputs: &[&Tensor]) -> Result<()> {
    if inputs.iter().any(|i| i.overlaps(out)) {
        return Err(GpuError::shape(
            op,
            "the output must not share memory with an input",
        ));
    }
    Ok(())
}

/// Converts a size to u32 for a kernel parameter, with a clear error if it does not fit.
pub(crate) fn to_u32(op: &'static str, what: &str, n: usize) -> Result<u32> {
    u32::try_from(n).map_err(|_| GpuError::shape(op, format!("{what} = {n} does not fit in u32")))
}
