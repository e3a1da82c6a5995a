//! DPS on the GPU: one step against a PyTorch re-statement of the reference update
//! (tools/make_dps_fixtures.py, float64), and the whole loop's residency and repeatability.

use equireg_tests::rel_l2;
use std::path::PathBuf;

use equireg::operators::Operator;
use equireg::operators::blur::Blur;
use equireg::operators::inpaint::Inpaint;
use equireg::operators::phase_retrieval::PhaseRetrieval;
use equireg::operators::resize::{ResizeKind, SuperResolution};
use equireg::solvers::{DiffusionConfig, Guidance, Problem, Solver};
use equireg::task::Task;
use equireg_gpu::{Gpu, GpuOptions};
use equireg_nn::{UNet, UNetConfig, npy, synthetic};

fn gpu() -> Gpu {
    Gpu::new(&GpuOptions::default())
        .unwrap_or_else(|e| panic!("this test needs a GPU adapter: {e}"))
}

fn synthetic_unet(g: &Gpu, cfg: &UNetConfig, seed: u64) -> UNet {
    let w = synthetic::weights(seed, &UNet::weight_spec(cfg).unwrap());
    UNet::new(g, cfg, &w).unwrap()
}

fn fixture(task: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/dps")
        .join(task)
}

fn read(dir: &std::path::Path, name: &str) -> (Vec<usize>, Vec<f32>) {
    npy::read_f32(&dir.join(format!("{name}.npy"))).unwrap()
}

/// One DPS step from the fixture's x_t at its step row; checks x' and x_{t-1} = x' - zeta grad,
/// and the guidance term x_{t-1} - x' on its own (it is about 1-4 % of x', so the check of
/// x_{t-1} alone would hardly see it).
fn check_step(g: &Gpu, unet: &UNet, task: &str) {
    let dir = fixture(task);
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap();
    let batch = meta["batch"].as_u64().unwrap() as usize;
    let size = meta["size"].as_u64().unwrap() as usize;
    let shape = [batch, 3, size, size];
    let operator: Box<dyn Operator> = match task {
        "sr4" => Box::new(SuperResolution::new(g, shape, 4, ResizeKind::Bicubic).unwrap()),
        "gaussian-deblur" => {
            let blur = Blur::gaussian(g, shape, 61, 3.0).unwrap();
            // Our kernel against scipy's gaussian_filter of a centred delta.
            let (_, k) = read(&dir, "kernel");
            let err = blur
                .kernel()
                .iter()
                .zip(&k)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(err < 1e-7, "gaussian kernel differs from scipy's by {err}");
            Box::new(blur)
        }
        "box-inpaint" => Box::new(Inpaint::from_mask(g, shape, read(&dir, "mask").1).unwrap()),
        "phase-retrieval" => Box::new(PhaseRetrieval::new(g, shape, 2.0).unwrap()),

        _ => unreachable!(),
    };
    let (ys, y) = read(&dir, "y");
    let config = DiffusionConfig::for_model(unet.config(), meta["respacing"].as_str().unwrap());
    let y = g.upload(&ys, &y).unwrap();
    let guidance = Guidance {
        problem: Problem::new(operator.as_ref(), &y),
        zeta: meta["zeta"].as_f64().unwrap() as f32,
    };
    let mut solver = Solver::new(g, unet, [batch, size, size], &config, Some(guidance)).unwrap();
    let (_, x_t) = read(&dir, "x_t");
    let row = meta["row"].as_u64().unwrap() as usize;
    solver
        .begin_from(meta["seed"].as_u64().unwrap(), 0, &x_t, row)
        .unwrap();
    solver.step().unwrap();
    let x_prime = g.download(solver.proposal()).unwrap();
    let x_next = g.download(solver.state()).unwrap();
    let norms = g.download(solver.residual_norm().unwrap()).unwrap();
    let (_, want_prime) = read(&dir, "x_prime");
    let (_, want_next) = read(&dir, "x_next");
    let delta: Vec<f32> = x_next.iter().zip(&x_prime).map(|(a, b)| a - b).collect();
    let want_delta: Vec<f32> = want_next
        .iter()
        .zip(&want_prime)
        .map(|(a, b)| a - b)
        .collect();
    let (e_prime, e_next, e_delta) = (
        rel_l2(&x_prime, &want_prime),
        rel_l2(&x_next, &want_next),
        rel_l2(&delta, &want_delta),
    );
    eprintln!(
        "{task}: x' {e_prime:.2e}, x_(t-1) {e_next:.2e}, guidance term {e_delta:.2e}, norms \
         {norms:?} (reference {})",
        meta["norm"]
    );
    for (k, want) in meta["norm"].as_array().unwrap().iter().enumerate() {
        let want = want.as_f64().unwrap();
        assert!(
            ((norms[k] as f64) - want).abs() <= 1e-3 * want,
            "{task}: ||y - A(x0)|| of sample {k} is {}, reference {want}",
            norms[k]
        );
    }
    assert!(e_prime < 1e-3, "{task}: x' relative L2 error {e_prime:.3e}");
    assert!(
        e_next < 1e-3,
        "{task}: x_(t-1) relative L2 error {e_next:.3e}"
    );
    assert!(
        e_delta < 1e-3,
        "{task}: guidance term relative L2 error {e_delta:.3e}"
    );
}

#[test]
fn one_dps_step_matches_the_reference_restatement() {
    let g = gpu();
    let unet = synthetic_unet(&g, &UNetConfig::preset("ffhq256").unwrap(), 11);
    for task in ["sr4", "gaussian-deblur", "box-inpaint", "phase-retrieval"] {
        check_step(&g, &unet, task);
    }
}

/// A small guided run: tiny32 at 64x64, SR x4, 10 steps.
fn ten_step_run(g: &Gpu, unet: &UNet, seed: u64, check_counters: bool) -> Vec<f32> {
    let task = Task::load("sr4", &[]).unwrap();
    let shape = [1, 3, 64, 64];
    let clean = equireg_tests::clean_image(&shape);
    let measured = equireg::restore::simulate(g, &task, shape, &clean, seed, 0).unwrap();
    let y = g
        .upload(&measured.operator.output_shape(), &measured.y)
        .unwrap();
    let config = DiffusionConfig::for_model(unet.config(), "10");
    let guidance = Guidance {
        problem: Problem::new(measured.operator.as_ref(), &y),
        zeta: 1.0,
    };
    let mut solver = Solver::new(g, unet, [1, 64, 64], &config, Some(guidance)).unwrap();
    solver.begin(seed, 0).unwrap();
    // The first step creates pipelines and params; from the second on, a step must allocate,
    // upload and read back nothing.
    solver.step().unwrap();
    let before = g.counters();
    for _ in 1..solver.steps() {
        solver.step().unwrap();
    }
    let d = g.counters() - before;
    if check_counters {
        assert_eq!(
            (
                d.readbacks,
                d.uploads,
                d.buffers_allocated,
                d.bind_groups_created
            ),
            (0, 0, 0, 0),
            "steps 2..10 must not read back, upload or allocate: {d:?}"
        );
        assert_eq!(d.submits, 9, "one submit per step");
    }
    solver.finish().unwrap()
}

#[test]
fn a_ten_step_restoration_stays_on_the_gpu_and_repeats_bit_for_bit() {
    let g = gpu();
    let unet = synthetic_unet(&g, &equireg_tests::loop_test_config(), 5);
    let a = ten_step_run(&g, &unet, 7, true);
    let b = ten_step_run(&g, &unet, 7, false);
    let c = ten_step_run(&g, &unet, 8, false);
    assert!(a.iter().all(|v| v.is_finite()));
    assert!(
        a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
        "same seed, different bits"
    );
    assert!(
        rel_l2(&a, &c) > 1e-3,
        "another seed must give another result"
    );
}
