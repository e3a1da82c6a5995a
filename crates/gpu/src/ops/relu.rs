//! ReLU and the global average pool over the spatial axes, with their VJPs: the non-linearity
//! and the head of the EquiReg SmallCNN (`nn.ReLU`, `nn.AdaptiveAvgPool2d(1)`).

use bytemuck::{Pod, Zeroable};

use super::{expect_disjoint, expect_f32, expect_shape, to_u32};
use crate::error::{GpuError, Result};
use crate::kernels::{Bind, Kernel};
use crate::recorder::Recorder;
use crate::tensor::Tensor;

/// Invocations per workgroup; a power of two (the pool reduces with a tree).
const WG: u32 = 256;

/// Most loop iterations one pooling invocation may run, well below lavapipe's 65535.
const LOOP_BUDGET: usize = 24_000;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    n: u32,
    plane: u32,
    inv: f32,
    _pad: u32,
}

fn same_shape(op: &'static str, a: (&str, &Tensor), b: (&str, &Tensor)) -> Result<()> {
    expect_f32(op, a.0, a.1)?;
    expect_f32(op, b.0, b.1)?;
    expect_shape(op, b.0, b.1, a.1.shape())
}

fn dispatch(
    rec: &mut Recorder,
    entry: &'static str,
    p: Params,
    binds: &[Bind],
    groups: u32,
) -> Result<()> {
    if groups == 0 {
        return Ok(());
    }
    let groups = rec.gpu().grid(groups);
    rec.dispatch(
        &Kernel::new("relu", entry).with(&[("WG", WG as f64)]),
        &[&[Bind::Params(bytemuck::bytes_of(&p))], binds].concat(),
        groups,
    )
}

/// out = max(x, 0), elementwise; x and out have the same shape.
pub fn relu(rec: &mut Recorder, x: &Tensor, out: &Tensor) -> Result<()> {
    let op = "relu";
    same_shape(op, ("x", x), ("out", out))?;
    expect_disjoint(op, out, &[x])?;
    let n = to_u32(op, "element count", x.numel())?;
    let p = Params {
        n,
        plane: 1,
        inv: 0.0,
        _pad: 0,
    };
    dispatch(
        rec,
        "relu",
        p,
        &[Bind::Tensor(x), Bind::Tensor(out)],
        n.div_ceil(WG),
    )
}

/// The VJP of [`relu`] from its input x: dx = dy where x > 0, else 0 (PyTorch's convention at
/// x = 0). x, dy and dx have the same shape.
pub fn relu_vjp(rec: &mut Recorder, x: &Tensor, dy: &Tensor, dx: &Tensor) -> Result<()> {
    let op = "relu_vjp";
    same_shape(op, ("x", x), ("dy", dy))?;
    same_shape(op, ("x", x), ("dx", dx))?;
    expect_disjoint(op, dx, &[x, dy])?;
    let n = to_u32(op, "element count", x.numel())?;
    let p = Params {
        n,
        plane: 1,
        inv: 0.0,
        _pad: 0,
    };
    dispatch(
        rec,
        "relu_vjp",
        p,
        &[Bind::Tensor(x), Bind::Tensor(dy), Bind::Tensor(dx)],
        n.div_ceil(WG),
    )
}

/// (planes N * C, positions per plane) of x [N, C, S...], checking `small` is [N, C].
fn pool_dims(
    op: &'static str,
    big: (&str, &Tensor),
    small: (&str, &Tensor),
) -> Result<(usize, usize)> {
    let (bn, b) = big;
    let (sn, s) = small;
    let shape = b.shape();
    if shape.len() < 3 {
        return Err(GpuError::shape(
            op,
            format!("{bn} must be [N, C, S...] with spatial axes, got shape {shape:?}"),
        ));
    }
    expect_f32(op, bn, b)?;
    expect_f32(op, sn, s)?;
    expect_shape(op, sn, s, &shape[..2])?;
    to_u32(op, &format!("{bn} element count"), b.numel())?;
    let plane: usize = shape[2..].iter().product();
    if plane == 0 {
        return Err(GpuError::shape(
            op,
            format!("{bn} {shape:?} has no spatial positions to average"),
        ));
    }
    if plane.div_ceil(WG as usize) > LOOP_BUDGET {
        return Err(GpuError::shape(
            op,
            format!("planes of {plane} positions are too large to pool in one pass"),
        ));
    }
    Ok((shape[0] * shape[1], plane))
}

/// out[n, c] = the mean of x[n, c, ...] over all trailing (spatial) axes: x is [N, C, S...]
/// (e.g. [N, C, H, W]), out is [N, C]. A fixed reduction order: repeatable bit for bit.
pub fn global_avg_pool(rec: &mut Recorder, x: &Tensor, out: &Tensor) -> Result<()> {
    let op = "global_avg_pool";
    let (planes, plane) = pool_dims(op, ("x", x), ("out", out))?;
    expect_disjoint(op, out, &[x])?;
    let p = Params {
        n: planes as u32,
        plane: plane as u32,
        inv: (1.0 / plane as f64) as f32,
        _pad: 0,
    };
    dispatch(
        rec,
        "mean_pool",
        p,
        &[Bind::Tensor(x), Bind::Tensor(out)],
        p.n,
    )
}

/// The VJP of [`global_avg_pool`]: dx[n, c, ...] = dy[n, c] / S for every one of the S spatial
/// positions. dy is [N, C], dx is [N, C, S...].
pub fn global_avg_pool_vjp(rec: &mut Recorder, dy: &Tensor, dx: &Tensor) -> Result<()> {
    let op = "global_avg_pool_vjp";
    let (_, plane) = pool_dims(op, ("dx", dx), ("dy", dy))?;
    expect_disjoint(op, dx, &[dy])?;
    let n = dx.numel() as u32;
    let p = Params {
        n,
        plane: plane as u32,
        inv: (1.0 / plane as f64) as f32,
        _pad: 0,
    };
    dispatch(
        rec,
        "mean_pool_vjp",
        p,
        &[Bind::Tensor(dy), Bind::Tensor(dx)],
        n.div_ceil(WG),
    )
}
