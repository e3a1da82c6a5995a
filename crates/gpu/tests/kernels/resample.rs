use equireg_gpu::DType;
use equireg_gpu::ops::resample::{avg_pool2x, upsample_nearest2x};
use equireg_gpu::reference::resample as cpu;

use crate::common::{assert_close, gpu, random, rec};

#[test]
fn upsample_matches_reference_exactly() {
    let g = gpu();
    for (shape, seed) in [([2, 3, 13, 10], 1), ([2, 64, 7, 9], 2), ([1, 1, 1, 1], 3)] {
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
    for (shape, seed) in [([2, 3, 14, 10], 4), ([2, 64, 8, 22], 5), ([1, 2, 2, 2], 6)] {
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
