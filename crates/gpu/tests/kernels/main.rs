//! Every kernel against its CPU reference on random inputs, on whatever adapter the machine has
//! (lavapipe in CI). One test binary so the device is opened once.

mod common;

mod attention;
mod concat;
mod conv;
mod conv_vjp;
mod elementwise;
mod group_norm;
mod matmul;
mod plan;
mod reduce;
mod resample;
mod rng;
mod timestep_embedding;
mod transforms;
