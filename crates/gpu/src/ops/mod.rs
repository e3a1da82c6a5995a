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
pub mod pde_residual;
pub mod reduce;
pub mod relu;
pub mod resample;
pub mod rng;
pub mod softmax;
pub mod solver_step;
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

/// Most loop iterations one invocation of a row-reduction kernel may run over all its passes,
/// well below lavapipe's silent limit of 65535 per invocation.
pub(crate) const LOOP_BUDGET: usize = 24_000;

/// Widest workgroup of the one-workgroup-per-row reduction kernels (group norm, softmax): a
/// power of two, the size of their workgroup-memory trees.
pub(crate) const REDUCTION_WIDTH_MAX: u32 = 256;

/// The workgroup width of a one-workgroup-per-row reduction kernel over rows of `units` loads
/// each, read in `passes` passes: `requested` when given (a power of two up to 256 and the
/// adapter's limit), else 256 on GPUs and as narrow as 16 on CPU adapters.
///
/// On a CPU adapter (lavapipe) every barrier of the tree switches through all of the
/// workgroup's subgroups and a wide workgroup hides no latency: measured on llvmpipe, 16
/// halves group norm's time against 256 (8 is no faster than 16). Rows long enough to exceed
/// `LOOP_BUDGET` iterations per invocation get a wider workgroup, because llvmpipe silently
/// stops an invocation's loops after 65535 iterations in total.
pub(crate) fn reduction_width(
    op: &'static str,
    caps: &crate::Capabilities,
    units: usize,
    passes: usize,
    requested: Option<u32>,
) -> Result<u32> {
    const CPU_WIDTH: u32 = 16;
    let loads = units.saturating_mul(passes);
    let width = match requested {
        Some(w) => {
            let max = caps
                .limits
                .max_compute_invocations_per_workgroup
                .min(REDUCTION_WIDTH_MAX);
            if !w.is_power_of_two() || w > max {
                return Err(GpuError::shape(
                    op,
                    format!("workgroup width {w} must be a power of two up to {max}"),
                ));
            }
            w
        }
        None if caps.device_type == "cpu" => {
            let needed = u32::try_from(loads.div_ceil(LOOP_BUDGET)).unwrap_or(u32::MAX);
            needed
                .checked_next_power_of_two()
                .unwrap_or(REDUCTION_WIDTH_MAX)
                .clamp(CPU_WIDTH, REDUCTION_WIDTH_MAX)
        }
        None => REDUCTION_WIDTH_MAX,
    };
    if loads.div_ceil(width as usize) > LOOP_BUDGET {
        return Err(GpuError::shape(
            op,
            format!(
                "rows of {units} loads read {passes} times need a workgroup of at least {} \
                 invocations, more than {width} (lavapipe stops longer loops silently)",
                loads.div_ceil(LOOP_BUDGET)
            ),
        ));
    }
    Ok(width)
}
