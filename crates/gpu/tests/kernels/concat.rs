use equireg_gpu::DType;
use equireg_gpu::ops::concat::concat_channels;
use equireg_gpu::reference::concat as cpu;

use crate::common::{gpu, random, rec};

#[test]
fn matches_reference_exactly() {
    let g = gpu();
    for (n, ca, cb, hw, seed) in [
        (2usize, 64usize, 32usize, [13usize, 10usize], 1u64),
        (2, 3, 5, [7, 9], 2),
        (3, 1, 1, [1, 1], 3),
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
