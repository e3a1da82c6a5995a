//! CPU references of matmul and linear: naive triple loops, f64 accumulation.

/// A 2-D or 3-D operand as stored: (batch, rows, cols), row-major.
pub type Dims = (usize, usize, usize);

/// `out[b] = op(a[b]) op(b[b])`; op transposes the stored (rows, cols) when asked. An operand with
/// batch 1 is shared by every batch. Returns [batch, m, n] row-major.
pub fn matmul(a: &[f32], ad: Dims, b: &[f32], bd: Dims, trans_a: bool, trans_b: bool) -> Vec<f32> {
    let (ba, ar, ac) = ad;
    let (bb, br, bc) = bd;
    let (m, k) = if trans_a { (ac, ar) } else { (ar, ac) };
    let (kb, n) = if trans_b { (bc, br) } else { (br, bc) };
    assert_eq!(k, kb, "inner sizes differ");
    let batch = ba.max(bb);
    let mut out = vec![0f32; batch * m * n];
    for t in 0..batch {
        let a_t = &a[if ba == 1 { 0 } else { t * ar * ac }..];
        let b_t = &b[if bb == 1 { 0 } else { t * br * bc }..];
        for i in 0..m {
            for j in 0..n {
                let mut s = 0f64;
                for l in 0..k {
                    let av = if trans_a {
                        a_t[l * ac + i]
                    } else {
                        a_t[i * ac + l]
                    };
                    let bv = if trans_b {
                        b_t[j * bc + l]
                    } else {
                        b_t[l * bc + j]
                    };
                    s += av as f64 * bv as f64;
                }
                out[(t * m + i) * n + j] = s as f32;
            }
        }
    }
    out
}

/// x [n, fin] times w [fout, fin] transposed, plus bias `[fout]`. Returns [n, fout].
pub fn linear(
    x: &[f32],
    n: usize,
    fin: usize,
    w: &[f32],
    fout: usize,
    bias: Option<&[f32]>,
) -> Vec<f32> {
    let mut out = vec![0f32; n * fout];
    for r in 0..n {
        for o in 0..fout {
            let mut s = bias.map_or(0.0, |b| b[o] as f64);
            for i in 0..fin {
                s += x[r * fin + i] as f64 * w[o * fin + i] as f64;
            }
            out[r * fout + o] = s as f32;
        }
    }
    out
}
