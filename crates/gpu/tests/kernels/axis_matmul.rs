use equireg_gpu::DType;
use equireg_gpu::ops::axis_matmul::{Axis, MAX_CONTRACTION, axis_matmul, output_shape};
use equireg_gpu::reference::axis_matmul as cpu;

use crate::common::{assert_close, gpu, random, rec};

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
}

/// The GPU result of `W x` (or `W^T x`) along `axis`.
fn run(
    x: &[f32],
    shape: [usize; 4],
    m: &[f32],
    m_shape: [usize; 2],
    axis: Axis,
    transpose: bool,
) -> Vec<f32> {
    let g = gpu();
    let xt = g.upload(&shape, x).unwrap();
    let mt = g.upload(&m_shape, m).unwrap();
    let out = g
        .alloc(&output_shape(&shape, m_shape, axis, transpose), DType::F32)
        .unwrap();
    let mut r = rec();
    axis_matmul(&mut r, &xt, &mt, &out, axis, transpose).unwrap();
    r.submit().unwrap();
    g.download(&out).unwrap()
}

/// (x shape, matrix shape [out_len, in_len], axis): odd sizes, batch 2, a long contraction.
const CASES: [([usize; 4], [usize; 2], Axis); 5] = [
    ([2, 3, 13, 10], [7, 13], Axis::H),
    ([2, 3, 13, 10], [17, 10], Axis::W),
    ([1, 2, 300, 5], [75, 300], Axis::H),
    ([2, 1, 6, 257], [64, 257], Axis::W),
    ([1, 1, 1, 1], [1, 1], Axis::H),
];

#[test]
fn forward_and_transpose_match_reference() {
    // Sums of up to 300 products of values in [-1, 1) in f32 vs f64: atol 2e-5, rtol 1e-5.
    for (i, (shape, m_shape, axis)) in CASES.into_iter().enumerate() {
        let seed = 10 * i as u64;
        let m = random(m_shape[0] * m_shape[1], seed);
        let x = random(shape.iter().product(), seed + 1);
        let got = run(&x, shape, &m, m_shape, axis, false);
        let want = cpu::axis_matmul(&x, shape, &m, m_shape, axis, false);
        let what = format!("{shape:?} x {m_shape:?} along {axis:?}");
        assert_close(&got, &want, 2e-5, 1e-5, &what);

        let ts: [usize; 4] = output_shape(&shape, m_shape, axis, false)
            .try_into()
            .unwrap();
        let u = random(ts.iter().product(), seed + 2);
        let got_t = run(&u, ts, &m, m_shape, axis, true);
        let want_t = cpu::axis_matmul(&u, ts, &m, m_shape, axis, true);
        assert_close(&got_t, &want_t, 2e-5, 1e-5, &format!("transposed {what}"));

        // Adjoint test <W x, u> = <x, W^T u> on the GPU results.
        let (lhs, rhs) = (dot(&got, &u), dot(&x, &got_t));
        assert!(
            (lhs - rhs).abs() <= 1e-5 * (1.0 + lhs.abs().max(rhs.abs())),
            "{what}: <Wx, u> = {lhs}, <x, W^T u> = {rhs}"
        );
    }
}

#[test]
fn reference_is_a_matrix_product() {
    // The reference against a hand-built case: W = [[1, 2], [3, 4], [5, 6]] along H of a
    // [1, 1, 2, 2] input [[a, b], [c, d]] gives [[a + 2c, b + 2d], [3a + 4c, ..], [5a + 6c, ..]].
    let m = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
    let x = [1.0, -1.0, 0.5, 2.0];
    let out = cpu::axis_matmul(&x, [1, 1, 2, 2], &m, [3, 2], Axis::H, false);
    assert_eq!(out, vec![2.0, 3.0, 5.0, 5.0, 8.0, 7.0]);
    // Along W each row [p, q] of x gives [p + 2q, 3p + 4q, 5p + 6q].
    let along_w = vec![-1.0, -1.0, -1.0, 4.5, 9.5, 14.5];
    let out = cpu::axis_matmul(&x, [1, 1, 2, 2], &m, [3, 2], Axis::W, false);
    assert_eq!(out, along_w);
    assert_eq!(run(&x, [1, 1, 2, 2], &m, [3, 2], Axis::W, false), along_w);
    // W^T along H of a [1, 1, 3, 1] input [1, 1, 1]: the column sums [9, 12].
    let out = cpu::axis_matmul(&[1.0; 3], [1, 1, 3, 1], &m, [3, 2], Axis::H, true);
    assert_eq!(out, vec![9.0, 12.0]);
}

#[test]
fn bad_shapes_are_errors() {
    let g = gpu();
    let mut r = rec();
    let x = g.alloc(&[1, 2, 5, 4], DType::F32).unwrap();
    let m = g.alloc(&[3, 5], DType::F32).unwrap();
    let out = g.alloc(&[1, 2, 3, 4], DType::F32).unwrap();
    // Along W the input has 4, the matrix wants 5.
    let e = axis_matmul(&mut r, &x, &m, &out, Axis::W, false).unwrap_err();
    assert!(e.to_string().contains("needs 5"), "{e}");
    // Transposed, the matrix wants 3 along H.
    let e = axis_matmul(&mut r, &x, &m, &out, Axis::H, true).unwrap_err();
    assert!(e.to_string().contains("transposed"), "{e}");
    let wrong = g.alloc(&[1, 2, 4, 4], DType::F32).unwrap();
    let e = axis_matmul(&mut r, &x, &m, &wrong, Axis::H, false).unwrap_err();
    assert!(e.to_string().contains("out"), "{e}");
    let flat = g.alloc(&[2, 5, 4], DType::F32).unwrap();
    let e = axis_matmul(&mut r, &flat, &m, &out, Axis::H, false).unwrap_err();
    assert!(e.to_string().contains("dimensions"), "{e}");
    let m3 = g.alloc(&[1, 3, 5], DType::F32).unwrap();
    let e = axis_matmul(&mut r, &x, &m3, &out, Axis::H, false).unwrap_err();
    assert!(e.to_string().contains("dimensions"), "{e}");
    let sq = g.alloc(&[5, 5], DType::F32).unwrap();
    let sq_x = g.alloc(&[1, 1, 5, 5], DType::F32).unwrap();
    let e = axis_matmul(&mut r, &sq_x, &sq, &sq_x, Axis::H, false).unwrap_err();
    assert!(e.to_string().contains("share memory"), "{e}");
    let long = MAX_CONTRACTION + 1;
    let lm = g.alloc(&[1, long], DType::F32).unwrap();
    let lx = g.alloc(&[1, 1, long, 1], DType::F32).unwrap();
    let lo = g.alloc(&[1, 1, 1, 1], DType::F32).unwrap();
    let e = axis_matmul(&mut r, &lx, &lm, &lo, Axis::H, false).unwrap_err();
    assert!(e.to_string().contains("supported"), "{e}");
    assert!(r.is_empty());
}
