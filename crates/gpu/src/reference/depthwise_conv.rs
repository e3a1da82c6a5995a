//! CPU reference of [`crate::ops::depthwise_conv`]: one kernel shared by all planes,
//! cross-correlation over the reflect-padded input, and its adjoint written as the scatter that
//! transposes the forward loop (so it checks the GPU's gather independently). f64 accumulation.

/// ReflectionPad2d's index map: -1 -> 1, n -> n - 2 (valid for pads below n).
pub fn reflect(i: isize, n: usize) -> usize {
    let n = n as isize;
    let r = if i < 0 {
        -i
    } else if i >= n {
        2 * n - 2 - i
    } else {
        i
    };
    assert!(
        (0..n).contains(&r),
        "index {i} reflects outside a side of {n}"
    );
    r as usize
}

/// out[p, y, x] = sum_{a, b} K[a, b] x[p, reflect(y + a - kh/2), reflect(x + b - kw/2)].
pub fn depthwise_conv2d(x: &[f32], shape: [usize; 4], k: &[f32], ks: [usize; 2]) -> Vec<f32> {
    let [n, c, h, w] = shape;
    let [kh, kw] = ks;
    assert_eq!(x.len(), n * c * h * w);
    assert_eq!(k.len(), kh * kw);
    let (ph, pw) = ((kh / 2) as isize, (kw / 2) as isize);
    let mut out = vec![0f32; x.len()];
    for p in 0..n * c {
        let xp = &x[p * h * w..(p + 1) * h * w];
        for y in 0..h {
            for xo in 0..w {
                let mut acc = 0f64;
                for a in 0..kh {
                    let r = reflect(y as isize + a as isize - ph, h);
                    for b in 0..kw {
                        let s = reflect(xo as isize + b as isize - pw, w);
                        acc += k[a * kw + b] as f64 * xp[r * w + s] as f64;
                    }
                }
                out[p * h * w + y * w + xo] = acc as f32;
            }
        }
    }
    out
}

/// dx = A^T dy for the map of [`depthwise_conv2d`]: every tap of the forward loop sends
/// K[a, b] dy[y, x] back to the input pixel it read.
pub fn depthwise_conv2d_vjp(dy: &[f32], shape: [usize; 4], k: &[f32], ks: [usize; 2]) -> Vec<f32> {
    let [n, c, h, w] = shape;
    let [kh, kw] = ks;
    assert_eq!(dy.len(), n * c * h * w);
    assert_eq!(k.len(), kh * kw);
    let (ph, pw) = ((kh / 2) as isize, (kw / 2) as isize);
    let mut dx = vec![0f64; dy.len()];
    for p in 0..n * c {
        for y in 0..h {
            for xo in 0..w {
                let g = dy[p * h * w + y * w + xo] as f64;
                for a in 0..kh {
                    let r = reflect(y as isize + a as isize - ph, h);
                    for b in 0..kw {
                        let s = reflect(xo as isize + b as isize - pw, w);
                        dx[p * h * w + r * w + s] += k[a * kw + b] as f64 * g;
                    }
                }
            }
        }
    }
    dx.into_iter().map(|v| v as f32).collect()
}
