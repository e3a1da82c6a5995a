use equireg_gpu::DType;
use equireg_gpu::ops::resample::{
    avg_pool2x, avg_pool2x_vjp, upsample_nearest2x, upsample_nearest2x_vjp,
};
use equireg_gpu::reference::resample as cpu;

use crate::common::{assert_close, gpu, random, rec};

#[test]
fn upsample_matches_reference_exactly() {
    let g = gpu();
    // Output widths of a multiple of 4 (20, 12) take the vec4 kernel, the others the scalar one.
    for (shape, seed) in [
        ([2, 3, 13, 10], 1),
        ([2, 64, 7, 9], 2),
        ([1, 1, 1, 1], 3),
        ([2, 3, 5, 6], 7),
    ] {
        let x = random(shape.iter().product(), seed);
        let xt = g.upload(&shape, &x).unwrap();
        let out_shape = [shape[0], shape[1], 2 * shape[2], 2 * shape[3]];
        let out = g.alloc(&out_shape, DType::F32).unwrap();
        let mut r = rec();
        upsample_nearest2x(&mut r, &xt, &out).unwrap();
        r.submit().unwrap();
        let want = cpu::upsample_nearest2x(&x, shape[0] * shape[1], shape[2], shape[3]);
        assert_eq!(g.download(&out).unwrap(), want, "upsample {shape:?}");
    }
}

#[test]
fn avg_pool_matches_reference() {
    // Sum of four f32 values in f32 vs f64: atol 1e-6, rtol 1e-6.
    let g = gpu();
    // Output widths of a multiple of 4 (4, 12) take the vec4 kernel, the others the scalar one.
    for (shape, seed) in [
        ([2, 3, 14, 10], 4),
        ([2, 64, 8, 22], 5),
        ([1, 2, 2, 2], 6),
        ([2, 3, 6, 8], 8),
        ([2, 5, 4, 24], 9),
    ] {
        let x = random(shape.iter().product(), seed);
        let xt = g.upload(&shape, &x).unwrap();
        let out_shape = [shape[0], shape[1], shape[2] / 2, shape[3] / 2];
        let out = g.alloc(&out_shape, DType::F32).unwrap();
        let mut r = rec();
        avg_pool2x(&mut r, &xt, &out).unwrap();
        r.submit().unwrap();
        let want = cpu::avg_pool2x(&x, shape[0] * shape[1], shape[2], shape[3]);
        let what = format!("avg_pool2x {shape:?}");
        assert_close(&g.download(&out).unwrap(), &want, 1e-6, 1e-6, &what);
    }
}

#[test]
fn bad_shapes_are_errors() {
    let g = gpu();
    let mut r = rec();
    let odd_h = g.alloc(&[1, 2, 5, 4], DType::F32).unwrap();
    let o = g.alloc(&[1, 2, 2, 2], DType::F32).unwrap();
    let e = avg_pool2x(&mut r, &odd_h, &o).unwrap_err();
    assert!(e.to_string().contains("even"), "{e}");
    let odd_w = g.alloc(&[1, 2, 4, 5], DType::F32).unwrap();
    let e = avg_pool2x(&mut r, &odd_w, &o).unwrap_err();
    assert!(e.to_string().contains("even"), "{e}");
    let x = g.alloc(&[1, 2, 4, 4], DType::F32).unwrap();
    let e = avg_pool2x(&mut r, &x, &x).unwrap_err();
    assert!(e.to_string().contains("out"), "{e}");
    let wrong = g.alloc(&[1, 2, 8, 7], DType::F32).unwrap();
    let e = upsample_nearest2x(&mut r, &x, &wrong).unwrap_err();
    assert!(e.to_string().contains("out"), "{e}");
    let flat = g.alloc(&[2, 4, 4], DType::F32).unwrap();
    let e = upsample_nearest2x(&mut r, &flat, &wrong).unwrap_err();
    assert!(e.to_string().contains("dimensions"), "{e}");
    assert!(r.is_empty());
}

/// sum_i a[i] * b[i] in f64.
fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
}

/// Runs `f` on a freshly uploaded `x` and returns the downloaded output of `out_shape`.
fn apply(
    f: fn(
        &mut equireg_gpu::Recorder,
        &equireg_gpu::Tensor,
        &equireg_gpu::Tensor,
    ) -> equireg_gpu::Result<()>,
    x: &[f32],
    x_shape: [usize; 4],
    out_shape: [usize; 4],
) -> Vec<f32> {
    let g = gpu();
    let xt = g.upload(&x_shape, x).unwrap();
    let out = g.alloc(&out_shape, DType::F32).unwrap();
    let mut r = rec();
    f(&mut r, &xt, &out).unwrap();
    r.submit().unwrap();
    g.download(&out).unwrap()
}

#[test]
fn upsample_vjp_matches_reference_and_transposes_forward() {
    for (shape, seed) in [
        ([2, 3, 13, 10], 10),
        ([2, 64, 7, 9], 11),
        ([1, 1, 1, 1], 12),
        ([2, 3, 6, 8], 13),
    ] {
        let [n, c, h, w] = shape;
        let big = [n, c, 2 * h, 2 * w];
        let dy = random(big.iter().product(), seed);
        let dx = apply(upsample_nearest2x_vjp, &dy, big, shape);
        // Four-term f32 sums against f64: atol 1e-6, rtol 1e-6.
        let want = cpu::upsample_nearest2x_vjp(&dy, n * c, h, w);
        assert_close(&dx, &want, 1e-6, 1e-6, &format!("upsample vjp {shape:?}"));
        // Dot-product test <up(u), v> = <u, up^T(v)> with the GPU forward and VJP.
        let u = random(shape.iter().product(), seed + 100);
        let up_u = apply(upsample_nearest2x, &u, shape, big);
        let (lhs, rhs) = (dot(&up_u, &dy), dot(&u, &dx));
        assert!(
            (lhs - rhs).abs() <= 1e-5 * lhs.abs().max(rhs.abs()),
            "upsample {shape:?}: <Ju, v> = {lhs}, <u, J^T v> = {rhs}"
        );
    }
}

#[test]
fn avg_pool_vjp_matches_reference_and_transposes_forward() {
    for (shape, seed) in [
        ([2, 3, 14, 10], 20),
        ([2, 64, 8, 22], 21),
        ([1, 2, 2, 2], 22),
        ([2, 3, 12, 16], 23),
    ] {
        let [n, c, h, w] = shape;
        let small = [n, c, h / 2, w / 2];
        let dy = random(small.iter().product(), seed);
        let dx = apply(avg_pool2x_vjp, &dy, small, shape);
        // dy / 4 is exact in f32.
        let want = cpu::avg_pool2x_vjp(&dy, n * c, h, w);
        assert_eq!(dx, want, "avg_pool vjp {shape:?}");
        let u = random(shape.iter().product(), seed + 100);
        let pool_u = apply(avg_pool2x, &u, shape, small);
        let (lhs, rhs) = (dot(&pool_u, &dy), dot(&u, &dx));
        assert!(
            (lhs - rhs).abs() <= 1e-5 * lhs.abs().max(rhs.abs()),
            "avg_pool {shape:?}: <Ju, v> = {lhs}, <u, J^T v> = {rhs}"
        );
    }
}

#[test]
fn vjp_bad_shapes_are_errors() {
    let g = gpu();
    let mut r = rec();
    let dy = g.alloc(&[1, 2, 4, 6], DType::F32).unwrap();
    let dx_bad = g.alloc(&[1, 2, 2, 2], DType::F32).unwrap();
    let e = upsample_nearest2x_vjp(&mut r, &dy, &dx_bad).unwrap_err();
    assert!(e.to_string().contains("dx"), "{e}");
    let odd = g.alloc(&[1, 2, 5, 6], DType::F32).unwrap();
    let e = upsample_nearest2x_vjp(&mut r, &odd, &dx_bad).unwrap_err();
    assert!(e.to_string().contains("even"), "{e}");
    let e = upsample_nearest2x_vjp(&mut r, &dy, &dy).unwrap_err();
    assert!(e.to_string().contains("dx"), "{e}");
    let e = avg_pool2x_vjp(&mut r, &dy, &dx_bad).unwrap_err();
    assert!(e.to_string().contains("dx"), "{e}");
    let flat = g.alloc(&[2, 4, 6], DType::F32).unwrap();
    let e = avg_pool2x_vjp(&mut r, &flat, &dx_bad).unwrap_err();
    assert!(e.to_string().contains("dimensions"), "{e}");
    assert!(r.is_empty());
}
