//! Zero padding of the two spatial axes of [N, C, H, W] tensors with a separate amount on each
//! side (the asymmetric (0, 1, 0, 1) pad of CompVis' `Downsample`, which a symmetric conv padding
//! cannot express), and its VJP, the crop back to the interior.

use bytemuck::{Pod, Zeroable};

use super::{expect_disjoint, expect_f32, expect_rank, expect_shape, to_u32};
use crate::error::{GpuError, Result};
use crate::kernels::{Bind, Kernel};
use crate::recorder::Recorder;
use crate::tensor::Tensor;

const WG: u32 = 256;

/// Zeros added on each side of the height (top, bottom) and width (left, right) axes. PyTorch's
/// `F.pad(x, (left, right, top, bottom))`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Pad2d {
    pub top: u32,
    pub bottom: u32,
    pub left: u32,
    pub right: u32,
}

impl Pad2d {
    /// CompVis `Downsample`: one zero row below and one zero column on the right.
    pub const BOTTOM_RIGHT_1: Pad2d = Pad2d {
        top: 0,
        bottom: 1,
        left: 0,
        right: 1,
    };
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    total: u32,
    h: u32,
    w: u32,
    oh: u32,
    ow: u32,
    top: u32,
    left: u32,
    _pad: u32,
}

/// [N, C, H + top + bottom, W + left + right] for x of shape [N, C, H, W].
pub fn pad2d_out_shape(x: &[usize], p: Pad2d) -> Result<[usize; 4]> {
    let &[n, c, h, w] = x else {
        return Err(GpuError::shape(
            "pad2d",
            format!("x must be [N, C, H, W], got shape {x:?}"),
        ));
    };
    Ok([
        n,
        c,
        h + p.top as usize + p.bottom as usize,
        w + p.left as usize + p.right as usize,
    ])
}

/// `names`: the small (interior) and the padded tensor as error messages call them.
#[allow(clippy::too_many_arguments)]
fn run(
    rec: &mut Recorder,
    op: &'static str,
    entry: &'static str,
    small: (&str, &Tensor),
    big: (&str, &Tensor),
    src: &Tensor,
    dst: &Tensor,
    p: Pad2d,
) -> Result<()> {
    let (sn, s) = small;
    let (bn, b) = big;
    expect_rank(op, sn, s, 4)?;
    expect_f32(op, sn, s)?;
    expect_f32(op, bn, b)?;
    let want = pad2d_out_shape(s.shape(), p)?;
    expect_shape(op, bn, b, &want)?;
    expect_disjoint(op, dst, &[src])?;
    to_u32(op, &format!("{bn} element count"), b.numel())?;
    let ss = s.shape();
    let prm = Params {
        total: to_u32(op, "output element count", dst.numel())?,
        h: ss[2] as u32,
        w: ss[3] as u32,
        oh: want[2] as u32,
        ow: want[3] as u32,
        top: p.top,
        left: p.left,
        _pad: 0,
    };
    if prm.total == 0 {
        return Ok(());
    }
    rec.dispatch(
        &Kernel::new("pad", entry).with(&[("WG", WG as f64)]),
        &[
            Bind::Params(bytemuck::bytes_of(&prm)),
            Bind::Tensor(src),
            Bind::Tensor(dst),
        ],
        rec.gpu().grid(prm.total.div_ceil(WG)),
    )
}

/// out = x with `p.top` zero rows above, `p.bottom` below, `p.left` zero columns on the left and
/// `p.right` on the right: x is [N, C, H, W], out [N, C, H + top + bottom, W + left + right].
pub fn pad2d(rec: &mut Recorder, x: &Tensor, out: &Tensor, p: Pad2d) -> Result<()> {
    run(rec, "pad2d", "pad2d", ("x", x), ("out", out), x, out, p)
}

/// The VJP of [`pad2d`]: dx = the interior of dy (the crop that drops the padded rows and
/// columns). dy is [N, C, H + top + bottom, W + left + right], dx is [N, C, H, W].
pub fn pad2d_vjp(rec: &mut Recorder, dy: &Tensor, dx: &Tensor, p: Pad2d) -> Result<()> {
    run(
        rec,
        "pad2d_vjp",
        "crop2d",
        ("dx", dx),
        ("dy", dy),
        dy,
        dx,
        p,
    )
}
