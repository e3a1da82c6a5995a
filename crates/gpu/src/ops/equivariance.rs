//! EquiReg's group actions and fused equivariance-error pass (shaders/equivariance.wgsl).
//!
//! A group element is a dihedral element of the square followed by a cyclic translation
//! ([`Element`]). It is drawn on the GPU ([`draw_element`]) from the sampler's step counter into
//! a 4-word u32 tensor that the other kernels read, so the element changes every step while the
//! recorded dispatches, params and bind groups stay the same. Every action is a pixel
//! permutation: applied by indexing, with its inverse as its adjoint.

use bytemuck::{Pod, Zeroable};

use super::{expect_f32, to_u32};
use crate::error::{GpuError, Result};
use crate::kernels::{Bind, Kernel};
use crate::recorder::Recorder;
use crate::tensor::{DType, Tensor};

const WG: u32 = 256;

/// The eight symmetries of the square, torch.rot90's convention (counter-clockwise for k = 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dihedral {
    Identity = 0,
    Rot90 = 1,
    Rot180 = 2,
    Rot270 = 3,
    /// Mirror along W.
    FlipH = 4,
    /// Mirror along H.
    FlipV = 5,
    Transpose = 6,
    AntiTranspose = 7,
}

impl Dihedral {
    pub const ALL: [Dihedral; 8] = [
        Dihedral::Identity,
        Dihedral::Rot90,
        Dihedral::Rot180,
        Dihedral::Rot270,
        Dihedral::FlipH,
        Dihedral::FlipV,
        Dihedral::Transpose,
        Dihedral::AntiTranspose,
    ];

    pub fn code(self) -> u32 {
        self as u32
    }

    pub fn inverse(self) -> Dihedral {
        match self {
            Dihedral::Rot90 => Dihedral::Rot270,
            Dihedral::Rot270 => Dihedral::Rot90,
            d => d,
        }
    }

    /// Whether the element maps rows to columns, so that it needs a square grid.
    pub fn needs_square(self) -> bool {
        matches!(
            self,
            Dihedral::Rot90 | Dihedral::Rot270 | Dihedral::Transpose | Dihedral::AntiTranspose
        )
    }

    /// The source pixel of output pixel (i, j): `out[i, j] = x[source(i, j)]`.
    pub fn source(self, i: usize, j: usize, h: usize, w: usize) -> (usize, usize) {
        match self {
            Dihedral::Identity => (i, j),
            Dihedral::Rot90 => (j, w - 1 - i),
            Dihedral::Rot180 => (h - 1 - i, w - 1 - j),
            Dihedral::Rot270 => (h - 1 - j, i),
            Dihedral::FlipH => (i, w - 1 - j),
            Dihedral::FlipV => (h - 1 - i, j),
            Dihedral::Transpose => (j, i),
            Dihedral::AntiTranspose => (w - 1 - j, h - 1 - i),
        }
    }

    /// `self . other` (other acts first), found by its action on a 3x3 grid.
    pub fn compose(self, other: Dihedral) -> Dihedral {
        let n = 3;
        let probe = |d: Dihedral| -> Vec<(usize, usize)> {
            (0..n * n).map(|q| d.source(q / n, q % n, n, n)).collect()
        };
        // (a . b)(x)[q] = b(x)[src_a(q)] = x[src_b(src_a(q))].
        let want: Vec<(usize, usize)> = (0..n * n)
            .map(|q| {
                let (i, j) = self.source(q / n, q % n, n, n);
                other.source(i, j, n, n)
            })
            .collect();
        *Dihedral::ALL
            .iter()
            .find(|d| probe(**d) == want)
            .expect("the dihedral group is closed under composition")
    }
}

/// A group element: `g(x) = roll(D(x), (dy, dx))`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Element {
    pub dihedral: Dihedral,
    pub dy: i32,
    pub dx: i32,
}

impl Element {
    /// The 4-word GPU encoding [code, dy, dx, index].
    pub fn words(self, index: u32) -> [u32; 4] {
        [self.dihedral.code(), self.dy as u32, self.dx as u32, index]
    }

    pub fn from_words(w: [u32; 4]) -> Result<Element> {
        let dihedral = *Dihedral::ALL.get(w[0] as usize).ok_or_else(|| {
            GpuError::shape("group element", format!("unknown dihedral code {}", w[0]))
        })?;
        Ok(Element {
            dihedral,
            dy: w[1] as i32,
            dx: w[2] as i32,
        })
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
struct Params {
    n: u32,
    item: u32,
    h: u32,
    w: u32,
    mode: u32,
    accumulate: u32,
    src_off: u32,
    dst_off: u32,
    form: u32,
    reduction: u32,
    alpha: f32,
    shift_div: u32,
    seed_lo: u32,
    seed_hi: u32,
    stream: u32,
    n_elements: u32,
    max_shift: u32,
    shift_multiple: u32,
    _pad: [u32; 2],
}

fn dispatch(
    rec: &mut Recorder,
    entry: &'static str,
    p: &Params,
    binds: &[Bind],
    groups: [u32; 3],
) -> Result<()> {
    rec.dispatch(
        &Kernel::new("equivariance", entry).with(&[("WG", WG as f64)]),
        &[&[Bind::Params(bytemuck::bytes_of(p))], binds].concat(),
        groups,
    )
}

fn expect_u32(op: &'static str, what: &str, t: &Tensor, len: Option<usize>) -> Result<()> {
    if t.dtype() != DType::U32 || len.is_some_and(|l| t.numel() != l) || t.numel() == 0 {
        return Err(GpuError::shape(
            op,
            format!(
                "{what} must be {} u32, got {:?} {:?}",
                len.map_or("non-empty".to_string(), |l| l.to_string()),
                t.dtype(),
                t.shape()
            ),
        ));
    }
    Ok(())
}

/// How to draw elements: uniformly from `elements` (a `[E]` u32 tensor of dihedral codes), then
/// `dy`, `dx` each uniform in `{-max_shift..=max_shift} * shift_multiple`.
#[derive(Clone, Copy, Debug)]
pub struct DrawSpec {
    pub seed: u64,
    pub stream: u32,
    pub max_shift: u32,
    pub shift_multiple: u32,
}

/// Draws the element of the current step (`step`, a `[1]` u32 counter) into `g` (`[4]` u32):
/// Philox block (0, stream, step, 0) with the seed as key; word 0 picks the element, words 1, 2
/// the shifts (a modulo draw: its bias is below 2^-20 for any table this small).
pub fn draw_element(
    rec: &mut Recorder,
    elements: &Tensor,
    step: &Tensor,
    g: &Tensor,
    spec: DrawSpec,
) -> Result<()> {
    let op = "draw_element";
    expect_u32(op, "elements", elements, None)?;
    expect_u32(op, "step", step, Some(1))?;
    expect_u32(op, "g", g, Some(4))?;
    let p = Params {
        seed_lo: spec.seed as u32,
        seed_hi: (spec.seed >> 32) as u32,
        stream: spec.stream,
        n_elements: to_u32(op, "elements", elements.numel())?,
        max_shift: spec.max_shift,
        shift_multiple: spec.shift_multiple.max(1),
        ..Params::default()
    };
    dispatch(
        rec,
        op,
        &p,
        &[Bind::Tensor(elements), Bind::Tensor(step), Bind::Tensor(g)],
        [1, 1, 1],
    )
}

/// Which map [`transform`] applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Identity,
    Forward,
    Inverse,
}

/// A batch view for [`transform`]: `count` items of `x` from item `src_item` go to `out` from
/// item `dst_item`.
#[derive(Clone, Copy, Debug)]
pub struct Items {
    pub src_item: usize,
    pub dst_item: usize,
    pub count: usize,
}

/// Shape facts of a [C, H, W] item grid; `shift_div` divides the element's shifts on it.
fn grid_params(op: &'static str, t: &Tensor, shift_div: u32) -> Result<Params> {
    let s = t.shape();
    if s.len() != 4 {
        return Err(GpuError::shape(
            op,
            format!("tensors must be [N, C, H, W], got {s:?}"),
        ));
    }
    if shift_div == 0 {
        return Err(GpuError::shape(op, "shift_div must be >= 1"));
    }
    Ok(Params {
        item: to_u32(op, "item size", s[1] * s[2] * s[3])?,
        h: s[2] as u32,
        w: s[3] as u32,
        shift_div,
        ..Params::default()
    })
}

/// `out[dst + k] (+)= M(x[src + k])` for k < count, M = identity, g or g^-1 (g from the
/// `[4]` tensor); x and out are `[*, C, H, W]` with the same item shape. Rotations and
/// transposes need H = W: the caller checks its group against the grid (see
/// [`Dihedral::needs_square`]).
#[allow(clippy::too_many_arguments)]
pub fn transform(
    rec: &mut Recorder,
    g: &Tensor,
    x: &Tensor,
    out: &Tensor,
    action: Action,
    items: Items,
    accumulate: bool,
    shift_div: u32,
) -> Result<()> {
    let op = "transform";
    expect_u32(op, "g", g, Some(4))?;
    expect_f32(op, "x", x)?;
    expect_f32(op, "out", out)?;
    let mut p = grid_params(op, x, shift_div)?;
    if x.shape()[1..] != out.shape()[1..] {
        return Err(GpuError::shape(
            op,
            format!(
                "x {:?} and out {:?} must have the same item shape",
                x.shape(),
                out.shape()
            ),
        ));
    }
    if items.src_item + items.count > x.shape()[0] || items.dst_item + items.count > out.shape()[0]
    {
        return Err(GpuError::shape(
            op,
            format!(
                "items {items:?} out of range for x {:?}, out {:?}",
                x.shape(),
                out.shape()
            ),
        ));
    }
    if x.overlaps(out) {
        return Err(GpuError::shape(op, "out must not share memory with x"));
    }
    p.n = items.count as u32;
    p.mode = match action {
        Action::Identity => 0,
        Action::Forward => 1,
        Action::Inverse => 2,
    };
    p.accumulate = accumulate as u32;
    p.src_off = items.src_item as u32;
    p.dst_off = items.dst_item as u32;
    let total = to_u32(op, "element count", items.count * p.item as usize)?;
    let groups = rec.gpu().grid(total.div_ceil(WG));
    dispatch(
        rec,
        op,
        &p,
        &[Bind::Tensor(g), Bind::Tensor(x), Bind::Tensor(out)],
        groups,
    )
}

/// The residual's form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// `r = rho(g) f(x) - f(g x)`: `f_out` holds `[f(x); f(g x)]` (2N items).
    Equi,
    /// `r = x - g^-1 f(g x)`: `f_out` holds `f(g x)` (N items) with x's shape.
    EquiPlus,
}

/// The reduction of the residual, per sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reduce {
    /// L2 norm.
    Norm,
    /// Squared L2 norm.
    SqNorm,
    /// Mean of squares.
    Mse,
}

/// The fused pass's inputs.
#[derive(Clone, Copy)]
pub struct Residual<'a> {
    pub g: &'a Tensor,
    /// f's output, `[2N, C', H', W']` (equi) or `[N, C, H, W]` (equi_plus).
    pub f_out: &'a Tensor,
    /// x (the clean estimate) `[N, C, H, W]`; read by equi_plus only, but always bound.
    pub x: &'a Tensor,
    pub form: Form,
    /// rho(g) = g on f's grid (true), or the identity (f returns a vector: invariance).
    pub rho_is_g: bool,
    /// The element's shifts are divided by this on f's grid (its downsampling factor).
    pub shift_div: u32,
}

impl Residual<'_> {
    fn params(&self, op: &'static str) -> Result<Params> {
        expect_u32(op, "g", self.g, Some(4))?;
        expect_f32(op, "f_out", self.f_out)?;
        expect_f32(op, "x", self.x)?;
        let f = self.f_out.shape();
        let n = self.x.shape().first().copied().unwrap_or(0);
        let mut p = if f.len() == 4 {
            grid_params(op, self.f_out, self.shift_div)?
        } else if f.len() == 2 && !self.rho_is_g {
            Params {
                item: to_u32(op, "item size", f[1])?,
                h: 1,
                w: f[1] as u32,
                shift_div: 1,
                ..Params::default()
            }
        } else {
            return Err(GpuError::shape(
                op,
                format!(
                    "f's output must be [N, C, H, W], or [N, D] with rho = identity; got {f:?}"
                ),
            ));
        };
        let want_items = match self.form {
            Form::Equi => 2 * n,
            Form::EquiPlus => n,
        };
        if n == 0 || f[0] != want_items {
            return Err(GpuError::shape(
                op,
                format!(
                    "f's output has {} items; {:?} with {n} samples needs {want_items}",
                    f[0], self.form
                ),
            ));
        }
        if self.form == Form::EquiPlus && f != self.x.shape() {
            return Err(GpuError::shape(
                op,
                format!(
                    "equi_plus compares x {:?} with g^-1 f(g x), so f must keep x's shape, got {f:?}",
                    self.x.shape()
                ),
            ));
        }
        p.n = n as u32;
        p.form = (self.form == Form::EquiPlus) as u32;
        p.mode = self.rho_is_g as u32;
        Ok(p)
    }
}

/// `sq[n] = ||r_n||^2` per sample (one workgroup per sample, a fixed summation order).
pub fn equi_norms(rec: &mut Recorder, r: Residual, sq: &Tensor) -> Result<()> {
    let op = "equi_norms";
    let p = r.params(op)?;
    expect_f32(op, "sq", sq)?;
    if sq.numel() != p.n as usize {
        return Err(GpuError::shape(
            op,
            format!("sq must hold {} values, got {:?}", p.n, sq.shape()),
        ));
    }
    dispatch(
        rec,
        op,
        &p,
        &[
            Bind::Tensor(r.g),
            Bind::Tensor(r.f_out),
            Bind::Tensor(r.x),
            Bind::Tensor(sq),
        ],
        [p.n, 1, 1],
    )
}

/// Cotangents of `alpha * red(r)`: `d_f_out` (f_out's shape, every element written) and, for
/// equi_plus, the direct term written (or added, `accumulate`) into `dx` (x's shape; bound but
/// untouched for equi). `sq` comes from [`equi_norms`].
#[allow(clippy::too_many_arguments)]
pub fn equi_cotangent(
    rec: &mut Recorder,
    r: Residual,
    sq: &Tensor,
    reduce: Reduce,
    alpha: f32,
    d_f_out: &Tensor,
    dx: &Tensor,
    accumulate: bool,
) -> Result<()> {
    let op = "equi_cotangent";
    let mut p = r.params(op)?;
    expect_f32(op, "d_f_out", d_f_out)?;
    expect_f32(op, "dx", dx)?;
    if d_f_out.shape() != r.f_out.shape() || dx.shape() != r.x.shape() {
        return Err(GpuError::shape(
            op,
            format!(
                "d_f_out {:?} / dx {:?} must match f_out {:?} / x {:?}",
                d_f_out.shape(),
                dx.shape(),
                r.f_out.shape(),
                r.x.shape()
            ),
        ));
    }
    for (name, t) in [("d_f_out", d_f_out), ("dx", dx)] {
        if [r.f_out, r.x, sq].iter().any(|i| i.overlaps(t)) {
            return Err(GpuError::shape(
                op,
                format!("{name} must not share memory with the inputs"),
            ));
        }
    }
    if d_f_out.overlaps(dx) {
        return Err(GpuError::shape(op, "d_f_out and dx must not overlap"));
    }
    p.reduction = reduce as u32;
    p.alpha = alpha;
    p.accumulate = accumulate as u32;
    let total = to_u32(op, "element count", p.n as usize * p.item as usize)?;
    let groups = rec.gpu().grid(total.div_ceil(WG));
    dispatch(
        rec,
        op,
        &p,
        &[
            Bind::Tensor(r.g),
            Bind::Tensor(r.f_out),
            Bind::Tensor(r.x),
            Bind::Tensor(sq),
            Bind::Tensor(d_f_out),
            Bind::Tensor(dx),
        ],
        groups,
    )
}

/// `out[n] = alpha * red(r_n)` from the squared norms; `item` is the residual's length per
/// sample (for mse).
pub fn penalty(
    rec: &mut Recorder,
    sq: &Tensor,
    out: &Tensor,
    reduce: Reduce,
    alpha: f32,
    item: usize,
) -> Result<()> {
    let op = "penalty";
    expect_f32(op, "sq", sq)?;
    expect_f32(op, "out", out)?;
    if sq.numel() != out.numel() || sq.overlaps(out) {
        return Err(GpuError::shape(
            op,
            "out must hold one value per sample and not overlap sq",
        ));
    }
    let p = Params {
        n: to_u32(op, "samples", sq.numel())?,
        item: to_u32(op, "item", item)?,
        reduction: reduce as u32,
        alpha,
        shift_div: 1,
        ..Params::default()
    };
    dispatch(
        rec,
        op,
        &p,
        &[Bind::Tensor(sq), Bind::Tensor(out)],
        [p.n.div_ceil(WG), 1, 1],
    )
}
