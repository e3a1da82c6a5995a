//! Best-of-N restarts (`restore_best_of`, `equireg restore --restarts`): one restart is a plain
//! run bit for bit, and N restarts keep, per image, exactly the separate run whose data residual
//! ||y - A(x)|| is smallest.

use equireg::restore::{
    Measured, RestoreSettings, residuals, restart_seed, restore, restore_best_of, simulate,
};
use equireg::schedule::Sampler;
use equireg::solvers::{SolverKind, SolverSpec};
use equireg::task::Task;
use equireg_gpu::{Gpu, GpuOptions};
use equireg_nn::{UNet, synthetic};

fn gpu() -> Gpu {
    Gpu::new(&GpuOptions::default()).unwrap_or_else(|e| {
        panic!(
            "this test needs a GPU adapter: {e} (without a GPU: apt-get install mesa-vulkan-drivers)"
        )
    })
}

const SHAPE: [usize; 4] = [2, 3, 32, 32];

fn spec(task: &Task, unet: &UNet) -> SolverSpec {
    RestoreSettings {
        solver: SolverKind::Dps,
        respacing: "3".into(),
        sampler: Sampler::parse("ddpm", 0.0).unwrap(),
        zeta: Some(1.0),
        seed: 0,
    }
    .resolve(task, unet)
    .unwrap()
}

fn measure(g: &Gpu, task: &Task, clean: &[f32]) -> equireg::Result<Measured> {
    simulate(g, task, SHAPE, clean, 4, 0)
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn best_of_keeps_the_run_with_the_smallest_residual_per_image() {
    let g = gpu();
    let cfg = equireg_tests::loop_test_config();
    let unet = UNet::new(
        &g,
        &cfg,
        &synthetic::weights(5, &UNet::weight_spec(&cfg).unwrap()),
    )
    .unwrap();
    let task = Task::load("sr4", &[]).unwrap();
    let clean = equireg_tests::clean_image(&SHAPE);
    let judge = measure(&g, &task, &clean).unwrap();
    let spec = spec(&task, &unet);

    // The separate runs, one per restart seed.
    let seed = 11;
    let runs: Vec<Vec<f32>> = (0..3)
        .map(|r| {
            restore(
                &g,
                &unet,
                &spec,
                &judge,
                restart_seed(seed, r),
                None,
                0,
                |_, _| {},
            )
            .unwrap()
        })
        .collect();
    assert_eq!(restart_seed(seed, 0), seed);
    assert_ne!(
        bits(&runs[0]),
        bits(&runs[1]),
        "restarts must draw other noise"
    );
    let res: Vec<Vec<f64>> = runs
        .iter()
        .map(|x| residuals(judge.operator.as_ref(), &judge.y, x).unwrap())
        .collect();

    let mut steps = Vec::new();
    let mut best_of = |restarts| {
        restore_best_of(
            &g,
            &unet,
            &spec,
            &judge,
            seed,
            None,
            0,
            restarts,
            |r, k, total| steps.push((r, k, total)),
        )
    };

    // One restart: the plain run.
    let one = best_of(1).unwrap();
    assert_eq!(bits(&one.x), bits(&runs[0]));
    assert_eq!(one.chosen, vec![0, 0]);
    assert_eq!(one.residuals, res[0]);

    // Three: per image, the separate run with the smallest residual, its pixels exactly.
    let best = best_of(3).unwrap();
    assert!(best_of(0).is_err(), "zero restarts is an error");
    assert_eq!(
        steps.len(),
        12,
        "1 + 3 restarts x 3 steps reported: {steps:?}"
    );
    let per = runs[0].len() / 2;
    for k in 0..2 {
        let r = (0..3)
            .min_by(|&a, &b| res[a][k].total_cmp(&res[b][k]))
            .unwrap();
        assert_eq!(
            best.chosen[k],
            r,
            "image {k}: residuals {:?}",
            [res[0][k], res[1][k], res[2][k]]
        );
        assert_eq!(best.residuals[k], res[r][k]);
        assert_eq!(
            bits(&best.x[k * per..(k + 1) * per]),
            bits(&runs[r][k * per..(k + 1) * per])
        );
    }

    // The residual itself: zero for the clean images against their noiseless measurement.
    let exact = Task::load("sr4", &["noise.sigma=0".to_string()]).unwrap();
    let m = measure(&g, &exact, &clean).unwrap();
    let r0 = residuals(m.operator.as_ref(), &m.y, &clean).unwrap();
    assert!(r0.iter().all(|v| *v < 1e-3), "{r0:?}");
}
