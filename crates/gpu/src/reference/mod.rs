//! Plain-Rust CPU references of every GPU op: naive loops, f64 accumulation, written for
//! clarity, not speed. The tests compare the kernels against these.

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
