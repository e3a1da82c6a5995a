//! Inpainting: `y = m * x` with a mask m [H, W] (1 keeps a pixel, 0 drops it) shared by every
//! channel and every image of the batch. Linear and self-adjoint: the VJP is `m * dy`.
//!
//! Masks of DPS's `mask_generator`, drawn from a seed with Philox (stream [`MASK_STREAM`]):
//! - box: a hole of hole_h x hole_w whose top-left row is uniform in
//!   [margin_h, H - margin_h - hole_h) and column in [margin_w, W - margin_w - hole_w)
//!   (DPS at 256 x 256: hole 128, margin 16, so [16, 112));
//! - random: a fraction p ~ U(`drop[0]`, `drop[1]`), then exactly floor(H W p) distinct pixels
//!   dropped, chosen uniformly without replacement (a partial Fisher-Yates shuffle).

use equireg_gpu::ops::measurement::mul_mask;
use equireg_gpu::reference::measurement as reference;
use equireg_gpu::{Gpu, Recorder, Tensor};

use super::Operator;
use super::noise::PhiloxStream;
use super::resize::{check_input_shape, expect_host, expect_tensor};
use super::spectral::{Spectral, SpectralForm};
use crate::{Error, Result};

/// Philox stream of inpainting masks.
pub const MASK_STREAM: u32 = 0x6d61_7301;

/// Masking by a fixed [H, W] mask.
pub struct Inpaint {
    name: &'static str,
    input: [usize; 4],
    mask: Vec<f32>,
    mask_gpu: Tensor,
    spectral: Option<Spectral>,
}

impl Inpaint {
    /// A box hole of `hole` = [h, w] pixels at a random place at least `margin` = [mh, mw]
    /// from the top and left edges and `margin` plus one pixel from the bottom and right
    /// (numpy's exclusive upper bound). Fails when no place fits: H <= 2 mh + h or W <= 2 mw + w.
    pub fn boxed(
        gpu: &Gpu,
        input: [usize; 4],
        hole: [usize; 2],
        margin: [usize; 2],
        seed: u64,
    ) -> Result<Inpaint> {
        let name = "box_inpainting";
        check_input_shape(name, input)?;
        let [_, _, h, w] = input;
        let mut s = PhiloxStream::new(seed, MASK_STREAM, 0);
        let mut corner = [0usize; 2];
        for (axis, side) in [h, w].into_iter().enumerate() {
            let lo = margin[axis];
            let hi = side.saturating_sub(margin[axis].saturating_add(hole[axis]));
            if hi <= lo {
                return Err(Error::invalid(format!(
                    "{name}: a {}x{} hole with margins {}x{} does not fit a {h}x{w} image",
                    hole[0], hole[1], margin[0], margin[1]
                )));
            }
            corner[axis] = lo + s.below((hi - lo) as u64) as usize;
        }
        let mut mask = vec![1f32; h * w];
        for r in corner[0]..corner[0] + hole[0] {
            mask[r * w + corner[1]..r * w + corner[1] + hole[1]].fill(0.0);
        }
        Self::build(gpu, name, input, mask)
    }

    /// Drops a random fraction p ~ U(`drop[0]`, `drop[1]`) of the pixels
    /// (`0 <= drop[0] <= drop[1] <= 1`): exactly floor(H W p) distinct pixels, uniformly
    /// without replacement.
    pub fn random(gpu: &Gpu, input: [usize; 4], drop: [f64; 2], seed: u64) -> Result<Inpaint> {
        let name = "random_inpainting";
        check_input_shape(name, input)?;
        if !(0.0 <= drop[0] && drop[0] <= drop[1] && drop[1] <= 1.0) {
            return Err(Error::invalid(format!(
                "{name}: the dropped fraction range must satisfy 0 <= lo <= hi <= 1, got {drop:?}"
            )));
        }
        let [_, _, h, w] = input;
        let total = h * w;
        let mut s = PhiloxStream::new(seed, MASK_STREAM, 1);
        let p = s.uniform_in(drop[0], drop[1]);
        let count = ((total as f64 * p) as usize).min(total);
        let mut order: Vec<usize> = (0..total).collect();
        let mut mask = vec![1f32; total];
        for i in 0..count {
            let j = i + s.below((total - i) as u64) as usize;
            order.swap(i, j);
            mask[order[i]] = 0.0;
        }
        Self::build(gpu, name, input, mask)
    }

    /// A given mask [H, W], row-major (1 keeps, 0 drops; other finite values scale).
    pub fn from_mask(gpu: &Gpu, input: [usize; 4], mask: Vec<f32>) -> Result<Inpaint> {
        let name = "inpainting";
        check_input_shape(name, input)?;
        let [_, _, h, w] = input;
        if mask.len() != h * w {
            return Err(Error::invalid(format!(
                "{name}: the mask has {} values, a {h}x{w} image needs {}",
                mask.len(),
                h * w
            )));
        }
        if mask.iter().any(|v| !v.is_finite()) {
            return Err(Error::invalid(format!(
                "{name}: the mask has non-finite values"
            )));
        }
        Self::build(gpu, name, input, mask)
    }

    fn build(gpu: &Gpu, name: &'static str, input: [usize; 4], mask: Vec<f32>) -> Result<Inpaint> {
        let mask_gpu = gpu.upload(&[input[2], input[3]], &mask)?;
        // Diagonal when the mask is 0 and 1 (a scaling mask has no such simple pseudo-inverse
        // here).
        let binary = mask.iter().all(|&m| m == 0.0 || m == 1.0);
        let spectral = if binary {
            let form = SpectralForm::Diagonal { mask: mask.clone() };
            Some(Spectral::new(gpu, input, form)?)
        } else {
            None
        };
        Ok(Inpaint {
            name,
            input,
            mask,
            mask_gpu,
            spectral,
        })
    }

    /// The mask [H, W], row-major: 1 where a pixel is kept, 0 where dropped.
    pub fn mask(&self) -> &[f32] {
        &self.mask
    }
}

impl Operator for Inpaint {
    fn name(&self) -> &str {
        self.name
    }

    fn input_shape(&self) -> [usize; 4] {
        self.input
    }

    fn output_shape(&self) -> Vec<usize> {
        self.input.to_vec()
    }

    fn is_linear(&self) -> bool {
        true
    }

    fn record_forward(&self, rec: &mut Recorder, x: &Tensor, out: &Tensor) -> Result<()> {
        expect_tensor(self.name, "x", x, &self.input)?;
        expect_tensor(self.name, "out", out, &self.input)?;
        Ok(mul_mask(rec, x, &self.mask_gpu, out)?)
    }

    fn record_vjp(&self, rec: &mut Recorder, _x: &Tensor, dy: &Tensor, dx: &Tensor) -> Result<()> {
        expect_tensor(self.name, "dy", dy, &self.input)?;
        expect_tensor(self.name, "dx", dx, &self.input)?;
        Ok(mul_mask(rec, dy, &self.mask_gpu, dx)?)
    }

    fn forward_cpu(&self, x: &[f32]) -> Vec<f32> {
        expect_host(self.name, "x", x.len(), self.input.iter().product());
        reference::mul_mask(x, self.input, &self.mask)
    }

    fn vjp_cpu(&self, _x: &[f32], dy: &[f32]) -> Vec<f32> {
        expect_host(self.name, "dy", dy.len(), self.input.iter().product());
        reference::mul_mask(dy, self.input, &self.mask)
    }

    fn naive_estimate(&self, y: &[f32]) -> Vec<f32> {
        let plane = self.input[2] * self.input[3];
        let mut out = y.to_vec();
        fill_with_observed_mean(&mut out, plane, |_| &self.mask);
        out
    }

    fn spectral(&self) -> Option<&Spectral> {
        self.spectral.as_ref()
    }

    fn measurement_picture(&self, y: &[f32]) -> Option<(Vec<f32>, [usize; 4])> {
        Some((y.to_vec(), self.input))
    }

    fn parameters(&self) -> Vec<(&'static str, Vec<usize>, Vec<f32>)> {
        vec![(
            "mask",
            vec![self.input[2], self.input[3]],
            self.mask.clone(),
        )]
    }
}

/// Fills the unobserved pixels (mask <= 0.5) of each plane of `x` with the mean of its observed
/// ones (0 when none is observed); `mask(k)` is plane `k`'s mask. The naive estimate of masking
/// operators.
pub(crate) fn fill_with_observed_mean<'m>(
    x: &mut [f32],
    plane: usize,
    mask: impl Fn(usize) -> &'m [f32],
) {
    for (k, chunk) in x.chunks_mut(plane).enumerate() {
        let m = mask(k);
        let (sum, count) = chunk
            .iter()
            .zip(m)
            .filter(|(_, m)| **m > 0.5)
            .fold((0f64, 0usize), |(s, n), (v, _)| (s + *v as f64, n + 1));
        let mean = if count > 0 { sum / count as f64 } else { 0.0 } as f32;
        for (v, m) in chunk.iter_mut().zip(m) {
            if *m <= 0.5 {
                *v = mean;
            }
        }
    }
}
