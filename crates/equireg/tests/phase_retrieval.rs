//! Phase retrieval on the GPU against its CPU twin (the padded, shifted orthonormal DFT straight
//! from the definition), finite differences and the dot-product test of its VJP.

use equireg::operators::Operator;
use equireg::operators::phase_retrieval::PhaseRetrieval;
use equireg_gpu::{DType, Gpu, GpuOptions};

fn gpu() -> Gpu {
    Gpu::new(&GpuOptions::default())
        .unwrap_or_else(|e| panic!("this test needs a GPU adapter: {e}"))
}

/// Deterministic values in [-1, 1).
fn values(n: usize, seed: u64) -> Vec<f32> {
    equireg_gpu::reference::rng::uniform(n, seed, 0, 0)
        .iter()
        .map(|u| 2.0 * u - 1.0)
        .collect()
}

fn rel(a: &[f32], b: &[f32]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den).sqrt()
}

#[test]
fn forward_and_vjp_match_the_cpu_twin() {
    let g = gpu();
    for (shape, os) in [
        ([2usize, 3, 16, 16], 2.0),
        ([1, 3, 12, 20], 2.0),
        ([1, 1, 9, 7], 1.0),
    ] {
        let op = PhaseRetrieval::new(&g, shape, os).unwrap();
        let out = op.output_shape();
        let n: usize = shape.iter().product();
        let m: usize = out.iter().product();
        let x = values(n, 1);
        let dy = values(m, 2);
        let (xt, dyt) = (g.upload(&shape, &x).unwrap(), g.upload(&out, &dy).unwrap());
        let (yt, dxt) = (
            g.alloc(&out, DType::F32).unwrap(),
            g.alloc(&shape, DType::F32).unwrap(),
        );
        let mut rec = g.recorder();
        op.record_forward(&mut rec, &xt, &yt).unwrap();
        op.record_vjp(&mut rec, &xt, &dyt, &dxt).unwrap();
        rec.submit().unwrap();
        let (y, dx) = (g.download(&yt).unwrap(), g.download(&dxt).unwrap());
        let (ey, edx) = (rel(&y, &op.forward_cpu(&x)), rel(&dx, &op.vjp_cpu(&x, &dy)));
        eprintln!("{shape:?} -> {out:?}: forward {ey:.2e}, vjp {edx:.2e}");
        assert!(ey < 1e-5, "{shape:?}: forward {ey:.3e}");
        assert!(edx < 1e-4, "{shape:?}: vjp {edx:.3e}");
        // Parseval: the padded orthonormal transform keeps the energy.
        let ex: f64 = x.iter().map(|v| (*v as f64).powi(2)).sum();
        let ey2: f64 = y.iter().map(|v| (*v as f64).powi(2)).sum();
        assert!((ex - ey2).abs() < 1e-4 * ex, "Parseval {ex} vs {ey2}");
    }
}

#[test]
fn vjp_matches_finite_differences_and_the_dot_product_test() {
    let g = gpu();
    let shape = [1usize, 2, 8, 10];
    let op = PhaseRetrieval::new(&g, shape, 2.0).unwrap();
    let n: usize = shape.iter().product();
    let m: usize = op.output_shape().iter().product();
    let (x, u, v) = (values(n, 3), values(n, 4), values(m, 5));
    // <J u, v> by central differences of the f64 CPU forward, against <u, J^T v>.
    let h = 1e-3f32;
    let f = |s: f32| -> f64 {
        let xs: Vec<f32> = x.iter().zip(&u).map(|(a, b)| a + s * b).collect();
        op.forward_cpu(&xs)
            .iter()
            .zip(&v)
            .map(|(a, b)| (*a as f64) * (*b as f64))
            .sum()
    };
    let jvp_dot_v = (f(h) - f(-h)) / (2.0 * h as f64);
    let vjp = op.vjp_cpu(&x, &v);
    let u_dot_vjp: f64 = u
        .iter()
        .zip(&vjp)
        .map(|(a, b)| (*a as f64) * (*b as f64))
        .sum();
    assert!(
        (jvp_dot_v - u_dot_vjp).abs() < 2e-3 * jvp_dot_v.abs().max(1.0),
        "<Ju, v> = {jvp_dot_v} vs <u, J^T v> = {u_dot_vjp}"
    );
}

#[test]
fn sizes_follow_the_reference_padding_and_bad_input_is_an_error() {
    let g = gpu();
    // DPS at 256: pad int(2 / 8 * 256) = 64 per side.
    let op = PhaseRetrieval::new(&g, [1, 3, 64, 48], 2.0).unwrap();
    assert_eq!(op.output_shape(), vec![1, 3, 96, 72]);
    assert!(PhaseRetrieval::new(&g, [1, 3, 0, 8], 2.0).is_err());
    assert!(PhaseRetrieval::new(&g, [1, 3, 8, 8], -1.0).is_err());
}
