//! Elementwise ops on f32 tensors of any shape (flat): copy, affine scale, SiLU, clamp, add, mul,
//! axpby (also in place), fill, and a per-(sample, channel) bias add.

use bytemuck::{Pod, Zeroable};

use super::{expect_disjoint, expect_f32, to_u32};
use crate::error::{GpuError, Result};
use crate::kernels::{Bind, Kernel};
use crate::recorder::Recorder;
use crate::tensor::Tensor;

const WG: u32 = 256;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    n: u32,
    inner: u32,
    alpha: f32,
    beta: f32,
}

fn same_len(op: &'static str, a: &Tensor, b: &Tensor) -> Result<()> {
    if a.numel() != b.numel() {
        return Err(GpuError::shape(
            op,
            format!("element counts differ: {:?} vs {:?}", a.shape(), b.shape()),
        ));
    }
    expect_f32(op, "input", a)?;
    expect_f32(op, "input", b)
}

fn run(rec: &mut Recorder, entry: &'static str, p: Params, binds: &[Bind]) -> Result<()> {
    let groups = rec.gpu().grid(p.n.div_ceil(WG));
    rec.dispatch(
        &Kernel::new("elementwise", entry),
        &[&[Bind::Params(bytemuck::bytes_of(&p))], binds].concat(),
        groups,
    )
}

fn params(op: &'static str, n: usize, alpha: f32, beta: f32) -> Result<Params> {
    Ok(Params {
        n: to_u32(op, "element count", n)?,
        inner: 1,
        alpha,
        beta,
    })
}

fn unary(
    rec: &mut Recorder,
    op: &'static str,
    x: &Tensor,
    out: &Tensor,
    alpha: f32,
    beta: f32,
) -> Result<()> {
    same_len(op, x, out)?;
    expect_disjoint(op, out, &[x])?;
    let p = params(op, x.numel(), alpha, beta)?;
    run(rec, op, p, &[Bind::Tensor(x), Bind::Tensor(out)])
}

/// `vec4`: the op's twin over vec4s, run instead when the element count is a multiple of 4.
#[allow(clippy::too_many_arguments)]
fn binary(
    rec: &mut Recorder,
    op: &'static str,
    vec4: Option<&'static str>,
    a: &Tensor,
    b: &Tensor,
    out: &Tensor,
    alpha: f32,
    beta: f32,
) -> Result<()> {
    same_len(op, a, out)?;
    same_len(op, b, out)?;
    expect_disjoint(op, out, &[a, b])?;
    let mut p = params(op, a.numel(), alpha, beta)?;
    let entry = match vec4 {
        Some(entry) if p.n.is_multiple_of(4) => {
            p.n /= 4;
            entry
        }
        _ => op,
    };
    run(
        rec,
        entry,
        p,
        &[Bind::Tensor(a), Bind::Tensor(b), Bind::Tensor(out)],
    )
}

/// out = x
pub fn copy(rec: &mut Recorder, x: &Tensor, out: &Tensor) -> Result<()> {
    unary(rec, "copy", x, out, 0.0, 0.0)
}

/// out = alpha * x + beta
pub fn scale(rec: &mut Recorder, x: &Tensor, out: &Tensor, alpha: f32, beta: f32) -> Result<()> {
    unary(rec, "scale", x, out, alpha, beta)
}

/// out = x * sigmoid(x)
pub fn silu(rec: &mut Recorder, x: &Tensor, out: &Tensor) -> Result<()> {
    unary(rec, "silu", x, out, 0.0, 0.0)
}

/// out = clamp(x, lo, hi)
pub fn clamp(rec: &mut Recorder, x: &Tensor, out: &Tensor, lo: f32, hi: f32) -> Result<()> {
    if lo > hi {
        return Err(GpuError::shape("clamp", format!("lo {lo} > hi {hi}")));
    }
    unary(rec, "clamp_range", x, out, lo, hi)
}

/// out = a + b. Element counts of a multiple of 4 run `add4` over vec4s (same bits, a quarter
/// of the loads: the UNet's VJP accumulates its gradients with this).
pub fn add(rec: &mut Recorder, a: &Tensor, b: &Tensor, out: &Tensor) -> Result<()> {
    binary(rec, "add", Some("add4"), a, b, out, 0.0, 0.0)
}

/// out = a * b
pub fn mul(rec: &mut Recorder, a: &Tensor, b: &Tensor, out: &Tensor) -> Result<()> {
    binary(rec, "mul", None, a, b, out, 0.0, 0.0)
}

/// out = alpha * a + beta * b
pub fn axpby(
    rec: &mut Recorder,
    alpha: f32,
    a: &Tensor,
    beta: f32,
    b: &Tensor,
    out: &Tensor,
) -> Result<()> {
    binary(rec, "axpby", None, a, b, out, alpha, beta)
}

/// y = alpha * x + beta * y
pub fn axpby_inplace(
    rec: &mut Recorder,
    alpha: f32,
    x: &Tensor,
    beta: f32,
    y: &Tensor,
) -> Result<()> {
    same_len("axpby_inplace", x, y)?;
    expect_disjoint("axpby_inplace", y, &[x])?;
    let p = params("axpby_inplace", x.numel(), alpha, beta)?;
    run(rec, "axpby_inplace", p, &[Bind::Tensor(x), Bind::Tensor(y)])
}

/// out = value everywhere
pub fn fill(rec: &mut Recorder, out: &Tensor, value: f32) -> Result<()> {
    expect_f32("fill", "output", out)?;
    let p = params("fill", out.numel(), value, 0.0)?;
    run(rec, "fill", p, &[Bind::Tensor(out)])
}

/// out[n, c, ...] = x[n, c, ...] + bias[n, c]: x is [N, C, ...], bias has N*C elements.
pub fn add_channel_bias(rec: &mut Recorder, x: &Tensor, bias: &Tensor, out: &Tensor) -> Result<()> {
    let op = "add_channel_bias";
    same_len(op, x, out)?;
    expect_f32(op, "bias", bias)?;
    if x.shape().len() < 2 || bias.numel() != x.shape()[0] * x.shape()[1] {
        return Err(GpuError::shape(
            op,
            format!(
                "bias {:?} does not match [N, C] of x {:?}",
                bias.shape(),
                x.shape()
            ),
        ));
    }
    expect_disjoint(op, out, &[x, bias])?;
    let mut p = params(op, x.numel(), 0.0, 0.0)?;
    p.inner = to_u32(
        op,
        "plane size",
        x.shape()[2..].iter().product::<usize>().max(1),
    )?;
    run(
        rec,
        op,
        p,
        &[Bind::Tensor(x), Bind::Tensor(bias), Bind::Tensor(out)],
    )
}
