//! Spectral forms of the linear operators: `A = U S V^T`, cheap because every linear operator
//! here but motion blur factors. Inpainting is diagonal (`U = V = I`, `S` the mask). Super-
//! resolution and Gaussian blur act on each channel as `A X = M_h X M_w^T` with one small
//! matrix per axis (the resizer's weights; the 1-D Gaussian with reflect padding), so
//! `A = M_h (x) M_w` and its SVD is the Kronecker product of the two per-axis SVDs: the
//! singular values are the products `s_i t_j`, applied with the axis matmul kernels (rows, then
//! columns; channels and images untouched).
//!
//! What the linear solvers need is one primitive, [`Spectral::record_filtered_pinv`]:
//! `filtered_pinv(r; c) = V diag(s / (s^2 + c)) U^T r = (A^T A + c I)^-1 A^T r` (c > 0), the
//! pseudo-inverse `A^+ r` at c = 0, where singular values below [`ZERO`] (relative to the
//! largest) count as zero, as DDRM's SVD operators do: the Gaussian blur's smallest ones are
//! round-off.

use nalgebra::DMatrix;

use equireg_gpu::ops::axis_matmul::{Axis, axis_matmul};
use equireg_gpu::ops::elementwise::mul;
use equireg_gpu::{DType, Gpu, Recorder, Tensor};

use crate::{Error, Result};

/// Singular values below this fraction of the largest count as zero (DDRM's `ZERO` is 3e-2 on
/// 256-pixel operators; the engine's are well above it but for the Gaussian blur's tail).
pub const ZERO: f64 = 3e-2;

/// The thin SVD of one axis matrix `M = U diag(s) V^T`, `M` of shape `[out, in]`.
#[derive(Clone, Debug)]
pub struct AxisSvd {
    pub out_len: usize,
    pub in_len: usize,
    /// `[out, k]`, `[k]`, `[in, k]` with `k = min(out, in)`, singular values descending.
    pub u: Vec<f64>,
    pub s: Vec<f64>,
    pub v: Vec<f64>,
}

impl AxisSvd {
    /// The SVD of the row-major `[out, in]` matrix `m`.
    pub fn new(m: &[f64], out_len: usize, in_len: usize) -> Result<Self> {
        if m.len() != out_len * in_len || m.is_empty() {
            return Err(Error::invalid(format!(
                "an axis matrix of {out_len}x{in_len} needs {} values, got {}",
                out_len * in_len,
                m.len()
            )));
        }
        let svd = DMatrix::from_row_slice(out_len, in_len, m).svd(true, true);
        let (u, vt) = match (svd.u, svd.v_t) {
            (Some(u), Some(vt)) => (u, vt),
            _ => return Err(Error::invalid("the axis matrix's SVD did not converge")),
        };
        let k = out_len.min(in_len);
        // nalgebra does not sort: order by singular value, descending.
        let mut order: Vec<usize> = (0..k).collect();
        order.sort_by(|&a, &b| svd.singular_values[b].total_cmp(&svd.singular_values[a]));
        let mut uu = vec![0.0; out_len * k];
        let mut vv = vec![0.0; in_len * k];
        let mut s = vec![0.0; k];
        for (col, &j) in order.iter().enumerate() {
            s[col] = svd.singular_values[j];
            for i in 0..out_len {
                uu[i * k + col] = u[(i, j)];
            }
            for i in 0..in_len {
                vv[i * k + col] = vt[(j, i)];
            }
        }
        Ok(Self {
            out_len,
            in_len,
            u: uu,
            s,
            v: vv,
        })
    }

    fn k(&self) -> usize {
        self.s.len()
    }

    /// `U^T` as `[k, out]`, `V` as `[in, k]`, row-major in f32 (the axis matmuls' weights).
    fn u_t(&self) -> Vec<f32> {
        let k = self.k();
        (0..k)
            .flat_map(|c| (0..self.out_len).map(move |i| (c, i)))
            .map(|(c, i)| self.u[i * k + c] as f32)
            .collect()
    }

    fn v_f32(&self) -> Vec<f32> {
        self.v.iter().map(|&x| x as f32).collect()
    }
}

/// How an operator factors.
#[derive(Clone, Debug)]
pub enum SpectralForm {
    /// `A = diag(mask)` on each channel, the mask `[H, W]` of 0 and 1.
    Diagonal { mask: Vec<f32> },
    /// `A X = M_h X M_w^T` on each channel.
    Separable { h: AxisSvd, w: AxisSvd },
}

/// An operator's spectral form for one input shape `[N, C, H, W]`, with its factors on the GPU.
pub struct Spectral {
    form: SpectralForm,
    input: [usize; 4],
    /// Separable: `U_h^T`, `U_w^T` (`[k, out]`) and `V_h`, `V_w` (`[in, k]`), and the scratch
    /// tensors between the passes.
    factors: Option<SeparableGpu>,
}

struct SeparableGpu {
    uh_t: Tensor,
    uw_t: Tensor,
    vh: Tensor,
    vw: Tensor,
    /// `[N, C, kh, out_w]`, `[N, C, kh, kw]` (twice), `[N, C, in_h, kw]`.
    a: Tensor,
    b: Tensor,
    c: Tensor,
    d: Tensor,
}

impl Spectral {
    pub fn new(gpu: &Gpu, input: [usize; 4], form: SpectralForm) -> Result<Self> {
        let [n, ch, h, w] = input;
        let factors = match &form {
            SpectralForm::Diagonal { mask } => {
                if mask.len() != h * w {
                    return Err(Error::invalid(format!(
                        "a diagonal spectral form of {h}x{w} needs {} mask values, got {}",
                        h * w,
                        mask.len()
                    )));
                }
                None
            }
            SpectralForm::Separable { h: sh, w: sw } => {
                if sh.in_len != h || sw.in_len != w {
                    return Err(Error::invalid(format!(
                        "axis matrices of inputs {}x{} do not fit {h}x{w} images",
                        sh.in_len, sw.in_len
                    )));
                }
                let (kh, kw) = (sh.k(), sw.k());
                let alloc = |shape: [usize; 4]| gpu.alloc(&shape, DType::F32);
                Some(SeparableGpu {
                    uh_t: gpu.upload(&[kh, sh.out_len], &sh.u_t())?,
                    uw_t: gpu.upload(&[kw, sw.out_len], &sw.u_t())?,
                    vh: gpu.upload(&[h, kh], &sh.v_f32())?,
                    vw: gpu.upload(&[w, kw], &sw.v_f32())?,
                    a: alloc([n, ch, kh, sw.out_len])?,
                    b: alloc([n, ch, kh, kw])?,
                    c: alloc([n, ch, kh, kw])?,
                    d: alloc([n, ch, h, kw])?,
                })
            }
        };
        Ok(Self {
            form,
            input,
            factors,
        })
    }

    pub fn form(&self) -> &SpectralForm {
        &self.form
    }

    /// The singular values as a grid: `[H, W]` (diagonal: the mask) or `[kh, kw]` (separable:
    /// the products), in f64.
    pub fn singular_grid(&self) -> (Vec<f64>, [usize; 2]) {
        match &self.form {
            SpectralForm::Diagonal { mask } => (
                mask.iter().map(|&m| m as f64).collect(),
                [self.input[2], self.input[3]],
            ),
            SpectralForm::Separable { h, w } => (
                h.s.iter()
                    .flat_map(|a| w.s.iter().map(move |b| a * b))
                    .collect(),
                [h.k(), w.k()],
            ),
        }
    }

    /// The spectral filter `s / (s^2 + c)` per spectral component (0 where s counts as zero),
    /// as the `[N, C, gh, gw]` tensor that [`Spectral::record_filtered_pinv`] multiplies by.
    pub fn filter(&self, gpu: &Gpu, c: f64) -> Result<Tensor> {
        self.filter_scaled(gpu, c, 1.0)
    }

    /// [`Spectral::filter`] times `scale` (a solver's per-step weight folded in).
    pub fn filter_scaled(&self, gpu: &Gpu, c: f64, scale: f64) -> Result<Tensor> {
        if !(c.is_finite() && c >= 0.0 && scale.is_finite()) {
            return Err(Error::invalid(format!(
                "filtered_pinv needs c finite and >= 0 and a finite scale, got c = {c}, scale \
                 {scale}"
            )));
        }
        let f: Vec<f32> = self
            .filter_values(c)
            .iter()
            .map(|&v| (v as f64 * scale) as f32)
            .collect();
        let (_, [gh, gw]) = self.singular_grid();
        let [n, ch, _, _] = self.input;
        let full: Vec<f32> = (0..n * ch).flat_map(|_| f.iter().copied()).collect();
        Ok(gpu.upload(&[n, ch, gh, gw], &full)?)
    }

    fn filter_values(&self, c: f64) -> Vec<f32> {
        let (s, _) = self.singular_grid();
        let top = s.iter().copied().fold(0.0, f64::max);
        s.iter()
            .map(|&v| {
                // The cut only matters for the plain pseudo-inverse; c > 0 bounds the filter.
                if v == 0.0 || (c == 0.0 && v <= ZERO * top) {
                    0.0
                } else {
                    (v / (v * v + c)) as f32
                }
            })
            .collect()
    }

    /// Records `out = filtered_pinv(r; c) = V diag(filter) U^T r` for `r` of the measurement's
    /// shape and `out` of the input's, with `filter` from [`Spectral::filter`] for c.
    pub fn record_filtered_pinv(
        &self,
        rec: &mut Recorder,
        r: &Tensor,
        filter: &Tensor,
        out: &Tensor,
    ) -> Result<()> {
        match &self.factors {
            None => Ok(mul(rec, r, filter, out)?),
            Some(f) => {
                axis_matmul(rec, r, &f.uh_t, &f.a, Axis::H, false)?;
                axis_matmul(rec, &f.a, &f.uw_t, &f.b, Axis::W, false)?;
                mul(rec, &f.b, filter, &f.c)?;
                axis_matmul(rec, &f.c, &f.vh, &f.d, Axis::H, false)?;
                axis_matmul(rec, &f.d, &f.vw, out, Axis::W, false)?;
                Ok(())
            }
        }
    }

    /// CPU twin of [`Spectral::record_filtered_pinv`] (f64).
    pub fn filtered_pinv_cpu(&self, r: &[f32], c: f64) -> Vec<f32> {
        let f = self.filter_values(c);
        let [n, ch, h, w] = self.input;
        match &self.form {
            SpectralForm::Diagonal { .. } => r
                .iter()
                .enumerate()
                .map(|(i, &v)| (v as f64 * f[i % (h * w)] as f64) as f32)
                .collect(),
            SpectralForm::Separable { h: sh, w: sw } => {
                let (oh, ow, kh, kw) = (sh.out_len, sw.out_len, sh.k(), sw.k());
                let mut out = vec![0f32; n * ch * h * w];
                for p in 0..n * ch {
                    let y = &r[p * oh * ow..(p + 1) * oh * ow];
                    // z = U_h^T Y U_w, filtered.
                    let mut z = vec![0f64; kh * kw];
                    for a in 0..kh {
                        for b in 0..kw {
                            let mut acc = 0.0;
                            for i in 0..oh {
                                for j in 0..ow {
                                    acc +=
                                        sh.u[i * kh + a] * y[i * ow + j] as f64 * sw.u[j * kw + b];
                                }
                            }
                            z[a * kw + b] = acc * f[a * kw + b] as f64;
                        }
                    }
                    // x = V_h z V_w^T.
                    for i in 0..h {
                        for j in 0..w {
                            let mut acc = 0.0;
                            for a in 0..kh {
                                for b in 0..kw {
                                    acc += sh.v[i * kh + a] * z[a * kw + b] * sw.v[j * kw + b];
                                }
                            }
                            out[p * h * w + i * w + j] = acc as f32;
                        }
                    }
                }
                out
            }
        }
    }

    /// `U S V^T x` from the factors on the CPU (f64), for checking them against the operator.
    pub fn forward_cpu(&self, x: &[f32]) -> Vec<f32> {
        let [n, ch, h, w] = self.input;
        match &self.form {
            SpectralForm::Diagonal { mask } => x
                .iter()
                .enumerate()
                .map(|(i, &v)| v * mask[i % (h * w)])
                .collect(),
            SpectralForm::Separable { h: sh, w: sw } => {
                let mh = reconstruct(sh);
                let mw = reconstruct(sw);
                let (oh, ow) = (sh.out_len, sw.out_len);
                let mut out = vec![0f32; n * ch * oh * ow];
                for p in 0..n * ch {
                    for i in 0..oh {
                        for j in 0..ow {
                            let mut acc = 0.0;
                            for a in 0..h {
                                for b in 0..w {
                                    acc += mh[i * h + a]
                                        * x[p * h * w + a * w + b] as f64
                                        * mw[j * w + b];
                                }
                            }
                            out[p * oh * ow + i * ow + j] = acc as f32;
                        }
                    }
                }
                out
            }
        }
    }
}

/// `U diag(s) V^T` of one axis, row-major `[out, in]`.
fn reconstruct(a: &AxisSvd) -> Vec<f64> {
    let k = a.k();
    let mut m = vec![0.0; a.out_len * a.in_len];
    for i in 0..a.out_len {
        for j in 0..a.in_len {
            m[i * a.in_len + j] = (0..k)
                .map(|c| a.u[i * k + c] * a.s[c] * a.v[j * k + c])
                .sum();
        }
    }
    m
}

/// The 1-D matrix `[n, n]` of a correlation with `taps` (odd length) over a signal
/// reflect-padded by `taps.len() / 2` (torch's `ReflectionPad`: the edge sample not repeated).
pub fn reflect_correlation_matrix(taps: &[f64], n: usize) -> Vec<f64> {
    let half = (taps.len() / 2) as i64;
    let len = n as i64;
    let reflect = |j: i64| {
        if len == 1 {
            return 0;
        }
        let period = 2 * (len - 1);
        let r = j.rem_euclid(period);
        if r < len { r } else { period - r }
    };
    let mut m = vec![0.0; n * n];
    for i in 0..n {
        for (a, &t) in taps.iter().enumerate() {
            let j = reflect(i as i64 + a as i64 - half) as usize;
            m[i * n + j] += t;
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_svd_reconstructs_its_matrix_with_descending_singulars() {
        let (o, i) = (3, 5);
        let m: Vec<f64> = (0..o * i).map(|k| ((k * 7 % 11) as f64) - 4.5).collect();
        let a = AxisSvd::new(&m, o, i).unwrap();
        let back = reconstruct(&a);
        for (x, y) in m.iter().zip(&back) {
            assert!((x - y).abs() < 1e-12, "{x} vs {y}");
        }
        assert!(a.s.windows(2).all(|w| w[0] >= w[1]));
        assert!(AxisSvd::new(&m, 4, 4).is_err());
    }

    #[test]
    fn reflect_correlation_folds_without_repeating_the_edge() {
        // taps [1, 2, 3] at sample 0: x[-1] = x[1] (reflect), so row 0 = [2, 1 + 3, 0].
        let m = reflect_correlation_matrix(&[1.0, 2.0, 3.0], 3);
        assert_eq!(&m[0..3], &[2.0, 4.0, 0.0]);
        assert_eq!(&m[3..6], &[1.0, 2.0, 3.0]);
        assert_eq!(&m[6..9], &[0.0, 4.0, 2.0]);
    }
}
