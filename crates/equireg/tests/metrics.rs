//! PSNR and SSIM against scikit-image's values (tests/fixtures/metrics, written by
//! tools/make_metric_fixtures.py), and the relative L2 error.

use std::path::PathBuf;

use equireg::images::{RgbImage, load_rgb};
use equireg::metrics::{psnr, rel_l2, ssim, ssim_planar};

const PSNR_TOL: f64 = 1e-6;
const SSIM_TOL: f64 = 1e-5;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/metrics")
}

fn pairs() -> Vec<(String, String, f64, f64)> {
    let text = std::fs::read_to_string(fixtures().join("pairs.json")).unwrap();
    let meta: serde_json::Value = serde_json::from_str(&text).unwrap();
    meta["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["a"].as_str().unwrap().to_string(),
                p["b"].as_str().unwrap().to_string(),
                p["psnr"].as_f64().unwrap(),
                p["ssim"].as_f64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn psnr_and_ssim_match_scikit_image() {
    let pairs = pairs();
    assert!(pairs.len() >= 12, "fixture has {} pairs", pairs.len());
    let mut worst = (0.0f64, 0.0f64);
    for (a, b, want_psnr, want_ssim) in &pairs {
        let ia = load_rgb(&fixtures().join(a)).unwrap();
        let ib = load_rgb(&fixtures().join(b)).unwrap();
        let p = psnr(&ia, &ib).unwrap();
        let s = ssim(&ia, &ib).unwrap();
        assert!(
            (p - want_psnr).abs() <= PSNR_TOL,
            "PSNR({a}, {b}) = {p}, scikit-image {want_psnr}"
        );
        assert!(
            (s - want_ssim).abs() <= SSIM_TOL,
            "SSIM({a}, {b}) = {s}, scikit-image {want_ssim}"
        );
        // Both are symmetric.
        assert_eq!(psnr(&ib, &ia).unwrap(), p);
        assert!((ssim(&ib, &ia).unwrap() - s).abs() < 1e-12);
        worst.0 = worst.0.max((p - want_psnr).abs());
        worst.1 = worst.1.max((s - want_ssim).abs());
    }
    eprintln!(
        "largest differences from scikit-image: PSNR {:.2e} dB, SSIM {:.2e}",
        worst.0, worst.1
    );
}

#[test]
fn equal_images() {
    let img = load_rgb(&fixtures().join("noisy_37x50.png")).unwrap();
    assert_eq!(psnr(&img, &img).unwrap(), f64::INFINITY);
    assert!((ssim(&img, &img).unwrap() - 1.0).abs() < 1e-12);
}

#[test]
fn ssim_planar_averages_channels() {
    let a = load_rgb(&fixtures().join("smooth_64x64.png")).unwrap();
    let b = load_rgb(&fixtures().join("noisy_64x64.png")).unwrap();
    let plane = 64 * 64;
    let per: Vec<f64> = (0..3)
        .map(|c| {
            let r = c * plane..(c + 1) * plane;
            ssim_planar(&a.data[r.clone()], &b.data[r], 1, 64, 64).unwrap()
        })
        .collect();
    let all = ssim(&a, &b).unwrap();
    assert!((all - per.iter().sum::<f64>() / 3.0).abs() < 1e-12);
    assert!(per[0] != per[1], "channels should differ");
}

#[test]
fn size_errors() {
    let a = RgbImage::filled(20, 30, 0.5);
    let b = RgbImage::filled(20, 31, 0.5);
    assert!(psnr(&a, &b).is_err());
    assert!(ssim(&a, &b).is_err());
    // Smaller than the 11x11 window, as scikit-image refuses.
    let t = RgbImage::filled(10, 30, 0.5);
    let e = ssim(&t, &t).unwrap_err().to_string();
    assert!(e.contains("11x11"), "{e}");
    let broken = RgbImage {
        height: 20,
        width: 30,
        data: vec![0.0; 7],
    };
    assert!(psnr(&broken, &broken).is_err());
    assert!(ssim(&broken, &broken).is_err());
    assert!(ssim_planar(&[0.0; 121], &[0.0; 120], 1, 11, 11).is_err());
}

#[test]
fn psnr_of_a_known_error() {
    // Every value off by 0.1: MSE 0.01, PSNR 20 dB.
    let a = RgbImage::filled(12, 7, 0.25);
    let b = RgbImage::filled(12, 7, 0.35);
    let p = psnr(&a, &b).unwrap();
    let mse = (0.35f32 as f64 - 0.25f32 as f64).powi(2);
    assert!((p - 10.0 * (1.0 / mse).log10()).abs() < 1e-9, "{p}");
    assert!((p - 20.0).abs() < 1e-5, "{p}");
}

#[test]
fn relative_l2() {
    let b = [3.0f32, 4.0, 0.0];
    let a = [3.0f32, 4.0, 5.0];
    assert!((rel_l2(&a, &b).unwrap() - 1.0).abs() < 1e-12);
    let c = [6.0f32, 8.0, 0.0];
    assert!((rel_l2(&c, &b).unwrap() - 1.0).abs() < 1e-12);
    assert_eq!(rel_l2(&b, &b).unwrap(), 0.0);
    assert_eq!(rel_l2(&[0.0, 0.0], &[0.0, 0.0]).unwrap(), 0.0);
    assert_eq!(rel_l2(&[1.0, 0.0], &[0.0, 0.0]).unwrap(), f64::INFINITY);
    assert!(rel_l2(&a, &b[..2]).is_err());
    assert!(rel_l2(&[], &[]).is_err());
}
