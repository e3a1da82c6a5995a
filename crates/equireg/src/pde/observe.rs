//! Point observations of chosen channels: `y = M * x` with a 0/1 mask `M [N, 2, H, W]` holding
//! exactly `points` observed pixels in each observed channel of each case (none in the others).
//! Linear and self-adjoint: the VJP is `M * dy`.
//!
//! The points of case `k` (item `first_item + k` of the input file) and channel `c` are drawn
//! uniformly without replacement (a partial Fisher-Yates shuffle) from the Philox stream
//! ([`POINT_STREAM`], sub-stream `c`) keyed by `item_seed(seed, item)`: a case's points do not
//! depend on the batch it runs in, and the two channels' points are independent draws.

use equireg_gpu::ops::measurement::mul_mask;
use equireg_gpu::reference::measurement as reference;
use equireg_gpu::{Gpu, Recorder, Tensor};

use super::Observe;
use crate::operators::Operator;
use crate::operators::inpaint::fill_with_observed_mean;
use crate::operators::noise::PhiloxStream;
use crate::operators::resize::{check_input_shape, expect_host, expect_tensor};
use crate::restore::item_seed;
use crate::{Error, Result};

/// Philox stream of the observed points.
pub const POINT_STREAM: u32 = 0x7064_6570;

const NAME: &str = "point_observation";

/// Fails unless `points` observed pixels fit an `h` x `w` grid (at least one, at most all).
pub fn check_points(points: usize, h: usize, w: usize) -> Result<()> {
    let plane = h * w;
    if points == 0 || points > plane {
        return Err(Error::invalid(format!(
            "--points {points}: must be between 1 and the {h}x{w} grid's {plane} pixels"
        )));
    }
    Ok(())
}

pub struct PointObservation {
    input: [usize; 4],
    mask: Vec<f32>,
    mask_gpu: Tensor,
}

impl PointObservation {
    /// `points` observed pixels in each channel `observe` names, for the cases
    /// `first_item..first_item + N` of a run seeded `seed`.
    pub fn new(
        gpu: &Gpu,
        input: [usize; 4],
        observe: Observe,
        points: usize,
        seed: u64,
        first_item: u64,
    ) -> Result<PointObservation> {
        check_input_shape(NAME, input)?;
        let [n, c, h, w] = input;
        if c != 2 {
            return Err(Error::invalid(format!(
                "point observations need 2-channel fields, got {c} channels"
            )));
        }
        check_points(points, h, w)?;
        let plane = h * w;
        let mut mask = vec![0f32; n * c * plane];
        for k in 0..n {
            let key = item_seed(seed, first_item + k as u64);
            for (ch, observed) in observe.channels().into_iter().enumerate() {
                if !observed {
                    continue;
                }
                let mut s = PhiloxStream::new(key, POINT_STREAM, ch as u32);
                let mut order: Vec<usize> = (0..plane).collect();
                let m = &mut mask[(k * c + ch) * plane..(k * c + ch + 1) * plane];
                for i in 0..points {
                    let j = i + s.below((plane - i) as u64) as usize;
                    order.swap(i, j);
                    m[order[i]] = 1.0;
                }
            }
        }
        let mask_gpu = gpu.upload(&input, &mask)?;
        Ok(PointObservation {
            input,
            mask,
            mask_gpu,
        })
    }

    /// The mask `[N, 2, H, W]`: 1 at an observed point, 0 elsewhere.
    pub fn mask(&self) -> &[f32] {
        &self.mask
    }
}

impl Operator for PointObservation {
    fn name(&self) -> &str {
        NAME
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
        expect_tensor(NAME, "x", x, &self.input)?;
        expect_tensor(NAME, "out", out, &self.input)?;
        Ok(mul_mask(rec, x, &self.mask_gpu, out)?)
    }

    fn record_vjp(&self, rec: &mut Recorder, _x: &Tensor, dy: &Tensor, dx: &Tensor) -> Result<()> {
        expect_tensor(NAME, "dy", dy, &self.input)?;
        expect_tensor(NAME, "dx", dx, &self.input)?;
        Ok(mul_mask(rec, dy, &self.mask_gpu, dx)?)
    }

    fn forward_cpu(&self, x: &[f32]) -> Vec<f32> {
        expect_host(NAME, "x", x.len(), self.input.iter().product());
        reference::mul_mask_shaped(x, self.input, &self.mask, &self.input)
    }

    fn vjp_cpu(&self, _x: &[f32], dy: &[f32]) -> Vec<f32> {
        expect_host(NAME, "dy", dy.len(), self.input.iter().product());
        reference::mul_mask_shaped(dy, self.input, &self.mask, &self.input)
    }

    /// Each channel's unobserved pixels filled with the mean of its observed ones (0, the
    /// training mean in the model's range, for an unobserved channel).
    fn naive_estimate(&self, y: &[f32]) -> Vec<f32> {
        let plane = self.input[2] * self.input[3];
        let mut out = y.to_vec();
        fill_with_observed_mean(&mut out, plane, |k| &self.mask[k * plane..(k + 1) * plane]);
        out
    }

    fn measurement_picture(&self, _y: &[f32]) -> Option<(Vec<f32>, [usize; 4])> {
        None
    }

    fn parameters(&self) -> Vec<(&'static str, Vec<usize>, Vec<f32>)> {
        vec![("observed", self.input.to_vec(), self.mask.clone())]
    }
}
