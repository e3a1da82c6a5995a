//! Fourier phase retrieval, as DPS: zero-pad by `int(oversample / 8 * side)` on each side, then
//! `y = |fftshift(fft2(ifftshift(x_pad), norm="ortho"))|` per channel.
//!
//! The padding, both shifts and the orthonormal scale are linear and separable, so along each
//! axis they fold into one complex matrix `M = C - i S` of shape [padded, side]:
//! `M[k, j] = exp(-2 pi i k' m / P) / sqrt(P)` with `k' = (k - P/2) mod P` (fftshift) and
//! `m = (j + pad - P/2) mod P` (ifftshift of the padded position). The 2-D transform is
//! `Z = M_h X M_w^T`, applied with the axis-matmul kernel as four real passes; y = |Z| by a
//! pointwise kernel. This is a dense DFT (O(side) work per output along each axis), exact for any
//! size; at the sizes DPS uses (96 for 64x64 images, 384 for 256x256) its cost is small next to
//! the UNet. The matrices are computed in f64 on the CPU and uploaded once.
//!
//! With `Yr = X C_w^T`, `Yi = X S_w^T`: `Re Z = C_h Yr - S_h Yi` and `-Im Z = C_h Yi + S_h Yr`
//! (the sign of the imaginary part does not change |Z|, and the VJP uses the same convention).

use equireg_gpu::ops::axis_matmul::{Axis, axis_matmul};
use equireg_gpu::ops::elementwise::{axpby, axpby_inplace};
use equireg_gpu::ops::measurement::{magnitude, magnitude_vjp};
use equireg_gpu::{DType, Gpu, Recorder, Tensor};

use super::Operator;
use crate::{Error, Result};

/// Real and imaginary (negated) parts of the centred, padded orthonormal DFT along one axis:
/// row-major [padded, side] each.
fn centred_dft(side: usize, pad: usize) -> (Vec<f64>, Vec<f64>) {
    let p = side + 2 * pad;
    let scale = 1.0 / (p as f64).sqrt();
    let mut c = vec![0.0; p * side];
    let mut s = vec![0.0; p * side];
    for k in 0..p {
        let kk = (k + p - p / 2) % p;
        for j in 0..side {
            let m = (j + pad + p - p / 2) % p;
            // (kk * m) mod p keeps the angle exact before the f64 trigonometry.
            let theta = 2.0 * std::f64::consts::PI * ((kk * m) % p) as f64 / p as f64;
            c[k * side + j] = theta.cos() * scale;
            s[k * side + j] = theta.sin() * scale;
        }
    }
    (c, s)
}

/// DPS's phase-retrieval operator for images `[N, C, H, W]`.
pub struct PhaseRetrieval {
    input: [usize; 4],
    pad: [usize; 2],
    /// f64 copies for the CPU twin.
    host: [(Vec<f64>, Vec<f64>); 2],
    ch: Tensor,
    sh: Tensor,
    cw: Tensor,
    sw: Tensor,
    /// Scratch: [N, C, H, Pw] twice, [N, C, Ph, Pw] four times.
    yr: Tensor,
    yi: Tensor,
    a: [Tensor; 4],
    zr: Tensor,
    wi: Tensor,
    /// VJP scratch: dYr, dYi [N, C, H, Pw] and one input-shaped term.
    dyr: Tensor,
    dyi: Tensor,
    tmp: Tensor,
}

impl PhaseRetrieval {
    pub fn new(gpu: &Gpu, input: [usize; 4], oversample: f64) -> Result<PhaseRetrieval> {
        let [n, c, h, w] = input;
        if n == 0 || c == 0 || h == 0 || w == 0 {
            return Err(Error::invalid(format!(
                "phase retrieval needs a non-empty [N, C, H, W] input, got {input:?}"
            )));
        }
        if !(oversample.is_finite() && oversample >= 0.0) {
            return Err(Error::invalid(format!(
                "phase retrieval oversample must be >= 0, got {oversample}"
            )));
        }
        // DPS: int(oversample / 8.0 * 256), per side here.
        let pad = [
            (oversample / 8.0 * h as f64) as usize,
            (oversample / 8.0 * w as f64) as usize,
        ];
        let (ph, pw) = (h + 2 * pad[0], w + 2 * pad[1]);
        let hm = centred_dft(h, pad[0]);
        let wm = centred_dft(w, pad[1]);
        let up = |v: &[f64], rows: usize, cols: usize| -> Result<Tensor> {
            let f: Vec<f32> = v.iter().map(|&x| x as f32).collect();
            Ok(gpu.upload(&[rows, cols], &f)?)
        };
        let alloc = |s: &[usize]| gpu.alloc(s, DType::F32);
        let half = [n, c, h, pw];
        let full = [n, c, ph, pw];
        Ok(PhaseRetrieval {
            input,
            pad,
            ch: up(&hm.0, ph, h)?,
            sh: up(&hm.1, ph, h)?,
            cw: up(&wm.0, pw, w)?,
            sw: up(&wm.1, pw, w)?,
            host: [hm, wm],
            yr: alloc(&half)?,
            yi: alloc(&half)?,
            a: [alloc(&full)?, alloc(&full)?, alloc(&full)?, alloc(&full)?],
            zr: alloc(&full)?,
            wi: alloc(&full)?,
            dyr: alloc(&half)?,
            dyi: alloc(&half)?,
            tmp: alloc(&input)?,
        })
    }

    fn padded(&self) -> [usize; 2] {
        [
            self.input[2] + 2 * self.pad[0],
            self.input[3] + 2 * self.pad[1],
        ]
    }

    /// Records Re Z into `zr` and -Im Z into `wi`.
    fn record_spectrum(&self, rec: &mut Recorder, x: &Tensor) -> Result<()> {
        let [a0, a1, a2, a3] = &self.a;
        axis_matmul(rec, x, &self.cw, &self.yr, Axis::W, false)?;
        axis_matmul(rec, x, &self.sw, &self.yi, Axis::W, false)?;
        axis_matmul(rec, &self.yr, &self.ch, a0, Axis::H, false)?;
        axis_matmul(rec, &self.yi, &self.sh, a1, Axis::H, false)?;
        axpby(rec, 1.0, a0, -1.0, a1, &self.zr)?;
        axis_matmul(rec, &self.yi, &self.ch, a2, Axis::H, false)?;
        axis_matmul(rec, &self.yr, &self.sh, a3, Axis::H, false)?;
        axpby(rec, 1.0, a2, 1.0, a3, &self.wi)?;
        Ok(())
    }

    /// The complex spectrum of one [H, W] plane in f64, straight from the definition (pad,
    /// ifftshift, orthonormal DFT, fftshift) rather than from the folded matrices.
    fn spectrum_cpu(&self, plane: &[f32]) -> Vec<(f64, f64)> {
        let [_, _, h, w] = self.input;
        let [ph, pw] = self.padded();
        // u = ifftshift(pad(x)): u[m] = xpad[(m + P/2) mod P] along each axis.
        let mut u = vec![0.0f64; ph * pw];
        for i in 0..h {
            for j in 0..w {
                let mi = (i + self.pad[0] + ph - ph / 2) % ph;
                let mj = (j + self.pad[1] + pw - pw / 2) % pw;
                u[mi * pw + mj] = plane[i * w + j] as f64;
            }
        }
        let scale = 1.0 / ((ph * pw) as f64).sqrt();
        let mut z = vec![(0.0, 0.0); ph * pw];
        for k in 0..ph {
            // fftshift: z[k] = v[(k - P/2) mod P].
            let kk = (k + ph - ph / 2) % ph;
            for l in 0..pw {
                let ll = (l + pw - pw / 2) % pw;
                let (mut re, mut im) = (0.0, 0.0);
                for a in 0..ph {
                    for b in 0..pw {
                        let v = u[a * pw + b];
                        if v == 0.0 {
                            continue;
                        }
                        let t = 2.0
                            * std::f64::consts::PI
                            * (((kk * a) % ph) as f64 / ph as f64
                                + ((ll * b) % pw) as f64 / pw as f64);
                        re += v * t.cos();
                        im -= v * t.sin();
                    }
                }
                z[k * pw + l] = (re * scale, im * scale);
            }
        }
        z
    }
}

impl Operator for PhaseRetrieval {
    fn name(&self) -> &str {
        "phase_retrieval"
    }

    fn input_shape(&self) -> [usize; 4] {
        self.input
    }

    fn output_shape(&self) -> Vec<usize> {
        let [ph, pw] = self.padded();
        vec![self.input[0], self.input[1], ph, pw]
    }

    fn is_linear(&self) -> bool {
        false
    }

    fn record_forward(&self, rec: &mut Recorder, x: &Tensor, out: &Tensor) -> Result<()> {
        self.record_spectrum(rec, x)?;
        magnitude(rec, &self.zr, &self.wi, out)?;
        Ok(())
    }

    fn record_vjp(&self, rec: &mut Recorder, x: &Tensor, dy: &Tensor, dx: &Tensor) -> Result<()> {
        // The spectrum is recomputed: the trait does not promise a forward at this x just before.
        self.record_spectrum(rec, x)?;
        let [g_zr, g_wi, _, _] = &self.a;
        magnitude_vjp(rec, &self.zr, &self.wi, dy, g_zr, g_wi)?;
        // Re Z = C_h Yr - S_h Yi and W = C_h Yi + S_h Yr give
        // dYr = C_h^T gZr + S_h^T gW and dYi = C_h^T gW - S_h^T gZr.
        axis_matmul(rec, g_zr, &self.ch, &self.yr, Axis::H, true)?;
        axis_matmul(rec, g_wi, &self.sh, &self.yi, Axis::H, true)?;
        axpby(rec, 1.0, &self.yr, 1.0, &self.yi, &self.dyr)?;
        axis_matmul(rec, g_wi, &self.ch, &self.yr, Axis::H, true)?;
        axis_matmul(rec, g_zr, &self.sh, &self.yi, Axis::H, true)?;
        axpby(rec, 1.0, &self.yr, -1.0, &self.yi, &self.dyi)?;
        // Yr = X C_w^T and Yi = X S_w^T give dX = dYr C_w + dYi S_w.
        axis_matmul(rec, &self.dyr, &self.cw, dx, Axis::W, true)?;
        axis_matmul(rec, &self.dyi, &self.sw, &self.tmp, Axis::W, true)?;
        axpby_inplace(rec, 1.0, &self.tmp, 1.0, dx)?;
        Ok(())
    }

    fn forward_cpu(&self, x: &[f32]) -> Vec<f32> {
        let [n, c, h, w] = self.input;
        let mut out = Vec::new();
        for k in 0..n * c {
            let z = self.spectrum_cpu(&x[k * h * w..(k + 1) * h * w]);
            out.extend(z.iter().map(|(re, im)| (re * re + im * im).sqrt() as f32));
        }
        out
    }

    fn vjp_cpu(&self, x: &[f32], dy: &[f32]) -> Vec<f32> {
        // dx[j, l] = sum_{k, m} Re(conj(g[k, m]) * M_h[k, j] M_w[m, l]) with g = dy z / |z|, where
        // M = C - i S are the folded matrices (computed independently of spectrum_cpu).
        let [n, c, h, w] = self.input;
        let [ph, pw] = self.padded();
        let (ch, sh) = &self.host[0];
        let (cw, sw) = &self.host[1];
        let mut dx = Vec::with_capacity(x.len());
        for k in 0..n * c {
            let z = self.spectrum_cpu(&x[k * h * w..(k + 1) * h * w]);
            let g: Vec<(f64, f64)> = z
                .iter()
                .zip(&dy[k * ph * pw..(k + 1) * ph * pw])
                .map(|(&(re, im), &d)| {
                    let r = (re * re + im * im).sqrt();
                    if r > 0.0 {
                        (d as f64 * re / r, d as f64 * im / r)
                    } else {
                        (0.0, 0.0)
                    }
                })
                .collect();
            for j in 0..h {
                for l in 0..w {
                    let mut acc = 0.0;
                    for a in 0..ph {
                        let (mhr, mhi) = (ch[a * h + j], -sh[a * h + j]);
                        for b in 0..pw {
                            let (mwr, mwi) = (cw[b * w + l], -sw[b * w + l]);
                            let (pr, pi) = (mhr * mwr - mhi * mwi, mhr * mwi + mhi * mwr);
                            let (gr, gi) = g[a * pw + b];
                            acc += gr * pr + gi * pi;
                        }
                    }
                    dx.push(acc as f32);
                }
            }
        }
        dx
    }

    fn measurement_picture(&self, y: &[f32]) -> Option<(Vec<f32>, [usize; 4])> {
        // log(1 + |Z|) scaled per image into [-1, 1]: the magnitudes span orders of magnitude.
        let shape = self.output_shape();
        let per = y.len() / shape[0];
        let mut out = Vec::with_capacity(y.len());
        for img in y.chunks(per) {
            let logs: Vec<f32> = img.iter().map(|v| v.max(0.0).ln_1p()).collect();
            let hi = logs.iter().copied().fold(0.0f32, f32::max).max(1e-12);
            out.extend(logs.iter().map(|v| 2.0 * v / hi - 1.0));
        }
        Some((out, [shape[0], shape[1], shape[2], shape[3]]))
    }
}
