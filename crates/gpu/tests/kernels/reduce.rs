//! Row reductions against the f64 CPU reference.
//!
//! Tolerances: Sum |got - want| <= 1e-5 * sum|x| (the sum of mixed signs cancels, so the error
//! scales with sum|x|, not with the result); SumSq and L2 rtol 1e-5; MaxAbs exact (max is exact).

use equireg_gpu::ops::reduce::{self, Reduction};
use equireg_gpu::reference::reduce as cpu;
use equireg_gpu::{DType, Tensor};

use crate::common::{gpu, random, rec};

const ALL: [Reduction; 4] = [
    Reduction::Sum,
    Reduction::SumSq,
    Reduction::L2,
    Reduction::MaxAbs,
];

/// Runs every reduction on x (one recorder), returning the GPU results in ALL's order.
fn run_all(xt: &Tensor) -> Vec<Vec<f32>> {
    let g = gpu();
    let rows = xt.shape()[0];
    let cols = xt.numel() / rows;
    let outs: Vec<_> = ALL
        .iter()
        .map(|_| g.alloc(&[rows], DType::F32).unwrap())
        .collect();
    // A scratch per reduction, so the four dispatch pairs do not share one.
    let scratch: Vec<_> = ALL
        .iter()
        .map(|_| reduce::reduce_scratch(g, rows, cols).unwrap())
        .collect();
    let mut r = rec();
    for ((&red, out), s) in ALL.iter().zip(&outs).zip(&scratch) {
        reduce::reduce_rows(&mut r, xt, out, s, red).unwrap();
    }
    r.submit().unwrap();
    outs.iter().map(|o| g.download(o).unwrap()).collect()
}

fn check(shape: &[usize], seed: u64) {
    let n: usize = shape.iter().product();
    // Rows alternate between centred data and data with a positive mean, so both cancelling and
    // accumulating sums are covered.
    let rows = shape[0];
    let cols = n / rows;
    let x: Vec<f32> = random(n, seed)
        .iter()
        .enumerate()
        .map(|(i, v)| if (i / cols) % 2 == 1 { v + 0.75 } else { *v })
        .collect();
    let xt = gpu().upload(shape, &x).unwrap();
    let got = run_all(&xt);
    let abs_sum = cpu::reduce_rows(
        &x.iter().map(|v| v.abs()).collect::<Vec<_>>(),
        rows,
        Reduction::Sum,
    );
    for (&red, got) in ALL.iter().zip(&got) {
        let want = cpu::reduce_rows(&x, rows, red);
        assert_eq!(got.len(), rows);
        for (row, (&g, &w)) in got.iter().zip(&want).enumerate() {
            let tol = match red {
                Reduction::Sum => 1e-5 * abs_sum[row],
                Reduction::SumSq | Reduction::L2 => 1e-5 * w.abs(),
                Reduction::MaxAbs => 0.0,
            };
            let err = (g as f64 - w).abs();
            assert!(
                err <= tol,
                "{red:?} of {shape:?} row {row}: got {g}, want {w} (error {err:e} > {tol:e})"
            );
        }
    }
}

#[test]
fn small_and_odd_shapes_match_reference() {
    check(&[1, 1], 10); // a row of one element
    check(&[7], 11); // rank 1: seven rows of one element
    check(&[4, 1000], 12); // one pass, cols not a multiple of the workgroup
    check(&[5, 4097], 13); // just over one chunk: two stages
    check(&[2, 3, 17, 19], 14); // per-sample reduction of an NCHW tensor
    check(&[300, 3 * 5 * 7], 15); // many rows
}

#[test]
fn long_rows_match_reference() {
    check(&[3, 200_003], 16);
    check(&[2, 3, 256, 256], 17); // per-sample, 196608 elements a row
}

#[test]
fn whole_tensor_of_four_million_matches_reference() {
    check(&[1, 4_000_000], 18);
}

#[test]
fn rows_around_the_chunk_size_match_reference() {
    let c = reduce::CHUNK;
    for (i, cols) in [c - 1, c, c + 1, 2 * c, 2 * c + 1].into_iter().enumerate() {
        check(&[2, cols], 30 + i as u64);
    }
}

#[test]
fn a_row_gives_the_same_bits_alone_as_in_a_batch() {
    let (rows, cols) = (4, 3 * reduce::CHUNK + 17);
    let x = random(rows * cols, 21);
    let batch = run_all(&gpu().upload(&[rows, cols], &x).unwrap());
    let alone = run_all(&gpu().upload(&[1, cols], &x[2 * cols..3 * cols]).unwrap());
    for (b, a) in batch.iter().zip(&alone) {
        assert_eq!(b[2].to_bits(), a[0].to_bits());
    }
    // A whole-tensor reduction is the same tensor reshaped to [1, numel].
    let whole = run_all(
        &gpu()
            .upload(&[rows, cols], &x)
            .unwrap()
            .reshape(&[1, rows * cols])
            .unwrap(),
    );
    let want = cpu::reduce_rows(&x, 1, Reduction::SumSq)[0];
    assert!((whole[1][0] as f64 - want).abs() <= 1e-5 * want);
}

#[test]
fn results_are_bit_identical_across_runs() {
    for shape in [[3usize, 200_003], [1, 4_000_000], [6, 999]] {
        let n = shape.iter().product();
        let x = random(n, 20);
        let xt = gpu().upload(&shape, &x).unwrap();
        let a = run_all(&xt);
        let b = run_all(&xt);
        for (ga, gb) in a.iter().zip(&b) {
            let bits = |v: &Vec<f32>| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(ga), bits(gb), "{shape:?}: two runs differ");
        }
    }
}

#[test]
fn empty_rows_give_zero_and_no_rows_is_a_no_op() {
    let g = gpu();
    // The output starts non-zero, so a kernel that skipped the write would show.
    let x = g.alloc(&[3, 0], DType::F32).unwrap();
    for red in ALL {
        let out = g.upload(&[3], &[7.0; 3]).unwrap();
        let mut r = rec();
        reduce::reduce_rows(
            &mut r,
            &x,
            &out,
            &reduce::reduce_scratch(g, 3, 0).unwrap(),
            red,
        )
        .unwrap();
        r.submit().unwrap();
        assert_eq!(g.download(&out).unwrap(), [0.0; 3], "{red:?}");
    }
    let none = g.alloc(&[0, 5], DType::F32).unwrap();
    let out = g.alloc(&[0], DType::F32).unwrap();
    let mut r = rec();
    let scratch = reduce::reduce_scratch(g, 0, 5).unwrap();
    reduce::reduce_rows(&mut r, &none, &out, &scratch, Reduction::Sum).unwrap();
    assert!(r.is_empty());
}

#[test]
fn scratch_len_matches_the_chunking() {
    assert_eq!(reduce::reduce_scratch_len(5, 1), 0);
    assert_eq!(reduce::reduce_scratch_len(5, reduce::CHUNK), 0);
    assert_eq!(reduce::reduce_scratch_len(5, reduce::CHUNK + 1), 10);
    assert_eq!(
        reduce::reduce_scratch_len(1, 4_000_000),
        4_000_000usize.div_ceil(reduce::CHUNK)
    );
}

#[test]
fn bad_shapes_are_errors() {
    let g = gpu();
    let x = g.upload(&[3, 5000], &random(15000, 1)).unwrap();
    let out = g.alloc(&[3], DType::F32).unwrap();
    let scratch = reduce::reduce_scratch(g, 3, 5000).unwrap();
    let mut r = rec();
    let wrong_out = g.alloc(&[4], DType::F32).unwrap();
    assert!(reduce::reduce_rows(&mut r, &x, &wrong_out, &scratch, Reduction::Sum).is_err());
    let small = g.alloc(&[5], DType::F32).unwrap();
    assert!(reduce::reduce_rows(&mut r, &x, &out, &small, Reduction::Sum).is_err());
    // scratch aliasing x, the output aliasing x
    assert!(reduce::reduce_rows(&mut r, &x, &out, &x, Reduction::L2).is_err());
    let x_small = g.upload(&[3, 1], &[1.0, 2.0, 3.0]).unwrap();
    assert!(reduce::reduce_rows(&mut r, &x_small, &x_small, &scratch, Reduction::Sum).is_err());
    let ints = g.alloc(&[3, 5000], DType::U32).unwrap();
    assert!(reduce::reduce_rows(&mut r, &ints, &out, &scratch, Reduction::Sum).is_err());
    assert!(r.is_empty());
}
