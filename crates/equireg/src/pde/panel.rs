//! A picture of one case for people: one row per channel, with the truth, the observed points
//! on it, each reconstruction and each reconstruction's absolute error, every field colour-mapped
//! on its row's shared scale (errors on their own scale), and a colour bar per row whose ends
//! are printed in the caption file beside the PNG.

use crate::images::RgbImage;
use crate::{Error, Result};

/// A perceptually ordered dark-blue to yellow ramp (viridis' end points and three interior
/// control points, interpolated linearly).
const RAMP: [[f32; 3]; 5] = [
    [0.267, 0.005, 0.329],
    [0.229, 0.322, 0.546],
    [0.128, 0.567, 0.551],
    [0.369, 0.789, 0.383],
    [0.993, 0.906, 0.144],
];

/// The colour of `t` in [0, 1].
pub fn colour(t: f32) -> [f32; 3] {
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let x = t * (RAMP.len() - 1) as f32;
    let i = (x.floor() as usize).min(RAMP.len() - 2);
    let f = x - i as f32;
    let (a, b) = (RAMP[i], RAMP[i + 1]);
    [0, 1, 2].map(|c| a[c] + (b[c] - a[c]) * f)
}

/// What a panel shows for one case.
pub struct PanelInput<'a> {
    pub h: usize,
    pub w: usize,
    /// `[2, H, W]` physical.
    pub truth: &'a [f32],
    /// `[2, H, W]`, 1 at observed points.
    pub mask: &'a [f32],
    /// (label, `[2, H, W]` physical).
    pub reconstructions: Vec<(&'a str, &'a [f32])>,
}

const GAP: usize = 2;
const BAR: usize = 4;

/// The panel image and a caption listing every tile and scale.
pub fn render(p: &PanelInput<'_>, channel_names: [&str; 2]) -> Result<(RgbImage, String)> {
    let (h, w) = (p.h, p.w);
    let plane = h * w;
    if p.truth.len() != 2 * plane || p.mask.len() != 2 * plane {
        return Err(Error::invalid("panel: truth and mask must be [2, H, W]"));
    }
    let k = p.reconstructions.len();
    // Tiles: truth, observed, each reconstruction, each error; then a colour bar.
    let tiles = 2 + 2 * k;
    let width = tiles * (w + GAP) + BAR + GAP;
    let height = 2 * h + GAP;
    let mut img = RgbImage::filled(height, width, 1.0);
    let mut caption = String::new();
    let put = |img: &mut RgbImage, row: usize, tile: usize, rgb: &dyn Fn(usize) -> [f32; 3]| {
        for y in 0..h {
            for x in 0..w {
                let c = rgb(y * w + x);
                for (ch, v) in c.into_iter().enumerate() {
                    let idx = (ch * height + row * (h + GAP) + y) * width + tile * (w + GAP) + x;
                    img.data[idx] = v;
                }
            }
        }
    };
    for ch in 0..2 {
        let truth = &p.truth[ch * plane..(ch + 1) * plane];
        let mask = &p.mask[ch * plane..(ch + 1) * plane];
        let (lo, hi) = truth
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
                (a.min(v), b.max(v))
            });
        let span = if hi > lo { hi - lo } else { 1.0 };
        let norm = move |v: f32| (v - lo) / span;
        put(&mut img, ch, 0, &|i| colour(norm(truth[i])));
        put(&mut img, ch, 1, &|i| {
            if mask[i] > 0.5 {
                colour(norm(truth[i]))
            } else {
                [0.85, 0.85, 0.85]
            }
        });
        let mut err_hi = 0f32;
        for (_, r) in &p.reconstructions {
            let r = &r[ch * plane..(ch + 1) * plane];
            for (a, b) in r.iter().zip(truth) {
                if (a - b).is_finite() {
                    err_hi = err_hi.max((a - b).abs());
                }
            }
        }
        let err_span = if err_hi > 0.0 { err_hi } else { 1.0 };
        for (j, (_, r)) in p.reconstructions.iter().enumerate() {
            let r = &r[ch * plane..(ch + 1) * plane];
            put(&mut img, ch, 2 + j, &|i| colour(norm(r[i])));
            put(&mut img, ch, 2 + k + j, &|i| {
                colour((r[i] - truth[i]).abs() / err_span)
            });
        }
        // The colour bar, bottom (low) to top (high).
        for y in 0..h {
            let c = colour(1.0 - y as f32 / (h - 1).max(1) as f32);
            for x in 0..BAR {
                for (cc, v) in c.into_iter().enumerate() {
                    let idx = (cc * height + ch * (h + GAP) + y) * width + tiles * (w + GAP) + x;
                    img.data[idx] = v;
                }
            }
        }
        let name = channel_names[ch];
        caption.push_str(&format!(
            "row {}: {name}; truth, observed points (grey: unobserved){}; colour scale {lo:.6} \
             to {hi:.6} ({name}), errors |pred - truth| 0 to {err_hi:.6}\n",
            ch + 1,
            p.reconstructions
                .iter()
                .map(|(l, _)| format!(", {l}"))
                .chain(
                    p.reconstructions
                        .iter()
                        .map(|(l, _)| format!(", {l} error"))
                )
                .collect::<String>()
        ));
    }
    Ok((img, caption))
}
