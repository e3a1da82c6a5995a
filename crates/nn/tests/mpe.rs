//! The MPE networks (CompVis first-stage encoder, EquiReg SmallCNN) on the GPU against their
//! PyTorch restatement in float64 (fixtures from tools/make_mpe_fixtures.py, synthetic weights
//! regenerated here bit for bit), finite differences, and strict loading.

use std::path::{Path, PathBuf};

use equireg_gpu::{Gpu, GpuOptions};
use equireg_nn::mpe::{Mpe, MpeConfig, MpeRun, SmallCnnConfig, SmallCnnOutput};
use equireg_nn::{Weights, npy, synthetic};

fn gpu() -> Gpu {
    Gpu::new(&GpuOptions::default())
        .unwrap_or_else(|e| panic!("this test needs a GPU adapter: {e}"))
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/mpe")
        .join(name)
}

fn synthetic_mpe(g: &Gpu, cfg: &MpeConfig, seed: u64) -> Mpe {
    Mpe::new(g, cfg, &Mpe::synthetic_weights(cfg, seed).unwrap()).unwrap()
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
}

fn rel_l2(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len());
    let num: f64 = got
        .iter()
        .zip(want)
        .map(|(&g, &w)| ((g - w) as f64).powi(2))
        .sum();
    let den: f64 = want.iter().map(|&w| (w as f64).powi(2)).sum();
    (num / den).sqrt()
}

/// Forward at x, then (when given a cotangent) the VJP; returns (output, input gradient).
fn evaluate(
    g: &Gpu,
    mpe: &Mpe,
    run: &MpeRun,
    x: &[f32],
    v: Option<&[f32]>,
) -> (Vec<f32>, Vec<f32>) {
    g.write(run.input(), x).unwrap();
    let mut rec = g.recorder();
    run.record_forward(&mut rec, mpe).unwrap();
    if let Some(v) = v {
        g.write(run.cotangent().unwrap(), v).unwrap();
        run.record_vjp(&mut rec, mpe).unwrap();
    }
    rec.submit().unwrap();
    let y = g.download(run.output()).unwrap();
    let gx = match v {
        Some(_) => g.download(run.input_grad().unwrap()).unwrap(),
        None => Vec::new(),
    };
    (y, gx)
}

/// Forward within 1e-4 and VJP within 1e-3 (relative L2) of the float64 reference, and the
/// dot-product test <u, J^T v> (ours) = <J u, v> (torch.func.jvp) within 1e-3.
fn check_fixture(name: &str, cfg: &MpeConfig, seed: u64) {
    let g = gpu();
    let dir = fixture(name);
    let mpe = synthetic_mpe(&g, cfg, seed);
    let read = |f: &str| npy::read_f32(&dir.join(f)).unwrap();
    let (xs, x) = read("x.npy");
    let (ys, y_want) = read("y.npy");
    let (_, v) = read("v.npy");
    let (_, g_want) = read("g.npy");
    let (_, u) = read("u.npy");
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap();
    let run = mpe.plan_with_vjp(&g, xs[0], xs[2], xs[3]).unwrap();
    assert_eq!(run.output().shape(), ys.as_slice());
    let t0 = std::time::Instant::now();
    let (y, gx) = evaluate(&g, &mpe, &run, &x, Some(&v));
    let secs = t0.elapsed().as_secs_f64();
    let fwd = rel_l2(&y, &y_want);
    let bwd = rel_l2(&gx, &g_want);
    let ju_dot_v = meta["ju_dot_v"].as_f64().unwrap();
    let u_dot_jtv = dot(&u, &gx);
    let dp = (u_dot_jtv - ju_dot_v).abs() / ju_dot_v.abs();
    eprintln!(
        "{name}: forward {fwd:.2e}, VJP {bwd:.2e}, dot-product {dp:.2e} (<u, J^T v> {u_dot_jtv:.6}, \
         <J u, v> {ju_dot_v:.6}); forward + VJP {secs:.2} s"
    );
    assert!(
        fwd < 1e-4,
        "{name}: forward relative L2 error {fwd:.3e} >= 1e-4"
    );
    assert!(
        bwd < 1e-3,
        "{name}: VJP relative L2 error {bwd:.3e} >= 1e-3"
    );
    assert!(
        dp < 1e-3,
        "{name}: <u, J^T v> = {u_dot_jtv}, <J u, v> = {ju_dot_v}"
    );
}

#[test]
fn ldm_tiny_matches_the_float64_reference() {
    check_fixture("ldm-tiny-32-b2", &MpeConfig::preset("ldm-tiny").unwrap(), 1);
}

#[test]
fn vq_f4_matches_the_float64_reference() {
    let cfg = MpeConfig::preset("vq-f4").unwrap();
    // Encoder + quant_conv + post_quant_conv of the FFHQ VQ-f4 autoencoder.
    let count: usize = Mpe::weight_spec(&cfg)
        .unwrap()
        .iter()
        .map(|(_, s)| s.iter().product::<usize>())
        .sum();
    assert_eq!(count, 22_337_435);
    check_fixture("vq-f4-32-b1", &cfg, 2);
}

#[test]
fn small_cnn_with_folded_batch_norm_matches_the_float64_reference() {
    let cfg = MpeConfig::preset("small-cnn").unwrap();
    let g = gpu();
    let mpe = synthetic_mpe(&g, &cfg, 3);
    // Conv and BatchNorm tensors plus the classifier, as in the reference state dict.
    assert_eq!(mpe.parameter_count(), 964_740);
    check_fixture("small-cnn-32-b2", &cfg, 3);
}

/// The directional derivative J u by central differences of the GPU forward, against the VJP:
/// with the cotangent v = f(x + eps u) - f(x - eps u) itself, <v, v> / (2 eps) must equal
/// <u, J^T v>. Projecting on the difference keeps the f32 rounding of the forwards small against
/// the signal (a random v loses it in the ReLU network's cancellations). Non-square, batch 2.
fn check_finite_differences(cfg: &MpeConfig, seed: u64, h: usize, w: usize, eps: f32, tol: f64) {
    let g = gpu();
    let mpe = synthetic_mpe(&g, cfg, seed);
    let run = mpe.plan_with_vjp(&g, 2, h, w).unwrap();
    let n = run.input().numel();
    let x = synthetic::tensor(seed, "x", &[n]);
    let u = synthetic::tensor(seed, "u", &[n]);
    let shifted = |s: f32| -> Vec<f32> {
        let xs: Vec<f32> = x.iter().zip(&u).map(|(&a, &b)| a + s * b).collect();
        evaluate(&g, &mpe, &run, &xs, None).0
    };
    let (yp, ym) = (shifted(eps), shifted(-eps));
    let v: Vec<f32> = yp.iter().zip(&ym).map(|(a, b)| a - b).collect();
    let fd = dot(&v, &v) / (2.0 * eps as f64);
    let (_, gx) = evaluate(&g, &mpe, &run, &x, Some(&v));
    let an = dot(&u, &gx);
    let err = (fd - an).abs() / an.abs();
    eprintln!(
        "{} {h}x{w}: finite differences {fd:.6e}, <u, J^T v> {an:.6e}, relative {err:.1e}",
        cfg.kind()
    );
    assert!(
        err < tol,
        "{}: by differences {fd}, by the VJP {an}",
        cfg.kind()
    );
}

#[test]
fn ldm_encoder_vjp_agrees_with_finite_differences_on_a_non_square_batch() {
    // f32 forwards, eps 1e-2 on inputs of order 1: truncation and rounding well under 1e-2.
    check_finite_differences(
        &MpeConfig::preset("ldm-tiny").unwrap(),
        4,
        24,
        20,
        1e-2,
        1e-2,
    );
}

#[test]
fn small_cnn_vjp_agrees_with_finite_differences_on_a_non_square_batch() {
    // Piecewise linear: eps 3e-3 keeps almost every unit on its side of the kink while the
    // difference stays well above the f32 rounding of the forwards (measured: ~1e-3).
    let cfg = MpeConfig::preset("small-cnn-features").unwrap();
    check_finite_differences(&cfg, 5, 20, 27, 3e-3, 1e-2);
    let logits = MpeConfig::SmallCnn(SmallCnnConfig {
        num_classes: 2,
        ..SmallCnnConfig::default()
    });
    check_finite_differences(&logits, 6, 17, 30, 3e-3, 1e-2);
}

#[test]
fn a_second_step_at_the_same_size_allocates_nothing_and_reads_nothing_back() {
    for (preset, h, w) in [("ldm-tiny", 16, 24), ("small-cnn", 24, 16)] {
        let g = gpu();
        let mpe = synthetic_mpe(&g, &MpeConfig::preset(preset).unwrap(), 1);
        let run = mpe.plan_with_vjp(&g, 2, h, w).unwrap();
        let step = || {
            let mut rec = g.recorder();
            run.record_forward(&mut rec, &mpe).unwrap();
            run.record_vjp(&mut rec, &mpe).unwrap();
            rec.submit().unwrap();
        };
        step();
        let before = g.counters();
        step();
        let d = g.counters() - before;
        assert_eq!(
            (d.buffers_allocated, d.bytes_allocated, d.readbacks),
            (0, 0, 0),
            "{preset}"
        );
        assert_eq!(
            (d.pipelines_created, d.bind_groups_created, d.submits),
            (0, 0, 1),
            "{preset}"
        );
        assert!(run.flops() > 0.0 && run.vjp_flops() > 0.0);
    }
}

#[test]
fn missing_extra_and_misshaped_weights_are_one_clear_error() {
    let g = gpu();
    let cfg = MpeConfig::preset("ldm-tiny").unwrap();
    let spec = Mpe::weight_spec(&cfg).unwrap();
    let mut w = Mpe::synthetic_weights(&cfg, 0).unwrap();
    let mut pruned = Weights::new();
    for (name, shape) in &spec {
        match name.as_str() {
            "encoder.mid.attn_1.k.weight" => {}
            "quant_conv.weight" => pruned.insert(name, &[3, 4], vec![0.0; 12]),
            _ => pruned.insert(name, shape, w.get(name).unwrap().1.to_vec()),
        }
    }
    pruned.insert("decoder.conv_in.weight", &[64, 4, 3, 3], vec![0.0; 2304]);
    let e = Mpe::new(&g, &cfg, &pruned)
        .err()
        .expect("refused")
        .to_string();
    assert!(
        e.contains("missing (1):\n    encoder.mid.attn_1.k.weight [64, 64, 1, 1]"),
        "{e}"
    );
    assert!(
        e.contains("quant_conv.weight: file has [3, 4], model needs [3, 4, 1, 1]"),
        "{e}"
    );
    assert!(
        e.contains("unexpected (1):\n    decoder.conv_in.weight [64, 4, 3, 3]"),
        "{e}"
    );

    // SmallCNN: the BatchNorm statistics are required, and must be valid variances.
    let cfg = MpeConfig::preset("small-cnn").unwrap();
    let spec = Mpe::weight_spec(&cfg).unwrap();
    assert!(spec.iter().any(|(n, _)| n == "features.4.running_mean"));
    assert!(!spec.iter().any(|(n, _)| n.contains("num_batches_tracked")));
    w = Mpe::synthetic_weights(&cfg, 0).unwrap();
    w.insert("features.7.running_var", &[256], vec![-1.0; 256]);
    let e = Mpe::new(&g, &cfg, &w).err().expect("refused").to_string();
    assert!(e.contains("features.7.running_var holds -1"), "{e}");
    let e = Mpe::new(
        &g,
        &cfg,
        &synthetic::weights(0, &spec[..spec.len() - 1].to_vec()),
    )
    .err()
    .expect("refused")
    .to_string();
    assert!(e.contains("missing (1):\n    classifier.bias [4]"), "{e}");
}

#[test]
fn bad_sizes_and_missing_vjp_are_errors() {
    let g = gpu();
    let mpe = synthetic_mpe(&g, &MpeConfig::preset("ldm-tiny").unwrap(), 1);
    let e = mpe.plan(&g, 1, 1, 32).err().expect("too small").to_string();
    assert!(e.contains("at least 2"), "{e}");
    let e = mpe.plan(&g, 0, 32, 32).err().expect("empty").to_string();
    assert!(e.contains("positive"), "{e}");
    let run = mpe.plan(&g, 1, 8, 8).unwrap();
    assert!(run.cotangent().is_err());
    assert!(run.input_grad().is_err());
    let mut rec = g.recorder();
    let e = run.record_vjp(&mut rec, &mpe).unwrap_err().to_string();
    assert!(e.contains("plan_with_vjp"), "{e}");
}

#[test]
fn configs_written_by_convert_mpe_load_as_the_presets() {
    let load = |f: &str| MpeConfig::load(&fixture("convert").join(f)).unwrap();
    assert_eq!(
        load("ldm-tiny.json"),
        MpeConfig::preset("ldm-tiny").unwrap()
    );
    assert_eq!(load("vq-f4.json"), MpeConfig::preset("vq-f4").unwrap());
    assert_eq!(
        load("small-cnn-hflip.json"),
        MpeConfig::SmallCnn(SmallCnnConfig {
            num_classes: 2,
            output: SmallCnnOutput::Logits,
            ..SmallCnnConfig::default()
        })
    );
    let e = MpeConfig::load(Path::new("/nonexistent/mpe.json")).unwrap_err();
    assert!(e.to_string().contains("/nonexistent/mpe.json"), "{e}");
}

#[test]
fn load_reads_a_config_and_a_safetensors_file() {
    let g = gpu();
    let dir = std::env::temp_dir().join(format!("equireg-mpe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = MpeConfig::preset("ldm-tiny").unwrap();
    std::fs::write(dir.join("config.json"), cfg.to_json()).unwrap();
    Mpe::synthetic_weights(&cfg, 1)
        .unwrap()
        .save(&dir.join("weights.safetensors"))
        .unwrap();
    let mpe = Mpe::load(
        &g,
        &dir.join("config.json"),
        &dir.join("weights.safetensors"),
    )
    .unwrap();
    assert_eq!(mpe.config(), &cfg);
    let run = mpe.plan(&g, 1, 16, 16).unwrap();
    assert_eq!(run.output().shape(), &[1, 4, 8, 8]);
    std::fs::remove_dir_all(&dir).ok();
}

/// Forward + VJP of vq-f4 at 64x64, batch 1 (run with --ignored --nocapture).
#[test]
#[ignore]
fn bench_vq_f4_forward_and_vjp_64x64() {
    let g = gpu();
    let cfg = MpeConfig::preset("vq-f4").unwrap();
    let mpe = synthetic_mpe(&g, &cfg, 2);
    let run = mpe.plan_with_vjp(&g, 1, 64, 64).unwrap();
    let x = synthetic::tensor(2, "x", &[run.input().numel()]);
    let v = synthetic::tensor(2, "v", &[run.output().numel()]);
    let step = |with_vjp: bool| {
        let t0 = std::time::Instant::now();
        evaluate(&g, &mpe, &run, &x, with_vjp.then_some(v.as_slice()));
        t0.elapsed().as_secs_f64()
    };
    step(true);
    let fwd: Vec<f64> = (0..3).map(|_| step(false)).collect();
    let both: Vec<f64> = (0..3).map(|_| step(true)).collect();
    eprintln!(
        "vq-f4 64x64 b1 on {}: forward {:.2} s, forward + VJP {:.2} s (min of 3); {:.1} + {:.1} \
         GFLOP, planned {:.0} MiB",
        g.caps().describe(),
        fwd.iter().cloned().fold(f64::MAX, f64::min),
        both.iter().cloned().fold(f64::MAX, f64::min),
        run.flops() / 1e9,
        run.vjp_flops() / 1e9,
        run.planned_bytes() as f64 / (1 << 20) as f64
    );
}

/// The generic MatMul VJP of the graph (the attention uses two of the four transpose pairs; its
/// VJP creates others): out = op_a(x) op_b(x) with both operands the input, so both gradient
/// paths and their sum are exercised. Central differences of a quadratic are exact up to f32
/// rounding.
#[test]
fn graph_matmul_vjp_agrees_with_finite_differences_for_every_transpose_pair() {
    use equireg_nn::graph::{Graph, Node};
    let g = gpu();
    for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
        let mut graph = Graph::default();
        let x = graph.value(&[2, 5, 5]);
        let out = graph.value(&[2, 5, 5]);
        graph.push(Node::MatMul {
            a: x,
            b: x,
            trans_a: ta,
            trans_b: tb,
            out,
        });
        graph.keep(x);
        graph.keep(out);
        let (cot, gx) = graph.append_vjp(x, out).unwrap();
        let forward_nodes = 1;
        let planned = graph.plan(&g).unwrap();
        let n = 50;
        let xv = synthetic::tensor(9, "x", &[n]);
        let u = synthetic::tensor(9, "u", &[n]);
        let v = synthetic::tensor(9, "v", &[n]);
        let run = |xs: &[f32], with_vjp: bool| -> (Vec<f32>, Vec<f32>) {
            g.write(planned.tensor(x), xs).unwrap();
            g.write(planned.tensor(cot), &v).unwrap();
            let mut rec = g.recorder();
            let end = if with_vjp {
                planned.graph().nodes().len()
            } else {
                forward_nodes
            };
            planned.record_range(&mut rec, &[], 0..end).unwrap();
            rec.submit().unwrap();
            let y = g.download(planned.tensor(out)).unwrap();
            let d = if with_vjp {
                g.download(planned.tensor(gx)).unwrap()
            } else {
                Vec::new()
            };
            (y, d)
        };
        let (y, d) = run(&xv, true);
        // The forward against a naive product.
        let at = |m: &[f32], b: usize, i: usize, j: usize, t: bool| {
            if t {
                m[b * 25 + j * 5 + i]
            } else {
                m[b * 25 + i * 5 + j]
            }
        };
        for b in 0..2 {
            for i in 0..5 {
                for j in 0..5 {
                    let want: f64 = (0..5)
                        .map(|k| at(&xv, b, i, k, ta) as f64 * at(&xv, b, k, j, tb) as f64)
                        .sum();
                    assert!((y[b * 25 + i * 5 + j] as f64 - want).abs() < 1e-5);
                }
            }
        }
        let eps = 1e-2f32;
        let shifted = |s: f32| -> Vec<f32> {
            let xs: Vec<f32> = xv.iter().zip(&u).map(|(&a, &b)| a + s * b).collect();
            run(&xs, false).0
        };
        let fd = (dot(&v, &shifted(eps)) - dot(&v, &shifted(-eps))) / (2.0 * eps as f64);
        let an = dot(&u, &d);
        assert!(
            (fd - an).abs() <= 1e-4 * an.abs().max(1.0),
            "trans ({ta}, {tb}): by differences {fd}, by the VJP {an}"
        );
    }
}
