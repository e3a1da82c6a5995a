//! matmul and linear against the CPU reference on both kernel families: all four transpose
//! combinations, batch broadcast, sizes that are not multiples of any tile.
//!
//! Tolerance: |got - want| <= atol + 1e-4 |want| with atol = 1e-4 * max(1, sqrt(K / 100)),
//! K = inner size (inputs uniform in [-1, 1), f32 accumulation on the GPU).

use equireg_gpu::ops::matmul::{KernelPath, linear_with, matmul_with};
use equireg_gpu::reference::matmul as cpu;
use equireg_gpu::{DType, Tensor};

use crate::common::{assert_close, gpu, random, rec};

fn paths() -> Vec<KernelPath> {
    let c = gpu().caps();
    let mut v = vec![KernelPath::Auto, KernelPath::Portable];
    if c.subgroup && c.subgroup_min_size == 8 && c.subgroup_max_size == 8 {
        v.push(KernelPath::Subgroup8);
    }
    v
}

fn atol(k: usize) -> f32 {
    1e-4 * (k as f32 / 100.0).sqrt().max(1.0)
}

/// Stored shape of an operand: 2-D when `batch` is None.
fn stored(batch: Option<usize>, rows: usize, cols: usize) -> Vec<usize> {
    match batch {
        Some(b) => vec![b, rows, cols],
        None => vec![rows, cols],
    }
}

#[allow(clippy::too_many_arguments)]
fn check(
    ba: Option<usize>,
    bb: Option<usize>,
    m: usize,
    k: usize,
    n: usize,
    ta: bool,
    tb: bool,
    seed: u64,
) {
    let g = gpu();
    let (ar, ac) = if ta { (k, m) } else { (m, k) };
    let (br, bc) = if tb { (n, k) } else { (k, n) };
    let a_shape = stored(ba, ar, ac);
    let b_shape = stored(bb, br, bc);
    let batch = ba.unwrap_or(1).max(bb.unwrap_or(1));
    let o_shape = if ba.is_none() && bb.is_none() {
        vec![m, n]
    } else {
        vec![batch, m, n]
    };
    let a = random(a_shape.iter().product(), seed);
    let b = random(b_shape.iter().product(), seed + 1);
    let at = g.upload(&a_shape, &a).unwrap();
    let bt = g.upload(&b_shape, &b).unwrap();
    let want = cpu::matmul(
        &a,
        (ba.unwrap_or(1), ar, ac),
        &b,
        (bb.unwrap_or(1), br, bc),
        ta,
        tb,
    );
    for path in paths() {
        let out = g.alloc(&o_shape, DType::F32).unwrap();
        let mut r = rec();
        matmul_with(&mut r, &at, &bt, &out, ta, tb, path).unwrap();
        r.submit().unwrap();
        assert_close(
            &g.download(&out).unwrap(),
            &want,
            atol(k),
            1e-4,
            &format!("matmul a {a_shape:?} b {b_shape:?} trans ({ta}, {tb}) on {path:?}"),
        );
    }
}

#[test]
fn all_transpose_combinations_match_reference() {
    for (i, (ta, tb)) in [(false, false), (true, false), (false, true), (true, true)]
        .into_iter()
        .enumerate()
    {
        check(Some(2), Some(2), 37, 53, 29, ta, tb, 10 + i as u64);
    }
}

#[test]
fn batch_broadcast_and_2d_operands() {
    // Shared weights: b has batch 1 (and the reverse); 2-D operands with a 2-D output.
    check(Some(3), Some(1), 37, 53, 29, false, true, 20);
    check(Some(3), None, 19, 8, 70, false, false, 21);
    check(None, Some(3), 5, 33, 41, true, false, 22);
    check(None, None, 37, 53, 29, false, false, 23);
    // Several tiles in both directions, a skinny product (few rows, many columns).
    check(None, None, 130, 40, 70, false, false, 24);
    check(Some(2), Some(2), 3, 65, 100, false, true, 25);
}

#[test]
fn linear_matches_reference() {
    let g = gpu();
    for (i, &(n, fin, fout, with_bias)) in
        [(5, 70, 33, true), (64, 9, 130, false), (1, 128, 8, true)]
            .iter()
            .enumerate()
    {
        let seed = 40 + 3 * i as u64;
        let x = random(n * fin, seed);
        let w = random(fout * fin, seed + 1);
        let b = random(fout, seed + 2);
        let xt = g.upload(&[n, fin], &x).unwrap();
        let wt = g.upload(&[fout, fin], &w).unwrap();
        let bt = g.upload(&[fout], &b).unwrap();
        let want = cpu::linear(&x, n, fin, &w, fout, with_bias.then_some(&b[..]));
        for path in paths() {
            let out = g.alloc(&[n, fout], DType::F32).unwrap();
            let mut r = rec();
            linear_with(&mut r, &xt, &wt, with_bias.then_some(&bt), &out, path).unwrap();
            r.submit().unwrap();
            assert_close(
                &g.download(&out).unwrap(),
                &want,
                atol(fin),
                1e-4,
                &format!("linear [{n}, {fin}] -> {fout} bias {with_bias} on {path:?}"),
            );
        }
    }
}

fn t(shape: &[usize]) -> Tensor {
    gpu().alloc(shape, DType::F32).unwrap()
}

fn li(
    r: &mut equireg_gpu::Recorder,
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    o: &Tensor,
) -> String {
    linear_with(r, x, w, b, o, KernelPath::Auto)
        .unwrap_err()
        .to_string()
}

#[test]
fn bad_shapes_are_errors() {
    let mut r = rec();
    let mm = |r: &mut equireg_gpu::Recorder, a: &Tensor, b: &Tensor, o: &Tensor, ta, tb| {
        matmul_with(r, a, b, o, ta, tb, KernelPath::Auto)
            .unwrap_err()
            .to_string()
    };
    let a = t(&[2, 4, 6]);
    let b = t(&[2, 6, 5]);
    assert!(mm(&mut r, &a, &b, &t(&[2, 4, 5]), false, true).contains("inner"));
    assert!(mm(&mut r, &a, &t(&[3, 6, 5]), &t(&[3, 4, 5]), false, false).contains("batch"));
    assert!(mm(&mut r, &a, &b, &t(&[2, 5, 4]), false, false).contains("out"));
    assert!(mm(&mut r, &a, &b, &t(&[4, 5]), false, false).contains("out"));
    assert!(mm(&mut r, &t(&[1, 2, 4, 6]), &b, &t(&[2, 4, 5]), false, false).contains("3-D"));
    let sq = t(&[2, 4, 4]);
    assert!(mm(&mut r, &sq, &sq, &sq, false, true).contains("share memory"));
    let x = t(&[3, 6]);
    let w = t(&[5, 6]);
    assert!(li(&mut r, &x, &t(&[5, 7]), None, &t(&[3, 5])).contains("input size"));
    assert!(li(&mut r, &x, &w, Some(&t(&[6])), &t(&[3, 5])).contains("bias"));
    assert!(li(&mut r, &x, &w, None, &t(&[5, 3])).contains("out"));
    assert!(li(&mut r, &t(&[3, 1, 6]), &w, None, &t(&[3, 5])).contains("[N, in]"));
    assert!(r.is_empty());
}
