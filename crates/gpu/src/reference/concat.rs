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

/// x[:, start..start + c] of x [n, ctot, inner] flattened.
pub fn split_channels(
    x: &[f32],
    n: usize,
    ctot: usize,
    inner: usize,
    start: usize,
    c: usize,
) -> Vec<f32> {
    assert!(start + c <= ctot);
    let mut out = Vec::with_capacity(n * c * inner);
    for s in 0..n {
        let from = (s * ctot + start) * inner;
        out.extend_from_slice(&x[from..from + c * inner]);
    }
    out
}
