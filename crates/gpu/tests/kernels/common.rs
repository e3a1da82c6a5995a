//! Shared test helpers: the one device, seeded random data, tolerance checks.

use std::sync::OnceLock;

use equireg_gpu::{Gpu, GpuOptions, Recorder};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The device of this test binary. No adapter is a failure with the install hint, never a skip.
pub fn gpu() -> &'static Gpu {
    static GPU: OnceLock<Gpu> = OnceLock::new();
    GPU.get_or_init(|| match Gpu::new(&GpuOptions::default()) {
        Ok(g) => {
            eprintln!("kernel tests run on adapter: {}", g.caps().describe());
            g
        }
        Err(e) => panic!("GPU kernel tests need an adapter: {e}"),
    })
}

/// A device of its own, for tests that assert on counters (other tests run in parallel on the
/// shared one and would move its counters).
pub fn own_gpu() -> Gpu {
    Gpu::new(&GpuOptions::default())
        .unwrap_or_else(|e| panic!("GPU kernel tests need an adapter: {e}"))
}

pub fn rec() -> Recorder<'static> {
    gpu().recorder()
}

/// Uniform values in [-1, 1) from a fixed seed.
pub fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut r = StdRng::seed_from_u64(seed);
    (0..n).map(|_| r.random_range(-1.0f32..1.0)).collect()
}

/// Asserts |got - want| <= atol + rtol * |want| elementwise, reporting the worst element.
#[track_caller]
pub fn assert_close(got: &[f32], want: &[f32], atol: f32, rtol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length differs");
    let mut worst = (0usize, 0f32);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            g.is_finite() || !w.is_finite(),
            "{what}: element {i} is {g}, want {w}"
        );
        let excess = (g - w).abs() - (atol + rtol * w.abs());
        if excess > worst.1 {
            worst = (i, excess);
        }
    }
    if worst.1 > 0.0 {
        let i = worst.0;
        panic!(
            "{what}: element {i} is {} but the reference is {} (atol {atol}, rtol {rtol})",
            got[i], want[i]
        );
    }
}

/// Relative L2 error ||got - want|| / ||want||.
pub fn rel_l2(got: &[f32], want: &[f32]) -> f64 {
    let num: f64 = got
        .iter()
        .zip(want)
        .map(|(&g, &w)| ((g - w) as f64).powi(2))
        .sum();
    let den: f64 = want.iter().map(|&w| (w as f64).powi(2)).sum();
    (num / den.max(1e-300)).sqrt()
}
