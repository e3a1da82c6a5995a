//! A sampler's step table: one row of named coefficients per network evaluation, in loop
//! order, uploaded once and read on the GPU through the step counter. The column layout is
//! `equireg_gpu::ops::solver_step::Column`, shared with the shader.

use equireg_gpu::ops::solver_step::Column;
use equireg_gpu::{Gpu, Tensor};

use crate::{Error, Result};

/// One row; every coefficient not set is 0.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StepRow {
    /// The model timestep (may be fractional).
    pub timestep: f64,
    /// Tweedie: `x0 = sqrt_recip_abar x - sqrt_recipm1_abar eps`.
    pub sqrt_recip_abar: f64,
    pub sqrt_recipm1_abar: f64,
    /// The update `x_next = coef_x0 x0 + coef_x x + coef_eps eps + coef_noise z + coef_grad g`.
    pub coef_x0: f64,
    pub coef_x: f64,
    pub coef_eps: f64,
    pub coef_noise: f64,
    pub coef_grad: f64,
}

impl StepRow {
    /// A row whose Tweedie coefficients are those of `abar` at model timestep `t`.
    pub fn at(t: f64, abar: f64) -> Self {
        Self {
            timestep: t,
            sqrt_recip_abar: (1.0 / abar).sqrt(),
            sqrt_recipm1_abar: (1.0 / abar - 1.0).sqrt(),
            ..Self::default()
        }
    }

    /// The row's variance-exploding noise level `sqrt((1 - abar) / abar)`, from its Tweedie
    /// coefficient (for penalties' schedules).
    pub fn sigma(&self) -> f64 {
        (self.sqrt_recip_abar * self.sqrt_recip_abar - 1.0)
            .max(0.0)
            .sqrt()
    }

    /// The row as the GPU table stores it.
    pub fn values(&self) -> [f32; Column::COUNT] {
        let mut row = [0.0f32; Column::COUNT];
        for c in Column::ALL {
            row[c.index()] = self.get(c) as f32;
        }
        row
    }

    /// The coefficient of column `c`.
    pub fn get(&self, c: Column) -> f64 {
        match c {
            Column::Timestep => self.timestep,
            Column::SqrtRecipAbar => self.sqrt_recip_abar,
            Column::SqrtRecipm1Abar => self.sqrt_recipm1_abar,
            Column::CoefX0 => self.coef_x0,
            Column::CoefX => self.coef_x,
            Column::CoefEps => self.coef_eps,
            Column::CoefNoise => self.coef_noise,
            Column::CoefGrad => self.coef_grad,
        }
    }
}

/// Uploads `rows` as a `[K, Column::COUNT]` table; every value must be finite.
pub fn upload(gpu: &Gpu, rows: &[StepRow]) -> Result<Tensor> {
    if rows.is_empty() {
        return Err(Error::invalid("a step table needs at least one row"));
    }
    let values: Vec<f32> = rows.iter().flat_map(StepRow::values).collect();
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(Error::invalid(format!(
            "step table row {}: column {:?} is not finite",
            i / Column::COUNT,
            Column::ALL[i % Column::COUNT]
        )));
    }
    Ok(gpu.upload(&[rows.len(), Column::COUNT], &values)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_coefficient_lands_in_its_column() {
        let r = StepRow {
            timestep: 1.0,
            sqrt_recip_abar: 2.0,
            sqrt_recipm1_abar: 3.0,
            coef_x0: 4.0,
            coef_x: 5.0,
            coef_eps: 6.0,
            coef_noise: 7.0,
            coef_grad: 8.0,
        };
        let v = r.values();
        for c in Column::ALL {
            assert_eq!(v[c.index()] as f64, r.get(c));
        }
        let mut sorted = v.to_vec();
        sorted.sort_by(f32::total_cmp);
        sorted.dedup();
        assert_eq!(sorted.len(), Column::COUNT, "two fields share a column");
    }
}
