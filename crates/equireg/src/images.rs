//! Image files in and out, and the size policies that make an image fit a model.
//!
//! Images are [`RgbImage`]s: planar (CHW) f32 with 3 channels and values in [0, 1]. The models
//! take NCHW batches in [-1, 1] ([`to_model_batch`], [`from_model`]). Nothing here changes an
//! image's size unless the caller asked for it with a [`SizePolicy`].

use std::path::{Path, PathBuf};

use image::{ColorType, DynamicImage, ImageBuffer, ImageReader, Rgb, imageops::FilterType};

use crate::{Error, Result};

/// An RGB image, planar: channel `c`, row `y`, column `x` is `data[(c * height + y) * width + x]`.
/// Values are in [0, 1] (what [`load_rgb`] gives and [`save_png`] expects).
#[derive(Clone, Debug, PartialEq)]
pub struct RgbImage {
    pub height: usize,
    pub width: usize,
    pub data: Vec<f32>,
}

impl RgbImage {
    /// Checks that `data` holds `3 * height * width` values and the image is not empty.
    pub fn new(height: usize, width: usize, data: Vec<f32>) -> Result<Self> {
        let img = RgbImage {
            height,
            width,
            data,
        };
        img.check()?;
        Ok(img)
    }

    /// A `height x width` image with every value `value` (1.0: white).
    pub fn filled(height: usize, width: usize, value: f32) -> Self {
        RgbImage {
            height,
            width,
            data: vec![value; 3 * height * width],
        }
    }

    /// An error unless the fields are consistent (the fields are public, so any function that
    /// indexes an image first calls this).
    pub fn check(&self) -> Result<()> {
        if self.height == 0 || self.width == 0 {
            return Err(Error::invalid(format!(
                "empty image ({}x{}): height and width must be at least 1",
                self.height, self.width
            )));
        }
        let want = self
            .height
            .checked_mul(self.width)
            .and_then(|p| p.checked_mul(3));
        if want != Some(self.data.len()) {
            return Err(Error::invalid(format!(
                "an RGB image of {}x{} needs {} values (3 channels), it has {}",
                self.height,
                self.width,
                3 * self.height * self.width,
                self.data.len()
            )));
        }
        Ok(())
    }

    /// The value at channel `c`, row `y`, column `x`.
    pub fn get(&self, c: usize, y: usize, x: usize) -> f32 {
        self.data[(c * self.height + y) * self.width + x]
    }

    /// `[height, width]`.
    pub fn size(&self) -> [usize; 2] {
        [self.height, self.width]
    }
}

/// The largest image side accepted from a file, a `--resize` or a `--crop`.
pub const MAX_SIDE: usize = 16384;
/// The most pixels accepted in one image (8192 x 8192): its f32 planes take 768 MiB on the
/// host, beyond what any model of this engine restores in one piece.
pub const MAX_PIXELS: usize = 1 << 26;

/// An error unless `h x w` is a size this engine can hold (see [`MAX_SIDE`], [`MAX_PIXELS`]);
/// `what` names where the size came from.
pub fn check_size(what: &str, h: usize, w: usize) -> Result<()> {
    if h == 0 || w == 0 {
        return Err(Error::invalid(format!(
            "{what} {h}x{w}: height and width must be at least 1"
        )));
    }
    if h > MAX_SIDE || w > MAX_SIDE || h.saturating_mul(w) > MAX_PIXELS {
        return Err(Error::invalid(format!(
            "{what} {h}x{w} is too large: at most {MAX_SIDE} pixels a side and {MAX_PIXELS} \
             pixels in all"
        )));
    }
    Ok(())
}

/// Reads a PNG or JPEG file (8 or 16 bits per channel) as RGB in [0, 1]: an alpha channel is
/// dropped (not composited), gray is copied to the three channels. The format is taken from the
/// file's content, not its name. An 8-bit value `v` becomes `f32(v / 255)` (rounded once from
/// f64, as numpy's `(u8 / 255).astype(float32)`), a 16-bit one `f32(v / 65535)`. Only a regular
/// file is read; a truncated or corrupt file is an error (see [`decode_rgb`]).
pub fn load_rgb(path: &Path) -> Result<RgbImage> {
    let shown = format!("{}: ", path.display());
    let bytes = equireg_nn::io::read_file(path)
        .map_err(|m| Error::io(path, m.strip_prefix(&shown).unwrap_or(&m)))?;
    // The name's extension is the fallback format, so that unrecognised content is decoded
    // as what the name says and the error says why it does not decode.
    decode_with_hint(&bytes, image::ImageFormat::from_path(path).ok()).map_err(|e| match e {
        Error::Invalid(m) => Error::io(path, m),
        other => other,
    })
}

/// Decodes the bytes of a PNG or JPEG file as [`load_rgb`] does. The whole image must decode:
/// a JPEG is first decoded in the decoder's strict mode, which refuses a premature end of data
/// or a corrupt entropy-coded segment (the lenient decoder fills the missing blocks with gray);
/// a PNG decoder already refuses truncated data. Sizes beyond [`MAX_SIDE`] or [`MAX_PIXELS`] are
/// refused from the header, before the pixels are allocated.
pub fn decode_rgb(bytes: &[u8]) -> Result<RgbImage> {
    decode_with_hint(bytes, None)
}

fn decode_with_hint(bytes: &[u8], hint: Option<image::ImageFormat>) -> Result<RgbImage> {
    let open = |bytes| {
        let mut r = ImageReader::new(std::io::Cursor::new(bytes));
        if let Some(f) = hint {
            r.set_format(f);
        }
        r.with_guessed_format()
            .map_err(|e| Error::invalid(format!("cannot read the image: {e}")))
    };
    let mut reader = open(bytes)?;
    match reader.format() {
        Some(image::ImageFormat::Png) => {}
        Some(image::ImageFormat::Jpeg) => check_jpeg_strict(bytes)?,
        Some(other) => {
            return Err(Error::invalid(format!(
                "{other:?} images are not supported; use PNG or JPEG"
            )));
        }
        None => {
            return Err(Error::invalid(
                "not a PNG or JPEG image (unrecognised content)",
            ));
        }
    }
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE as u32);
    limits.max_image_height = Some(MAX_SIDE as u32);
    reader.limits(limits.clone());
    let format = reader.format();
    let (w, h) = reader
        .into_dimensions()
        .map_err(|e| Error::invalid(format!("cannot decode the image (corrupt?): {e}")))?;
    check_size("the image", h as usize, w as usize)?;
    let mut reader = open(bytes)?;
    if let Some(f) = format {
        reader.set_format(f);
    }
    reader.limits(limits);
    let dynimg = reader
        .decode()
        .map_err(|e| Error::invalid(format!("cannot decode the image (corrupt?): {e}")))?;
    from_dynamic(&dynimg)
}

/// Decodes a JPEG in strict mode, only to find out whether every block of it is there.
fn check_jpeg_strict(bytes: &[u8]) -> Result<()> {
    let options = zune_core::options::DecoderOptions::default()
        .set_strict_mode(true)
        .set_max_width(MAX_SIDE)
        .set_max_height(MAX_SIDE);
    let mut d = zune_jpeg::JpegDecoder::new_with_options(
        zune_core::bytestream::ZCursor::new(bytes),
        options,
    );
    let bad = |e: &dyn std::fmt::Display| {
        Error::invalid(format!(
            "the JPEG is truncated or corrupt ({e}); it would decode only partly (the missing \
             part gray), so it is refused"
        ))
    };
    d.decode_headers().map_err(|e| bad(&e))?;
    if let Some((w, h)) = d.dimensions() {
        check_size("the image", h, w)?;
    }
    d.decode().map_err(|e| bad(&e))?;
    Ok(())
}

fn from_dynamic(dynimg: &DynamicImage) -> Result<RgbImage> {
    let (w, h) = (dynimg.width() as usize, dynimg.height() as usize);
    let interleaved: Vec<f32> = match dynimg.color() {
        ColorType::L16 | ColorType::La16 | ColorType::Rgb16 | ColorType::Rgba16 => dynimg
            .to_rgb16()
            .into_raw()
            .into_iter()
            .map(|v| (v as f64 / 65535.0) as f32)
            .collect(),
        ColorType::L8 | ColorType::La8 | ColorType::Rgb8 | ColorType::Rgba8 => dynimg
            .to_rgb8()
            .into_raw()
            .into_iter()
            .map(|v| (v as f64 / 255.0) as f32)
            .collect(),
        other => {
            return Err(Error::invalid(format!(
                "pixel format {other:?} is not supported; use 8- or 16-bit gray, RGB or RGBA"
            )));
        }
    };
    RgbImage::new(h, w, hwc_to_chw(&interleaved, h, w))
}

fn hwc_to_chw(src: &[f32], h: usize, w: usize) -> Vec<f32> {
    let mut out = vec![0.0; 3 * h * w];
    for (p, px) in src.chunks_exact(3).enumerate() {
        for c in 0..3 {
            out[c * h * w + p] = px[c];
        }
    }
    out
}

fn chw_to_hwc(src: &[f32], h: usize, w: usize) -> Vec<f32> {
    let mut out = vec![0.0; 3 * h * w];
    for p in 0..h * w {
        for c in 0..3 {
            out[3 * p + c] = src[c * h * w + p];
        }
    }
    out
}

/// Writes an 8-bit RGB PNG: values are clamped to [0, 1] and rounded to the nearest of the 256
/// levels. The file appears complete or not at all: the bytes go to a temporary file in the same
/// directory, which is then renamed. Non-finite values are an error (a diverged sample should not
/// become a black picture).
pub fn save_png(path: &Path, img: &RgbImage) -> Result<()> {
    img.check()?;
    let bad = img.data.iter().filter(|v| !v.is_finite()).count();
    if bad > 0 {
        return Err(Error::io(
            path,
            format!("not written: the image has {bad} NaN or infinite values"),
        ));
    }
    let (w, h) = to_u32_size(img.width, img.height)?;
    let bytes: Vec<u8> = chw_to_hwc(&img.data, img.height, img.width)
        .into_iter()
        .map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8)
        .collect();
    let mut png = Vec::new();
    image::ImageEncoder::write_image(
        image::codecs::png::PngEncoder::new(&mut png),
        &bytes,
        w,
        h,
        image::ExtendedColorType::Rgb8,
    )
    .map_err(|e| Error::io(path, format!("cannot encode the PNG: {e}")))?;
    equireg_nn::io::write_atomic(path, &png)
        .map_err(|e| Error::io(path, format!("cannot write the file: {e}")))
}

fn to_u32_size(w: usize, h: usize) -> Result<(u32, u32)> {
    match (u32::try_from(w), u32::try_from(h)) {
        (Ok(w), Ok(h)) => Ok((w, h)),
        _ => Err(Error::invalid(format!("image of {h}x{w} is too large"))),
    }
}

/// The PNG and JPEG files (`.png`, `.jpg`, `.jpeg`, any case) directly in `dir`, sorted by path.
/// An error when the directory cannot be read or holds none.
pub fn list_images(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| Error::io(dir, format!("cannot list: {e}")))?;
    let mut out = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| Error::io(dir, format!("cannot list: {e}")))?
            .path();
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase());
        if matches!(ext.as_deref(), Some("png" | "jpg" | "jpeg")) && path.is_file() {
            out.push(path);
        }
    }
    if out.is_empty() {
        return Err(Error::io(
            dir,
            "no images here (looked for .png, .jpg and .jpeg files)",
        ));
    }
    out.sort();
    Ok(out)
}

/// What [`fit`] does with an image whose sides are not multiples of what the model needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SizePolicy {
    /// Refuse: an error unless both sides already are multiples.
    Strict,
    /// Resample (Lanczos3, antialiased when shrinking) to `[height, width]`, or when `None` to
    /// the nearest multiples of each side (at least one multiple).
    Resize(Option<[usize; 2]>),
    /// Cut out the centre `[height, width]`, or when `None` the largest multiples that fit.
    Crop(Option<[usize; 2]>),
}

/// Makes `img` fit a model whose input sides must be multiples of `multiple`, as `policy` says.
/// An image that already has the requested size is returned unchanged (a copy). Every change is
/// logged at info level.
pub fn fit(img: &RgbImage, multiple: usize, policy: &SizePolicy) -> Result<RgbImage> {
    img.check()?;
    if multiple == 0 {
        return Err(Error::invalid("the size multiple must be at least 1"));
    }
    let (h, w) = (img.height, img.width);
    let is_mult = |s: usize| s.is_multiple_of(multiple);
    let check_target = |t: [usize; 2], what: &str| -> Result<()> {
        check_size(&format!("the {what} target"), t[0], t[1])?;
        if t[0] == 0 || t[1] == 0 || !is_mult(t[0]) || !is_mult(t[1]) {
            return Err(Error::invalid(format!(
                "{what} size {}x{} must be positive multiples of {multiple}",
                t[0], t[1]
            )));
        }
        Ok(())
    };
    let target = match policy {
        SizePolicy::Strict => {
            if is_mult(h) && is_mult(w) {
                return Ok(img.clone());
            }
            return Err(Error::invalid(format!(
                "the image is {h}x{w} (height x width) but the model needs both sides to be \
                 multiples of {multiple}; pass --resize or --crop to change its size"
            )));
        }
        SizePolicy::Resize(t) => {
            let t = t.unwrap_or_else(|| {
                let near = |s: usize| ((s + multiple / 2) / multiple).max(1) * multiple;
                [near(h), near(w)]
            });
            check_target(t, "resize")?;
            t
        }
        SizePolicy::Crop(t) => {
            let t = match t {
                Some(t) => *t,
                None => {
                    if h < multiple || w < multiple {
                        return Err(Error::invalid(format!(
                            "cannot crop: the image is {h}x{w}, smaller than the multiple \
                             {multiple}; pass --resize instead"
                        )));
                    }
                    [h / multiple * multiple, w / multiple * multiple]
                }
            };
            check_target(t, "crop")?;
            if t[0] > h || t[1] > w {
                return Err(Error::invalid(format!(
                    "cannot crop {}x{} out of an image of {h}x{w}",
                    t[0], t[1]
                )));
            }
            t
        }
    };
    if target == [h, w] {
        return Ok(img.clone());
    }
    let out = match policy {
        SizePolicy::Crop(_) => center_crop(img, target),
        _ => resize(img, target)?,
    };
    log::info!(
        "image {h}x{w} {} to {}x{}",
        if matches!(policy, SizePolicy::Crop(_)) {
            "cropped"
        } else {
            "resized"
        },
        target[0],
        target[1]
    );
    Ok(out)
}

fn center_crop(img: &RgbImage, [th, tw]: [usize; 2]) -> RgbImage {
    let (y0, x0) = ((img.height - th) / 2, (img.width - tw) / 2);
    let mut data = Vec::with_capacity(3 * th * tw);
    for c in 0..3 {
        for y in 0..th {
            let row = (c * img.height + y0 + y) * img.width + x0;
            data.extend_from_slice(&img.data[row..row + tw]);
        }
    }
    RgbImage {
        height: th,
        width: tw,
        data,
    }
}

fn resize(img: &RgbImage, [th, tw]: [usize; 2]) -> Result<RgbImage> {
    let (w, h) = to_u32_size(img.width, img.height)?;
    let (ntw, nth) = to_u32_size(tw, th)?;
    let buf: ImageBuffer<Rgb<f32>, Vec<f32>> =
        ImageBuffer::from_raw(w, h, chw_to_hwc(&img.data, img.height, img.width))
            .ok_or_else(|| Error::invalid("image buffer size mismatch"))?;
    let out = image::imageops::resize(&buf, ntw, nth, FilterType::Lanczos3);
    // Lanczos overshoots at edges; the result must stay a valid [0, 1] image.
    let data: Vec<f32> = out
        .into_raw()
        .into_iter()
        .map(|v| v.clamp(0.0, 1.0))
        .collect();
    Ok(RgbImage {
        height: th,
        width: tw,
        data: hwc_to_chw(&data, th, tw),
    })
}

/// The images as one NCHW batch in [-1, 1] (`2 v - 1`). All must have the same size.
pub fn to_model_batch(imgs: &[RgbImage]) -> Result<Vec<f32>> {
    let first = imgs
        .first()
        .ok_or_else(|| Error::invalid("no images to batch"))?;
    let mut out = Vec::with_capacity(imgs.len() * first.data.len());
    for (i, img) in imgs.iter().enumerate() {
        img.check()?;
        if img.size() != first.size() {
            return Err(Error::invalid(format!(
                "images of one batch must have the same size: image 0 is {}x{}, image {i} is \
                 {}x{}",
                first.height, first.width, img.height, img.width
            )));
        }
        out.extend(img.data.iter().map(|v| 2.0 * v - 1.0));
    }
    Ok(out)
}

/// An NCHW batch of `n` RGB images of `h x w` in [-1, 1] back to images in [0, 1]
/// (`(v + 1) / 2`, clamped; NaN stays NaN so that [`save_png`] refuses it).
pub fn from_model(data: &[f32], n: usize, h: usize, w: usize) -> Result<Vec<RgbImage>> {
    from_model_shape(data, [n, 3, h, w])
}

/// Like [`from_model`] for a batch of shape `[n, c, h, w]` with `c` 1 (gray, copied to the three
/// channels: e.g. an operator's measurement picture) or 3.
pub fn from_model_shape(data: &[f32], shape: [usize; 4]) -> Result<Vec<RgbImage>> {
    let [n, c, h, w] = shape;
    if c != 1 && c != 3 {
        return Err(Error::invalid(format!(
            "a model batch {shape:?} must have 1 or 3 channels to become images"
        )));
    }
    let need = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    if n == 0 || h == 0 || w == 0 || need != Some(data.len()) {
        return Err(Error::invalid(format!(
            "a model batch of shape {shape:?} needs n*c*h*w > 0 values, got {}",
            data.len()
        )));
    }
    let to01 = |v: f32| ((v + 1.0) * 0.5).clamp(0.0, 1.0);
    Ok(data
        .chunks_exact(c * h * w)
        .map(|one| {
            let data = if c == 3 {
                one.iter().map(|&v| to01(v)).collect()
            } else {
                one.iter().chain(one).chain(one).map(|&v| to01(v)).collect()
            };
            RgbImage {
                height: h,
                width: w,
                data,
            }
        })
        .collect())
}

/// The images side by side, left to right, `gap` white columns apart, on a white background.
/// Each is enlarged by nearest neighbour with the integer factor `floor(H / height)`, `H` the
/// tallest height, so a 16x16 measurement shows as large as the 64x64 images next to it; one
/// whose height does not divide `H` is centred vertically.
pub fn grid(images: &[&RgbImage], gap: usize) -> Result<RgbImage> {
    if images.is_empty() {
        return Err(Error::invalid("no images to put in a grid"));
    }
    for img in images {
        img.check()?;
    }
    let tall = images.iter().map(|i| i.height).max().unwrap_or(0);
    let factors: Vec<usize> = images.iter().map(|i| tall / i.height).collect();
    let width = images
        .iter()
        .zip(&factors)
        .map(|(i, f)| i.width * f)
        .sum::<usize>()
        + gap * (images.len() - 1);
    let mut out = RgbImage::filled(tall, width, 1.0);
    let mut x0 = 0;
    for (img, &f) in images.iter().zip(&factors) {
        let y0 = (tall - img.height * f) / 2;
        for c in 0..3 {
            for y in 0..img.height * f {
                for x in 0..img.width * f {
                    out.data[(c * tall + y0 + y) * width + x0 + x] = img.get(c, y / f, x / f);
                }
            }
        }
        x0 += img.width * f + gap;
    }
    Ok(out)
}
