//! High dynamic range reconstruction (DAPS's HDR task): `y = clamp(scale * x, -1, 1)`, scale 2
//! by default, so the brightest and darkest parts of the image saturate. Nonlinear; the VJP
//! passes `scale * dy` where `-1 <= scale * x <= 1` (bounds included, torch.clamp's gradient)
//! and 0 where the clip saturates.

use equireg_gpu::ops::measurement::{clip_scale, clip_scale_vjp};
use equireg_gpu::reference::measurement as reference;
use equireg_gpu::{Gpu, Recorder, Tensor};

use super::Operator;
use super::resize::{check_input_shape, expect_host, expect_tensor};
use crate::{Error, Result};

/// The scale of DAPS's HDR task.
pub const DEFAULT_HDR_SCALE: f32 = 2.0;

pub struct Hdr {
    input: [usize; 4],
    scale: f32,
}

impl Hdr {
    /// `scale` must be finite and > 0 ([`DEFAULT_HDR_SCALE`] is DAPS's).
    pub fn new(_gpu: &Gpu, input: [usize; 4], scale: f32) -> Result<Hdr> {
        check_input_shape("hdr", input)?;
        if !(scale.is_finite() && scale > 0.0) {
            return Err(Error::invalid(format!(
                "hdr: the scale must be finite and > 0, got {scale}"
            )));
        }
        Ok(Hdr { input, scale })
    }

    pub fn scale(&self) -> f32 {
        self.scale
    }
}

impl Operator for Hdr {
    fn name(&self) -> &str {
        "hdr"
    }

    fn input_shape(&self) -> [usize; 4] {
        self.input
    }

    fn output_shape(&self) -> Vec<usize> {
        self.input.to_vec()
    }

    fn is_linear(&self) -> bool {
        false
    }

    fn record_forward(&self, rec: &mut Recorder, x: &Tensor, out: &Tensor) -> Result<()> {
        expect_tensor("hdr", "x", x, &self.input)?;
        expect_tensor("hdr", "out", out, &self.input)?;
        Ok(clip_scale(rec, x, out, self.scale)?)
    }

    fn record_vjp(&self, rec: &mut Recorder, x: &Tensor, dy: &Tensor, dx: &Tensor) -> Result<()> {
        expect_tensor("hdr", "x", x, &self.input)?;
        expect_tensor("hdr", "dy", dy, &self.input)?;
        expect_tensor("hdr", "dx", dx, &self.input)?;
        Ok(clip_scale_vjp(rec, x, dy, dx, self.scale)?)
    }

    fn forward_cpu(&self, x: &[f32]) -> Vec<f32> {
        expect_host("hdr", "x", x.len(), self.input.iter().product());
        reference::clip_scale(x, self.scale)
    }

    fn vjp_cpu(&self, x: &[f32], dy: &[f32]) -> Vec<f32> {
        let n = self.input.iter().product();
        expect_host("hdr", "x", x.len(), n);
        expect_host("hdr", "dy", dy.len(), n);
        reference::clip_scale_vjp(x, dy, self.scale)
    }

    fn naive_estimate(&self, y: &[f32]) -> Vec<f32> {
        y.iter().map(|v| v / self.scale).collect()
    }

    fn measurement_picture(&self, y: &[f32]) -> Option<(Vec<f32>, [usize; 4])> {
        Some((y.to_vec(), self.input))
    }
}
