//! What the device we opened can do: the adapter's identity, the limits we were granted and the
//! optional features that were present. Kernels choose tile sizes from these, never from
//! assumptions about a vendor.

/// The optional features we ask for whenever the adapter offers them, with their names.
pub const WANTED_FEATURES: &[(&str, wgpu::Features)] = &[
    ("SHADER_F16", wgpu::Features::SHADER_F16),
    ("SUBGROUP", wgpu::Features::SUBGROUP),
    ("TIMESTAMP_QUERY", wgpu::Features::TIMESTAMP_QUERY),
    (
        "TIMESTAMP_QUERY_INSIDE_ENCODERS",
        wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS,
    ),
    (
        "TIMESTAMP_QUERY_INSIDE_PASSES",
        wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES,
    ),
    ("IMMEDIATES", wgpu::Features::IMMEDIATES),
];

/// The union of [`WANTED_FEATURES`].
pub fn wanted_features() -> wgpu::Features {
    WANTED_FEATURES
        .iter()
        .fold(wgpu::Features::empty(), |acc, (_, f)| acc | *f)
}

#[derive(Clone, Debug)]
pub struct Capabilities {
    pub adapter_name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub driver_info: String,
    /// The limits the device was created with: the adapter's own, not WebGPU's defaults.
    pub limits: wgpu::Limits,
    pub features: wgpu::Features,
    pub shader_f16: bool,
    pub subgroup: bool,
    pub subgroup_min_size: u32,
    pub subgroup_max_size: u32,
    pub timestamp_query: bool,
    pub timestamp_inside_passes: bool,
    pub immediates: bool,
    /// Nanoseconds per timestamp tick (1.0 on most drivers).
    pub timestamp_period_ns: f32,
}

impl Capabilities {
    pub(crate) fn new(
        info: &wgpu::AdapterInfo,
        limits: wgpu::Limits,
        features: wgpu::Features,
        timestamp_period_ns: f32,
    ) -> Self {
        Capabilities {
            adapter_name: info.name.clone(),
            backend: info.backend.to_str().to_string(),
            device_type: device_type_name(info.device_type).to_string(),
            driver: info.driver.clone(),
            driver_info: info.driver_info.clone(),
            limits,
            features,
            shader_f16: features.contains(wgpu::Features::SHADER_F16),
            subgroup: features.contains(wgpu::Features::SUBGROUP),
            subgroup_min_size: info.subgroup_min_size,
            subgroup_max_size: info.subgroup_max_size,
            timestamp_query: features.contains(wgpu::Features::TIMESTAMP_QUERY),
            timestamp_inside_passes: features
                .contains(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES),
            immediates: features.contains(wgpu::Features::IMMEDIATES),
            timestamp_period_ns,
        }
    }

    /// Largest byte range one storage binding may cover.
    pub fn max_binding_bytes(&self) -> u64 {
        self.limits
            .max_storage_buffer_binding_size
            .min(self.limits.max_buffer_size)
    }

    /// One line for logs and test output: "llvmpipe (LLVM 15.0.6, 256 bits) [vulkan, cpu]".
    pub fn describe(&self) -> String {
        format!(
            "{} [{}, {}]",
            self.adapter_name, self.backend, self.device_type
        )
    }
}

pub fn device_type_name(t: wgpu::DeviceType) -> &'static str {
    match t {
        wgpu::DeviceType::DiscreteGpu => "discrete-gpu",
        wgpu::DeviceType::IntegratedGpu => "integrated-gpu",
        wgpu::DeviceType::VirtualGpu => "virtual-gpu",
        wgpu::DeviceType::Cpu => "cpu",
        wgpu::DeviceType::Other => "other",
    }
}
