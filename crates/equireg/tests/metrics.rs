//! PSNR and SSIM against scikit-image (fixtures from tools/make_metric_fixtures.py), and the
//! image helpers: file round trips, gray and RGBA inputs, corrupt files, the size policy, grids.

use std::path::PathBuf;

use equireg::images::{self, RgbImage, SizePolicy};
use equireg::metrics::{psnr, rel_l2, ssim};
use equireg_nn::npy;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/metrics")
}

fn load(name: &str) -> RgbImage {
    let (s, d) = npy::read_f32(&fixtures().join(format!("{name}.npy"))).unwrap();
    RgbImage::new(s[1], s[2], d).unwrap()
}

#[test]
fn psnr_and_ssim_match_scikit_image() {
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("metrics.json")).unwrap())
            .unwrap();
    for case in meta["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let (a, b) = (load(&format!("{name}-a")), load(&format!("{name}-b")));
        let (p, s) = (psnr(&a, &b).unwrap(), ssim(&a, &b).unwrap());
        let (wp, ws) = (
            case["psnr"].as_f64().unwrap(),
            case["ssim"].as_f64().unwrap(),
        );
        eprintln!("{name}: psnr {p} (skimage {wp}), ssim {s} (skimage {ws})");
        assert!((p - wp).abs() < 1e-6, "{name}: PSNR {p} vs {wp}");
        assert!((s - ws).abs() < 1e-5, "{name}: SSIM {s} vs {ws}");
        assert!((ssim(&a, &a).unwrap() - 1.0).abs() < 1e-12);
    }
    let a = load("random-64x64-a");
    assert!(psnr(&a, &a).unwrap().is_infinite());
    assert!(psnr(&a, &load("tiny-16x12-a")).is_err());
    assert!(
        ssim(
            &load("tiny-16x12-a"),
            &RgbImage::new(16, 12, vec![0.0; 576]).unwrap()
        )
        .is_ok()
    );
    assert!(
        ssim(
            &RgbImage::new(8, 8, vec![0.0; 192]).unwrap(),
            &RgbImage::new(8, 8, vec![0.0; 192]).unwrap()
        )
        .is_err()
    );
    assert!((rel_l2(&[3.0, 4.0], &[0.0, 5.0]) - (10.0f64).sqrt() / 5.0).abs() < 1e-12);
}

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("equireg-images-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn png_round_trip_gray_rgba_and_corrupt_files() {
    let d = tmpdir("io");
    let img = RgbImage::new(5, 7, (0..105).map(|i| i as f32 / 104.0).collect()).unwrap();
    let p = d.join("a.png");
    images::save_png(&p, &img).unwrap();
    let back = images::load_rgb(&p).unwrap();
    assert_eq!((back.height, back.width), (5, 7));
    assert!(
        back.data
            .iter()
            .zip(&img.data)
            .all(|(a, b)| (a - b).abs() <= 0.5 / 255.0 + 1e-6)
    );
    // No temporary file is left beside the output.
    let names: Vec<_> = std::fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    // Gray expands to three equal channels; alpha is dropped.
    image::GrayImage::from_fn(4, 3, |x, _| image::Luma([(x * 60) as u8]))
        .save(d.join("g.png"))
        .unwrap();
    let g = images::load_rgb(&d.join("g.png")).unwrap();
    assert_eq!(&g.data[..12], &g.data[12..24]);
    image::RgbaImage::from_fn(4, 3, |_, _| image::Rgba([255, 0, 0, 10]))
        .save(d.join("r.png"))
        .unwrap();
    let r = images::load_rgb(&d.join("r.png")).unwrap();
    assert_eq!((r.data[0], r.data[12]), (1.0, 0.0));
    std::fs::write(d.join("bad.png"), b"\x89PNG\r\n\x1a\nnot really").unwrap();
    let e = images::load_rgb(&d.join("bad.png"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("bad.png"), "{e}");
    assert!(images::load_rgb(&d.join("missing.png")).is_err());
    let listed = images::list_images(&d).unwrap();
    assert_eq!(listed.len(), 4);
    assert!(images::list_images(&tmpdir("empty")).is_err());
}

#[test]
fn size_policy_never_changes_an_image_silently() {
    let img = RgbImage::new(50, 70, vec![0.5; 3 * 50 * 70]).unwrap();
    let e = images::fit(&img, 32, &SizePolicy::Strict)
        .unwrap_err()
        .to_string();
    assert!(e.contains("50x70") && e.contains("--resize"), "{e}");
    let r = images::fit(&img, 32, &SizePolicy::Resize(None)).unwrap();
    assert_eq!((r.height, r.width), (64, 64));
    assert!(r.data.iter().all(|v| (v - 0.5).abs() < 1e-3));
    let c = images::fit(&img, 32, &SizePolicy::Crop(None)).unwrap();
    assert_eq!((c.height, c.width), (32, 64));
    let c = images::fit(&img, 8, &SizePolicy::Crop(Some([16, 24]))).unwrap();
    assert_eq!((c.height, c.width), (16, 24));
    assert!(images::fit(&img, 8, &SizePolicy::Crop(Some([80, 8]))).is_err());
    assert!(images::fit(&img, 8, &SizePolicy::Resize(Some([20, 8]))).is_err());
    let ok = RgbImage::new(64, 32, vec![0.1; 3 * 64 * 32]).unwrap();
    assert_eq!(images::fit(&ok, 32, &SizePolicy::Strict).unwrap(), ok);
}

#[test]
fn batches_and_grids() {
    let a = RgbImage::new(4, 4, vec![0.0; 48]).unwrap();
    let b = RgbImage::new(2, 2, vec![1.0; 12]).unwrap();
    assert!(images::to_model_batch(&[a.clone(), b.clone()]).is_err());
    let m = images::to_model_batch(&[a.clone(), a.clone()]).unwrap();
    assert!(m.iter().all(|&v| v == -1.0) && m.len() == 96);
    assert_eq!(images::from_model(&m, 2, 4, 4)[1], a);
    let g = images::grid(&[&a, &b], 1);
    assert_eq!((g.height, g.width), (4, 9));
    // b is scaled 2x by nearest neighbour; the gap column stays white.
    assert_eq!(g.data[3 * 9 + 8], 1.0);
    assert_eq!(g.data[4], 1.0);
    assert_eq!(g.data[0], 0.0);
}
