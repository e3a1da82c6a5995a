//! CPU twins of the reverse-diffusion step kernels (ops/diffusion.rs), in f64. `row` is one row
//! of the coefficient table: [timestep, c1, c2, coef_x0, coef_xt, max_log_var, min_log_var, gate].

/// Index of channel `c` of flat element `i`'s pixel in a tensor with `ch` channels, for
/// x-shaped tensors with `channels` channels and `hw` pixels.
fn channel_index(i: usize, c: usize, ch: usize, channels: usize, hw: usize) -> usize {
    let n = i / (channels * hw);
    (n * ch + c) * hw + i % hw
}

/// Returns (x0, x_prev). `shape` is x's [N, C, H, W]; `model` has `model_channels` channels.
#[allow(clippy::too_many_arguments)]
pub fn posterior_step(
    row: &[f32; 8],
    shape: [usize; 4],
    model_channels: usize,
    x: &[f32],
    model: &[f32],
    noise: &[f32],
    learned: bool,
    clip: bool,
) -> (Vec<f32>, Vec<f32>) {
    let r: Vec<f64> = row.iter().map(|&v| v as f64).collect();
    let [_, c_, h, w] = shape;
    let hw = h * w;
    let mut x0 = vec![0.0; x.len()];
    let mut prev = vec![0.0; x.len()];
    for i in 0..x.len() {
        let c = (i / hw) % c_;
        let eps = model[channel_index(i, c, model_channels, c_, hw)] as f64;
        let mut z0 = r[1] * x[i] as f64 - r[2] * eps;
        if clip {
            z0 = z0.clamp(-1.0, 1.0);
        }
        let frac = if learned {
            (model[channel_index(i, c + c_, model_channels, c_, hw)] as f64 + 1.0) / 2.0
        } else {
            1.0
        };
        let log_var = frac * r[5] + (1.0 - frac) * r[6];
        x0[i] = z0 as f32;
        prev[i] = (r[3] * z0 + r[4] * x[i] as f64 + r[7] * (0.5 * log_var).exp() * noise[i] as f64)
            as f32;
    }
    (x0, prev)
}

/// -r / ||r_n|| per sample (0 where the norm is 0); `n` samples.
pub fn loss_cotangent(residual: &[f32], n: usize) -> Vec<f32> {
    let len = residual.len() / n;
    residual
        .chunks(len)
        .flat_map(|row| {
            let norm = row.iter().map(|&v| v as f64 * v as f64).sum::<f64>().sqrt();
            row.iter().map(move |&v| {
                if norm > 0.0 {
                    (-(v as f64) / norm) as f32
                } else {
                    0.0
                }
            })
        })
        .collect()
}

/// Returns (d_model_out, direct).
pub fn x0_cotangent(
    row: &[f32; 8],
    shape: [usize; 4],
    model_channels: usize,
    x: &[f32],
    model: &[f32],
    dx0: &[f32],
    clip: bool,
) -> (Vec<f32>, Vec<f32>) {
    let (c1, c2) = (row[1] as f64, row[2] as f64);
    let [_, c_, h, w] = shape;
    let hw = h * w;
    let mut dmodel = vec![0.0; model.len()];
    let mut direct = vec![0.0; x.len()];
    for i in 0..x.len() {
        let c = (i / hw) % c_;
        let ei = channel_index(i, c, model_channels, c_, hw);
        let x0 = c1 * x[i] as f64 - c2 * model[ei] as f64;
        let g = if clip && !(-1.0..=1.0).contains(&x0) {
            0.0
        } else {
            dx0[i] as f64
        };
        direct[i] = (c1 * g) as f32;
        dmodel[ei] = (-c2 * g) as f32;
    }
    (dmodel, direct)
}

/// x_prev - zeta (direct + through_unet).
pub fn guided_update(prev: &[f32], direct: &[f32], unet: &[f32], zeta: f32) -> Vec<f32> {
    (0..prev.len())
        .map(|i| (prev[i] as f64 - zeta as f64 * (direct[i] as f64 + unet[i] as f64)) as f32)
        .collect()
}
