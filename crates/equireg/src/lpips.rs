//! LPIPS (Zhang et al. 2018, "The Unreasonable Effectiveness of Deep Features as a Perceptual
//! Metric"), version 0.1 with the AlexNet backbone, as the `lpips` package computes
//! `LPIPS(net='alex')(a, b, normalize=True)`, on the CPU in f32 with plain loops.
//!
//! For images `a`, `b` in [0, 1]:
//! 1. `x = 2 v - 1`, then lpips' ScalingLayer `(x - shift_c) / scale_c` with
//!    `shift = [-0.030, -0.088, -0.188]`, `scale = [0.458, 0.448, 0.450]`;
//! 2. torchvision's AlexNet `features` up to the fifth ReLU, its five ReLU outputs are the taps:
//!    conv1 11x11 stride 4 pad 2 (64) + ReLU; max-pool 3/2, conv2 5x5 pad 2 (192) + ReLU;
//!    max-pool 3/2, conv3 3x3 pad 1 (384) + ReLU; conv4 3x3 pad 1 (256) + ReLU; conv5 3x3
//!    pad 1 (256) + ReLU;
//! 3. each tap is normalised to unit length along the channels at every pixel
//!    (`f / (||f|| + 1e-10)`), the two images' taps are subtracted and squared;
//! 4. the learned 1x1 convolution without bias `lin_k` (non-negative weights) maps that to one
//!    channel, which is averaged over the pixels; the five layer values are summed.
//!
//! Weights come from one safetensors file (tools/convert_lpips.py writes it from the user's own
//! torchvision AlexNet and lpips `alex.pth` files), with these names:
//! `features.{0,3,6,8,10}.weight` / `.bias` (torchvision's names, shapes `[out, in, k, k]` and
//! `[out]`) and `lin{0..4}.model.1.weight` (lpips' names, shape `[1, C, 1, 1]`).
//!
//! AlexNet's two max-pools need images of at least [`Lpips::MIN_SIZE`] pixels on each side.

use std::path::Path;

use equireg_nn::{WeightSpec, Weights};

use crate::images::RgbImage;
use crate::{Error, Result};

const SHIFT: [f32; 3] = [-0.030, -0.088, -0.188];
const SCALE: [f32; 3] = [0.458, 0.448, 0.450];
const EPS: f64 = 1e-10;

/// (torchvision feature index, in channels, out channels, kernel, stride, padding, max-pool
/// before it).
const CONVS: [(usize, usize, usize, usize, usize, usize, bool); 5] = [
    (0, 3, 64, 11, 4, 2, false),
    (3, 64, 192, 5, 1, 2, true),
    (6, 192, 384, 3, 1, 1, true),
    (8, 384, 256, 3, 1, 1, false),
    (10, 256, 256, 3, 1, 1, false),
];

struct Conv {
    cin: usize,
    cout: usize,
    k: usize,
    stride: usize,
    pad: usize,
    pool_before: bool,
    weight: Vec<f32>,
    bias: Vec<f32>,
}

/// The LPIPS-AlexNet metric with its weights.
pub struct Lpips {
    convs: Vec<Conv>,
    lins: Vec<Vec<f32>>,
}

/// A feature map: `c` planes of `h x w`.
struct Map {
    c: usize,
    h: usize,
    w: usize,
    data: Vec<f32>,
}

impl Lpips {
    /// The smallest height and width AlexNet's features accept.
    pub const MIN_SIZE: usize = 31;

    /// The names and shapes of the weights, in the file's naming (see the module documentation).
    pub fn spec() -> WeightSpec {
        let mut spec = WeightSpec::new();
        for &(idx, cin, cout, k, ..) in &CONVS {
            spec.push((format!("features.{idx}.weight"), vec![cout, cin, k, k]));
            spec.push((format!("features.{idx}.bias"), vec![cout]));
        }
        for (i, &(_, _, cout, ..)) in CONVS.iter().enumerate() {
            spec.push((format!("lin{i}.model.1.weight"), vec![1, cout, 1, 1]));
        }
        spec
    }

    /// Reads the weights from a safetensors file; every tensor of [`Lpips::spec`] must be there
    /// with its shape, and nothing else.
    pub fn load(path: &Path) -> Result<Lpips> {
        let w = Weights::load(path)?;
        Self::from_weights(&w).map_err(|e| match e {
            Error::Nn(inner) => Error::io(path, inner),
            other => other,
        })
    }

    /// Builds the metric from weights already in memory (strictly checked as in
    /// [`Lpips::load`]).
    pub fn from_weights(w: &Weights) -> Result<Lpips> {
        w.check(&Self::spec())?;
        let get = |name: &str| -> Vec<f32> {
            // check() has guaranteed presence and shape.
            w.get(name).map(|(_, d)| d.to_vec()).unwrap_or_default()
        };
        let convs = CONVS
            .iter()
            .map(|&(idx, cin, cout, k, stride, pad, pool_before)| Conv {
                cin,
                cout,
                k,
                stride,
                pad,
                pool_before,
                weight: get(&format!("features.{idx}.weight")),
                bias: get(&format!("features.{idx}.bias")),
            })
            .collect();
        let lins = (0..CONVS.len())
            .map(|i| get(&format!("lin{i}.model.1.weight")))
            .collect();
        Ok(Lpips { convs, lins })
    }

    /// The LPIPS distance of two images of the same size in [0, 1] (0 for equal images).
    pub fn distance(&self, a: &RgbImage, b: &RgbImage) -> Result<f64> {
        Ok(self.distance_per_layer(a, b)?.iter().sum())
    }

    /// The five layer terms whose sum is [`Lpips::distance`], shallowest first.
    pub fn distance_per_layer(&self, a: &RgbImage, b: &RgbImage) -> Result<[f64; 5]> {
        a.check()?;
        b.check()?;
        if a.size() != b.size() {
            return Err(Error::invalid(format!(
                "LPIPS: the images differ in size ({}x{} and {}x{})",
                a.height, a.width, b.height, b.width
            )));
        }
        if a.height < Self::MIN_SIZE || a.width < Self::MIN_SIZE {
            return Err(Error::invalid(format!(
                "LPIPS (AlexNet) needs images of at least {m}x{m}, got {}x{}",
                a.height,
                a.width,
                m = Self::MIN_SIZE
            )));
        }
        let fa = self.features(a);
        let fb = self.features(b);
        let mut out = [0.0; 5];
        for (l, ((ma, mb), lin)) in fa.iter().zip(&fb).zip(&self.lins).enumerate() {
            out[l] = layer_term(ma, mb, lin);
        }
        Ok(out)
    }

    fn features(&self, img: &RgbImage) -> Vec<Map> {
        let plane = img.height * img.width;
        let mut data = img.data.clone();
        for (c, chunk) in data.chunks_exact_mut(plane).enumerate() {
            for v in chunk {
                *v = (2.0 * *v - 1.0 - SHIFT[c]) / SCALE[c];
            }
        }
        let mut x = Map {
            c: 3,
            h: img.height,
            w: img.width,
            data,
        };
        let mut taps = Vec::with_capacity(self.convs.len());
        for conv in &self.convs {
            if conv.pool_before {
                x = max_pool_3_2(&x);
            }
            x = conv.forward_relu(&x);
            taps.push(Map {
                c: x.c,
                h: x.h,
                w: x.w,
                data: x.data.clone(),
            });
        }
        taps
    }
}

impl Conv {
    /// Cross-correlation (PyTorch's conv2d) with zero padding, plus bias, then ReLU.
    fn forward_relu(&self, x: &Map) -> Map {
        debug_assert_eq!(x.c, self.cin);
        let (k, s, p) = (self.k, self.stride, self.pad);
        let (ph, pw) = (x.h + 2 * p, x.w + 2 * p);
        let mut padded = vec![0.0f32; x.c * ph * pw];
        for c in 0..x.c {
            for y in 0..x.h {
                let src = &x.data[(c * x.h + y) * x.w..][..x.w];
                padded[(c * ph + y + p) * pw + p..][..x.w].copy_from_slice(src);
            }
        }
        let (oh, ow) = ((ph - k) / s + 1, (pw - k) / s + 1);
        let mut out = vec![0.0f32; self.cout * oh * ow];
        for (o, plane) in out.chunks_exact_mut(oh * ow).enumerate() {
            plane.fill(self.bias[o]);
            for c in 0..self.cin {
                let src = &padded[c * ph * pw..][..ph * pw];
                let wk = &self.weight[(o * self.cin + c) * k * k..][..k * k];
                for ky in 0..k {
                    for kx in 0..k {
                        let wv = wk[ky * k + kx];
                        for oy in 0..oh {
                            let row = &src[(oy * s + ky) * pw + kx..];
                            let dst = &mut plane[oy * ow..][..ow];
                            if s == 1 {
                                for (d, v) in dst.iter_mut().zip(&row[..ow]) {
                                    *d += wv * v;
                                }
                            } else {
                                for (ox, d) in dst.iter_mut().enumerate() {
                                    *d += wv * row[ox * s];
                                }
                            }
                        }
                    }
                }
            }
            for v in plane.iter_mut() {
                *v = v.max(0.0);
            }
        }
        Map {
            c: self.cout,
            h: oh,
            w: ow,
            data: out,
        }
    }
}

/// Max-pool with a 3x3 window and stride 2, no padding, floor mode (torchvision's AlexNet).
fn max_pool_3_2(x: &Map) -> Map {
    let (oh, ow) = ((x.h - 3) / 2 + 1, (x.w - 3) / 2 + 1);
    let mut out = vec![0.0f32; x.c * oh * ow];
    for c in 0..x.c {
        for oy in 0..oh {
            for ox in 0..ow {
                let mut m = f32::NEG_INFINITY;
                for dy in 0..3 {
                    for dx in 0..3 {
                        m = m.max(x.data[(c * x.h + 2 * oy + dy) * x.w + 2 * ox + dx]);
                    }
                }
                out[(c * oh + oy) * ow + ox] = m;
            }
        }
    }
    Map {
        c: x.c,
        h: oh,
        w: ow,
        data: out,
    }
}

/// Spatial mean of `sum_c lin_c (a_c / (|a| + eps) - b_c / (|b| + eps))^2`.
fn layer_term(a: &Map, b: &Map, lin: &[f32]) -> f64 {
    let plane = a.h * a.w;
    let mut total = 0.0f64;
    for p in 0..plane {
        let norm = |m: &Map| -> f64 {
            (0..m.c)
                .map(|c| (m.data[c * plane + p] as f64).powi(2))
                .sum::<f64>()
                .sqrt()
                + EPS
        };
        let (na, nb) = (norm(a), norm(b));
        for (c, &wl) in lin.iter().enumerate() {
            let d = a.data[c * plane + p] as f64 / na - b.data[c * plane + p] as f64 / nb;
            total += wl as f64 * d * d;
        }
    }
    total / plane as f64
}
