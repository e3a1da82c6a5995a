//! Fourier phase retrieval as in DPS: zero-pad each channel by `int(oversample / 8 * n)` on each
//! side, then `y = |fftshift(fft2(ifftshift(x_pad), norm="ortho"))|` over the last two axes.
//!
//! On the GPU: one fused kernel pads, ifftshifts and widens to complex; the 2-D FFT
//! ([`Fft2Plan`]); one fused kernel fftshifts and takes the magnitude. The VJP recomputes the
//! spectrum `z`, multiplies the fftshift-adjoint of `dy` by the phase `z / |z|` (one kernel),
//! runs the inverse orthonormal FFT (the adjoint of the forward one) and keeps the real part of
//! the ifftshift-adjoint crop (one kernel): the adjoint of a real-to-complex linear map is the
//! real part of its complex adjoint.

use equireg_gpu::ops::fft::{self as gfft, Fft2Plan, ShiftedEmbedding};
use equireg_gpu::reference::fft as cfft;
use equireg_gpu::{DType, Gpu, Recorder, Tensor};

use super::Operator;
use crate::{Error, Result};

pub struct PhaseRetrieval {
    input: [usize; 4],
    pad: [usize; 2],
    /// Pad + ifftshift of one channel into the big image.
    embed: ShiftedEmbedding,
    /// fftshift of the big image.
    shift: ShiftedEmbedding,
    plan: Fft2Plan,
    /// Spectrum and FFT scratch, `[N * C, H', W', 2]` each.
    z: Tensor,
    g: Tensor,
}

impl PhaseRetrieval {
    /// `input` is `[N, C, H, W]`; `oversample` sets the pad, `int(oversample / 8 * H)` rows on
    /// top and bottom and `int(oversample / 8 * W)` columns on each side (DPS uses 2.0).
    pub fn new(gpu: &Gpu, input: [usize; 4], oversample: f64) -> Result<PhaseRetrieval> {
        if input.contains(&0) {
            return Err(Error::invalid(format!(
                "phase_retrieval: input shape {input:?} has a zero dimension"
            )));
        }
        if !oversample.is_finite() || oversample < 0.0 {
            return Err(Error::invalid(format!(
                "phase_retrieval: oversample must be finite and >= 0, got {oversample}"
            )));
        }
        let [n, c, h, w] = input;
        // Python's int() of a non-negative float: truncation.
        let pad_of = |len: usize| (oversample / 8.0 * len as f64) as usize;
        let pad = [pad_of(h), pad_of(w)];
        let embed = ShiftedEmbedding::padded_ifftshift(h, w, pad[0], pad[1]);
        let (big_h, big_w) = (embed.big_h, embed.big_w);
        let plan = Fft2Plan::new(gpu, big_h, big_w)?;
        let spectrum = [n * c, big_h, big_w, 2];
        Ok(PhaseRetrieval {
            input,
            pad,
            embed,
            shift: ShiftedEmbedding::fftshift(big_h, big_w),
            plan,
            z: gpu.alloc(&spectrum, DType::F32)?,
            g: gpu.alloc(&spectrum, DType::F32)?,
        })
    }

    /// Zeros added on each side: `[pad_h, pad_w]`.
    pub fn pad(&self) -> [usize; 2] {
        self.pad
    }

    fn channels(&self) -> usize {
        self.input[0] * self.input[1]
    }

    fn check(&self, what: &str, t: &Tensor, want: &[usize]) -> Result<()> {
        if t.shape() != want {
            return Err(Error::invalid(format!(
                "phase_retrieval: {what} has shape {:?}, expected {want:?}",
                t.shape()
            )));
        }
        Ok(())
    }

    /// Records the spectrum of `x` into `self.z` (`self.g` is the FFT scratch).
    fn record_spectrum(&self, rec: &mut Recorder, x: &Tensor) -> Result<()> {
        let [_, _, h, w] = self.input;
        let flat = x.reshape(&[self.channels(), h, w])?;
        gfft::embed_real_shifted(rec, &self.embed, &flat, &self.z)?;
        self.plan.forward(rec, &self.z, &self.g)?;
        Ok(())
    }

    /// The forward map in f64 on the host.
    pub fn forward_f64(&self, x: &[f64]) -> Vec<f64> {
        let b = self.channels();
        assert_eq!(
            x.len(),
            b * self.input[2] * self.input[3],
            "phase_retrieval: host input length does not match {:?}",
            self.input
        );
        let z = self.spectrum_f64(x);
        cfft::shifted_magnitude(&self.shift, &z, b)
    }

    /// The VJP in f64 on the host.
    pub fn vjp_f64(&self, x: &[f64], dy: &[f64]) -> Vec<f64> {
        let b = self.channels();
        assert_eq!(
            dy.len(),
            self.output_shape().iter().product::<usize>(),
            "phase_retrieval: host dy length does not match {:?}",
            self.output_shape()
        );
        let z = self.spectrum_f64(x);
        let gz = cfft::shifted_phase_vjp(&self.shift, &z, dy, b);
        let gx = cfft::dft2_f64(&gz, b, self.embed.big_h, self.embed.big_w, true);
        cfft::crop_real_shifted(&self.embed, &gx, b)
    }

    /// The unshifted spectrum `fft2(ifftshift(x_pad))`, `[N * C, H', W', 2]`, in f64.
    pub fn spectrum_f64(&self, x: &[f64]) -> Vec<f64> {
        let b = self.channels();
        let e = cfft::embed_real_shifted(&self.embed, x, b);
        cfft::dft2_f64(&e, b, self.embed.big_h, self.embed.big_w, false)
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
        vec![
            self.input[0],
            self.input[1],
            self.embed.big_h,
            self.embed.big_w,
        ]
    }

    fn is_linear(&self) -> bool {
        false
    }

    fn record_forward(&self, rec: &mut Recorder, x: &Tensor, out: &Tensor) -> Result<()> {
        self.check("x", x, &self.input)?;
        self.check("out", out, &self.output_shape())?;
        self.record_spectrum(rec, x)?;
        let y = out.reshape(&[self.channels(), self.embed.big_h, self.embed.big_w])?;
        gfft::shifted_magnitude(rec, &self.shift, &self.z, &y)?;
        Ok(())
    }

    fn record_vjp(&self, rec: &mut Recorder, x: &Tensor, dy: &Tensor, dx: &Tensor) -> Result<()> {
        self.check("x", x, &self.input)?;
        self.check("dy", dy, &self.output_shape())?;
        self.check("dx", dx, &self.input)?;
        self.record_spectrum(rec, x)?;
        let b = self.channels();
        let dy = dy.reshape(&[b, self.embed.big_h, self.embed.big_w])?;
        gfft::shifted_phase_vjp(rec, &self.shift, &self.z, &dy, &self.g)?;
        self.plan.inverse(rec, &self.g, &self.z)?;
        let dx = dx.reshape(&[b, self.input[2], self.input[3]])?;
        gfft::crop_real_shifted(rec, &self.embed, &self.g, &dx)?;
        Ok(())
    }

    fn forward_cpu(&self, x: &[f32]) -> Vec<f32> {
        let x: Vec<f64> = x.iter().map(|&v| v as f64).collect();
        self.forward_f64(&x).into_iter().map(|v| v as f32).collect()
    }

    fn vjp_cpu(&self, x: &[f32], dy: &[f32]) -> Vec<f32> {
        let x: Vec<f64> = x.iter().map(|&v| v as f64).collect();
        let dy: Vec<f64> = dy.iter().map(|&v| v as f64).collect();
        self.vjp_f64(&x, &dy)
            .into_iter()
            .map(|v| v as f32)
            .collect()
    }

    /// `log(1 + y)` scaled per image (over its channels) onto [-1, 1]: the magnitude spans
    /// decades, and the log keeps more than the DC peak visible.
    fn naive_estimate(&self, _y: &[f32]) -> Vec<f32> {
        vec![0.0; self.input.iter().product()]
    }

    fn measurement_picture(&self, y: &[f32]) -> Option<(Vec<f32>, [usize; 4])> {
        let s = self.output_shape();
        let shape = [s[0], s[1], s[2], s[3]];
        if y.len() != shape.iter().product::<usize>() {
            return None;
        }
        let per_image = shape[1] * shape[2] * shape[3];
        let mut out = Vec::with_capacity(y.len());
        for img in y.chunks(per_image) {
            let l: Vec<f32> = img.iter().map(|&v| v.max(0.0).ln_1p()).collect();
            let lo = l.iter().copied().fold(f32::INFINITY, f32::min);
            let hi = l.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let span = hi - lo;
            out.extend(l.iter().map(|&v| {
                if span > 0.0 {
                    2.0 * (v - lo) / span - 1.0
                } else {
                    0.0
                }
            }));
        }
        Some((out, shape))
    }
}
