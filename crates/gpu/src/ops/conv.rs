//! conv2d (f32, NCHW, zero padding, square stride) as an implicit GEMM with M = output channels,
//! N = output pixels, K = ci * kh * kw, plus an optional bias and a fused residual add.
//!
//! Kernels, by [`KernelPath`]:
//! - portable (`matmul.wgsl`): `conv_gemm`, workgroup-memory tiles with 4x4 register blocks, any
//!   kernel and stride; 1x1 stride-1 convolutions use the plain GEMM kernel;
//! - subgroup-8 (`conv2d.wgsl`, lavapipe): `conv3x3_s1` for 3x3 stride 1 (16 channels x 8 x 16
//!   pixels per subgroup, every input and weight loaded once per subgroup), `conv1ch_s1` for one
//!   input and one output channel at stride 1 (blur kernels applied per plane), `conv_any` for
//!   the other kernel sizes and strides, `gemm_sg` for 1x1 stride 1.

use bytemuck::{Pod, Zeroable};

use super::matmul::{GemmParams, HAS_BIAS, HAS_RES, portable_tiles, record_gemm};
use super::{expect_disjoint, expect_f32, expect_rank, expect_shape, to_u32};
use crate::error::{GpuError, Result};
use crate::kernels::{Bind, Kernel};
use crate::recorder::Recorder;
use crate::tensor::Tensor;

pub use super::matmul::KernelPath;

#[derive(Clone, Copy, Debug)]
pub struct Conv2dParams {
    pub stride: u32,
    pub padding: u32,
}

/// Mirrors `ConvParams` of both shader files.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
struct ConvParams {
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
    flags: u32,
    t0: u32,
    t1: u32,
    t2: u32,
    total: u32,
}

/// [N, Co, Ho, Wo] of a convolution of x [N, Ci, H, W] with w [Co, Ci, Kh, Kw]:
/// Ho = (H + 2 padding - Kh) / stride + 1, likewise Wo.
pub fn conv2d_out_shape(x: &[usize], w: &[usize], p: Conv2dParams) -> Result<[usize; 4]> {
    let op = "conv2d";
    let (&[n, ci, h, wd], &[co, wci, kh, kw]) = (x, w) else {
        return Err(GpuError::shape(
            op,
            format!("x and w must be 4-D, got {x:?} and {w:?}"),
        ));
    };
    if ci != wci {
        return Err(GpuError::shape(
            op,
            format!("x {x:?} has {ci} channels but w {w:?} expects {wci}"),
        ));
    }
    if ci == 0 || co == 0 || kh == 0 || kw == 0 {
        return Err(GpuError::shape(
            op,
            format!("empty channel or kernel dimension in x {x:?} / w {w:?}"),
        ));
    }
    if p.stride == 0 {
        return Err(GpuError::shape(op, "stride must be at least 1"));
    }
    let pad = p.padding as usize;
    let (hp, wp) = (h + 2 * pad, wd + 2 * pad);
    if kh > hp || kw > wp {
        return Err(GpuError::shape(
            op,
            format!(
                "kernel {kh}x{kw} is larger than the padded input {hp}x{wp} (x {x:?}, padding \
                 {pad})"
            ),
        ));
    }
    let s = p.stride as usize;
    Ok([n, co, (hp - kh) / s + 1, (wp - kw) / s + 1])
}

/// out = conv2d(x, w) (+ `bias[co]`) (+ residual), x [N, Ci, H, W], w [Co, Ci, Kh, Kw],
/// bias `[Co]`, residual and out [N, Co, Ho, Wo] (see [`conv2d_out_shape`]).
pub fn conv2d(
    rec: &mut Recorder,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    residual: Option<&Tensor>,
    out: &Tensor,
    p: Conv2dParams,
) -> Result<()> {
    conv2d_with(rec, x, w, bias, residual, out, p, KernelPath::Auto)
}

/// [`conv2d`] on a chosen kernel family.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_with(
    rec: &mut Recorder,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    residual: Option<&Tensor>,
    out: &Tensor,
    p: Conv2dParams,
    path: KernelPath,
) -> Result<()> {
    let op = "conv2d";
    expect_rank(op, "x", x, 4)?;
    expect_rank(op, "w", w, 4)?;
    let shape = conv2d_out_shape(x.shape(), w.shape(), p)?;
    expect_shape(op, "out", out, &shape)?;
    let mut inputs = vec![x, w];
    let mut flags = 0;
    if let Some(b) = bias {
        expect_shape(op, "bias", b, &shape[1..2])?;
        inputs.push(b);
        flags |= HAS_BIAS;
    }
    if let Some(r) = residual {
        expect_shape(op, "residual", r, &shape)?;
        inputs.push(r);
        flags |= HAS_RES;
    }
    for t in inputs.iter().chain([&out]) {
        expect_f32(op, "every tensor", t)?;
        to_u32(op, "element count", t.numel())?;
    }
    expect_disjoint(op, out, &inputs)?;
    let [n, co, ho, wo] = shape;
    if n == 0 {
        return Ok(());
    }
    let (xs, ws) = (x.shape(), w.shape());
    let u = |v: usize| v as u32; // bounded by the checked element counts
    let mut cp = ConvParams {
        n: u(n),
        ci: u(xs[1]),
        h: u(xs[2]),
        w: u(xs[3]),
        co: u(co),
        ho: u(ho),
        wo: u(wo),
        kh: u(ws[2]),
        kw: u(ws[3]),
        stride: p.stride,
        pad: p.padding,
        flags,
        ..Default::default()
    };
    let sg = path.use_subgroups(op, rec)?;
    let (kh, kw, s, pad) = (cp.kh, cp.kw, cp.stride, cp.pad);

    if kh == 1 && kw == 1 && s == 1 && pad == 0 {
        // A plain GEMM per image: out[b] = w [Co, Ci] * x[b] [Ci, H W], weights shared.
        let hw = cp.ho * cp.wo;
        let g = GemmParams {
            m: cp.co,
            n: hw,
            k: cp.ci,
            batch: cp.n,
            a_sm: cp.ci,
            a_sk: 1,
            b_sb: cp.ci * hw,
            b_sk: hw,
            b_sn: 1,
            o_sb: cp.co * hw,
            o_sm: hw,
            o_sn: 1,
            bias_sm: 1,
            flags,
            ..Default::default()
        };
        return record_gemm(rec, op, g, w, x, bias, residual, out, sg);
    }

    let total: u64;
    let (shader, entry, consts): (&'static str, &'static str, Vec<(&'static str, f64)>);
    if sg && cp.ci == 1 && cp.co == 1 && s == 1 {
        cp.t0 = cp.wo.div_ceil(32);
        cp.t1 = cp.ho.div_ceil(8);
        total = cp.t0 as u64 * cp.t1 as u64 * cp.n as u64;
        (shader, entry, consts) = ("conv2d", "conv1ch_s1", vec![]);
    } else if sg && kh == 3 && kw == 3 && s == 1 {
        cp.t0 = cp.wo.div_ceil(16);
        cp.t1 = cp.ho.div_ceil(8);
        cp.t2 = cp.co.div_ceil(16);
        total = cp.t0 as u64 * cp.t1 as u64 * cp.t2 as u64 * cp.n as u64;
        (shader, entry, consts) = ("conv2d", "conv3x3_s1", vec![]);
    } else if sg {
        // Up to 8 subgroups per workgroup (they share the channel block, not data).
        let l = &rec.gpu().caps().limits;
        let max_wg = l
            .max_compute_invocations_per_workgroup
            .min(l.max_compute_workgroup_size_x);
        let sgs = (max_wg / 8).clamp(1, 8);
        let rm = if cp.co > 8 { 2 } else { 1 };
        cp.t0 = cp.wo.div_ceil(4);
        let chunks = cp.n as u64 * cp.ho as u64 * cp.t0 as u64;
        cp.t1 = to_u32(op, "pixel chunk count", chunks as usize)?;
        cp.t2 = cp.co.div_ceil(8 * rm);
        total = cp.t2 as u64 * chunks.div_ceil(8 * sgs as u64);
        let c = vec![("SG", sgs as f64), ("RM", rm as f64), ("STRIDE", s as f64)];
        (shader, entry, consts) = ("conv2d", "conv_any", c);
    } else {
        let (ts, kt) = portable_tiles(rec);
        let cols = cp.n as u64 * cp.ho as u64 * cp.wo as u64;
        cp.t0 = to_u32(
            op,
            "pixel tile count",
            cols.div_ceil(4 * ts as u64) as usize,
        )?;
        cp.t1 = cp.co.div_ceil(4 * ts);
        total = cp.t0 as u64 * cp.t1 as u64;
        let c = vec![("TS", ts as f64), ("KT", kt as f64)];
        (shader, entry, consts) = ("matmul", "conv_gemm", c);
    }
    cp.total = to_u32(op, "workgroup count", total as usize)?;
    let groups = rec.gpu().grid(cp.total);
    rec.dispatch(
        &Kernel::new(shader, entry).with(&consts),
        &[
            Bind::Params(bytemuck::bytes_of(&cp)),
            Bind::Tensor(x),
            Bind::Tensor(w),
            Bind::Tensor(bias.unwrap_or(x)),
            Bind::Tensor(residual.unwrap_or(x)),
            Bind::Tensor(out),
        ],
        groups,
    )
}
