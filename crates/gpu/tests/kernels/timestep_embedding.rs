use equireg_gpu::DType;
use equireg_gpu::ops::timestep_embedding::timestep_embedding;
use equireg_gpu::reference::timestep_embedding as cpu;

use crate::common::{assert_close, gpu, rec};

/// Timesteps 0..=999 (every integer of a DDPM schedule, spread over rows) plus fractional ones
/// (respaced schedules rescale t) and 0.
fn timesteps() -> Vec<f32> {
    let mut t: Vec<f32> = (0..1000).step_by(37).map(|v| v as f32).collect();
    t.extend([999.0, 998.0, 0.5, 12.345, 501.75, 999.999, 1e-3]);
    t
}

fn run(t: &[f32], dim: usize) -> Vec<f32> {
    let g = gpu();
    let tt = g.upload(&[t.len()], t).unwrap();
    let out = g.alloc(&[t.len(), dim], DType::F32).unwrap();
    let mut r = rec();
    timestep_embedding(&mut r, &tt, &out).unwrap();
    r.submit().unwrap();
    g.download(&out).unwrap()
}

/// The f32 ulp of |x| (spacing of f32 values at x).
fn ulp(x: f32) -> f32 {
    let a = x.abs();
    f32::from_bits(a.to_bits() + 1) - a
}

#[test]
fn argument_is_the_f32_product_t_times_freq() {
    // Against the reference that forms the argument exactly as PyTorch does (f32 freq, f32
    // product). Allowing the GPU's freq to be 1 ulp off (its exp is not correctly rounded) and
    // the product to round the other way, the argument is within t * ulp(freq) + ulp(arg) of
    // the reference's; |d cos / d arg| <= 1, plus 2e-6 for the polynomials and final rounding.
    // That is ~1e-4 at t ~ 999 but ~2e-6 for small arguments, far below what a differently
    // formed argument (or a coarse exp for freq) would give.
    for dim in [128usize, 7, 2, 1, 320] {
        let t = timesteps();
        let got = run(&t, dim);
        let want = cpu::timestep_embedding(&t, dim);
        let args = cpu::timestep_arguments(&t, dim);
        let freqs = cpu::timestep_frequencies(dim);
        let half = dim / 2;
        for row in 0..t.len() {
            for j in 0..dim {
                let idx = row * dim + j;
                let tol = if j < 2 * half {
                    let i = j % half;
                    2e-6 + t[row] * ulp(freqs[i]) + ulp(args[row * half + i])
                } else {
                    0.0
                };
                let err = (got[idx] - want[idx]).abs();
                assert!(
                    err <= tol,
                    "dim {dim} t {} column {j}: got {} want {} (error {err}, tolerance {tol})",
                    t[row],
                    got[idx],
                    want[idx]
                );
            }
        }
    }
}

#[test]
fn matches_exact_embedding_within_f32_argument_rounding() {
    // Against the all-f64 embedding: the f32 argument itself is off by up to half an ulp of
    // ~1000 rad (3e-5) plus the f32 rounding of freq times t (~6e-5): atol 1e-4.
    for dim in [128usize, 7, 256] {
        let t = timesteps();
        let got = run(&t, dim);
        let want = cpu::timestep_embedding_f64(&t, dim);
        assert_close(&got, &want, 1e-4, 0.0, &format!("embedding dim {dim}"));
    }
}

#[test]
fn odd_dim_has_a_zero_last_column_and_cos_first() {
    let got = run(&[0.0, 5.0], 9);
    // t = 0: cos 0 = 1 for the first 4 columns, sin 0 = 0 for the next 4, then the zero column.
    assert_eq!(&got[..9], &[1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    assert_eq!(got[17], 0.0);
    assert!((got[9] - 5f32.cos()).abs() < 1e-6 && (got[13] - 5f32.sin()).abs() < 1e-6);
}

#[test]
fn bad_shapes_are_errors() {
    let g = gpu();
    let t = g.alloc(&[3], DType::F32).unwrap();
    let mut r = rec();
    let out = g.alloc(&[4, 8], DType::F32).unwrap();
    let e = timestep_embedding(&mut r, &t, &out).unwrap_err();
    assert!(e.to_string().contains("one row per timestep"), "{e}");
    let flat = g.alloc(&[24], DType::F32).unwrap();
    let e = timestep_embedding(&mut r, &t, &flat).unwrap_err();
    assert!(e.to_string().contains("dimensions"), "{e}");
    let t2 = g.alloc(&[3, 1], DType::F32).unwrap();
    let out = g.alloc(&[3, 8], DType::F32).unwrap();
    let e = timestep_embedding(&mut r, &t2, &out).unwrap_err();
    assert!(e.to_string().contains("dimensions"), "{e}");
    assert!(r.is_empty());
}
