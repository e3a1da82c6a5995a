//! The conv2d input gradient against the CPU adjoint and, as the exact adjoint of the GPU
//! forward conv, by the dot-product test <conv(x), dy> = <x, conv2d_input_grad(dy)>.
//!
//! Tolerance vs the reference: atol 1e-4 * max(1, sqrt(K / 100)) + rtol 1e-4 with K = Co*Kh*Kw
//! terms per input element; dot-product test: relative 1e-5.

use equireg_gpu::DType;
use equireg_gpu::ops::conv::{Conv2dParams, conv2d, conv2d_out_shape};
use equireg_gpu::ops::conv_vjp::{conv2d_input_grad, input_grad_scratch};
use equireg_gpu::reference::conv_vjp as cpu;

use crate::common::{assert_close, gpu, random, rec};

fn check(x: [usize; 4], w: [usize; 4], stride: u32, pad: u32, seed: u64) {
    let g = gpu();
    let p = Conv2dParams {
        stride,
        padding: pad,
    };
    let ys = conv2d_out_shape(&x, &w, p).unwrap();
    let xn: usize = x.iter().product();
    let yn: usize = ys.iter().product();
    let wn: usize = w.iter().product();
    let (xv, wv, dyv) = (random(xn, seed), random(wn, seed + 1), random(yn, seed + 2));
    let xt = g.upload(&x, &xv).unwrap();
    let wt = g.upload(&w, &wv).unwrap();
    let dyt = g.upload(&ys, &dyv).unwrap();
    let y = g.alloc(&ys, DType::F32).unwrap();
    let dx = g.alloc(&x, DType::F32).unwrap();
    let scratch = input_grad_scratch(g, &w).unwrap();
    let mut r = rec();
    conv2d(&mut r, &xt, &wt, None, None, &y, p).unwrap();
    conv2d_input_grad(&mut r, &dyt, &wt, &scratch, &dx, p).unwrap();
    r.submit().unwrap();
    let got = g.download(&dx).unwrap();
    let want = cpu::conv2d_input_grad(&dyv, ys, &wv, w, x[2], x[3], stride as usize, pad as usize);
    let k = (w[0] * w[2] * w[3]) as f32;
    let atol = 1e-4 * (k / 100.0).sqrt().max(1.0);
    assert_close(
        &got,
        &want,
        atol,
        1e-4,
        &format!("conv2d_input_grad x{x:?} w{w:?} s{stride} p{pad}"),
    );
    // <conv(x), dy> = <x, J^T dy>, both sides from the GPU.
    let yv = g.download(&y).unwrap();
    let lhs: f64 = yv
        .iter()
        .zip(&dyv)
        .map(|(&a, &b)| a as f64 * b as f64)
        .sum();
    let rhs: f64 = xv
        .iter()
        .zip(&got)
        .map(|(&a, &b)| a as f64 * b as f64)
        .sum();
    let scale: f64 = yv
        .iter()
        .zip(&dyv)
        .map(|(&a, &b)| (a as f64 * b as f64).abs())
        .sum();
    assert!(
        (lhs - rhs).abs() <= 1e-5 * scale,
        "dot-product test: {lhs} vs {rhs} (scale {scale})"
    );
}

#[test]
fn conv3x3_stride1_padding1_batch2_nonsquare() {
    check([2, 5, 13, 10], [7, 5, 3, 3], 1, 1, 10);
    check([1, 33, 9, 11], [33, 33, 3, 3], 1, 1, 20);
    check([2, 64, 8, 8], [32, 64, 3, 3], 1, 1, 30);
}

#[test]
fn conv1x1_and_5x5() {
    check([2, 6, 7, 9], [5, 6, 1, 1], 1, 0, 40);
    check([1, 4, 12, 9], [3, 4, 5, 5], 1, 2, 50);
    check([1, 3, 12, 12], [2, 3, 3, 3], 1, 0, 55);
}

#[test]
fn stride2_even_and_odd_sizes() {
    check([2, 4, 10, 8], [6, 4, 3, 3], 2, 1, 60);
    check([1, 3, 11, 9], [5, 3, 3, 3], 2, 1, 70);
}

#[test]
fn mismatched_shapes_are_errors() {
    let g = gpu();
    let w = g.alloc(&[4, 3, 3, 3], DType::F32).unwrap();
    let dy = g.alloc(&[1, 4, 8, 8], DType::F32).unwrap();
    let dx = g.alloc(&[1, 3, 9, 8], DType::F32).unwrap();
    let s = input_grad_scratch(g, &[4, 3, 3, 3]).unwrap();
    let p = Conv2dParams {
        stride: 1,
        padding: 1,
    };
    let mut r = rec();
    let e = conv2d_input_grad(&mut r, &dy, &w, &s, &dx, p)
        .unwrap_err()
        .to_string();
    assert!(e.contains("dy has shape"), "{e}");
    let bad = g.alloc(&[4, 3, 3, 3], DType::F32).unwrap();
    let dx = g.alloc(&[1, 3, 8, 8], DType::F32).unwrap();
    let e = conv2d_input_grad(&mut r, &dy, &w, &bad, &dx, p)
        .unwrap_err()
        .to_string();
    assert!(e.contains("scratch has shape"), "{e}");
    assert!(r.is_empty());
}
