//! A dense matrix applied along the H or the W axis of an [N, C, H, W] tensor: with
//! `m` = W [out_len, in_len], `out[n, c, i, w] = sum_k W[i, k] x[n, c, k, w]` along H (likewise
//! along W), or with W^T when `transpose` is set (the VJP of the first). Separable linear maps
//! (resizing, blurs with separable kernels) are two of these.

use bytemuck::{Pod, Zeroable};

use super::{expect_disjoint, expect_f32, expect_rank, expect_shape, to_u32};
use crate::error::{GpuError, Result};
use crate::kernels::{Bind, Kernel};
use crate::recorder::Recorder;
use crate::tensor::Tensor;

const WG: u32 = 256;

/// The longest contraction one invocation runs (lavapipe stops loops after 65535 iterations).
pub const MAX_CONTRACTION: usize = 16384;

/// Which axis of [N, C, H, W] the matrix acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Axis {
    H,
    W,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    n: u32,
    rows: u32,
    red: u32,
    inner: u32,
    si: u32,
    sk: u32,
    _pad: [u32; 2],
}

/// The shape of `out` for an `x` of shape `x_shape` and a matrix of shape `[out_len, in_len]`.
pub fn output_shape(
    x_shape: &[usize],
    m_shape: [usize; 2],
    axis: Axis,
    transpose: bool,
) -> Vec<usize> {
    let mut s = x_shape.to_vec();
    let d = match axis {
        Axis::H => 2,
        Axis::W => 3,
    };
    s[d] = if transpose { m_shape[1] } else { m_shape[0] };
    s
}

/// `out = W x` along `axis` (or `W^T x` with `transpose`), with `m` = W of shape
/// `[out_len, in_len]`. `x` is [N, C, H, W] with `in_len` (`out_len` when transposed) along
/// `axis`; `out` has the same shape except `out_len` (`in_len`) along `axis`.
pub fn axis_matmul(
    rec: &mut Recorder,
    x: &Tensor,
    m: &Tensor,
    out: &Tensor,
    axis: Axis,
    transpose: bool,
) -> Result<()> {
    let op = "axis_matmul";
    expect_rank(op, "x", x, 4)?;
    expect_rank(op, "matrix", m, 2)?;
    expect_f32(op, "x", x)?;
    expect_f32(op, "matrix", m)?;
    expect_f32(op, "out", out)?;
    let s = x.shape();
    let (out_len, in_len) = (m.shape()[0], m.shape()[1]);
    let d = match axis {
        Axis::H => 2,
        Axis::W => 3,
    };
    let red = if transpose { out_len } else { in_len };
    if s[d] != red {
        return Err(GpuError::shape(
            op,
            format!(
                "x {s:?} has {} along {axis:?}, the {}matrix {:?} needs {red}",
                s[d],
                if transpose { "transposed " } else { "" },
                m.shape()
            ),
        ));
    }
    if red > MAX_CONTRACTION {
        return Err(GpuError::shape(
            op,
            format!("contraction length {red} is over the supported {MAX_CONTRACTION}"),
        ));
    }
    let want = output_shape(s, [out_len, in_len], axis, transpose);
    expect_shape(op, "out", out, &want)?;
    expect_disjoint(op, out, &[x, m])?;
    to_u32(op, "x element count", x.numel())?;
    to_u32(op, "matrix element count", m.numel())?;
    let inner = if axis == Axis::H { s[3] } else { 1 };
    let (si, sk) = if transpose { (1, in_len) } else { (in_len, 1) };
    let p = Params {
        n: to_u32(op, "output element count", out.numel())?,
        rows: to_u32(op, "output length", want[d])?,
        red: red as u32,
        inner: inner as u32,
        si: si as u32,
        sk: sk as u32,
        _pad: [0; 2],
    };
    rec.dispatch(
        &Kernel::new("axis_matmul", "axis_matmul").with(&[("WG", WG as f64)]),
        &[
            Bind::Params(bytemuck::bytes_of(&p)),
            Bind::Tensor(x),
            Bind::Tensor(m),
            Bind::Tensor(out),
        ],
        rec.gpu().grid(p.n.div_ceil(WG)),
    )
}
