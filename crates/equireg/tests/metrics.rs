//! PSNR and SSIM against scikit-image's values, LPIPS against an independent float64 PyTorch
//! statement of it (checked against the lpips package) with synthetic weights (all in
//! tests/fixtures/metrics, written by tools/make_metric_fixtures.py), and the relative L2 error.

use std::path::PathBuf;

use equireg::images::{RgbImage, load_rgb};
use equireg::lpips::Lpips;
use equireg::metrics::{psnr, rel_l2, ssim, ssim_planar};
use equireg_nn::{Weights, synthetic};

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

const LPIPS_RTOL: f64 = 1e-4;

/// The fixture's synthetic LPIPS weights: tools/synthetic.py's tensors, lin weights made
/// non-negative.
fn lpips_weights(seed: u64) -> Weights {
    let mut w = Weights::new();
    for (name, shape) in Lpips::spec() {
        let mut t = synthetic::tensor(seed, &name, &shape);
        if name.starts_with("lin") {
            t.iter_mut().for_each(|v| *v = v.abs());
        }
        w.insert(&name, &shape, t);
    }
    w
}

fn synthetic_image(seed: u64, name: &str, h: usize, w: usize) -> RgbImage {
    let data = synthetic::tensor(seed, name, &[3, h, w])
        .into_iter()
        .map(|v| (v + 1.0) * 0.5)
        .collect();
    RgbImage::new(h, w, data).unwrap()
}

fn lpips_fixture() -> serde_json::Value {
    let text = std::fs::read_to_string(fixtures().join("lpips.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn temp_file(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("equireg-metrics-{}-{name}", std::process::id()))
}

#[test]
fn lpips_spec_matches_the_converter() {
    let meta = lpips_fixture();
    let want: Vec<(String, Vec<usize>)> = meta["spec"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let shape = e[1].as_array().unwrap();
            (
                e[0].as_str().unwrap().to_string(),
                shape.iter().map(|d| d.as_u64().unwrap() as usize).collect(),
            )
        })
        .collect();
    assert_eq!(Lpips::spec(), want);
}

#[test]
fn lpips_matches_pytorch() {
    let meta = lpips_fixture();
    let cases = meta["cases"].as_array().unwrap();
    assert!(cases.len() >= 3);
    let seed = cases[0]["seed"].as_u64().unwrap();
    // Through a safetensors file, as users load it.
    let path = temp_file("lpips.safetensors");
    lpips_weights(seed).save(&path).unwrap();
    let model = Lpips::load(&path);
    let _ = std::fs::remove_file(&path);
    let model = model.unwrap();
    let mut worst = 0.0f64;
    for (i, case) in cases.iter().enumerate() {
        assert_eq!(case["seed"].as_u64().unwrap(), seed);
        let h = case["height"].as_u64().unwrap() as usize;
        let w = case["width"].as_u64().unwrap() as usize;
        let a = synthetic_image(seed, &format!("lpips.case{i}.a"), h, w);
        let b = match case["b"].as_str().unwrap() {
            "independent" => synthetic_image(seed, &format!("lpips.case{i}.b"), h, w),
            "noisy" => {
                let noise = synthetic::tensor(seed, &format!("lpips.case{i}.noise"), &[3, h, w]);
                let data = a
                    .data
                    .iter()
                    .zip(&noise)
                    .map(|(x, n)| (x + 0.1 * n).clamp(0.0, 1.0))
                    .collect();
                RgbImage::new(h, w, data).unwrap()
            }
            other => panic!("unknown case {other}"),
        };
        let layers = model.distance_per_layer(&a, &b).unwrap();
        let want: Vec<f64> = case["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        for (l, (got, want)) in layers.iter().zip(&want).enumerate() {
            let rel = (got - want).abs() / want.abs();
            worst = worst.max(rel);
            assert!(
                rel <= LPIPS_RTOL,
                "case {i} ({h}x{w}) layer {l}: {got} vs PyTorch {want} (relative {rel:.1e})"
            );
        }
        let total = model.distance(&a, &b).unwrap();
        let want_total = case["total"].as_f64().unwrap();
        assert!((total - want_total).abs() <= LPIPS_RTOL * want_total);
        assert!((model.distance(&b, &a).unwrap() - total).abs() <= 1e-6 * total);
        assert_eq!(model.distance(&a, &a).unwrap(), 0.0);
    }
    eprintln!("LPIPS: largest relative difference from PyTorch {worst:.1e}");
}

#[test]
fn lpips_errors() {
    let w = lpips_weights(1);
    let model = Lpips::from_weights(&w).unwrap();
    let a = synthetic_image(1, "x", 32, 40);
    assert!(
        model
            .distance(&a, &synthetic_image(1, "y", 32, 41))
            .is_err()
    );
    let small = synthetic_image(1, "z", 30, 64);
    let e = model.distance(&small, &small).unwrap_err().to_string();
    assert!(e.contains("31x31"), "{e}");

    // Strict weights: a missing tensor and a wrong shape are named.
    let mut bad = Weights::new();
    for name in w.names() {
        let (shape, data) = w.get(name).unwrap();
        if name == "features.3.bias" {
            continue;
        }
        if name == "lin2.model.1.weight" {
            bad.insert(name, &[384], data.to_vec());
        } else {
            bad.insert(name, shape, data.to_vec());
        }
    }
    let e = Lpips::from_weights(&bad).err().unwrap().to_string();
    assert!(e.contains("features.3.bias"), "{e}");
    assert!(e.contains("lin2.model.1.weight"), "{e}");
    let path = temp_file("bad.safetensors");
    bad.save(&path).unwrap();
    let e = Lpips::load(&path).err().unwrap().to_string();
    let _ = std::fs::remove_file(&path);
    assert!(e.contains("features.3.bias"), "{e}");
    assert!(Lpips::load(&temp_file("missing.safetensors")).is_err());
}
