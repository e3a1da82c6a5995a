//! Super-resolution: `y = D x`, a separable downsampling by an integer factor, as two dense
//! per-axis matrices applied with `axis_matmul` (H first, then W; the VJP applies the transposes
//! in the reverse order).
//!
//! The bicubic kind reproduces DPS's `util/resizer.py` Resizer (Shocher's MATLAB-imresize port)
//! with its defaults: Keys cubic kernel (a = -0.5, support 4); when any axis shrinks,
//! antialiasing widens the kernel by 1 / scale and scales it by scale; output pixel p (1-based)
//! sits at input coordinate `p / scale + (1 - 1 / scale) / 2`; its taps are the
//! `ceil(width) + 2` input pixels from `floor(centre - width / 2) - 1` on, weighted by the kernel
//! at the distance to each pixel's centre and normalised to sum 1; taps outside the image are
//! mirrored with the edge pixel repeated (index -1 reads 0, -2 reads 1, in_len reads
//! in_len - 1). The weights are computed in f64 and rounded to f32 for the GPU, as the Resizer
//! stores them in float32.

use equireg_gpu::ops::axis_matmul::{Axis, axis_matmul};
use equireg_gpu::{DType, Gpu, Recorder, Tensor};

use super::Operator;
use super::spectral::{AxisSvd, Spectral, SpectralForm};
use crate::{Error, Result};

/// How [`SuperResolution`] averages the pixels of each output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResizeKind {
    /// DPS's antialiased bicubic Resizer (MATLAB imresize conventions).
    Bicubic,
    /// The mean of each scale x scale block.
    Box,
}

/// Keys' cubic convolution kernel with a = -0.5 (MATLAB's and the Resizer's `cubic`).
fn cubic(x: f64) -> f64 {
    let a = x.abs();
    let (a2, a3) = (a * a, a * a * a);
    if a <= 1.0 {
        1.5 * a3 - 2.5 * a2 + 1.0
    } else if a <= 2.0 {
        -0.5 * a3 + 2.5 * a2 - 4.0 * a + 2.0
    } else {
        0.0
    }
}

/// The Resizer's weight matrix along one axis, row-major `[out_len, in_len]` in f64: row `i`
/// holds the weights of output pixel `i` (summing to 1, unless every tap of the row is 0, where
/// the Resizer leaves the row 0). `antialias` widens the kernel by 1 / scale and multiplies it
/// by scale (meant for a shrinking axis). An empty side gives an empty (or all-zero) matrix.
pub fn bicubic_matrix(in_len: usize, out_len: usize, antialias: bool) -> Vec<f64> {
    let mut m = vec![0f64; out_len * in_len];
    if in_len == 0 || out_len == 0 {
        return m;
    }
    let scale = out_len as f64 / in_len as f64;
    let (width, kernel_scale) = if antialias {
        (4.0 / scale, scale)
    } else {
        (4.0, 1.0)
    };
    let taps = width.ceil() as i64 + 2;
    let period = 2 * in_len as i64;
    // The Resizer's mirror: [0, 1, .., n-1, n-1, .., 0] indexed modulo 2n.
    let mirror = |j: i64| {
        let r = j.rem_euclid(period);
        if r < in_len as i64 {
            r as usize
        } else {
            (period - 1 - r) as usize
        }
    };
    let shift = (out_len as f64 - in_len as f64 * scale) / 2.0;
    let mut weights = vec![0f64; taps as usize];
    for i in 0..out_len {
        let p = (i + 1) as f64 - shift;
        let centre = p / scale + 0.5 * (1.0 - 1.0 / scale);
        let left = (centre - width / 2.0).floor() as i64;
        for (t, w) in weights.iter_mut().enumerate() {
            let j = left + t as i64 - 1;
            *w = kernel_scale * cubic(kernel_scale * (centre - j as f64 - 1.0));
        }
        let mut sum: f64 = weights.iter().sum();
        if sum == 0.0 {
            sum = 1.0;
        }
        for (t, w) in weights.iter().enumerate() {
            let j = mirror(left + t as i64 - 1);
            m[i * in_len + j] += w / sum;
        }
    }
    m
}

/// The box-average matrix `[in_len / scale, in_len]`: 1 / scale on each block.
fn box_matrix(in_len: usize, scale: usize) -> Vec<f64> {
    let out_len = in_len / scale;
    let mut m = vec![0f64; out_len * in_len];
    for i in 0..out_len {
        for k in i * scale..(i + 1) * scale {
            m[i * in_len + k] = 1.0 / scale as f64;
        }
    }
    m
}

/// `m` (`[rows, red]`) applied along `axis` of `x` (or its transpose), in f64.
fn apply_axis(
    x: &[f64],
    shape: [usize; 4],
    m: &[f64],
    rows: usize,
    axis: Axis,
    transpose: bool,
) -> (Vec<f64>, [usize; 4]) {
    let [n, c, h, w] = shape;
    let red = if transpose { rows } else { m.len() / rows };
    let cols = m.len() / rows;
    let out_len = if transpose { cols } else { rows };
    let coef = |i: usize, k: usize| {
        if transpose {
            m[k * cols + i]
        } else {
            m[i * cols + k]
        }
    };
    let os = match axis {
        Axis::H => [n, c, out_len, w],
        Axis::W => [n, c, h, out_len],
    };
    let mut out = vec![0f64; os.iter().product()];
    for p in 0..n * c {
        let xp = &x[p * h * w..(p + 1) * h * w];
        let op = &mut out[p * os[2] * os[3]..(p + 1) * os[2] * os[3]];
        for y in 0..os[2] {
            for xo in 0..os[3] {
                op[y * os[3] + xo] = match axis {
                    Axis::H => (0..red).map(|k| coef(y, k) * xp[k * w + xo]).sum(),
                    Axis::W => (0..red).map(|k| coef(xo, k) * xp[y * w + k]).sum(),
                };
            }
        }
    }
    (out, os)
}

/// DPS's bicubic Resizer from `[N, C, H, W]` to `[N, C, out_h, out_w]`, up or down, on the CPU
/// in f64 (used for the naive "bicubic upsampling" baseline). An axis that keeps its length is
/// left alone. Antialiasing is on for each axis that shrinks, as MATLAB's imresize does; the
/// Resizer turns it on for every axis as soon as one shrinks, which only differs when one
/// axis grows while the other shrinks, and there it can zero whole rows (at an integer
/// up-scale the narrowed kernel vanishes at every tap of some outputs). An empty input gives
/// zeros.
///
/// # Panics
/// If `x.len()` is not the product of `shape`.
pub fn resize_cpu(x: &[f32], shape: [usize; 4], out_h: usize, out_w: usize) -> Vec<f32> {
    assert_eq!(
        x.len(),
        shape.iter().product::<usize>(),
        "resize_cpu: x does not have shape {shape:?}"
    );
    let [n, c, h, w] = shape;
    if out_h == 0 || out_w == 0 || h == 0 || w == 0 {
        return vec![0.0; n * c * out_h * out_w];
    }
    let mut cur: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    let mut s = shape;
    if out_h != h {
        (cur, s) = apply_axis(
            &cur,
            s,
            &bicubic_matrix(h, out_h, out_h < h),
            out_h,
            Axis::H,
            false,
        );
    }
    if out_w != w {
        (cur, s) = apply_axis(
            &cur,
            s,
            &bicubic_matrix(w, out_w, out_w < w),
            out_w,
            Axis::W,
            false,
        );
    }
    debug_assert_eq!(s, [shape[0], shape[1], out_h, out_w]);
    cur.into_iter().map(|v| v as f32).collect()
}

/// Fails unless every dimension of an operator's input shape is positive.
pub(crate) fn check_input_shape(op: &str, input: [usize; 4]) -> Result<()> {
    if input.contains(&0) {
        return Err(Error::invalid(format!(
            "{op}: input shape {input:?} has an empty dimension"
        )));
    }
    Ok(())
}

/// Fails unless a tensor handed to an operator has the shape it was built for.
pub(crate) fn expect_tensor(op: &str, what: &str, t: &Tensor, shape: &[usize]) -> Result<()> {
    if t.shape() != shape {
        return Err(Error::invalid(format!(
            "{op}: {what} has shape {:?}, the operator was built for {shape:?}",
            t.shape()
        )));
    }
    Ok(())
}

/// Panics unless a host array handed to a CPU twin has `want` elements.
#[track_caller]
pub(crate) fn expect_host(op: &str, what: &str, len: usize, want: usize) {
    assert_eq!(
        len, want,
        "{op}: {what} has {len} elements, expected {want}"
    );
}

/// Downsampling by an integer factor, DPS's super-resolution operator.
/// PyTorch's `F.interpolate(mode="bicubic", align_corners=False)` (Keys' cubic with
/// a = -0.75, border pixels repeated), upsampling `[N, C, h, w]` by `scale`, on the host.
pub fn bicubic_upsample(y: &[f32], shape: [usize; 4], scale: usize) -> Vec<f32> {
    let [n, c, h, w] = shape;
    let (oh, ow) = (h * scale, w * scale);
    // Per output coordinate: four source indices and weights.
    let taps = |len: usize, out: usize| -> Vec<([usize; 4], [f64; 4])> {
        (0..out)
            .map(|o| {
                let src = (o as f64 + 0.5) / scale as f64 - 0.5;
                let base = src.floor();
                let t = src - base;
                let a = -0.75;
                let cubic1 = |x: f64| ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
                let cubic2 = |x: f64| ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a;
                let wts = [cubic2(t + 1.0), cubic1(t), cubic1(1.0 - t), cubic2(2.0 - t)];
                let idx = std::array::from_fn(|k| {
                    (base as i64 - 1 + k as i64).clamp(0, len as i64 - 1) as usize
                });
                (idx, wts)
            })
            .collect()
    };
    let (th, tw) = (taps(h, oh), taps(w, ow));
    let mut out = vec![0f32; n * c * oh * ow];
    for p in 0..n * c {
        let src = &y[p * h * w..(p + 1) * h * w];
        for (oy, (iy, wy)) in th.iter().enumerate() {
            for (ox, (ix, wx)) in tw.iter().enumerate() {
                let mut acc = 0f64;
                for a in 0..4 {
                    for b in 0..4 {
                        acc += wy[a] * wx[b] * src[iy[a] * w + ix[b]] as f64;
                    }
                }
                out[p * oh * ow + oy * ow + ox] = acc as f32;
            }
        }
    }
    out
}

pub struct SuperResolution {
    name: &'static str,
    input: [usize; 4],
    scale: usize,
    kind: ResizeKind,
    /// `[H / scale, H]` and `[W / scale, W]` in f64 (CPU twins) and on the GPU in f32.
    wh: Vec<f64>,
    ww: Vec<f64>,
    wh_gpu: Tensor,
    ww_gpu: Tensor,
    /// `[N, C, H / scale, W]`: between the two passes, forward and VJP alike.
    scratch: Tensor,
    spectral: Spectral,
}

impl SuperResolution {
    /// Builds the operator for `input` = [N, C, H, W]; H and W must be multiples of `scale`
    /// (at least 1).
    pub fn new(gpu: &Gpu, input: [usize; 4], scale: usize, kind: ResizeKind) -> Result<Self> {
        let name = match kind {
            ResizeKind::Bicubic => "super_resolution",
            ResizeKind::Box => "super_resolution_box",
        };
        check_input_shape(name, input)?;
        let [n, c, h, w] = input;
        if scale == 0 || !h.is_multiple_of(scale) || !w.is_multiple_of(scale) {
            return Err(Error::invalid(format!(
                "{name}: the image sides {h}x{w} must be multiples of the scale {scale}"
            )));
        }
        let (oh, ow) = (h / scale, w / scale);
        let (wh, ww) = match kind {
            // Every axis shrinks (or none, at scale 1), so the Resizer's antialias flag is
            // on exactly when scale > 1.
            ResizeKind::Bicubic => (
                bicubic_matrix(h, oh, scale > 1),
                bicubic_matrix(w, ow, scale > 1),
            ),
            ResizeKind::Box => (box_matrix(h, scale), box_matrix(w, scale)),
        };
        let f32s = |m: &[f64]| m.iter().map(|&v| v as f32).collect::<Vec<f32>>();
        let wh_gpu = gpu.upload(&[oh, h], &f32s(&wh))?;
        let ww_gpu = gpu.upload(&[ow, w], &f32s(&ww))?;
        let scratch = gpu.alloc(&[n, c, oh, w], DType::F32)?;
        let form = SpectralForm::Separable {
            h: AxisSvd::new(&wh, oh, h)?,
            w: AxisSvd::new(&ww, ow, w)?,
        };
        let spectral = Spectral::new(gpu, input, form)?;
        Ok(SuperResolution {
            name,
            input,
            scale,
            kind,
            wh,
            ww,
            wh_gpu,
            ww_gpu,
            scratch,
            spectral,
        })
    }

    pub fn scale(&self) -> usize {
        self.scale
    }

    pub fn kind(&self) -> ResizeKind {
        self.kind
    }

    /// The H-axis weight matrix `[H / scale, H]`, row-major, in f64.
    pub fn weights_h(&self) -> &[f64] {
        &self.wh
    }

    /// The W-axis weight matrix `[W / scale, W]`, row-major, in f64.
    pub fn weights_w(&self) -> &[f64] {
        &self.ww
    }

    fn out4(&self) -> [usize; 4] {
        let [n, c, h, w] = self.input;
        [n, c, h / self.scale, w / self.scale]
    }
}

impl Operator for SuperResolution {
    fn name(&self) -> &str {
        self.name
    }

    fn input_shape(&self) -> [usize; 4] {
        self.input
    }

    fn output_shape(&self) -> Vec<usize> {
        self.out4().to_vec()
    }

    fn is_linear(&self) -> bool {
        true
    }

    fn record_forward(&self, rec: &mut Recorder, x: &Tensor, out: &Tensor) -> Result<()> {
        expect_tensor(self.name, "x", x, &self.input)?;
        expect_tensor(self.name, "out", out, &self.out4())?;
        axis_matmul(rec, x, &self.wh_gpu, &self.scratch, Axis::H, false)?;
        axis_matmul(rec, &self.scratch, &self.ww_gpu, out, Axis::W, false)?;
        Ok(())
    }

    fn record_vjp(&self, rec: &mut Recorder, _x: &Tensor, dy: &Tensor, dx: &Tensor) -> Result<()> {
        expect_tensor(self.name, "dy", dy, &self.out4())?;
        expect_tensor(self.name, "dx", dx, &self.input)?;
        axis_matmul(rec, dy, &self.ww_gpu, &self.scratch, Axis::W, true)?;
        axis_matmul(rec, &self.scratch, &self.wh_gpu, dx, Axis::H, true)?;
        Ok(())
    }

    fn forward_cpu(&self, x: &[f32]) -> Vec<f32> {
        expect_host(self.name, "x", x.len(), self.input.iter().product());
        let [_, _, oh, ow] = self.out4();
        let x: Vec<f64> = x.iter().map(|&v| v as f64).collect();
        let (t, s) = apply_axis(&x, self.input, &self.wh, oh, Axis::H, false);
        let (y, _) = apply_axis(&t, s, &self.ww, ow, Axis::W, false);
        y.into_iter().map(|v| v as f32).collect()
    }

    fn vjp_cpu(&self, _x: &[f32], dy: &[f32]) -> Vec<f32> {
        let o = self.out4();
        expect_host(self.name, "dy", dy.len(), o.iter().product());
        let dy: Vec<f64> = dy.iter().map(|&v| v as f64).collect();
        let (t, s) = apply_axis(&dy, o, &self.ww, o[3], Axis::W, true);
        let (dx, _) = apply_axis(&t, s, &self.wh, o[2], Axis::H, true);
        dx.into_iter().map(|v| v as f32).collect()
    }

    fn naive_estimate(&self, y: &[f32]) -> Vec<f32> {
        let [n, c, h, w] = self.input;
        bicubic_upsample(y, [n, c, h / self.scale, w / self.scale], self.scale)
    }

    fn spectral(&self) -> Option<&Spectral> {
        Some(&self.spectral)
    }

    fn measurement_picture(&self, y: &[f32]) -> Option<(Vec<f32>, [usize; 4])> {
        Some((y.to_vec(), self.out4()))
    }
}
