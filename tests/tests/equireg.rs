//! DPS + EquiReg on the GPU: the regularized loop stays resident (no readbacks, uploads or
//! allocations after the first step), repeats bit for bit with its seed, and the penalty changes
//! the result only through its gradient.

use equireg::mpe::Denoiser;
use equireg::regularizer::{EquiReg, EquiRegConfig};
use equireg::solver::{DiffusionConfig, Guidance, Solver};
use equireg::task::Task;
use equireg_gpu::{Gpu, GpuOptions};
use equireg_nn::{UNet, UNetConfig, synthetic};

fn gpu() -> Gpu {
    Gpu::new(&GpuOptions::default())
        .unwrap_or_else(|e| panic!("this test needs a GPU adapter: {e}"))
}

/// A 10-step SR x4 run of a 64x64 image with EquiReg firing every other step; returns the
/// result and the per-step counter differences after the first step.
fn run(
    g: &Gpu,
    unet: &UNet,
    settings: &str,
    seed: u64,
) -> (Vec<f32>, equireg_gpu::CounterSnapshot) {
    let task = Task::load("sr4", &[]).unwrap();
    let shape = [1, 3, 64, 64];
    let clean: Vec<f32> = synthetic::tensor(3, "clean", &shape)
        .iter()
        .map(|v| (0.5 * v).clamp(-1.0, 1.0))
        .collect();
    let measured = equireg::restore::simulate(g, &task, shape, &clean, seed, 0).unwrap();
    let y = g
        .upload(&measured.operator.output_shape(), &measured.y)
        .unwrap();
    let mpe = Denoiser::new(unet, 200).unwrap();
    let cfg = EquiRegConfig::default().with_settings(settings).unwrap();
    let regularizer = Some(EquiReg::new(g, cfg, &mpe, shape).unwrap());
    let config = DiffusionConfig::for_model(unet.config(), "10");
    let guidance = Guidance {
        operator: measured.operator,
        measurement: y,
        zeta: 1.0,
        regularizer,
    };
    let mut solver = Solver::new(g, unet, [1, 64, 64], &config, Some(guidance)).unwrap();
    solver.begin(seed, 0).unwrap();
    // Steps 0 and 1 create what a firing and a non-firing step need.
    solver.step().unwrap();
    solver.step().unwrap();
    let before = g.counters();
    for _ in 2..solver.steps() {
        solver.step().unwrap();
    }
    let d = g.counters() - before;
    (solver.finish().unwrap(), d)
}

#[test]
fn dps_with_equireg_stays_on_the_gpu_and_repeats_bit_for_bit() {
    let g = gpu();
    let unet = {
        let cfg = UNetConfig::preset("tiny32").unwrap();
        UNet::new(
            &g,
            &cfg,
            &synthetic::weights(5, &UNet::weight_spec(&cfg).unwrap()),
        )
        .unwrap()
    };
    let settings = "group=d4*shift:2,alpha=0.5,freq=0.5,form=equi,reduction=norm";
    let (a, d) = run(&g, &unet, settings, 7);
    assert_eq!(
        (
            d.readbacks,
            d.uploads,
            d.buffers_allocated,
            d.bind_groups_created
        ),
        (0, 0, 0, 0),
        "steps 3..10 must not read back, upload or allocate: {d:?}"
    );
    assert_eq!(d.submits, 8, "one submit per step");
    let (b, _) = run(&g, &unet, settings, 7);
    assert!(
        a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
        "same seed, different bits"
    );
    // The penalty is live: with alpha 0 (no regularizer work at all) the result differs.
    let (off, d_off) = run(&g, &unet, "alpha=0", 7);
    assert!(
        d_off.dispatches < d.dispatches,
        "alpha 0 must skip the regularizer's work"
    );
    let diff: f64 = a
        .iter()
        .zip(&off)
        .map(|(x, y)| ((x - y) as f64).powi(2))
        .sum::<f64>()
        .sqrt();
    assert!(diff > 1e-4, "EquiReg changed nothing ({diff})");
    // equi_plus with the same shape-keeping f also runs.
    let (p, _) = run(
        &g,
        &unet,
        "group=rot90,alpha=0.5,freq=0.5,form=equi_plus,reduction=mse",
        7,
    );
    assert!(p.iter().all(|v| v.is_finite()));
}
