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
