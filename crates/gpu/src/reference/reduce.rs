//! CPU reference of the row reductions, accumulated in f64.

use crate::ops::reduce::Reduction;

/// One value per row of `x` viewed as [rows, x.len() / rows].
pub fn reduce_rows(x: &[f32], rows: usize, r: Reduction) -> Vec<f64> {
    assert!(
        rows > 0 && x.len().is_multiple_of(rows),
        "x does not split into {rows} rows"
    );
    let cols = x.len() / rows;
    x.chunks(cols)
        .map(|row| {
            let sum_sq = || row.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>();
            match r {
                Reduction::Sum => row.iter().map(|&v| v as f64).sum(),
                Reduction::SumSq => sum_sq(),
                Reduction::L2 => sum_sq().sqrt(),
                Reduction::MaxAbs => row.iter().fold(0.0, |m: f64, &v| m.max((v as f64).abs())),
            }
        })
        .collect()
}
