use equireg_gpu::DType;
use equireg_gpu::ops::pad::{Pad2d, pad2d, pad2d_out_shape, pad2d_vjp};
use equireg_gpu::reference::pad as cpu;

use crate::common::{gpu, random, rec};

fn pads(top: u32, bottom: u32, left: u32, right: u32) -> Pad2d {
    Pad2d {
        top,
        bottom,
        left,
        right,
    }
}

const CASES: &[([usize; 4], Pad2d)] = &[
    ([2, 3, 13, 10], Pad2d::BOTTOM_RIGHT_1),
    (
        [1, 5, 7, 9],
        Pad2d {
            top: 2,
            bottom: 0,
            left: 3,
            right: 1,
        },
    ),
    (
        [2, 70, 16, 17],
        Pad2d {
            top: 0,
            bottom: 0,
            left: 0,
            right: 0,
        },
    ),
    (
        [1, 1, 1, 1],
        Pad2d {
            top: 1,
            bottom: 2,
            left: 3,
            right: 4,
        },
    ),
];

fn run(
    f: fn(
        &mut equireg_gpu::Recorder,
        &equireg_gpu::Tensor,
        &equireg_gpu::Tensor,
        Pad2d,
    ) -> equireg_gpu::Result<()>,
    x: &[f32],
    x_shape: &[usize],
    out_shape: &[usize],
    p: Pad2d,
) -> Vec<f32> {
    let g = gpu();
    let xt = g.upload(x_shape, x).unwrap();
    // Garbage in the output first: every element must be written.
    let out = g
        .upload(out_shape, &vec![f32::NAN; out_shape.iter().product()])
        .unwrap();
    let mut r = rec();
    f(&mut r, &xt, &out, p).unwrap();
    r.submit().unwrap();
    g.download(&out).unwrap()
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
}

#[test]
fn pad_and_crop_match_reference_exactly() {
    for (i, &(shape, p)) in CASES.iter().enumerate() {
        let [n, c, h, w] = shape;
        let big = pad2d_out_shape(&shape, p).unwrap();
        let x = random(shape.iter().product(), 40 + i as u64);
        let got = run(pad2d, &x, &shape, &big, p);
        assert_eq!(got, cpu::pad2d(&x, n * c, h, w, p), "pad {shape:?} {p:?}");
        let dy = random(big.iter().product(), 50 + i as u64);
        let got = run(pad2d_vjp, &dy, &big, &shape, p);
        assert_eq!(
            got,
            cpu::pad2d_vjp(&dy, n * c, h, w, p),
            "crop {shape:?} {p:?}"
        );
    }
}

#[test]
fn crop_is_the_adjoint_of_pad() {
    for (i, &(shape, p)) in CASES.iter().enumerate() {
        let big = pad2d_out_shape(&shape, p).unwrap();
        let u = random(shape.iter().product(), 60 + i as u64);
        let v = random(big.iter().product(), 70 + i as u64);
        let pu = run(pad2d, &u, &shape, &big, p);
        let ctv = run(pad2d_vjp, &v, &big, &shape, p);
        let (lhs, rhs) = (dot(&pu, &v), dot(&u, &ctv));
        assert!(
            (lhs - rhs).abs() <= 1e-6 * lhs.abs().max(rhs.abs()).max(1.0),
            "{shape:?} {p:?}: <P u, v> = {lhs}, <u, P^T v> = {rhs}"
        );
    }
}

#[test]
fn bad_shapes_are_errors() {
    let g = gpu();
    let mut r = rec();
    let p = pads(0, 1, 0, 1);
    let x = g.alloc(&[1, 2, 4, 4], DType::F32).unwrap();
    let wrong = g.alloc(&[1, 2, 5, 4], DType::F32).unwrap();
    let e = pad2d(&mut r, &x, &wrong, p).unwrap_err();
    assert!(e.to_string().contains("out has shape [1, 2, 5, 4]"), "{e}");
    let e = pad2d_vjp(&mut r, &wrong, &x, p).unwrap_err();
    assert!(e.to_string().contains("dy has shape [1, 2, 5, 4]"), "{e}");
    let flat = g.alloc(&[2, 4, 4], DType::F32).unwrap();
    let e = pad2d(&mut r, &flat, &wrong, p).unwrap_err();
    assert!(e.to_string().contains("4 dimensions"), "{e}");
    let e = pad2d(&mut r, &x, &x, pads(0, 0, 0, 0)).unwrap_err();
    assert!(e.to_string().contains("share memory"), "{e}");
    let ints = g.alloc(&[1, 2, 5, 5], DType::U32).unwrap();
    let e = pad2d(&mut r, &x, &ints, p).unwrap_err();
    assert!(e.to_string().contains("f32"), "{e}");
    assert!(r.is_empty());
}
