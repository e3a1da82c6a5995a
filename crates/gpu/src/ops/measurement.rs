//! Pointwise ops of measurement operators: the scaled clip of HDR and its VJP, and a mask
//! broadcast over channels (inpainting; the mask's VJP is the same op on dy).

use bytemuck::{Pod, Zeroable};

use super::{expect_disjoint, expect_f32, expect_rank, expect_shape, to_u32};
use crate::error::{GpuError, Result};
use crate::kernels::{Bind, Kernel};
use crate::recorder::Recorder;
use crate::tensor::Tensor;

const WG: u32 = 256;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    n: u32,
    plane: u32,
    sample: u32,
    mask_stride: u32,
    scale: f32,
    /// mul_mask: the mask's period within a sample (H * W for a mask shared by the channels,
    /// C * H * W for one per channel).
    mask_period: u32,
    _pad: [u32; 2],
}

impl Params {
    fn flat(op: &'static str, n: usize, scale: f32) -> Result<Params> {
        Ok(Params {
            n: to_u32(op, "element count", n)?,
            plane: 1,
            sample: 1,
            mask_stride: 0,
            scale,
            mask_period: 1,
            _pad: [0; 2],
        })
    }
}

fn run(rec: &mut Recorder, entry: &'static str, p: Params, tensors: &[&Tensor]) -> Result<()> {
    let mut binds = vec![Bind::Params(bytemuck::bytes_of(&p))];
    binds.extend(tensors.iter().map(|t| Bind::Tensor(t)));
    rec.dispatch(
        &Kernel::new("measurement", entry).with(&[("WG", WG as f64)]),
        &binds,
        rec.gpu().grid(p.n.div_ceil(WG)),
    )
}

fn check_scale(op: &'static str, scale: f32) -> Result<()> {
    if !scale.is_finite() {
        return Err(GpuError::shape(op, format!("scale {scale} is not finite")));
    }
    Ok(())
}

/// `out = clamp(scale * x, -1, 1)`, any shape.
pub fn clip_scale(rec: &mut Recorder, x: &Tensor, out: &Tensor, scale: f32) -> Result<()> {
    let op = "clip_scale";
    check_scale(op, scale)?;
    expect_f32(op, "x", x)?;
    expect_f32(op, "out", out)?;
    expect_shape(op, "out", out, x.shape())?;
    expect_disjoint(op, out, &[x])?;
    run(
        rec,
        "clip_scale",
        Params::flat(op, x.numel(), scale)?,
        &[x, out],
    )
}

/// `dx = scale * dy` where `-1 <= scale * x <= 1` (bounds included, as torch.clamp's gradient),
/// 0 elsewhere: the VJP of [`clip_scale`].
pub fn clip_scale_vjp(
    rec: &mut Recorder,
    x: &Tensor,
    dy: &Tensor,
    dx: &Tensor,
    scale: f32,
) -> Result<()> {
    let op = "clip_scale_vjp";
    check_scale(op, scale)?;
    expect_f32(op, "x", x)?;
    expect_f32(op, "dy", dy)?;
    expect_f32(op, "dx", dx)?;
    expect_shape(op, "dy", dy, x.shape())?;
    expect_shape(op, "dx", dx, x.shape())?;
    expect_disjoint(op, dx, &[x, dy])?;
    run(
        rec,
        "clip_scale_vjp",
        Params::flat(op, x.numel(), scale)?,
        &[x, dy, dx],
    )
}

/// `out[n, c, h, w] = x[n, c, h, w] * mask[h, w]` with `x` [N, C, H, W] and `mask` [H, W]
/// (one mask for the batch) or [N, 1, H, W] (one per sample), broadcast over channels.
pub fn mul_mask(rec: &mut Recorder, x: &Tensor, mask: &Tensor, out: &Tensor) -> Result<()> {
    let op = "mul_mask";
    expect_rank(op, "x", x, 4)?;
    expect_f32(op, "x", x)?;
    expect_f32(op, "mask", mask)?;
    expect_f32(op, "out", out)?;
    let [n, c, h, w] = [x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]];
    let (mask_stride, mask_period) = if mask.shape() == [h, w] {
        (0, h * w)
    } else if mask.shape() == [n, 1, h, w] {
        (h * w, h * w)
    } else if mask.shape() == [c, h, w] {
        (0, c * h * w)
    } else if mask.shape() == [n, c, h, w] {
        (c * h * w, c * h * w)
    } else {
        return Err(GpuError::shape(
            op,
            format!(
                "mask has shape {:?}, expected [{h}, {w}], [{n}, 1, {h}, {w}], [{c}, {h}, {w}] \
                 or [{n}, {c}, {h}, {w}] for x {:?}",
                mask.shape(),
                x.shape()
            ),
        ));
    };
    expect_shape(op, "out", out, x.shape())?;
    expect_disjoint(op, out, &[x, mask])?;
    let mut p = Params::flat(op, x.numel(), 1.0)?;
    p.plane = to_u32(op, "plane size", (h * w).max(1))?;
    p.sample = to_u32(op, "sample size", (c * h * w).max(1))?;
    p.mask_stride = mask_stride as u32;
    p.mask_period = mask_period as u32;
    run(rec, "mul_mask", p, &[x, mask, out])
}
