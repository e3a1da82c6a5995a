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

// ---- Input and output integrity (issue: bad input and output integrity) ----

/// A fresh, empty scratch folder for one test.
fn fresh(name: &str) -> PathBuf {
    let d = tmp(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `restore` on the tiny32 fixture with `extra` arguments.
fn restore_tiny(extra: &[&str]) -> std::process::Output {
    let w = fixture("unet/tiny32-32-b2/weights.safetensors");
    equireg()
        .args(["restore", "--preset", "tiny32", "--weights"])
        .arg(&w)
        .args(extra)
        .output()
        .unwrap()
}

fn restore_fails_with(extra: &[&str], needle: &str) {
    let w = fixture("unet/tiny32-32-b2/weights.safetensors");
    let mut args = vec!["restore", "--preset", "tiny32", "--weights"];
    let ws = w.to_string_lossy().into_owned();
    args.push(&ws);
    args.extend_from_slice(extra);
    fails_with(&args, needle);
}

#[test]
fn restore_never_writes_outside_out_and_refuses_colliding_names() {
    let root = fresh("names");
    let inputs = root.join("in");
    std::fs::create_dir_all(&inputs).unwrap();
    let out = root.join("out");
    // "...png" has the stem "..": its folder would be out/.., outside --out.
    image::RgbImage::from_fn(32, 32, |x, _| image::Rgb([x as u8, 0, 0]))
        .save_with_format(inputs.join("...png"), image::ImageFormat::Png)
        .unwrap();
    let o = out.to_string_lossy().into_owned();
    let i = inputs.to_string_lossy().into_owned();
    restore_fails_with(
        &["--task", "sr4", "--input", &i, "--out", &o],
        "is refused: it names a folder",
    );
    assert!(!out.exists(), "nothing written on a refused name");
    assert_eq!(
        std::fs::read_dir(&root).unwrap().count(),
        1,
        "nothing written beside --out"
    );
    // Two files that share one output folder (other extension) are refused, naming both.
    std::fs::remove_file(inputs.join("...png")).unwrap();
    for f in ["a.png", "a.jpg"] {
        image::RgbImage::from_fn(32, 32, |x, _| image::Rgb([x as u8, 9, 0]))
            .save(inputs.join(f))
            .unwrap();
    }
    restore_fails_with(
        &["--task", "sr4", "--input", &i, "--out", &o],
        "would both write to the output folder \"a\"",
    );
    assert!(!out.exists());
    // So are names that differ only in case (one folder on a case-insensitive file system).
    std::fs::rename(inputs.join("a.jpg"), inputs.join("A.png")).unwrap();
    restore_fails_with(
        &["--task", "sr4", "--input", &i, "--out", &o],
        "differ only in extension or case",
    );
}

#[test]
fn bad_numeric_settings_are_refused_by_name_before_any_work() {
    let root = fresh("settings");
    let good = test_png("settings-good.png", 32, 32);
    let small = test_png("settings-small.png", 8, 8);
    let oblong = test_png("settings-oblong.png", 32, 16);
    let g = good.to_string_lossy().into_owned();
    let out = root.join("out");
    let o = out.to_string_lossy().into_owned();
    let cases: &[(&[&str], &str)] = &[
        (&["--eta", "NaN"], "--eta"),
        (&["--sampler", "ddim", "--eta=-1"], "--eta"),
        (&["--zeta", "inf"], "--zeta"),
        (&["--zeta=-2"], "--zeta"),
        (&["--set", "noise.sigma=inf"], "noise.sigma"),
        (&["--set", "noise.sigma=nan"], "noise.sigma"),
        (&["--set", "dps.zeta=inf"], "dps.zeta"),
        (&["--batch", "0"], "--batch"),
        (&["--equireg", "group=shift:0"], "only the identity"),
        (&["--equireg", "alpha=inf"], "alpha"),
        (
            &["--steps", "4", "--equireg", "schedule=cutoff,cutoff=4"],
            "never fire",
        ),
        (&["--equireg", "cutoff=-3"], "cutoff"),
        (&["--resize", "100000x100000"], "too large"),
    ];
    for (extra, needle) in cases {
        let mut args = vec!["--task", "sr4", "--input", &g, "--out", &o];
        args.extend_from_slice(extra);
        restore_fails_with(&args, needle);
    }
    // Checks that need the images, still before the first step.
    restore_fails_with(
        &[
            "--task",
            "sr4",
            "--input",
            &small.to_string_lossy(),
            "--out",
            &o,
        ],
        "SSIM needs images of at least 11x11",
    );
    restore_fails_with(
        &[
            "--task",
            "sr4",
            "--equireg",
            "group=rot90,mpe=denoiser",
            "--input",
            &oblong.to_string_lossy(),
            "--out",
            &o,
        ],
        "not square",
    );
    assert!(!out.exists(), "a refused run writes nothing");
    // The other commands refuse the same way.
    fails_with(
        &["tasks", "--equireg", "group=hflip*hflip"],
        "only the identity",
    );
    fails_with(
        &[
            "tasks",
            "sr4",
            "--steps",
            "10",
            "--equireg",
            "schedule=cutoff,cutoff=10",
        ],
        "never fire",
    );
    fails_with(&["tasks", "sr4", "--set", "noise.sigma=inf"], "noise.sigma");
    fails_with(
        &["bench", "unet", "--preset", "tiny32", "--min-time", "inf"],
        "--min-time",
    );
    fails_with(
        &["bench", "unet", "--preset", "tiny32", "--min-reps", "0"],
        "--min-reps",
    );
    fails_with(&["bench", "restore", "--size", "0"], "--size");
    let imgs = fresh("settings-imgs");
    test_png("settings-imgs/a.png", 32, 32);
    let im = imgs.to_string_lossy().into_owned();
    fails_with(
        &["mpe-check", "--images", &im, "--noise", "nan", "--out", &o],
        "--noise",
    );
    fails_with(
        &[
            "mpe-check",
            "--images",
            &im,
            "--groups",
            "hflip,shift:0",
            "--out",
            &o,
        ],
        "only the identity",
    );
    fails_with(
        &["mpe-check", "--images", &im, "--size", "0", "--out", &o],
        "--size",
    );
    let w = fixture("unet/tiny32-32-b2/weights.safetensors");
    fails_with(
        &[
            "sample",
            "--preset",
            "tiny32",
            "--weights",
            &w.to_string_lossy(),
            "--eta",
            "inf",
            "--out",
            &o,
        ],
        "--eta",
    );
    assert!(!out.exists(), "a refused run writes nothing");
}

#[test]
fn corrupt_files_are_errors_that_name_the_file() {
    let root = fresh("corrupt");
    let o = root.join("out").to_string_lossy().into_owned();
    // A truncated JPEG (the lenient decoder would fill the rest with gray).
    let img = image::RgbImage::from_fn(32, 32, |x, y| {
        image::Rgb([((x * 31) ^ (y * 17)) as u8, (x * y) as u8, 5])
    });
    let mut jpg = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut jpg),
        image::ImageFormat::Jpeg,
    )
    .unwrap();
    let cut = root.join("cut.jpg");
    std::fs::write(&cut, &jpg[..jpg.len() * 2 / 3]).unwrap();
    let c = cut.to_string_lossy().into_owned();
    restore_fails_with(&["--task", "sr4", "--input", &c, "--out", &o], "cut.jpg");
    restore_fails_with(
        &["--task", "sr4", "--input", &c, "--out", &o],
        "truncated or corrupt",
    );
    // A device as weights would be read forever: refused as not a regular file.
    fails_with(
        &[
            "restore",
            "--task",
            "sr4",
            "--preset",
            "tiny32",
            "--weights",
            "/dev/zero",
            "--input",
            &c,
            "--out",
            &o,
        ],
        "/dev/zero: not a regular file",
    );
    // .npy: NaN in the input, a shape that overflows, a shape larger than the data.
    let dir = fixture("unet/tiny32-32-b2");
    let (xs, mut x) = equireg_nn::npy::read_f32(&dir.join("x.npy")).unwrap();
    x[3] = f32::NAN;
    let nan = root.join("nan.npy");
    equireg_nn::npy::write_f32(&nan, &xs, &x).unwrap();
    let unet = |input: &PathBuf, needle: &str| {
        fails_with(
            &[
                "unet",
                "--preset",
                "tiny32",
                "--weights",
                &dir.join("weights.safetensors").to_string_lossy(),
                "--input",
                &input.to_string_lossy(),
                "--t",
                &dir.join("t.npy").to_string_lossy(),
                "--out",
                &root.join("y.npy").to_string_lossy(),
            ],
            needle,
        )
    };
    unet(&nan, "nan.npy: 1 of");
    let mut header = "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, \
                      4294967296, 4294967296, 2), }"
        .to_string();
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(&[0; 64]);
    let huge = root.join("huge.npy");
    std::fs::write(&huge, &bytes).unwrap();
    unet(&huge, "huge.npy: shape");
    assert!(!root.join("y.npy").exists());
    // A bad WGPU_BACKEND says so (instead of "no adapter found").
    let o = equireg()
        .env("WGPU_BACKEND", "bogus")
        .args(["devices"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("WGPU_BACKEND 'bogus'"), "{err}");
}

#[test]
fn a_reused_out_is_refused_locked_or_cleaned_never_mixed() {
    let root = fresh("reuse");
    let out = root.join("out");
    let o = out.to_string_lossy().into_owned();
    // A name with a comma and a quote: metrics.csv must quote it.
    let first = root.join("a,\"b.png");
    image::RgbImage::from_fn(32, 32, |x, y| image::Rgb([(x * 7) as u8, (y * 7) as u8, 1]))
        .save(&first)
        .unwrap();
    let second = test_png("reuse/second.png", 32, 32);
    let run = |input: &PathBuf, extra: &[&str]| {
        let mut a = vec!["--task", "sr4", "--steps", "2", "--no-equireg", "--out", &o];
        a.extend_from_slice(extra);
        let i = input.to_string_lossy().into_owned();
        let mut all: Vec<&str> = a.clone();
        all.extend(["--input", &i]);
        restore_tiny(&all)
    };
    let r = run(&first, &[]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    assert!(csv.contains("\n\"a,\"\"b\",baseline,"), "{csv}");
    assert!(!out.join(".equireg.lock").exists(), "the lock is released");
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(m["complete"], true);
    // Reused without --overwrite: refused, the first run's outputs untouched.
    let r = run(&second, &[]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(!r.status.success() && err.contains("is not empty"), "{err}");
    assert!(out.join("a,\"b/restored.png").is_file());
    // While another run holds the lock: refused, even with --overwrite.
    std::fs::write(out.join(".equireg.lock"), "4242\n").unwrap();
    let r = run(&second, &["--overwrite"]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        !r.status.success() && err.contains("another equireg run (process 4242)"),
        "{err}"
    );
    std::fs::remove_file(out.join(".equireg.lock")).unwrap();
    // A folder the user put there under an image's name is never written into.
    std::fs::create_dir_all(out.join("second")).unwrap();
    std::fs::write(out.join("second/mine.txt"), "keep").unwrap();
    let r = run(&second, &["--overwrite"]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        !r.status.success() && err.contains("was not written by this run"),
        "{err}"
    );
    assert!(out.join("second/mine.txt").is_file());
    std::fs::remove_dir_all(out.join("second")).unwrap();
    // With --overwrite: the earlier run's outputs go, unrelated files stay, and the metrics
    // describe this run's image only.
    std::fs::write(out.join("notes.txt"), "mine").unwrap();
    let r = run(&second, &["--overwrite"]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert!(
        !out.join("a,\"b").exists(),
        "the earlier run's folder is removed"
    );
    assert!(
        out.join("notes.txt").is_file(),
        "files equireg did not write stay"
    );
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    for r in m["images"].as_array().unwrap() {
        assert_eq!(r["name"], "second", "{m}");
    }
    let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3, "{csv}");
    assert!(!csv.contains("\"a,"), "{csv}");
}

// ---- Solvers beside DPS ----

#[test]
fn restore_runs_diffpir_with_and_without_equireg_and_records_its_settings() {
    let input = test_png("diffpir-in.png", 32, 32);
    let out = fresh("diffpir-out");
    let o = restore_tiny(&[
        "--task",
        "sr4",
        "--solver",
        "diffpir",
        "--steps",
        "4",
        "--set",
        "solver.lambda=20",
        "--compare",
        "--equireg",
        "mpe=denoiser:50,freq=1",
        "--input",
        input.to_str().unwrap(),
        "--out",
        out.join("o").to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    for f in ["restored_diffpir.png", "restored_equireg.png", "grid.png"] {
        assert!(out.join("o/diffpir-in").join(f).is_file(), "{f}: {err}");
    }
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("o/metrics.json")).unwrap())
            .unwrap();
    assert_eq!(
        m["solver"],
        "diffpir: steps=4, lambda=20, zeta=0.25, noise_sigma=0.05, clip=true, data_step=gradient"
    );
    assert!(m["zeta"].is_null(), "zeta is DPS's: {}", m["zeta"]);
    assert!(m["mean"]["diffpir"]["psnr"].as_f64().unwrap().is_finite());
    assert!(
        m["mean"]["diffpir+equireg"]["psnr"]
            .as_f64()
            .unwrap()
            .is_finite()
    );
    // `equireg tasks` shows the same settings.
    let t = tasks_json(&["sr4", "--set", "solver.diffpir.lambda=20"]);
    assert_eq!(t[0]["solver"]["diffpir"]["lambda"], 20.0);
    assert_eq!(t[0]["solver"]["diffpir"]["zeta"], 0.25);
}

#[test]
fn restore_runs_red_diff_and_records_its_settings() {
    let input = test_png("red-diff-in.png", 32, 32);
    let out = fresh("red-diff-out");
    let o = restore_tiny(&[
        "--task",
        "gaussian-deblur",
        "--solver",
        "red-diff",
        "--steps",
        "3",
        "--set",
        "solver.lr=0.05",
        "--no-equireg",
        "--input",
        input.to_str().unwrap(),
        "--out",
        out.join("o").to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(out.join("o/red-diff-in/restored.png").is_file(), "{err}");
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("o/metrics.json")).unwrap())
            .unwrap();
    assert_eq!(
        m["solver"],
        "red-diff: steps=3, lr=0.05, lambda=0.25, obs_weight=1"
    );
    assert!(m["mean"]["red-diff"]["psnr"].as_f64().unwrap().is_finite());
    restore_fails_with(
        &[
            "--task",
            "sr4",
            "--solver",
            "red-diff",
            "--set",
            "solver.lr=0",
            "--input",
            input.to_str().unwrap(),
            "--out",
            out.join("p").to_str().unwrap(),
        ],
        "solver.lr (red-diff) must be finite and > 0",
    );
}

#[test]
fn restore_runs_daps_and_records_its_settings() {
    let input = test_png("daps-in.png", 32, 32);
    let out = fresh("daps-out");
    let o = restore_tiny(&[
        "--task",
        "box-inpaint",
        "--solver",
        "daps",
        "--steps",
        "3",
        "--set",
        "solver.langevin_steps=4",
        "--set",
        "solver.ode_steps=2",
        "--compare",
        "--input",
        input.to_str().unwrap(),
        "--out",
        out.join("o").to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("o/metrics.json")).unwrap())
            .unwrap();
    assert_eq!(
        m["solver"],
        "daps: steps=3, ode_steps=2, langevin_steps=4, lr=0.00005, lr_min_ratio=0.01, tau=0.01, \
         sigma_max=100, sigma_min=0.1, ode_sigma_min=0.01"
    );
    // With and without EquiReg (the preset's default), both finite.
    assert!(
        m["mean"]["daps"]["psnr"].as_f64().unwrap().is_finite(),
        "{m}"
    );
    assert!(
        m["mean"]["daps+equireg"]["psnr"]
            .as_f64()
            .unwrap()
            .is_finite(),
        "{m}"
    );
}

#[test]
fn restore_runs_sitcom_with_its_equireg_phase() {
    let input = test_png("sitcom-in.png", 32, 32);
    let out = fresh("sitcom-out");
    let o = restore_tiny(&[
        "--task",
        "sr4",
        "--solver",
        "sitcom",
        "--steps",
        "2",
        "--set",
        "solver.inner_steps=3",
        "--set",
        "solver.equireg_steps=4",
        "--equireg",
        "freq=1",
        "--compare",
        "--input",
        input.to_str().unwrap(),
        "--out",
        out.join("o").to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("o/metrics.json")).unwrap())
            .unwrap();
    assert_eq!(
        m["solver"],
        "sitcom: steps=2, inner_steps=3, lr=0.02, noise_level=0.05, dc_scale=0, equireg_steps=4, \
         equireg_at=phase"
    );
    let (plain, phased) = (
        m["mean"]["sitcom"]["psnr"].as_f64().unwrap(),
        m["mean"]["sitcom+equireg"]["psnr"].as_f64().unwrap(),
    );
    assert!(plain.is_finite() && phased.is_finite(), "{m}");
    // The phase moves x0 (Adam's first steps move every pixel by about lr).
    assert_ne!(plain, phased, "the EquiReg phase left the result unchanged");
    // EquiReg inside the data loop instead: runs, and differs from the plain run.
    let o = restore_tiny(&[
        "--task",
        "sr4",
        "--solver",
        "sitcom",
        "--steps",
        "2",
        "--set",
        "solver.inner_steps=3",
        "--set",
        "solver.equireg_at=inner",
        "--equireg",
        "freq=1,alpha=10",
        "--input",
        input.to_str().unwrap(),
        "--out",
        out.join("q").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let q: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("q/metrics.json")).unwrap())
            .unwrap();
    let inner = q["mean"]["sitcom+equireg"]["psnr"].as_f64().unwrap();
    assert!(inner.is_finite() && inner != plain, "{q}");
    restore_fails_with(
        &[
            "--task",
            "sr4",
            "--solver",
            "sitcom",
            "--set",
            "solver.equireg_at=outer",
            "--input",
            input.to_str().unwrap(),
            "--out",
            out.join("p").to_str().unwrap(),
        ],
        "solver.equireg_at (sitcom) must be \"phase\" or \"inner\"",
    );
}

#[test]
fn restore_runs_ddnm_with_equireg_and_refuses_operators_without_a_pseudo_inverse() {
    let input = test_png("ddnm-in.png", 32, 32);
    let out = fresh("ddnm-out");
    let o = restore_tiny(&[
        "--task",
        "sr4",
        "--solver",
        "ddnm",
        "--steps",
        "4",
        "--equireg",
        "freq=1",
        "--compare",
        "--input",
        input.to_str().unwrap(),
        "--out",
        out.join("o").to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("o/metrics.json")).unwrap())
            .unwrap();
    assert_eq!(
        m["solver"],
        "ddnm: steps=4, eta=0.85, noise_sigma=0.05, penalty_step=1"
    );
    let (plain, reg) = (
        m["mean"]["ddnm"]["psnr"].as_f64().unwrap(),
        m["mean"]["ddnm+equireg"]["psnr"].as_f64().unwrap(),
    );
    assert!(plain.is_finite() && reg.is_finite() && plain != reg, "{m}");
    for task in ["phase-retrieval", "motion-deblur", "hdr"] {
        restore_fails_with(
            &[
                "--task",
                task,
                "--solver",
                "ddnm",
                "--input",
                input.to_str().unwrap(),
                "--out",
                out.join(task).to_str().unwrap(),
            ],
            "ddnm needs the operator's pseudo-inverse",
        );
        assert!(
            !out.join(task).exists(),
            "{task}: a refused run wrote output"
        );
    }
}

#[test]
fn restore_refuses_bad_solver_settings_by_name() {
    let input = test_png("diffpir-bad.png", 32, 32);
    let out = fresh("diffpir-bad");
    let o = out.join("o");
    let (i, o) = (input.to_str().unwrap(), o.to_str().unwrap());
    let base = ["--task", "sr4", "--input", i, "--out", o];
    let with = |extra: &[&'static str]| {
        let mut v: Vec<&str> = base.to_vec();
        v.extend_from_slice(extra);
        v
    };
    restore_fails_with(&with(&["--solver", "nosuch"]), "unknown solver \"nosuch\"");
    restore_fails_with(
        &with(&["--solver", "daps", "--set", "solver.tau=0"]),
        "solver.tau (daps) must be finite and > 0",
    );
    restore_fails_with(
        &with(&["--solver", "daps", "--set", "solver.langevin_steps=0"]),
        "solver.langevin_steps (daps) must be 1 to 1000",
    );
    restore_fails_with(
        &with(&["--solver", "diffpir", "--steps", "ddim50"]),
        "diffpir takes a number of steps",
    );
    restore_fails_with(
        &with(&["--solver", "diffpir", "--steps", "1"]),
        "diffpir needs at least 2 steps",
    );
    restore_fails_with(
        &with(&["--solver", "diffpir", "--set", "solver.zeta=1.5"]),
        "solver.zeta (diffpir) must be in [0, 1]",
    );
    restore_fails_with(
        &with(&["--solver", "diffpir", "--set", "solver.lambda=-1"]),
        "solver.lambda (diffpir) must be finite and > 0",
    );
    restore_fails_with(
        &with(&["--solver", "diffpir", "--set", "solver.step=1"]),
        "unknown field `step`",
    );
    restore_fails_with(
        &with(&["--solver", "diffpir", "--zeta", "1"]),
        "--zeta and --sampler are DPS's",
    );
    assert!(
        !out.join("o").exists(),
        "nothing is written on a refused run"
    );
}

#[test]
fn bench_restore_times_every_solver_with_one_submit_and_no_readback_per_step() {
    // DAPS: 6 levels of 5 ODE steps; the others skip their reference's discarded last step.
    for (solver, forwards) in [("daps", 30), ("diffpir", 5), ("red-diff", 5)] {
        let o = equireg()
            .args([
                "bench",
                "restore",
                "--task",
                "gaussian-deblur",
                "--solver",
                solver,
            ])
            .args([
                "--preset", "tiny32", "--size", "32", "--steps", "6", "--json",
            ])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["network_forwards"], forwards, "{solver}: {v}");
        assert_eq!(v["network_vjps"], 0, "{solver}: {v}");
        // Timed steps include the skipped last one (nothing recorded), so at most one submit.
        assert!(
            v["submits_per_step"].as_f64().unwrap() <= 1.0,
            "{solver}: {v}"
        );
        assert_eq!(v["uploads_per_step"], 0.0, "{solver}: {v}");
        assert_eq!(v["readbacks_per_step"], 0.0, "{solver}: {v}");
    }
    // SITCOM: 30 forwards and 29 VJPs per step, still one submit.
    let o = equireg()
        .args(["bench", "restore", "--task", "sr4", "--solver", "sitcom"])
        .args([
            "--preset", "tiny32", "--size", "32", "--steps", "2", "--json",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (v["network_forwards"].as_u64(), v["network_vjps"].as_u64()),
        (Some(60), Some(58)),
        "{v}"
    );
    assert_eq!(v["submits_per_step"], 1.0, "{v}");
    assert_eq!(v["readbacks_per_step"], 0.0, "{v}");
}
