//! The guided-diffusion UNet on the GPU against deepinv's DiffUNet (fixtures from
//! tools/make_fixtures.py, a float64 reference), and strict weight loading.

use equireg_tests::rel_l2;
use std::path::{Path, PathBuf};

use equireg_gpu::{Gpu, GpuOptions};
use equireg_nn::{UNet, UNetConfig, Weights, npy, synthetic};

fn gpu() -> Gpu {
    Gpu::new(&GpuOptions::default())
        .unwrap_or_else(|e| panic!("this test needs a GPU adapter: {e}"))
}

/// A UNet with the synthetic weights of `seed` (tools/synthetic.py makes the same ones).
fn synthetic_unet(g: &Gpu, cfg: &UNetConfig, seed: u64) -> UNet {
    let w = synthetic::weights(seed, &UNet::weight_spec(cfg).unwrap());
    UNet::new(g, cfg, &w).unwrap()
}

/// Records one step (forward, plus the VJP when planned with it) twice and returns the counter
/// difference of the second, after asserting it allocated, created and read back nothing.
fn second_step_counters(
    g: &Gpu,
    unet: &UNet,
    run: &equireg_nn::UNetRun,
    with_vjp: bool,
) -> equireg_gpu::CounterSnapshot {
    let step = || {
        let mut rec = g.recorder();
        run.record_forward(&mut rec, unet).unwrap();
        if with_vjp {
            run.record_vjp(&mut rec, unet).unwrap();
        }
        rec.submit().unwrap();
    };
    step();
    let before = g.counters();
    step();
    let d = g.counters() - before;
    assert_eq!(
        (d.buffers_allocated, d.bytes_allocated, d.readbacks),
        (0, 0, 0)
    );
    assert_eq!(
        (d.pipelines_created, d.bind_groups_created, d.submits),
        (0, 0, 1)
    );
    d
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/unet")
        .join(name)
}

fn forward(gpu: &Gpu, unet: &UNet, dir: &Path) -> (Vec<usize>, Vec<f32>) {
    let (xs, x) = npy::read_f32(&dir.join("x.npy")).unwrap();
    let (_, t) = npy::read_int(&dir.join("t.npy")).unwrap();
    let run = unet.plan(gpu, xs[0], xs[2], xs[3]).unwrap();
    gpu.write(run.input(), &x).unwrap();
    gpu.write(
        run.timesteps(),
        &t.iter().map(|&v| v as f32).collect::<Vec<_>>(),
    )
    .unwrap();
    let mut rec = gpu.recorder();
    run.record_forward(&mut rec, unet).unwrap();
    rec.submit().unwrap();
    (
        run.output().shape().to_vec(),
        gpu.download(run.output()).unwrap(),
    )
}

fn check(gpu: &Gpu, unet: &UNet, dir: &Path) {
    let (shape, y) = forward(gpu, unet, dir);
    let (ys, want) = npy::read_f32(&dir.join("y.npy")).unwrap();
    assert_eq!(shape, ys);
    let err = rel_l2(&y, &want);
    eprintln!("{}: relative L2 error {err:.2e}", dir.display());
    assert!(
        err < 1e-4,
        "{}: relative L2 error {err:.3e} >= 1e-4",
        dir.display()
    );
}

#[test]
fn tiny32_from_a_torch_safetensors_file_matches_deepinv() {
    let g = gpu();
    let dir = fixture("tiny32-32-b2");
    let w = Weights::load(&dir.join("weights.safetensors")).unwrap();
    let unet = UNet::new(&g, &UNetConfig::tiny32(), &w).unwrap();
    check(&g, &unet, &dir);
}

#[test]
fn ffhq256_at_64x64_batch_2_matches_deepinv() {
    let g = gpu();
    let unet = synthetic_unet(&g, &UNetConfig::ffhq256(), 11);
    assert_eq!(unet.parameter_count(), 93_563_910);
    check(&g, &unet, &fixture("ffhq256-64-b2"));
}

#[test]
fn a_second_forward_at_the_same_size_allocates_nothing_and_reads_nothing_back() {
    let g = gpu();
    let unet = synthetic_unet(&g, &UNetConfig::tiny32(), 1);
    let run = unet.plan(&g, 1, 32, 64).unwrap();
    let d = second_step_counters(&g, &unet, &run, false);
    assert!(d.dispatches > 20);
    assert!(
        g.download(run.output())
            .unwrap()
            .iter()
            .all(|v| v.is_finite())
    );
}

#[test]
fn missing_extra_and_misshaped_weights_are_one_clear_error() {
    let g = gpu();
    let cfg = UNetConfig::tiny32();
    let spec = UNet::weight_spec(&cfg).unwrap();
    let mut w = Weights::new();
    for (name, shape) in &spec {
        match name.as_str() {
            "input_blocks.1.0.in_layers.2.weight" => {}
            "out.2.bias" => w.insert(name, &[7], vec![0.0; 7]),
            _ => w.insert(name, shape, synthetic::tensor(0, name, shape)),
        }
    }
    w.insert("sqrt_alphas_cumprod", &[1000], vec![0.0; 1000]);
    let e = UNet::new(&g, &cfg, &w)
        .err()
        .expect("must be refused")
        .to_string();
    assert!(
        e.contains("missing (1):\n    input_blocks.1.0.in_layers.2.weight [32, 32, 3, 3]"),
        "{e}"
    );
    assert!(
        e.contains("out.2.bias: file has [7], model needs [6]"),
        "{e}"
    );
    assert!(
        e.contains("unexpected (1):\n    sqrt_alphas_cumprod [1000]"),
        "{e}"
    );
}

#[test]
fn sizes_not_divisible_by_the_downsampling_factor_are_refused() {
    let g = gpu();
    let unet = synthetic_unet(&g, &UNetConfig::tiny32(), 1);
    let e = unet
        .plan(&g, 1, 31, 32)
        .err()
        .expect("31 cannot be halved")
        .to_string();
    assert!(e.contains("multiples of 2"), "{e}");
}

/// Runs forward + VJP with the fixture's cotangent; returns the input gradient.
fn input_grad(gpu: &Gpu, unet: &UNet, dir: &Path) -> Vec<f32> {
    let (xs, x) = npy::read_f32(&dir.join("x.npy")).unwrap();
    let (_, t) = npy::read_int(&dir.join("t.npy")).unwrap();
    let (_, v) = npy::read_f32(&dir.join("v.npy")).unwrap();
    let run = unet.plan_with_vjp(gpu, xs[0], xs[2], xs[3]).unwrap();
    gpu.write(run.input(), &x).unwrap();
    gpu.write(
        run.timesteps(),
        &t.iter().map(|&v| v as f32).collect::<Vec<_>>(),
    )
    .unwrap();
    gpu.write(run.cotangent().unwrap(), &v).unwrap();
    let mut rec = gpu.recorder();
    run.record_forward(&mut rec, unet).unwrap();
    run.record_vjp(&mut rec, unet).unwrap();
    rec.submit().unwrap();
    gpu.download(run.input_grad().unwrap()).unwrap()
}

fn check_vjp(gpu: &Gpu, unet: &UNet, dir: &Path) {
    let g = input_grad(gpu, unet, dir);
    let (_, want) = npy::read_f32(&dir.join("g.npy")).unwrap();
    let err = rel_l2(&g, &want);
    eprintln!("{}: VJP relative L2 error {err:.2e}", dir.display());
    assert!(
        err < 1e-3,
        "{}: VJP relative L2 error {err:.3e} >= 1e-3",
        dir.display()
    );
    // Dot-product test against torch's forward-mode JVP: <J u, v> = <u, J^T v>.
    let (_, u) = npy::read_f32(&dir.join("u.npy")).unwrap();
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap();
    let ju_dot_v = meta["ju_dot_v"].as_f64().expect("meta.json has ju_dot_v");
    let u_dot_jtv: f64 = u.iter().zip(&g).map(|(&a, &b)| a as f64 * b as f64).sum();
    let rel = (u_dot_jtv - ju_dot_v).abs() / ju_dot_v.abs();
    eprintln!(
        "{}: <Ju,v> = {ju_dot_v:.6}, <u,J^T v> = {u_dot_jtv:.6}, rel {rel:.2e}",
        dir.display()
    );
    assert!(
        rel < 1e-4,
        "dot-product test: relative difference {rel:.3e}"
    );
}

#[test]
fn tiny32_vjp_matches_torch_autograd() {
    let g = gpu();
    let dir = fixture("tiny32-32-b2");
    let w = Weights::load(&dir.join("weights.safetensors")).unwrap();
    let unet = UNet::new(&g, &UNetConfig::tiny32(), &w).unwrap();
    check_vjp(&g, &unet, &dir);
}

#[test]
fn ffhq256_vjp_at_64x64_batch_2_matches_torch_autograd() {
    let g = gpu();
    let unet = synthetic_unet(&g, &UNetConfig::ffhq256(), 11);
    check_vjp(&g, &unet, &fixture("ffhq256-64-b2"));
}

#[test]
fn repeated_forward_and_vjp_allocate_nothing_and_read_nothing_back() {
    let g = gpu();
    let unet = synthetic_unet(&g, &UNetConfig::tiny32(), 2);
    let run = unet.plan_with_vjp(&g, 2, 32, 32).unwrap();
    second_step_counters(&g, &unet, &run, true);
}
