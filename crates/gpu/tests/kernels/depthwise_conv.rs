use equireg_gpu::DType;
use equireg_gpu::ops::depthwise_conv::{MAX_TAPS, depthwise_conv2d, depthwise_conv2d_vjp};
use equireg_gpu::reference::depthwise_conv as cpu;

use crate::common::{assert_close, gpu, random, rec};

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
}

/// Runs the forward (`vjp` false) or the VJP on the GPU.
fn run(src: &[f32], shape: [usize; 4], k: &[f32], ks: [usize; 2], vjp: bool) -> Vec<f32> {
    let g = gpu();
    let st = g.upload(&shape, src).unwrap();
    let kt = g.upload(&ks, k).unwrap();
    let out = g.alloc(&shape, DType::F32).unwrap();
    let mut r = rec();
    if vjp {
        depthwise_conv2d_vjp(&mut r, &st, &kt, &out).unwrap();
    } else {
        depthwise_conv2d(&mut r, &st, &kt, &out).unwrap();
    }
    r.submit().unwrap();
    g.download(&out).unwrap()
}

/// A kernel with positive taps summing to 1 (a blur), so outputs stay in the input's range.
fn blur_kernel(ks: [usize; 2], seed: u64) -> Vec<f32> {
    let k: Vec<f32> = random(ks[0] * ks[1], seed)
        .iter()
        .map(|v| v + 1.0)
        .collect();
    let s: f32 = k.iter().sum();
    k.iter().map(|v| v / s).collect()
}

/// (input shape, kernel size): non-square kernels, pads of side - 1 (three preimages per
/// axis in the VJP), a 1x1 kernel, and DPS's 61x61 on a small image.
const CASES: [([usize; 4], [usize; 2]); 5] = [
    ([2, 3, 13, 10], [5, 3]),
    ([1, 2, 9, 11], [17, 21]),
    ([2, 1, 7, 5], [1, 1]),
    ([1, 1, 40, 37], [61, 61]),
    ([1, 3, 2, 33], [3, 9]),
];

#[test]
fn forward_matches_reference() {
    // Sums of up to 3721 taps of a kernel summing to 1 over values in [-1, 1): atol 2e-6,
    // rtol 1e-5.
    for (i, (shape, ks)) in CASES.into_iter().enumerate() {
        let k = blur_kernel(ks, 100 + i as u64);
        let x = random(shape.iter().product(), 200 + i as u64);
        let got = run(&x, shape, &k, ks, false);
        let want = cpu::depthwise_conv2d(&x, shape, &k, ks);
        assert_close(&got, &want, 2e-6, 1e-5, &format!("{shape:?} * {ks:?}"));
    }
}

#[test]
fn reference_pads_by_reflection() {
    // A 3x3 kernel with a single 1 in the top-left corner reads x[y - 1, x - 1] through
    // ReflectionPad2d: row -1 is row 1, column -1 is column 1.
    let mut k = vec![0.0; 9];
    k[0] = 1.0;
    let x: Vec<f32> = (0..12).map(|v| v as f32).collect(); // [1, 1, 3, 4]
    let out = cpu::depthwise_conv2d(&x, [1, 1, 3, 4], &k, [3, 3]);
    let at = |r: usize, c: usize| x[r * 4 + c];
    let want = vec![
        at(1, 1),
        at(1, 0),
        at(1, 1),
        at(1, 2),
        at(0, 1),
        at(0, 0),
        at(0, 1),
        at(0, 2),
        at(1, 1),
        at(1, 0),
        at(1, 1),
        at(1, 2),
    ];
    assert_eq!(out, want);
    assert_eq!(run(&x, [1, 1, 3, 4], &k, [3, 3], false), want);
    // A 1 in the bottom-right corner reads x[y + 1, x + 1]: row 3 is row 1, column 4 column 2.
    let mut k = vec![0.0; 9];
    k[8] = 1.0;
    let out = cpu::depthwise_conv2d(&x, [1, 1, 3, 4], &k, [3, 3]);
    assert_eq!(&out[8..], &[at(1, 1), at(1, 2), at(1, 3), at(1, 2)]);
}

#[test]
fn vjp_matches_reference_finite_differences_and_adjoint() {
    // The GPU gather against the CPU scatter: atol 2e-6, rtol 1e-5 (as the forward). The
    // kernels here are not symmetric, so a flipped or untransposed VJP fails.
    for (i, (shape, ks)) in CASES.into_iter().enumerate() {
        let k = blur_kernel(ks, 300 + i as u64);
        let n: usize = shape.iter().product();
        let dy = random(n, 400 + i as u64);
        let got = run(&dy, shape, &k, ks, true);
        let want = cpu::depthwise_conv2d_vjp(&dy, shape, &k, ks);
        let what = format!("vjp {shape:?} * {ks:?}");
        // Near a reflected border a pixel gathers up to 9 * taps terms.
        assert_close(&got, &want, 5e-6, 1e-5, &what);

        // Dot-product test <A u, dy> = <u, A^T dy>, both sides from the GPU.
        let u = random(n, 500 + i as u64);
        let au = run(&u, shape, &k, ks, false);
        let (lhs, rhs) = (dot(&au, &dy), dot(&u, &got));
        assert!(
            (lhs - rhs).abs() <= 1e-5 * (1.0 + lhs.abs()),
            "{what}: <Au, v> = {lhs}, <u, A^T v> = {rhs}"
        );

        // Central difference of <A(x), dy> along u at a random x, against <u, A^T dy>.
        let x = random(n, 600 + i as u64);
        let h = 0.5f32;
        let plus: Vec<f32> = x.iter().zip(&u).map(|(a, b)| a + h * b).collect();
        let minus: Vec<f32> = x.iter().zip(&u).map(|(a, b)| a - h * b).collect();
        let fd = (dot(&run(&plus, shape, &k, ks, false), &dy)
            - dot(&run(&minus, shape, &k, ks, false), &dy))
            / (2.0 * h as f64);
        assert!(
            (fd - rhs).abs() <= 1e-4 * (1.0 + rhs.abs()),
            "{what}: finite difference {fd}, VJP {rhs}"
        );
    }
}

#[test]
fn bad_sizes_are_errors() {
    let g = gpu();
    let mut r = rec();
    let x = g.alloc(&[1, 2, 5, 8], DType::F32).unwrap();
    let out = g.alloc(&[1, 2, 5, 8], DType::F32).unwrap();
    let even = g.alloc(&[3, 4], DType::F32).unwrap();
    let e = depthwise_conv2d(&mut r, &x, &even, &out).unwrap_err();
    assert!(e.to_string().contains("odd"), "{e}");
    // Pad 5 on a side of 5.
    let tall = g.alloc(&[11, 1], DType::F32).unwrap();
    let e = depthwise_conv2d(&mut r, &x, &tall, &out).unwrap_err();
    assert!(e.to_string().contains("larger than the pad"), "{e}");
    let e = depthwise_conv2d_vjp(&mut r, &x, &tall, &out).unwrap_err();
    assert!(e.to_string().contains("larger than the pad"), "{e}");
    let side = ((MAX_TAPS as f64).sqrt() as usize + 1) | 1;
    let huge = g.alloc(&[side, side], DType::F32).unwrap();
    let big = g.alloc(&[1, 1, side, side], DType::F32).unwrap();
    let big_out = g.alloc(&[1, 1, side, side], DType::F32).unwrap();
    let e = depthwise_conv2d(&mut r, &big, &huge, &big_out).unwrap_err();
    assert!(e.to_string().contains("taps"), "{e}");
    let k = g.alloc(&[3, 3], DType::F32).unwrap();
    let wrong = g.alloc(&[1, 2, 8, 5], DType::F32).unwrap();
    let e = depthwise_conv2d(&mut r, &x, &k, &wrong).unwrap_err();
    assert!(e.to_string().contains("out"), "{e}");
    let e = depthwise_conv2d_vjp(&mut r, &x, &k, &wrong).unwrap_err();
    assert!(e.to_string().contains("dx"), "{e}");
    let e = depthwise_conv2d(&mut r, &x, &k, &x).unwrap_err();
    assert!(e.to_string().contains("share memory"), "{e}");
    let flat = g.alloc(&[2, 5, 8], DType::F32).unwrap();
    let e = depthwise_conv2d(&mut r, &flat, &k, &out).unwrap_err();
    assert!(e.to_string().contains("dimensions"), "{e}");
    assert!(r.is_empty());
}
