use equireg_gpu::ops::elementwise as ew;
use equireg_gpu::reference::elementwise as cpu;

use crate::common::{assert_close, gpu, random, rec};

// 70_001 is not a multiple of the workgroup size; shapes are odd on purpose.
const SHAPE: [usize; 4] = [2, 3, 107, 109];

fn numel() -> usize {
    SHAPE.iter().product()
}

#[test]
fn unary_ops_match_reference() {
    let g = gpu();
    let x = random(numel(), 1)
        .iter()
        .map(|v| v * 6.0)
        .collect::<Vec<_>>();
    let xt = g.upload(&SHAPE, &x).unwrap();
    let outs: Vec<_> = (0..4)
        .map(|_| g.alloc(&SHAPE, equireg_gpu::DType::F32).unwrap())
        .collect();
    let mut r = rec();
    ew::copy(&mut r, &xt, &outs[0]).unwrap();
    ew::scale(&mut r, &xt, &outs[1], -0.75, 0.25).unwrap();
    ew::silu(&mut r, &xt, &outs[2]).unwrap();
    ew::clamp(&mut r, &xt, &outs[3], -1.0, 1.0).unwrap();
    r.submit().unwrap();
    assert_eq!(g.download(&outs[0]).unwrap(), x);
    assert_close(
        &g.download(&outs[1]).unwrap(),
        &cpu::scale(&x, -0.75, 0.25),
        1e-6,
        1e-6,
        "scale",
    );
    assert_close(
        &g.download(&outs[2]).unwrap(),
        &cpu::silu(&x),
        1e-6,
        1e-5,
        "silu",
    );
    assert_eq!(g.download(&outs[3]).unwrap(), cpu::clamp(&x, -1.0, 1.0));
}

#[test]
fn binary_ops_match_reference() {
    let g = gpu();
    let a = random(numel(), 2);
    let b = random(numel(), 3);
    let (at, bt) = (g.upload(&SHAPE, &a).unwrap(), g.upload(&SHAPE, &b).unwrap());
    let outs: Vec<_> = (0..3)
        .map(|_| g.alloc(&SHAPE, equireg_gpu::DType::F32).unwrap())
        .collect();
    let mut r = rec();
    ew::add(&mut r, &at, &bt, &outs[0]).unwrap();
    ew::mul(&mut r, &at, &bt, &outs[1]).unwrap();
    ew::axpby(&mut r, 0.3, &at, -1.7, &bt, &outs[2]).unwrap();
    r.submit().unwrap();
    let add: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
    let mul: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x * y).collect();
    assert_eq!(g.download(&outs[0]).unwrap(), add);
    assert_eq!(g.download(&outs[1]).unwrap(), mul);
    assert_close(
        &g.download(&outs[2]).unwrap(),
        &cpu::axpby(0.3, &a, -1.7, &b),
        1e-6,
        1e-5,
        "axpby",
    );
}

#[test]
fn add_over_vec4s_matches_reference() {
    // Element counts of a multiple of 4 take the vec4 kernel: 4, 8 * 1024 + 4 and a UNet map.
    let g = gpu();
    for (shape, seed) in [
        ([1, 1, 2, 2], 4),
        ([1, 1, 4, 2049], 5),
        ([2, 32, 64, 64], 6),
    ] {
        let n: usize = shape.iter().product();
        let a = random(n, seed);
        let b = random(n, seed + 100);
        let (at, bt) = (g.upload(&shape, &a).unwrap(), g.upload(&shape, &b).unwrap());
        let out = g.alloc(&shape, equireg_gpu::DType::F32).unwrap();
        let mut r = rec();
        ew::add(&mut r, &at, &bt, &out).unwrap();
        r.submit().unwrap();
        let want: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
        assert_eq!(g.download(&out).unwrap(), want, "add {shape:?}");
    }
}

#[test]
fn in_place_fill_and_channel_bias() {
    let g = gpu();
    let x = random(numel(), 4);
    let y = random(numel(), 5);
    let bias = random(SHAPE[0] * SHAPE[1], 6);
    let xt = g.upload(&SHAPE, &x).unwrap();
    let yt = g.upload(&SHAPE, &y).unwrap();
    let bt = g.upload(&[SHAPE[0], SHAPE[1]], &bias).unwrap();
    let filled = g.alloc(&SHAPE, equireg_gpu::DType::F32).unwrap();
    let biased = g.alloc(&SHAPE, equireg_gpu::DType::F32).unwrap();
    let mut r = rec();
    ew::axpby_inplace(&mut r, 2.0, &xt, 0.5, &yt).unwrap();
    ew::fill(&mut r, &filled, 3.25).unwrap();
    ew::add_channel_bias(&mut r, &xt, &bt, &biased).unwrap();
    r.submit().unwrap();
    assert_close(
        &g.download(&yt).unwrap(),
        &cpu::axpby(2.0, &x, 0.5, &y),
        1e-6,
        1e-5,
        "axpby_inplace",
    );
    assert!(g.download(&filled).unwrap().iter().all(|&v| v == 3.25));
    let inner = SHAPE[2] * SHAPE[3];
    assert_eq!(
        g.download(&biased).unwrap(),
        cpu::add_channel_bias(&x, &bias, inner)
    );
}

#[test]
fn shape_mismatch_and_aliasing_are_errors() {
    let g = gpu();
    let a = g.alloc(&[4, 4], equireg_gpu::DType::F32).unwrap();
    let b = g.alloc(&[4, 5], equireg_gpu::DType::F32).unwrap();
    let mut r = rec();
    let e = ew::add(&mut r, &a, &b, &a).unwrap_err().to_string();
    assert!(e.contains("add"), "{e}");
    let e = ew::silu(&mut r, &a, &a).unwrap_err().to_string();
    assert!(e.contains("must not share memory"), "{e}");
    assert!(r.is_empty());
}
