//! Blurs: `y = k * x`, one size x size kernel (odd size) shared by every channel, applied as a
//! cross-correlation over the input reflect-padded by size / 2 (DPS's `Blurkernel`:
//! `ReflectionPad2d(size // 2)` then a grouped `Conv2d`). Linear; the VJP is the exact adjoint
//! (reflected contributions included).
//!
//! Kernels:
//! - Gaussian ([`Blur::gaussian`]): what `scipy.ndimage.gaussian_filter(delta, sigma)` gives for
//!   a centred delta in a size x size array: the outer product of one 1-D filtered delta, whose
//!   taps are `exp(-t^2 / (2 sigma^2))` for |t| <= int(4 sigma + 0.5), normalised to sum 1, and
//!   whose taps past the array's edge fold back with scipy's default `reflect` boundary (which
//!   only happens when that radius exceeds size / 2). DPS: size 61, sigma 3 (25 x 25 nonzero).
//! - Motion ([`Blur::motion`]): a random camera-shake trajectory after the `motionblur` package's
//!   `Kernel(size, intensity)` (LeviBorodenko/motionblur), driven by Philox from the seed; see
//!   [`motion_kernel`].
//!
//! The GPU and the CPU twin run the kernel with its all-zero border rows and columns trimmed
//! (the same number from both ends, so it stays centred and odd): that skips only products with
//! a zero tap, so the result is the same, and the 61 x 61 Gaussian costs 25 x 25 taps.

use std::f64::consts::PI;

use equireg_gpu::ops::depthwise_conv::{
    MAX_TAPS, check_sizes, depthwise_conv2d, depthwise_conv2d_vjp,
};
use equireg_gpu::reference::depthwise_conv as reference;
use equireg_gpu::{Gpu, Recorder, Tensor};

use super::Operator;
use super::noise::PhiloxStream;
use super::resize::{check_input_shape, expect_host, expect_tensor};
use super::spectral::{AxisSvd, Spectral, SpectralForm, reflect_correlation_matrix};
use crate::{Error, Result};

/// Philox stream of motion-blur trajectories.
pub const MOTION_STREAM: u32 = 0x6d62_6c01;

/// A blur by a fixed kernel.
pub struct Blur {
    name: &'static str,
    input: [usize; 4],
    size: usize,
    /// size x size, row-major, as given or drawn.
    kernel: Vec<f32>,
    /// The kernel without its zero border: [kh, kw], on the host and on the GPU.
    trimmed: Vec<f32>,
    trimmed_size: [usize; 2],
    trimmed_gpu: Tensor,
    spectral: Option<Spectral>,
}

/// The 1-D Gaussian that `scipy.ndimage.gaussian_filter1d` applies to a centred delta of
/// `size` samples (truncate 4.0, `reflect` boundary), in f64.
fn gaussian_1d(size: usize, sigma: f64) -> Vec<f64> {
    let radius = (4.0 * sigma + 0.5) as i64;
    let taps: Vec<f64> = (-radius..=radius)
        .map(|t| (-0.5 * (t * t) as f64 / (sigma * sigma)).exp())
        .collect();
    let sum: f64 = taps.iter().sum();
    let n = size as i64;
    // scipy's `reflect` (d c b a | a b c d | d c b a): period 2n, the edge sample repeated.
    let fold = |j: i64| {
        let r = j.rem_euclid(2 * n);
        if r < n { r } else { 2 * n - 1 - r }
    };
    let centre = n / 2;
    let mut out = vec![0f64; size];
    for (i, o) in out.iter_mut().enumerate() {
        for (t, w) in taps.iter().enumerate() {
            if fold(i as i64 + t as i64 - radius) == centre {
                *o += w / sum;
            }
        }
    }
    out
}

/// The size x size Gaussian kernel of [`Blur::gaussian`], row-major.
pub fn gaussian_kernel(size: usize, sigma: f64) -> Vec<f32> {
    let g = gaussian_1d(size, sigma);
    g.iter()
        .flat_map(|a| g.iter().map(move |b| (a * b) as f32))
        .collect()
}

/// A motion-blur kernel after `motionblur.Kernel(size=(size, size), intensity)`, row-major,
/// summing to 1; the same for the same (size, intensity, seed). On a canvas of twice the size
/// (diagonal D):
/// 1. the path length is `0.75 D (U(0, 1) + U(0, intensity^2))`, made of steps
///    `Beta(1, 30) (1 - intensity + 0.1) D` (steps longer than the path are redrawn) until
///    their sum reaches it;
/// 2. a largest angle `U(0, intensity pi)`, a sign-flip probability `Beta(2, 20)`, the first
///    angle `U(-max, max)`, the others of size `Triangular(0, intensity max, max + 0.1)` with the
///    previous angle's sign, flipped with that probability;
/// 3. the path is the cumulative sum of the steps, centred on its mean point, rotated by
///    `U(0, pi)` and moved to the canvas centre;
/// 4. it is drawn as a polyline of value 255 and width `int(D / 150)`, blurred by a Gaussian of
///    standard deviation `int(0.01 D)` (the package uses PIL's three-box approximation),
///    rounded to 8 bits, shrunk 2x with PIL's Lanczos-3 resampling (separable, 8-bit rounding
///    after each pass) and normalised to sum 1.
///
/// Draws come from one Philox stream (`seed`, [`MOTION_STREAM`]), so the numbers differ from
/// the package's numpy draws: the kernels have the same distribution, not the same values.
pub fn motion_kernel(size: usize, intensity: f64, seed: u64) -> Vec<f32> {
    let mut s = PhiloxStream::new(seed, MOTION_STREAM, 0);
    let big = 2 * size;
    let diag = (2.0f64).sqrt() * big as f64;
    let eps = 0.1;

    // 1. Steps. The redraw loop is capped: a path length near 0 would otherwise reject for
    // very long; the cap leaves a path of the steps found so far (at least the one point).
    let max_len = 0.75 * diag * (s.uniform() + s.uniform_in(0.0, intensity * intensity));
    let mut steps = Vec::new();
    let mut total = 0.0;
    let mut draws = 0;
    while total < max_len && draws < 1_000_000 {
        draws += 1;
        let step = s.beta_int(1, 30) * (1.0 - intensity + eps) * diag;
        if step < max_len {
            steps.push(step);
            total += step;
        }
    }
    if steps.is_empty() {
        steps.push(0.0);
    }

    // 2. Angles.
    let max_angle = s.uniform_in(0.0, intensity * PI);
    let jitter = s.beta_int(2, 20);
    let mut angles = vec![s.uniform_in(-max_angle, max_angle)];
    while angles.len() < steps.len() {
        let a = s.triangular(0.0, intensity * max_angle, max_angle + eps);
        let prev = angles[angles.len() - 1];
        // numpy's sign: 0 for 0.
        let sign = if prev > 0.0 {
            1.0
        } else if prev < 0.0 {
            -1.0
        } else {
            0.0
        };
        angles.push(if s.uniform() < jitter {
            -a * sign
        } else {
            a * sign
        });
    }

    // 3. Path.
    let (mut px, mut py) = (0.0, 0.0);
    let mut path: Vec<(f64, f64)> = steps
        .iter()
        .zip(&angles)
        .map(|(r, a)| {
            px += r * a.cos();
            py += r * a.sin();
            (px, py)
        })
        .collect();
    let n = path.len() as f64;
    let (cx, cy) = path
        .iter()
        .fold((0.0, 0.0), |(x, y), p| (x + p.0 / n, y + p.1 / n));
    let rot = s.uniform_in(0.0, PI);
    let (rc, rs) = (rot.cos(), rot.sin());
    let half = big as f64 / 2.0;
    for p in path.iter_mut() {
        let (x, y) = (p.0 - cx, p.1 - cy);
        *p = (x * rc - y * rs + half, x * rs + y * rc + half);
    }

    // 4. Raster, blur, shrink, normalise.
    let mut canvas = vec![0f64; big * big];
    let width = (diag / 150.0) as usize;
    draw_polyline(&mut canvas, big, &path, width);
    let canvas = gaussian_blur_u8(&canvas, big, (0.01 * diag) as usize);
    let small = lanczos_half(&canvas, big, size);
    let sum: f64 = small.iter().sum();
    if sum == 0.0 {
        // Nothing of the path stayed on the canvas: fall back to the identity.
        let mut k = vec![0f32; size * size];
        k[size * size / 2] = 1.0;
        return k;
    }
    small.iter().map(|&v| (v / sum) as f32).collect()
}

/// Draws the segments between consecutive points with value 255: Bresenham between rounded
/// end points for width <= 1 (a lone point is one pixel), else every pixel whose centre lies
/// within width / 2 of a segment. Pixels off the canvas are dropped.
fn draw_polyline(canvas: &mut [f64], side: usize, path: &[(f64, f64)], width: usize) {
    let mut plot = |x: i64, y: i64| {
        if (0..side as i64).contains(&x) && (0..side as i64).contains(&y) {
            canvas[y as usize * side + x as usize] = 255.0;
        }
    };
    let segments: Vec<((f64, f64), (f64, f64))> = if path.len() == 1 {
        vec![(path[0], path[0])]
    } else {
        path.windows(2).map(|w| (w[0], w[1])).collect()
    };
    for (a, b) in segments {
        if width <= 1 {
            let (mut x0, mut y0) = (a.0.round() as i64, a.1.round() as i64);
            let (x1, y1) = (b.0.round() as i64, b.1.round() as i64);
            let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
            let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
            let mut err = dx + dy;
            loop {
                plot(x0, y0);
                if x0 == x1 && y0 == y1 {
                    break;
                }
                let e2 = 2 * err;
                if e2 >= dy {
                    err += dy;
                    x0 += sx;
                }
                if e2 <= dx {
                    err += dx;
                    y0 += sy;
                }
            }
        } else {
            let r = width as f64 / 2.0;
            let lo_x = (a.0.min(b.0) - r).floor() as i64;
            let hi_x = (a.0.max(b.0) + r).ceil() as i64;
            let lo_y = (a.1.min(b.1) - r).floor() as i64;
            let hi_y = (a.1.max(b.1) + r).ceil() as i64;
            let (ex, ey) = (b.0 - a.0, b.1 - a.1);
            let len2 = ex * ex + ey * ey;
            for y in lo_y..=hi_y {
                for x in lo_x..=hi_x {
                    let (qx, qy) = (x as f64 + 0.5 - a.0, y as f64 + 0.5 - a.1);
                    let t = if len2 > 0.0 {
                        ((qx * ex + qy * ey) / len2).clamp(0.0, 1.0)
                    } else {
                        0.0
                    };
                    let (dx, dy) = (qx - t * ex, qy - t * ey);
                    if dx * dx + dy * dy <= r * r {
                        plot(x, y);
                    }
                }
            }
        }
    }
}

/// Rounds to the nearest 8-bit value, clipped to [0, 255].
fn to_u8(v: f64) -> f64 {
    v.round().clamp(0.0, 255.0)
}

/// A separable Gaussian of standard deviation `sigma` (taps to 3 sigma, edge pixels extended),
/// rounded to 8 bits. Sigma 0 leaves the image as it is.
fn gaussian_blur_u8(img: &[f64], side: usize, sigma: usize) -> Vec<f64> {
    if sigma == 0 {
        return img.to_vec();
    }
    let r = 3 * sigma as i64;
    let taps: Vec<f64> = (-r..=r)
        .map(|t| (-0.5 * (t * t) as f64 / (sigma * sigma) as f64).exp())
        .collect();
    let sum: f64 = taps.iter().sum();
    let clampi = |i: i64| i.clamp(0, side as i64 - 1) as usize;
    let mut tmp = vec![0f64; side * side];
    for y in 0..side {
        for x in 0..side {
            tmp[y * side + x] = taps
                .iter()
                .enumerate()
                .map(|(t, w)| w * img[y * side + clampi(x as i64 + t as i64 - r)])
                .sum::<f64>()
                / sum;
        }
    }
    let mut out = vec![0f64; side * side];
    for y in 0..side {
        for x in 0..side {
            out[y * side + x] = to_u8(
                taps.iter()
                    .enumerate()
                    .map(|(t, w)| w * tmp[clampi(y as i64 + t as i64 - r) * side + x])
                    .sum::<f64>()
                    / sum,
            );
        }
    }
    out
}

/// Lanczos with a = 3.
fn lanczos3(x: f64) -> f64 {
    let sinc = |t: f64| {
        if t == 0.0 {
            1.0
        } else {
            (PI * t).sin() / (PI * t)
        }
    };
    if x.abs() < 3.0 {
        sinc(x) * sinc(x / 3.0)
    } else {
        0.0
    }
}

/// PIL's `resize(.., LANCZOS)` of a `side` x `side` image to `out` x `out` (out = side / 2):
/// for output i the taps are the input pixels j within the filter support (3 * side / out)
/// of the centre `(i + 0.5) side / out`, weighted `lanczos3((j + 0.5 - centre) out / side)`,
/// normalised over the taps inside the image; rows first, rounded to 8 bits after each pass.
fn lanczos_half(img: &[f64], side: usize, out: usize) -> Vec<f64> {
    let scale = side as f64 / out as f64;
    let support = 3.0 * scale;
    let coeffs: Vec<(usize, Vec<f64>)> = (0..out)
        .map(|i| {
            let centre = (i as f64 + 0.5) * scale;
            let lo = ((centre - support + 0.5).floor().max(0.0)) as usize;
            let hi = ((centre + support + 0.5).floor() as usize).min(side);
            let w: Vec<f64> = (lo..hi)
                .map(|j| lanczos3((j as f64 + 0.5 - centre) / scale))
                .collect();
            let s: f64 = w.iter().sum();
            (lo, w.iter().map(|v| v / s).collect())
        })
        .collect();
    let mut tmp = vec![0f64; side * out];
    for y in 0..side {
        for (x, (lo, w)) in coeffs.iter().enumerate() {
            let v: f64 = w
                .iter()
                .enumerate()
                .map(|(t, c)| c * img[y * side + lo + t])
                .sum();
            tmp[y * out + x] = to_u8(v);
        }
    }
    let mut res = vec![0f64; out * out];
    for (y, (lo, w)) in coeffs.iter().enumerate() {
        for x in 0..out {
            let v: f64 = w
                .iter()
                .enumerate()
                .map(|(t, c)| c * tmp[(lo + t) * out + x])
                .sum();
            res[y * out + x] = to_u8(v);
        }
    }
    res
}

/// The kernel without all-zero border rows and columns, trimmed by the same count on both
/// sides of each axis (so the centre stays the centre).
fn trim(kernel: &[f32], size: usize) -> (Vec<f32>, [usize; 2]) {
    let row_zero = |r: usize| kernel[r * size..(r + 1) * size].iter().all(|&v| v == 0.0);
    let col_zero = |c: usize| (0..size).all(|r| kernel[r * size + c] == 0.0);
    let half = size / 2;
    let tr = (0..half)
        .take_while(|&i| row_zero(i) && row_zero(size - 1 - i))
        .count();
    let tc = (0..half)
        .take_while(|&i| col_zero(i) && col_zero(size - 1 - i))
        .count();
    let (kh, kw) = (size - 2 * tr, size - 2 * tc);
    let t = (0..kh)
        .flat_map(|r| (0..kw).map(move |c| kernel[(r + tr) * size + c + tc]))
        .collect();
    (t, [kh, kw])
}

impl Blur {
    /// The Gaussian blur of DPS: a `size` x `size` kernel (odd size) of standard deviation
    /// `sigma` (> 0) pixels, as `scipy.ndimage.gaussian_filter` of a centred delta.
    pub fn gaussian(gpu: &Gpu, input: [usize; 4], size: usize, sigma: f64) -> Result<Blur> {
        if !(sigma.is_finite() && sigma > 0.0) {
            return Err(Error::invalid(format!(
                "gaussian_blur: sigma must be finite and > 0, got {sigma}"
            )));
        }
        check_size("gaussian_blur", input, size)?;
        let mut blur = Self::build(
            gpu,
            "gaussian_blur",
            input,
            gaussian_kernel(size, sigma),
            size,
        )?;
        // The kernel is g g^T, so the blur is M X M^T per channel with M the 1-D correlation by
        // g over the reflect-padded axis.
        let g = gaussian_1d(size, sigma);
        let lead = g.iter().take_while(|&&v| v == 0.0).count().min(size / 2);
        let taps = &g[lead..size - lead];
        let [_, _, h, w] = input;
        let form = SpectralForm::Separable {
            h: AxisSvd::new(&reflect_correlation_matrix(taps, h), h, h)?,
            w: AxisSvd::new(&reflect_correlation_matrix(taps, w), w, w)?,
        };
        blur.spectral = Some(Spectral::new(gpu, input, form)?);
        Ok(blur)
    }

    /// The motion blur of DPS: a `size` x `size` random-trajectory kernel (odd size) of
    /// `intensity` in [0, 1] (DPS: 61, 0.5), drawn from `seed` (see [`motion_kernel`]).
    pub fn motion(
        gpu: &Gpu,
        input: [usize; 4],
        size: usize,
        intensity: f64,
        seed: u64,
    ) -> Result<Blur> {
        if !(0.0..=1.0).contains(&intensity) {
            return Err(Error::invalid(format!(
                "motion_blur: intensity must be in [0, 1], got {intensity}"
            )));
        }
        check_size("motion_blur", input, size)?;
        let k = motion_kernel(size, intensity, seed);
        Self::build(gpu, "motion_blur", input, k, size)
    }

    /// A blur by a given `size` x `size` kernel (odd size), row-major, applied as a
    /// cross-correlation (as torch's Conv2d).
    pub fn from_kernel(
        gpu: &Gpu,
        input: [usize; 4],
        kernel: Vec<f32>,
        size: usize,
    ) -> Result<Blur> {
        check_size("blur", input, size)?;
        if kernel.len() != size * size {
            return Err(Error::invalid(format!(
                "blur: a {size}x{size} kernel needs {} values, got {}",
                size * size,
                kernel.len()
            )));
        }
        if kernel.iter().any(|v| !v.is_finite()) {
            return Err(Error::invalid("blur: the kernel has non-finite values"));
        }
        Self::build(gpu, "blur", input, kernel, size)
    }

    fn build(
        gpu: &Gpu,
        name: &'static str,
        input: [usize; 4],
        kernel: Vec<f32>,
        size: usize,
    ) -> Result<Blur> {
        let (trimmed, trimmed_size) = trim(&kernel, size);
        let trimmed_gpu = gpu.upload(&trimmed_size, &trimmed)?;
        Ok(Blur {
            name,
            input,
            size,
            kernel,
            trimmed,
            trimmed_size,
            trimmed_gpu,
            spectral: None,
        })
    }

    /// The `size` x `size` kernel, row-major.
    pub fn kernel(&self) -> &[f32] {
        &self.kernel
    }

    pub fn size(&self) -> usize {
        self.size
    }

    /// The size [kh, kw] of the kernel the GPU runs (the kernel without its zero border).
    pub fn trimmed_size(&self) -> [usize; 2] {
        self.trimmed_size
    }
}

/// The checks every blur constructor shares: a valid input shape, an odd size of at most
/// [`MAX_TAPS`] taps, and image sides larger than the pad size / 2.
fn check_size(op: &'static str, input: [usize; 4], size: usize) -> Result<()> {
    check_input_shape(op, input)?;
    if size.checked_mul(size).is_none_or(|taps| taps > MAX_TAPS) {
        return Err(Error::invalid(format!(
            "{op}: a {size}x{size} kernel is over the supported {MAX_TAPS} taps"
        )));
    }
    check_sizes(op, [input[2], input[3]], [size, size]).map_err(|e| Error::invalid(e.to_string()))
}

impl Operator for Blur {
    fn name(&self) -> &str {
        self.name
    }

    fn input_shape(&self) -> [usize; 4] {
        self.input
    }

    fn output_shape(&self) -> Vec<usize> {
        self.input.to_vec()
    }

    fn is_linear(&self) -> bool {
        true
    }

    fn record_forward(&self, rec: &mut Recorder, x: &Tensor, out: &Tensor) -> Result<()> {
        expect_tensor(self.name, "x", x, &self.input)?;
        expect_tensor(self.name, "out", out, &self.input)?;
        Ok(depthwise_conv2d(rec, x, &self.trimmed_gpu, out)?)
    }

    fn record_vjp(&self, rec: &mut Recorder, _x: &Tensor, dy: &Tensor, dx: &Tensor) -> Result<()> {
        expect_tensor(self.name, "dy", dy, &self.input)?;
        expect_tensor(self.name, "dx", dx, &self.input)?;
        Ok(depthwise_conv2d_vjp(rec, dy, &self.trimmed_gpu, dx)?)
    }

    fn forward_cpu(&self, x: &[f32]) -> Vec<f32> {
        expect_host(self.name, "x", x.len(), self.input.iter().product());
        reference::depthwise_conv2d(x, self.input, &self.trimmed, self.trimmed_size)
    }

    fn vjp_cpu(&self, _x: &[f32], dy: &[f32]) -> Vec<f32> {
        expect_host(self.name, "dy", dy.len(), self.input.iter().product());
        reference::depthwise_conv2d_vjp(dy, self.input, &self.trimmed, self.trimmed_size)
    }

    fn naive_estimate(&self, y: &[f32]) -> Vec<f32> {
        y.to_vec()
    }

    fn spectral(&self) -> Option<&Spectral> {
        self.spectral.as_ref()
    }

    fn measurement_picture(&self, y: &[f32]) -> Option<(Vec<f32>, [usize; 4])> {
        Some((y.to_vec(), self.input))
    }

    fn parameters(&self) -> Vec<(&'static str, Vec<usize>, Vec<f32>)> {
        vec![(
            "kernel",
            vec![self.size(), self.size()],
            self.kernel().to_vec(),
        )]
    }
}
