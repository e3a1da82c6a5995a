//! Group transforms of the spatial axes of [N, C, H, W] tensors: the symmetry-group elements
//! EquiReg averages over (flips, quarter turns, transpose, cyclic translations). Each is an exact
//! permutation of the elements, done by one gather kernel.

use bytemuck::{Pod, Zeroable};

use super::{expect_disjoint, expect_f32, expect_rank, expect_shape, to_u32};
use crate::error::{GpuError, Result};
use crate::kernels::{Bind, Kernel};
use crate::recorder::Recorder;
use crate::tensor::Tensor;

const WG: u32 = 256;

/// One transform of the last two axes (H, W).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transform {
    Identity,
    /// Mirror along the W axis: `out[.., i, j] = x[.., i, W-1-j]`.
    FlipH,
    /// Mirror along the H axis: `out[.., i, j] = x[.., H-1-i, j]`.
    FlipV,
    /// `torch.rot90(x, k, dims=(-2, -1))`: k counter-clockwise quarter turns. Any k is taken
    /// modulo 4; k = 1 gives `out[.., i, j] = x[.., j, W-1-i]` with output [.., W, H].
    Rot90 {
        k: u32,
    },
    /// Swap H and W: `out[.., i, j] = x[.., j, i]`.
    Transpose,
    /// Cyclic shift, `torch.roll(x, (dy, dx), dims=(-2, -1))`:
    /// `out[.., i, j] = x[.., (i - dy) mod H, (j - dx) mod W]`. Shifts may be negative or larger
    /// than the size; `i32::MIN` is rejected because its inverse does not fit in an i32.
    Translate {
        dy: i32,
        dx: i32,
    },
}

impl Transform {
    /// The transform that undoes this one: `t` then `t.inverse()` is the identity.
    pub fn inverse(self) -> Transform {
        match self {
            Transform::Rot90 { k } => Transform::Rot90 { k: (4 - k % 4) % 4 },
            Transform::Translate { dy, dx } => Transform::Translate {
                dy: dy.wrapping_neg(),
                dx: dx.wrapping_neg(),
            },
            // Flips and the transpose are involutions.
            t => t,
        }
    }

    /// Output (H, W) for an input plane of h x w.
    pub fn output_hw(self, h: usize, w: usize) -> (usize, usize) {
        match self {
            Transform::Transpose => (w, h),
            Transform::Rot90 { k } if k % 2 == 1 => (w, h),
            _ => (h, w),
        }
    }

    /// The shader's (code, a, b) for an h x w input; shifts are reduced to [0, size).
    fn code(self, h: usize, w: usize) -> (u32, u32, u32) {
        // rem_euclid in i64 so a negative shift wraps onto [0, size) without overflow.
        let wrap = |s: i32, n: usize| (s as i64).rem_euclid(n.max(1) as i64) as u32;
        match self {
            Transform::Identity => (0, 0, 0),
            Transform::FlipH => (1, 0, 0),
            Transform::FlipV => (2, 0, 0),
            Transform::Rot90 { k } => (3, k % 4, 0),
            Transform::Transpose => (4, 0, 0),
            Transform::Translate { dy, dx } => (5, wrap(dy, h), wrap(dx, w)),
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    n: u32,
    code: u32,
    h: u32,
    w: u32,
    a: u32,
    b: u32,
    _pad: [u32; 2],
}

/// out = t(x) for x of shape [N, C, H, W]; out must be [N, C, H', W'] with
/// `(H', W') = t.output_hw(H, W)` and must not overlap x.
pub fn apply_transform(rec: &mut Recorder, x: &Tensor, out: &Tensor, t: Transform) -> Result<()> {
    let op = "apply_transform";
    expect_rank(op, "x", x, 4)?;
    expect_f32(op, "x", x)?;
    expect_f32(op, "out", out)?;
    if let Transform::Translate { dy, dx } = t
        && (dy == i32::MIN || dx == i32::MIN)
    {
        return Err(GpuError::shape(
            op,
            "a translation of i32::MIN has no representable inverse",
        ));
    }
    let (n, c, h, w) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
    let (ho, wo) = t.output_hw(h, w);
    expect_shape(op, "out", out, &[n, c, ho, wo])?;
    expect_disjoint(op, out, &[x])?;
    let (code, a, b) = t.code(h, w);
    let p = Params {
        n: to_u32(op, "element count", out.numel())?,
        code,
        h: to_u32(op, "H", h)?,
        w: to_u32(op, "W", w)?,
        a,
        b,
        _pad: [0; 2],
    };
    let groups = rec.gpu().grid(p.n.div_ceil(WG));
    rec.dispatch(
        &Kernel::new("transforms", "apply_transform").with(&[("WG", WG as f64)]),
        &[
            Bind::Params(bytemuck::bytes_of(&p)),
            Bind::Tensor(x),
            Bind::Tensor(out),
        ],
        groups,
    )
}
