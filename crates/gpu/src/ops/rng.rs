//! Counter-based random numbers (Philox4x32-10): uniform in [0, 1) and standard normal f32.
//!
//! The scheme is fixed, so a draw is reproducible across runs, devices and shapes:
//! element `i` of a draw of `n` is word `i % 4` of
//! `philox4x32_10(counter = [i / 4, stream, offset, 0], key = [seed_lo, seed_hi])`
//! where `seed_lo`/`seed_hi` are the low/high 32 bits of `seed`.
//!
//! - `seed` picks the generator, `stream` separates independent uses within one run (e.g. initial
//!   noise vs. per-step noise), `offset` separates successive draws of one use (e.g. the sampling
//!   step). Different `(seed, stream, offset)` never share a Philox input.
//! - A draw of `n` elements is a prefix of any longer draw with the same `(seed, stream, offset)`;
//!   shapes do not matter, only the flat element index.
//! - Uniform: `(w >> 8) * 2^-24`, an exact f32 in [0, 1); the GPU matches
//!   [`crate::reference::rng::uniform`] bit for bit.
//! - Normal: Box-Muller on word pairs (0, 1) and (2, 3) of each block, with
//!   `u1 = ((w0 >> 8) + 1) * 2^-24` in (0, 1] and `u2 = (w1 >> 8) * 2^-24`; element `4b` is
//!   `sqrt(-2 ln u1) cos(2 pi u2)`, element `4b + 1` the sine, and likewise for words 2, 3.
//!   The shader evaluates ln, cos and sin with its own polynomials (the WGSL builtins' accuracy
//!   bounds are too loose), so results agree with the f64 reference to about 1e-6.

use bytemuck::{Pod, Zeroable};

use super::{expect_f32, to_u32};
use crate::error::{GpuError, Result};
use crate::kernels::{Bind, Kernel};
use crate::recorder::Recorder;
use crate::tensor::{DType, Tensor};

const WG: u32 = 256;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    n: u32,
    blocks: u32,
    seed_lo: u32,
    seed_hi: u32,
    stream: u32,
    offset: u32,
    _pad: [u32; 2],
}

fn draw(
    rec: &mut Recorder,
    op: &'static str,
    out: &Tensor,
    seed: u64,
    stream: u32,
    offset: u32,
) -> Result<()> {
    if op == "rng_bits" {
        if out.dtype() != DType::U32 {
            return Err(GpuError::shape(
                op,
                format!("out must be u32, got {:?}", out.dtype()),
            ));
        }
    } else {
        expect_f32(op, "out", out)?;
    }
    let n = to_u32(op, "element count", out.numel())?;
    let p = Params {
        n,
        blocks: n.div_ceil(4),
        seed_lo: seed as u32,
        seed_hi: (seed >> 32) as u32,
        stream,
        offset,
        _pad: [0; 2],
    };
    let groups = rec.gpu().grid(p.blocks.div_ceil(WG));
    rec.dispatch(
        &Kernel::new("rng", op).with(&[("WG", WG as f64)]),
        &[Bind::Params(bytemuck::bytes_of(&p)), Bind::Tensor(out)],
        groups,
    )
}

/// Fills `out` (any shape, f32) with uniforms in [0, 1); see the module docs for the scheme.
pub fn rng_uniform(
    rec: &mut Recorder,
    out: &Tensor,
    seed: u64,
    stream: u32,
    offset: u32,
) -> Result<()> {
    draw(rec, "rng_uniform", out, seed, stream, offset)
}

/// Fills `out` (any shape, f32) with standard normals; see the module docs for the scheme.
pub fn rng_normal(
    rec: &mut Recorder,
    out: &Tensor,
    seed: u64,
    stream: u32,
    offset: u32,
) -> Result<()> {
    draw(rec, "rng_normal", out, seed, stream, offset)
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct ItemParams {
    n: u32,
    item_len: u32,
    seed_lo: u32,
    seed_hi: u32,
    stream: u32,
    offset: u32,
    first_item: u32,
    _pad: u32,
}

/// Standard normals for a batch of items (`out` `[N, ...]`, item k = `out[k]`): element j of
/// item k is element j of the draw whose Philox counter has word 3 = `first_item + k` and offset
/// `offset + counter[0]` (see [`crate::reference::rng::normal_item`]). So an image gets the same
/// noise whatever its place in a batch, and `counter` (a `[1]` u32 tensor that GPU kernels
/// advance, e.g. the sampler's step counter) lets a loop draw fresh noise every step while its
/// params and bind groups stay the same: nothing is uploaded per step. Item 0 with a zero counter
/// equals [`rng_normal`].
pub fn rng_normal_items(
    rec: &mut Recorder,
    out: &Tensor,
    seed: u64,
    stream: u32,
    offset: u32,
    counter: &Tensor,
    first_item: u32,
) -> Result<()> {
    let op = "rng_normal_items";
    expect_f32(op, "out", out)?;
    if counter.dtype() != DType::U32 || counter.numel() == 0 {
        return Err(GpuError::shape(
            op,
            format!(
                "counter must be a non-empty u32 tensor, got {:?} {:?}",
                counter.dtype(),
                counter.shape()
            ),
        ));
    }
    let items = out.shape().first().copied().unwrap_or(0);
    if items == 0 || out.numel() == 0 {
        return Err(GpuError::shape(
            op,
            format!(
                "out must be a non-empty batch [N, ...], got {:?}",
                out.shape()
            ),
        ));
    }
    let p = ItemParams {
        n: to_u32(op, "element count", out.numel())?,
        item_len: (out.numel() / items) as u32,
        seed_lo: seed as u32,
        seed_hi: (seed >> 32) as u32,
        stream,
        offset,
        first_item,
        _pad: 0,
    };
    let groups = rec.gpu().grid(p.n.div_ceil(WG));
    rec.dispatch(
        &Kernel::new("rng", op).with(&[("WG", WG as f64)]),
        &[
            Bind::Params(bytemuck::bytes_of(&p)),
            Bind::Tensor(out),
            Bind::Tensor(counter),
        ],
        groups,
    )
}

/// Fills `out` (any shape, u32) with the raw Philox words: element `i` is word `i % 4` of the
/// block `i / 4` that [`rng_uniform`] and [`rng_normal`] also draw from.
pub fn rng_bits(
    rec: &mut Recorder,
    out: &Tensor,
    seed: u64,
    stream: u32,
    offset: u32,
) -> Result<()> {
    draw(rec, "rng_bits", out, seed, stream, offset)
}
