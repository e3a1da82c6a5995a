//! CPU references of ReLU and the global average pool, with their VJPs; pooled tensors are
//! [planes, positions] flattened.

pub fn relu(x: &[f32]) -> Vec<f32> {
    x.iter().map(|&v| if v > 0.0 { v } else { 0.0 }).collect()
}

/// dx = dy where x > 0, else 0.
pub fn relu_vjp(x: &[f32], dy: &[f32]) -> Vec<f32> {
    assert_eq!(x.len(), dy.len());
    x.iter()
        .zip(dy)
        .map(|(&v, &d)| if v > 0.0 { d } else { 0.0 })
        .collect()
}

/// `out[p]` = mean of `x[p, :]` (f64 sum).
pub fn global_avg_pool(x: &[f32], plane: usize) -> Vec<f32> {
    assert!(plane > 0 && x.len().is_multiple_of(plane));
    x.chunks_exact(plane)
        .map(|c| (c.iter().map(|&v| v as f64).sum::<f64>() / plane as f64) as f32)
        .collect()
}

/// `dx[p, s] = dy[p] / plane`.
pub fn global_avg_pool_vjp(dy: &[f32], plane: usize) -> Vec<f32> {
    dy.iter()
        .flat_map(|&d| std::iter::repeat_n((d as f64 / plane as f64) as f32, plane))
        .collect()
}
