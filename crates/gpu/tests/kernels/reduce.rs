use equireg_gpu::ops::reduce::{CHUNK, Reduction, reduce_rows, reduce_scratch, reduce_scratch_len};
use equireg_gpu::reference::reduce as cpu;
use equireg_gpu::{DType, Tensor};

use crate::common::{assert_close, gpu, random, rec};

const ALL: [Reduction; 4] = [
    Reduction::Sum,
    Reduction::SumSq,
    Reduction::L2,
    Reduction::MaxAbs,
];

/// Runs every reduction over x (one recorder) and returns the four results.
fn gpu_reduce_all(x: &Tensor) -> Vec<Vec<f32>> {
    let g = gpu();
    let rows = x.shape()[0];
    let cols = x.numel() / rows.max(1);
    let scratch = reduce_scratch(g, rows, cols).unwrap();
    let outs: Vec<Tensor> = ALL
        .iter()
        .map(|_| g.alloc(&[rows], DType::F32).unwrap())
        .collect();
    let mut r = rec();
    // One scratch for all four: each reduction finishes reading it before the next writes it.
    for (red, out) in ALL.iter().zip(&outs) {
        reduce_rows(&mut r, x, out, &scratch, *red).unwrap();
    }
    r.submit().unwrap();
    outs.iter().map(|o| g.download(o).unwrap()).collect()
}

/// GPU vs the f64 reference. A sum may cancel, so its error is bounded relative to sum |x|;
/// the other reductions have non-negative terms and are checked relative to the result.
fn check(shape: &[usize], seed: u64) {
    let g = gpu();
    let n: usize = shape.iter().product();
    let data = random(n, seed);
    let x = g.upload(shape, &data).unwrap();
    let rows = shape[0];
    let got = gpu_reduce_all(&x);
    let abs_sums: Vec<f32> = data
        .chunks(n / rows)
        .map(|r| r.iter().map(|v| v.abs() as f64).sum::<f64>() as f32)
        .collect();
    for (red, got) in ALL.iter().zip(&got) {
        let want = cpu::reduce_rows(&data, rows, *red);
        let what = format!("{red:?} on {shape:?}");
        match red {
            Reduction::Sum => {
                for (i, ((g, w), s)) in got.iter().zip(&want).zip(&abs_sums).enumerate() {
                    assert!(
                        (g - w).abs() <= 1e-5 * s,
                        "{what}: row {i} is {g}, reference {w} (sum |x| = {s})"
                    );
                }
            }
            // Maxima are exact.
            Reduction::MaxAbs => assert_eq!(got, &want, "{what}"),
            _ => assert_close(got, &want, 0.0, 1e-5, &what),
        }
    }
}

#[test]
fn small_rows_match_reference() {
    check(&[1, 1], 1);
    check(&[5, 1], 2);
    check(&[3, 2], 3);
    check(&[4, 255], 4);
    check(&[7, 1000], 5);
    // Rank 4: per-sample reduction over C*H*W.
    check(&[2, 3, 5, 7], 6);
}

#[test]
fn rows_around_the_chunk_size_match_reference() {
    check(&[3, CHUNK - 1], 7);
    check(&[2, CHUNK], 8);
    check(&[3, CHUNK + 1], 9);
    check(&[2, 3 * CHUNK + 17], 10);
}

#[test]
fn long_rows_match_reference() {
    check(&[3, 200_003], 11);
    // A 256x256 RGB image per sample.
    check(&[2, 3, 256, 256], 12);
}

#[test]
fn whole_tensor_of_four_million_matches_reference() {
    check(&[1, 4_000_000], 13);
}

#[test]
fn whole_tensor_is_a_reshape() {
    let g = gpu();
    let data = random(2 * 3 * 5 * 7, 14);
    let x = g.upload(&[2, 3, 5, 7], &data).unwrap();
    let flat = gpu_reduce_all(&x.reshape(&[1, data.len()]).unwrap());
    for (red, got) in ALL.iter().zip(&flat) {
        let want = cpu::reduce_rows(&data, 1, *red);
        assert_close(got, &want, 1e-6, 1e-5, &format!("{red:?} whole tensor"));
    }
}

#[test]
fn results_are_deterministic_and_independent_of_other_rows() {
    let g = gpu();
    let bits = |v: &[Vec<f32>]| -> Vec<Vec<u32>> {
        v.iter()
            .map(|r| r.iter().map(|f| f.to_bits()).collect())
            .collect()
    };
    for shape in [[1, 4_000_000], [3, 200_003]] {
        let n = shape[0] * shape[1];
        let data = random(n, 15);
        let x = g.upload(&shape, &data).unwrap();
        let first = bits(&gpu_reduce_all(&x));
        let second = bits(&gpu_reduce_all(&x));
        assert_eq!(first, second, "two runs on {shape:?}");
        // Row 1 alone gives the same bits as row 1 of the batch.
        if shape[0] > 1 {
            let row = &data[shape[1]..2 * shape[1]];
            let alone = bits(&gpu_reduce_all(&g.upload(&[1, shape[1]], row).unwrap()));
            for (batch, single) in first.iter().zip(&alone) {
                assert_eq!(batch[1], single[0]);
            }
        }
    }
}

#[test]
fn empty_rows_give_zero_and_no_rows_is_a_no_op() {
    let g = gpu();
    let x = g.alloc(&[3, 0], DType::F32).unwrap();
    for got in gpu_reduce_all(&x) {
        assert_eq!(got, vec![0.0; 3]);
    }
    let none = g.alloc(&[0, 5], DType::F32).unwrap();
    let out = g.alloc(&[0], DType::F32).unwrap();
    let scratch = reduce_scratch(g, 0, 5).unwrap();
    let mut r = rec();
    reduce_rows(&mut r, &none, &out, &scratch, Reduction::Sum).unwrap();
    assert!(r.is_empty());
}

#[test]
fn scratch_len_counts_chunks() {
    assert_eq!(reduce_scratch_len(3, 1), 3);
    assert_eq!(reduce_scratch_len(3, 0), 3);
    assert_eq!(reduce_scratch_len(2, CHUNK), 2);
    assert_eq!(reduce_scratch_len(2, CHUNK + 1), 4);
    assert_eq!(
        reduce_scratch_len(1, 4_000_000),
        4_000_000usize.div_ceil(CHUNK)
    );
}

#[test]
fn bad_arguments_are_errors() {
    let g = gpu();
    let x = g.alloc(&[3, 10_000], DType::F32).unwrap();
    let out = g.alloc(&[3], DType::F32).unwrap();
    let need = reduce_scratch_len(3, 10_000);
    let small = g.alloc(&[need - 1], DType::F32).unwrap();
    let scratch = g.alloc(&[need], DType::F32).unwrap();
    let mut r = rec();
    let sum = Reduction::Sum;
    let e = reduce_rows(&mut r, &x, &out, &small, sum)
        .unwrap_err()
        .to_string();
    assert!(e.contains("scratch has"), "{e}");
    let wrong_out = g.alloc(&[4], DType::F32).unwrap();
    let e = reduce_rows(&mut r, &x, &wrong_out, &scratch, sum)
        .unwrap_err()
        .to_string();
    assert!(e.contains("expected 3 elements"), "{e}");
    let scalar = g.alloc(&[], DType::F32).unwrap();
    let e = reduce_rows(&mut r, &scalar, &out, &scratch, sum)
        .unwrap_err()
        .to_string();
    assert!(e.contains("at least one dimension"), "{e}");
    // With one column, x itself has the size of out and of the scratch.
    let thin = g.alloc(&[3, 1], DType::F32).unwrap();
    let e = reduce_rows(&mut r, &thin, &thin.reshape(&[3]).unwrap(), &scratch, sum)
        .unwrap_err()
        .to_string();
    assert!(e.contains("must not share memory"), "{e}");
    let e = reduce_rows(&mut r, &thin, &out, &thin, sum)
        .unwrap_err()
        .to_string();
    assert!(e.contains("must not share memory"), "{e}");
    let e = reduce_rows(&mut r, &thin, &out, &out, sum)
        .unwrap_err()
        .to_string();
    assert!(e.contains("must not share memory"), "{e}");
    let ints = g.alloc(&[3, 10_000], DType::U32).unwrap();
    let e = reduce_rows(&mut r, &ints, &out, &scratch, sum)
        .unwrap_err()
        .to_string();
    assert!(e.contains("f32"), "{e}");
    assert!(r.is_empty());
}
