//! CPU reference of GroupNorm (+ scale-shift, + SiLU) and of its VJP with respect to x.

fn widen(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// x is [N, C, plane] flattened; gamma, beta are `[C]`; scale_shift is [N, 2C] (scale, then shift).
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
    let ss = scale_shift.map(widen);
    group_norm_f64(
        &widen(x),
        n,
        c,
        plane,
        &widen(gamma),
        &widen(beta),
        ss.as_deref(),
        groups,
        eps as f64,
        silu,
    )
    .into_iter()
    .map(|v| v as f32)
    .collect()
}

/// [`group_norm`] entirely in f64 (for finite-difference checks of the VJP).
#[allow(clippy::too_many_arguments)]
pub fn group_norm_f64(
    x: &[f64],
    n: usize,
    c: usize,
    plane: usize,
    gamma: &[f64],
    beta: &[f64],
    scale_shift: Option<&[f64]>,
    groups: usize,
    eps: f64,
    silu: bool,
) -> Vec<f64> {
    assert_eq!(x.len(), n * c * plane);
    assert_eq!(c % groups, 0);
    let cpg = c / groups;
    let len = cpg * plane;
    let mut out = vec![0f64; x.len()];
    for s in 0..n {
        for g in 0..groups {
            let base = (s * c + g * cpg) * plane;
            let vals = &x[base..base + len];
            let mean = vals.iter().sum::<f64>() / len as f64;
            let var = vals.iter().map(|&v| (v - mean).powi(2)).sum::<f64>() / len as f64;
            let rstd = 1.0 / (var + eps).sqrt();
            for j in 0..len {
                let ch = g * cpg + j / plane;
                let mut y = (vals[j] - mean) * rstd * gamma[ch] + beta[ch];
                if let Some(ss) = scale_shift {
                    let scale = ss[s * 2 * c + ch];
                    let shift = ss[s * 2 * c + c + ch];
                    y = y * (1.0 + scale) + shift;
                }
                if silu {
                    y /= 1.0 + (-y).exp();
                }
                out[base + j] = y;
            }
        }
    }
    out
}

/// dx = (d group_norm / d x)^T dy, the other inputs held constant, in f64. Arguments as for
/// [`group_norm`], plus dy of x's shape.
#[allow(clippy::too_many_arguments)]
pub fn group_norm_vjp(
    x: &[f32],
    dy: &[f32],
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
    assert_eq!(dy.len(), x.len());
    assert_eq!(c % groups, 0);
    let cpg = c / groups;
    let len = cpg * plane;
    let mut dx = vec![0f32; x.len()];
    let mut xhat = vec![0f64; len];
    // dL/dxhat of the group's elements.
    let mut gh = vec![0f64; len];
    for s in 0..n {
        for g in 0..groups {
            let base = (s * c + g * cpg) * plane;
            let vals = &x[base..base + len];
            let mean = vals.iter().map(|&v| v as f64).sum::<f64>() / len as f64;
            let var = vals.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / len as f64;
            let rstd = 1.0 / (var + eps as f64).sqrt();
            for j in 0..len {
                let ch = g * cpg + j / plane;
                let (gm, bt) = (gamma[ch] as f64, beta[ch] as f64);
                let (scale, shift) = match scale_shift {
                    Some(ss) => (ss[s * 2 * c + ch] as f64, ss[s * 2 * c + c + ch] as f64),
                    None => (0.0, 0.0),
                };
                xhat[j] = (vals[j] as f64 - mean) * rstd;
                // z: the value SiLU sees; out = silu(z) or z.
                let z = (xhat[j] * gm + bt) * (1.0 + scale) + shift;
                let dz = if silu {
                    let sig = 1.0 / (1.0 + (-z).exp());
                    sig + z * sig * (1.0 - sig)
                } else {
                    1.0
                };
                gh[j] = dy[base + j] as f64 * dz * (1.0 + scale) * gm;
            }
            let mean_g = gh.iter().sum::<f64>() / len as f64;
            let mean_gx = gh.iter().zip(&xhat).map(|(a, b)| a * b).sum::<f64>() / len as f64;
            for j in 0..len {
                dx[base + j] = (rstd * (gh[j] - mean_g - xhat[j] * mean_gx)) as f32;
            }
        }
    }
    dx
}
