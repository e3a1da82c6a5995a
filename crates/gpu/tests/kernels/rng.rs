use equireg_gpu::DType;
use equireg_gpu::ops::rng::{rng_bits, rng_normal, rng_normal_items, rng_uniform};
use equireg_gpu::reference::rng as cpu;

use crate::common::{assert_close, gpu, rec};

// About a million samples, and not a multiple of 4 so the last Philox block is partial.
const N: usize = 1_000_003;
const SEED: u64 = 0x0123_4567_89AB_CDEF;

#[derive(Clone, Copy)]
enum Dist {
    Uniform,
    Normal,
}

fn draw(dist: Dist, n: usize, seed: u64, stream: u32, offset: u32) -> Vec<f32> {
    let g = gpu();
    let out = g.alloc(&[n], DType::F32).unwrap();
    let mut r = rec();
    match dist {
        Dist::Uniform => rng_uniform(&mut r, &out, seed, stream, offset).unwrap(),
        Dist::Normal => rng_normal(&mut r, &out, seed, stream, offset).unwrap(),
    }
    r.submit().unwrap();
    g.download(&out).unwrap()
}

/// Mean, variance, skewness and excess kurtosis, in f64.
fn moments(x: &[f32]) -> [f64; 4] {
    let n = x.len() as f64;
    let mean = x.iter().map(|&v| v as f64).sum::<f64>() / n;
    let central = |k: i32| x.iter().map(|&v| (v as f64 - mean).powi(k)).sum::<f64>() / n;
    let var = central(2);
    [
        mean,
        var,
        central(3) / var.powf(1.5),
        central(4) / (var * var) - 3.0,
    ]
}

/// The Kolmogorov-Smirnov statistic sup |F_n - F| of the samples against the CDF `cdf`.
fn ks_statistic(x: &[f32], cdf: impl Fn(f64) -> f64) -> f64 {
    let mut s: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    s.sort_by(f64::total_cmp);
    let n = s.len() as f64;
    s.iter()
        .enumerate()
        .map(|(i, &v)| {
            let f = cdf(v);
            (f - i as f64 / n).max((i + 1) as f64 / n - f)
        })
        .fold(0.0, f64::max)
}

/// Critical value of the KS statistic at significance 1% (asymptotic: 1.628 / sqrt(n)).
fn ks_critical(n: usize) -> f64 {
    1.63 / (n as f64).sqrt()
}

/// The standard normal CDF, via erf(x) = 2/sqrt(pi) e^(-x^2) sum_k 2^k x^(2k+1) / (2k+1)!!,
/// a series of positive terms (no cancellation), accurate to ~1e-15 for the |x| < 9 used here.
fn normal_cdf(x: f64) -> f64 {
    let a = x.abs() / std::f64::consts::SQRT_2;
    if a > 9.0 {
        return if x > 0.0 { 1.0 } else { 0.0 };
    }
    let (mut term, mut sum, mut k) = (a, 0.0, 0.0);
    while term > 1e-17 * sum || k < 5.0 {
        sum += term;
        k += 1.0;
        term *= 2.0 * a * a / (2.0 * k + 1.0);
    }
    let erf = 2.0 / std::f64::consts::PI.sqrt() * (-a * a).exp() * sum;
    0.5 + 0.5 * erf.copysign(x)
}

#[test]
fn philox_matches_random123_known_answers() {
    let cases: [([u32; 4], [u32; 2], [u32; 4]); 3] = [
        (
            [0; 4],
            [0; 2],
            [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8],
        ),
        (
            [u32::MAX; 4],
            [u32::MAX; 2],
            [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd],
        ),
        (
            [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
            [0xa4093822, 0x299f31d0],
            [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1],
        ),
    ];
    for (counter, key, want) in cases {
        assert_eq!(
            cpu::philox4x32_10(counter, key),
            want,
            "counter {counter:08x?} key {key:08x?}"
        );
    }
}

#[test]
fn gpu_philox_words_match_reference() {
    let g = gpu();
    let draw_bits = |n: usize, seed: u64, stream: u32, offset: u32| {
        let out = g.alloc(&[n], DType::U32).unwrap();
        let mut r = rec();
        rng_bits(&mut r, &out, seed, stream, offset).unwrap();
        r.submit().unwrap();
        g.download_u32(&out).unwrap()
    };
    // Block 0 of seed 0, stream 0, offset 0 is Philox of counter 0 and key 0: the first
    // known-answer vector, computed on the GPU.
    assert_eq!(
        draw_bits(4, 0, 0, 0),
        [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]
    );
    // All 32 bits of every word, with key and counter words that have their top bits set (the
    // 16-bit-halves multiply is wrong there first if it is wrong).
    for (seed, stream, offset) in [(SEED, 3, 7), (u64::MAX, u32::MAX, u32::MAX)] {
        let n = 100_003;
        assert_eq!(
            draw_bits(n, seed, stream, offset),
            cpu::bits(n, seed, stream, offset),
            "seed {seed:#x} stream {stream} offset {offset}"
        );
    }
}

#[test]
fn normal_cdf_is_accurate() {
    // Checks of the test's own CDF against well-known values of Phi.
    assert!((normal_cdf(0.0) - 0.5).abs() < 1e-15);
    assert!((normal_cdf(1.0) - 0.841_344_746_068_542_9).abs() < 1e-12);
    assert!((normal_cdf(-1.959_963_984_540_054) - 0.025).abs() < 1e-12);
    assert!((normal_cdf(-5.0) - 2.866_515_718_791_939e-7).abs() < 1e-15);
}

#[test]
fn uniform_matches_reference_bit_for_bit() {
    let got = draw(Dist::Uniform, N, SEED, 3, 7);
    assert_eq!(got, cpu::uniform(N, SEED, 3, 7));
    for n in [1, 2, 3, 5, 6, 7, 210] {
        assert_eq!(
            draw(Dist::Uniform, n, SEED, 0, 0),
            cpu::uniform(n, SEED, 0, 0),
            "n = {n}"
        );
    }
}

#[test]
fn normal_matches_reference() {
    let got = draw(Dist::Normal, N, SEED, 3, 7);
    let want = cpu::normal(N, SEED, 3, 7);
    let worst = got
        .iter()
        .zip(&want)
        .map(|(g, w)| (g - w).abs())
        .fold(0.0f32, f32::max);
    eprintln!("rng_normal: max |gpu - reference| = {worst:e} over {N} samples");
    // assert_close also fails on any non-finite value: u1 is never 0, so log never blows up.
    assert_close(&got, &want, 2e-6, 0.0, "rng_normal");
    for n in [1, 2, 3, 5, 6, 7, 210] {
        let want = cpu::normal(n, SEED, 0, 0);
        assert_close(
            &draw(Dist::Normal, n, SEED, 0, 0),
            &want,
            2e-6,
            0.0,
            "short",
        );
    }
}

#[test]
fn uniform_statistics() {
    let x = draw(Dist::Uniform, N, 42, 0, 0);
    assert!(x.iter().all(|&v| (0.0..1.0).contains(&v)));
    let [mean, var, ..] = moments(&x);
    // Bounds are about 5 standard errors: sd(mean) = sqrt(1/12/n) = 2.9e-4,
    // sd(var) = sqrt((1/80 - 1/144)/n) = 7.5e-5.
    assert!((mean - 0.5).abs() < 1.5e-3, "mean {mean}");
    assert!((var - 1.0 / 12.0).abs() < 4e-4, "variance {var}");
    let d = ks_statistic(&x, |v| v.clamp(0.0, 1.0));
    assert!(d < ks_critical(N), "KS statistic {d} vs {}", ks_critical(N));
}

#[test]
fn normal_statistics() {
    let x = draw(Dist::Normal, N, 42, 0, 0);
    let [mean, var, skew, kurt] = moments(&x);
    // About 5 standard errors: sd(mean) = 1e-3, sd(var) = sqrt(2/n) = 1.4e-3,
    // sd(skew) = sqrt(6/n) = 2.4e-3, sd(excess kurtosis) = sqrt(24/n) = 4.9e-3.
    assert!(mean.abs() < 5e-3, "mean {mean}");
    assert!((var - 1.0).abs() < 7e-3, "variance {var}");
    assert!(skew.abs() < 1.2e-2, "skewness {skew}");
    assert!(kurt.abs() < 2.5e-2, "excess kurtosis {kurt}");
    let d = ks_statistic(&x, normal_cdf);
    assert!(d < ks_critical(N), "KS statistic {d} vs {}", ks_critical(N));
    // The same test rejects uniforms, so it has power.
    let u = draw(Dist::Uniform, N, 42, 0, 0);
    assert!(ks_statistic(&u, normal_cdf) > 10.0 * ks_critical(N));
}

#[test]
fn draws_repeat_and_differ_by_seed_stream_offset() {
    let n = 4099;
    let base = (SEED, 1, 2);
    for dist in [Dist::Uniform, Dist::Normal] {
        let a = draw(dist, n, base.0, base.1, base.2);
        let again = draw(dist, n, base.0, base.1, base.2);
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert_eq!(
            bits(&a),
            bits(&again),
            "same (seed, stream, offset) repeats"
        );
        let others = [
            (SEED + 1, 1, 2),
            (SEED ^ (1 << 40), 1, 2),
            (SEED, 2, 2),
            (SEED, 1, 3),
            // stream and offset swapped: they must sit in different counter words.
            (SEED, 2, 1),
        ];
        for (seed, stream, offset) in others {
            let b = draw(dist, n, seed, stream, offset);
            let same = a.iter().zip(&b).filter(|(x, y)| x == y).count();
            // Independent 24-bit values coincide with probability ~2^-24 each.
            assert!(
                same <= 2,
                "{same} equal elements for ({seed:#x}, {stream}, {offset})"
            );
        }
        // A shorter draw is a prefix of a longer one.
        assert_eq!(draw(dist, 10, base.0, base.1, base.2), a[..10]);
    }
}

#[test]
fn wrong_output_dtype_is_an_error() {
    let g = gpu();
    let out = g.alloc(&[16], DType::U32).unwrap();
    let mut r = rec();
    let e = rng_uniform(&mut r, &out, 1, 0, 0).unwrap_err().to_string();
    assert!(e.contains("rng_uniform") && e.contains("f32"), "{e}");
    let e = rng_normal(&mut r, &out, 1, 0, 0).unwrap_err().to_string();
    assert!(e.contains("rng_normal"), "{e}");
    let floats = g.alloc(&[16], DType::F32).unwrap();
    let e = rng_bits(&mut r, &floats, 1, 0, 0).unwrap_err().to_string();
    assert!(e.contains("rng_bits") && e.contains("u32"), "{e}");
    assert!(r.is_empty());
}

#[test]
fn per_item_normals_match_reference_and_follow_the_counter() {
    let g = gpu();
    // Items of 75 elements: not a multiple of 4, so Philox blocks do not line up with items.
    let (items, len) = (3usize, 75usize);
    for (c, first) in [(0u32, 0u32), (7, 5)] {
        let counter = g.upload_u32(&[1], &[c]).unwrap();
        let out = g.alloc(&[items, 3, 5, 5], DType::F32).unwrap();
        let mut r = rec();
        rng_normal_items(&mut r, &out, 42, 3, 10, &counter, first).unwrap();
        r.submit().unwrap();
        let got = g.download(&out).unwrap();
        for k in 0..items {
            let want = cpu::normal_item(len, 42, 3, 10 + c, first + k as u32);
            assert_close(&got[k * len..(k + 1) * len], &want, 2e-6, 2e-6, "item");
        }
        if first == 0 && c == 0 {
            assert_eq!(
                &got[..len],
                &draw(Dist::Normal, len, 42, 3, 10)[..],
                "item 0 = rng_normal"
            );
        }
    }
    let f32_counter = g.upload(&[1], &[0.0]).unwrap();
    let out = g.alloc(&[1, 4], DType::F32).unwrap();
    let mut r = rec();
    assert!(rng_normal_items(&mut r, &out, 1, 0, 0, &f32_counter, 0).is_err());
}
