//! The `equireg` binary end to end: parity through `equireg unet`, and bad input as one clear
//! error line with a non-zero exit.

use std::path::PathBuf;
use std::process::Command;

fn equireg() -> Command {
    Command::new(env!("CARGO_BIN_EXE_equireg"))
}

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(rel)
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("equireg-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

/// Runs `equireg unet --preset tiny32` on the deepinv fixture with `extra` arguments and returns
/// the relative L2 error of its output against the fixture file `want`.
fn unet_against_fixture(extra: &[&str], out_name: &str, want: &str) -> f64 {
    let dir = fixture("unet/tiny32-32-b2");
    let out = tmp(out_name);
    let st = equireg()
        .args(["unet", "--preset", "tiny32", "--weights"])
        .arg(dir.join("weights.safetensors"))
        .arg("--input")
        .arg(dir.join("x.npy"))
        .arg("--t")
        .arg(dir.join("t.npy"))
        .args(
            extra
                .iter()
                .map(|a| a.replace("{fixture}", &dir.to_string_lossy())),
        )
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let (s1, got) = equireg_nn::npy::read_f32(&out).unwrap();
    let (s2, want) = equireg_nn::npy::read_f32(&dir.join(want)).unwrap();
    assert_eq!(s1, s2);
    let num: f64 = got
        .iter()
        .zip(&want)
        .map(|(&g, &w)| ((g - w) as f64).powi(2))
        .sum();
    let den: f64 = want.iter().map(|&w| (w as f64).powi(2)).sum();
    (num / den).sqrt()
}

#[test]
fn unet_command_matches_the_deepinv_fixture() {
    assert!(unet_against_fixture(&[], "tiny32-y.npy", "y.npy") < 1e-4);
}

#[test]
fn unet_vjp_command_matches_torch_autograd() {
    assert!(unet_against_fixture(&["--vjp", "{fixture}/v.npy"], "tiny32-g.npy", "g.npy") < 1e-3);
}

fn fails_with(args: &[&str], needle: &str) {
    let o = equireg().args(args).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(
        err.contains(needle),
        "{args:?}: expected '{needle}' in: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn bad_inputs_are_one_clear_error() {
    let dir = fixture("unet/tiny32-32-b2");
    let w = dir.join("weights.safetensors");
    let x = dir.join("x.npy");
    let t = dir.join("t.npy");
    let o = tmp("never-written.npy");
    let s = |p: &PathBuf| p.to_string_lossy().into_owned();
    // Timesteps given as the float input: wrong dtype.
    fails_with(
        &[
            "unet",
            "--preset",
            "tiny32",
            "--weights",
            &s(&w),
            "--input",
            &s(&x),
            "--t",
            &s(&x),
            "--out",
            &s(&o),
        ],
        "expected int64",
    );
    // Int timesteps given as the input: wrong dtype.
    fails_with(
        &[
            "unet",
            "--preset",
            "tiny32",
            "--weights",
            &s(&w),
            "--input",
            &s(&t),
            "--t",
            &s(&t),
            "--out",
            &s(&o),
        ],
        "expected float32",
    );
    // Weights of another architecture.
    fails_with(
        &[
            "unet",
            "--preset",
            "small64",
            "--weights",
            &s(&w),
            "--input",
            &s(&x),
            "--t",
            &s(&t),
            "--out",
            &s(&o),
        ],
        "the weights do not match the model",
    );
    // A corrupt weights file.
    fails_with(
        &[
            "unet",
            "--preset",
            "tiny32",
            "--weights",
            &s(&x),
            "--input",
            &s(&x),
            "--t",
            &s(&t),
            "--out",
            &s(&o),
        ],
        "not a valid safetensors file",
    );
    fails_with(
        &[
            "unet",
            "--preset",
            "nope",
            "--weights",
            &s(&w),
            "--input",
            &s(&x),
            "--t",
            &s(&t),
            "--out",
            &s(&o),
        ],
        "unknown preset 'nope'",
    );
    assert!(!o.exists(), "no output may be written on error");
}

#[test]
fn devices_lists_an_adapter() {
    let o = equireg().args(["devices", "--json"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v.as_array().is_some_and(|a| !a.is_empty()));
    assert!(
        v[0]["limits"]["max_storage_buffer_binding_size"]
            .as_u64()
            .unwrap()
            > 0
    );
}

#[test]
fn unknown_adapter_is_an_error_with_the_install_hint() {
    fails_with(
        &["--adapter", "no-such-gpu-77", "bench", "kernels"],
        "mesa-vulkan-drivers",
    );
}

/// `equireg tasks ARGS --json`, parsed.
fn tasks_json(args: &[&str]) -> serde_json::Value {
    let o = equireg()
        .arg("tasks")
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn tasks_shows_every_preset_as_restore_runs_it() {
    let all = tasks_json(&[]);
    let names: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "sr4",
            "gaussian-deblur",
            "motion-deblur",
            "box-inpaint",
            "random-inpaint",
            "phase-retrieval",
            "hdr"
        ]
    );
    // DPS's zeta scales with the step count: 0.3 x 1000 / 50; --set changes the task first.
    let sr4 = tasks_json(&["sr4", "--steps", "50"]);
    assert_eq!(sr4[0]["operator"]["kind"], "super_resolution");
    assert!((sr4[0]["dps"]["zeta_used"].as_f64().unwrap() - 6.0).abs() < 1e-12);
    let set = tasks_json(&["sr4", "--steps", "50", "--set", "dps.zeta=0.1"]);
    assert!((set[0]["dps"]["zeta_used"].as_f64().unwrap() - 2.0).abs() < 1e-12);
    // The presets count loop steps; --equireg applies on top, to every task listed.
    for t in all.as_array().unwrap() {
        assert!(
            t["equireg"].as_str().unwrap().contains(",count=loop,"),
            "{t}"
        );
    }
    let ts = tasks_json(&["--equireg", "count=timestep"]);
    for t in ts.as_array().unwrap() {
        assert!(
            t["equireg"].as_str().unwrap().contains(",count=timestep,"),
            "{t}"
        );
    }
    let text = equireg().arg("tasks").output().unwrap();
    assert!(text.status.success());
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("phase-retrieval: Fourier phase retrieval"),
        "{text}"
    );
    fails_with(&["tasks", "sr5"], "unknown task \"sr5\"");
    fails_with(&["tasks", "--equireg", "count=up"], "count");
    fails_with(&["tasks", "sr4", "--set", "noise.sigma=x"], "in `noise`");
    fails_with(&["tasks", "--steps", "0"], "--steps must be at least 1");
}

/// A 32x32 PNG for restore runs (tiny32 needs sides divisible by 2).
fn test_png(name: &str, h: u32, w: u32) -> PathBuf {
    let p = tmp(name);
    image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 7) as u8, (y * 7) as u8, 128]))
        .save(&p)
        .unwrap();
    p
}

#[test]
fn restore_writes_results_metrics_and_a_grid() {
    let w = fixture("unet/tiny32-32-b2/weights.safetensors");
    let input = test_png("restore-in.png", 32, 32);
    let out = tmp("restore-out");
    let o = equireg()
        .args([
            "restore",
            "--task",
            "box-inpaint",
            "--preset",
            "tiny32",
            "--steps",
            "4",
        ])
        .args([
            "--compare",
            "--equireg",
            "group=rot90,freq=0.5,mpe=denoiser:50",
        ])
        .arg("--weights")
        .arg(&w)
        .arg("--input")
        .arg(&input)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    for f in [
        "grid.png",
        "measurement.png",
        "baseline.png",
        "restored_dps.png",
        "restored_equireg.png",
        "mask.npy",
    ] {
        assert!(
            out.join("restore-in").join(f).is_file(),
            "{f} missing: {err}"
        );
    }
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(m["task"], "box-inpaint");
    assert_eq!(m["steps"], 4);
    // The run records the regularizer's full settings: the task preset, --equireg on top.
    assert_eq!(
        m["equireg"],
        "group=rot90,alpha=0.01,freq=0.5,form=equi,reduction=norm,schedule=constant,\
         count=loop,mpe=denoiser:50"
    );
    // `equireg tasks` resolves the same settings without running anything (scripts use it).
    let resolved = tasks_json(&[
        "box-inpaint",
        "--equireg",
        "group=rot90,freq=0.5,mpe=denoiser:50",
    ]);
    assert_eq!(resolved[0]["equireg"], m["equireg"]);
    assert!(m["mean"]["dps"]["psnr"].as_f64().unwrap().is_finite());
    assert!(m["mean"]["dps+equireg"]["ssim"].as_f64().is_some());
    let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    assert!(m["mean"]["baseline"]["psnr"].as_f64().unwrap().is_finite());
    assert_eq!(csv.lines().count(), 4, "{csv}");
    let grid = image::open(out.join("restore-in/grid.png")).unwrap();
    assert_eq!(grid.height(), 32);
    assert!(
        grid.width() > 5 * 32,
        "ground truth, measurement, baseline and two results"
    );
}

/// The README's main command, shortened to 2 steps: the embedded default prior and MPE
/// encoder on a bundled photograph, no --weights.
#[test]
fn restore_runs_on_the_embedded_default_models_without_weights() {
    let photo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../assets/images/chelsea.png");
    let out = tmp("restore-default-out");
    let o = equireg()
        .args(["restore", "--task", "sr4", "--compare", "--steps", "2"])
        .args(["--restarts", "2"])
        .arg("--input")
        .arg(&photo)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    for solver in ["baseline", "dps", "dps+equireg"] {
        assert!(
            m["mean"][solver]["psnr"].as_f64().unwrap().is_finite(),
            "{solver}: {m}"
        );
    }
    assert!(out.join("chelsea/grid.png").is_file());
    // Every record has its data residual; the solvers say which of the 2 restarts they kept.
    for r in m["images"].as_array().unwrap() {
        assert!(r["residual"].as_f64().unwrap() > 0.0, "{r}");
        match r["solver"].as_str().unwrap() {
            "baseline" => assert!(r["restart"].is_null(), "{r}"),
            _ => assert!(r["restart"].as_u64().unwrap() < 2, "{r}"),
        }
    }
    // --preset and --config describe --weights; alone they are an error, not ignored.
    fails_with(
        &[
            "restore",
            "--task",
            "sr4",
            "--preset",
            "small64",
            "--input",
            &photo.to_string_lossy(),
            "--out",
            &out.to_string_lossy(),
        ],
        "--weights",
    );
}

#[test]
fn restore_bad_inputs_are_one_clear_error() {
    let w = fixture("unet/tiny32-32-b2/weights.safetensors");
    let ws = w.to_string_lossy().into_owned();
    let good = test_png("restore-good.png", 32, 32);
    let odd = test_png("restore-odd.png", 33, 32);
    let g = good.to_string_lossy().into_owned();
    let out = tmp("restore-bad-out").to_string_lossy().into_owned();
    let base = [
        "restore",
        "--preset",
        "tiny32",
        "--weights",
        &ws,
        "--out",
        &out,
    ];
    let run = |extra: &[&str], needle: &str| {
        let mut args: Vec<&str> = base.to_vec();
        args.extend_from_slice(extra);
        fails_with(&args, needle);
    };
    run(&["--task", "sr5", "--input", &g], "unknown task");
    run(
        &["--task", "sr4", "--restarts", "0", "--input", &g],
        "--restarts must be at least 1",
    );
    run(
        &["--task", "sr4", "--set", "noise.sigmaa=1", "--input", &g],
        "sigmaa",
    );
    run(
        &["--task", "sr4", "--set", "operator.scale", "--input", &g],
        "key.path=value",
    );
    run(
        &["--task", "sr4", "--input", "/nonexistent/x.png"],
        "/nonexistent/x.png",
    );
    run(
        &["--task", "sr4", "--input", &odd.to_string_lossy()],
        "multiples of 2",
    );
    run(
        &["--task", "sr4", "--equireg", "group=rot45", "--input", &g],
        "rot45",
    );
    run(
        &["--task", "sr4", "--steps", "ddim999", "--input", &g],
        "ddim999",
    );
    let file = tmp("restore-not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    fails_with(
        &[
            "restore",
            "--task",
            "sr4",
            "--preset",
            "tiny32",
            "--weights",
            &ws,
            "--input",
            &g,
            "--out",
            &file.join("sub").to_string_lossy(),
        ],
        "output folder",
    );
}

#[test]
fn restore_help_documents_every_option() {
    let o = equireg().args(["restore", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&o.stdout);
    for opt in [
        "--task",
        "--set",
        "--input",
        "--measurement",
        "--weights",
        "--preset",
        "--config",
        "--steps",
        "--sampler",
        "--eta",
        "--zeta",
        "--seed",
        "--batch",
        "--resize",
        "--crop",
        "--equireg",
        "--no-equireg",
        "--compare",
        "--out",
        "SIZE POLICY",
        "OUTPUTS",
    ] {
        assert!(help.contains(opt), "restore --help does not mention {opt}");
    }
}

#[test]
fn mpe_check_writes_a_table_and_a_histogram() {
    use equireg_nn::mpe::{Mpe, MpeConfig};
    let dir = tmp("mpe-ldm-tiny");
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = MpeConfig::preset("ldm-tiny").unwrap();
    std::fs::write(dir.join("config.json"), cfg.to_json()).unwrap();
    Mpe::synthetic_weights(&cfg, 3)
        .unwrap()
        .save(&dir.join("weights.safetensors"))
        .unwrap();
    let imgs = tmp("mpe-images");
    std::fs::create_dir_all(&imgs).unwrap();
    for (k, name) in ["a.png", "b.png"].iter().enumerate() {
        image::RgbImage::from_fn(40, 48, |x, y| {
            image::Rgb([(x * 5 + 20 * k as u32) as u8, (y * 5) as u8, 90])
        })
        .save(imgs.join(name))
        .unwrap();
    }
    let out = tmp("mpe-check-out");
    let o = equireg()
        .args(["mpe-check", "--size", "32", "--groups", "hflip,d4"])
        .arg("--mpe")
        .arg(&dir)
        .arg("--images")
        .arg(&imgs)
        .arg("--restored")
        .arg(format!("again={}", imgs.display()))
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let table = std::fs::read_to_string(out.join("mpe_check.md")).unwrap();
    assert!(
        table.contains("| hflip |") && table.contains("| d4 |") && table.contains("again mean"),
        "{table}"
    );
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("mpe_check.json")).unwrap())
            .unwrap();
    // Rows per group: clean, noised, blurred, again. hflip: 1 element x 2 images; d4: 8
    // elements x 2 images (the identity gives 0).
    let rows = j["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 8);
    assert_eq!(rows[0]["errors"].as_array().unwrap().len(), 2);
    assert_eq!(rows[4]["errors"].as_array().unwrap().len(), 16);
    // The same images given again as a further set are cropped and scored the same way.
    assert_eq!(rows[3]["images"], "again");
    assert_eq!(rows[3]["errors"], rows[0]["errors"]);
    assert_eq!(rows[7]["errors"], rows[4]["errors"]);
    assert!(image::open(out.join("histogram.png")).is_ok());

    fails_with(
        &[
            "mpe-check",
            "--size",
            "32",
            "--restored",
            "no-label",
            "--mpe",
            &dir.to_string_lossy(),
            "--images",
            &imgs.to_string_lossy(),
            "--out",
            &tmp("mpe-check-bad").to_string_lossy(),
        ],
        "expected LABEL=FOLDER",
    );
}

#[test]
fn bench_restore_profiles_a_step_where_equireg_fires() {
    // With the reference's count (DPS's timestep index, K-1 down to 0) and freq 0.1, 10 steps
    // fire only on loop step 9, never on step 0: a profile of step 0 would show no regularizer
    // (the bench printed "+-0.0 %" so), the bench must profile the firing step.
    let o = equireg()
        .args([
            "bench",
            "restore",
            "--task",
            "sr4",
            "--preset",
            "photo64",
            "--size",
            "16",
            "--steps",
            "10",
            "--timed-steps",
            "1",
            "--equireg",
            "mpe=default,count=timestep",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let sections = v["gpu_ms_by_section"].as_array().unwrap();
    assert!(
        !sections.is_empty(),
        "no GPU timings: the test adapter must have timestamps inside passes ({v})"
    );
    let per_firing = v["equireg_percent_per_firing_step"].as_f64().unwrap();
    assert!(per_firing > 0.0, "{v}");
    // One firing step in 10: the average is a tenth of the firing step's share.
    let averaged = v["equireg_percent_averaged"].as_f64().unwrap();
    assert!((averaged - per_firing / 10.0).abs() < 1e-9, "{v}");
    assert!(
        sections.iter().any(|s| s[0] == "equireg"),
        "the profiled firing step has no equireg section: {v}"
    );
    let kernels = v["equireg_ms_by_kernel"].as_array().unwrap();
    assert!(
        kernels
            .iter()
            .any(|k| k[0].as_str().unwrap().starts_with("equivariance::")),
        "{v}"
    );
}
