//! `equireg pde` end to end on the embedded Darcy prior (two cases, a few steps: the outputs'
//! contract, not their quality), and its refusals of bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn equireg() -> Command {
    Command::new(env!("CARGO_BIN_EXE_equireg"))
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("equireg-pde-test-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

/// The first `n` held-out validation cases as their own file.
fn cases(n: usize, name: &str) -> PathBuf {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../assets/pde/darcy_val.npy");
    let (shape, data) = equireg_nn::npy::read_f32(&src).unwrap();
    assert_eq!(shape, [10, 2, 64, 64]);
    let path = tmp(name);
    equireg_nn::npy::write_f32(&path, &[n, 2, 64, 64], &data[..n * 2 * 64 * 64]).unwrap();
    path
}

fn pde(input: &Path, out: &Path, extra: &[&str]) -> Output {
    equireg()
        .args(["pde", "--problem", "darcy", "--input"])
        .arg(input)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn pde_writes_the_contract_outputs_for_every_case_and_method() {
    let input = cases(2, "two.npy");
    let out = tmp("run");
    let o = pde(
        &input,
        &out,
        &[
            "--observe",
            "u",
            "--points",
            "123",
            "--steps",
            "3",
            "--compare",
            "--batch",
            "1",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    for case in ["case-0000", "case-0001"] {
        let dir = out.join(case);
        let (s, mask) = equireg_nn::npy::read_f32(&dir.join("observed.npy")).unwrap();
        assert_eq!(s, [2, 64, 64]);
        let plane = 64 * 64;
        assert_eq!(mask[..plane].iter().filter(|v| **v == 1.0).count(), 0);
        assert_eq!(mask[plane..].iter().filter(|v| **v == 1.0).count(), 123);
        for m in ["dps", "equireg"] {
            let (s, r) =
                equireg_nn::npy::read_f32(&dir.join(format!("reconstruction_{m}.npy"))).unwrap();
            assert_eq!(s, [2, 64, 64]);
            assert!(r.iter().all(|v| v.is_finite()));
        }
        assert!(dir.join("panel.png").is_file());
        assert!(dir.join("panel.txt").is_file());
    }
    let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "case,index,method,rel_l2_a,rel_l2_u,error_rate_a");
    assert_eq!(lines.len(), 5, "{csv}");
    assert!(lines[1].starts_with("case-0000,0,dps,"), "{csv}");
    assert!(lines[4].starts_with("case-0001,1,equireg,"), "{csv}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(json["problem"], "darcy");
    assert_eq!(json["cases"].as_array().unwrap().len(), 4);
    let er = json["cases"][0]["error_rate_a"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&er));

    // The same case alone (batch 1 vs another batch size) gets the same points and result.
    let out2 = tmp("run-batch2");
    let o = pde(
        &input,
        &out2,
        &[
            "--observe",
            "u",
            "--points",
            "123",
            "--steps",
            "3",
            "--batch",
            "2",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    for case in ["case-0000", "case-0001"] {
        let a = std::fs::read(out.join(case).join("observed.npy")).unwrap();
        let b = std::fs::read(out2.join(case).join("observed.npy")).unwrap();
        assert_eq!(a, b, "{case}: points depend on the batch");
        let (_, a) =
            equireg_nn::npy::read_f32(&out.join(case).join("reconstruction_dps.npy")).unwrap();
        let (_, b) =
            equireg_nn::npy::read_f32(&out2.join(case).join("reconstruction_dps.npy")).unwrap();
        let diff = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        let scale = a.iter().map(|x| x.abs()).fold(0f32, f32::max);
        assert!(
            diff <= 1e-4 * scale,
            "{case}: batch changes the result by {diff}"
        );
    }
    assert!(!out2.join("case-0000/reconstruction_equireg.npy").exists());

    // A reused --out is refused without --overwrite; with it, the earlier run's files go.
    let o = pde(
        &input,
        &out2,
        &["--observe", "u", "--points", "123", "--steps", "2"],
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--overwrite"), "{}", stderr(&o));
    let one = cases(1, "one-of-two.npy");
    let o = pde(
        &one,
        &out2,
        &[
            "--observe",
            "u",
            "--points",
            "123",
            "--steps",
            "2",
            "--overwrite",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(out2.join("case-0000").is_dir());
    assert!(
        !out2.join("case-0001").exists(),
        "the earlier run's second case is left behind"
    );
}

#[test]
fn pde_refuses_bad_input_with_one_clear_line() {
    let input = cases(1, "one.npy");
    let out = tmp("bad");
    let cases_3ch = tmp("three.npy");
    equireg_nn::npy::write_f32(&cases_3ch, &[1, 3, 8, 8], &[0.0; 192]).unwrap();
    let checks: Vec<(Vec<&str>, Option<&Path>, &str)> = vec![
        (vec!["--observe", "x"], None, "--observe"),
        (vec!["--observe", "a", "--points", "0"], None, "--points 0"),
        (
            vec!["--observe", "a", "--points", "5000"],
            None,
            "4096 pixels",
        ),
        (
            vec!["--observe", "a", "--equireg", "alpha=0.1"],
            None,
            "--equireg needs --compare",
        ),
        (
            vec!["--observe", "a", "--zeta=-1", "--steps", "2"],
            None,
            "--zeta",
        ),
        (vec!["--observe", "a", "--batch", "0"], None, "--batch"),
        (
            vec!["--observe", "a"],
            Some(cases_3ch.as_path()),
            "three.npy",
        ),
    ];
    for (args, file, want) in checks {
        let o = pde(file.unwrap_or(&input), &out, &args);
        let e = stderr(&o);
        assert!(!o.status.success(), "{args:?} succeeded");
        assert!(e.contains(want), "{args:?}: {e}");
        assert!(!e.contains("panicked"), "{args:?}: {e}");
    }
    let o = equireg()
        .args(["pde", "--problem", "poisson", "--observe", "a", "--input"])
        .arg(&input)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no embedded prior"), "{}", stderr(&o));
}
