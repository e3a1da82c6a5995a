//! The linear operators' spectral forms against the operators themselves: `U S V^T` reproduces
//! each operator's forward, the pseudo-inverse satisfies the four Penrose conditions, the
//! filtered pseudo-inverse solves `(A^T A + c I) x = A^T r`, and the GPU's filtered
//! pseudo-inverse matches its CPU twin. Odd sizes, batch 2.

use equireg::operators::Operator;
use equireg::operators::blur::Blur;
use equireg::operators::inpaint::Inpaint;
use equireg::operators::phase_retrieval::PhaseRetrieval;
use equireg::operators::resize::{ResizeKind, SuperResolution};
use equireg_gpu::{Gpu, GpuOptions};
use equireg_nn::synthetic;
use equireg_tests::rel_l2;

fn gpu() -> Gpu {
    Gpu::new(&GpuOptions::default())
        .unwrap_or_else(|e| panic!("this test needs a GPU adapter: {e}"))
}

fn random(seed: u64, len: usize) -> Vec<f32> {
    synthetic::tensor(seed, "spectral", &[len])
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
}

/// The operators with a spectral form, each well conditioned enough that no singular value
/// is dropped (so the Penrose conditions hold for A itself).
fn factored(g: &Gpu) -> Vec<Box<dyn Operator>> {
    vec![
        Box::new(SuperResolution::new(g, [2, 3, 12, 9], 3, ResizeKind::Bicubic).unwrap()),
        Box::new(SuperResolution::new(g, [2, 3, 8, 10], 2, ResizeKind::Box).unwrap()),
        Box::new(Blur::gaussian(g, [2, 3, 9, 11], 5, 0.6).unwrap()),
        Box::new(Inpaint::boxed(g, [2, 3, 9, 11], [3, 4], [1, 1], 5).unwrap()),
        Box::new(Inpaint::random(g, [2, 3, 7, 9], [0.3, 0.5], 6).unwrap()),
    ]
}

#[test]
fn the_factors_reproduce_each_operator() {
    let g = gpu();
    for op in factored(&g) {
        let sp = op.spectral().expect("a spectral form");
        let n: usize = op.input_shape().iter().product();
        let x = random(1, n);
        let e = rel_l2(&sp.forward_cpu(&x), &op.forward_cpu(&x));
        assert!(e < 1e-6, "{}: U S V^T differs from A by {e:.2e}", op.name());
    }
    // The DPS Gaussian blur at 32x32 factors too; its smallest singular values are dropped.
    let big = Blur::gaussian(&g, [1, 3, 32, 32], 61, 3.0).unwrap();
    let x = random(2, 3 * 32 * 32);
    let sp = big.spectral().unwrap();
    assert!(rel_l2(&sp.forward_cpu(&x), &big.forward_cpu(&x)) < 1e-6);
}

#[test]
fn the_pseudo_inverse_satisfies_the_penrose_conditions() {
    let g = gpu();
    for op in factored(&g) {
        let sp = op.spectral().unwrap();
        let name = op.name().to_string();
        let n: usize = op.input_shape().iter().product();
        let m: usize = op.output_shape().iter().product();
        let a = |x: &[f32]| op.forward_cpu(x);
        let p = |y: &[f32]| sp.filtered_pinv_cpu(y, 0.0);
        let (x1, x2) = (random(3, n), random(4, n));
        let (y1, y2) = (random(5, m), random(6, m));
        // A P A = A and P A P = P.
        let e1 = rel_l2(&a(&p(&a(&x1))), &a(&x1));
        let e2 = rel_l2(&p(&a(&p(&y1))), &p(&y1));
        assert!(e1 < 1e-5 && e2 < 1e-5, "{name}: APA {e1:.2e}, PAP {e2:.2e}");
        // A P and P A are symmetric.
        let (s1, s2) = (dot(&a(&p(&y1)), &y2), dot(&y1, &a(&p(&y2))));
        let (t1, t2) = (dot(&p(&a(&x1)), &x2), dot(&x1, &p(&a(&x2))));
        assert!(
            (s1 - s2).abs() < 1e-4 * s1.abs().max(1.0),
            "{name}: AP not symmetric ({s1} vs {s2})"
        );
        assert!(
            (t1 - t2).abs() < 1e-4 * t1.abs().max(1.0),
            "{name}: PA not symmetric ({t1} vs {t2})"
        );
    }
}

#[test]
fn the_filtered_pseudo_inverse_solves_the_regularised_normal_equations() {
    let g = gpu();
    let c = 0.3;
    for op in factored(&g) {
        let sp = op.spectral().unwrap();
        let n: usize = op.input_shape().iter().product();
        let m: usize = op.output_shape().iter().product();
        let r = random(7, m);
        let x = sp.filtered_pinv_cpu(&r, c);
        let zeros = vec![0.0; n];
        let lhs: Vec<f32> = op
            .vjp_cpu(&zeros, &op.forward_cpu(&x))
            .iter()
            .zip(&x)
            .map(|(&ata, &xi)| (ata as f64 + c * xi as f64) as f32)
            .collect();
        let e = rel_l2(&lhs, &op.vjp_cpu(&zeros, &r));
        assert!(e < 1e-5, "{}: (A^T A + cI) x - A^T r: {e:.2e}", op.name());
    }
}

#[test]
fn the_gpu_filtered_pseudo_inverse_matches_its_cpu_twin() {
    let g = gpu();
    for op in factored(&g) {
        let sp = op.spectral().unwrap();
        let m: usize = op.output_shape().iter().product();
        let r = random(8, m);
        let rt = g.upload(&op.output_shape(), &r).unwrap();
        let out = g.alloc(&op.input_shape(), equireg_gpu::DType::F32).unwrap();
        for c in [0.0, 0.3] {
            let filter = sp.filter(&g, c).unwrap();
            let mut rec = g.recorder();
            sp.record_filtered_pinv(&mut rec, &rt, &filter, &out)
                .unwrap();
            rec.submit().unwrap();
            let e = rel_l2(&g.download(&out).unwrap(), &sp.filtered_pinv_cpu(&r, c));
            assert!(e < 1e-5, "{} at c = {c}: {e:.2e}", op.name());
        }
        assert!(sp.filter(&g, -1.0).is_err());
    }
}

#[test]
fn operators_without_a_cheap_factorisation_have_no_spectral_form() {
    let g = gpu();
    let motion = Blur::motion(&g, [1, 3, 16, 16], 7, 0.5, 3).unwrap();
    assert!(motion.spectral().is_none());
    let pr = PhaseRetrieval::new(&g, [1, 3, 16, 16], 2.0).unwrap();
    assert!(pr.spectral().is_none());
    // An inpainting mask that scales instead of dropping has none either.
    let scaled = Inpaint::from_mask(&g, [1, 3, 2, 2], vec![1.0, 0.5, 0.0, 1.0]).unwrap();
    assert!(scaled.spectral().is_none());
}
