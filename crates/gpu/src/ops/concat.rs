//! Concatenation along the channel dimension, and its VJP (a channel range of a tensor).

use bytemuck::{Pod, Zeroable};

use super::{expect_disjoint, expect_f32, expect_shape, to_u32};
use crate::error::{GpuError, Result};
use crate::kernels::{Bind, Kernel};
use crate::recorder::Recorder;
use crate::tensor::Tensor;

const WG: u32 = 256;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    total: u32,
    a_block: u32,
    b_block: u32,
    _pad: u32,
}

/// out = torch.cat([a, b], dim=1): a is [N, Ca, ...], b is [N, Cb, ...] with the same N and
/// trailing dims, out is [N, Ca + Cb, ...].
pub fn concat_channels(rec: &mut Recorder, a: &Tensor, b: &Tensor, out: &Tensor) -> Result<()> {
    let op = "concat_channels";
    expect_f32(op, "a", a)?;
    expect_f32(op, "b", b)?;
    expect_f32(op, "out", out)?;
    let (sa, sb) = (a.shape(), b.shape());
    if sa.len() < 2 || sa.len() != sb.len() || sa[0] != sb[0] || sa[2..] != sb[2..] {
        return Err(GpuError::shape(
            op,
            format!("a {sa:?} and b {sb:?} must be [N, C, ...] with equal N and trailing dims"),
        ));
    }
    let mut want = sa.to_vec();
    want[1] = sa[1] + sb[1];
    expect_shape(op, "out", out, &want)?;
    expect_disjoint(op, out, &[a, b])?;
    let inner: usize = sa[2..].iter().product();
    // Planes of a multiple of 4 elements copy vec4s: every count below is then divisible by 4.
    let (entry, unit) = if inner.is_multiple_of(4) {
        ("concat_channels4", 4)
    } else {
        ("concat_channels", 1)
    };
    let p = Params {
        total: to_u32(op, "output element count", out.numel())? / unit,
        a_block: to_u32(op, "a block", sa[1] * inner)? / unit,
        b_block: to_u32(op, "b block", sb[1] * inner)? / unit,
        _pad: 0,
    };
    rec.dispatch(
        &Kernel::new("concat", entry).with(&[("WG", WG as f64)]),
        &[
            Bind::Params(bytemuck::bytes_of(&p)),
            Bind::Tensor(a),
            Bind::Tensor(b),
            Bind::Tensor(out),
        ],
        rec.gpu().grid(p.total.div_ceil(WG)),
    )
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct SplitParams {
    total: u32,
    out_block: u32,
    x_block: u32,
    offset: u32,
}

/// out = x[:, start..start + C]: x is [N, Ctot, ...], out is [N, C, ...] with the same N and
/// trailing dims and start + C <= Ctot. The VJP of [`concat_channels`]: d(a) is
/// `split_channels(d(out), 0)`, d(b) is `split_channels(d(out), Ca)`.
pub fn split_channels(rec: &mut Recorder, x: &Tensor, start: u32, out: &Tensor) -> Result<()> {
    let op = "split_channels";
    expect_f32(op, "x", x)?;
    expect_f32(op, "out", out)?;
    let (sx, so) = (x.shape(), out.shape());
    if sx.len() < 2 || sx.len() != so.len() || sx[0] != so[0] || sx[2..] != so[2..] {
        return Err(GpuError::shape(
            op,
            format!("x {sx:?} and out {so:?} must be [N, C, ...] with equal N and trailing dims"),
        ));
    }
    let start = start as usize;
    if start.checked_add(so[1]).is_none_or(|end| end > sx[1]) {
        return Err(GpuError::shape(
            op,
            format!(
                "channels {start}..{} are out of range for x with {} channels",
                start.saturating_add(so[1]),
                sx[1]
            ),
        ));
    }
    expect_disjoint(op, out, &[x])?;
    let inner: usize = sx[2..].iter().product();
    to_u32(op, "x element count", x.numel())?;
    let (entry, unit) = if inner.is_multiple_of(4) {
        ("split_channels4", 4)
    } else {
        ("split_channels", 1)
    };
    let p = SplitParams {
        total: to_u32(op, "output element count", out.numel())? / unit,
        out_block: to_u32(op, "out block", so[1] * inner)? / unit,
        x_block: to_u32(op, "x block", sx[1] * inner)? / unit,
        offset: to_u32(op, "offset", start * inner)? / unit,
    };
    if p.total == 0 {
        return Ok(());
    }
    rec.dispatch(
        &Kernel::new("concat", entry).with(&[("WG", WG as f64)]),
        &[
            Bind::Params(bytemuck::bytes_of(&p)),
            Bind::Tensor(x),
            Bind::Tensor(out),
        ],
        rec.gpu().grid(p.total.div_ceil(WG)),
    )
}
