//! CPU reference of conv2d: direct summation over the kernel window, f64 accumulation.

/// x is [n, ci, h, w], w is [co, ci, kh, kw], bias `[co]`, residual [n, co, ho, wo]; zero padding
/// `pad` on every side, the same `stride` along both axes. Returns [n, co, ho, wo] (row-major) and
/// the output shape.
#[allow(clippy::too_many_arguments)]
pub fn conv2d(
    x: &[f32],
    x_shape: [usize; 4],
    w: &[f32],
    w_shape: [usize; 4],
    bias: Option<&[f32]>,
    residual: Option<&[f32]>,
    stride: usize,
    pad: usize,
) -> (Vec<f32>, [usize; 4]) {
    let [n, ci, h, wd] = x_shape;
    let [co, wci, kh, kw] = w_shape;
    assert_eq!(ci, wci, "channel counts differ");
    let ho = (h + 2 * pad - kh) / stride + 1;
    let wo = (wd + 2 * pad - kw) / stride + 1;
    let mut out = vec![0f32; n * co * ho * wo];
    for b in 0..n {
        for o in 0..co {
            for oy in 0..ho {
                for ox in 0..wo {
                    let mut s = 0f64;
                    for c in 0..ci {
                        for ky in 0..kh {
                            // Input coordinates in the unpadded image; outside means zero.
                            let iy = (oy * stride + ky) as isize - pad as isize;
                            if iy < 0 || iy >= h as isize {
                                continue;
                            }
                            for kx in 0..kw {
                                let ix = (ox * stride + kx) as isize - pad as isize;
                                if ix < 0 || ix >= wd as isize {
                                    continue;
                                }
                                let xv = x[((b * ci + c) * h + iy as usize) * wd + ix as usize];
                                let wv = w[((o * ci + c) * kh + ky) * kw + kx];
                                s += xv as f64 * wv as f64;
                            }
                        }
                    }
                    let i = ((b * co + o) * ho + oy) * wo + ox;
                    if let Some(bias) = bias {
                        s += bias[o] as f64;
                    }
                    if let Some(r) = residual {
                        s += r[i] as f64;
                    }
                    out[i] = s as f32;
                }
            }
        }
    }
    (out, [n, co, ho, wo])
}
