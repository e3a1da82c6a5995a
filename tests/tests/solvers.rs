//! The posterior samplers beside DPS against PyTorch re-statements of their reference code
//! (tools/make_solver_fixtures.py, float64, the same synthetic network and the engine's Philox
//! draws): every step from the reference's state, the whole run, and the seam's contracts.

use equireg::operators::Operator;
use equireg::operators::inpaint::Inpaint;
use equireg::operators::phase_retrieval::PhaseRetrieval;
use equireg::operators::resize::{ResizeKind, SuperResolution};
use equireg::solvers::daps::{Daps, DapsSettings};
use equireg::solvers::ddnm::{Ddnm, DdnmSettings};
use equireg::solvers::diffpir::{DataStep, DiffPir, DiffPirSettings};
use equireg::solvers::pigdm::{Pigdm, PigdmSettings};
use equireg::solvers::red_diff::{RedDiff, RedDiffSettings};
use equireg::solvers::sitcom::{EquiRegAt, Sitcom, SitcomSettings};
use equireg::solvers::{PosteriorSampler, Problem};
use equireg_gpu::{Gpu, GpuOptions};
use equireg_nn::{UNet, UNetConfig, npy, synthetic};
use equireg_tests::rel_l2;
use std::path::PathBuf;

fn gpu() -> Gpu {
    Gpu::new(&GpuOptions::default())
        .unwrap_or_else(|e| panic!("this test needs a GPU adapter: {e}"))
}

/// The fixtures' network: tiny32 with the synthetic weights of seed 11.
fn tiny_unet(g: &Gpu) -> UNet {
    let cfg = UNetConfig::preset("tiny32").unwrap();
    UNet::new(
        g,
        &cfg,
        &synthetic::weights(11, &UNet::weight_spec(&cfg).unwrap()),
    )
    .unwrap()
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/solvers")
        .join(name)
}

fn read(dir: &std::path::Path, name: &str) -> (Vec<usize>, Vec<f32>) {
    npy::read_f32(&dir.join(format!("{name}.npy"))).unwrap()
}

/// A fixture's settings, operator (sr4 or phase retrieval) and measurement.
struct Case {
    dir: PathBuf,
    meta: serde_json::Value,
    batch: usize,
    size: usize,
    seed: u64,
    operator: Box<dyn Operator>,
}

fn case(g: &Gpu, name: &str) -> Case {
    let dir = fixture(name);
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap();
    let batch = meta["batch"].as_u64().unwrap() as usize;
    let size = meta["size"].as_u64().unwrap() as usize;
    let shape = [batch, 3, size, size];
    let operator: Box<dyn Operator> = if name.ends_with("sr4") {
        Box::new(SuperResolution::new(g, shape, 4, ResizeKind::Bicubic).unwrap())
    } else if name.ends_with("box-inpaint") {
        Box::new(Inpaint::from_mask(g, shape, read(&dir, "mask").1).unwrap())
    } else {
        Box::new(PhaseRetrieval::new(g, shape, 2.0).unwrap())
    };
    Case {
        seed: meta["seed"].as_u64().unwrap(),
        dir,
        meta,
        batch,
        size,
        operator,
    }
}

fn check_diffpir(g: &Gpu, unet: &UNet, name: &str) {
    let Case {
        dir,
        meta,
        batch,
        size,
        seed,
        operator,
    } = case(g, name);
    let (ys, y) = read(&dir, "y");
    let y = g.upload(&ys, &y).unwrap();
    let settings = DiffPirSettings {
        steps: meta["steps"].as_u64().unwrap() as usize,
        lambda: meta["lambda"].as_f64().unwrap(),
        zeta: meta["zeta"].as_f64().unwrap(),
        noise_sigma: meta["noise_sigma"].as_f64().unwrap(),
        clip: true,
        data_step: match meta["data_step"].as_str() {
            Some("prox") => DataStep::Prox,
            _ => DataStep::Gradient,
        },
    };
    let (ss, states) = read(&dir, "states");
    let per = ss[1..].iter().product::<usize>();
    let state = |r: usize| &states[r * per..(r + 1) * per];
    let mut s = DiffPir::new(
        g,
        unet,
        [batch, size, size],
        &settings,
        Problem::new(operator.as_ref(), &y),
    )
    .unwrap();
    assert_eq!(ss[0], settings.steps + 1, "a state per step, and x_T");
    // Each step from the reference's state.
    for r in 0..settings.steps {
        s.begin_from(seed, 0, state(r), r).unwrap();
        s.step().unwrap();
        let got = s.finish().unwrap();
        let e = rel_l2(&got, state(r + 1));
        eprintln!("{name}: step {r}: relative L2 {e:.2e}");
        assert!(e < 1e-4, "{name}: step {r} relative L2 error {e:.3e}");
    }
    // The whole run from the engine's own x_T draw.
    s.begin(seed, 0).unwrap();
    let x_t = g.download(s.state()).unwrap();
    let e0 = rel_l2(&x_t, state(0));
    assert!(
        e0 < 1e-6,
        "{name}: x_T differs from the Philox twin's by {e0:.3e}"
    );
    let out = s.run(&mut |_| Ok(())).unwrap();
    let e = rel_l2(&out, state(settings.steps));
    eprintln!(
        "{name}: whole run of {} steps: relative L2 {e:.2e}",
        settings.steps
    );
    assert!(e < 1e-4, "{name}: final sample relative L2 error {e:.3e}");
    assert_eq!(s.evaluations().forward, settings.steps - 1);
}

#[test]
fn diffpir_matches_its_reference_restatement() {
    let g = gpu();
    let unet = tiny_unet(&g);
    for name in [
        "diffpir-sr4",
        "diffpir-phase-retrieval",
        "diffpir-prox-sr4",
        "diffpir-prox-box-inpaint",
    ] {
        check_diffpir(&g, &unet, name);
    }
}

fn check_daps(g: &Gpu, unet: &UNet, name: &str) {
    let Case {
        dir,
        meta,
        batch,
        size,
        seed,
        operator,
    } = case(g, name);
    let (ys, y) = read(&dir, "y");
    let y = g.upload(&ys, &y).unwrap();
    let count = |k: &str| meta[k].as_u64().unwrap() as usize;
    let float = |k: &str| meta[k].as_f64().unwrap();
    let settings = DapsSettings {
        steps: count("steps"),
        ode_steps: count("ode_steps"),
        langevin_steps: count("langevin_steps"),
        lr: float("lr"),
        lr_min_ratio: float("lr_min_ratio"),
        tau: float("tau"),
        sigma_max: float("sigma_max"),
        sigma_min: float("sigma_min"),
        ode_sigma_min: float("ode_sigma_min"),
    };
    let (ss, states) = read(&dir, "states");
    let per = ss[1..].iter().product::<usize>();
    let state = |r: usize| &states[r * per..(r + 1) * per];
    let mut s = Daps::new(
        g,
        unet,
        [batch, size, size],
        &settings,
        Problem::new(operator.as_ref(), &y),
    )
    .unwrap();
    assert_eq!(
        ss[0],
        settings.steps + 1,
        "a state per level, and the start"
    );
    // Each annealing level from the reference's state.
    for r in 0..settings.steps {
        s.begin_from(seed, 0, state(r), r).unwrap();
        s.step().unwrap();
        let got = s.finish().unwrap();
        let e = rel_l2(&got, state(r + 1));
        let moved = rel_l2(state(r), state(r + 1));
        eprintln!("{name}: level {r}: relative L2 {e:.2e} (the level moved x by {moved:.2e})");
        assert!(e < 1e-4, "{name}: level {r} relative L2 error {e:.3e}");
    }
    // The whole run from the engine's own start, sigma_max times its Philox draw.
    s.begin(seed, 0).unwrap();
    let start = g.download(s.state()).unwrap();
    let e0 = rel_l2(&start, state(0));
    assert!(
        e0 < 1e-6,
        "{name}: the start differs from the Philox twin's by {e0:.3e}"
    );
    let out = s.run(&mut |_| Ok(())).unwrap();
    let e = rel_l2(&out, state(settings.steps));
    eprintln!(
        "{name}: whole run of {} levels: relative L2 {e:.2e}",
        settings.steps
    );
    assert!(e < 1e-4, "{name}: final sample relative L2 error {e:.3e}");
    assert_eq!(s.evaluations().forward, settings.steps * settings.ode_steps);
}

#[test]
fn daps_matches_its_reference_restatement() {
    let g = gpu();
    let unet = tiny_unet(&g);
    for name in ["daps-sr4", "daps-phase-retrieval"] {
        check_daps(&g, &unet, name);
    }
}

fn check_sitcom(g: &Gpu, unet: &UNet, name: &str) {
    let Case {
        dir,
        meta,
        batch,
        size,
        seed,
        operator,
    } = case(g, name);
    let (ys, y) = read(&dir, "y");
    let y = g.upload(&ys, &y).unwrap();
    let settings = SitcomSettings {
        steps: meta["steps"].as_u64().unwrap() as usize,
        inner_steps: meta["inner_steps"].as_u64().unwrap() as usize,
        lr: meta["lr"].as_f64().unwrap(),
        noise_level: meta["noise_level"].as_f64().unwrap(),
        dc_scale: meta["dc_scale"].as_f64().unwrap(),
        equireg_steps: 30,
        equireg_at: EquiRegAt::Phase,
    };
    let (ss, states) = read(&dir, "states");
    let per = ss[1..].iter().product::<usize>();
    let state = |r: usize| &states[r * per..(r + 1) * per];
    let (_, x0) = read(&dir, "x0");
    let mut s = Sitcom::new(
        g,
        unet,
        [batch, size, size],
        &settings,
        Problem::new(operator.as_ref(), &y),
    )
    .unwrap();
    assert_eq!(ss[0], settings.steps + 1, "a state per step, and x_T");
    // Each step from the reference's state (the fixture's stops: meta["stops"]).
    for r in 0..settings.steps {
        s.begin_from(seed, 0, state(r), r).unwrap();
        s.step().unwrap();
        let got = g.download(s.noisy_state()).unwrap();
        let e = rel_l2(&got, state(r + 1));
        eprintln!("{name}: step {r}: relative L2 {e:.2e}");
        assert!(e < 1e-4, "{name}: step {r} relative L2 error {e:.3e}");
    }
    // The whole run from the engine's own x_T: the result is the last step's x0.
    s.begin(seed, 0).unwrap();
    let e0 = rel_l2(&g.download(s.noisy_state()).unwrap(), state(0));
    assert!(
        e0 < 1e-6,
        "{name}: x_T differs from the Philox twin's by {e0:.3e}"
    );
    let out = s.run(&mut |_| Ok(())).unwrap();
    let e = rel_l2(&out, &x0);
    eprintln!(
        "{name}: whole run of {} steps: relative L2 {e:.2e} (stops {})",
        settings.steps, meta["stops"]
    );
    assert!(e < 1e-4, "{name}: final sample relative L2 error {e:.3e}");
    let ev = s.evaluations();
    assert_eq!(
        (ev.forward, ev.vjp),
        (
            settings.steps * settings.inner_steps,
            settings.steps * (settings.inner_steps - 1)
        )
    );
}

#[test]
fn sitcom_matches_its_reference_restatement_with_per_sample_stops() {
    let g = gpu();
    let unet = tiny_unet(&g);
    for name in ["sitcom-sr4", "sitcom-box-inpaint"] {
        check_sitcom(&g, &unet, name);
    }
}

fn check_ddnm(g: &Gpu, unet: &UNet, name: &str) {
    let Case {
        dir,
        meta,
        batch,
        size,
        seed,
        operator,
    } = case(g, name);
    let (ys, y) = read(&dir, "y");
    let y = g.upload(&ys, &y).unwrap();
    let settings = DdnmSettings {
        steps: meta["steps"].as_u64().unwrap() as usize,
        eta: meta["eta"].as_f64().unwrap(),
        noise_sigma: meta["noise_sigma"].as_f64().unwrap(),
        penalty_step: 1.0,
    };
    let (ss, states) = read(&dir, "states");
    let per = ss[1..].iter().product::<usize>();
    let state = |r: usize| &states[r * per..(r + 1) * per];
    let mut s = Ddnm::new(
        g,
        unet,
        [batch, size, size],
        &settings,
        Problem::new(operator.as_ref(), &y),
    )
    .unwrap();
    for r in 0..settings.steps {
        s.begin_from(seed, 0, state(r), r).unwrap();
        s.step().unwrap();
        let e = rel_l2(&s.finish().unwrap(), state(r + 1));
        eprintln!("{name}: step {r}: relative L2 {e:.2e}");
        assert!(e < 1e-4, "{name}: step {r} relative L2 error {e:.3e}");
    }
    s.begin(seed, 0).unwrap();
    let out = s.run(&mut |_| Ok(())).unwrap();
    let e = rel_l2(&out, state(settings.steps));
    eprintln!(
        "{name}: whole run of {} steps: relative L2 {e:.2e}",
        settings.steps
    );
    assert!(e < 1e-4, "{name}: final sample relative L2 error {e:.3e}");
}

#[test]
fn ddnm_matches_its_reference_restatement_and_refuses_operators_without_a_pseudo_inverse() {
    let g = gpu();
    let unet = tiny_unet(&g);
    for name in ["ddnm-sr4", "ddnm-box-inpaint"] {
        check_ddnm(&g, &unet, name);
    }
    let pr = PhaseRetrieval::new(&g, [1, 3, 32, 32], 2.0).unwrap();
    let y = g
        .alloc(&pr.output_shape(), equireg_gpu::DType::F32)
        .unwrap();
    let settings = DdnmSettings {
        steps: 3,
        eta: 0.85,
        noise_sigma: 0.05,
        penalty_step: 1.0,
    };
    let err = Ddnm::new(&g, &unet, [1, 32, 32], &settings, Problem::new(&pr, &y))
        .err()
        .expect("phase retrieval has no pseudo-inverse");
    assert!(
        err.to_string()
            .contains("ddnm needs the operator's pseudo-inverse"),
        "{err}"
    );
}

fn check_pigdm(g: &Gpu, unet: &UNet, name: &str) {
    let Case {
        dir,
        meta,
        batch,
        size,
        seed,
        operator,
    } = case(g, name);
    let (ys, y) = read(&dir, "y");
    let y = g.upload(&ys, &y).unwrap();
    let settings = PigdmSettings {
        steps: meta["steps"].as_u64().unwrap() as usize,
        eta: meta["eta"].as_f64().unwrap(),
        weight: meta["weight"].as_f64().unwrap(),
        noise_sigma: meta["noise_sigma"].as_f64().unwrap(),
    };
    let (ss, states) = read(&dir, "states");
    let per = ss[1..].iter().product::<usize>();
    let state = |r: usize| &states[r * per..(r + 1) * per];
    let mut s = Pigdm::new(
        g,
        unet,
        [batch, size, size],
        &settings,
        Problem::new(operator.as_ref(), &y),
    )
    .unwrap();
    for r in 0..settings.steps {
        s.begin_from(seed, 0, state(r), r).unwrap();
        s.step().unwrap();
        let e = rel_l2(&s.finish().unwrap(), state(r + 1));
        eprintln!("{name}: step {r}: relative L2 {e:.2e}");
        assert!(e < 1e-4, "{name}: step {r} relative L2 error {e:.3e}");
    }
    // The whole run from the engine's x_T (the pseudo-inverse of y, noised).
    s.begin(seed, 0).unwrap();
    let e0 = rel_l2(&g.download(s.state()).unwrap(), state(0));
    assert!(e0 < 1e-5, "{name}: x_T differs by {e0:.3e}");
    let out = s.run(&mut |_| Ok(())).unwrap();
    let e = rel_l2(&out, state(settings.steps));
    eprintln!(
        "{name}: whole run of {} steps: relative L2 {e:.2e}",
        settings.steps
    );
    assert!(e < 1e-4, "{name}: final sample relative L2 error {e:.3e}");
}

#[test]
fn pigdm_matches_its_reference_restatement() {
    let g = gpu();
    let unet = tiny_unet(&g);
    for name in ["pigdm-sr4", "pigdm-box-inpaint"] {
        check_pigdm(&g, &unet, name);
    }
}

fn check_red_diff(g: &Gpu, unet: &UNet, name: &str) {
    let Case {
        dir,
        meta,
        batch,
        size,
        seed,
        operator,
    } = case(g, name);
    let (ys, y) = read(&dir, "y");
    let y = g.upload(&ys, &y).unwrap();
    let settings = RedDiffSettings {
        steps: meta["steps"].as_u64().unwrap() as usize,
        lr: meta["lr"].as_f64().unwrap(),
        lambda: meta["lambda"].as_f64().unwrap(),
        obs_weight: meta["obs_weight"].as_f64().unwrap(),
    };
    let (ss, states) = read(&dir, "states");
    let per = ss[1..].iter().product::<usize>();
    let state = |r: usize| &states[r * per..(r + 1) * per];
    let (_, mu0) = read(&dir, "mu0");
    let mut s = RedDiff::new(
        g,
        unet,
        [batch, size, size],
        &settings,
        Problem::new(operator.as_ref(), &y),
    )
    .unwrap();
    s.begin_from(seed, 0, &mu0).unwrap();
    // Adam's state carries over the steps, so the run is checked as a whole, step by step. The
    // reference's result is mu before the last step's update (states[K - 1]).
    for r in 0..settings.steps {
        s.step().unwrap();
        let got = g.download(s.state()).unwrap();
        let want = state((r + 1).min(settings.steps - 1));
        let e = rel_l2(&got, want);
        let moved = rel_l2(state(r), state(r + 1));
        eprintln!("{name}: after step {r}: relative L2 {e:.2e} (the step moved mu by {moved:.2e})");
        assert!(e < 1e-4, "{name}: step {r} relative L2 error {e:.3e}");
    }
    assert_eq!(s.evaluations().forward, settings.steps - 1);
    // `begin` starts from the operator's naive estimate of y.
    s.begin(seed, 0).unwrap();
    let want = operator.naive_estimate(&g.download(&y).unwrap());
    assert_eq!(g.download(s.state()).unwrap(), want);
}

#[test]
fn red_diff_matches_its_reference_restatement() {
    let g = gpu();
    let unet = tiny_unet(&g);
    for name in ["red-diff-sr4", "red-diff-phase-retrieval"] {
        check_red_diff(&g, &unet, name);
    }
}
