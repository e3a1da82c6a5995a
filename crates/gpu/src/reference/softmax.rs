//! CPU references of the scaled row softmax and its VJP; tensors are [rows, cols] flattened.

/// out[r, j] = exp(scale x[r, j] - m_r) / sum_k exp(scale x[r, k] - m_r), m_r the row's max.
pub fn softmax_rows(x: &[f32], cols: usize, scale: f32) -> Vec<f32> {
    assert!(cols > 0 && x.len().is_multiple_of(cols));
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks_exact(cols) {
        let s: Vec<f64> = row.iter().map(|&v| scale as f64 * v as f64).collect();
        let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = s.iter().map(|&v| (v - m).exp()).collect();
        let z: f64 = e.iter().sum();
        out.extend(e.iter().map(|&v| (v / z) as f32));
    }
    out
}

/// dx[r, j] = scale y[r, j] (dy[r, j] - sum_k dy[r, k] y[r, k]), y the forward output.
pub fn softmax_rows_vjp(y: &[f32], dy: &[f32], cols: usize, scale: f32) -> Vec<f32> {
    assert!(cols > 0 && y.len() == dy.len() && y.len().is_multiple_of(cols));
    let mut dx = Vec::with_capacity(y.len());
    for (yr, dr) in y.chunks_exact(cols).zip(dy.chunks_exact(cols)) {
        let dot: f64 = yr.iter().zip(dr).map(|(&a, &b)| a as f64 * b as f64).sum();
        dx.extend(
            yr.iter()
                .zip(dr)
                .map(|(&a, &b)| (scale as f64 * a as f64 * (b as f64 - dot)) as f32),
        );
    }
    dx
}
