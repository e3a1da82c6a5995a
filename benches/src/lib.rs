//! Benchmarks of equireg, shared by `equireg bench` and `cargo bench`. Speed lives here and in
//! docs/PERFORMANCE.md, never in timed tests.

pub mod harness;
pub mod kernels;
pub mod restore;
pub mod solver;
pub mod unet;

pub use harness::{BenchOptions, BenchResult};
