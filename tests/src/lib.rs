//! Cross-crate tests live in tests/tests/; this library holds what several of them share.

use equireg_nn::UNetConfig;

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
