//! Every WGSL file in shaders/ parses and validates with naga, and the kernel registry compiled
//! into the binary holds exactly those files. Runs without a GPU adapter.

use std::path::PathBuf;

fn shader_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shaders")
}

fn shader_files() -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = std::fs::read_dir(shader_dir())
        .expect("shaders/ exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wgsl"))
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect();
    files.sort();
    files
}

/// Shaders whose kernels use subgroup operations; ops select them only when the adapter has
/// the SUBGROUP feature (see ops::matmul::KernelPath), with a baseline fallback in matmul.wgsl.
const NEEDS_SUBGROUP: &[&str] = &["conv2d", "conv2d_vjp_sg"];

#[test]
fn every_shader_parses_and_validates() {
    let files = shader_files();
    assert!(!files.is_empty());
    let mut failures = Vec::new();
    for (name, src) in &files {
        let module = match naga::front::wgsl::parse_str(src) {
            Ok(m) => m,
            Err(e) => {
                failures.push(format!("{name}.wgsl: {}", e.emit_to_string(src)));
                continue;
            }
        };
        // Only the baseline capabilities, except for the shaders listed as needing an optional
        // feature (the runtime selects them only when the adapter has it, and falls back to a
        // baseline shader otherwise).
        let caps = if NEEDS_SUBGROUP.contains(&name.as_str()) {
            naga::valid::Capabilities::SUBGROUP
        } else {
            naga::valid::Capabilities::empty()
        };
        let mut v = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps);
        if NEEDS_SUBGROUP.contains(&name.as_str()) {
            v.subgroup_stages(naga::valid::ShaderStages::COMPUTE);
            v.subgroup_operations(naga::valid::SubgroupOperationSet::all());
        }
        if let Err(e) = v.validate(&module) {
            failures.push(format!("{name}.wgsl: {}", e.emit_to_string(src)));
        }
    }
    assert!(
        failures.is_empty(),
        "invalid shaders:\n{}",
        failures.join("\n")
    );
}

#[test]
fn kernel_registry_holds_exactly_the_shader_files() {
    let on_disk: Vec<String> = shader_files().into_iter().map(|(n, _)| n).collect();
    let mut registered: Vec<String> = equireg_gpu::SHADERS
        .iter()
        .map(|(n, _)| n.to_string())
        .collect();
    registered.sort();
    assert_eq!(on_disk, registered);
    for (name, src) in shader_files() {
        assert_eq!(
            equireg_gpu::kernels::shader_source(&name),
            Some(src.as_str()),
            "{name}.wgsl in the binary differs from the file"
        );
    }
}

#[test]
fn every_shader_has_compute_entry_points() {
    for (name, src) in shader_files() {
        let module = naga::front::wgsl::parse_str(&src).unwrap();
        assert!(
            module
                .entry_points
                .iter()
                .any(|e| e.stage == naga::ShaderStage::Compute),
            "{name}.wgsl has no compute entry point"
        );
    }
}
