//! Phase retrieval: GPU forward and VJP against the CPU twins, the VJP against finite
//! differences of the f64 forward, the dot-product test, bad shapes, the picture.

use std::sync::OnceLock;

use equireg::operators::Operator;
use equireg::operators::phase_retrieval::PhaseRetrieval;
use equireg_gpu::{DType, Gpu, GpuOptions};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn gpu() -> &'static Gpu {
    static GPU: OnceLock<Gpu> = OnceLock::new();
    GPU.get_or_init(|| {
        Gpu::new(&GpuOptions::default())
            .unwrap_or_else(|e| panic!("phase retrieval tests need an adapter: {e}"))
    })
}

fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut r = StdRng::seed_from_u64(seed);
    (0..n).map(|_| r.random_range(-1.0f32..1.0)).collect()
}

fn rel_l2(got: &[f32], want: &[f32]) -> f64 {
    let num: f64 = got
        .iter()
        .zip(want)
        .map(|(&g, &w)| ((g - w) as f64).powi(2))
        .sum();
    let den: f64 = want.iter().map(|&w| (w as f64).powi(2)).sum();
    (num / den.max(1e-300)).sqrt()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&a| a as f64).collect()
}

fn gpu_forward(op: &PhaseRetrieval, x: &[f32]) -> Vec<f32> {
    let g = gpu();
    let xt = g.upload(&op.input_shape(), x).unwrap();
    let out = g.alloc(&op.output_shape(), DType::F32).unwrap();
    let mut r = g.recorder();
    op.record_forward(&mut r, &xt, &out).unwrap();
    r.submit().unwrap();
    g.download(&out).unwrap()
}

fn gpu_vjp(op: &PhaseRetrieval, x: &[f32], dy: &[f32]) -> Vec<f32> {
    let g = gpu();
    let xt = g.upload(&op.input_shape(), x).unwrap();
    let dyt = g.upload(&op.output_shape(), dy).unwrap();
    let dx = g.alloc(&op.input_shape(), DType::F32).unwrap();
    let mut r = g.recorder();
    op.record_vjp(&mut r, &xt, &dyt, &dx).unwrap();
    r.submit().unwrap();
    g.download(&dx).unwrap()
}

fn numel(s: &[usize]) -> usize {
    s.iter().product()
}

/// Square, non-square, and odd sizes (where fftshift and ifftshift differ).
const CASES: [([usize; 4], f64); 3] = [
    ([2, 3, 32, 32], 1.0),
    ([1, 3, 24, 40], 2.0),
    ([2, 1, 7, 9], 1.0),
];

#[test]
fn output_shape_follows_the_dps_pad() {
    let op = PhaseRetrieval::new(gpu(), [1, 3, 24, 40], 2.0).unwrap();
    assert_eq!(op.pad(), [6, 10]);
    assert_eq!(op.output_shape(), vec![1, 3, 36, 60]);
    // int(1.0 / 8 * 7) = 0 and int(1.0 / 8 * 9) = 1.
    let op = PhaseRetrieval::new(gpu(), [2, 1, 7, 9], 1.0).unwrap();
    assert_eq!(op.output_shape(), vec![2, 1, 7, 11]);
    assert!(!op.is_linear());
    assert_eq!(op.name(), "phase_retrieval");
}

#[test]
fn forward_matches_cpu() {
    for (i, (shape, over)) in CASES.into_iter().enumerate() {
        let op = PhaseRetrieval::new(gpu(), shape, over).unwrap();
        let x = random(numel(&shape), 10 + i as u64);
        let got = gpu_forward(&op, &x);
        let want = op.forward_cpu(&x);
        let err = rel_l2(&got, &want);
        assert!(err < 1e-5, "{shape:?}: relative L2 {err:e}");
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (k, (a, b)) in got.iter().zip(&want).enumerate() {
            assert!(
                (a - b).abs() <= 1e-5 * scale,
                "{shape:?} element {k}: {a} vs {b}"
            );
        }
    }
}

#[test]
fn forward_cpu_is_the_definition() {
    // A delta has a flat spectrum magnitude: |y| = 1 / sqrt(H' W') everywhere.
    let shape = [1, 1, 7, 9];
    let op = PhaseRetrieval::new(gpu(), shape, 1.0).unwrap();
    let mut x = vec![0.0f32; 63];
    x[3 * 9 + 5] = 1.0;
    let y = op.forward_cpu(&x);
    let flat = 1.0 / ((7 * 11) as f32).sqrt();
    assert!(y.iter().all(|v| (v - flat).abs() < 1e-6), "{y:?}");
    // A constant image puts all its energy at the centre of the shifted spectrum
    // ((H' / 2, W' / 2) after fftshift), with value sum(x) / sqrt(H' W').
    let shape = [1, 1, 8, 8];
    let op = PhaseRetrieval::new(gpu(), shape, 2.0).unwrap(); // pad 2 -> 12x12
    let y = gpu_forward(&op, &vec![0.5; 64]);
    let peak = y
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .unwrap();
    assert_eq!(peak.0, 6 * 12 + 6);
    assert!((peak.1 - 32.0 / 12.0).abs() < 1e-5, "{}", peak.1);
}

#[test]
fn vjp_matches_cpu() {
    for (i, (shape, over)) in CASES.into_iter().enumerate() {
        let op = PhaseRetrieval::new(gpu(), shape, over).unwrap();
        let x = random(numel(&shape), 20 + i as u64);
        let dy = random(numel(&op.output_shape()), 30 + i as u64);
        let got = gpu_vjp(&op, &x, &dy);
        let want = op.vjp_cpu(&x, &dy);
        let err = rel_l2(&got, &want);
        assert!(err < 1e-4, "{shape:?}: relative L2 {err:e}");
    }
}

/// The smallest |z| of the spectrum: finite differences need |z| well away from 0.
fn min_modulus(op: &PhaseRetrieval, x: &[f64]) -> f64 {
    op.spectrum_f64(x)
        .chunks(2)
        .map(|c| c[0].hypot(c[1]))
        .fold(f64::INFINITY, f64::min)
}

#[test]
fn vjp_matches_finite_differences() {
    for (i, (shape, over)) in [([1, 2, 12, 10], 2.0), ([1, 1, 7, 9], 1.0)]
        .into_iter()
        .enumerate()
    {
        let op = PhaseRetrieval::new(gpu(), shape, over).unwrap();
        let x = random(numel(&shape), 40 + i as u64);
        let xd = f64s(&x);
        assert!(min_modulus(&op, &xd) > 1e-3, "pick a seed away from zeros");
        let v = f64s(&random(numel(&shape), 50 + i as u64));
        let u = random(numel(&op.output_shape()), 60 + i as u64);
        let ud = f64s(&u);
        // d/de <u, A(x + e v)> at e = 0, central differences in f64.
        let eps = 1e-5;
        let at = |e: f64| {
            let xe: Vec<f64> = xd.iter().zip(&v).map(|(a, b)| a + e * b).collect();
            dot(&ud, &op.forward_f64(&xe))
        };
        let fd = (at(eps) - at(-eps)) / (2.0 * eps);
        let cpu = dot(&op.vjp_f64(&xd, &ud), &v);
        let gpu = dot(&f64s(&gpu_vjp(&op, &x, &u)), &v);
        assert!(
            (cpu - fd).abs() < 1e-6 * fd.abs().max(1.0),
            "{shape:?}: f64 VJP {cpu} vs finite differences {fd}"
        );
        assert!(
            (gpu - fd).abs() < 1e-4 * fd.abs().max(1.0),
            "{shape:?}: GPU VJP {gpu} vs finite differences {fd}"
        );
    }
}

#[test]
fn dot_product_test_with_finite_difference_jvp() {
    let shape = [2, 1, 10, 6];
    let op = PhaseRetrieval::new(gpu(), shape, 2.0).unwrap();
    let x = random(numel(&shape), 70);
    let xd = f64s(&x);
    assert!(min_modulus(&op, &xd) > 1e-3, "pick a seed away from zeros");
    for k in 0..3 {
        let v = f64s(&random(numel(&shape), 80 + k));
        let u = random(numel(&op.output_shape()), 90 + k);
        // J v by central differences of the f64 forward, element by element.
        let eps = 1e-5;
        let shifted = |e: f64| {
            let xe: Vec<f64> = xd.iter().zip(&v).map(|(a, b)| a + e * b).collect();
            op.forward_f64(&xe)
        };
        let (p, m) = (shifted(eps), shifted(-eps));
        let jv: Vec<f64> = p
            .iter()
            .zip(&m)
            .map(|(a, b)| (a - b) / (2.0 * eps))
            .collect();
        let lhs = dot(&jv, &f64s(&u));
        let rhs = dot(&v, &f64s(&gpu_vjp(&op, &x, &u)));
        assert!(
            (lhs - rhs).abs() < 1e-4 * lhs.abs().max(1.0),
            "<J v, u> = {lhs} but <v, J^T u> = {rhs}"
        );
    }
}

#[test]
fn bad_shapes_and_arguments_are_errors() {
    let g = gpu();
    assert!(PhaseRetrieval::new(g, [1, 3, 0, 8], 1.0).is_err());
    assert!(PhaseRetrieval::new(g, [1, 3, 8, 8], -1.0).is_err());
    assert!(PhaseRetrieval::new(g, [1, 3, 8, 8], f64::NAN).is_err());
    let op = PhaseRetrieval::new(g, [1, 3, 8, 8], 2.0).unwrap();
    let x = g.alloc(&[1, 3, 8, 8], DType::F32).unwrap();
    let bad_x = g.alloc(&[1, 3, 8, 9], DType::F32).unwrap();
    let out = g.alloc(&op.output_shape(), DType::F32).unwrap();
    let bad_out = g.alloc(&[1, 3, 8, 8], DType::F32).unwrap();
    let dx = g.alloc(&[1, 3, 8, 8], DType::F32).unwrap();
    let mut r = g.recorder();
    let e = op.record_forward(&mut r, &bad_x, &out).unwrap_err();
    assert!(e.to_string().contains("[1, 3, 8, 9]"), "{e}");
    assert!(op.record_forward(&mut r, &x, &bad_out).is_err());
    assert!(op.record_vjp(&mut r, &x, &bad_out, &dx).is_err());
    assert!(op.record_vjp(&mut r, &x, &out, &bad_x).is_err());
    assert!(r.is_empty());
    assert!(op.measurement_picture(&[0.0; 5]).is_none());
}

#[test]
fn repeated_recording_allocates_nothing() {
    let g = Gpu::new(&GpuOptions::default()).unwrap();
    let op = PhaseRetrieval::new(&g, [1, 2, 12, 10], 2.0).unwrap();
    let x = g.upload(&[1, 2, 12, 10], &random(240, 100)).unwrap();
    let out = g.alloc(&op.output_shape(), DType::F32).unwrap();
    let dx = g.alloc(&[1, 2, 12, 10], DType::F32).unwrap();
    let step = |g: &Gpu| {
        let mut r = g.recorder();
        op.record_forward(&mut r, &x, &out).unwrap();
        op.record_vjp(&mut r, &x, &out, &dx).unwrap();
        r.submit().unwrap();
    };
    step(&g);
    let before = g.counters();
    step(&g);
    let after = g.counters();
    assert_eq!(after.buffers_allocated, before.buffers_allocated);
    assert_eq!(after.uploads, before.uploads);
    assert_eq!(after.bind_groups_created, before.bind_groups_created);
    assert_eq!(after.pipelines_created, before.pipelines_created);
    assert!(after.dispatches > before.dispatches);
}

#[test]
fn picture_is_log_magnitude_in_range() {
    let shape = [2, 3, 8, 8];
    let op = PhaseRetrieval::new(gpu(), shape, 1.0).unwrap();
    let x = random(numel(&shape), 110);
    let y = op.forward_cpu(&x);
    let (pic, pshape) = op.measurement_picture(&y).unwrap();
    assert_eq!(pshape.to_vec(), op.output_shape());
    for (img, yi) in pic.chunks(3 * 10 * 10).zip(y.chunks(3 * 10 * 10)) {
        let lo = img.iter().copied().fold(f32::INFINITY, f32::min);
        let hi = img.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        assert!(
            (lo + 1.0).abs() < 1e-6 && (hi - 1.0).abs() < 1e-6,
            "{lo} {hi}"
        );
        // Monotone in y: the brightest pixel is the largest magnitude.
        let arg = |v: &[f32]| {
            v.iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .unwrap()
                .0
        };
        assert_eq!(arg(img), arg(yi));
    }
}
