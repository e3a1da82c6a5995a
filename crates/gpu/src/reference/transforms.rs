//! CPU reference of the group transforms: each one an explicit map from an output coordinate to
//! the input coordinate it copies.

use crate::ops::transforms::Transform;

/// The input (row, col) that output (i, j) reads, for an h x w input plane.
pub fn source(t: Transform, i: usize, j: usize, h: usize, w: usize) -> (usize, usize) {
    match t {
        Transform::Identity => (i, j),
        Transform::FlipH => (i, w - 1 - j),
        Transform::FlipV => (h - 1 - i, j),
        // torch.rot90(x, k, dims=(-2, -1)) is k counter-clockwise quarter turns:
        // k = 1 is flip(W) then transpose, k = 3 is flip(H) then transpose.
        Transform::Rot90 { k } => match k % 4 {
            0 => (i, j),
            1 => (j, w - 1 - i),
            2 => (h - 1 - i, w - 1 - j),
            _ => (h - 1 - j, i),
        },
        Transform::Transpose => (j, i),
        // torch.roll: out[r] = x[(r - shift) mod size].
        Transform::Translate { dy, dx } => (
            (i as i64 - dy as i64).rem_euclid(h as i64) as usize,
            (j as i64 - dx as i64).rem_euclid(w as i64) as usize,
        ),
    }
}

/// t applied to x of shape `[n, c, h, w]` (row-major); the result has shape
/// `[n, c, t.output_hw(h, w)]`.
pub fn apply_transform(x: &[f32], shape: [usize; 4], t: Transform) -> Vec<f32> {
    let [n, c, h, w] = shape;
    assert_eq!(x.len(), n * c * h * w, "x does not match shape {shape:?}");
    let (ho, wo) = t.output_hw(h, w);
    let mut out = Vec::with_capacity(n * c * ho * wo);
    for plane in 0..n * c {
        for i in 0..ho {
            for j in 0..wo {
                let (si, sj) = source(t, i, j, h, w);
                out.push(x[plane * h * w + si * w + sj]);
            }
        }
    }
    out
}
