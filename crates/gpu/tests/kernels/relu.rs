use equireg_gpu::DType;
use equireg_gpu::ops::relu::{global_avg_pool, global_avg_pool_vjp, relu, relu_vjp};
use equireg_gpu::reference::relu as cpu;

use crate::common::{assert_close, gpu, random, rec};

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
}

fn relu_gpu(x: &[f32], shape: &[usize]) -> Vec<f32> {
    let g = gpu();
    let xt = g.upload(shape, x).unwrap();
    let out = g.alloc(shape, DType::F32).unwrap();
    let mut r = rec();
    relu(&mut r, &xt, &out).unwrap();
    r.submit().unwrap();
    g.download(&out).unwrap()
}

fn relu_vjp_gpu(x: &[f32], dy: &[f32], shape: &[usize]) -> Vec<f32> {
    let g = gpu();
    let xt = g.upload(shape, x).unwrap();
    let dyt = g.upload(shape, dy).unwrap();
    let dx = g.alloc(shape, DType::F32).unwrap();
    let mut r = rec();
    relu_vjp(&mut r, &xt, &dyt, &dx).unwrap();
    r.submit().unwrap();
    g.download(&dx).unwrap()
}

/// Random values kept at least 0.05 away from 0, plus exact zeros (the kink) every 7th element.
fn away_from_zero(n: usize, seed: u64) -> Vec<f32> {
    random(n, seed)
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            if i % 7 == 3 {
                0.0
            } else {
                v + 0.05 * v.signum()
            }
        })
        .collect()
}

const SHAPES: &[&[usize]] = &[&[2, 3, 13, 10], &[1, 300], &[70_001]];

#[test]
fn relu_and_its_vjp_match_reference_exactly() {
    for (i, &shape) in SHAPES.iter().enumerate() {
        let n = shape.iter().product();
        let x = away_from_zero(n, 200 + i as u64);
        assert_eq!(relu_gpu(&x, shape), cpu::relu(&x), "relu {shape:?}");
        let dy = random(n, 210 + i as u64);
        let dx = relu_vjp_gpu(&x, &dy, shape);
        assert_eq!(dx, cpu::relu_vjp(&x, &dy), "relu vjp {shape:?}");
        // The gradient at exactly 0 is 0, as in PyTorch.
        assert!(x.iter().zip(&dx).all(|(&v, &d)| v != 0.0 || d == 0.0));
    }
}

#[test]
fn relu_vjp_agrees_with_finite_differences_and_the_dot_product_test() {
    let shape = [2, 3, 13, 10];
    let n = shape.iter().product();
    // Away from the kink (no zeros): the function is linear within eps.
    let x: Vec<f32> = random(n, 220)
        .iter()
        .map(|&v| v + 0.05 * v.signum())
        .collect();
    let u = random(n, 221);
    let v = random(n, 222);
    let eps = 1e-2f32;
    let shifted = |s: f32| -> Vec<f32> {
        let xs: Vec<f32> = x.iter().zip(&u).map(|(&a, &b)| a + s * b).collect();
        relu_gpu(&xs, &shape)
    };
    let fd = (dot(&v, &shifted(eps)) - dot(&v, &shifted(-eps))) / (2.0 * eps as f64);
    let jtv = relu_vjp_gpu(&x, &v, &shape);
    let an = dot(&jtv, &u);
    assert!(
        (fd - an).abs() <= 1e-4 * an.abs().max(1.0),
        "fd {fd} vs {an}"
    );
    // Dot-product test against the Jacobian (a 0/1 mask) applied to u.
    let ju: Vec<f32> = x
        .iter()
        .zip(&u)
        .map(|(&a, &b)| if a > 0.0 { b } else { 0.0 })
        .collect();
    let lhs = dot(&ju, &v);
    assert!(
        (lhs - an).abs() <= 1e-9 * lhs.abs().max(1.0),
        "{lhs} vs {an}"
    );
}

fn pool_gpu(x: &[f32], shape: &[usize]) -> Vec<f32> {
    let g = gpu();
    let xt = g.upload(shape, x).unwrap();
    let out = g.alloc(&shape[..2], DType::F32).unwrap();
    let mut r = rec();
    global_avg_pool(&mut r, &xt, &out).unwrap();
    r.submit().unwrap();
    g.download(&out).unwrap()
}

fn pool_vjp_gpu(dy: &[f32], shape: &[usize]) -> Vec<f32> {
    let g = gpu();
    let dyt = g.upload(&shape[..2], dy).unwrap();
    let dx = g
        .upload(shape, &vec![f32::NAN; shape.iter().product()])
        .unwrap();
    let mut r = rec();
    global_avg_pool_vjp(&mut r, &dyt, &dx).unwrap();
    r.submit().unwrap();
    g.download(&dx).unwrap()
}

const POOL_SHAPES: &[&[usize]] = &[
    &[2, 3, 13, 10],
    &[2, 256, 2, 2],
    &[1, 1, 1, 1],
    &[1, 2, 40, 41],
    &[3, 5, 7],
];

#[test]
fn global_avg_pool_and_its_vjp_match_reference() {
    for (i, &shape) in POOL_SHAPES.iter().enumerate() {
        let plane: usize = shape[2..].iter().product();
        let x = random(shape.iter().product(), 230 + i as u64);
        let got = pool_gpu(&x, shape);
        // f32 tree sum of up to 1640 values in [-1, 1) against f64: atol 1e-6, rtol 1e-5.
        let what = format!("pool {shape:?}");
        assert_close(&got, &cpu::global_avg_pool(&x, plane), 1e-6, 1e-5, &what);
        let dy = random(shape[0] * shape[1], 240 + i as u64);
        let dx = pool_vjp_gpu(&dy, shape);
        // dy * (1 / S) in f32 vs dy / S in f64: one rounding, rtol 2e-7.
        let what = format!("pool vjp {shape:?}");
        assert_close(
            &dx,
            &cpu::global_avg_pool_vjp(&dy, plane),
            0.0,
            2.4e-7,
            &what,
        );
        // Adjoint test <pool(u), v> = <u, pool^T(v)> (the pool is linear).
        let (lhs, rhs) = (dot(&got, &dy), dot(&x, &dx));
        assert!(
            (lhs - rhs).abs() <= 1e-5 * lhs.abs().max(rhs.abs()).max(1e-3),
            "{shape:?}: {lhs} vs {rhs}"
        );
    }
}

#[test]
fn bad_shapes_are_errors() {
    let g = gpu();
    let mut r = rec();
    let x = g.alloc(&[2, 3, 4, 4], DType::F32).unwrap();
    let y = g.alloc(&[2, 3, 4, 5], DType::F32).unwrap();
    let e = relu(&mut r, &x, &y).unwrap_err();
    assert!(e.to_string().contains("out has shape [2, 3, 4, 5]"), "{e}");
    let e = relu(&mut r, &x, &x).unwrap_err();
    assert!(e.to_string().contains("share memory"), "{e}");
    let dx = g.alloc(&[2, 3, 4, 4], DType::F32).unwrap();
    let e = relu_vjp(&mut r, &x, &y, &dx).unwrap_err();
    assert!(e.to_string().contains("dy has shape"), "{e}");
    let pooled = g.alloc(&[2, 4], DType::F32).unwrap();
    let e = global_avg_pool(&mut r, &x, &pooled).unwrap_err();
    assert!(e.to_string().contains("out has shape [2, 4]"), "{e}");
    let flat = g.alloc(&[2, 3], DType::F32).unwrap();
    let e = global_avg_pool(&mut r, &flat, &pooled).unwrap_err();
    assert!(e.to_string().contains("spatial axes"), "{e}");
    let e = global_avg_pool_vjp(&mut r, &pooled, &x).unwrap_err();
    assert!(e.to_string().contains("dy has shape [2, 4]"), "{e}");
    let empty = g.alloc(&[2, 3, 0, 4], DType::F32).unwrap();
    let e = global_avg_pool(&mut r, &empty, &flat).unwrap_err();
    assert!(e.to_string().contains("no spatial positions"), "{e}");
    assert!(r.is_empty());
}
