use equireg_gpu::DType;
use equireg_gpu::ops::fft::{self, Fft2Plan, ShiftedEmbedding, factorize};
use equireg_gpu::reference::fft as cpu;

use crate::common::{assert_close, gpu, random, rec, rel_l2};

/// Runs the GPU transform of `x` ([B, H, W, 2]) and returns the result.
fn gpu_fft(b: usize, h: usize, w: usize, x: &[f32], inverse: bool) -> Vec<f32> {
    let g = gpu();
    let plan = Fft2Plan::new(g, h, w).unwrap();
    let data = g.upload(&[b, h, w, 2], x).unwrap();
    let scratch = g.alloc(&[b, h, w, 2], DType::F32).unwrap();
    let mut r = rec();
    if inverse {
        plan.inverse(&mut r, &data, &scratch).unwrap();
    } else {
        plan.forward(&mut r, &data, &scratch).unwrap();
    }
    assert_eq!(r.len(), plan.dispatch_count());
    r.submit().unwrap();
    g.download(&data).unwrap()
}

fn check_against_reference(b: usize, h: usize, w: usize, seed: u64) {
    let x = random(b * h * w * 2, seed);
    for inverse in [false, true] {
        let got = gpu_fft(b, h, w, &x, inverse);
        let want = cpu::dft2(&x, b, h, w, inverse);
        let err = rel_l2(&got, &want);
        assert!(
            err < 1e-5,
            "{b}x{h}x{w} inverse={inverse}: relative L2 error {err:e}"
        );
    }
}

#[test]
fn factorize_covers_every_radix() {
    assert_eq!(factorize(1), Vec::<usize>::new());
    assert_eq!(factorize(96), vec![4, 4, 2, 3]);
    assert_eq!(factorize(384), vec![4, 4, 4, 2, 3]);
    assert_eq!(
        factorize(2 * 9 * 25 * 49 * 13),
        vec![2, 3, 3, 5, 5, 7, 7, 13]
    );
    for n in 1..200 {
        assert_eq!(factorize(n).iter().product::<usize>(), n.max(1), "{n}");
    }
}

#[test]
fn fft_8x8() {
    check_against_reference(1, 8, 8, 1);
}

#[test]
fn fft_12x20_batch() {
    check_against_reference(3, 12, 20, 2);
}

#[test]
fn fft_96x96() {
    check_against_reference(1, 96, 96, 3);
}

#[test]
fn fft_prime_sizes() {
    // 7 and 11 and 13 use the direct-DFT pass; 1 has no pass on that axis.
    check_against_reference(2, 7, 11, 4);
    check_against_reference(1, 1, 13, 5);
    check_against_reference(1, 13, 1, 6);
}

#[test]
fn fft_mixed_radix_with_generic_factors() {
    // 2 * 3 * 5 * 7 = 210 and 5 * 5 * 3 = 75 (an odd total pass count needs the final copy).
    check_against_reference(1, 210, 6, 7);
    check_against_reference(2, 15, 25, 8);
}

#[test]
fn inverse_of_forward_is_identity() {
    let (b, h, w) = (2, 24, 35);
    let g = gpu();
    let x = random(b * h * w * 2, 9);
    let plan = Fft2Plan::new(g, h, w).unwrap();
    let data = g.upload(&[b, h, w, 2], &x).unwrap();
    let scratch = g.alloc(&[b, h, w, 2], DType::F32).unwrap();
    let mut r = rec();
    plan.forward(&mut r, &data, &scratch).unwrap();
    plan.inverse(&mut r, &data, &scratch).unwrap();
    r.submit().unwrap();
    let got = g.download(&data).unwrap();
    assert!(rel_l2(&got, &x) < 1e-5, "{}", rel_l2(&got, &x));
    assert_close(&got, &x, 1e-5, 1e-4, "ifft(fft(x))");
}

#[test]
fn parseval_holds() {
    let (b, h, w) = (1, 30, 18);
    let x = random(b * h * w * 2, 10);
    let y = gpu_fft(b, h, w, &x, false);
    let e = |v: &[f32]| v.iter().map(|&a| (a as f64).powi(2)).sum::<f64>();
    let (ex, ey) = (e(&x), e(&y));
    assert!((ex - ey).abs() < 1e-5 * ex, "energy {ex} vs {ey}");
}

#[test]
fn bad_shapes_are_errors() {
    let g = gpu();
    assert!(Fft2Plan::new(g, 0, 4).is_err());
    assert!(Fft2Plan::new(g, 4, 65537 * 2).is_err());
    let plan = Fft2Plan::new(g, 8, 6).unwrap();
    let good = g.alloc(&[1, 8, 6, 2], DType::F32).unwrap();
    let wrong = g.alloc(&[1, 6, 8, 2], DType::F32).unwrap();
    let other = g.alloc(&[1, 8, 6, 2], DType::F32).unwrap();
    let mut r = rec();
    assert!(plan.forward(&mut r, &wrong, &other).is_err());
    assert!(plan.forward(&mut r, &good, &wrong).is_err());
    assert!(plan.forward(&mut r, &good, &good).is_err());
    assert!(r.is_empty());
}

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&a| a as f64).collect()
}

fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&a| a as f32).collect()
}

#[test]
fn shift_kernels_match_reference() {
    let g = gpu();
    // Odd and even sizes: ifftshift and fftshift differ for odd lengths.
    for (b, h, w, ph, pw) in [(2, 5, 6, 2, 1), (3, 8, 7, 3, 4)] {
        let e = ShiftedEmbedding::padded_ifftshift(h, w, ph, pw);
        let (hh, ww) = (e.big_h, e.big_w);
        let f = ShiftedEmbedding::fftshift(hh, ww);
        let x = random(b * h * w, 11);
        let z = random(b * hh * ww * 2, 12);
        let dy = random(b * hh * ww, 13);
        let xt = g.upload(&[b, h, w], &x).unwrap();
        let zt = g.upload(&[b, hh, ww, 2], &z).unwrap();
        let dyt = g.upload(&[b, hh, ww], &dy).unwrap();
        let emb = g.alloc(&[b, hh, ww, 2], DType::F32).unwrap();
        let mag = g.alloc(&[b, hh, ww], DType::F32).unwrap();
        let pha = g.alloc(&[b, hh, ww, 2], DType::F32).unwrap();
        let crop = g.alloc(&[b, h, w], DType::F32).unwrap();
        let mut r = rec();
        fft::embed_real_shifted(&mut r, &e, &xt, &emb).unwrap();
        fft::shifted_magnitude(&mut r, &f, &zt, &mag).unwrap();
        fft::shifted_phase_vjp(&mut r, &f, &zt, &dyt, &pha).unwrap();
        fft::crop_real_shifted(&mut r, &e, &zt, &crop).unwrap();
        r.submit().unwrap();
        let want_emb = f32s(&cpu::embed_real_shifted(&e, &f64s(&x), b));
        assert_eq!(g.download(&emb).unwrap(), want_emb, "embed");
        // The embedding holds every input value once and zeros elsewhere.
        let nonzero = want_emb.iter().filter(|v| **v != 0.0).count();
        assert_eq!(nonzero, x.iter().filter(|v| **v != 0.0).count());
        assert_close(
            &g.download(&mag).unwrap(),
            &f32s(&cpu::shifted_magnitude(&f, &f64s(&z), b)),
            1e-6,
            1e-6,
            "magnitude",
        );
        assert_close(
            &g.download(&pha).unwrap(),
            &f32s(&cpu::shifted_phase_vjp(&f, &f64s(&z), &f64s(&dy), b)),
            1e-6,
            1e-5,
            "phase vjp",
        );
        assert_eq!(
            g.download(&crop).unwrap(),
            f32s(&cpu::crop_real_shifted(&e, &f64s(&z), b)),
            "crop"
        );
        // crop is the adjoint of embed: <E x, z> = <x, E^T z>.
        let lhs: f64 = want_emb
            .iter()
            .zip(&z)
            .map(|(a, c)| *a as f64 * *c as f64)
            .sum();
        let rhs: f64 = x
            .iter()
            .zip(cpu::crop_real_shifted(&e, &f64s(&z), b))
            .map(|(a, c)| *a as f64 * c)
            .sum();
        assert!(
            (lhs - rhs).abs() < 1e-9 * lhs.abs().max(1.0),
            "{lhs} vs {rhs}"
        );
    }
}

#[test]
fn shift_kernels_reject_bad_shapes() {
    let g = gpu();
    let e = ShiftedEmbedding::padded_ifftshift(4, 4, 2, 2);
    let x = g.alloc(&[1, 4, 5], DType::F32).unwrap();
    let out = g.alloc(&[1, 8, 8, 2], DType::F32).unwrap();
    let mut r = rec();
    assert!(fft::embed_real_shifted(&mut r, &e, &x, &out).is_err());
    let bad = ShiftedEmbedding { top: 5, ..e };
    let x = g.alloc(&[1, 4, 4], DType::F32).unwrap();
    assert!(fft::embed_real_shifted(&mut r, &bad, &x, &out).is_err());
    assert!(r.is_empty());
}

/// Lavapipe time of a 384x384 batch-3 transform (the phase-retrieval size for 256x256 images).
/// Prints the per-dispatch GPU times; run with `-- --ignored --nocapture`.
#[test]
#[ignore]
fn time_384x384_batch3() {
    let g = equireg_gpu::Gpu::new(&Default::default()).unwrap();
    let (b, h, w) = (3, 384, 384);
    let plan = Fft2Plan::new(&g, h, w).unwrap();
    let data = g.upload(&[b, h, w, 2], &random(b * h * w * 2, 14)).unwrap();
    let scratch = g.alloc(&[b, h, w, 2], DType::F32).unwrap();
    g.set_profiling(true);
    for round in 0..3 {
        let mut r = g.recorder();
        plan.forward(&mut r, &data, &scratch).unwrap();
        let t0 = std::time::Instant::now();
        let times = r.submit().unwrap();
        g.sync().unwrap();
        let wall = t0.elapsed().as_secs_f64() * 1e3;
        if let Some(times) = times {
            let total: f64 = times.iter().map(|t| t.ms).sum();
            let list: Vec<String> = times
                .iter()
                .map(|t| format!("{} {:.2}", t.kernel, t.ms))
                .collect();
            eprintln!("round {round}: gpu {total:.2} ms, wall {wall:.2} ms: {list:?}");
        } else {
            eprintln!("round {round}: wall {wall:.2} ms (no timestamps)");
        }
    }
}

#[test]
fn shifts_follow_torch() {
    // torch's ifftshift moves index n / 2 to 0 and fftshift moves 0 to n / 2, for odd and even n.
    for (h, w, ph, pw) in [(7, 9, 0, 1), (8, 6, 2, 3), (1, 1, 0, 0)] {
        let e = ShiftedEmbedding::padded_ifftshift(h, w, ph, pw);
        let (hh, ww) = (h + 2 * ph, w + 2 * pw);
        assert_eq!((e.big_h, e.big_w), (hh, ww));
        let mut x = vec![0.0; h * w];
        // The pixel at the centre of the padded image.
        x[(hh / 2 - ph) * w + (ww / 2 - pw)] = 1.0;
        let emb = cpu::embed_real_shifted(&e, &x, 1);
        assert_eq!(emb[0], 1.0, "{h}x{w} pad {ph},{pw}");
        let f = ShiftedEmbedding::fftshift(hh, ww);
        let mut z = vec![0.0; hh * ww * 2];
        z[0] = -2.0;
        let y = cpu::shifted_magnitude(&f, &z, 1);
        assert_eq!(y[(hh / 2) * ww + ww / 2], 2.0);
    }
}
