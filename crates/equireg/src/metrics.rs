//! Image quality metrics on the CPU, in f64: PSNR and SSIM as scikit-image computes them, and the
//! relative L2 error.
//!
//! SSIM follows `skimage.metrics.structural_similarity(a, b, channel_axis=-1,
//! gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1)` on float64
//! arrays (the Wang et al. 2004 settings):
//! - local means, variances and the covariance are Gaussian-weighted: scipy's
//!   `ndimage.gaussian_filter` with sigma 1.5 truncated at 3.5 sigma (an 11-tap kernel, radius 5,
//!   `exp(-x^2 / (2 sigma^2))` normalised to sum 1), applied along rows and columns, with the
//!   border mode 'reflect' (the edge sample repeated: `c b a | a b c`);
//! - population (co)variances `E[xy] - E[x] E[y]`, constants `C1 = (0.01 R)^2`,
//!   `C2 = (0.03 R)^2` with the data range `R = 1`;
//! - the SSIM map is averaged after cutting a border of 5 pixels (the filter radius) from every
//!   side, per channel, and the channel results are averaged. (So no kept pixel's window
//!   reaches past the border and the border mode does not change the result; it is kept
//!   anyway so that the full map would match too.)
//!
//! Like scikit-image, SSIM needs both sides to be at least 11 pixels.

use crate::images::RgbImage;
use crate::{Error, Result};

const SIGMA: f64 = 1.5;
const TRUNCATE: f64 = 3.5;
const K1: f64 = 0.01;
const K2: f64 = 0.03;

/// The side of SSIM's Gaussian window (11): images smaller than this cannot be scored.
pub const SSIM_WINDOW: usize = 11;

fn check_pair(a: &RgbImage, b: &RgbImage, what: &str) -> Result<()> {
    a.check()?;
    b.check()?;
    if a.size() != b.size() {
        return Err(Error::invalid(format!(
            "{what}: the images differ in size ({}x{} and {}x{})",
            a.height, a.width, b.height, b.width
        )));
    }
    Ok(())
}

/// Peak signal-to-noise ratio in dB for the data range 1: `10 log10(1 / MSE)`, the MSE over all
/// pixels and channels (skimage's `peak_signal_noise_ratio(a, b, data_range=1)`). Equal images
/// give `f64::INFINITY`.
pub fn psnr(a: &RgbImage, b: &RgbImage) -> Result<f64> {
    check_pair(a, b, "PSNR")?;
    let sse: f64 = a
        .data
        .iter()
        .zip(&b.data)
        .map(|(&x, &y)| {
            let d = x as f64 - y as f64;
            d * d
        })
        .sum();
    let mse = sse / a.data.len() as f64;
    Ok(if mse == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (1.0 / mse).log10()
    })
}

/// Mean structural similarity of two RGB images in [0, 1] (see the module documentation for the
/// exact definition). 1 for equal images.
pub fn ssim(a: &RgbImage, b: &RgbImage) -> Result<f64> {
    check_pair(a, b, "SSIM")?;
    ssim_planar(&a.data, &b.data, 3, a.height, a.width)
}

/// SSIM of planar data (`channels` planes of `height x width`, data range 1), averaged over the
/// channels, as [`ssim`].
pub fn ssim_planar(
    a: &[f32],
    b: &[f32],
    channels: usize,
    height: usize,
    width: usize,
) -> Result<f64> {
    let kernel = gaussian_kernel();
    let win = kernel.len();
    let n = channels
        .checked_mul(height)
        .and_then(|p| p.checked_mul(width));
    if channels == 0 || n != Some(a.len()) || n != Some(b.len()) {
        return Err(Error::invalid(format!(
            "SSIM: {channels} planes of {height}x{width} need {} values each, got {} and {}",
            channels * height * width,
            a.len(),
            b.len()
        )));
    }
    if height < win || width < win {
        return Err(Error::invalid(format!(
            "SSIM needs images of at least {win}x{win} (its Gaussian window), got \
             {height}x{width}"
        )));
    }
    let plane = height * width;
    let mut total = 0.0;
    for c in 0..channels {
        let x: Vec<f64> = a[c * plane..(c + 1) * plane]
            .iter()
            .map(|&v| v as f64)
            .collect();
        let y: Vec<f64> = b[c * plane..(c + 1) * plane]
            .iter()
            .map(|&v| v as f64)
            .collect();
        total += ssim_plane(&x, &y, height, width, &kernel);
    }
    Ok(total / channels as f64)
}

/// scipy's `_gaussian_kernel1d(sigma, 0, radius)` with `radius = int(truncate * sigma + 0.5)`.
fn gaussian_kernel() -> Vec<f64> {
    let radius = (TRUNCATE * SIGMA + 0.5) as i64;
    let w: Vec<f64> = (-radius..=radius)
        .map(|x| (-0.5 / (SIGMA * SIGMA) * (x * x) as f64).exp())
        .collect();
    let sum: f64 = w.iter().sum();
    w.into_iter().map(|v| v / sum).collect()
}

/// scipy.ndimage's 'reflect' border: `d c b a | a b c d | d c b a`, periodic with period `2n`.
fn reflect(i: i64, n: usize) -> usize {
    let n = n as i64;
    let m = i.rem_euclid(2 * n);
    (if m < n { m } else { 2 * n - 1 - m }) as usize
}

/// Separable Gaussian filter of one plane: along the columns (axis 0), then along the rows,
/// scipy's order.
fn gaussian_filter(src: &[f64], h: usize, w: usize, k: &[f64]) -> Vec<f64> {
    let r = (k.len() / 2) as i64;
    let mut tmp = vec![0.0; h * w];
    for y in 0..h {
        for x in 0..w {
            let mut acc = 0.0;
            for (j, kv) in k.iter().enumerate() {
                acc += kv * src[reflect(y as i64 + j as i64 - r, h) * w + x];
            }
            tmp[y * w + x] = acc;
        }
    }
    let mut out = vec![0.0; h * w];
    for y in 0..h {
        let row = &tmp[y * w..(y + 1) * w];
        for x in 0..w {
            let mut acc = 0.0;
            for (j, kv) in k.iter().enumerate() {
                acc += kv * row[reflect(x as i64 + j as i64 - r, w)];
            }
            out[y * w + x] = acc;
        }
    }
    out
}

fn ssim_plane(x: &[f64], y: &[f64], h: usize, w: usize, k: &[f64]) -> f64 {
    let filt = |v: &[f64]| gaussian_filter(v, h, w, k);
    let prod = |p: &[f64], q: &[f64]| -> Vec<f64> { p.iter().zip(q).map(|(a, b)| a * b).collect() };
    let ux = filt(x);
    let uy = filt(y);
    let uxx = filt(&prod(x, x));
    let uyy = filt(&prod(y, y));
    let uxy = filt(&prod(x, y));
    let c1 = (K1 * 1.0f64).powi(2);
    let c2 = (K2 * 1.0f64).powi(2);
    let pad = k.len() / 2;
    let mut sum = 0.0;
    for row in pad..h - pad {
        for col in pad..w - pad {
            let i = row * w + col;
            let vx = uxx[i] - ux[i] * ux[i];
            let vy = uyy[i] - uy[i] * uy[i];
            let vxy = uxy[i] - ux[i] * uy[i];
            let a1 = 2.0 * ux[i] * uy[i] + c1;
            let a2 = 2.0 * vxy + c2;
            let b1 = ux[i] * ux[i] + uy[i] * uy[i] + c1;
            let b2 = vx + vy + c2;
            sum += (a1 * a2) / (b1 * b2);
        }
    }
    sum / ((h - 2 * pad) * (w - 2 * pad)) as f64
}

/// Relative L2 error `||a - b|| / ||b||` in f64. When `b` is all zeros it is 0 if `a` is too and
/// infinite otherwise. An error when the lengths differ or are 0.
pub fn rel_l2(a: &[f32], b: &[f32]) -> Result<f64> {
    if a.len() != b.len() || a.is_empty() {
        return Err(Error::invalid(format!(
            "relative L2 error of arrays of {} and {} values: need equal, non-zero lengths",
            a.len(),
            b.len()
        )));
    }
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        let d = x as f64 - y as f64;
        num += d * d;
        den += (y as f64) * (y as f64);
    }
    Ok(if den == 0.0 {
        if num == 0.0 { 0.0 } else { f64::INFINITY }
    } else {
        (num / den).sqrt()
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_window_constant_is_the_kernel_length() {
        assert_eq!(super::gaussian_kernel().len(), super::SSIM_WINDOW);
    }
}
