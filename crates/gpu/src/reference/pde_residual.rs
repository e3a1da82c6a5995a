//! CPU twin of [`crate::ops::pde_residual`]: the Darcy residual, its loss and the loss's
//! gradient, in f64, written as the direct sums (the gradient by the chain rule over the
//! residual's stencil taps, not by the kernels' adjoint passes).

use crate::ops::pde_residual::DarcyResidualParams;

/// Per sample: the residual `[H, W]` (0 on the border) and the loss `weight * mean psi(r)`.
pub fn darcy_residual(
    x: &[f32],
    shape: [usize; 4],
    p: &DarcyResidualParams,
) -> Vec<(Vec<f64>, f64)> {
    let [n, c, h, w] = shape;
    assert_eq!(c, 2);
    assert_eq!(x.len(), n * 2 * h * w);
    let inv2h = 0.5 / p.spacing as f64;
    let mut out = Vec::with_capacity(n);
    for b in 0..n {
        let field = |ch: usize, i: isize, j: isize| -> f64 {
            if i < 0 || j < 0 || i >= h as isize || j >= w as isize {
                return 0.0;
            }
            let v = x[((b * 2 + ch) * h + i as usize) * w + j as usize] as f64;
            if ch == 0 {
                p.a_mean as f64 + p.a_scale as f64 * v
            } else {
                p.u_mean as f64 + p.u_scale as f64 * v
            }
        };
        let inside = |i: isize, j: isize| i >= 0 && j >= 0 && i < h as isize && j < w as isize;
        let fx = |i: isize, j: isize| {
            if !inside(i, j) {
                0.0
            } else {
                field(0, i, j) * (field(1, i, j + 1) - field(1, i, j - 1)) * inv2h
            }
        };
        let fy = |i: isize, j: isize| {
            if !inside(i, j) {
                0.0
            } else {
                field(0, i, j) * (field(1, i + 1, j) - field(1, i - 1, j)) * inv2h
            }
        };
        let mut r = vec![0f64; h * w];
        let mut loss = 0f64;
        let crop = p.crop;
        let count = ((h - 2 * crop) * (w - 2 * crop)) as f64;
        for i in crop..h - crop {
            for j in crop..w - crop {
                let (ii, jj) = (i as isize, j as isize);
                let v = (fx(ii, jj + 1) - fx(ii, jj - 1)) * inv2h
                    + (fy(ii + 1, jj) - fy(ii - 1, jj)) * inv2h
                    + 1.0;
                r[i * w + j] = v;
                loss += psi(v, p.delta as f64);
            }
        }
        out.push((r, p.weight as f64 * loss / count));
    }
    out
}

/// Huber (delta > 0: r^2 / 2 inside, delta (|r| - delta / 2) outside) or r^2 (delta = 0).
pub fn psi(r: f64, delta: f64) -> f64 {
    if delta == 0.0 {
        r * r
    } else if r.abs() <= delta {
        0.5 * r * r
    } else {
        delta * (r.abs() - 0.5 * delta)
    }
}

fn dpsi(r: f64, delta: f64) -> f64 {
    if delta == 0.0 {
        2.0 * r
    } else {
        r.clamp(-delta, delta)
    }
}

/// The gradient of the summed loss over the batch with respect to `x`, `[N, 2, H, W]`.
pub fn darcy_residual_grad(x: &[f32], shape: [usize; 4], p: &DarcyResidualParams) -> Vec<f64> {
    let [_, _, h, w] = shape;
    let res = darcy_residual(x, shape, p);
    let inv2h = 0.5 / p.spacing as f64;
    let count = ((h - 2 * p.crop) * (w - 2 * p.crop)) as f64;
    let mut grad = vec![0f64; x.len()];
    let at = |b: usize, ch: usize, i: isize, j: isize| -> Option<usize> {
        if i < 0 || j < 0 || i >= h as isize || j >= w as isize {
            None
        } else {
            Some(((b * 2 + ch) * h + i as usize) * w + j as usize)
        }
    };
    let phys = |k: Option<usize>, ch: usize| -> f64 {
        match k {
            None => 0.0,
            Some(k) if ch == 0 => p.a_mean as f64 + p.a_scale as f64 * x[k] as f64,
            Some(k) => p.u_mean as f64 + p.u_scale as f64 * x[k] as f64,
        }
    };
    for (b, (r, _)) in res.iter().enumerate() {
        for i in p.crop..h - p.crop {
            for j in p.crop..w - p.crop {
                let g = p.weight as f64 * dpsi(r[i * w + j], p.delta as f64) / count;
                let (ii, jj) = (i as isize, j as isize);
                // r = inv2h * (F_x(i, j+1) - F_x(i, j-1) + F_y(i+1, j) - F_y(i-1, j)) + 1, with
                // F_x(m) = a(m) (u(m + e_x) - u(m - e_x)) inv2h and likewise F_y.
                let taps: [(isize, isize, f64, (isize, isize)); 4] = [
                    (ii, jj + 1, 1.0, (0, 1)),
                    (ii, jj - 1, -1.0, (0, 1)),
                    (ii + 1, jj, 1.0, (1, 0)),
                    (ii - 1, jj, -1.0, (1, 0)),
                ];
                for (mi, mj, sign, (di, dj)) in taps {
                    let Some(ka) = at(b, 0, mi, mj) else { continue };
                    let coef = g * sign * inv2h;
                    let up = at(b, 1, mi + di, mj + dj);
                    let down = at(b, 1, mi - di, mj - dj);
                    let du = (phys(up, 1) - phys(down, 1)) * inv2h;
                    let a = phys(Some(ka), 0);
                    grad[ka] += coef * du * p.a_scale as f64;
                    if let Some(k) = up {
                        grad[k] += coef * a * inv2h * p.u_scale as f64;
                    }
                    if let Some(k) = down {
                        grad[k] -= coef * a * inv2h * p.u_scale as f64;
                    }
                }
            }
        }
    }
    grad
}
