//! CPU references of 2x upsampling and 2x2 average pooling; x is [planes, h, w] flattened.

pub fn upsample_nearest2x(x: &[f32], planes: usize, h: usize, w: usize) -> Vec<f32> {
    let mut out = vec![0f32; planes * 4 * h * w];
    for p in 0..planes {
        for y in 0..2 * h {
            for xx in 0..2 * w {
                out[(p * 2 * h + y) * 2 * w + xx] = x[(p * h + y / 2) * w + xx / 2];
            }
        }
    }
    out
}

pub fn avg_pool2x(x: &[f32], planes: usize, h: usize, w: usize) -> Vec<f32> {
    let (oh, ow) = (h / 2, w / 2);
    let mut out = vec![0f32; planes * oh * ow];
    for p in 0..planes {
        for y in 0..oh {
            for xx in 0..ow {
                let at = |dy: usize, dx: usize| x[(p * h + 2 * y + dy) * w + 2 * xx + dx] as f64;
                let sum = at(0, 0) + at(0, 1) + at(1, 0) + at(1, 1);
                out[(p * oh + y) * ow + xx] = (sum / 4.0) as f32;
            }
        }
    }
    out
}

/// VJP of [`upsample_nearest2x`]: dy is [planes, 2h, 2w], returns dx [planes, h, w], each the sum
/// of the four dy values its input was copied to.
pub fn upsample_nearest2x_vjp(dy: &[f32], planes: usize, h: usize, w: usize) -> Vec<f32> {
    assert_eq!(dy.len(), planes * 4 * h * w);
    let mut dx = vec![0f64; planes * h * w];
    for p in 0..planes {
        for y in 0..2 * h {
            for xx in 0..2 * w {
                dx[(p * h + y / 2) * w + xx / 2] += dy[(p * 2 * h + y) * 2 * w + xx] as f64;
            }
        }
    }
    dx.into_iter().map(|v| v as f32).collect()
}

/// VJP of [`avg_pool2x`]: dy is [planes, h/2, w/2], returns dx [planes, h, w]: every input of a
/// 2x2 block receives a quarter of the block's dy.
pub fn avg_pool2x_vjp(dy: &[f32], planes: usize, h: usize, w: usize) -> Vec<f32> {
    let (oh, ow) = (h / 2, w / 2);
    assert_eq!(dy.len(), planes * oh * ow);
    let mut dx = vec![0f32; planes * h * w];
    for p in 0..planes {
        for y in 0..h {
            for xx in 0..w {
                dx[(p * h + y) * w + xx] = (dy[(p * oh + y / 2) * ow + xx / 2] as f64 / 4.0) as f32;
            }
        }
    }
    dx
}
