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
