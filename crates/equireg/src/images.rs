//! Image files in and out (PNG, JPEG), the size policy, model-range batches and comparison
//! grids. Images are planar RGB (CHW) f32 in [0, 1]; the models see NCHW in [-1, 1].

use std::path::{Path, PathBuf};

use image::imageops::FilterType;
use image::{DynamicImage, Rgb32FImage};

use crate::{Error, Result};

/// A planar RGB image, values in [0, 1], `data` of length 3 * height * width (CHW).
#[derive(Clone, Debug, PartialEq)]
pub struct RgbImage {
    pub height: usize,
    pub width: usize,
    pub data: Vec<f32>,
}

impl RgbImage {
    pub fn new(height: usize, width: usize, data: Vec<f32>) -> Result<Self> {
        if data.len() != 3 * height * width {
            return Err(Error::invalid(format!(
                "{} values for a 3x{height}x{width} image",
                data.len()
            )));
        }
        Ok(Self {
            height,
            width,
            data,
        })
    }

    fn from_dynamic(img: &DynamicImage) -> Self {
        // to_rgb32f drops alpha and expands gray, scaling 8- and 16-bit values to [0, 1].
        let rgb = img.to_rgb32f();
        let (w, h) = (rgb.width() as usize, rgb.height() as usize);
        let mut data = vec![0.0; 3 * h * w];
        for (i, px) in rgb.pixels().enumerate() {
            for c in 0..3 {
                data[c * h * w + i] = px.0[c];
            }
        }
        Self {
            height: h,
            width: w,
            data,
        }
    }

    fn to_rgb32f(&self) -> Rgb32FImage {
        let (h, w) = (self.height, self.width);
        Rgb32FImage::from_fn(w as u32, h as u32, |x, y| {
            let i = y as usize * w + x as usize;
            image::Rgb([self.data[i], self.data[h * w + i], self.data[2 * h * w + i]])
        })
    }
}

/// Reads a PNG or JPEG: alpha is dropped, gray is expanded to RGB, 16-bit is kept to f32.
pub fn load_rgb(path: &Path) -> Result<RgbImage> {
    let reader = image::ImageReader::open(path)
        .map_err(|e| Error::io(path, format!("cannot open: {e}")))?
        .with_guessed_format()
        .map_err(|e| Error::io(path, format!("cannot read: {e}")))?;
    match reader.format() {
        Some(image::ImageFormat::Png) | Some(image::ImageFormat::Jpeg) => {}
        Some(f) => {
            return Err(Error::io(
                path,
                format!("{f:?} images are not supported (PNG or JPEG)"),
            ));
        }
        None => return Err(Error::io(path, "not a PNG or JPEG image")),
    }
    let img = reader
        .decode()
        .map_err(|e| Error::io(path, format!("cannot decode: {e}")))?;
    if img.width() == 0 || img.height() == 0 {
        return Err(Error::io(path, "the image is empty"));
    }
    Ok(RgbImage::from_dynamic(&img))
}

/// Writes an 8-bit RGB PNG atomically (a temporary file in the same folder, then a rename), so
/// an interrupted run never leaves a file that looks complete. Values are clamped to [0, 1]
/// and rounded.
pub fn save_png(path: &Path, img: &RgbImage) -> Result<()> {
    let (h, w) = (img.height, img.width);
    let mut buf = image::RgbImage::new(w as u32, h as u32);
    for (i, px) in buf.pixels_mut().enumerate() {
        for c in 0..3 {
            px.0[c] = (img.data[c * h * w + i].clamp(0.0, 1.0) * 255.0).round() as u8;
        }
    }
    let mut bytes = Vec::new();
    buf.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .map_err(|e| Error::io(path, format!("cannot encode PNG: {e}")))?;
    equireg_nn::io::write_atomic(path, &bytes)
        .map_err(|e| Error::io(path, format!("cannot write: {e}")))
}

/// The PNG and JPEG files of a folder, sorted by name.
pub fn list_images(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| Error::io(dir, format!("cannot list: {e}")))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.extension().is_some_and(|x| {
                    let x = x.to_ascii_lowercase();
                    x == "png" || x == "jpg" || x == "jpeg"
                })
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Error::io(dir, "no PNG or JPEG images in this folder"));
    }
    Ok(files)
}

/// How images whose sides are not multiples of the network's factor are handled.
#[derive(Clone, Debug, PartialEq)]
pub enum SizePolicy {
    /// Refuse them.
    Strict,
    /// Resize (Catmull-Rom, antialiased when shrinking) to the given [h, w], or to the nearest
    /// allowed sides.
    Resize(Option<[usize; 2]>),
    /// Centre-crop to the given [h, w], or to the largest allowed sides.
    Crop(Option<[usize; 2]>),
}

fn nearest_multiple(v: usize, m: usize) -> usize {
    (((v as f64 / m as f64).round() as usize).max(1)) * m
}

/// Applies the size policy; never changes an image silently (Strict refuses).
pub fn fit(img: &RgbImage, multiple: usize, policy: &SizePolicy) -> Result<RgbImage> {
    let (h, w) = (img.height, img.width);
    let m = multiple.max(1);
    let check = |[th, tw]: [usize; 2]| -> Result<()> {
        if th == 0 || tw == 0 || th % m != 0 || tw % m != 0 {
            return Err(Error::invalid(format!(
                "target size {th}x{tw}: sides must be positive multiples of {m}"
            )));
        }
        Ok(())
    };
    match policy {
        SizePolicy::Strict => {
            if h % m != 0 || w % m != 0 {
                return Err(Error::invalid(format!(
                    "the image is {h}x{w}; the network needs sides that are multiples of {m}: \
                     pass --resize or --crop"
                )));
            }
            Ok(img.clone())
        }
        SizePolicy::Resize(target) => {
            let [th, tw] = target.unwrap_or([nearest_multiple(h, m), nearest_multiple(w, m)]);
            check([th, tw])?;
            if [th, tw] == [h, w] {
                return Ok(img.clone());
            }
            let resized = image::imageops::resize(
                &img.to_rgb32f(),
                tw as u32,
                th as u32,
                FilterType::CatmullRom,
            );
            let mut out = RgbImage::from_dynamic(&DynamicImage::ImageRgb32F(resized));
            out.data.iter_mut().for_each(|v| *v = v.clamp(0.0, 1.0));
            Ok(out)
        }
        SizePolicy::Crop(target) => {
            let [th, tw] = target.unwrap_or([h / m * m, w / m * m]);
            check([th, tw])?;
            if th > h || tw > w {
                return Err(Error::invalid(format!(
                    "cannot crop a {h}x{w} image to {th}x{tw}"
                )));
            }
            let (top, left) = ((h - th) / 2, (w - tw) / 2);
            let mut data = Vec::with_capacity(3 * th * tw);
            for c in 0..3 {
                for y in top..top + th {
                    let row = c * h * w + y * w;
                    data.extend_from_slice(&img.data[row + left..row + left + tw]);
                }
            }
            RgbImage::new(th, tw, data)
        }
    }
}

/// NCHW in [-1, 1] for the model; all images must have one size.
pub fn to_model_batch(imgs: &[RgbImage]) -> Result<Vec<f32>> {
    let Some(first) = imgs.first() else {
        return Err(Error::invalid("no images"));
    };
    if let Some(other) = imgs
        .iter()
        .find(|i| (i.height, i.width) != (first.height, first.width))
    {
        return Err(Error::invalid(format!(
            "a batch needs images of one size: {}x{} and {}x{}",
            first.height, first.width, other.height, other.width
        )));
    }
    Ok(imgs
        .iter()
        .flat_map(|i| i.data.iter().map(|v| 2.0 * v - 1.0))
        .collect())
}

/// Back from NCHW in [-1, 1] (clamped) to images in [0, 1].
pub fn from_model(data: &[f32], n: usize, h: usize, w: usize) -> Vec<RgbImage> {
    let per = 3 * h * w;
    (0..n)
        .map(|k| RgbImage {
            height: h,
            width: w,
            data: data[k * per..(k + 1) * per]
                .iter()
                .map(|v| (v.clamp(-1.0, 1.0) + 1.0) * 0.5)
                .collect(),
        })
        .collect()
}

/// Images side by side on white with `gap` pixels between them, each scaled up by an integer
/// factor (nearest neighbour) towards the tallest height, so a 16x16 measurement shows beside
/// 64x64 images.
pub fn grid(images: &[&RgbImage], gap: usize) -> RgbImage {
    let tallest = images.iter().map(|i| i.height).max().unwrap_or(1).max(1);
    let scales: Vec<usize> = images
        .iter()
        .map(|i| (tallest / i.height.max(1)).max(1))
        .collect();
    let width: usize = images
        .iter()
        .zip(&scales)
        .map(|(i, s)| i.width * s)
        .sum::<usize>()
        + gap * images.len().saturating_sub(1);
    let height = images
        .iter()
        .zip(&scales)
        .map(|(i, s)| i.height * s)
        .max()
        .unwrap_or(1)
        .max(1);
    let width = width.max(1);
    let mut data = vec![1.0; 3 * height * width];
    let mut x0 = 0;
    for (img, &s) in images.iter().zip(&scales) {
        for c in 0..3 {
            for y in 0..img.height * s {
                for x in 0..img.width * s {
                    data[c * height * width + y * width + x0 + x] =
                        img.data[c * img.height * img.width + (y / s) * img.width + x / s];
                }
            }
        }
        x0 += img.width * s + gap;
    }
    RgbImage {
        height,
        width,
        data,
    }
}
