//! Image files, size policies, model batches and grids.

use std::path::{Path, PathBuf};

use equireg::Error;
use equireg::images::{
    RgbImage, SizePolicy, fit, from_model, from_model_shape, grid, list_images, load_rgb, save_png,
    to_model_batch,
};
use rand::{Rng, SeedableRng, rngs::StdRng};

/// A fresh empty directory for one test (removed when dropped).
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(format!("equireg-images-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
    fn entries(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn random_image(h: usize, w: usize, seed: u64) -> RgbImage {
    let mut rng = StdRng::seed_from_u64(seed);
    RgbImage::new(h, w, (0..3 * h * w).map(|_| rng.random::<f32>()).collect()).unwrap()
}

/// Values exactly on the 8-bit levels, as load_rgb produces them.
fn quantized_image(h: usize, w: usize, seed: u64) -> RgbImage {
    let mut rng = StdRng::seed_from_u64(seed);
    let data = (0..3 * h * w)
        .map(|_| (rng.random_range(0..=255u32) as f64 / 255.0) as f32)
        .collect();
    RgbImage::new(h, w, data).unwrap()
}

fn is_io_error(e: &Error, path: &Path) -> bool {
    matches!(e, Error::Io { path: p, .. } if p == &path.display().to_string())
}

#[test]
fn png_round_trip_is_exact_on_8bit_levels() {
    let dir = TempDir::new("roundtrip");
    let img = quantized_image(13, 21, 1);
    let p = dir.path("a.png");
    save_png(&p, &img).unwrap();
    let back = load_rgb(&p).unwrap();
    assert_eq!(back, img);
}

#[test]
fn save_png_clamps_and_rounds() {
    let dir = TempDir::new("rounding");
    let mut img = random_image(5, 7, 2);
    img.data[0] = -0.3;
    img.data[1] = 1.7;
    let p = dir.path("r.png");
    save_png(&p, &img).unwrap();
    let back = load_rgb(&p).unwrap();
    for (i, (a, b)) in img.data.iter().zip(&back.data).enumerate() {
        let want = (a.clamp(0.0, 1.0) * 255.0).round() / 255.0;
        assert!((want - b).abs() < 1e-6, "value {i}: {a} saved as {b}");
    }
    assert_eq!(back.data[0], 0.0);
    assert_eq!(back.data[1], 1.0);
}

#[test]
fn gray_rgba_and_16bit_inputs() {
    let dir = TempDir::new("formats");
    let (w, h) = (9u32, 6u32);
    // 8-bit gray: copied to the three channels.
    let gray =
        image::GrayImage::from_fn(w, h, |x, y| image::Luma([((x * 29 + y * 7) % 256) as u8]));
    gray.save(dir.path("g.png")).unwrap();
    let g = load_rgb(&dir.path("g.png")).unwrap();
    assert_eq!((g.height, g.width), (h as usize, w as usize));
    for y in 0..h as usize {
        for x in 0..w as usize {
            let v = (((x * 29 + y * 7) % 256) as f64 / 255.0) as f32;
            for c in 0..3 {
                assert_eq!(g.get(c, y, x), v, "gray ({c},{y},{x})");
            }
        }
    }
    // RGBA: alpha dropped, colours kept whatever the alpha.
    let rgba = image::RgbaImage::from_fn(w, h, |x, y| {
        image::Rgba([x as u8 * 20, y as u8 * 30, 200, (x * 25) as u8])
    });
    rgba.save(dir.path("a.png")).unwrap();
    let a = load_rgb(&dir.path("a.png")).unwrap();
    for y in 0..h as usize {
        for x in 0..w as usize {
            let want = [x * 20, y * 30, 200].map(|v| (v as f64 / 255.0) as f32);
            for (c, v) in want.into_iter().enumerate() {
                assert_eq!(a.get(c, y, x), v, "rgba ({c},{y},{x})");
            }
        }
    }
    // 16-bit RGB: full precision.
    let deep: image::ImageBuffer<image::Rgb<u16>, Vec<u16>> =
        image::ImageBuffer::from_fn(w, h, |x, y| {
            image::Rgb([(x * 7001) as u16, (y * 9973) as u16, 65535])
        });
    deep.save(dir.path("d.png")).unwrap();
    let d = load_rgb(&dir.path("d.png")).unwrap();
    for y in 0..h as usize {
        for x in 0..w as usize {
            let want = [x * 7001, y * 9973, 65535].map(|v| (v as f64 / 65535.0) as f32);
            for (c, v) in want.into_iter().enumerate() {
                assert_eq!(d.get(c, y, x), v, "16 bit ({c},{y},{x})");
            }
        }
    }
    // 16-bit gray with alpha.
    let la: image::ImageBuffer<image::LumaA<u16>, Vec<u16>> =
        image::ImageBuffer::from_fn(w, h, |x, _| image::LumaA([(x * 5000) as u16, 1]));
    la.save(dir.path("la.png")).unwrap();
    let la = load_rgb(&dir.path("la.png")).unwrap();
    assert_eq!(la.get(2, 3, 4), (20000.0 / 65535.0f64) as f32);
}

#[test]
fn jpeg_loads_close_to_what_was_encoded() {
    let dir = TempDir::new("jpeg");
    let (w, h) = (32u32, 24u32);
    let smooth =
        image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 6) as u8, (y * 8) as u8, 128]));
    // A JPEG under a .png name: the format comes from the content.
    let p = dir.path("photo.png");
    smooth
        .save_with_format(&p, image::ImageFormat::Jpeg)
        .unwrap();
    let img = load_rgb(&p).unwrap();
    assert_eq!((img.height, img.width), (h as usize, w as usize));
    let mut max_err = 0.0f32;
    for y in 0..h as usize {
        for x in 0..w as usize {
            let want = [x as f32 * 6.0, y as f32 * 8.0, 128.0];
            for (c, v) in want.into_iter().enumerate() {
                max_err = max_err.max((img.get(c, y, x) - v / 255.0).abs());
            }
        }
    }
    assert!(max_err < 0.06, "JPEG of a smooth ramp off by {max_err}");
}

#[test]
fn unreadable_files_are_io_errors() {
    let dir = TempDir::new("corrupt");
    let missing = dir.path("missing.png");
    let e = load_rgb(&missing).unwrap_err();
    assert!(is_io_error(&e, &missing), "{e:?}");

    let garbage = dir.path("garbage.png");
    std::fs::write(&garbage, b"this is not an image at all").unwrap();
    let e = load_rgb(&garbage).unwrap_err();
    assert!(is_io_error(&e, &garbage), "{e:?}");
    assert!(e.to_string().contains("cannot decode"), "{e}");

    let text = dir.path("notes.txt");
    std::fs::write(&text, b"hello").unwrap();
    let e = load_rgb(&text).unwrap_err();
    assert!(is_io_error(&e, &text), "{e:?}");
    assert!(e.to_string().contains("not a PNG or JPEG"), "{e}");

    // A PNG cut in half.
    let good = dir.path("good.png");
    save_png(&good, &random_image(16, 16, 3)).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let cut = dir.path("cut.png");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let e = load_rgb(&cut).unwrap_err();
    assert!(is_io_error(&e, &cut), "{e:?}");

    // Another format that is recognised but not supported.
    let bmp = dir.path("x.bmp");
    let mut b = b"BM".to_vec();
    b.extend_from_slice(&[0u8; 60]);
    std::fs::write(&bmp, &b).unwrap();
    let e = load_rgb(&bmp).unwrap_err();
    assert!(is_io_error(&e, &bmp), "{e:?}");
    assert!(e.to_string().contains("not supported"), "{e}");
}

#[test]
fn atomic_write_leaves_no_temporary_file() {
    let dir = TempDir::new("atomic");
    let p = dir.path("out.png");
    save_png(&p, &random_image(8, 8, 4)).unwrap();
    // Overwriting replaces the file.
    let second = quantized_image(4, 6, 5);
    save_png(&p, &second).unwrap();
    assert_eq!(dir.entries(), vec!["out.png".to_string()]);
    assert_eq!(load_rgb(&p).unwrap(), second);

    // A failed write (directory missing) is an io error and leaves nothing behind.
    let nowhere = dir.path("no/such/dir/x.png");
    let e = save_png(&nowhere, &second).unwrap_err();
    assert!(is_io_error(&e, &nowhere), "{e:?}");
    assert_eq!(dir.entries(), vec!["out.png".to_string()]);

    // Non-finite values are refused and nothing is written.
    let mut bad = second.clone();
    bad.data[3] = f32::NAN;
    let q = dir.path("nan.png");
    let e = save_png(&q, &bad).unwrap_err();
    assert!(e.to_string().contains("NaN"), "{e}");
    assert_eq!(dir.entries(), vec!["out.png".to_string()]);

    // A malformed image is refused.
    let broken = RgbImage {
        height: 4,
        width: 4,
        data: vec![0.0; 10],
    };
    assert!(save_png(&q, &broken).is_err());
}

#[test]
fn list_images_filters_and_sorts() {
    let dir = TempDir::new("list");
    assert!(
        list_images(&dir.0).is_err(),
        "an empty directory is an error"
    );
    for name in ["b.PNG", "a.jpg", "c.JpEg", "d.txt", "e.png.bak", "f"] {
        std::fs::write(dir.path(name), b"x").unwrap();
    }
    std::fs::create_dir(dir.path("sub.png")).unwrap();
    let got = list_images(&dir.0).unwrap();
    let names: Vec<String> = got
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["a.jpg", "b.PNG", "c.JpEg"]);
    let e = list_images(&dir.path("missing")).unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e:?}");
}

#[test]
fn strict_policy() {
    let img = random_image(37, 50, 6);
    let e = fit(&img, 8, &SizePolicy::Strict).unwrap_err().to_string();
    for part in ["37x50", "8", "--resize", "--crop"] {
        assert!(e.contains(part), "message lacks '{part}': {e}");
    }
    let ok = random_image(16, 24, 7);
    assert_eq!(fit(&ok, 8, &SizePolicy::Strict).unwrap(), ok);
    assert!(fit(&ok, 0, &SizePolicy::Strict).is_err());
}

#[test]
fn crop_policies() {
    let img = random_image(37, 50, 8);
    // Largest multiples: 32x48, centred: rows 2.., columns 1..
    let c = fit(&img, 8, &SizePolicy::Crop(None)).unwrap();
    assert_eq!(c.size(), [32, 48]);
    for ch in 0..3 {
        for y in 0..32 {
            for x in 0..48 {
                assert_eq!(c.get(ch, y, x), img.get(ch, y + 2, x + 1));
            }
        }
    }
    let c = fit(&img, 8, &SizePolicy::Crop(Some([16, 40]))).unwrap();
    assert_eq!(c.size(), [16, 40]);
    assert_eq!(c.get(1, 0, 0), img.get(1, 10, 5));
    assert_eq!(c.get(2, 15, 39), img.get(2, 25, 44));
    assert!(
        fit(&img, 8, &SizePolicy::Crop(Some([40, 40]))).is_err(),
        "taller than the image"
    );
    assert!(
        fit(&img, 8, &SizePolicy::Crop(Some([12, 16]))).is_err(),
        "not a multiple"
    );
    assert!(fit(&random_image(5, 20, 9), 8, &SizePolicy::Crop(None)).is_err());
    let ok = random_image(16, 24, 10);
    assert_eq!(fit(&ok, 8, &SizePolicy::Crop(None)).unwrap(), ok);
}

#[test]
fn resize_policies() {
    let img = random_image(37, 50, 11);
    let r = fit(&img, 8, &SizePolicy::Resize(None)).unwrap();
    assert_eq!(r.size(), [40, 48], "nearest multiples of 37x50");
    assert!(r.data.iter().all(|v| (0.0..=1.0).contains(v)));
    let r = fit(&random_image(3, 5, 12), 8, &SizePolicy::Resize(None)).unwrap();
    assert_eq!(r.size(), [8, 8], "at least one multiple");
    let r = fit(&img, 8, &SizePolicy::Resize(Some([64, 16]))).unwrap();
    assert_eq!(r.size(), [64, 16]);
    assert!(fit(&img, 8, &SizePolicy::Resize(Some([60, 16]))).is_err());
    assert!(fit(&img, 8, &SizePolicy::Resize(Some([0, 16]))).is_err());

    // A constant image stays constant.
    let flat = RgbImage::filled(21, 30, 0.25);
    let r = fit(&flat, 4, &SizePolicy::Resize(Some([12, 36]))).unwrap();
    assert!(r.data.iter().all(|v| (v - 0.25).abs() < 1e-5));

    // Shrinking is antialiased: a one-pixel checkerboard halved becomes mid-gray, not a moire.
    let n = 64;
    let mut board = RgbImage::filled(n, n, 0.0);
    for c in 0..3 {
        for y in 0..n {
            for x in 0..n {
                board.data[(c * n + y) * n + x] = ((x + y) % 2) as f32;
            }
        }
    }
    let r = fit(&board, 8, &SizePolicy::Resize(Some([32, 32]))).unwrap();
    let worst = r
        .data
        .iter()
        .map(|v| (v - 0.5).abs())
        .fold(0.0f32, f32::max);
    assert!(
        worst < 0.1,
        "halved checkerboard deviates from 0.5 by {worst}"
    );

    // A smooth horizontal ramp stays close to the same ramp.
    let (h, w) = (20, 40);
    let mut ramp = RgbImage::filled(h, w, 0.0);
    for c in 0..3 {
        for y in 0..h {
            for x in 0..w {
                ramp.data[(c * h + y) * w + x] = (x as f32 + 0.5) / w as f32;
            }
        }
    }
    let r = fit(&ramp, 8, &SizePolicy::Resize(Some([16, 24]))).unwrap();
    for x in 3..21 {
        let want = (x as f32 + 0.5) / 24.0;
        assert!((r.get(0, 8, x) - want).abs() < 0.01, "ramp at {x}");
    }
}

#[test]
fn model_batches() {
    let a = random_image(6, 10, 13);
    let b = random_image(6, 10, 14);
    let batch = to_model_batch(&[a.clone(), b.clone()]).unwrap();
    assert_eq!(batch.len(), 2 * 3 * 60);
    assert_eq!(batch[5], 2.0 * a.data[5] - 1.0);
    assert_eq!(batch[180 + 7], 2.0 * b.data[7] - 1.0);
    assert!(batch.iter().all(|v| (-1.0..=1.0).contains(v)));
    let back = from_model(&batch, 2, 6, 10).unwrap();
    for (orig, got) in [a.clone(), b].iter().zip(&back) {
        for (x, y) in orig.data.iter().zip(&got.data) {
            assert!((x - y).abs() < 1e-6);
        }
    }
    // Out-of-range model outputs are clamped.
    let mut wild = batch.clone();
    wild[0] = 3.0;
    wild[1] = -2.0;
    let back = from_model(&wild, 2, 6, 10).unwrap();
    assert_eq!((back[0].data[0], back[0].data[1]), (1.0, 0.0));

    assert!(to_model_batch(&[a.clone(), random_image(6, 11, 15)]).is_err());
    assert!(to_model_batch(&[]).is_err());
    assert!(from_model(&batch, 2, 6, 9).is_err());
    assert!(from_model(&batch, 0, 6, 10).is_err());

    // One gray channel becomes three equal ones.
    let gray: Vec<f32> = (0..12).map(|i| i as f32 / 6.0 - 1.0).collect();
    let g = from_model_shape(&gray, [2, 1, 2, 3]).unwrap();
    assert_eq!(g.len(), 2);
    assert_eq!(g[1].get(0, 1, 2), g[1].get(2, 1, 2));
    assert!((g[1].get(1, 1, 2) - (gray[11] + 1.0) / 2.0).abs() < 1e-7);
    assert!(from_model_shape(&gray, [1, 2, 2, 3]).is_err());
}

#[test]
fn grid_geometry() {
    let small = random_image(16, 16, 16);
    let big = random_image(64, 64, 17);
    let odd = random_image(48, 20, 18);
    let g = grid(&[&small, &big, &odd], 2).unwrap();
    assert_eq!(g.size(), [64, 64 + 2 + 64 + 2 + 20]);
    for c in 0..3 {
        // The 16x16 image is enlarged 4x by nearest neighbour.
        for y in 0..64 {
            for x in 0..64 {
                assert_eq!(g.get(c, y, x), small.get(c, y / 4, x / 4));
                assert_eq!(g.get(c, y, 66 + x), big.get(c, y, x));
            }
            // Gaps are white.
            assert_eq!(g.get(c, y, 64), 1.0);
            assert_eq!(g.get(c, y, 65), 1.0);
            assert_eq!(g.get(c, y, 130), 1.0);
        }
        // 48 does not divide 64: factor 1, centred with white above and below.
        for x in 0..20 {
            for y in 0..8 {
                assert_eq!(g.get(c, y, 132 + x), 1.0);
                assert_eq!(g.get(c, 56 + y, 132 + x), 1.0);
            }
            for y in 0..48 {
                assert_eq!(g.get(c, 8 + y, 132 + x), odd.get(c, y, x));
            }
        }
    }
    assert_eq!(grid(&[&big], 5).unwrap(), big);
    assert!(grid(&[], 2).is_err());
}
