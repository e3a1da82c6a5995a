//! The data term of a posterior sampler: `r = y - A(u)` for a borrowed operator and
//! measurement, a per-sample loss of `r`, and its gradient with respect to `u` recorded on the
//! GPU (operator forward, one reduction, the loss's cotangent at `A(u)`, the operator's VJP).
//!
//! Every loss is per sample, so an image's gradient does not depend on the rest of its batch.

use equireg_gpu::ops::diffusion::loss_cotangent;
use equireg_gpu::ops::elementwise::{axpby, scale};
use equireg_gpu::ops::reduce::{Reduction, reduce_rows, reduce_scratch};
use equireg_gpu::{DType, Gpu, Recorder, Tensor};

use crate::operators::Operator;
use crate::{Error, Result};

/// How a sample's residual `r_n` becomes its loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataLoss {
    /// `||r_n||` (DPS).
    Norm,
    /// `||r_n||^2 / 2` (DiffPIR's gradient form, Langevin and Adam objectives).
    HalfSquaredNorm,
    /// `||r_n||^2`.
    SquaredNorm,
    /// `||r_n||^2 / m`, m the measurement's values per sample.
    Mean,
    /// `||r_n||^2 / (2 m)` (RED-diff's `(e_obs ** 2).mean() / 2`).
    HalfMean,
}

impl DataLoss {
    pub fn name(self) -> &'static str {
        match self {
            DataLoss::Norm => "norm",
            DataLoss::HalfSquaredNorm => "half_sqnorm",
            DataLoss::SquaredNorm => "sqnorm",
            DataLoss::Mean => "mean",
            DataLoss::HalfMean => "half_mean",
        }
    }
}

/// A measurement, the operator that made it (both borrowed: one measurement serves every
/// solver, variant and restart), and the tensors of its gradient, allocated once.
pub struct DataTerm<'m> {
    operator: &'m dyn Operator,
    measurement: &'m Tensor,
    loss: DataLoss,
    a_u: Tensor,
    residual: Tensor,
    /// `[N]`: `||y - A(u)||` per sample at the last recorded gradient.
    norm: Tensor,
    scratch: Tensor,
    d_a_u: Tensor,
    /// Values per sample of the measurement.
    per_sample: usize,
    /// The loss's weight (1 unless [`DataTerm::weighted`]).
    weight: f32,
}

impl<'m> DataTerm<'m> {
    /// The data term for images of `shape`; the operator must have been built for `shape` and
    /// the measurement must have its output shape.
    pub fn new(
        gpu: &Gpu,
        operator: &'m dyn Operator,
        measurement: &'m Tensor,
        loss: DataLoss,
        shape: [usize; 4],
    ) -> Result<Self> {
        if operator.input_shape() != shape {
            return Err(Error::invalid(format!(
                "the {} operator was built for images {:?}, the solver runs {:?}",
                operator.name(),
                operator.input_shape(),
                shape
            )));
        }
        let out = operator.output_shape();
        if measurement.shape() != out.as_slice() {
            return Err(Error::invalid(format!(
                "the measurement has shape {:?}, the {} operator produces {:?}",
                measurement.shape(),
                operator.name(),
                out
            )));
        }
        let n = shape[0];
        let per_sample = out.iter().product::<usize>() / n;
        Ok(Self {
            operator,
            measurement,
            loss,
            a_u: gpu.alloc(&out, DType::F32)?,
            residual: gpu.alloc(&out, DType::F32)?,
            norm: gpu.alloc(&[n], DType::F32)?,
            scratch: reduce_scratch(gpu, n, per_sample)?,
            d_a_u: gpu.alloc(&out, DType::F32)?,
            per_sample,
            weight: 1.0,
        })
    }

    /// The same data term with its loss multiplied by `weight` (finite, >= 0; not for
    /// [`DataLoss::Norm`], whose cotangent kernel has no weight).
    pub fn weighted(mut self, weight: f32) -> Result<Self> {
        if !(weight.is_finite() && weight >= 0.0) || (self.loss == DataLoss::Norm && weight != 1.0)
        {
            return Err(Error::invalid(format!(
                "a data term's weight must be finite and >= 0 (and 1 for the norm loss), got \
                 {weight}"
            )));
        }
        self.weight = weight;
        Ok(self)
    }

    pub fn measurement(&self) -> &'m Tensor {
        self.measurement
    }

    pub fn operator(&self) -> &'m dyn Operator {
        self.operator
    }

    pub fn loss(&self) -> DataLoss {
        self.loss
    }

    /// `[N]`: `||y - A(u)||` per sample at the last recorded gradient.
    pub fn residual_norm(&self) -> &Tensor {
        &self.norm
    }

    /// Records `du = d loss / d u` at `u` (overwrites `du`; both the solver's image shape).
    pub fn record_grad(&self, rec: &mut Recorder, u: &Tensor, du: &Tensor) -> Result<()> {
        self.operator.record_forward(rec, u, &self.a_u)?;
        axpby(rec, 1.0, self.measurement, -1.0, &self.a_u, &self.residual)?;
        reduce_rows(
            rec,
            &self.residual,
            &self.norm,
            &self.scratch,
            Reduction::L2,
        )?;
        // d loss / d A(u), with r = y - A(u): -r / ||r_n|| or a multiple of -r.
        let m = self.per_sample as f32;
        let factor = match self.loss {
            DataLoss::Norm => {
                loss_cotangent(rec, &self.residual, &self.norm, &self.d_a_u)?;
                None
            }
            DataLoss::HalfSquaredNorm => Some(1.0),
            DataLoss::SquaredNorm => Some(2.0),
            DataLoss::Mean => Some(2.0 / m),
            DataLoss::HalfMean => Some(1.0 / m),
        };
        if let Some(f) = factor {
            scale(rec, &self.residual, &self.d_a_u, -f * self.weight, 0.0)?;
        }
        self.operator.record_vjp(rec, u, &self.d_a_u, du)
    }
}
