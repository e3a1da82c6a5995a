//! CPU reference of GroupNorm (+ scale-shift, + SiLU).

/// x is [N, C, plane] flattened; gamma, beta are [C]; scale_shift is [N, 2C] (scale, then shift).
#[allow(clippy::too_many_arguments)]
pub fn group_norm(
    x: &[f32],
    n: usize,
    c: usize,
    plane: usize,
    gamma: &[f32],
    beta: &[f32],
    scale_shift: Option<&[f32]>,
    groups: usize,
    eps: f32,
    silu: bool,
) -> Vec<f32> {
    assert_eq!(x.len(), n * c * plane);
    assert_eq!(c % groups, 0);
    let cpg = c / groups;
    let len = cpg * plane;
    let mut out = vec![0f32; x.len()];
    for s in 0..n {
        for g in 0..groups {
            let base = (s * c + g * cpg) * plane;
            let vals = &x[base..base + len];
            let mean = vals.iter().map(|&v| v as f64).sum::<f64>() / len as f64;
            let var = vals.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / len as f64;
            let rstd = 1.0 / (var + eps as f64).sqrt();
            for j in 0..len {
                let ch = g * cpg + j / plane;
                let mut y = (vals[j] as f64 - mean) * rstd * gamma[ch] as f64 + beta[ch] as f64;
                if let Some(ss) = scale_shift {
                    let scale = ss[s * 2 * c + ch] as f64;
                    let shift = ss[s * 2 * c + c + ch] as f64;
                    y = y * (1.0 + scale) + shift;
                }
                if silu {
                    y /= 1.0 + (-y).exp();
                }
                out[base + j] = y as f32;
            }
        }
    }
    out
}
