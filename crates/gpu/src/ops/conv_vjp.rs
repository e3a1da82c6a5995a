//! The input gradient of conv2d with frozen weights: dx = d/dx sum(conv2d(x, w) * dy), as an
//! implicit GEMM with M = input channels, N = input pixels, K = co * kh * kw, reading the weights
//! transposed over (co, ci) and flipped spatially in place.
//!
//! Kernels (`conv2d_vjp.wgsl`, no optional feature):
//! - `vjp_gemm`: workgroup-memory tiles with 4x4 register blocks, any kernel size and stride.

use bytemuck::{Pod, Zeroable};

use super::conv::{Conv2dParams, conv2d_out_shape};
use super::matmul::portable_tiles;
use super::{expect_disjoint, expect_f32, expect_rank, to_u32};
use crate::error::{GpuError, Result};
use crate::kernels::{Bind, Kernel};
use crate::recorder::Recorder;
use crate::tensor::Tensor;

/// Mirrors `VjpParams` of `conv2d_vjp.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
struct VjpParams {
    n: u32,
    ci: u32,
    h: u32,
    w: u32,
    co: u32,
    ho: u32,
    wo: u32,
    kh: u32,
    kw: u32,
    stride: u32,
    pad: u32,
    _pad0: u32,
    t0: u32,
    t1: u32,
    t2: u32,
    total: u32,
}

/// dx = d/dx sum(conv2d(x, w) * dy) for the forward `conv2d(x, w)` with stride and padding `p`:
/// dy [N, Co, Ho, Wo], w [Co, Ci, Kh, Kw], dx [N, Ci, H, W] (overwritten entirely). H and W are
/// the forward's input size, taken from dx; (Ho, Wo) must be its output size for `p`.
pub fn conv2d_input_grad(
    rec: &mut Recorder,
    dy: &Tensor,
    w: &Tensor,
    dx: &Tensor,
    p: Conv2dParams,
) -> Result<()> {
    let op = "conv2d_input_grad";
    expect_rank(op, "dy", dy, 4)?;
    expect_rank(op, "w", w, 4)?;
    expect_rank(op, "dx", dx, 4)?;
    for (what, t) in [("dy", dy), ("w", w), ("dx", dx)] {
        expect_f32(op, what, t)?;
        to_u32(op, &format!("{what} element count"), t.numel())?;
    }
    let (ds, ws, xs) = (dy.shape(), w.shape(), dx.shape());
    if ws[1] != xs[1] {
        return Err(GpuError::shape(
            op,
            format!(
                "dx {xs:?} has {} channels but w {ws:?} expects {}",
                xs[1], ws[1]
            ),
        ));
    }
    let want = conv2d_out_shape(xs, ws, p).map_err(|e| GpuError::shape(op, e.to_string()))?;
    if ds != want {
        return Err(GpuError::shape(
            op,
            format!(
                "dy has shape {ds:?}, but the forward convolution of an input {xs:?} with w \
                 {ws:?} (stride {}, padding {}) has output {want:?}",
                p.stride, p.padding
            ),
        ));
    }
    expect_disjoint(op, dx, &[dy, w])?;
    if xs[0] == 0 || xs[2] == 0 || xs[3] == 0 {
        return Ok(());
    }
    let u = |v: usize| v as u32; // bounded by the checked element counts
    let mut vp = VjpParams {
        n: u(xs[0]),
        ci: u(xs[1]),
        h: u(xs[2]),
        w: u(xs[3]),
        co: u(ds[1]),
        ho: u(ds[2]),
        wo: u(ds[3]),
        kh: u(ws[2]),
        kw: u(ws[3]),
        stride: p.stride,
        pad: p.padding,
        ..Default::default()
    };
    let (ts, kt) = portable_tiles(rec);
    let cols = vp.n as u64 * vp.h as u64 * vp.w as u64;
    vp.t0 = to_u32(
        op,
        "pixel tile count",
        cols.div_ceil(4 * ts as u64) as usize,
    )?;
    vp.t1 = vp.ci.div_ceil(4 * ts);
    let total = vp.t0 as u64 * vp.t1 as u64;
    vp.total = to_u32(op, "workgroup count", total as usize)?;
    let consts = [("TS", ts as f64), ("KT", kt as f64)];
    let groups = rec.gpu().grid(vp.total);
    rec.dispatch(
        &Kernel::new("conv2d_vjp", "vjp_gemm").with(&consts),
        &[
            Bind::Params(bytemuck::bytes_of(&vp)),
            Bind::Tensor(dy),
            Bind::Tensor(w),
            Bind::Tensor(dx),
        ],
        groups,
    )
}
