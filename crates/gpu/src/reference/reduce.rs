//! CPU reference of the per-row reductions, accumulated in f64.

use crate::ops::reduce::Reduction;

/// Each row of x viewed as [rows, x.len() / rows], reduced with `r` (an empty row gives 0).
pub fn reduce_rows(x: &[f32], rows: usize, r: Reduction) -> Vec<f32> {
    assert!(
        rows > 0 && x.len().is_multiple_of(rows),
        "{} elements do not split into {rows} rows",
        x.len()
    );
    let cols = x.len() / rows;
    (0..rows)
        .map(|i| {
            let row = x[i * cols..(i + 1) * cols].iter().map(|&v| v as f64);
            let v = match r {
                Reduction::Sum => row.sum(),
                Reduction::SumSq => row.map(|v| v * v).sum(),
                Reduction::L2 => row.map(|v| v * v).sum::<f64>().sqrt(),
                Reduction::MaxAbs => row.map(f64::abs).fold(0.0, f64::max),
            };
            v as f32
        })
        .collect()
}
