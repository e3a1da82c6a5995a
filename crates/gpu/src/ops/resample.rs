//! 2x nearest-neighbour upsampling and 2x2 average pooling of [N, C, H, W] tensors.

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
    total: u32,
    out_w: u32,
    out_h: u32,
    _pad: u32,
}

fn run(
    rec: &mut Recorder,
    op: &'static str,
    x: &Tensor,
    out: &Tensor,
    out_shape: [usize; 4],
) -> Result<()> {
    expect_f32(op, "x", x)?;
    expect_f32(op, "out", out)?;
    expect_shape(op, "out", out, &out_shape)?;
    expect_disjoint(op, out, &[x])?;
    to_u32(op, "input element count", x.numel())?;
    let p = Params {
        total: to_u32(op, "output element count", out.numel())?,
        out_w: out_shape[3] as u32,
        out_h: out_shape[2] as u32,
        _pad: 0,
    };
    rec.dispatch(
        &Kernel::new("resample", op).with(&[("WG", WG as f64)]),
        &[
            Bind::Params(bytemuck::bytes_of(&p)),
            Bind::Tensor(x),
            Bind::Tensor(out),
        ],
        rec.gpu().grid(p.total.div_ceil(WG)),
    )
}

/// out[n, c, y, x] = x[n, c, y / 2, x / 2]: x is [N, C, H, W], out is [N, C, 2H, 2W].
pub fn upsample_nearest2x(rec: &mut Recorder, x: &Tensor, out: &Tensor) -> Result<()> {
    let op = "upsample_nearest2x";
    expect_rank(op, "x", x, 4)?;
    let s = x.shape();
    run(rec, op, x, out, [s[0], s[1], 2 * s[2], 2 * s[3]])
}

/// out[n, c, y, x] = mean of the 2x2 block x[n, c, 2y..2y+2, 2x..2x+2]: x is [N, C, H, W] with H
/// and W even, out is [N, C, H/2, W/2].
pub fn avg_pool2x(rec: &mut Recorder, x: &Tensor, out: &Tensor) -> Result<()> {
    let op = "avg_pool2x";
    expect_rank(op, "x", x, 4)?;
    let s = x.shape();
    if !s[2].is_multiple_of(2) || !s[3].is_multiple_of(2) {
        return Err(GpuError::shape(
            op,
            format!("height and width must be even, got x {s:?}"),
        ));
    }
    run(rec, op, x, out, [s[0], s[1], s[2] / 2, s[3] / 2])
}
