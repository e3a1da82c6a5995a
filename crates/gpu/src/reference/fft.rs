//! CPU references of [`crate::ops::fft`]: a naive O(N^2)-per-axis orthonormal DFT in f64 and the
//! shift/pad/magnitude helpers of phase retrieval. Complex data is interleaved (re, im) pairs.

use crate::ops::fft::ShiftedEmbedding;

/// Orthonormal 1-D DFT along one axis of `[B, H, W]` complex data: `axis` 1 is H, 2 is W.
fn dft_axis(x: &[f64], b: usize, h: usize, w: usize, axis: usize, inverse: bool) -> Vec<f64> {
    let (n, stride) = if axis == 1 { (h, w) } else { (w, 1) };
    let sign = if inverse { 1.0 } else { -1.0 };
    let scale = 1.0 / (n as f64).sqrt();
    let mut out = vec![0.0; x.len()];
    for bi in 0..b {
        for other in 0..(h * w / n) {
            // First element of this line.
            let base = if axis == 1 {
                bi * h * w + other
            } else {
                bi * h * w + other * w
            };
            for k in 0..n {
                let (mut re, mut im) = (0.0, 0.0);
                for j in 0..n {
                    // Reduce j k mod n first so the angle stays small and exact.
                    let a = sign * 2.0 * std::f64::consts::PI * ((j * k) % n) as f64 / n as f64;
                    let (s, c) = a.sin_cos();
                    let idx = 2 * (base + j * stride);
                    re += x[idx] * c - x[idx + 1] * s;
                    im += x[idx] * s + x[idx + 1] * c;
                }
                let o = 2 * (base + k * stride);
                out[o] = re * scale;
                out[o + 1] = im * scale;
            }
        }
    }
    out
}

/// Orthonormal 2-D DFT (or its inverse) of `[B, H, W, 2]` data in f64.
pub fn dft2_f64(x: &[f64], b: usize, h: usize, w: usize, inverse: bool) -> Vec<f64> {
    assert_eq!(x.len(), b * h * w * 2, "dft2: data length");
    let t = dft_axis(x, b, h, w, 2, inverse);
    dft_axis(&t, b, h, w, 1, inverse)
}

/// Orthonormal 2-D DFT (or its inverse) of `[B, H, W, 2]` f32 data, accumulated in f64.
pub fn dft2(x: &[f32], b: usize, h: usize, w: usize, inverse: bool) -> Vec<f32> {
    let x: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    dft2_f64(&x, b, h, w, inverse)
        .into_iter()
        .map(|v| v as f32)
        .collect()
}

/// Big-image index (row, col) of small pixel (a, c) after the roll.
fn rolled(e: &ShiftedEmbedding, a: usize, c: usize) -> (usize, usize) {
    ((a + e.top + e.sy) % e.big_h, (c + e.left + e.sx) % e.big_w)
}

/// `[B, h, w]` real -> `[B, H, W, 2]` complex: pad, roll, zero imaginary part.
pub fn embed_real_shifted(e: &ShiftedEmbedding, x: &[f64], b: usize) -> Vec<f64> {
    let mut out = vec![0.0; b * e.big_h * e.big_w * 2];
    for bi in 0..b {
        for a in 0..e.h {
            for c in 0..e.w {
                let (i, j) = rolled(e, a, c);
                out[2 * ((bi * e.big_h + i) * e.big_w + j)] = x[(bi * e.h + a) * e.w + c];
            }
        }
    }
    out
}

/// Adjoint of [`embed_real_shifted`]: real part, inverse roll, crop.
pub fn crop_real_shifted(e: &ShiftedEmbedding, g: &[f64], b: usize) -> Vec<f64> {
    let mut out = vec![0.0; b * e.h * e.w];
    for bi in 0..b {
        for a in 0..e.h {
            for c in 0..e.w {
                let (i, j) = rolled(e, a, c);
                out[(bi * e.h + a) * e.w + c] = g[2 * ((bi * e.big_h + i) * e.big_w + j)];
            }
        }
    }
    out
}

/// `y[(i + sy) mod H, (j + sx) mod W] = |z[i, j]|` for `[B, H, W, 2]` z.
pub fn shifted_magnitude(e: &ShiftedEmbedding, z: &[f64], b: usize) -> Vec<f64> {
    let (hh, ww) = (e.big_h, e.big_w);
    let mut y = vec![0.0; b * hh * ww];
    for bi in 0..b {
        for i in 0..hh {
            for j in 0..ww {
                let src = 2 * ((bi * hh + i) * ww + j);
                let dst = (bi * hh + (i + e.sy) % hh) * ww + (j + e.sx) % ww;
                y[dst] = z[src].hypot(z[src + 1]);
            }
        }
    }
    y
}

/// VJP of [`shifted_magnitude`]: `out[i, j] = dy[(i + sy) mod H, (j + sx) mod W] z / |z|`, 0 where
/// z = 0.
pub fn shifted_phase_vjp(e: &ShiftedEmbedding, z: &[f64], dy: &[f64], b: usize) -> Vec<f64> {
    let (hh, ww) = (e.big_h, e.big_w);
    let mut out = vec![0.0; b * hh * ww * 2];
    for bi in 0..b {
        for i in 0..hh {
            for j in 0..ww {
                let at = 2 * ((bi * hh + i) * ww + j);
                let r = z[at].hypot(z[at + 1]);
                if r > 0.0 {
                    let d = dy[(bi * hh + (i + e.sy) % hh) * ww + (j + e.sx) % ww];
                    out[at] = d * z[at] / r;
                    out[at + 1] = d * z[at + 1] / r;
                }
            }
        }
    }
    out
}
