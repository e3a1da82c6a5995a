//! CPU reference of QKVAttentionLegacy and of its VJP: the full T x T weight matrix, in f64.

/// qkv is [N, 3*C, T] flattened (per head: q, k, v blocks of ch = C / heads channels);
/// returns out [N, C, T].
pub fn attention_legacy(qkv: &[f32], n: usize, c: usize, t: usize, heads: usize) -> Vec<f32> {
    let wide: Vec<f64> = qkv.iter().map(|&v| v as f64).collect();
    attention_legacy_f64(&wide, n, c, t, heads)
        .into_iter()
        .map(|v| v as f32)
        .collect()
}

/// Softmax weights of one head: p[ti * t + s] = softmax_s(q~_ti . k~_s), with q~ and k~ the q and
/// k of the head at `base` times ch^(-1/4).
fn weights(qkv: &[f64], base: usize, ch: usize, t: usize) -> Vec<f64> {
    // Scaling q and k separately, as guided-diffusion does (more stable in f16 there).
    let scale = 1.0 / (ch as f64).sqrt().sqrt();
    let q = |cc: usize, i: usize| qkv[base + cc * t + i] * scale;
    let k = |cc: usize, i: usize| qkv[base + (ch + cc) * t + i] * scale;
    let mut p = vec![0f64; t * t];
    for ti in 0..t {
        let row = &mut p[ti * t..(ti + 1) * t];
        for (s, w) in row.iter_mut().enumerate() {
            *w = (0..ch).map(|cc| q(cc, ti) * k(cc, s)).sum();
        }
        let max = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        row.iter_mut().for_each(|x| *x = (*x - max).exp());
        let sum: f64 = row.iter().sum();
        row.iter_mut().for_each(|x| *x /= sum);
    }
    p
}

/// [`attention_legacy`] entirely in f64 (for finite-difference checks of the VJP).
pub fn attention_legacy_f64(qkv: &[f64], n: usize, c: usize, t: usize, heads: usize) -> Vec<f64> {
    assert_eq!(qkv.len(), n * 3 * c * t);
    assert_eq!(c % heads, 0);
    let ch = c / heads;
    let mut out = vec![0f64; n * c * t];
    for b in 0..n {
        for h in 0..heads {
            let base = (b * 3 * c + h * 3 * ch) * t;
            let p = weights(qkv, base, ch, t);
            for cc in 0..ch {
                let v = &qkv[base + (2 * ch + cc) * t..base + (2 * ch + cc + 1) * t];
                for ti in 0..t {
                    let o: f64 = (0..t).map(|s| p[ti * t + s] * v[s]).sum();
                    out[(b * c + h * ch + cc) * t + ti] = o;
                }
            }
        }
    }
    out
}

/// dqkv = (d attention_legacy / d qkv)^T dout, in f64: qkv is [N, 3*C, T], dout is [N, C, T],
/// returns dqkv [N, 3*C, T] in qkv's layout.
pub fn attention_legacy_vjp(
    qkv: &[f32],
    dout: &[f32],
    n: usize,
    c: usize,
    t: usize,
    heads: usize,
) -> Vec<f32> {
    assert_eq!(qkv.len(), n * 3 * c * t);
    assert_eq!(dout.len(), n * c * t);
    assert_eq!(c % heads, 0);
    let ch = c / heads;
    let scale = 1.0 / (ch as f64).sqrt().sqrt();
    let qkv: Vec<f64> = qkv.iter().map(|&v| v as f64).collect();
    let mut dqkv = vec![0f32; qkv.len()];
    for b in 0..n {
        for h in 0..heads {
            let base = (b * 3 * c + h * 3 * ch) * t;
            let obase = (b * c + h * ch) * t;
            let q = |cc: usize, i: usize| qkv[base + cc * t + i] * scale;
            let k = |cc: usize, i: usize| qkv[base + (ch + cc) * t + i] * scale;
            let v = |cc: usize, i: usize| qkv[base + (2 * ch + cc) * t + i];
            let g = |cc: usize, i: usize| dout[obase + cc * t + i] as f64;
            let p = weights(&qkv, base, ch, t);
            // dW[t, s] = P[t, s] * (dP[t, s] - sum_s' P[t, s'] dP[t, s']), dP[t, s] = dO_t . v_s.
            let mut dw = vec![0f64; t * t];
            for ti in 0..t {
                let dp: Vec<f64> = (0..t)
                    .map(|s| (0..ch).map(|cc| g(cc, ti) * v(cc, s)).sum())
                    .collect();
                let delta: f64 = (0..t).map(|s| p[ti * t + s] * dp[s]).sum();
                for s in 0..t {
                    dw[ti * t + s] = p[ti * t + s] * (dp[s] - delta);
                }
            }
            for cc in 0..ch {
                for i in 0..t {
                    // w = q~ . k~ with q~ = q * scale: dq = scale * sum_s dW k~, likewise dk.
                    let dq: f64 = (0..t).map(|s| dw[i * t + s] * k(cc, s)).sum::<f64>() * scale;
                    let dk: f64 = (0..t).map(|ti| dw[ti * t + i] * q(cc, ti)).sum::<f64>() * scale;
                    let dv: f64 = (0..t).map(|ti| p[ti * t + i] * g(cc, ti)).sum();
                    dqkv[base + cc * t + i] = dq as f32;
                    dqkv[base + (ch + cc) * t + i] = dk as f32;
                    dqkv[base + (2 * ch + cc) * t + i] = dv as f32;
                }
            }
        }
    }
    dqkv
}
