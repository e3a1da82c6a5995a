//! CPU references of [`crate::ops::measurement`].

/// clamp(scale * x, -1, 1), with the product rounded to f32 as the kernel computes it.
pub fn clip_scale(x: &[f32], scale: f32) -> Vec<f32> {
    x.iter().map(|&v| (scale * v).clamp(-1.0, 1.0)).collect()
}

/// scale * dy where -1 <= scale * x <= 1 (inclusive), else 0.
pub fn clip_scale_vjp(x: &[f32], dy: &[f32], scale: f32) -> Vec<f32> {
    x.iter()
        .zip(dy)
        .map(|(&v, &g)| {
            let s = scale * v;
            if (-1.0..=1.0).contains(&s) {
                scale * g
            } else {
                0.0
            }
        })
        .collect()
}

/// x [N, C, H, W] times a mask of H * W elements (shared by the batch) or N * H * W (one per
/// sample), broadcast over channels.
pub fn mul_mask(x: &[f32], shape: [usize; 4], mask: &[f32]) -> Vec<f32> {
    let [n, c, h, w] = shape;
    let plane = h * w;
    assert_eq!(x.len(), n * c * plane);
    let stride = if mask.len() == plane {
        0
    } else {
        assert_eq!(mask.len(), n * plane, "mask length");
        plane
    };
    x.iter()
        .enumerate()
        .map(|(i, &v)| v * mask[i / (c * plane) * stride + i % plane])
        .collect()
}

/// `mul_mask` with the mask's shape given: `[H, W]`, `[N, 1, H, W]` (shared by the channels),
/// `[C, H, W]` or `[N, C, H, W]` (one mask per channel), as the GPU kernel accepts.
pub fn mul_mask_shaped(
    x: &[f32],
    shape: [usize; 4],
    mask: &[f32],
    mask_shape: &[usize],
) -> Vec<f32> {
    let [n, c, h, w] = shape;
    let plane = h * w;
    let sample = c * plane;
    assert_eq!(x.len(), n * sample);
    assert_eq!(
        mask.len(),
        mask_shape.iter().product::<usize>(),
        "mask length"
    );
    // (mask elements per sample, the mask's period within a sample)
    let (stride, period) = match mask_shape {
        [mh, mw] if [*mh, *mw] == [h, w] => (0, plane),
        [mn, 1, mh, mw] if [*mn, *mh, *mw] == [n, h, w] => (plane, plane),
        [mc, mh, mw] if [*mc, *mh, *mw] == [c, h, w] => (0, sample),
        [mn, mc, mh, mw] if [*mn, *mc, *mh, *mw] == [n, c, h, w] => (sample, sample),
        other => panic!("mask shape {other:?} for x {shape:?}"),
    };
    x.iter()
        .enumerate()
        .map(|(i, &v)| v * mask[i / sample * stride + i % period])
        .collect()
}
