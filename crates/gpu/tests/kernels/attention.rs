use equireg_gpu::DType;
use equireg_gpu::ops::attention::{attention_legacy, attention_legacy_vjp};
use equireg_gpu::reference::attention as cpu;

use crate::common::{assert_close, gpu, own_gpu, random, rec, rel_l2};

/// Runs attention on qkv [n, 3 * heads * ch, t] of uniform values in [-amp, amp) and compares.
#[allow(clippy::too_many_arguments)]
fn check(n: usize, heads: usize, ch: usize, t: usize, amp: f32, seed: u64, atol: f32, rtol: f32) {
    let g = gpu();
    let c = heads * ch;
    let qkv: Vec<f32> = random(n * 3 * c * t, seed)
        .iter()
        .map(|v| v * amp)
        .collect();
    let qt = g.upload(&[n, 3 * c, t], &qkv).unwrap();
    let out = g.alloc(&[n, c, t], DType::F32).unwrap();
    let mut r = rec();
    attention_legacy(&mut r, &qt, &out, heads as u32).unwrap();
    r.submit().unwrap();
    let want = cpu::attention_legacy(&qkv, n, c, t, heads);
    let what = format!("attention n {n} heads {heads} ch {ch} T {t} amplitude {amp}");
    let got = g.download(&out).unwrap();
    assert_close(&got, &want, atol, rtol, &what);
    // Overall error, so a handful of elements near the elementwise bound cannot hide a bias.
    let e = rel_l2(&got, &want);
    assert!(e < 1e-4, "{what}: relative L2 error {e}");
}

// Tolerance for inputs in [-1, 1): atol 2e-5, rtol 1e-4 (f32 dot products of <= 64 terms and
// an f32 softmax against an f64 reference).
const ATOL: f32 = 2e-5;
const RTOL: f32 = 1e-4;

#[test]
fn head_size_64_matches_reference() {
    // T = 13 x 10 and other sizes that are not multiples of the query block (64) or key tile (32).
    check(2, 1, 64, 130, 1.0, 1, ATOL, RTOL);
    check(2, 2, 64, 77, 1.0, 2, ATOL, RTOL);
    check(2, 4, 64, 256, 1.0, 3, ATOL, RTOL);
    check(1, 4, 64, 4, 1.0, 4, ATOL, RTOL);
}

#[test]
fn small_and_odd_head_sizes_match_reference() {
    check(2, 4, 8, 100, 1.0, 10, ATOL, RTOL);
    check(2, 2, 3, 37, 1.0, 11, ATOL, RTOL);
    check(2, 1, 32, 33, 1.0, 12, ATOL, RTOL);
    check(1, 3, 5, 1, 1.0, 13, ATOL, RTOL);
}

#[test]
fn large_logits_are_stable() {
    // Inputs scaled by 30: logits reach several hundred, far past where exp overflows f32
    // (88), and outputs reach 30. The logits' own f32 rounding (~1e-7 relative of a sum of
    // terms up to ~900) moves the softmax weights by ~1e-4 relative, hence atol 2e-3 here.
    check(2, 2, 64, 70, 30.0, 20, 2e-3, 2e-4);
    check(2, 4, 8, 45, 30.0, 21, 2e-3, 2e-4);
}

#[test]
fn long_sequences_match_reference() {
    // 32 x 32 tokens with head size 64, and 64 x 64 tokens with a small head.
    check(1, 1, 64, 1024, 1.0, 30, ATOL, RTOL);
    check(1, 1, 8, 4096, 1.0, 31, ATOL, RTOL);
}

#[test]
fn bad_shapes_are_errors() {
    let g = gpu();
    let qkv = g.alloc(&[2, 24, 10], DType::F32).unwrap();
    let out = g.alloc(&[2, 8, 10], DType::F32).unwrap();
    let mut r = rec();
    let e = attention_legacy(&mut r, &qkv, &out, 3).unwrap_err();
    assert!(e.to_string().contains("heads"), "{e}");
    let e = attention_legacy(&mut r, &qkv, &out, 0).unwrap_err();
    assert!(e.to_string().contains("heads"), "{e}");
    let bad_out = g.alloc(&[2, 8, 9], DType::F32).unwrap();
    let e = attention_legacy(&mut r, &qkv, &bad_out, 2).unwrap_err();
    assert!(e.to_string().contains("out"), "{e}");
    let e = attention_legacy(&mut r, &qkv, &qkv, 2).unwrap_err();
    assert!(e.to_string().contains("out"), "{e}");
    let wide = g.alloc(&[1, 3 * 128, 4], DType::F32).unwrap();
    let wide_out = g.alloc(&[1, 128, 4], DType::F32).unwrap();
    let e = attention_legacy(&mut r, &wide, &wide_out, 1).unwrap_err();
    assert!(e.to_string().contains("per head"), "{e}");
    let flat = g.alloc(&[24, 10], DType::F32).unwrap();
    let e = attention_legacy(&mut r, &flat, &out, 2).unwrap_err();
    assert!(e.to_string().contains("dimensions"), "{e}");
    assert!(r.is_empty());
}

/// 64 x 64 tokens with head size 64 (the ADM 64x64 case): about 14 s on lavapipe, so opt-in
/// (`cargo test ... -- --ignored`).
#[test]
#[ignore]
fn head_size_64_with_4096_tokens() {
    check(1, 1, 64, 4096, 1.0, 40, ATOL, RTOL);
}

/// Median wall time of one dispatch (submit + sync, after warm-up). Opt-in: `-- --ignored
/// --nocapture`.
#[test]
#[ignore]
fn bench_attention_256tok_h4_d64() {
    let g = gpu();
    let (n, heads, ch, t) = (1usize, 4usize, 64usize, 256usize);
    let qt = g
        .upload(
            &[n, 3 * heads * ch, t],
            &random(n * 3 * heads * ch * t, 600),
        )
        .unwrap();
    let out = g.alloc(&[n, heads * ch, t], DType::F32).unwrap();
    let once = || {
        let mut r = g.recorder();
        attention_legacy(&mut r, &qt, &out, heads as u32).unwrap();
        let t0 = std::time::Instant::now();
        r.submit().unwrap();
        g.sync().unwrap();
        t0.elapsed().as_secs_f64()
    };
    for _ in 0..3 {
        once();
    }
    let mut times: Vec<f64> = (0..11).map(|_| once()).collect();
    times.sort_by(f64::total_cmp);
    let med = times[times.len() / 2];
    let flops = 4.0 * (n * heads * t * t * ch) as f64;
    eprintln!(
        "attention-256tok-h4-d64 on {}: median {:.3} ms, {:.2} GFLOP/s",
        g.caps().describe(),
        med * 1e3,
        flops / med * 1e-9
    );
}

// ---- VJP ----

fn dot64(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
}

/// Runs the VJP on qkv [n, 3 * heads * ch, t] of uniform values in [-amp, amp) with a random
/// dout, into a dqkv prefilled with NaN (so an unwritten element fails), and checks it (a)
/// elementwise against the f64 reference VJP (atol, rtol, and relative L2 below 1e-4) and (b)
/// in a random direction u against a central finite difference of L(qkv) = <dout, f(qkv)> with
/// the f64 forward, eps = 1e-3: within 1e-3 relative for the GPU, within 1e-6 of
/// sum |dqkv_i u_i| for the reference. (b) is also the dot-product test <dout, J u> = <J^T dout, u>.
#[allow(clippy::too_many_arguments)]
fn check_vjp(
    n: usize,
    heads: usize,
    ch: usize,
    t: usize,
    amp: f32,
    seed: u64,
    atol: f32,
    rtol: f32,
) {
    let g = gpu();
    let c = heads * ch;
    let qkv: Vec<f32> = random(n * 3 * c * t, seed)
        .iter()
        .map(|v| v * amp)
        .collect();
    let dout = random(n * c * t, seed + 1);
    let u = random(n * 3 * c * t, seed + 2);
    let qt = g.upload(&[n, 3 * c, t], &qkv).unwrap();
    let dt = g.upload(&[n, c, t], &dout).unwrap();
    let dq = g
        .upload(&[n, 3 * c, t], &vec![f32::NAN; n * 3 * c * t])
        .unwrap();
    let mut r = rec();
    attention_legacy_vjp(&mut r, &qt, &dt, &dq, heads as u32).unwrap();
    r.submit().unwrap();
    let got = g.download(&dq).unwrap();
    let want = cpu::attention_legacy_vjp(&qkv, &dout, n, c, t, heads);
    let what = format!("attention vjp n {n} heads {heads} ch {ch} T {t} amplitude {amp}");
    assert_close(&got, &want, atol, rtol, &what);
    let e = rel_l2(&got, &want);
    assert!(e < 1e-4, "{what}: relative L2 error {e}");

    let q64: Vec<f64> = qkv.iter().map(|&v| v as f64).collect();
    let loss = |eps: f64| {
        let x: Vec<f64> = q64
            .iter()
            .zip(&u)
            .map(|(a, &d)| a + eps * d as f64)
            .collect();
        let f = cpu::attention_legacy_f64(&x, n, c, t, heads);
        f.iter().zip(&dout).map(|(a, &b)| a * b as f64).sum::<f64>()
    };
    let eps = 1e-3;
    let fd = (loss(eps) - loss(-eps)) / (2.0 * eps);
    let gpu_dir = dot64(&got, &u);
    let ref_dir = dot64(&want, &u);
    let abs_dir: f64 = want.iter().zip(&u).map(|(a, b)| (a * b).abs() as f64).sum();
    eprintln!(
        "{what}: rel L2 {e:.2e}, finite difference {fd:.9}, GPU rel err {:.2e}, reference rel err {:.2e}",
        (gpu_dir - fd).abs() / fd.abs(),
        (ref_dir - fd).abs() / fd.abs()
    );
    assert!(
        (gpu_dir - fd).abs() <= 1e-3 * fd.abs(),
        "{what}: <dqkv, u> = {gpu_dir}, finite difference {fd}"
    );
    assert!(
        (ref_dir - fd).abs() <= 1e-6 * abs_dir,
        "{what}: reference <dqkv, u> = {ref_dir}, finite difference {fd}"
    );
}

// Tolerance of the VJP for inputs in [-1, 1): atol 2e-5, rtol 2e-4.
const VJP_ATOL: f32 = 2e-5;
const VJP_RTOL: f32 = 2e-4;

#[test]
fn vjp_head_size_64() {
    // Lavapipe takes ~3 s per 16M query-key-channel products, so heads 4 gets T 130 here.
    check_vjp(2, 1, 64, 16, 1.0, 100, VJP_ATOL, VJP_RTOL);
    check_vjp(2, 2, 64, 77, 1.0, 101, VJP_ATOL, VJP_RTOL);
    check_vjp(2, 1, 64, 256, 1.0, 102, VJP_ATOL, VJP_RTOL);
    check_vjp(1, 4, 64, 130, 1.0, 103, VJP_ATOL, VJP_RTOL);
}

#[test]
fn vjp_head_sizes_8_and_32() {
    check_vjp(2, 4, 8, 100, 1.0, 110, VJP_ATOL, VJP_RTOL);
    check_vjp(2, 1, 32, 130, 1.0, 111, VJP_ATOL, VJP_RTOL);
    check_vjp(1, 2, 32, 256, 1.0, 112, VJP_ATOL, VJP_RTOL);
    check_vjp(2, 4, 8, 16, 1.0, 113, VJP_ATOL, VJP_RTOL);
}

#[test]
fn vjp_odd_sizes() {
    // Head sizes that are not multiples of 4, T not a multiple of 4, 32 or 64, a single token.
    check_vjp(2, 2, 3, 37, 1.0, 120, VJP_ATOL, VJP_RTOL);
    check_vjp(2, 3, 2, 65, 1.0, 121, VJP_ATOL, VJP_RTOL);
    check_vjp(1, 3, 5, 1, 1.0, 122, VJP_ATOL, VJP_RTOL);
    check_vjp(2, 1, 63, 33, 1.0, 123, VJP_ATOL, VJP_RTOL);
}

#[test]
fn vjp_large_logits() {
    // Inputs scaled by 6: logits reach ~100 (past exp's f32 range) and the softmax is peaked.
    check_vjp(2, 2, 64, 70, 6.0, 130, 2e-3, 2e-3);
    check_vjp(2, 4, 8, 45, 6.0, 131, 2e-3, 2e-3);
}

#[test]
fn vjp_repeated_runs_are_bitwise_identical() {
    let g = gpu();
    let (n, c, t) = (2, 128, 100);
    let qt = g
        .upload(&[n, 3 * c, t], &random(n * 3 * c * t, 140))
        .unwrap();
    let dt = g.upload(&[n, c, t], &random(n * c * t, 141)).unwrap();
    let runs: Vec<Vec<u32>> = (0..2)
        .map(|_| {
            let dq = g.alloc(&[n, 3 * c, t], DType::F32).unwrap();
            let mut r = rec();
            attention_legacy_vjp(&mut r, &qt, &dt, &dq, 2).unwrap();
            r.submit().unwrap();
            g.download(&dq)
                .unwrap()
                .iter()
                .map(|v| v.to_bits())
                .collect()
        })
        .collect();
    assert!(runs[0] == runs[1], "two runs on the same input differ");
}

#[test]
fn vjp_bad_shapes_are_errors() {
    let g = gpu();
    let qkv = g.alloc(&[2, 24, 10], DType::F32).unwrap();
    let dqkv = g.alloc(&[2, 24, 10], DType::F32).unwrap();
    let dout = g.alloc(&[2, 8, 10], DType::F32).unwrap();
    let mut r = rec();
    let e = attention_legacy_vjp(&mut r, &qkv, &dout, &dqkv, 3).unwrap_err();
    assert!(e.to_string().contains("heads"), "{e}");
    let e = attention_legacy_vjp(&mut r, &qkv, &dout, &dqkv, 0).unwrap_err();
    assert!(e.to_string().contains("heads"), "{e}");
    let bad = g.alloc(&[2, 8, 9], DType::F32).unwrap();
    let e = attention_legacy_vjp(&mut r, &qkv, &bad, &dqkv, 2).unwrap_err();
    assert!(e.to_string().contains("dout"), "{e}");
    let bad = g.alloc(&[2, 24, 9], DType::F32).unwrap();
    let e = attention_legacy_vjp(&mut r, &qkv, &dout, &bad, 2).unwrap_err();
    assert!(e.to_string().contains("dqkv"), "{e}");
    let e = attention_legacy_vjp(&mut r, &qkv, &dout, &qkv, 2).unwrap_err();
    assert!(e.to_string().contains("must not share memory"), "{e}");
    // One channel per head: nowhere to keep the statistics.
    let e = attention_legacy_vjp(&mut r, &qkv, &dout, &dqkv, 8).unwrap_err();
    assert!(e.to_string().contains("per head"), "{e}");
    let wide = g.alloc(&[1, 3 * 128, 4], DType::F32).unwrap();
    let wide_d = g.alloc(&[1, 3 * 128, 4], DType::F32).unwrap();
    let wide_out = g.alloc(&[1, 128, 4], DType::F32).unwrap();
    let e = attention_legacy_vjp(&mut r, &wide, &wide_out, &wide_d, 1).unwrap_err();
    assert!(e.to_string().contains("per head"), "{e}");
    assert!(r.is_empty());
}

/// VJP time / forward time at 256 tokens, 4 heads of 64 channels. Opt-in: `-- --ignored
/// --nocapture`.
#[test]
#[ignore]
fn bench_vjp_vs_forward_256tok_h4_d64() {
    let g = gpu();
    let (n, heads, ch, t) = (1usize, 4usize, 64usize, 256usize);
    let c = heads * ch;
    let qt = g
        .upload(&[n, 3 * c, t], &random(n * 3 * c * t, 610))
        .unwrap();
    let dt = g.upload(&[n, c, t], &random(n * c * t, 611)).unwrap();
    let out = g.alloc(&[n, c, t], DType::F32).unwrap();
    let dq = g.alloc(&[n, 3 * c, t], DType::F32).unwrap();
    let time = |record: &dyn Fn(&mut equireg_gpu::Recorder)| {
        let once = || {
            let mut r = g.recorder();
            record(&mut r);
            let t0 = std::time::Instant::now();
            r.submit().unwrap();
            g.sync().unwrap();
            t0.elapsed().as_secs_f64()
        };
        once();
        let mut times: Vec<f64> = (0..5).map(|_| once()).collect();
        times.sort_by(f64::total_cmp);
        times[times.len() / 2]
    };
    let fwd = time(&|r| attention_legacy(r, &qt, &out, heads as u32).unwrap());
    let vjp = time(&|r| attention_legacy_vjp(r, &qt, &dt, &dq, heads as u32).unwrap());
    eprintln!(
        "attention-256tok-h4-d64 on {}: forward {:.1} ms, vjp {:.1} ms, ratio {:.2}",
        g.caps().describe(),
        fwd * 1e3,
        vjp * 1e3,
        vjp / fwd
    );
    // Per dispatch, from timestamps on a device of its own (where the adapter has them).
    let own = own_gpu();
    own.set_profiling(true);
    let qt = own
        .upload(&[n, 3 * c, t], &random(n * 3 * c * t, 610))
        .unwrap();
    let dt = own.upload(&[n, c, t], &random(n * c * t, 611)).unwrap();
    let dq = own.alloc(&[n, 3 * c, t], DType::F32).unwrap();
    for _ in 0..2 {
        let mut r = own.recorder();
        attention_legacy_vjp(&mut r, &qt, &dt, &dq, heads as u32).unwrap();
        if let Some(timings) = r.submit().unwrap() {
            for d in timings {
                eprintln!("  {}: {:.1} ms", d.kernel, d.ms);
            }
        }
    }
}

/// 32 x 32 tokens with head size 64 (ADM's largest attention at 64x64 and 256x256 presets is
/// 1024 tokens): about 25 s on lavapipe, so opt-in (`cargo test ... -- --ignored`).
#[test]
#[ignore]
fn vjp_head_size_64_with_1024_tokens() {
    check_vjp(1, 1, 64, 1024, 1.0, 150, VJP_ATOL, VJP_RTOL);
}
