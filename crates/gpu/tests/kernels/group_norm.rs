use equireg_gpu::DType;
use equireg_gpu::ops::group_norm::{GroupNormParams, group_norm};
use equireg_gpu::reference::group_norm as cpu;

use crate::common::{assert_close, gpu, random, rec};

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

fn run_case(case: &Case, seed: u64) {
    let g = gpu();
    let shape = &case.shape;
    let (n, c) = (shape[0], shape[1]);
    let plane: usize = shape[2..].iter().product();
    let numel = n * c * plane;
    let x: Vec<f32> = random(numel, seed)
        .iter()
        .map(|v| v * 2.0 + case.offset)
        .collect();
    let gamma: Vec<f32> = random(c, seed + 1).iter().map(|v| 1.0 + 0.5 * v).collect();
    let beta = random(c, seed + 2);
    let ss: Vec<f32> = random(n * 2 * c, seed + 3)
        .iter()
        .map(|v| v * 0.8)
        .collect();
    let xt = g.upload(shape, &x).unwrap();
    let gt = g.upload(&[c], &gamma).unwrap();
    let bt = g.upload(&[c], &beta).unwrap();
    let st = g.upload(&[n, 2 * c], &ss).unwrap();
    let out = g.alloc(shape, DType::F32).unwrap();
    let p = GroupNormParams {
        groups: case.groups,
        silu: case.silu,
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
        "group_norm {shape:?} groups {} silu {} scale_shift {} offset {}",
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
