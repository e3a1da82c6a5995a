use equireg_gpu::DType;
use equireg_gpu::ops::concat::{concat_channels, split_channels};
use equireg_gpu::reference::concat as cpu;

use crate::common::{gpu, random, rec};

#[test]
fn matches_reference_exactly() {
    let g = gpu();
    for (n, ca, cb, hw, seed) in [
        (2usize, 64usize, 32usize, [13usize, 10usize], 1u64),
        (2, 3, 5, [7, 9], 2),
        (3, 1, 1, [1, 1], 3),
        // Planes of a multiple of 4 elements: the vec4 kernel.
        (2, 64, 32, [8, 8], 4),
        (2, 3, 5, [4, 5], 5),
        (3, 1, 1, [2, 2], 6),
    ] {
        let inner = hw[0] * hw[1];
        let a = random(n * ca * inner, seed);
        let b = random(n * cb * inner, seed + 100);
        let at = g.upload(&[n, ca, hw[0], hw[1]], &a).unwrap();
        let bt = g.upload(&[n, cb, hw[0], hw[1]], &b).unwrap();
        let out = g.alloc(&[n, ca + cb, hw[0], hw[1]], DType::F32).unwrap();
        let mut r = rec();
        concat_channels(&mut r, &at, &bt, &out).unwrap();
        r.submit().unwrap();
        let want = cpu::concat_channels(&a, &b, n, ca, cb, inner);
        assert_eq!(
            g.download(&out).unwrap(),
            want,
            "concat {n} {ca} {cb} {hw:?}"
        );
    }
}

#[test]
fn bad_shapes_are_errors() {
    let g = gpu();
    let mut r = rec();
    let a = g.alloc(&[2, 3, 4, 5], DType::F32).unwrap();
    let b = g.alloc(&[2, 2, 4, 5], DType::F32).unwrap();
    let b_hw = g.alloc(&[2, 2, 5, 4], DType::F32).unwrap();
    let b_n = g.alloc(&[1, 2, 4, 5], DType::F32).unwrap();
    let out = g.alloc(&[2, 5, 4, 5], DType::F32).unwrap();
    let bad_out = g.alloc(&[2, 6, 4, 5], DType::F32).unwrap();
    let e = concat_channels(&mut r, &a, &b_hw, &out).unwrap_err();
    assert!(e.to_string().contains("trailing"), "{e}");
    let e = concat_channels(&mut r, &a, &b_n, &out).unwrap_err();
    assert!(e.to_string().contains("trailing"), "{e}");
    let e = concat_channels(&mut r, &a, &b, &bad_out).unwrap_err();
    assert!(e.to_string().contains("out"), "{e}");
    let e = concat_channels(&mut r, &a, &b, &a).unwrap_err();
    assert!(e.to_string().contains("out"), "{e}");
    assert!(r.is_empty());
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
}

fn split(x: &[f32], x_shape: &[usize], start: u32, c: usize) -> Vec<f32> {
    let g = gpu();
    let xt = g.upload(x_shape, x).unwrap();
    let mut out_shape = x_shape.to_vec();
    out_shape[1] = c;
    let out = g.alloc(&out_shape, DType::F32).unwrap();
    let mut r = rec();
    split_channels(&mut r, &xt, start, &out).unwrap();
    r.submit().unwrap();
    g.download(&out).unwrap()
}

#[test]
fn split_matches_reference_exactly() {
    for (n, ctot, start, c, hw, seed) in [
        (2usize, 96usize, 64usize, 32usize, [13usize, 10usize], 10u64),
        (2, 96, 0, 64, [13, 10], 11),
        (2, 8, 3, 5, [7, 9], 12),
        (3, 5, 2, 1, [1, 1], 13),
        (2, 6, 0, 6, [3, 2], 14),
        // Planes of a multiple of 4 elements: the vec4 kernel.
        (2, 96, 64, 32, [8, 8], 15),
        (2, 8, 3, 5, [4, 3], 16),
        (3, 5, 2, 1, [2, 2], 17),
    ] {
        let inner = hw[0] * hw[1];
        let x = random(n * ctot * inner, seed);
        let got = split(&x, &[n, ctot, hw[0], hw[1]], start as u32, c);
        let want = cpu::split_channels(&x, n, ctot, inner, start, c);
        assert_eq!(got, want, "split {n} {ctot} {start} {c} {hw:?}");
    }
}

#[test]
fn split_is_the_transpose_of_concat() {
    // <concat(a, b), v> = <a, split(v, 0)> + <b, split(v, Ca)>, GPU forward and VJP; equal up to
    // the order of the f64 sums of identical f32 products.
    let g = gpu();
    for (n, ca, cb, hw, seed) in [
        (2usize, 64usize, 32usize, [13usize, 10usize], 20u64),
        (2, 3, 5, [7, 9], 21),
        (2, 3, 5, [4, 5], 22),
    ] {
        let inner = hw[0] * hw[1];
        let a = random(n * ca * inner, seed);
        let b = random(n * cb * inner, seed + 1);
        let v = random(n * (ca + cb) * inner, seed + 2);
        let at = g.upload(&[n, ca, hw[0], hw[1]], &a).unwrap();
        let bt = g.upload(&[n, cb, hw[0], hw[1]], &b).unwrap();
        let out = g.alloc(&[n, ca + cb, hw[0], hw[1]], DType::F32).unwrap();
        let mut r = rec();
        concat_channels(&mut r, &at, &bt, &out).unwrap();
        r.submit().unwrap();
        let lhs = dot(&g.download(&out).unwrap(), &v);
        let v_shape = [n, ca + cb, hw[0], hw[1]];
        let rhs =
            dot(&a, &split(&v, &v_shape, 0, ca)) + dot(&b, &split(&v, &v_shape, ca as u32, cb));
        assert!(
            (lhs - rhs).abs() <= 1e-5 * lhs.abs().max(rhs.abs()),
            "concat {n} {ca} {cb}: <Ju, v> = {lhs}, <u, J^T v> = {rhs}"
        );
    }
}

#[test]
fn split_bad_shapes_are_errors() {
    let g = gpu();
    let mut r = rec();
    let x = g.alloc(&[2, 5, 4, 3], DType::F32).unwrap();
    let out = g.alloc(&[2, 2, 4, 3], DType::F32).unwrap();
    let e = split_channels(&mut r, &x, 4, &out).unwrap_err();
    assert!(e.to_string().contains("out of range"), "{e}");
    let e = split_channels(&mut r, &x, u32::MAX, &out).unwrap_err();
    assert!(e.to_string().contains("out of range"), "{e}");
    let hw = g.alloc(&[2, 2, 3, 4], DType::F32).unwrap();
    let e = split_channels(&mut r, &x, 0, &hw).unwrap_err();
    assert!(e.to_string().contains("trailing"), "{e}");
    let batch = g.alloc(&[1, 2, 4, 3], DType::F32).unwrap();
    let e = split_channels(&mut r, &x, 0, &batch).unwrap_err();
    assert!(e.to_string().contains("trailing"), "{e}");
    let e = split_channels(&mut r, &x, 0, &x).unwrap_err();
    assert!(e.to_string().contains("out"), "{e}");
    let flat = g.alloc(&[5], DType::F32).unwrap();
    let e = split_channels(&mut r, &flat, 0, &flat).unwrap_err();
    assert!(e.to_string().contains("trailing"), "{e}");
    assert!(r.is_empty());
}
