//! The embedded default models (assets/models, compiled into the library) against the float64
//! PyTorch outputs their training tools exported beside them (check.safetensors: the tools'
//! own UNet / encoder, written independently of the Rust ones), and their configurations.

use std::path::PathBuf;

use equireg::default_models;
use equireg::mpe::Mpe;
use equireg_gpu::{Gpu, GpuOptions};
use equireg_nn::{UNet, UNetConfig, Weights};
use equireg_tests::rel_l2;

fn gpu() -> Gpu {
    Gpu::new(&GpuOptions::default())
        .unwrap_or_else(|e| panic!("this test needs a GPU adapter: {e}"))
}

fn check_file(model: &str) -> Weights {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../assets/models")
        .join(model)
        .join("check.safetensors");
    Weights::load(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The UNet's output on the input of `assets/models/MODEL/check.safetensors` against the float64
/// PyTorch output stored there.
fn assert_matches_check(g: &Gpu, unet: &UNet, model: &str) {
    let check = check_file(model);
    let (xs, x) = check.get("input").unwrap();
    let (_, t) = check.get("timesteps").unwrap();
    let (ys, want) = check.get("output").unwrap();
    let run = unet.plan(g, xs[0], xs[2], xs[3]).unwrap();
    g.write(run.input(), x).unwrap();
    g.write(run.timesteps(), t).unwrap();
    let mut rec = g.recorder();
    run.record_forward(&mut rec, unet).unwrap();
    rec.submit().unwrap();
    assert_eq!(run.output().shape(), ys);
    let y = g.download(run.output()).unwrap();
    let err = rel_l2(&y, want);
    eprintln!("{model} vs PyTorch float64: relative L2 {err:.2e}");
    assert!(err < 1e-4, "{model}: relative L2 {err:.3e}");
}

#[test]
fn the_default_prior_is_photo64_and_matches_its_pytorch_output() {
    assert_eq!(
        default_models::prior_config().unwrap(),
        UNetConfig::photo64()
    );
    let g = gpu();
    let unet = default_models::prior(&g).unwrap();
    assert_matches_check(&g, &unet, "prior");
}

#[test]
fn the_darcy_prior_is_a_two_channel_photo64_and_matches_its_pytorch_output() {
    let config = default_models::darcy_config().unwrap();
    let mut want_config = UNetConfig::photo64();
    want_config.in_channels = 2;
    want_config.out_channels = 2;
    assert_eq!(config, want_config);
    let norm = default_models::darcy_norm().unwrap();
    // The training set's statistics: a in {3, 12} about half and half, u of order 1e-2.
    assert!(
        (norm.mean[0] - 7.5).abs() < 0.5 && (norm.std[0] - 4.5).abs() < 0.1,
        "{norm:?}"
    );
    assert!(norm.std[1] > 1e-3 && norm.std[1] < 1e-2, "{norm:?}");
    let g = gpu();
    let unet = UNet::new(&g, &config, &default_models::darcy_weights().unwrap()).unwrap();
    assert_matches_check(&g, &unet, "darcy");
}

#[test]
fn the_default_mpe_encoder_matches_its_pytorch_output() {
    let g = gpu();
    let mpe = default_models::mpe(&g).unwrap();
    let check = check_file("mpe");
    let (xs, x) = check.get("input").unwrap();
    let (ys, want) = check.get("output").unwrap();
    let run = mpe.plan(&g, xs[0], xs[2], xs[3]).unwrap();
    g.write(run.input(), x).unwrap();
    let mut rec = g.recorder();
    run.record_forward(&mut rec).unwrap();
    rec.submit().unwrap();
    assert_eq!(run.output().shape(), ys);
    let y = g.download(run.output()).unwrap();
    let err = rel_l2(&y, want);
    eprintln!("default MPE encoder vs PyTorch float64: relative L2 {err:.2e}");
    assert!(err < 1e-4, "relative L2 {err:.3e}");
}

#[test]
fn the_task_presets_use_the_default_encoder() {
    for name in equireg::task::PRESETS.iter().map(|(n, _)| *n) {
        let task = equireg::task::Task::load(name, &[]).unwrap();
        assert_eq!(task.equireg.mpe, default_models::MPE_SPEC, "{name}");
    }
}
