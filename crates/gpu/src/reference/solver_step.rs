//! CPU twins of the shared sampler step kernels (ops/solver_step.rs), in f64. `row` is one row
//! of the step table, indexed by `ops::solver_step::Column`.

use crate::ops::solver_step::Column;

/// Index of element `i`'s epsilon in a model output with `model_channels` channels, for
/// x-shaped tensors `shape` `[N, C, H, W]`.
fn eps_index(i: usize, shape: [usize; 4], model_channels: usize) -> usize {
    let [_, c, h, w] = shape;
    let hw = h * w;
    let n = i / (c * hw);
    (n * model_channels + (i / hw) % c) * hw + i % hw
}

fn col(row: &[f32], c: Column) -> f64 {
    row[c.index()] as f64
}

/// `x0 = c1 x - c2 eps`, clamped to [-1, 1] when `clip`.
pub fn tweedie(
    row: &[f32],
    shape: [usize; 4],
    model_channels: usize,
    x: &[f32],
    model: &[f32],
    clip: bool,
) -> Vec<f32> {
    (0..x.len())
        .map(|i| {
            let v = col(row, Column::SqrtRecipAbar) * x[i] as f64
                - col(row, Column::SqrtRecipm1Abar)
                    * model[eps_index(i, shape, model_channels)] as f64;
            (if clip { v.clamp(-1.0, 1.0) } else { v }) as f32
        })
        .collect()
}

/// `A x0 + B x + C eps + D z + E g`.
#[allow(clippy::too_many_arguments)]
pub fn affine_update(
    row: &[f32],
    shape: [usize; 4],
    model_channels: usize,
    x0: &[f32],
    x: &[f32],
    model: &[f32],
    z: &[f32],
    g: &[f32],
) -> Vec<f32> {
    (0..x.len())
        .map(|i| {
            (col(row, Column::CoefX0) * x0[i] as f64
                + col(row, Column::CoefX) * x[i] as f64
                + col(row, Column::CoefEps) * model[eps_index(i, shape, model_channels)] as f64
                + col(row, Column::CoefNoise) * z[i] as f64
                + col(row, Column::CoefGrad) * g[i] as f64) as f32
        })
        .collect()
}

/// One torch.optim.Adam step (f64, no weight decay) at step number `t` (1 for the first):
/// updates `m`, `v` and `u` in place.
#[allow(clippy::too_many_arguments)]
pub fn adam_step(
    t: u32,
    g: &[f32],
    m: &mut [f64],
    v: &mut [f64],
    u: &mut [f64],
    lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
) {
    let bc1 = 1.0 - beta1.powi(t as i32);
    let bc2 = 1.0 - beta2.powi(t as i32);
    for i in 0..u.len() {
        let gi = g[i] as f64;
        m[i] = beta1 * m[i] + (1.0 - beta1) * gi;
        v[i] = beta2 * v[i] + (1.0 - beta2) * gi * gi;
        u[i] -= lr / bc1 * m[i] / (v[i].sqrt() / bc2.sqrt() + eps);
    }
}

/// [`adam_step`] on the samples (`per_sample` values each) whose flag in `active` is not 0.
#[allow(clippy::too_many_arguments)]
pub fn adam_step_masked(
    t: u32,
    g: &[f32],
    m: &mut [f64],
    v: &mut [f64],
    u: &mut [f64],
    active: &[f32],
    lr: f64,
    [beta1, beta2, eps]: [f64; 3],
) {
    let per = u.len() / active.len();
    for (n, &a) in active.iter().enumerate() {
        if a != 0.0 {
            let r = n * per..(n + 1) * per;
            adam_step(
                t,
                &g[r.clone()],
                &mut m[r.clone()],
                &mut v[r.clone()],
                &mut u[r],
                lr,
                beta1,
                beta2,
                eps,
            );
        }
    }
}

/// `active[n] = 0` where `norm[n]^2 < threshold`.
pub fn stop_flags(norm: &[f32], active: &mut [f32], threshold: f32) {
    for (a, &r) in active.iter_mut().zip(norm) {
        if r * r < threshold {
            *a = 0.0;
        }
    }
}
