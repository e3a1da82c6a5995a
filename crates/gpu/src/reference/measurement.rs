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
