//! CPU twin of the EquiReg kernels, written from the definitions rather than the shader's
//! composed index formulas: g(x) = roll(D(x), (dy, dx)) as two steps, g^-1 = D^-1(roll(., -t)),
//! the residual built from those copies, and its gradients from the adjoints (inverse maps).

use crate::ops::equivariance::{Dihedral, Element, Form, Reduce};

fn dihedral(x: &[f32], shape: [usize; 4], d: Dihedral) -> Vec<f32> {
    let [n, c, h, w] = shape;
    let mut out = vec![0.0; x.len()];
    for b in 0..n * c {
        for i in 0..h {
            for j in 0..w {
                let (si, sj) = d.source(i, j, h, w);
                out[(b * h + i) * w + j] = x[(b * h + si) * w + sj];
            }
        }
    }
    out
}

fn roll(x: &[f32], shape: [usize; 4], dy: i64, dx: i64) -> Vec<f32> {
    let [n, c, h, w] = shape;
    let mut out = vec![0.0; x.len()];
    for b in 0..n * c {
        for i in 0..h {
            for j in 0..w {
                let si = (i as i64 - dy).rem_euclid(h as i64) as usize;
                let sj = (j as i64 - dx).rem_euclid(w as i64) as usize;
                out[(b * h + i) * w + j] = x[(b * h + si) * w + sj];
            }
        }
    }
    out
}

/// g(x) (or g^-1(x)) on a grid where the shifts are divided by `shift_div`.
pub fn apply(x: &[f32], shape: [usize; 4], g: Element, shift_div: i32, inverse: bool) -> Vec<f32> {
    let (dy, dx) = ((g.dy / shift_div) as i64, (g.dx / shift_div) as i64);
    if inverse {
        dihedral(&roll(x, shape, -dy, -dx), shape, g.dihedral.inverse())
    } else {
        roll(&dihedral(x, shape, g.dihedral), shape, dy, dx)
    }
}

/// Penalty per sample and the cotangents (d f_out, d x) of `alpha * red(r)`.
/// `f_shape` is f_out's shape ([2N, ...] for equi, [N, ...] = x's shape for equi_plus);
/// `rho_is_g = false` makes rho the identity.
#[allow(clippy::too_many_arguments)]
pub fn penalty_and_cotangents(
    f_out: &[f32],
    f_shape: [usize; 4],
    x: &[f32],
    g: Element,
    form: Form,
    reduce: Reduce,
    alpha: f64,
    rho_is_g: bool,
    shift_div: i32,
) -> (Vec<f64>, Vec<f32>, Vec<f32>) {
    let act = |v: &[f32], shape: [usize; 4], inverse: bool| {
        if rho_is_g {
            apply(v, shape, g, shift_div, inverse)
        } else {
            v.to_vec()
        }
    };
    let item = f_shape[1] * f_shape[2] * f_shape[3];
    let (n, r) = match form {
        Form::Equi => {
            let n = f_shape[0] / 2;
            let half = [n, f_shape[1], f_shape[2], f_shape[3]];
            let (a, b) = f_out.split_at(n * item);
            let ga = act(a, half, false);
            (
                n,
                ga.iter()
                    .zip(b)
                    .map(|(p, q)| (p - q) as f64)
                    .collect::<Vec<f64>>(),
            )
        }
        Form::EquiPlus => {
            let n = f_shape[0];
            let back = act(f_out, f_shape, true);
            (
                n,
                x.iter().zip(&back).map(|(p, q)| (p - q) as f64).collect(),
            )
        }
    };
    let mut pen = vec![0.0; n];
    let mut dr = vec![0.0f32; r.len()];
    for k in 0..n {
        let rk = &r[k * item..(k + 1) * item];
        let sq: f64 = rk.iter().map(|v| v * v).sum();
        let (value, coef) = match reduce {
            Reduce::Norm => (
                alpha * sq.sqrt(),
                if sq > 0.0 { alpha / sq.sqrt() } else { 0.0 },
            ),
            Reduce::SqNorm => (alpha * sq, 2.0 * alpha),
            Reduce::Mse => (alpha * sq / item as f64, 2.0 * alpha / item as f64),
        };
        pen[k] = value;
        for (d, v) in dr[k * item..(k + 1) * item].iter_mut().zip(rk) {
            *d = (coef * v) as f32;
        }
    }
    match form {
        Form::Equi => {
            let half = [n, f_shape[1], f_shape[2], f_shape[3]];
            // r = rho(g) F1 - F2: dF1 = rho(g)^T dr = rho(g)^-1 dr, dF2 = -dr.
            let mut df = act(&dr, half, true);
            df.extend(dr.iter().map(|v| -v));
            (pen, df, vec![0.0; x.len()])
        }
        Form::EquiPlus => {
            // r = x - g^-1 F: dx = dr, dF = -(g^-1)^T dr = -g(dr).
            let df = act(&dr, f_shape, false).iter().map(|v| -v).collect();
            (pen, df, dr)
        }
    }
}
