//! The input gradient of conv2d with frozen weights, dx = d/dx sum(conv2d(x, w) * dy): an
//! implicit GEMM with M = input channels, N = input pixels, K = co * kh * kw that reads the
//! weights transposed over (co, ci) and flipped spatially in place (no weight copy).
//!
//! Kernels, by [`KernelPath`]:
//! - portable (`conv2d_vjp.wgsl`): `vjp_gemm`, workgroup-memory tiles with 4x4 register blocks,
//!   any kernel size and stride;
//! - subgroup-8 (`conv2d_vjp_sg.wgsl`, lavapipe): `vjp3x3_s1` for 3x3 stride 1 (a forward 3x3
//!   convolution of dy with the rotated weights, 16 channels x 8 x 16 pixels per subgroup),
//!   `vjp_any` for the other sizes and strides (one dispatch per residue class of dx modulo the
//!   stride, so that no multiply is spent on taps that miss);
//! - both: 1x1 stride 1 without padding is the GEMM `dx[n] = w^T dy[n]` of [`super::matmul`].
//!
//! Long sums are split over several dispatches (the later ones add to dx) so that no invocation
//! runs more than `LOOP_BUDGET` loop iterations: lavapipe silently ends loops after 65535
//! iterations in one invocation.

use bytemuck::{Pod, Zeroable};

use super::conv::{Conv2dParams, conv2d_out_shape};
use super::matmul::{GemmParams, portable_tiles, record_gemm};
use super::{expect_disjoint, expect_f32, expect_rank, to_u32};
use crate::error::{GpuError, Result};
use crate::kernels::{Bind, Kernel};
use crate::recorder::Recorder;
use crate::tensor::Tensor;

pub use super::matmul::KernelPath;

/// Most loop iterations (all loops together) one invocation may run, with a wide margin below
/// lavapipe's 65535.
const LOOP_BUDGET: u64 = 24_000;

/// Mirrors `VjpParams` of both shader files.
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
    accum: u32,
    r0: u32,
    r1: u32,
    cy: u32,
    cx: u32,
    ha: u32,
    wa: u32,
    t0: u32,
    t1: u32,
    t2: u32,
    total: u32,
    _pad: [u32; 2],
}

/// dx = d/dx sum(conv2d(x, w) * dy) for the forward `conv2d(x, w)` with stride and padding `p`
/// (weights frozen): dy [N, Co, Ho, Wo], w [Co, Ci, Kh, Kw], dx [N, Ci, H, W], overwritten
/// entirely. H and W are the forward's input size, taken from dx; dy must have the forward's
/// output size (Ho = (H + 2 padding - Kh) / stride + 1, likewise Wo), else this is an error.
pub fn conv2d_input_grad(
    rec: &mut Recorder,
    dy: &Tensor,
    w: &Tensor,
    dx: &Tensor,
    p: Conv2dParams,
) -> Result<()> {
    conv2d_input_grad_with(rec, dy, w, dx, p, KernelPath::Auto)
}

/// [`conv2d_input_grad`] on a chosen kernel family.
pub fn conv2d_input_grad_with(
    rec: &mut Recorder,
    dy: &Tensor,
    w: &Tensor,
    dx: &Tensor,
    p: Conv2dParams,
    path: KernelPath,
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
    let sg = path.use_subgroups(op, rec)?;
    if dx.numel() == 0 {
        return Ok(());
    }
    let u = |v: usize| v as u32; // bounded by the checked element counts
    let vp = VjpParams {
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
    let (k1, s, pad) = (vp.kh == 1 && vp.kw == 1, vp.stride, vp.pad);
    if k1 && s == 1 && pad == 0 {
        // dx[b] [Ci, H W] = w^T [Ci, Co] * dy[b] [Co, H W], weights shared by the batch.
        let hw = vp.h * vp.w;
        let g = GemmParams {
            m: vp.ci,
            n: hw,
            k: vp.co,
            batch: vp.n,
            a_sm: 1,
            a_sk: vp.ci,
            b_sb: vp.co * hw,
            b_sk: hw,
            b_sn: 1,
            o_sb: vp.ci * hw,
            o_sm: hw,
            o_sn: 1,
            ..Default::default()
        };
        return record_gemm(rec, op, g, w, dy, None, None, dx, sg);
    }
    if sg && vp.kh == 3 && vp.kw == 3 && s == 1 {
        let mut q = vp;
        q.t0 = q.w.div_ceil(16);
        q.t1 = q.h.div_ceil(8);
        q.t2 = q.ci.div_ceil(16);
        let total = q.t0 as u64 * q.t1 as u64 * q.t2 as u64 * q.n as u64;
        q.total = to_u32(op, "workgroup count", total as usize)?;
        // One loop iteration per output channel, 64 for the stores.
        let chunk = (LOOP_BUDGET - 64) as u32;
        let k = Kernel::new("conv2d_vjp_sg", "vjp3x3_s1");
        return record_split(rec, dy, w, dx, q, chunk, &k);
    }
    if sg {
        let classes = any_dispatches(rec, op, vp)?;
        // Empty when one output channel alone is too long a sum for vjp_any: vjp_gemm below
        // splits finer.
        if !classes.is_empty() {
            for (q, chunk, consts) in &classes {
                let k = Kernel::new("conv2d_vjp_sg", "vjp_any").with(consts);
                record_split(rec, dy, w, dx, *q, *chunk, &k)?;
            }
            return Ok(());
        }
    }
    record_generic(rec, op, dy, w, dx, vp)
}

/// Records `q` over the output channels in pieces of `chunk`, the first overwriting dx and
/// the others adding to it.
fn record_split(
    rec: &mut Recorder,
    dy: &Tensor,
    w: &Tensor,
    dx: &Tensor,
    mut q: VjpParams,
    chunk: u32,
    kernel: &Kernel,
) -> Result<()> {
    q.r0 = 0;
    loop {
        q.r1 = q.co.min(q.r0.saturating_add(chunk));
        dispatch(rec, dy, w, dx, &q, kernel)?;
        if q.r1 >= q.co {
            return Ok(());
        }
        q.r0 = q.r1;
        q.accum = 1;
    }
}

fn dispatch(
    rec: &mut Recorder,
    dy: &Tensor,
    w: &Tensor,
    dx: &Tensor,
    q: &VjpParams,
    kernel: &Kernel,
) -> Result<()> {
    let groups = rec.gpu().grid(q.total);
    rec.dispatch(
        kernel,
        &[
            Bind::Params(bytemuck::bytes_of(q)),
            Bind::Tensor(dy),
            Bind::Tensor(w),
            Bind::Tensor(dx),
        ],
        groups,
    )
}

type ClassDispatch = (VjpParams, u32, Vec<(&'static str, f64)>);

/// The `vjp_any` dispatches, one per residue class (cy, cx) of dx modulo the stride that holds
/// pixels, each with its tiles and the output-channel chunk that keeps it within the loop
/// budget; empty when one output channel alone is over the budget.
fn any_dispatches(rec: &Recorder, op: &'static str, vp: VjpParams) -> Result<Vec<ClassDispatch>> {
    let s = vp.stride;
    let sgs = (rec
        .gpu()
        .caps()
        .limits
        .max_compute_invocations_per_workgroup
        / 8)
    .clamp(1, 8);
    let rm = if vp.ci > 8 { 2 } else { 1 };
    let consts = vec![("SG", sgs as f64), ("RM", rm as f64)];
    let mut out = Vec::new();
    for cy in 0..s.min(vp.h) {
        for cx in 0..s.min(vp.w) {
            let mut q = vp;
            (q.cy, q.cx) = (cy, cx);
            q.ha = (vp.h - cy).div_ceil(s);
            q.wa = (vp.w - cx).div_ceil(s);
            // Taps per axis that reach this class.
            let ku = (vp.kh + s - 1 - (cy + vp.pad) % s) / s;
            let kv = (vp.kw + s - 1 - (cx + vp.pad) % s) / s;
            let per_co = 1 + ku as u64 * (1 + kv as u64);
            // 2 x 8 channels x (1 + 4 pixels) for the stores.
            let room = LOOP_BUDGET - 80;
            if per_co > room {
                return Ok(Vec::new());
            }
            q.t0 = q.wa.div_ceil(4);
            let chunks = q.n as u64 * q.ha as u64 * q.t0 as u64;
            q.t1 = to_u32(op, "pixel chunk count", chunks as usize)?;
            q.t2 = q.ci.div_ceil(8 * rm);
            let total = q.t2 as u64 * chunks.div_ceil(8 * sgs as u64);
            q.total = to_u32(op, "workgroup count", total as usize)?;
            out.push((q, (room / per_co) as u32, consts.clone()));
        }
    }
    Ok(out)
}

/// `vjp_gemm` over k = (co, ky, kx) in pieces that keep every invocation within the loop
/// budget.
fn record_generic(
    rec: &mut Recorder,
    op: &'static str,
    dy: &Tensor,
    w: &Tensor,
    dx: &Tensor,
    mut q: VjpParams,
) -> Result<()> {
    let (ts, kt) = portable_tiles(rec);
    let cols = q.n as u64 * q.h as u64 * q.w as u64;
    q.t0 = to_u32(
        op,
        "pixel tile count",
        cols.div_ceil(4 * ts as u64) as usize,
    )?;
    q.t1 = q.ci.div_ceil(4 * ts);
    q.total = to_u32(op, "workgroup count", (q.t0 as u64 * q.t1 as u64) as usize)?;
    let k_all = to_u32(
        op,
        "co * kh * kw",
        q.co as usize * q.kh as usize * q.kw as usize,
    )?;
    // Per k slice: the slice loop, the staging loop and the multiply-add loop; 20 for the stores.
    let per_slice = 1 + (kt as u64 * 4 * ts as u64).div_ceil(ts as u64 * ts as u64) + kt as u64;
    let chunk = ((LOOP_BUDGET - 20) / per_slice) as u32 * kt;
    let consts = [("TS", ts as f64), ("KT", kt as f64)];
    let kernel = Kernel::new("conv2d_vjp", "vjp_gemm").with(&consts);
    q.r0 = 0;
    loop {
        q.r1 = k_all.min(q.r0.saturating_add(chunk));
        dispatch(rec, dy, w, dx, &q, &kernel)?;
        if q.r1 >= k_all {
            return Ok(());
        }
        q.r0 = q.r1;
        q.accum = 1;
    }
}
