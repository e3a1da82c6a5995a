use equireg_gpu::DType;
use equireg_gpu::ops::group_norm::{GroupNormParams, group_norm, group_norm_vjp};
use equireg_gpu::reference::group_norm as cpu;

use crate::common::{assert_close, gpu, random, rec, rel_l2};

struct Case {
    shape: Vec<usize>,
    groups: u32,
    silu: bool,
    scale_shift: bool,
    /// Added to every input: a large common offset tests the statistics for cancellation.
    offset: f32,
    atol: f32,
    rtol: f32,
}

/// Seeded inputs of a case: x (offset by `offset`), gamma near 1, beta, and scale_shift [N, 2C].
fn inputs(shape: &[usize], offset: f32, seed: u64) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
    let (n, c) = (shape[0], shape[1]);
    let x = random(shape.iter().product(), seed)
        .iter()
        .map(|v| v * 2.0 + offset)
        .collect();
    let gamma = random(c, seed + 1).iter().map(|v| 1.0 + 0.5 * v).collect();
    let beta = random(c, seed + 2);
    let ss = random(n * 2 * c, seed + 3)
        .iter()
        .map(|v| v * 0.8)
        .collect();
    (x, gamma, beta, ss)
}

/// The workgroup widths every case runs with: the adapter's choice, the GPUs' 256 and a narrow
/// one, so that each width's reduction tree is checked on whatever adapter runs the tests.
const WIDTHS: [Option<u32>; 3] = [None, Some(256), Some(4)];

fn run_case(case: &Case, seed: u64) {
    for width in WIDTHS {
        run_case_with(case, seed, width);
    }
}

fn run_case_with(case: &Case, seed: u64, width: Option<u32>) {
    let g = gpu();
    let shape = &case.shape;
    let (n, c) = (shape[0], shape[1]);
    let plane: usize = shape[2..].iter().product();
    let (x, gamma, beta, ss) = inputs(shape, case.offset, seed);
    let xt = g.upload(shape, &x).unwrap();
    let gt = g.upload(&[c], &gamma).unwrap();
    let bt = g.upload(&[c], &beta).unwrap();
    let st = g.upload(&[n, 2 * c], &ss).unwrap();
    let out = g.alloc(shape, DType::F32).unwrap();
    let p = GroupNormParams {
        groups: case.groups,
        silu: case.silu,
        width,
        ..Default::default()
    };
    let mut r = rec();
    group_norm(
        &mut r,
        &xt,
        &gt,
        &bt,
        case.scale_shift.then_some(&st),
        &out,
        p,
    )
    .unwrap();
    r.submit().unwrap();
    let want = cpu::group_norm(
        &x,
        n,
        c,
        plane,
        &gamma,
        &beta,
        case.scale_shift.then_some(&ss[..]),
        case.groups as usize,
        p.eps,
        case.silu,
    );
    let what = format!(
        "group_norm {shape:?} groups {} silu {} scale_shift {} offset {} width {width:?}",
        case.groups, case.silu, case.scale_shift, case.offset
    );
    assert_close(
        &g.download(&out).unwrap(),
        &want,
        case.atol,
        case.rtol,
        &what,
    );
}

fn case(shape: &[usize], groups: u32, silu: bool, scale_shift: bool) -> Case {
    Case {
        shape: shape.to_vec(),
        groups,
        silu,
        scale_shift,
        offset: 0.0,
        atol: 1e-5,
        rtol: 1e-4,
    }
}

#[test]
fn matches_reference_plain_silu_and_scale_shift() {
    let mut seed = 10;
    for shape in [[2, 64, 13, 10], [2, 6, 13, 10], [2, 96, 7, 9]] {
        let groups = if shape[1] == 6 { 3 } else { 32 };
        for (silu, ss) in [(false, false), (true, false), (false, true), (true, true)] {
            run_case(&case(&shape, groups, silu, ss), seed);
            seed += 10;
        }
    }
}

#[test]
fn vec4_planes_match_reference() {
    // Planes of a multiple of 4 elements run the vec4 entry points (the UNet's feature maps).
    let mut seed = 50;
    for shape in [[2, 64, 8, 8], [2, 6, 4, 5], [3, 12, 4, 1]] {
        let groups = if shape[1] == 64 {
            32
        } else {
            shape[1] as u32 / 2
        };
        for (silu, ss) in [(false, false), (true, false), (false, true), (true, true)] {
            run_case(&case(&shape, groups, silu, ss), seed);
            seed += 10;
        }
    }
    run_case(&case(&[2, 64, 36], 32, true, false), 190);
}

#[test]
fn matches_reference_on_token_layout_and_tiny_groups() {
    // [N, C, T] as before attention; one channel per group; a 1x1 plane.
    run_case(&case(&[2, 64, 37], 32, false, false), 200);
    run_case(&case(&[3, 12, 5, 3], 12, true, true), 210);
    run_case(&case(&[2, 8, 1, 1], 2, true, false), 220);
}

#[test]
fn large_groups_with_offset_are_accurate() {
    // 4 channels x 128 x 128 = 65536 elements per group, all shifted by 100 (mean 100, std 1.15):
    // a one-pass sum of squares in f32 would lose most digits of the variance here.
    let c = Case {
        shape: vec![1, 8, 128, 128],
        groups: 2,
        silu: true,
        scale_shift: true,
        offset: 100.0,
        atol: 1e-4,
        rtol: 1e-4,
    };
    run_case(&c, 300);
    run_case(&case(&[2, 32, 67, 45], 8, true, false), 310);
}

#[test]
fn repeated_runs_are_bitwise_identical() {
    let g = gpu();
    let shape = [2, 64, 33, 31];
    let x = random(shape.iter().product(), 400);
    let xt = g.upload(&shape, &x).unwrap();
    let gt = g.upload(&[64], &random(64, 401)).unwrap();
    let bt = g.upload(&[64], &random(64, 402)).unwrap();
    let st = g.upload(&[2, 128], &random(256, 403)).unwrap();
    let outs: Vec<_> = (0..2)
        .map(|_| g.alloc(&shape, DType::F32).unwrap())
        .collect();
    let p = GroupNormParams {
        silu: true,
        ..Default::default()
    };
    for o in &outs {
        let mut r = rec();
        group_norm(&mut r, &xt, &gt, &bt, Some(&st), o, p).unwrap();
        r.submit().unwrap();
    }
    let a: Vec<u32> = g
        .download(&outs[0])
        .unwrap()
        .iter()
        .map(|v| v.to_bits())
        .collect();
    let b: Vec<u32> = g
        .download(&outs[1])
        .unwrap()
        .iter()
        .map(|v| v.to_bits())
        .collect();
    assert!(a == b, "two runs on the same input differ");
}

#[test]
fn bad_shapes_are_errors() {
    let g = gpu();
    let x = g.alloc(&[2, 6, 4, 4], DType::F32).unwrap();
    let out = g.alloc(&[2, 6, 4, 4], DType::F32).unwrap();
    let c6 = g.alloc(&[6], DType::F32).unwrap();
    let c5 = g.alloc(&[5], DType::F32).unwrap();
    let ss_bad = g.alloc(&[2, 6], DType::F32).unwrap();
    let p = |groups| GroupNormParams {
        groups,
        ..Default::default()
    };
    let mut r = rec();
    let e = group_norm(&mut r, &x, &c6, &c6, None, &out, p(4)).unwrap_err();
    assert!(e.to_string().contains("divisible"), "{e}");
    let e = group_norm(&mut r, &x, &c6, &c6, None, &out, p(0)).unwrap_err();
    assert!(e.to_string().contains("divisible"), "{e}");
    let e = group_norm(&mut r, &x, &c5, &c6, None, &out, p(3)).unwrap_err();
    assert!(e.to_string().contains("gamma"), "{e}");
    let e = group_norm(&mut r, &x, &c6, &c6, Some(&ss_bad), &out, p(3)).unwrap_err();
    assert!(e.to_string().contains("scale_shift"), "{e}");
    let e = group_norm(&mut r, &x, &c6, &c6, None, &x, p(3)).unwrap_err();
    assert!(e.to_string().contains("must not share memory"), "{e}");
    let small = g.alloc(&[2, 6, 4, 3], DType::F32).unwrap();
    let e = group_norm(&mut r, &x, &c6, &c6, None, &small, p(3)).unwrap_err();
    assert!(e.to_string().contains("out"), "{e}");
    let dy = g.alloc(&[2, 6, 4, 4], DType::F32).unwrap();
    for width in [3, 512, 0] {
        let q = GroupNormParams {
            width: Some(width),
            ..p(3)
        };
        let e = group_norm(&mut r, &x, &c6, &c6, None, &out, q).unwrap_err();
        assert!(e.to_string().contains("workgroup width"), "{e}");
        let e = group_norm_vjp(&mut r, &x, &c6, &c6, None, &dy, &out, q).unwrap_err();
        assert!(e.to_string().contains("workgroup width"), "{e}");
    }
    assert!(r.is_empty());
}

/// Median wall time of one dispatch (submit + sync, after warm-up). Opt-in: `-- --ignored
/// --nocapture`.
#[test]
#[ignore]
fn bench_groupnorm_c128_64x64() {
    let g = gpu();
    let shape = [1, 128, 64, 64];
    let numel: usize = shape.iter().product();
    let xt = g.upload(&shape, &random(numel, 500)).unwrap();
    let gt = g.upload(&[128], &random(128, 501)).unwrap();
    let bt = g.upload(&[128], &random(128, 502)).unwrap();
    let out = g.alloc(&shape, DType::F32).unwrap();
    let p = GroupNormParams {
        silu: true,
        ..Default::default()
    };
    let once = || {
        let mut r = g.recorder();
        group_norm(&mut r, &xt, &gt, &bt, None, &out, p).unwrap();
        let t0 = std::time::Instant::now();
        r.submit().unwrap();
        g.sync().unwrap();
        t0.elapsed().as_secs_f64()
    };
    for _ in 0..3 {
        once();
    }
    let mut times: Vec<f64> = (0..21).map(|_| once()).collect();
    times.sort_by(f64::total_cmp);
    let med = times[times.len() / 2];
    let bytes = 2.0 * numel as f64 * 4.0;
    eprintln!(
        "groupnorm-c128-64x64 on {}: median {:.3} ms, {:.2} GB/s (read + write)",
        g.caps().describe(),
        med * 1e3,
        bytes / med * 1e-9
    );
}

// ---- VJP ----

struct VjpCase {
    shape: Vec<usize>,
    groups: u32,
    silu: bool,
    scale_shift: bool,
    offset: f32,
    /// Elementwise tolerance of the GPU dx against the f64 reference VJP.
    atol: f32,
    rtol: f32,
}

fn vjp_case(shape: &[usize], groups: u32, silu: bool, scale_shift: bool) -> VjpCase {
    VjpCase {
        shape: shape.to_vec(),
        groups,
        silu,
        scale_shift,
        offset: 0.0,
        atol: 2e-5,
        rtol: 1e-4,
    }
}

fn dot64(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn widen(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// Checks the GPU VJP (a) elementwise against the CPU reference VJP and (b) in one random
/// direction u against a central finite difference of L(x) = <dy, f(x)> with the f64 CPU
/// forward: <dx, u> must equal (L(x + eps u) - L(x - eps u)) / (2 eps), eps = 1e-3, within 1e-3
/// relative for the GPU dx, and within 1e-6 of sum |dx_i u_i| for the reference dx (which
/// checks the reference itself). With f the forward, <dy, J u> = <J^T dy, u> is also the dot-product test.
fn run_vjp_case(case: &VjpCase, seed: u64) {
    for width in WIDTHS {
        run_vjp_case_with(case, seed, width);
    }
}

fn run_vjp_case_with(case: &VjpCase, seed: u64, width: Option<u32>) {
    let g = gpu();
    let shape = &case.shape;
    let (n, c) = (shape[0], shape[1]);
    let plane: usize = shape[2..].iter().product();
    let numel = n * c * plane;
    let (x, gamma, beta, ss) = inputs(shape, case.offset, seed);
    let dy = random(numel, seed + 4);
    let u = random(numel, seed + 5);
    let ss_opt = case.scale_shift.then_some(&ss[..]);
    let p = GroupNormParams {
        groups: case.groups,
        silu: case.silu,
        width,
        ..Default::default()
    };
    let xt = g.upload(shape, &x).unwrap();
    let gt = g.upload(&[c], &gamma).unwrap();
    let bt = g.upload(&[c], &beta).unwrap();
    let st = g.upload(&[n, 2 * c], &ss).unwrap();
    let dyt = g.upload(shape, &dy).unwrap();
    let dxt = g.alloc(shape, DType::F32).unwrap();
    let mut r = rec();
    group_norm_vjp(
        &mut r,
        &xt,
        &gt,
        &bt,
        case.scale_shift.then_some(&st),
        &dyt,
        &dxt,
        p,
    )
    .unwrap();
    r.submit().unwrap();
    let got = g.download(&dxt).unwrap();
    let what = format!(
        "group_norm_vjp {shape:?} groups {} silu {} scale_shift {} offset {} width {width:?}",
        case.groups, case.silu, case.scale_shift, case.offset
    );
    let want = cpu::group_norm_vjp(
        &x,
        &dy,
        n,
        c,
        plane,
        &gamma,
        &beta,
        ss_opt,
        case.groups as usize,
        p.eps,
        case.silu,
    );
    assert_close(&got, &want, case.atol, case.rtol, &what);
    let e = rel_l2(&got, &want);
    assert!(e < 1e-5, "{what}: relative L2 error {e}");

    let (x64, u64_, dy64) = (widen(&x), widen(&u), widen(&dy));
    let (g64, b64, ss64) = (widen(&gamma), widen(&beta), widen(&ss));
    let loss = |sign: f64, eps: f64| {
        let xs: Vec<f64> = x64
            .iter()
            .zip(&u64_)
            .map(|(a, d)| a + sign * eps * d)
            .collect();
        let f = cpu::group_norm_f64(
            &xs,
            n,
            c,
            plane,
            &g64,
            &b64,
            case.scale_shift.then_some(&ss64[..]),
            case.groups as usize,
            p.eps as f64,
            case.silu,
        );
        dot64(&dy64, &f)
    };
    let eps = 1e-3;
    let fd = (loss(1.0, eps) - loss(-1.0, eps)) / (2.0 * eps);
    let gpu_dir = dot64(&widen(&got), &u64_);
    let ref_dir = dot64(&widen(&want), &u64_);
    // The f32 rounding of the reference's dx alone moves <dx, u> by ~1e-7 of sum |dx_i u_i|.
    let abs_dir: f64 = want.iter().zip(&u).map(|(a, b)| (a * b).abs() as f64).sum();
    eprintln!(
        "{what}: finite difference {fd:.9}, GPU rel err {:.2e}, reference rel err {:.2e}",
        (gpu_dir - fd).abs() / fd.abs(),
        (ref_dir - fd).abs() / fd.abs()
    );
    assert!(
        (gpu_dir - fd).abs() <= 1e-3 * fd.abs(),
        "{what}: <dx, u> = {gpu_dir}, finite difference {fd}"
    );
    assert!(
        (ref_dir - fd).abs() <= 1e-6 * abs_dir,
        "{what}: reference <dx, u> = {ref_dir}, finite difference {fd}"
    );
}

#[test]
fn vjp_matches_reference_and_finite_differences() {
    let mut seed = 1000;
    for shape in [[2, 64, 13, 10], [2, 6, 13, 10]] {
        let groups = if shape[1] == 6 { 3 } else { 32 };
        for (silu, ss) in [(false, false), (true, false), (false, true), (true, true)] {
            run_vjp_case(&vjp_case(&shape, groups, silu, ss), seed);
            seed += 10;
        }
    }
}

#[test]
fn vjp_on_vec4_planes() {
    let mut seed = 1050;
    for shape in [[2, 64, 8, 8], [2, 6, 4, 5], [3, 12, 4, 1]] {
        let groups = if shape[1] == 64 {
            32
        } else {
            shape[1] as u32 / 2
        };
        for (silu, ss) in [(false, false), (true, false), (false, true), (true, true)] {
            run_vjp_case(&vjp_case(&shape, groups, silu, ss), seed);
            seed += 10;
        }
    }
    run_vjp_case(&vjp_case(&[2, 64, 36], 32, true, true), 1095);
}

#[test]
fn vjp_on_token_layout_tiny_and_large_groups() {
    run_vjp_case(&vjp_case(&[2, 64, 37], 32, true, false), 1100);
    run_vjp_case(&vjp_case(&[3, 12, 5, 3], 12, true, true), 1110);
    run_vjp_case(&vjp_case(&[2, 8, 1, 1], 2, true, true), 1120);
    run_vjp_case(&vjp_case(&[2, 32, 67, 45], 8, true, true), 1130);
    // 65536 elements per group around 100: x - mean in f32 carries ulp(100) ~ 8e-6 of error,
    // which reaches dx through xhat; hence atol 1e-4 here.
    let big = VjpCase {
        offset: 100.0,
        atol: 1e-4,
        ..vjp_case(&[1, 8, 128, 128], 2, true, true)
    };
    run_vjp_case(&big, 1140);
}

#[test]
fn vjp_repeated_runs_are_bitwise_identical() {
    let g = gpu();
    let shape = [2, 64, 33, 31];
    let numel = shape.iter().product();
    let xt = g.upload(&shape, &random(numel, 1200)).unwrap();
    let dyt = g.upload(&shape, &random(numel, 1201)).unwrap();
    let gt = g.upload(&[64], &random(64, 1202)).unwrap();
    let bt = g.upload(&[64], &random(64, 1203)).unwrap();
    let st = g.upload(&[2, 128], &random(256, 1204)).unwrap();
    let p = GroupNormParams {
        silu: true,
        ..Default::default()
    };
    let runs: Vec<Vec<u32>> = (0..2)
        .map(|_| {
            let dx = g.alloc(&shape, DType::F32).unwrap();
            let mut r = rec();
            group_norm_vjp(&mut r, &xt, &gt, &bt, Some(&st), &dyt, &dx, p).unwrap();
            r.submit().unwrap();
            g.download(&dx)
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
    let x = g.alloc(&[2, 6, 4, 4], DType::F32).unwrap();
    let dy = g.alloc(&[2, 6, 4, 4], DType::F32).unwrap();
    let dx = g.alloc(&[2, 6, 4, 4], DType::F32).unwrap();
    let c6 = g.alloc(&[6], DType::F32).unwrap();
    let ss_bad = g.alloc(&[2, 6], DType::F32).unwrap();
    let small = g.alloc(&[2, 6, 4, 3], DType::F32).unwrap();
    let p = |groups| GroupNormParams {
        groups,
        ..Default::default()
    };
    let mut r = rec();
    let e = group_norm_vjp(&mut r, &x, &c6, &c6, None, &dy, &dx, p(4)).unwrap_err();
    assert!(e.to_string().contains("divisible"), "{e}");
    let e = group_norm_vjp(&mut r, &x, &c6, &c6, None, &small, &dx, p(3)).unwrap_err();
    assert!(e.to_string().contains("dy"), "{e}");
    let e = group_norm_vjp(&mut r, &x, &c6, &c6, None, &dy, &small, p(3)).unwrap_err();
    assert!(e.to_string().contains("dx"), "{e}");
    let e = group_norm_vjp(&mut r, &x, &c6, &c6, Some(&ss_bad), &dy, &dx, p(3)).unwrap_err();
    assert!(e.to_string().contains("scale_shift"), "{e}");
    let e = group_norm_vjp(&mut r, &x, &c6, &c6, None, &dy, &dy, p(3)).unwrap_err();
    assert!(e.to_string().contains("must not share memory"), "{e}");
    let e = group_norm_vjp(&mut r, &x, &c6, &c6, None, &dy, &x, p(3)).unwrap_err();
    assert!(e.to_string().contains("must not share memory"), "{e}");
    assert!(r.is_empty());
}

/// Median wall time (submit + sync, after warm-up) of `record`'s dispatches.
fn median_time(record: &dyn Fn(&mut equireg_gpu::Recorder), runs: usize) -> f64 {
    let g = gpu();
    let once = || {
        let mut r = g.recorder();
        record(&mut r);
        let t0 = std::time::Instant::now();
        r.submit().unwrap();
        g.sync().unwrap();
        t0.elapsed().as_secs_f64()
    };
    for _ in 0..3 {
        once();
    }
    let mut times: Vec<f64> = (0..runs).map(|_| once()).collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// VJP time / forward time for c128 64x64 with SiLU and scale-shift. Opt-in: `-- --ignored
/// --nocapture`.
#[test]
#[ignore]
fn bench_vjp_vs_forward_c128_64x64() {
    let g = gpu();
    let shape = [1, 128, 64, 64];
    let numel: usize = shape.iter().product();
    let xt = g.upload(&shape, &random(numel, 510)).unwrap();
    let dyt = g.upload(&shape, &random(numel, 511)).unwrap();
    let gt = g.upload(&[128], &random(128, 512)).unwrap();
    let bt = g.upload(&[128], &random(128, 513)).unwrap();
    let st = g.upload(&[1, 256], &random(256, 514)).unwrap();
    let out = g.alloc(&shape, DType::F32).unwrap();
    let p = GroupNormParams {
        silu: true,
        ..Default::default()
    };
    let fwd = median_time(
        &|r| group_norm(r, &xt, &gt, &bt, Some(&st), &out, p).unwrap(),
        21,
    );
    let vjp = median_time(
        &|r| group_norm_vjp(r, &xt, &gt, &bt, Some(&st), &dyt, &out, p).unwrap(),
        21,
    );
    eprintln!(
        "groupnorm-c128-64x64 silu+ss on {}: forward {:.3} ms, vjp {:.3} ms, ratio {:.2}",
        g.caps().describe(),
        fwd * 1e3,
        vjp * 1e3,
        vjp / fwd
    );
}
