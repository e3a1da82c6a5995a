//! The PDE-field pieces: the point-observation operator on the GPU against its CPU twin and its
//! adjoint, its drawn points (count, channels, independence from the batch), the field metrics,
//! the normalisation, and the errors of bad cases files.

use std::sync::OnceLock;

use equireg::operators::Operator;
use equireg::pde::metrics::{CaseMetrics, error_rate, relative_l2};
use equireg::pde::observe::PointObservation;
use equireg::pde::panel::{PanelInput, colour, render};
use equireg::pde::problem::load_cases;
use equireg::pde::{FieldNorm, Observe, Problem};
use equireg_gpu::{DType, Gpu, GpuOptions};

fn gpu() -> &'static Gpu {
    static GPU: OnceLock<Gpu> = OnceLock::new();
    GPU.get_or_init(|| {
        Gpu::new(&GpuOptions::default())
            .unwrap_or_else(|e| panic!("PDE tests need a GPU adapter: {e}"))
    })
}

/// Deterministic values in [-1, 1) (a small LCG: the tests need no statistics).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

const SHAPE: [usize; 4] = [3, 2, 12, 10];

#[test]
fn points_are_exactly_the_requested_count_in_the_observed_channels_only() {
    let plane = SHAPE[2] * SHAPE[3];
    for (observe, want) in [
        (Observe::Coefficient, [true, false]),
        (Observe::Solution, [false, true]),
        (Observe::Both, [true, true]),
    ] {
        let op = PointObservation::new(gpu(), SHAPE, observe, 17, 5, 0).unwrap();
        for (k, m) in op.mask().chunks(plane).enumerate() {
            let count = m.iter().filter(|v| **v == 1.0).count();
            let zeros = m.iter().filter(|v| **v == 0.0).count();
            assert_eq!(count + zeros, plane, "a mask holds only 0 and 1");
            let expected = if want[k % 2] { 17 } else { 0 };
            assert_eq!(count, expected, "{observe:?}, plane {k}");
        }
    }
    // The channels' points are independent draws, and so are the cases'.
    let op = PointObservation::new(gpu(), SHAPE, Observe::Both, 17, 5, 0).unwrap();
    let m = op.mask();
    assert_ne!(&m[..plane], &m[plane..2 * plane]);
    assert_ne!(&m[..plane], &m[2 * plane..3 * plane]);
}

#[test]
fn a_case_gets_the_same_points_alone_or_in_a_batch() {
    let plane = SHAPE[2] * SHAPE[3];
    let batch = PointObservation::new(gpu(), SHAPE, Observe::Both, 30, 9, 4).unwrap();
    let alone =
        PointObservation::new(gpu(), [1, 2, SHAPE[2], SHAPE[3]], Observe::Both, 30, 9, 6).unwrap();
    assert_eq!(&batch.mask()[4 * plane..6 * plane], alone.mask());
    let other_seed =
        PointObservation::new(gpu(), [1, 2, SHAPE[2], SHAPE[3]], Observe::Both, 30, 10, 6).unwrap();
    assert_ne!(other_seed.mask(), alone.mask());
}

#[test]
fn observation_gpu_matches_cpu_twin_and_is_self_adjoint() {
    let g = gpu();
    let op = PointObservation::new(g, SHAPE, Observe::Both, 40, 1, 0).unwrap();
    let n = SHAPE.iter().product::<usize>();
    let x = values(n, 1);
    let dy = values(n, 2);
    let xt = g.upload(&SHAPE, &x).unwrap();
    let dyt = g.upload(&SHAPE, &dy).unwrap();
    let out = g.alloc(&SHAPE, DType::F32).unwrap();
    let dx = g.alloc(&SHAPE, DType::F32).unwrap();
    let mut rec = g.recorder();
    op.record_forward(&mut rec, &xt, &out).unwrap();
    op.record_vjp(&mut rec, &xt, &dyt, &dx).unwrap();
    rec.submit().unwrap();
    let got = g.download(&out).unwrap();
    let got_dx = g.download(&dx).unwrap();
    // Independent statement: y = x where observed, 0 elsewhere.
    let want: Vec<f32> = x
        .iter()
        .zip(op.mask())
        .map(|(v, m)| if *m == 1.0 { *v } else { 0.0 })
        .collect();
    assert_eq!(got, want);
    assert_eq!(op.forward_cpu(&x), want);
    assert_eq!(got_dx, op.vjp_cpu(&x, &dy));
    let dot = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(p, q)| *p as f64 * *q as f64)
            .sum::<f64>()
    };
    let lhs = dot(&got, &dy);
    let rhs = dot(&x, &got_dx);
    assert!(
        (lhs - rhs).abs() <= 1e-9 * (1.0 + lhs.abs()),
        "{lhs} vs {rhs}"
    );
}

#[test]
fn bad_point_counts_and_shapes_are_errors() {
    let e = PointObservation::new(gpu(), SHAPE, Observe::Both, 0, 1, 0)
        .err()
        .unwrap();
    assert!(e.to_string().contains("--points 0"), "{e}");
    let e = PointObservation::new(gpu(), SHAPE, Observe::Both, 121, 1, 0)
        .err()
        .unwrap();
    assert!(e.to_string().contains("120 pixels"), "{e}");
    let e = PointObservation::new(gpu(), [1, 3, 4, 4], Observe::Both, 2, 1, 0)
        .err()
        .unwrap();
    assert!(e.to_string().contains("2-channel"), "{e}");
}

#[test]
fn relative_l2_and_error_rate() {
    let truth = [3.0f32, 4.0, 0.0];
    assert_eq!(relative_l2(&truth, &truth), 0.0);
    // ||(0.3, 0.4, 0)|| / 5 = 0.1
    let pred = [3.3f32, 4.4, 0.0];
    assert!((relative_l2(&pred, &truth) - 0.1).abs() < 1e-6);
    assert_eq!(relative_l2(&[1.0], &[0.0]), f64::INFINITY);
    let a = [3.0f32, 12.0, 12.0, 3.0];
    let p = [7.4f32, 7.6, 3.0, 3.0];
    assert_eq!(error_rate(&p, &a, 7.5), 0.25);
    let m = CaseMetrics::of(
        "case-0000",
        0,
        "dps",
        &[1.0, 2.0, 2.0, 4.0],
        &[1.0, 2.0, 2.0, 2.0],
        Some(1.5),
    );
    assert_eq!(m.rel_l2_a, 0.0);
    assert!((m.rel_l2_u - (4.0f64 / 8.0).sqrt()).abs() < 1e-12);
    assert_eq!(m.error_rate_a, Some(0.0));
}

#[test]
fn normalisation_round_trips_and_refuses_bad_values() {
    let norm = FieldNorm::from_json(
        r#"{"mean": [7.5, 0.005], "std": [4.5, 0.004], "scale": 0.5}"#,
        "t",
    )
    .unwrap();
    let plane = 3;
    let phys = vec![3.0f32, 12.0, 7.5, 0.0, 0.005, 0.013];
    let mut x = phys.clone();
    norm.to_model(&mut x, plane);
    assert!((x[0] + 0.5).abs() < 1e-6 && (x[1] - 0.5).abs() < 1e-6 && x[2].abs() < 1e-6);
    assert!((x[5] - 1.0).abs() < 1e-5, "{}", x[5]);
    norm.to_physical(&mut x, plane);
    for (a, b) in x.iter().zip(&phys) {
        assert!((a - b).abs() <= 1e-6 * (1.0 + b.abs()), "{a} vs {b}");
    }
    for bad in [
        r#"{"mean": [0, 0], "std": [0, 1], "scale": 0.5}"#,
        r#"{"mean": [0, 0], "std": [1, 1], "scale": -1}"#,
        r#"{"mean": [0], "std": [1, 1], "scale": 0.5}"#,
    ] {
        assert!(FieldNorm::from_json(bad, "t").is_err(), "{bad}");
    }
}

#[test]
fn problems_and_sides_parse() {
    assert_eq!(Problem::parse("darcy").unwrap(), Problem::Darcy);
    assert_eq!(
        Problem::parse("navier-stokes").unwrap(),
        Problem::NavierStokes
    );
    assert!(
        Problem::parse("burgers")
            .unwrap_err()
            .to_string()
            .contains("--problem")
    );
    assert_eq!(Observe::parse("u").unwrap(), Observe::Solution);
    assert!(
        Observe::parse("x")
            .unwrap_err()
            .to_string()
            .contains("--observe")
    );
    assert_eq!(Problem::Darcy.valid_group(), Some("d4"));
    assert_eq!(Problem::Darcy.coefficient_threshold(), Some(7.5));
}

#[test]
fn cases_files_are_checked() {
    let dir = std::env::temp_dir().join(format!("equireg-pde-cases-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.npy");
    equireg_nn::npy::write_f32(&good, &[1, 2, 4, 4], &[0.5; 32]).unwrap();
    assert_eq!(load_cases(&good).unwrap().0, [1, 2, 4, 4]);
    let three = dir.join("three.npy");
    equireg_nn::npy::write_f32(&three, &[1, 3, 4, 4], &[0.5; 48]).unwrap();
    let e = load_cases(&three).unwrap_err().to_string();
    assert!(e.contains("three.npy") && e.contains("[N, 2, H, W]"), "{e}");
    let mut data = vec![0.5f32; 64];
    data[16 + 32] = f32::NAN;
    let nan = dir.join("nan.npy");
    equireg_nn::npy::write_f32(&nan, &[2, 2, 4, 4], &data).unwrap();
    let e = load_cases(&nan).unwrap_err().to_string();
    assert!(
        e.contains("case 1 channel 1") && e.contains("non-finite"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn panel_has_a_tile_per_field_and_names_its_scales() {
    let (h, w) = (4, 5);
    let truth: Vec<f32> = (0..2 * h * w).map(|i| i as f32).collect();
    let mask: Vec<f32> = (0..2 * h * w).map(|i| (i % 3 == 0) as u8 as f32).collect();
    let rec: Vec<f32> = truth.iter().map(|v| v + 1.0).collect();
    let (img, caption) = render(
        &PanelInput {
            h,
            w,
            truth: &truth,
            mask: &mask,
            reconstructions: vec![("dps", &rec)],
        },
        ["a", "u"],
    )
    .unwrap();
    assert_eq!(img.height, 2 * h + 2);
    assert_eq!(img.width, 4 * (w + 2) + 4 + 2);
    assert!(
        caption.contains("dps error") && caption.contains("0 to 1.000000"),
        "{caption}"
    );
    // The truth's lowest value gets the ramp's first colour.
    let px = [0, 1, 2].map(|c| img.get(c, 0, 0));
    assert_eq!(px, colour(0.0));
    let top = colour(1.0);
    for (a, b) in top.iter().zip([0.993, 0.906, 0.144]) {
        assert!((a - b).abs() < 1e-6, "{top:?}");
    }
    // Out-of-range and non-finite values clamp to the ends.
    assert_eq!(colour(-3.0), colour(0.0));
    assert_eq!(colour(f32::NAN), colour(0.0));
}

/// The residual in physical units (mean 0, scale 1) of case `k` of the validation file, with
/// its own u or another case's.
fn val_residual_loss(k: usize, u_from: usize) -> f64 {
    use equireg_gpu::ops::pde_residual::DarcyResidualParams;
    use equireg_gpu::reference::pde_residual::darcy_residual;
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/pde/darcy_val.npy");
    let (_, data) = load_cases(&path).unwrap();
    let plane = 64 * 64;
    let mut x = data[k * 2 * plane..(k * 2 + 1) * plane].to_vec();
    x.extend_from_slice(&data[(u_from * 2 + 1) * plane..(u_from * 2 + 2) * plane]);
    let p = DarcyResidualParams {
        a_mean: 0.0,
        a_scale: 1.0,
        u_mean: 0.0,
        u_scale: 1.0,
        spacing: 1.0 / 63.0,
        crop: 2,
        weight: 1.0,
        delta: 0.0,
    };
    darcy_residual(&x, [1, 2, 64, 64], &p)[0].1
}

#[test]
fn true_darcy_pairs_have_a_small_residual() {
    // The data's finite-volume solution is not the central-difference form's exact solution,
    // but a case's own u fits its a far better than another case's u does (which also checks
    // that a and u share one orientation: a transposed u would fit no better than another's).
    for k in 0..3 {
        let own = val_residual_loss(k, k);
        let other = val_residual_loss(k, (k + 1) % 10);
        assert!(own < 0.25 * other, "case {k}: own {own}, other {other}");
    }
}

#[test]
fn darcy_penalty_records_the_twin_gradient_and_fires_below_sigma_one() {
    use equireg::pde::residual::{DarcyPenalty, ResidualSettings};
    use equireg::solvers::Penalty;
    use equireg_gpu::reference::pde_residual::darcy_residual_grad;
    let g = gpu();
    let shape = [2, 2, 16, 16];
    let norm = FieldNorm::from_json(
        r#"{"mean": [7.5, 0.005], "std": [4.5, 0.004], "scale": 0.5}"#,
        "t",
    )
    .unwrap();
    let settings = ResidualSettings {
        weight: 3.0,
        ..ResidualSettings::default()
    };
    let pen = DarcyPenalty::new(g, Problem::Darcy, shape, &norm, settings).unwrap();
    assert!(pen.fires(0, 10, 0.5) && pen.fires(0, 10, 1.0) && !pen.fires(0, 10, 1.5));
    let n = shape.iter().product::<usize>();
    let x = values(n, 3);
    let xt = g.upload(&shape, &x).unwrap();
    let dx = g.upload(&shape, &vec![0.0; n]).unwrap();
    let mut rec = g.recorder();
    pen.record_grad(&mut rec, &xt, &dx).unwrap();
    rec.submit().unwrap();
    let got = g.download(&dx).unwrap();
    let want = darcy_residual_grad(&x, shape, pen.params());
    let scale = want.iter().fold(0f64, |m, v| m.max(v.abs()));
    assert!(scale > 0.0);
    for (a, b) in got.iter().zip(&want) {
        assert!((*a as f64 - b).abs() <= 1e-4 * scale, "{a} vs {b}");
    }
    let e = DarcyPenalty::new(g, Problem::Poisson, shape, &norm, settings)
        .err()
        .unwrap();
    assert!(e.to_string().contains("only Darcy"), "{e}");
    let bad = ResidualSettings {
        weight: f64::NAN,
        ..settings
    };
    assert!(DarcyPenalty::new(g, Problem::Darcy, shape, &norm, bad).is_err());
}
