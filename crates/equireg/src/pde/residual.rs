//! The PDE residual as a guidance penalty (FunDPS's optional physics term): for Darcy,
//! `weight * mean psi(Dx(a Dx u) + Dy(a Dy u) + 1)` over the interior (2-pixel border
//! cropped), `psi` Huber(delta = 1) or the square, on the physical fields of the clean estimate.
//! FunDPS's schedule: the term acts only once the step's noise level sigma is at most 1.

use equireg_gpu::ops::pde_residual::{DarcyResidualParams, darcy_residual, darcy_residual_grad};
use equireg_gpu::{DType, Gpu, Recorder, Tensor};

use super::{FieldNorm, Problem};
use crate::solvers::Penalty;
use crate::{Error, Result};

/// How the residual is penalised.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ResidualSettings {
    pub weight: f64,
    /// Huber threshold; 0: squared loss.
    pub delta: f64,
    /// The penalty acts at steps whose sigma is at most this (FunDPS: 1); infinity: always.
    pub max_sigma: f64,
}

impl Default for ResidualSettings {
    fn default() -> Self {
        Self {
            weight: 0.0,
            delta: 1.0,
            max_sigma: 1.0,
        }
    }
}

impl ResidualSettings {
    /// Fails unless the settings are usable for `problem` (only Darcy's residual is built in):
    /// a finite weight and delta >= 0, a max sigma >= 0.
    pub fn validate(&self, problem: Problem) -> Result<()> {
        if problem != Problem::Darcy {
            return Err(Error::invalid(format!(
                "--residual: only Darcy's residual is built in, not {}'s",
                problem.name()
            )));
        }
        let ResidualSettings {
            weight,
            delta,
            max_sigma,
        } = *self;
        if !(weight.is_finite() && weight >= 0.0) {
            return Err(Error::invalid(format!(
                "--residual {weight}: the weight must be finite and >= 0"
            )));
        }
        if !(delta.is_finite() && delta >= 0.0) || max_sigma.is_nan() || max_sigma < 0.0 {
            return Err(Error::invalid(format!(
                "residual settings: delta {delta} must be finite and >= 0, max sigma {max_sigma} >= 0"
            )));
        }
        Ok(())
    }
}

/// The Darcy residual penalty for a batch `[N, 2, H, W]` on the unit square's vertex grid.
pub struct DarcyPenalty {
    params: DarcyResidualParams,
    max_sigma: f64,
    r: Tensor,
    g: Tensor,
    s: Tensor,
}

impl DarcyPenalty {
    pub fn new(
        gpu: &Gpu,
        problem: Problem,
        shape: [usize; 4],
        norm: &FieldNorm,
        settings: ResidualSettings,
    ) -> Result<DarcyPenalty> {
        settings.validate(problem)?;
        let ResidualSettings {
            weight,
            delta,
            max_sigma,
        } = settings;
        let [n, _, h, w] = shape;
        let scale = |c: usize| (norm.std[c] / norm.scale) as f32;
        let params = DarcyResidualParams {
            a_mean: norm.mean[0] as f32,
            a_scale: scale(0),
            u_mean: norm.mean[1] as f32,
            u_scale: scale(1),
            spacing: 1.0 / (h.max(2) - 1) as f32,
            crop: 2,
            weight: weight as f32,
            delta: delta as f32,
        };
        Ok(DarcyPenalty {
            params,
            max_sigma,
            r: gpu.alloc(&[n, h, w], DType::F32)?,
            g: gpu.alloc(&[n, h, w], DType::F32)?,
            s: gpu.alloc(&shape, DType::F32)?,
        })
    }

    pub fn params(&self) -> &DarcyResidualParams {
        &self.params
    }
}

impl Penalty for DarcyPenalty {
    fn name(&self) -> &str {
        "darcy_residual"
    }

    fn fires(&self, _k: usize, _steps: usize, sigma: f64) -> bool {
        sigma <= self.max_sigma
    }

    fn record_grad(&self, rec: &mut Recorder, x0: &Tensor, dx0: &Tensor) -> Result<()> {
        darcy_residual(rec, x0, &self.params, &self.r, &self.g)?;
        darcy_residual_grad(rec, x0, &self.params, &self.g, &self.s, dx0)?;
        Ok(())
    }
}
