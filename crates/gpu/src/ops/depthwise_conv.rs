//! A 2-D kernel shared by every channel, applied as a cross-correlation with reflect padding
//! (torch `ReflectionPad2d(k/2)` followed by a grouped `Conv2d` with one kernel per channel, as
//! DPS's blur operators do), and its exact adjoint (the VJP with respect to the input).
//!
//! `x` is [N, C, H, W], the kernel [kh, kw] with odd sizes; the output has the shape of `x`.
//! The pad (kh/2, kw/2) must be smaller than the side (H, W), as ReflectionPad2d requires.

use bytemuck::{Pod, Zeroable};

use super::{expect_disjoint, expect_f32, expect_rank, expect_shape, to_u32};
use crate::error::{GpuError, Result};
use crate::kernels::{Bind, Kernel};
use crate::recorder::Recorder;
use crate::tensor::Tensor;

const WG: u32 = 256;

/// The most taps a kernel may have: the VJP runs up to 9 * taps iterations per invocation and
/// lavapipe stops any loop after 65535 (63 x 63 = 3969 and 61 x 61 = 3721 fit).
pub const MAX_TAPS: usize = 4096;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    n: u32,
    h: u32,
    w: u32,
    kh: u32,
    kw: u32,
    ph: u32,
    pw: u32,
    _pad: u32,
}

/// Checks a kernel size against an image side: odd, at most [`MAX_TAPS`] taps, pad below the
/// side. Shared by the op and by callers that want the error before recording.
pub fn check_sizes(op: &'static str, image: [usize; 2], kernel: [usize; 2]) -> Result<()> {
    let [h, w] = image;
    let [kh, kw] = kernel;
    if kh == 0 || kw == 0 || kh.is_multiple_of(2) || kw.is_multiple_of(2) {
        return Err(GpuError::shape(
            op,
            format!("kernel sizes must be odd, got {kh}x{kw}"),
        ));
    }
    if kh * kw > MAX_TAPS {
        return Err(GpuError::shape(
            op,
            format!("kernel {kh}x{kw} has more than the supported {MAX_TAPS} taps"),
        ));
    }
    if kh / 2 >= h || kw / 2 >= w {
        return Err(GpuError::shape(
            op,
            format!(
                "reflect padding ({}, {}) needs an image larger than the pad, got {h}x{w}",
                kh / 2,
                kw / 2
            ),
        ));
    }
    Ok(())
}

fn run(
    rec: &mut Recorder,
    op: &'static str,
    entry: &'static str,
    names: [&str; 2],
    src: &Tensor,
    kernel: &Tensor,
    dst: &Tensor,
) -> Result<()> {
    let [sn, dn] = names;
    expect_rank(op, sn, src, 4)?;
    expect_rank(op, "kernel", kernel, 2)?;
    expect_f32(op, sn, src)?;
    expect_f32(op, "kernel", kernel)?;
    expect_f32(op, dn, dst)?;
    let s = src.shape();
    let (kh, kw) = (kernel.shape()[0], kernel.shape()[1]);
    check_sizes(op, [s[2], s[3]], [kh, kw])?;
    expect_shape(op, dn, dst, s)?;
    expect_disjoint(op, dst, &[src, kernel])?;
    let p = Params {
        n: to_u32(op, "element count", src.numel())?,
        h: s[2] as u32,
        w: s[3] as u32,
        kh: kh as u32,
        kw: kw as u32,
        ph: (kh / 2) as u32,
        pw: (kw / 2) as u32,
        _pad: 0,
    };
    rec.dispatch(
        &Kernel::new("depthwise_conv", entry).with(&[("WG", WG as f64)]),
        &[
            Bind::Params(bytemuck::bytes_of(&p)),
            Bind::Tensor(src),
            Bind::Tensor(kernel),
            Bind::Tensor(dst),
        ],
        rec.gpu().grid(p.n.div_ceil(WG)),
    )
}

/// `out = K * reflect_pad(x)` (cross-correlation, same size), K = `kernel` [kh, kw].
pub fn depthwise_conv2d(
    rec: &mut Recorder,
    x: &Tensor,
    kernel: &Tensor,
    out: &Tensor,
) -> Result<()> {
    run(
        rec,
        "depthwise_conv2d",
        "depthwise_conv",
        ["x", "out"],
        x,
        kernel,
        out,
    )
}

/// `dx = A^T dy` for the map A of [`depthwise_conv2d`] (reflected contributions included).
pub fn depthwise_conv2d_vjp(
    rec: &mut Recorder,
    dy: &Tensor,
    kernel: &Tensor,
    dx: &Tensor,
) -> Result<()> {
    run(
        rec,
        "depthwise_conv2d_vjp",
        "depthwise_conv_vjp",
        ["dy", "dx"],
        dy,
        kernel,
        dx,
    )
}
