//! Image quality metrics on images in [0, 1]: PSNR, SSIM as scikit-image computes it with the
//! settings the DPS literature reports, and relative L2 (the PDE benchmarks' metric).

use crate::images::RgbImage;
use crate::{Error, Result};

fn same_size(a: &RgbImage, b: &RgbImage) -> Result<()> {
    if (a.height, a.width) != (b.height, b.width) || a.data.len() != b.data.len() {
        return Err(Error::invalid(format!(
            "metrics need images of one size: {}x{} and {}x{}",
            a.height, a.width, b.height, b.width
        )));
    }
    Ok(())
}

/// PSNR in dB with data range 1, MSE over all channels. Identical images give +infinity.
pub fn psnr(a: &RgbImage, b: &RgbImage) -> Result<f64> {
    same_size(a, b)?;
    let mse = a
        .data
        .iter()
        .zip(&b.data)
        .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
        .sum::<f64>()
        / a.data.len() as f64;
    Ok(10.0 * (1.0 / mse).log10())
}

/// ||a - b|| / ||b||.
pub fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    let num: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
        .sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den).sqrt()
}

const SIGMA: f64 = 1.5;
/// scipy's truncate as scikit-image passes it: radius int(3.5 * 1.5 + 0.5) = 5, an 11x11 window.
const TRUNCATE: f64 = 3.5;

/// scipy.ndimage's "reflect" boundary (half-sample symmetric: d c b a | a b c d | d c b a).
fn reflect(i: isize, n: usize) -> usize {
    let n = n as isize;
    let period = 2 * n;
    let m = i.rem_euclid(period);
    (if m < n { m } else { period - 1 - m }) as usize
}

/// One channel [h, w] filtered by the separable Gaussian, rows then columns, in f64.
fn gaussian_filter(x: &[f64], h: usize, w: usize, weights: &[f64]) -> Vec<f64> {
    let r = (weights.len() / 2) as isize;
    let mut tmp = vec![0.0; h * w];
    for i in 0..h {
        for j in 0..w {
            tmp[i * w + j] = weights
                .iter()
                .enumerate()
                .map(|(k, wk)| wk * x[reflect(i as isize + k as isize - r, h) * w + j])
                .sum();
        }
    }
    let mut out = vec![0.0; h * w];
    for i in 0..h {
        for j in 0..w {
            out[i * w + j] = weights
                .iter()
                .enumerate()
                .map(|(k, wk)| wk * tmp[i * w + reflect(j as isize + k as isize - r, w)])
                .sum();
        }
    }
    out
}

/// Mean SSIM over the three channels, exactly as scikit-image's
/// `structural_similarity(a, b, channel_axis=..., gaussian_weights=True, sigma=1.5,
/// use_sample_covariance=False, data_range=1)`: an 11x11 Gaussian window with reflected borders,
/// K1 0.01, K2 0.03, and the mean taken after cropping 5 pixels from every border.
pub fn ssim(a: &RgbImage, b: &RgbImage) -> Result<f64> {
    same_size(a, b)?;
    let (h, w) = (a.height, a.width);
    let radius = (TRUNCATE * SIGMA + 0.5) as usize;
    let win = 2 * radius + 1;
    if h < win || w < win {
        return Err(Error::invalid(format!(
            "SSIM needs images of at least {win}x{win}, got {h}x{w}"
        )));
    }
    let mut weights: Vec<f64> = (0..win)
        .map(|k| {
            let d = k as f64 - radius as f64;
            (-0.5 * d * d / (SIGMA * SIGMA)).exp()
        })
        .collect();
    let total: f64 = weights.iter().sum();
    weights.iter_mut().for_each(|v| *v /= total);
    let (c1, c2) = (0.01f64.powi(2), 0.03f64.powi(2));
    let plane = h * w;
    let mut sum = 0.0;
    for c in 0..3 {
        let x: Vec<f64> = a.data[c * plane..(c + 1) * plane]
            .iter()
            .map(|&v| v as f64)
            .collect();
        let y: Vec<f64> = b.data[c * plane..(c + 1) * plane]
            .iter()
            .map(|&v| v as f64)
            .collect();
        let prod =
            |p: &[f64], q: &[f64]| -> Vec<f64> { p.iter().zip(q).map(|(u, v)| u * v).collect() };
        let ux = gaussian_filter(&x, h, w, &weights);
        let uy = gaussian_filter(&y, h, w, &weights);
        let uxx = gaussian_filter(&prod(&x, &x), h, w, &weights);
        let uyy = gaussian_filter(&prod(&y, &y), h, w, &weights);
        let uxy = gaussian_filter(&prod(&x, &y), h, w, &weights);
        let mut acc = 0.0;
        for i in radius..h - radius {
            for j in radius..w - radius {
                let k = i * w + j;
                let (mx, my) = (ux[k], uy[k]);
                let vx = uxx[k] - mx * mx;
                let vy = uyy[k] - my * my;
                let vxy = uxy[k] - mx * my;
                acc += ((2.0 * mx * my + c1) * (2.0 * vxy + c2))
                    / ((mx * mx + my * my + c1) * (vx + vy + c2));
            }
        }
        sum += acc / ((h - 2 * radius) * (w - 2 * radius)) as f64;
    }
    Ok(sum / 3.0)
}
