//! CPU reference of channel concatenation; a is [n, ca, inner], b is [n, cb, inner] flattened.

pub fn concat_channels(
    a: &[f32],
    b: &[f32],
    n: usize,
    ca: usize,
    cb: usize,
    inner: usize,
) -> Vec<f32> {
    let mut out = Vec::with_capacity(n * (ca + cb) * inner);
    for s in 0..n {
        out.extend_from_slice(&a[s * ca * inner..(s + 1) * ca * inner]);
        out.extend_from_slice(&b[s * cb * inner..(s + 1) * cb * inner]);
    }
    out
}
