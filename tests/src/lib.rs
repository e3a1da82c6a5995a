//! Cross-crate tests live in tests/tests/; this library holds what several of them share.

use equireg_nn::{UNetConfig, synthetic};

/// tiny32 with a third level and no attention but the middle block's, so that at 64x64 the
/// attention sees 16x16 tokens (tiny32's own middle block at 64x64 would attend over 32x32
/// tokens, which lavapipe takes seconds for): loop tests care about residency and
/// repeatability, not the architecture.
pub fn loop_test_config() -> UNetConfig {
    let mut cfg = UNetConfig::preset("tiny32").expect("tiny32 is a preset");
    cfg.channel_mult = vec![1, 2, 2];
    cfg.attention_resolutions = vec![];
    cfg
}

/// A deterministic "clean image" in [-1, 1] (synthetic values halved and clamped) for the
/// restoration loop tests.
pub fn clean_image(shape: &[usize]) -> Vec<f32> {
    synthetic::tensor(3, "clean", shape)
        .iter()
        .map(|v| (0.5 * v).clamp(-1.0, 1.0))
        .collect()
}

/// ||got - want|| / ||want||, in f64.
pub fn rel_l2(got: &[f32], want: &[f32]) -> f64 {
    let num: f64 = got
        .iter()
        .zip(want)
        .map(|(&g, &w)| ((g - w) as f64).powi(2))
        .sum();
    let den: f64 = want.iter().map(|&w| (w as f64).powi(2)).sum();
    (num / den).sqrt()
}
