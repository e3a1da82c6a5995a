//! The input gradient of conv2d (the VJP with frozen weights): for stride 1, a forward conv of
//! dy with the transposed, spatially flipped weights (so it runs on the tuned conv kernels); for
//! other strides a direct kernel.

use bytemuck::{Pod, Zeroable};

use super::conv::{Conv2dParams, conv2d, conv2d_out_shape};
use super::{expect_disjoint, expect_f32, expect_rank, to_u32};
use crate::context::Gpu;
use crate::error::{GpuError, Result};
use crate::kernels::{Bind, Kernel};
use crate::recorder::Recorder;
use crate::tensor::{DType, Tensor};

const WG: u32 = 256;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
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
    total: u32,
}

/// The scratch tensor `conv2d_input_grad` needs for weights of shape [Co, Ci, Kh, Kw]: the
/// transposed, flipped weights [Ci, Co, Kh, Kw].
pub fn input_grad_scratch(gpu: &Gpu, w_shape: &[usize]) -> Result<Tensor> {
    if w_shape.len() != 4 {
        return Err(GpuError::shape(
            "conv2d_input_grad",
            format!("weights {w_shape:?} are not [Co, Ci, Kh, Kw]"),
        ));
    }
    gpu.alloc(
        &[w_shape[1], w_shape[0], w_shape[2], w_shape[3]],
        DType::F32,
    )
}

/// dx = d/dx sum(conv2d(x, w) * dy), for the forward conv with parameters `p` whose input had
/// dx's shape. `scratch` holds the transposed weights (see [`input_grad_scratch`]); it is
/// overwritten. Bias and residual of the forward do not enter the input gradient.
pub fn conv2d_input_grad(
    rec: &mut Recorder,
    dy: &Tensor,
    w: &Tensor,
    scratch: &Tensor,
    dx: &Tensor,
    p: Conv2dParams,
) -> Result<()> {
    let op = "conv2d_input_grad";
    for (what, t) in [("dy", dy), ("w", w), ("dx", dx), ("scratch", scratch)] {
        expect_rank(op, what, t, 4)?;
        expect_f32(op, what, t)?;
    }
    let (xs, ws, ys) = (dx.shape(), w.shape(), dy.shape());
    let want = conv2d_out_shape(xs, ws, p)?;
    if ys != want {
        return Err(GpuError::shape(
            op,
            format!("dy has shape {ys:?} but a conv of {xs:?} with weights {ws:?} gives {want:?}"),
        ));
    }
    if scratch.shape() != [ws[1], ws[0], ws[2], ws[3]] {
        return Err(GpuError::shape(
            op,
            format!(
                "scratch has shape {:?}, expected {:?}",
                scratch.shape(),
                [ws[1], ws[0], ws[2], ws[3]]
            ),
        ));
    }
    expect_disjoint(op, dx, &[dy, w, scratch])?;
    expect_disjoint(op, scratch, &[dy, w])?;
    let u = |what, v| to_u32(op, what, v);
    let mut params = Params {
        n: u("batch", xs[0])?,
        ci: u("input channels", xs[1])?,
        h: u("height", xs[2])?,
        w: u("width", xs[3])?,
        co: u("output channels", ws[0])?,
        ho: u("output height", ys[2])?,
        wo: u("output width", ys[3])?,
        kh: u("kernel height", ws[2])?,
        kw: u("kernel width", ws[3])?,
        stride: p.stride,
        pad: p.padding,
        total: 0,
    };
    // Stride 1 with padding at most K-1 on both axes is a forward conv with padding K-1-p.
    if p.stride == 1 && ws[2] == ws[3] && (p.padding as usize) < ws[2] {
        params.total = u("weight count", w.numel())?;
        let groups = rec.gpu().grid(params.total.div_ceil(WG));
        rec.dispatch(
            &Kernel::new("conv2d_vjp", "transpose_flip"),
            &[
                Bind::Params(bytemuck::bytes_of(&params)),
                Bind::Tensor(w),
                Bind::Tensor(scratch),
            ],
            groups,
        )?;
        let pad = ws[2] as u32 - 1 - p.padding;
        return conv2d(
            rec,
            dy,
            scratch,
            None,
            None,
            dx,
            Conv2dParams {
                stride: 1,
                padding: pad,
            },
        );
    }
    params.total = u("input elements", dx.numel())?;
    let groups = rec.gpu().grid(params.total.div_ceil(WG));
    rec.dispatch(
        &Kernel::new("conv2d_vjp", "input_grad_direct"),
        &[
            Bind::Params(bytemuck::bytes_of(&params)),
            Bind::Tensor(dy),
            Bind::Tensor(w),
            Bind::Tensor(dx),
        ],
        groups,
    )
}
