//! CPU reference of [`crate::ops::axis_matmul`]: a matrix along the H or W axis of
//! [N, C, H, W], f64 accumulation.

use crate::ops::axis_matmul::{Axis, output_shape};

/// `out = W x` along `axis` (or `W^T x` with `transpose`); `m` is W, row-major
/// `[m_shape[0], m_shape[1]]` = `[out_len, in_len]`. Returns the output (shape from
/// [`output_shape`]).
pub fn axis_matmul(
    x: &[f32],
    shape: [usize; 4],
    m: &[f32],
    m_shape: [usize; 2],
    axis: Axis,
    transpose: bool,
) -> Vec<f32> {
    let m64: Vec<f64> = m.iter().map(|&v| v as f64).collect();
    axis_matmul_f64(x, shape, &m64, m_shape, axis, transpose)
}

/// As [`axis_matmul`] with an f64 matrix.
pub fn axis_matmul_f64(
    x: &[f32],
    shape: [usize; 4],
    m: &[f64],
    m_shape: [usize; 2],
    axis: Axis,
    transpose: bool,
) -> Vec<f32> {
    let [n, c, h, w] = shape;
    assert_eq!(x.len(), n * c * h * w, "x length");
    assert_eq!(m.len(), m_shape[0] * m_shape[1], "matrix length");
    let os = output_shape(&shape, m_shape, axis, transpose);
    let (oh, ow) = (os[2], os[3]);
    // The matrix entry that takes input index k to output index i.
    let coef = |i: usize, k: usize| {
        if transpose {
            m[k * m_shape[1] + i]
        } else {
            m[i * m_shape[1] + k]
        }
    };
    let mut out = vec![0f32; n * c * oh * ow];
    for p in 0..n * c {
        let xp = &x[p * h * w..(p + 1) * h * w];
        for y in 0..oh {
            for xo in 0..ow {
                let acc: f64 = match axis {
                    Axis::H => (0..h).map(|k| coef(y, k) * xp[k * w + xo] as f64).sum(),
                    Axis::W => (0..w).map(|k| coef(xo, k) * xp[y * w + k] as f64).sum(),
                };
                out[(p * oh + y) * ow + xo] = acc as f32;
            }
        }
    }
    out
}
