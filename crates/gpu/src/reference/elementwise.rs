//! CPU references of the elementwise ops.

pub fn silu(x: &[f32]) -> Vec<f32> {
    x.iter()
        .map(|&v| {
            let v = v as f64;
            (v / (1.0 + (-v).exp())) as f32
        })
        .collect()
}

pub fn axpby(alpha: f32, a: &[f32], beta: f32, b: &[f32]) -> Vec<f32> {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (alpha as f64 * x as f64 + beta as f64 * y as f64) as f32)
        .collect()
}

pub fn scale(x: &[f32], alpha: f32, beta: f32) -> Vec<f32> {
    x.iter()
        .map(|&v| (alpha as f64 * v as f64 + beta as f64) as f32)
        .collect()
}

pub fn clamp(x: &[f32], lo: f32, hi: f32) -> Vec<f32> {
    x.iter().map(|&v| v.clamp(lo, hi)).collect()
}

/// x is [N, C, inner...] flattened; bias has N*C elements.
pub fn add_channel_bias(x: &[f32], bias: &[f32], inner: usize) -> Vec<f32> {
    x.iter()
        .enumerate()
        .map(|(i, &v)| v + bias[i / inner])
        .collect()
}
