//! Per-row reductions with a fixed order: sum, sum of squares, L2 norm and max |x| of x viewed as
//! [rows, cols] with `rows = x.shape()[0]` (per-sample values; reshape to `[1, numel]` for the
//! whole tensor). Two dispatches: partial results per (row, chunk of [`CHUNK`] columns) into a
//! scratch tensor, then one workgroup per row combines them. The order depends only on the row
//! length, so the same input gives the same bits on every run, and a row's result does not
//! depend on the other rows. Accumulation is in f32; sums of squares over about 1e38 overflow to
//! inf (no scaling is done).

use bytemuck::{Pod, Zeroable};

use super::{expect_disjoint, expect_f32, to_u32};
use crate::context::Gpu;
use crate::error::{GpuError, Result};
use crate::kernels::{Bind, Kernel};
use crate::recorder::Recorder;
use crate::tensor::{DType, Tensor};

const WG: u32 = 256;
/// Columns folded by one stage-1 workgroup (16 per thread).
pub const CHUNK: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reduction {
    /// sum of x
    Sum,
    /// sum of x^2
    SumSq,
    /// sqrt(sum of x^2)
    L2,
    /// max of |x| (0 for an empty row)
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
    groups: u32,
    _pad: [u32; 3],
}

fn chunks(cols: usize) -> usize {
    cols.div_ceil(CHUNK).max(1)
}

/// Elements of scratch [`reduce_rows`] needs for `rows` rows of `cols` columns.
pub fn reduce_scratch_len(rows: usize, cols: usize) -> usize {
    rows * chunks(cols)
}

/// A scratch tensor big enough for [`reduce_rows`] on `rows` x `cols`; reusable across calls of
/// that size or smaller.
pub fn reduce_scratch(gpu: &Gpu, rows: usize, cols: usize) -> Result<Tensor> {
    gpu.alloc(&[reduce_scratch_len(rows, cols)], DType::F32)
}

/// out[r] = reduction of row r of x viewed as [x.shape()[0], rest]. `out` needs exactly `rows`
/// elements (any shape); `scratch` at least [`reduce_scratch_len`] elements; neither may overlap
/// x or each other.
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
    let need = reduce_scratch_len(rows, cols);
    if scratch.numel() < need {
        return Err(GpuError::shape(
            op,
            format!(
                "scratch has {} elements, needs {need} for {rows} rows of {cols}",
                scratch.numel()
            ),
        ));
    }
    expect_disjoint(op, out, &[x, scratch])?;
    expect_disjoint(op, scratch, &[x])?;
    to_u32(op, "element count", x.numel())?;
    let p = Params {
        rows: to_u32(op, "rows", rows)?,
        cols: to_u32(op, "cols", cols)?,
        chunks: to_u32(op, "chunks", chunks(cols))?,
        op: r.code(),
        groups: to_u32(op, "partial count", need)?,
        _pad: [0; 3],
    };
    let constants = [("WG", WG as f64), ("CHUNK", CHUNK as f64)];
    let params = Bind::Params(bytemuck::bytes_of(&p));
    let groups = rec.gpu().grid(p.groups);
    rec.dispatch(
        &Kernel::new("reduce", "reduce_partials").with(&constants),
        &[params, Bind::Tensor(x), Bind::Tensor(scratch)],
        groups,
    )?;
    let groups = rec.gpu().grid(p.rows);
    rec.dispatch(
        &Kernel::new("reduce", "reduce_finish").with(&constants),
        &[params, Bind::Tensor(scratch), Bind::Tensor(out)],
        groups,
    )
}
