//! 2-D complex FFT of a batch of images stored as interleaved f32 pairs `[B, H, W, 2]`,
//! orthonormal both ways (torch `norm="ortho"`), for any H and W: a mixed-radix Stockham
//! autosort FFT with radix-2/3/4/5 passes and a direct-DFT pass for other prime factors, one
//! dispatch per pass per axis. Also the fused shift/pad/magnitude kernels of phase retrieval.

use bytemuck::{Pod, Zeroable};

use super::{expect_disjoint, expect_f32, expect_shape, to_u32};
use crate::context::Gpu;
use crate::error::{GpuError, Result};
use crate::kernels::{Bind, Kernel};
use crate::recorder::Recorder;
use crate::tensor::Tensor;

const WG: u32 = 64;

/// Largest prime factor the direct-DFT pass accepts: one invocation loops over it, and lavapipe
/// stops loops past 65535 iterations.
pub const MAX_PRIME_FACTOR: usize = 65535;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PassParams {
    n: u32,
    inner: u32,
    ns: u32,
    radix: u32,
    total: u32,
    tw_off: u32,
    sign: f32,
    scale: f32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct ShiftParams {
    total: u32,
    h: u32,
    w: u32,
    big_h: u32,
    big_w: u32,
    top: u32,
    left: u32,
    sy: u32,
    sx: u32,
    _pad: [u32; 3],
}

/// The radices of the passes for a length: 4s first (fewest passes), then 2, 3, 5, then the
/// remaining primes in increasing order. Length 1 has no passes.
pub fn factorize(n: usize) -> Vec<usize> {
    let mut f = Vec::new();
    let mut m = n;
    for r in [4, 2, 3, 5] {
        while m.is_multiple_of(r) {
            f.push(r);
            m /= r;
        }
    }
    let mut d = 7;
    while m > 1 {
        if d * d > m {
            f.push(m);
            break;
        }
        while m.is_multiple_of(d) {
            f.push(d);
            m /= d;
        }
        d += 2;
    }
    f
}

/// One Stockham pass: radix and the product of the radices before it.
#[derive(Clone, Copy, Debug)]
struct Pass {
    radix: usize,
    ns: usize,
}

fn passes(n: usize) -> Vec<Pass> {
    let mut ns = 1;
    factorize(n)
        .into_iter()
        .map(|radix| {
            let p = Pass { radix, ns };
            ns *= radix;
            p
        })
        .collect()
}

/// A plan for 2-D FFTs of `H x W` images: the twiddle tables of both axes, computed in f64 and
/// uploaded once. Recording a transform allocates and uploads nothing on the GPU (past the
/// first recording, whose parameter buffers and bind groups are then cached).
pub struct Fft2Plan {
    h: usize,
    w: usize,
    /// (cos, sin)(2 pi m / H) for m < H, then the same for W.
    twiddles: Tensor,
    passes_h: Vec<Pass>,
    passes_w: Vec<Pass>,
}

impl Fft2Plan {
    pub fn new(gpu: &Gpu, h: usize, w: usize) -> Result<Fft2Plan> {
        let op = "fft2_plan";
        if h == 0 || w == 0 {
            return Err(GpuError::shape(
                op,
                format!("image size {h}x{w} must be positive"),
            ));
        }
        to_u32(op, "H * W * 2", h.saturating_mul(w).saturating_mul(2))?;
        for n in [h, w] {
            if let Some(&big) = factorize(n).iter().find(|&&f| f > MAX_PRIME_FACTOR) {
                return Err(GpuError::shape(
                    op,
                    format!("length {n} has the prime factor {big} > {MAX_PRIME_FACTOR}"),
                ));
            }
        }
        let mut table = Vec::with_capacity(2 * (h + w));
        for n in [h, w] {
            for m in 0..n {
                let a = 2.0 * std::f64::consts::PI * m as f64 / n as f64;
                table.push(a.cos() as f32);
                table.push(a.sin() as f32);
            }
        }
        let twiddles = gpu.upload(&[h + w, 2], &table)?;
        Ok(Fft2Plan {
            h,
            w,
            twiddles,
            passes_h: passes(h),
            passes_w: passes(w),
        })
    }

    pub fn height(&self) -> usize {
        self.h
    }

    pub fn width(&self) -> usize {
        self.w
    }

    /// Number of dispatches one transform records (passes of both axes, plus a copy when their
    /// count is odd).
    pub fn dispatch_count(&self) -> usize {
        let p = self.passes_h.len() + self.passes_w.len();
        p + p % 2
    }

    /// Records the forward orthonormal 2-D FFT of `data` `[B, H, W, 2]` in place; `scratch`
    /// (same shape, another buffer) is overwritten.
    pub fn forward(&self, rec: &mut Recorder, data: &Tensor, scratch: &Tensor) -> Result<()> {
        self.record(rec, data, scratch, -1.0)
    }

    /// Records the inverse orthonormal 2-D FFT (the adjoint of [`Fft2Plan::forward`]) in place.
    pub fn inverse(&self, rec: &mut Recorder, data: &Tensor, scratch: &Tensor) -> Result<()> {
        self.record(rec, data, scratch, 1.0)
    }

    fn record(&self, rec: &mut Recorder, data: &Tensor, scratch: &Tensor, sign: f32) -> Result<()> {
        let op = "fft2";
        expect_f32(op, "data", data)?;
        expect_f32(op, "scratch", scratch)?;
        let s = data.shape();
        if s.len() != 4 || s[1] != self.h || s[2] != self.w || s[3] != 2 {
            return Err(GpuError::shape(
                op,
                format!(
                    "data has shape {s:?}, expected [B, {}, {}, 2] for this plan",
                    self.h, self.w
                ),
            ));
        }
        expect_shape(op, "scratch", scratch, s)?;
        expect_disjoint(op, scratch, &[data])?;
        let b = s[0];
        let elems = to_u32(op, "element count", b * self.h * self.w * 2)? as usize / 2;
        let mut bufs = [data, scratch];
        let axes = [
            (&self.passes_w, self.w, 1usize, self.h as u32),
            (&self.passes_h, self.h, self.w, 0u32),
        ];
        for (axis_passes, n, inner, tw_off) in axes {
            for (i, pass) in axis_passes.iter().enumerate() {
                let last = i + 1 == axis_passes.len();
                let generic = !matches!(pass.radix, 2..=5);
                let total = if generic { elems } else { elems / pass.radix };
                let p = PassParams {
                    n: n as u32,
                    inner: inner as u32,
                    ns: pass.ns as u32,
                    radix: pass.radix as u32,
                    total: total as u32,
                    tw_off,
                    sign,
                    scale: if last {
                        (1.0 / (n as f64).sqrt()) as f32
                    } else {
                        1.0
                    },
                };
                let entry = match pass.radix {
                    2 => "fft_r2",
                    3 => "fft_r3",
                    4 => "fft_r4",
                    5 => "fft_r5",
                    _ => "fft_generic",
                };
                rec.dispatch(
                    &Kernel::new("fft", entry).with(&[("WG", WG as f64)]),
                    &[
                        Bind::Params(bytemuck::bytes_of(&p)),
                        Bind::Tensor(&self.twiddles),
                        Bind::Tensor(bufs[0]),
                        Bind::Tensor(bufs[1]),
                    ],
                    rec.gpu().grid((total as u32).div_ceil(WG)),
                )?;
                bufs.swap(0, 1);
            }
        }
        if !std::ptr::eq(bufs[0], data) {
            let p = PassParams {
                total: elems as u32,
                ..Zeroable::zeroed()
            };
            rec.dispatch(
                &Kernel::new("fft", "copy_complex").with(&[("WG", WG as f64)]),
                &[
                    Bind::Params(bytemuck::bytes_of(&p)),
                    Bind::Tensor(scratch),
                    Bind::Tensor(data),
                ],
                rec.gpu().grid((elems as u32).div_ceil(WG)),
            )?;
        }
        Ok(())
    }
}

/// Where a small image `[h, w]` sits in a big one `[H, W]` and how the big one is rolled: the
/// small image's pixel (a, c) is the big image's (a + top, c + left) before the roll, and a roll
/// moves big pixel (i, j) to ((i + sy) mod H, (j + sx) mod W).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShiftedEmbedding {
    pub h: usize,
    pub w: usize,
    pub big_h: usize,
    pub big_w: usize,
    pub top: usize,
    pub left: usize,
    pub sy: usize,
    pub sx: usize,
}

impl ShiftedEmbedding {
    /// The pad of phase retrieval: `pad_h`/`pad_w` zeros on each side, then torch's ifftshift
    /// (a roll by -(n / 2)).
    pub fn padded_ifftshift(h: usize, w: usize, pad_h: usize, pad_w: usize) -> ShiftedEmbedding {
        let big_h = h + 2 * pad_h;
        let big_w = w + 2 * pad_w;
        ShiftedEmbedding {
            h,
            w,
            big_h,
            big_w,
            top: pad_h,
            left: pad_w,
            sy: (big_h - big_h / 2) % big_h,
            sx: (big_w - big_w / 2) % big_w,
        }
    }

    /// torch's fftshift of a `[H, W]` image (a roll by n / 2) with no embedding.
    pub fn fftshift(h: usize, w: usize) -> ShiftedEmbedding {
        ShiftedEmbedding {
            h,
            w,
            big_h: h,
            big_w: w,
            top: 0,
            left: 0,
            sy: h / 2,
            sx: w / 2,
        }
    }

    fn check(&self, op: &'static str) -> Result<()> {
        let ok = self.h > 0
            && self.w > 0
            && self.top + self.h <= self.big_h
            && self.left + self.w <= self.big_w
            && self.sy < self.big_h
            && self.sx < self.big_w;
        if !ok {
            return Err(GpuError::shape(
                op,
                format!("inconsistent embedding {self:?}"),
            ));
        }
        Ok(())
    }

    fn params(&self, op: &'static str, total: usize) -> Result<ShiftParams> {
        self.check(op)?;
        Ok(ShiftParams {
            total: to_u32(op, "element count", total)?,
            h: self.h as u32,
            w: self.w as u32,
            big_h: to_u32(op, "H", self.big_h)?,
            big_w: to_u32(op, "W", self.big_w)?,
            top: self.top as u32,
            left: self.left as u32,
            sy: self.sy as u32,
            sx: self.sx as u32,
            _pad: [0; 3],
        })
    }
}

fn batch_of(op: &'static str, what: &str, t: &Tensor, tail: &[usize]) -> Result<usize> {
    expect_f32(op, what, t)?;
    let s = t.shape();
    if s.len() != tail.len() + 1 || s[1..] != *tail {
        return Err(GpuError::shape(
            op,
            format!("{what} has shape {s:?}, expected [B, {tail:?}]"),
        ));
    }
    Ok(s[0])
}

fn run_shift(
    rec: &mut Recorder,
    entry: &'static str,
    p: ShiftParams,
    binds: &[Bind],
) -> Result<()> {
    let groups = rec.gpu().grid(p.total.div_ceil(WG));
    rec.dispatch(
        &Kernel::new("fft", entry).with(&[("WG", WG as f64)]),
        &[&[Bind::Params(bytemuck::bytes_of(&p))], binds].concat(),
        groups,
    )
}

/// Records `out[b] = roll(pad(x[b]))` as complex numbers with zero imaginary part:
/// `x` is real `[B, h, w]`, `out` complex `[B, H, W, 2]`.
pub fn embed_real_shifted(
    rec: &mut Recorder,
    e: &ShiftedEmbedding,
    x: &Tensor,
    out: &Tensor,
) -> Result<()> {
    let op = "embed_real_shifted";
    let b = batch_of(op, "x", x, &[e.h, e.w])?;
    expect_shape(op, "out", out, &[b, e.big_h, e.big_w, 2])?;
    expect_disjoint(op, out, &[x])?;
    let p = e.params(op, b * e.big_h * e.big_w)?;
    run_shift(rec, op, p, &[Bind::Tensor(x), Bind::Tensor(out)])
}

/// Records `y[b] = |roll(z[b])|`: `z` complex `[B, H, W, 2]`, `y` real `[B, H, W]` (uses only the
/// big size and the roll of `e`).
pub fn shifted_magnitude(
    rec: &mut Recorder,
    e: &ShiftedEmbedding,
    z: &Tensor,
    y: &Tensor,
) -> Result<()> {
    let op = "shifted_magnitude";
    let b = batch_of(op, "z", z, &[e.big_h, e.big_w, 2])?;
    expect_shape(op, "y", y, &[b, e.big_h, e.big_w])?;
    expect_disjoint(op, y, &[z])?;
    let p = e.params(op, b * e.big_h * e.big_w)?;
    run_shift(rec, op, p, &[Bind::Tensor(z), Bind::Tensor(y)])
}

/// The VJP of [`shifted_magnitude`] at `z`: `out = roll^T(dy) * z / |z|` (0 where `z` = 0).
pub fn shifted_phase_vjp(
    rec: &mut Recorder,
    e: &ShiftedEmbedding,
    z: &Tensor,
    dy: &Tensor,
    out: &Tensor,
) -> Result<()> {
    let op = "shifted_phase_vjp";
    let b = batch_of(op, "z", z, &[e.big_h, e.big_w, 2])?;
    expect_shape(op, "dy", dy, &[b, e.big_h, e.big_w])?;
    expect_shape(op, "out", out, z.shape())?;
    expect_disjoint(op, out, &[z, dy])?;
    let p = e.params(op, b * e.big_h * e.big_w)?;
    run_shift(
        rec,
        op,
        p,
        &[Bind::Tensor(z), Bind::Tensor(dy), Bind::Tensor(out)],
    )
}

/// The adjoint of [`embed_real_shifted`] (real part, inverse roll, crop): `g` complex
/// `[B, H, W, 2]`, `dx` real `[B, h, w]`.
pub fn crop_real_shifted(
    rec: &mut Recorder,
    e: &ShiftedEmbedding,
    g: &Tensor,
    dx: &Tensor,
) -> Result<()> {
    let op = "crop_real_shifted";
    let b = batch_of(op, "g", g, &[e.big_h, e.big_w, 2])?;
    expect_shape(op, "dx", dx, &[b, e.h, e.w])?;
    expect_disjoint(op, dx, &[g])?;
    let p = e.params(op, b * e.h * e.w)?;
    run_shift(rec, op, p, &[Bind::Tensor(g), Bind::Tensor(dx)])
}
