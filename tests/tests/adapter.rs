//! Adapter selection errors are clear and say how to get an adapter.

use equireg_gpu::{Gpu, GpuError, GpuOptions};

#[test]
fn unknown_adapter_name_fails_with_the_install_hint() {
    let opts = GpuOptions {
        adapter_name: Some("no-such-adapter-3f9c".into()),
        ..Default::default()
    };
    let err = Gpu::new(&opts).err().expect("no adapter has that name");
    assert!(matches!(err, GpuError::NoAdapter { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("no-such-adapter-3f9c"), "{msg}");
    assert!(msg.contains("apt-get install mesa-vulkan-drivers"), "{msg}");
}

#[test]
fn the_default_adapter_opens_with_its_own_limits() {
    let gpu = Gpu::new(&GpuOptions::default())
        .unwrap_or_else(|e| panic!("this test needs a GPU adapter: {e}"));
    let caps = gpu.caps();
    eprintln!("adapter: {}", caps.describe());
    // WebGPU's default storage binding limit is 128 MiB; we must have asked for the adapter's own,
    // which is never below the default.
    assert!(caps.limits.max_storage_buffer_binding_size >= 128 << 20);
    assert!(caps.limits.max_compute_invocations_per_workgroup >= 256);
    assert!(!caps.adapter_name.is_empty());
}
