//! Softmax over the last axis with scaled logits, and its VJP. With the batched
//! [`matmul`](super::matmul::matmul) this makes single-head attention over any number of
//! channels (CompVis' `AttnBlock`: softmax(q^T k / sqrt(C)) with C = 512, wider than the fused
//! attention kernel's head size), and the VJP of that attention composed from matmuls.

use bytemuck::{Pod, Zeroable};

use super::{
    LOOP_BUDGET, REDUCTION_WIDTH_MAX, expect_disjoint, expect_f32, reduction_width, to_u32,
};
use crate::error::{GpuError, Result};
use crate::kernels::{Bind, Kernel};
use crate::recorder::Recorder;
use crate::tensor::Tensor;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    rows: u32,
    cols: u32,
    scale: f32,
    _pad: u32,
}

/// (rows, cols) of `t` viewed as [rows, last axis], after checking every tensor has its shape.
fn prepare(op: &'static str, t: (&str, &Tensor), others: &[(&str, &Tensor)]) -> Result<Params> {
    let (name, t) = t;
    let shape = t.shape();
    let Some(&cols) = shape.last() else {
        return Err(GpuError::shape(
            op,
            format!("{name} must have at least one dimension"),
        ));
    };
    expect_f32(op, name, t)?;
    for (n, o) in others {
        expect_f32(op, n, o)?;
        if o.shape() != shape {
            return Err(GpuError::shape(
                op,
                format!(
                    "{n} has shape {:?}, expected {shape:?} like {name}",
                    o.shape()
                ),
            ));
        }
    }
    to_u32(op, "element count", t.numel())?;
    let widest = REDUCTION_WIDTH_MAX as usize;
    if cols.div_ceil(widest) * 3 > LOOP_BUDGET {
        return Err(GpuError::shape(
            op,
            format!(
                "rows of {cols} elements are too long (at most {})",
                LOOP_BUDGET / 3 * widest
            ),
        ));
    }
    let rows = t.numel().checked_div(cols).unwrap_or(0);
    Ok(Params {
        rows: rows as u32,
        cols: cols as u32,
        scale: 0.0,
        _pad: 0,
    })
}

fn check_scale(op: &'static str, scale: f32) -> Result<()> {
    if !scale.is_finite() {
        return Err(GpuError::shape(op, format!("scale {scale} must be finite")));
    }
    Ok(())
}

/// out[.., j] = exp(scale x[.., j]) / sum_k exp(scale x[.., k]) along the last axis; x and out
/// have the same shape (any rank >= 1).
pub fn softmax_rows(rec: &mut Recorder, x: &Tensor, out: &Tensor, scale: f32) -> Result<()> {
    softmax_rows_with_width(rec, x, out, scale, None)
}

/// [`softmax_rows`] with a chosen workgroup width (a power of two up to 256; None: the
/// adapter's choice). The width sets the order of the row sums, so the last bits of the result;
/// tests use it to check every width on one adapter.
pub fn softmax_rows_with_width(
    rec: &mut Recorder,
    x: &Tensor,
    out: &Tensor,
    scale: f32,
    width: Option<u32>,
) -> Result<()> {
    let op = "softmax_rows";
    check_scale(op, scale)?;
    let mut p = prepare(op, ("x", x), &[("out", out)])?;
    expect_disjoint(op, out, &[x])?;
    p.scale = scale;
    let wg = reduction_width(op, rec.gpu().caps(), p.cols as usize, 3, width)?;
    if p.rows == 0 {
        return Ok(());
    }
    rec.dispatch(
        &Kernel::new("softmax", "softmax_rows").with(&[("WG", wg as f64)]),
        &[
            Bind::Params(bytemuck::bytes_of(&p)),
            Bind::Tensor(x),
            Bind::Tensor(out),
        ],
        rec.gpu().grid(p.rows),
    )
}

/// The VJP of [`softmax_rows`] with respect to x, from the forward's output y:
/// dx = scale * y * (dy - sum_k dy[.., k] y[.., k]) along the last axis. y, dy and dx have the
/// same shape.
pub fn softmax_rows_vjp(
    rec: &mut Recorder,
    y: &Tensor,
    dy: &Tensor,
    dx: &Tensor,
    scale: f32,
) -> Result<()> {
    softmax_rows_vjp_with_width(rec, y, dy, dx, scale, None)
}

/// [`softmax_rows_vjp`] with a chosen workgroup width, as [`softmax_rows_with_width`].
pub fn softmax_rows_vjp_with_width(
    rec: &mut Recorder,
    y: &Tensor,
    dy: &Tensor,
    dx: &Tensor,
    scale: f32,
    width: Option<u32>,
) -> Result<()> {
    let op = "softmax_rows_vjp";
    check_scale(op, scale)?;
    let mut p = prepare(op, ("y", y), &[("dy", dy), ("dx", dx)])?;
    expect_disjoint(op, dx, &[y, dy])?;
    p.scale = scale;
    let wg = reduction_width(op, rec.gpu().caps(), p.cols as usize, 2, width)?;
    if p.rows == 0 {
        return Ok(());
    }
    rec.dispatch(
        &Kernel::new("softmax", "softmax_rows_vjp").with(&[("WG", wg as f64)]),
        &[
            Bind::Params(bytemuck::bytes_of(&p)),
            Bind::Tensor(y),
            Bind::Tensor(dy),
            Bind::Tensor(dx),
        ],
        rec.gpu().grid(p.rows),
    )
}
