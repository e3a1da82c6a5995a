//! Measurement operators `y = A(x)` of the inverse problems, each with its forward and its
//! vector-Jacobian product recorded on the GPU, and a CPU twin of both for the tests.
//!
//! An operator is built for one input shape `[N, C, H, W]`: it owns its parameters (blur kernel,
//! mask, resize weights, FFT twiddles) and its scratch tensors on the GPU, so recording it inside
//! the reverse loop allocates and uploads nothing. Its random parameters (motion-blur kernel,
//! inpainting mask) are drawn once from a seed at construction and shared by the images of the
//! batch, so a batch of N images gives the same result as N single runs with the same seed.

pub mod blur;
pub mod hdr;
pub mod inpaint;
pub mod noise;
pub mod phase_retrieval;
pub mod resize;
pub mod spectral;

use equireg_gpu::{Recorder, Tensor};

use spectral::Spectral;

use crate::Result;

/// A measurement operator built for one input shape.
pub trait Operator: Send + Sync {
    /// Short name for messages and metrics ("super_resolution", "gaussian_blur", ...).
    fn name(&self) -> &str;
    /// The input shape `[N, C, H, W]` this operator was built for.
    fn input_shape(&self) -> [usize; 4];
    /// The shape of `A(x)`.
    fn output_shape(&self) -> Vec<usize>;
    /// True when `A` is linear: then [`Operator::record_vjp`] is the exact adjoint `A^T dy` and
    /// ignores `x`.
    fn is_linear(&self) -> bool;
    /// Records `out = A(x)`. `x` has [`Operator::input_shape`], `out` [`Operator::output_shape`].
    fn record_forward(&self, rec: &mut Recorder, x: &Tensor, out: &Tensor) -> Result<()>;
    /// Records `dx = J_A(x)^T dy` (overwrites `dx`).
    fn record_vjp(&self, rec: &mut Recorder, x: &Tensor, dy: &Tensor, dx: &Tensor) -> Result<()>;
    /// CPU twin of the forward (f64 accumulation), on a host copy of `x` of the input shape.
    fn forward_cpu(&self, x: &[f32]) -> Vec<f32>;
    /// CPU twin of the VJP.
    fn vjp_cpu(&self, x: &[f32], dy: &[f32]) -> Vec<f32>;
    /// A grayscale-or-RGB picture of the measurement for people, in the input's value range
    /// ([-1, 1]), shape `[N, C, h, w]` as host data; `None` when the measurement is not an image
    /// (the caller then shows nothing).
    fn measurement_picture(&self, y: &[f32]) -> Option<(Vec<f32>, [usize; 4])>;
    /// The operator's drawn parameters (motion-blur kernel, inpainting mask) as named arrays
    /// (name, shape, values), saved with the outputs so that a run can be repeated or
    /// inspected; empty for operators without any.
    fn parameters(&self) -> Vec<(&'static str, Vec<usize>, Vec<f32>)> {
        Vec::new()
    }
    /// The naive reconstruction evaluations compare against, from the measurement alone, in
    /// the input's shape and range: bicubic upsampling (super-resolution), the measurement
    /// itself (blur), masked pixels filled with the mean of the observed ones (inpainting),
    /// the measurement divided by the scale (HDR), a flat zero image (phase retrieval: the
    /// magnitudes alone give no image-space estimate).
    fn naive_estimate(&self, y: &[f32]) -> Vec<f32>;
    /// The operator's spectral form `A = U S V^T` when it factors cheaply (inpainting,
    /// super-resolution, Gaussian blur), for the solvers that need a pseudo-inverse.
    fn spectral(&self) -> Option<&Spectral> {
        None
    }
}
