//! CPU reference of the input gradient of conv2d: scatters every output gradient back through
//! the kernel window of the forward convolution, f64 accumulation.

/// dy is [n, co, ho, wo], w is [co, ci, kh, kw]; the forward convolution had input [n, ci, h, w]
/// (`x_hw` = (h, w)), zero padding `pad` on every side and the same `stride` along both axes.
/// Returns dx = d/dx sum(conv2d(x, w) * dy), [n, ci, h, w] row-major.
pub fn conv2d_input_grad(
    dy: &[f32],
    dy_shape: [usize; 4],
    w: &[f32],
    w_shape: [usize; 4],
    x_hw: (usize, usize),
    stride: usize,
    pad: usize,
) -> Vec<f32> {
    let [n, co, ho, wo] = dy_shape;
    let [wco, ci, kh, kw] = w_shape;
    let (h, wd) = x_hw;
    assert_eq!(co, wco, "channel counts differ");
    assert_eq!(ho, (h + 2 * pad - kh) / stride + 1, "output height");
    assert_eq!(wo, (wd + 2 * pad - kw) / stride + 1, "output width");
    let mut dx = vec![0f64; n * ci * h * wd];
    // The forward reads x[iy, ix] with iy = oy * stride + ky - pad for output (oy, ox) and tap
    // (ky, kx); the gradient adds dy[oy, ox] * w[ky, kx] to every such x.
    for b in 0..n {
        for o in 0..co {
            for oy in 0..ho {
                for ox in 0..wo {
                    let g = dy[((b * co + o) * ho + oy) * wo + ox] as f64;
                    for c in 0..ci {
                        for ky in 0..kh {
                            let iy = (oy * stride + ky) as isize - pad as isize;
                            if iy < 0 || iy >= h as isize {
                                continue;
                            }
                            for kx in 0..kw {
                                let ix = (ox * stride + kx) as isize - pad as isize;
                                if ix < 0 || ix >= wd as isize {
                                    continue;
                                }
                                let wv = w[((o * ci + c) * kh + ky) * kw + kx] as f64;
                                dx[((b * ci + c) * h + iy as usize) * wd + ix as usize] += g * wv;
                            }
                        }
                    }
                }
            }
        }
    }
    dx.into_iter().map(|v| v as f32).collect()
}
