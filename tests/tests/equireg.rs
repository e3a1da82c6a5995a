//! DPS + EquiReg on the GPU: the regularized loop stays resident (no readbacks, uploads or
//! allocations after the first step), repeats bit for bit with its seed, and the penalty changes
//! the result only through its gradient.

use equireg::mpe::Denoiser;
use equireg::regularizer::{EquiReg, EquiRegConfig};
use equireg::solvers::{DiffusionConfig, Guidance, Problem, Solver};
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
    let clean = equireg_tests::clean_image(&shape);
    let measured = equireg::restore::simulate(g, &task, shape, &clean, seed, 0).unwrap();
    let y = g
        .upload(&measured.operator.output_shape(), &measured.y)
        .unwrap();
    let mpe = Denoiser::new(unet, 200).unwrap();
    let cfg = EquiRegConfig::default().with_settings(settings).unwrap();
    let regularizer = Some(EquiReg::new(g, cfg, &mpe, shape).unwrap());
    let config = DiffusionConfig::for_model(unet.config(), "10");
    let guidance = Guidance {
        problem: Problem {
            regularizer,
            ..Problem::new(measured.operator.as_ref(), &y)
        },
        zeta: 1.0,
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

/// The loop tests' UNet with synthetic weights.
fn loop_test_unet(g: &Gpu) -> UNet {
    let cfg = equireg_tests::loop_test_config();
    UNet::new(
        g,
        &cfg,
        &synthetic::weights(5, &UNet::weight_spec(&cfg).unwrap()),
    )
    .unwrap()
}

/// L2 distance between two results.
fn distance(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| ((x - y) as f64).powi(2))
        .sum::<f64>()
        .sqrt()
}

#[test]
fn dps_with_equireg_stays_on_the_gpu_and_repeats_bit_for_bit() {
    let g = gpu();
    let unet = loop_test_unet(&g);
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
    let diff = distance(&a, &off);
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

/// The schedule sees DPS's timestep index (K-1 on the first step, 0 on the last), as the
/// reference's `reg(x_0_hat, step=idx)`: a schedule that fires only at step 0 acts on the last
/// loop step by default, and on the first with `count=loop`.
#[test]
fn the_schedule_counts_down_as_dps_index() {
    let g = gpu();
    let unet = loop_test_unet(&g);
    // cutoff 10 of 10 steps: only step 0 fires (step + 10 <= 10).
    let only_zero = "alpha=0.5,schedule=cutoff,cutoff=10";
    let (last, d_last) = run(&g, &unet, only_zero, 3);
    let (first, d_first) = run(&g, &unet, &format!("{only_zero},count=loop"), 3);
    let (off, d_off) = run(&g, &unet, "alpha=0", 3);
    // The counters cover loop steps 2..10: the last step's firing shows there, the first's not.
    assert!(
        d_last.dispatches > d_off.dispatches,
        "the default count must fire on the last loop step"
    );
    assert_eq!(
        d_first.dispatches, d_off.dispatches,
        "count=loop fires on loop step 0 only"
    );
    assert!(
        distance(&last, &off) > 1e-4,
        "the last-step firing changed nothing"
    );
    assert!(
        distance(&first, &off) > 1e-4,
        "the first-step firing changed nothing"
    );
    assert!(
        distance(&first, &last) > 1e-4,
        "both counts gave the same run"
    );
}

/// The penalty and its gradient with respect to x_t, through f, the clamp and the UNet, against
/// tools/make_equireg_fixtures.py (float64 PyTorch restatement of the reference semantics):
/// every form, reduction, group kind and MPE type.
#[test]
fn penalty_and_gradient_match_the_pytorch_restatement() {
    use equireg::mpe::{Mpe, NetworkMpe};
    use equireg_gpu::DType;
    use equireg_gpu::ops::diffusion::{StepState, TweedieOptions, posterior_step, x0_cotangent};
    use equireg_gpu::ops::elementwise::{add, fill};
    use equireg_nn::mpe::{Mpe as Net, MpeConfig};

    let g = gpu();
    let ucfg = UNetConfig::preset("tiny32").unwrap();
    let unet = UNet::new(
        &g,
        &ucfg,
        &synthetic::weights(5, &UNet::weight_spec(&ucfg).unwrap()),
    )
    .unwrap();
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/equireg");
    let cases: Vec<String> =
        serde_json::from_str(&std::fs::read_to_string(root.join("cases.json")).unwrap()).unwrap();
    assert_eq!(cases.len(), 13);
    for case in cases {
        let dir = root.join(&case);
        let meta: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap();
        let n = meta["batch"].as_u64().unwrap() as usize;
        let mpe_name = meta["mpe"].as_str().unwrap();
        let network;
        let denoiser;
        let mpe: &dyn Mpe = if let Some(t) = mpe_name.strip_prefix("denoiser:") {
            denoiser = Denoiser::new(&unet, t.parse().unwrap()).unwrap();
            &denoiser
        } else {
            let cfg = MpeConfig::preset(mpe_name).unwrap();
            let net = Net::new(&g, &cfg, &Net::synthetic_weights(&cfg, 3).unwrap()).unwrap();
            network = NetworkMpe {
                net,
                label: mpe_name.into(),
            };
            &network
        };
        let settings = format!(
            "group={},alpha={},form={},reduction={},schedule=every",
            meta["group"].as_str().unwrap(),
            meta["alpha"],
            meta["form"].as_str().unwrap(),
            meta["reduction"].as_str().unwrap()
        );
        let cfg = EquiRegConfig::default().with_settings(&settings).unwrap();
        let mut reg = EquiReg::new(&g, cfg, mpe, [n, 3, 32, 32]).unwrap();
        reg.set_seed(meta["draw_seed"].as_u64().unwrap());

        // x0 from the UNet at the fixture's timestep, then the penalty's gradient pulled back to
        // x_t: the same kernels the solver records.
        let run = unet.plan_with_vjp(&g, n, 32, 32).unwrap();
        let (_, x_t) = equireg_nn::npy::read_f32(&dir.join("x_t.npy")).unwrap();
        g.write(run.input(), &x_t).unwrap();
        let t = meta["t_model"].as_f64().unwrap();
        let abar = equireg::schedule::Diffusion::new(
            equireg::schedule::BetaSchedule::Linear,
            1000,
            "1000",
        )
        .unwrap()
        .alphas_cumprod[t as usize];
        let row = [
            t as f32,
            (1.0 / abar).sqrt() as f32,
            (1.0 / abar - 1.0).sqrt() as f32,
            1.0,
            0.0,
            0.0,
            0.0,
            0.0,
        ];
        let table = g.upload(&[1, 8], &row).unwrap();
        let zero = g.upload_u32(&[1], &[0]).unwrap();
        // The element is drawn from the step counter: the fixture's row.
        let step = g
            .upload_u32(&[1], &[meta["row"].as_u64().unwrap() as u32])
            .unwrap();
        g.write(run.timesteps(), &vec![t as f32; n]).unwrap();
        let shape = [n, 3, 32, 32];
        let t0 = |_: ()| g.alloc(&shape, DType::F32).unwrap();
        let (x0, prev, noise, dx0, direct, grad) = (t0(()), t0(()), t0(()), t0(()), t0(()), t0(()));
        let st = StepState {
            table: &table,
            step: &zero,
        };
        let mut rec = g.recorder();
        run.record_forward(&mut rec, &unet).unwrap();
        fill(&mut rec, &noise, 0.0).unwrap();
        let opts = TweedieOptions {
            learned_variance: false,
            clip: true,
        };
        posterior_step(
            &mut rec,
            st,
            run.input(),
            run.output(),
            &noise,
            &x0,
            &prev,
            opts,
        )
        .unwrap();
        fill(&mut rec, &dx0, 0.0).unwrap();
        reg.record(&mut rec, &x0, &dx0, &step).unwrap();
        x0_cotangent(
            &mut rec,
            st,
            run.input(),
            run.output(),
            &dx0,
            run.cotangent().unwrap(),
            &direct,
            true,
        )
        .unwrap();
        run.record_vjp(&mut rec, &unet).unwrap();
        add(&mut rec, &direct, run.input_grad().unwrap(), &grad).unwrap();
        rec.submit().unwrap();

        let element = g.download_u32(reg.element()).unwrap();
        let want_el: Vec<i64> = meta["element"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        assert_eq!(
            [
                element[0] as i64,
                element[1] as i32 as i64,
                element[2] as i32 as i64
            ],
            [want_el[0], want_el[1], want_el[2]],
            "{case}: drawn element"
        );
        let pen = g.download(reg.value()).unwrap();
        for (k, want) in meta["penalty"].as_array().unwrap().iter().enumerate() {
            let want = want.as_f64().unwrap();
            assert!(
                (pen[k] as f64 - want).abs() <= 1e-3 * want.abs().max(1e-6),
                "{case}: penalty of sample {k}: {} vs {want}",
                pen[k]
            );
        }
        let got = g.download(&grad).unwrap();
        let (_, want) = equireg_nn::npy::read_f32(&dir.join("grad.npy")).unwrap();
        let err = equireg_tests::rel_l2(&got, &want);
        eprintln!("{case}: penalty {pen:?}, gradient relative L2 {err:.2e}");
        assert!(err < 1e-3, "{case}: gradient relative L2 error {err:.3e}");
    }
}
