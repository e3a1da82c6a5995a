//! CPU reference of the conv2d input gradient: the adjoint of reference::conv::conv2d, written
//! as a scatter of every (output, weight) product back to its input position.

/// dy [N, Co, Ho, Wo], w [Co, Ci, Kh, Kw] -> dx [N, Ci, H, W].
#[allow(clippy::too_many_arguments)]
pub fn conv2d_input_grad(
    dy: &[f32],
    dy_shape: [usize; 4],
    w: &[f32],
    w_shape: [usize; 4],
    h: usize,
    wd: usize,
    stride: usize,
    pad: usize,
) -> Vec<f32> {
    let [n, co, ho, wo] = dy_shape;
    let [_, ci, kh, kw] = w_shape;
    let mut dx = vec![0f64; n * ci * h * wd];
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
                                dx[((b * ci + c) * h + iy as usize) * wd + ix as usize] +=
                                    g * w[((o * ci + c) * kh + ky) * kw + kx] as f64;
                            }
                        }
                    }
                }
            }
        }
    }
    dx.into_iter().map(|v| v as f32).collect()
}
