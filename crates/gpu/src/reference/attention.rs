//! CPU reference of QKVAttentionLegacy: the full T x T weight matrix, softmax in f64.

/// qkv is [N, 3*C, T] flattened (per head: q, k, v blocks of ch = C / heads channels);
/// returns out [N, C, T].
pub fn attention_legacy(qkv: &[f32], n: usize, c: usize, t: usize, heads: usize) -> Vec<f32> {
    assert_eq!(qkv.len(), n * 3 * c * t);
    assert_eq!(c % heads, 0);
    let ch = c / heads;
    // Scaling q and k separately, as guided-diffusion does (more stable in f16 there).
    let scale = 1.0 / (ch as f64).sqrt().sqrt();
    let mut out = vec![0f32; n * c * t];
    let mut w = vec![0f64; t];
    for b in 0..n {
        for h in 0..heads {
            let base = (b * 3 * c + h * 3 * ch) * t;
            let q = |cc: usize, i: usize| qkv[base + cc * t + i] as f64;
            let k = |cc: usize, i: usize| qkv[base + (ch + cc) * t + i] as f64;
            let v = |cc: usize, i: usize| qkv[base + (2 * ch + cc) * t + i] as f64;
            for ti in 0..t {
                for (s, ws) in w.iter_mut().enumerate() {
                    *ws = (0..ch)
                        .map(|cc| (q(cc, ti) * scale) * (k(cc, s) * scale))
                        .sum();
                }
                let max = w.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                w.iter_mut().for_each(|x| *x = (*x - max).exp());
                let sum: f64 = w.iter().sum();
                for cc in 0..ch {
                    let o: f64 = w.iter().enumerate().map(|(s, &p)| p * v(cc, s)).sum();
                    out[(b * c + h * ch + cc) * t + ti] = (o / sum) as f32;
                }
            }
        }
    }
    out
}
