//! Row reductions with a fixed reduction order: x is viewed as [rows, cols] with
//! rows = `x.shape()[0]` (one value per sample of an NCHW tensor; reshape to [1, numel] for a
//! whole-tensor reduction). The same input gives the same bits on every run.
//!
//! Two stages: each row is cut into chunks of [`CHUNK`] elements, one workgroup per (row, chunk)
//! writes a partial to `scratch`, then one workgroup per row folds its partials and finalises.
//! Rows of at most one chunk need only the first stage and no scratch.

use bytemuck::{Pod, Zeroable};

use super::{expect_disjoint, expect_f32, to_u32};
use crate::context::Gpu;
use crate::error::{GpuError, Result};
use crate::kernels::{Bind, Kernel};
use crate::recorder::Recorder;
use crate::tensor::{DType, Tensor};

const WG: u32 = 256;
const ITEMS: u32 = 16;
/// Elements of a row that one stage-1 workgroup reduces.
pub const CHUNK: usize = (WG * ITEMS) as usize;

const CONSTANTS: &[(&str, f64)] = &[("WG", WG as f64), ("ITEMS", ITEMS as f64)];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reduction {
    /// sum of x
    Sum,
    /// sum of x^2
    SumSq,
    /// sqrt(sum of x^2)
    L2,
    /// max |x| (0 is never exceeded from below, so an all-zero row gives 0)
    MaxAbs,
}

impl Reduction {
    fn code(self) -> u32 {
        match self {
            Reduction::Sum => 0,
            Reduction::SumSq => 1,
            Reduction::L2 => 2,
            Reduction::MaxAbs => 3,
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    rows: u32,
    cols: u32,
    chunks: u32,
    op: u32,
    finalize: u32,
    _pad: [u32; 3],
}

fn chunks_per_row(cols: usize) -> usize {
    cols.div_ceil(CHUNK).max(1)
}

/// f32 scratch elements [`reduce_rows`] needs for `rows` rows of `cols` elements: 0 when every
/// row fits one chunk (one pass), else one partial per (row, chunk).
pub fn reduce_scratch_len(rows: usize, cols: usize) -> usize {
    let chunks = chunks_per_row(cols);
    if chunks == 1 { 0 } else { rows * chunks }
}

/// A scratch tensor for [`reduce_rows`] (shape [max(len, 1)], so it is always bindable).
pub fn reduce_scratch(gpu: &Gpu, rows: usize, cols: usize) -> Result<Tensor> {
    gpu.alloc(&[reduce_scratch_len(rows, cols).max(1)], DType::F32)
}

/// `out[r]` = reduction of row r of x viewed as [rows, cols] (rows = `x.shape()[0]`, cols = the
/// product of the other dimensions). `out` must have `rows` elements, `scratch` at least
/// [`reduce_scratch_len`]`(rows, cols)`; neither may share memory with `x` or each other.
/// Empty rows (cols = 0) reduce to 0; no rows (rows = 0) records nothing.
pub fn reduce_rows(
    rec: &mut Recorder,
    x: &Tensor,
    out: &Tensor,
    scratch: &Tensor,
    r: Reduction,
) -> Result<()> {
    let op = "reduce_rows";
    expect_f32(op, "x", x)?;
    expect_f32(op, "out", out)?;
    expect_f32(op, "scratch", scratch)?;
    let Some(&rows) = x.shape().first() else {
        return Err(GpuError::shape(op, "x must have at least one dimension"));
    };
    let cols: usize = x.shape()[1..].iter().product();
    if out.numel() != rows {
        return Err(GpuError::shape(
            op,
            format!(
                "out has shape {:?}, expected {rows} elements (one per row of x {:?})",
                out.shape(),
                x.shape()
            ),
        ));
    }
    if rows == 0 {
        return Ok(());
    }
    expect_disjoint(op, out, &[x])?;
    // The kernels index x flat and step past the row end by up to one workgroup.
    to_u32(op, "element count", x.numel() + WG as usize)?;
    let chunks = chunks_per_row(cols);
    let mut p = Params {
        rows: to_u32(op, "rows", rows)?,
        cols: to_u32(op, "cols", cols)?,
        chunks: to_u32(op, "chunks per row", chunks)?,
        op: r.code(),
        finalize: 1,
        _pad: [0; 3],
    };
    let stage1 = Kernel::new("reduce", "reduce_chunks").with(CONSTANTS);
    if chunks == 1 {
        let groups = rec.gpu().grid(p.rows);
        return rec.dispatch(
            &stage1,
            &[
                Bind::Params(bytemuck::bytes_of(&p)),
                Bind::Tensor(x),
                Bind::Tensor(out),
            ],
            groups,
        );
    }
    let need = rows * chunks;
    if scratch.numel() < need {
        return Err(GpuError::shape(
            op,
            format!(
                "scratch has {} elements, {need} needed (reduce_scratch_len({rows}, {cols}))",
                scratch.numel()
            ),
        ));
    }
    expect_disjoint(op, scratch, &[x, out])?;
    p.finalize = 0;
    let partials = to_u32(op, "partial count", need)?;
    let groups = rec.gpu().grid(partials);
    rec.dispatch(
        &stage1,
        &[
            Bind::Params(bytemuck::bytes_of(&p)),
            Bind::Tensor(x),
            Bind::Tensor(scratch),
        ],
        groups,
    )?;
    let groups = rec.gpu().grid(p.rows);
    rec.dispatch(
        &Kernel::new("reduce", "reduce_partials").with(CONSTANTS),
        &[
            Bind::Params(bytemuck::bytes_of(&p)),
            Bind::Tensor(scratch),
            Bind::Tensor(out),
        ],
        groups,
    )
}
