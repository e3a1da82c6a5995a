//! PDE field reconstruction: joint (coefficient, solution) fields on a square grid restored
//! from sparse point observations with a 2-channel diffusion prior (DiffusionPDE / FunDPS's
//! formulation: no PDE solver runs while sampling; the prior carries the physics).
//!
//! - [`problem`]: the problems (Darcy, Poisson, Helmholtz, Navier-Stokes), their valid and
//!   invalid symmetry groups, and the field normalisation stored beside a prior's weights;
//! - [`observe`]: the point-observation operator (N random points per observed channel);
//! - [`metrics`]: relative L2 per channel and Darcy's thresholded error rate;
//! - [`panel`]: a colour-mapped PNG of truth, observations, reconstructions and error;
//! - [`residual`]: the PDE residual as a guidance penalty;
//! - [`reconstruct`]: one guided reverse diffusion over a batch of cases.

pub mod metrics;
pub mod observe;
pub mod panel;
pub mod problem;
pub mod reconstruct;
pub mod residual;

pub use problem::{FieldNorm, Observe, Problem};
