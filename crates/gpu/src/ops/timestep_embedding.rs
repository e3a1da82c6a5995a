//! Sinusoidal timestep embedding (guided-diffusion's `timestep_embedding`, max_period 10000).

use bytemuck::{Pod, Zeroable};

use super::{expect_disjoint, expect_f32, expect_rank, to_u32};
use crate::error::{GpuError, Result};
use crate::kernels::{Bind, Kernel};
use crate::recorder::Recorder;
use crate::tensor::Tensor;

const WG: u32 = 256;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    total: u32,
    dim: u32,
    half: u32,
    _pad: u32,
}

/// `out[n, :] = [cos(t[n] * freq), sin(t[n] * freq)]` (cosines first) with half = dim / 2,
/// `freq[i] = exp(-ln(10000) * i / half)`, and a trailing zero column when dim is odd. t is `[N]`
/// (float timesteps), out is [N, dim]. The argument is the f32 product t * freq, as in PyTorch.
pub fn timestep_embedding(rec: &mut Recorder, t: &Tensor, out: &Tensor) -> Result<()> {
    let op = "timestep_embedding";
    expect_rank(op, "t", t, 1)?;
    expect_rank(op, "out", out, 2)?;
    expect_f32(op, "t", t)?;
    expect_f32(op, "out", out)?;
    let (n, dim) = (out.shape()[0], out.shape()[1]);
    if t.shape()[0] != n {
        return Err(GpuError::shape(
            op,
            format!(
                "out {:?} must have one row per timestep of t {:?}",
                out.shape(),
                t.shape()
            ),
        ));
    }
    expect_disjoint(op, out, &[t])?;
    let params = Params {
        total: to_u32(op, "output element count", out.numel())?,
        dim: to_u32(op, "dim", dim)?,
        half: (dim / 2) as u32,
        _pad: 0,
    };
    rec.dispatch(
        &Kernel::new("timestep_embedding", "timestep_embedding").with(&[("WG", WG as f64)]),
        &[
            Bind::Params(bytemuck::bytes_of(&params)),
            Bind::Tensor(t),
            Bind::Tensor(out),
        ],
        rec.gpu().grid(params.total.div_ceil(WG)),
    )
}
