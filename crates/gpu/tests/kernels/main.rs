//! Every kernel against its CPU reference on random inputs, on whatever adapter the machine has
//! (lavapipe in CI). One test binary so the device is opened once.

mod common;

mod attention;
mod axis_matmul;
mod concat;
mod conv;
mod conv_vjp;
mod depthwise_conv;
mod diffusion;
mod elementwise;
mod equivariance;
mod fft;
mod group_norm;
mod matmul;
mod measurement;
mod pad;
mod pde_residual;
mod plan;
mod reduce;
mod relu;
mod resample;
mod rng;
mod softmax;
mod solver_step;
mod timestep_embedding;
mod transforms;
