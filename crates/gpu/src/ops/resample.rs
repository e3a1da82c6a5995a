//! 2x nearest-neighbour upsampling and 2x2 average pooling of [N, C, H, W] tensors, and their
//! vector-Jacobian products (each is the other kernel with another scale).

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
    scale: f32,
}

/// Which kernel of resample.wgsl, and the factor its result is multiplied by.
#[derive(Clone, Copy)]
enum Mode {
    /// out [.., 2H, 2W] = scale * x [.., H, W] repeated over each 2x2 block.
    Upsample(f32),
    /// out [.., H/2, W/2] = scale * the sum of each 2x2 block of x [.., H, W].
    Pool(f32),
}

/// `names`: what the input and output are called in error messages.
fn run(
    rec: &mut Recorder,
    op: &'static str,
    names: [&str; 2],
    x: &Tensor,
    out: &Tensor,
    mode: Mode,
) -> Result<()> {
    let [xn, on] = names;
    expect_rank(op, xn, x, 4)?;
    let s = x.shape();
    let (entry, scale, out_shape) = match mode {
        Mode::Upsample(scale) => (
            "upsample_nearest2x",
            scale,
            [s[0], s[1], 2 * s[2], 2 * s[3]],
        ),
        Mode::Pool(scale) => {
            if !s[2].is_multiple_of(2) || !s[3].is_multiple_of(2) {
                return Err(GpuError::shape(
                    op,
                    format!("height and width must be even, got {xn} {s:?}"),
                ));
            }
            ("avg_pool2x", scale, [s[0], s[1], s[2] / 2, s[3] / 2])
        }
    };
    expect_f32(op, xn, x)?;
    expect_f32(op, on, out)?;
    expect_shape(op, on, out, &out_shape)?;
    expect_disjoint(op, out, &[x])?;
    to_u32(op, "input element count", x.numel())?;
    // Output rows of a multiple of 4 run the vec4 twins (4 outputs per invocation, same bits).
    let (entry, unit) = if out_shape[3].is_multiple_of(4) {
        (
            match mode {
                Mode::Upsample(_) => "upsample_nearest2x4",
                Mode::Pool(_) => "avg_pool2x4",
            },
            4,
        )
    } else {
        (entry, 1)
    };
    let p = Params {
        total: to_u32(op, "output element count", out.numel())? / unit,
        out_w: out_shape[3] as u32,
        out_h: out_shape[2] as u32,
        scale,
    };
    rec.dispatch(
        &Kernel::new("resample", entry).with(&[("WG", WG as f64)]),
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
    run(
        rec,
        "upsample_nearest2x",
        ["x", "out"],
        x,
        out,
        Mode::Upsample(1.0),
    )
}

/// out[n, c, y, x] = mean of the 2x2 block x[n, c, 2y..2y+2, 2x..2x+2]: x is [N, C, H, W] with H
/// and W even, out is [N, C, H/2, W/2].
pub fn avg_pool2x(rec: &mut Recorder, x: &Tensor, out: &Tensor) -> Result<()> {
    run(rec, "avg_pool2x", ["x", "out"], x, out, Mode::Pool(0.25))
}

/// The VJP of [`upsample_nearest2x`]: dx[n, c, y, x] = the sum of the 2x2 block
/// dy[n, c, 2y..2y+2, 2x..2x+2]. dy is [N, C, 2H, 2W], dx is [N, C, H, W].
pub fn upsample_nearest2x_vjp(rec: &mut Recorder, dy: &Tensor, dx: &Tensor) -> Result<()> {
    run(
        rec,
        "upsample_nearest2x_vjp",
        ["dy", "dx"],
        dy,
        dx,
        Mode::Pool(1.0),
    )
}

/// The VJP of [`avg_pool2x`]: dx[n, c, y, x] = dy[n, c, y / 2, x / 2] / 4. dy is
/// [N, C, H/2, W/2], dx is [N, C, H, W].
pub fn avg_pool2x_vjp(rec: &mut Recorder, dy: &Tensor, dx: &Tensor) -> Result<()> {
    run(
        rec,
        "avg_pool2x_vjp",
        ["dy", "dx"],
        dy,
        dx,
        Mode::Upsample(0.25),
    )
}
