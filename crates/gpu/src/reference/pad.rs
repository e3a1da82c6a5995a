//! CPU references of 2-D zero padding and its VJP (the crop); tensors are [planes, h, w]
//! flattened, `h` and `w` the unpadded size.

use crate::ops::pad::Pad2d;

fn padded(h: usize, w: usize, p: Pad2d) -> (usize, usize) {
    (
        h + (p.top + p.bottom) as usize,
        w + (p.left + p.right) as usize,
    )
}

/// x [planes, h, w] -> [planes, h + top + bottom, w + left + right] with zeros around.
pub fn pad2d(x: &[f32], planes: usize, h: usize, w: usize, p: Pad2d) -> Vec<f32> {
    assert_eq!(x.len(), planes * h * w);
    let (oh, ow) = padded(h, w, p);
    let mut out = vec![0f32; planes * oh * ow];
    for pl in 0..planes {
        for y in 0..h {
            for xx in 0..w {
                let (oy, ox) = (y + p.top as usize, xx + p.left as usize);
                out[(pl * oh + oy) * ow + ox] = x[(pl * h + y) * w + xx];
            }
        }
    }
    out
}

/// VJP of [`pad2d`]: dy [planes, h + top + bottom, w + left + right] -> dx [planes, h, w], the
/// interior of dy.
pub fn pad2d_vjp(dy: &[f32], planes: usize, h: usize, w: usize, p: Pad2d) -> Vec<f32> {
    let (oh, ow) = padded(h, w, p);
    assert_eq!(dy.len(), planes * oh * ow);
    let mut dx = vec![0f32; planes * h * w];
    for pl in 0..planes {
        for y in 0..h {
            for xx in 0..w {
                dx[(pl * h + y) * w + xx] =
                    dy[(pl * oh + y + p.top as usize) * ow + xx + p.left as usize];
            }
        }
    }
    dx
}
