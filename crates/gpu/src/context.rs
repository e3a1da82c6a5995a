//! Opening a device: adapter selection (by option or the `WGPU_BACKEND` / `WGPU_ADAPTER_NAME`
//! environment variables), the adapter's own limits and optional features, and the shared state
//! every op needs (kernel cache, counters, captured validation errors).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::caps::{Capabilities, wanted_features};
use crate::counters::{CounterSnapshot, Counters};
use crate::error::{GpuError, Result};
use crate::kernels::KernelCache;

/// How to pick an adapter. `Default` means: every native backend, the most capable adapter.
#[derive(Clone, Debug, Default)]
pub struct GpuOptions {
    /// Backends to consider; `None` reads `WGPU_BACKEND` (e.g. "vulkan", "metal,dx12").
    pub backends: Option<wgpu::Backends>,
    /// Case-insensitive substring of the adapter name; `None` reads `WGPU_ADAPTER_NAME`.
    pub adapter_name: Option<String>,
}

impl GpuOptions {
    fn resolved(&self) -> (wgpu::Backends, Option<String>) {
        let backends = self
            .backends
            .or_else(wgpu::Backends::from_env)
            .unwrap_or(wgpu::Backends::PRIMARY);
        let name = self
            .adapter_name
            .clone()
            .or_else(|| std::env::var("WGPU_ADAPTER_NAME").ok())
            .filter(|s| !s.is_empty());
        (backends, name)
    }
}

/// The device every tensor and op lives on.
pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    caps: Capabilities,
    pub(crate) kernels: KernelCache,
    counters: Counters,
    errors: Arc<Mutex<Vec<String>>>,
    next_buffer_id: AtomicU64,
    profiling: AtomicBool,
}

/// Lists every adapter the given options can see, for `equireg devices`.
pub fn list_adapters(options: &GpuOptions) -> Vec<wgpu::Adapter> {
    let (backends, _) = options.resolved();
    let instance = make_instance(backends);
    pollster::block_on(instance.enumerate_adapters(backends))
}

fn make_instance(backends: wgpu::Backends) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = backends;
    wgpu::Instance::new(desc)
}

/// Higher is preferred when no adapter name is given.
fn rank(t: wgpu::DeviceType) -> u32 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 4,
        wgpu::DeviceType::IntegratedGpu => 3,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 1,
        wgpu::DeviceType::Other => 0,
    }
}

impl Gpu {
    /// Opens the adapter the options (or environment) select.
    pub fn new(options: &GpuOptions) -> Result<Gpu> {
        let (backends, name) = options.resolved();
        let instance = make_instance(backends);
        let adapters = pollster::block_on(instance.enumerate_adapters(backends));
        let seen: Vec<String> = adapters.iter().map(|a| a.get_info().name).collect();
        let adapter = match &name {
            Some(want) => {
                let want_l = want.to_lowercase();
                adapters
                    .into_iter()
                    .find(|a| a.get_info().name.to_lowercase().contains(&want_l))
                    .ok_or_else(|| GpuError::NoAdapter {
                        detail: format!(
                            " whose name contains '{want}' (adapters seen: {})",
                            if seen.is_empty() {
                                "none".to_string()
                            } else {
                                seen.join(", ")
                            }
                        ),
                    })?
            }
            None => adapters
                .into_iter()
                .max_by_key(|a| rank(a.get_info().device_type))
                .ok_or_else(|| GpuError::NoAdapter {
                    detail: format!(" for backends {backends:?}"),
                })?,
        };
        Self::from_adapter(&adapter)
    }

    /// Opens a device on a given adapter with its own limits and the optional features it has.
    pub fn from_adapter(adapter: &wgpu::Adapter) -> Result<Gpu> {
        let info = adapter.get_info();
        let features = adapter.features() & wanted_features();
        let limits = adapter.limits();
        let desc = wgpu::DeviceDescriptor {
            label: Some("equireg"),
            required_features: features,
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        };
        let (device, queue) =
            pollster::block_on(adapter.request_device(&desc)).map_err(|e| GpuError::Device {
                adapter: info.name.clone(),
                reason: e.to_string(),
            })?;
        Ok(Self::from_device(device, queue, &info))
    }

    /// Wraps a device the caller already has (an application embedding the engine hands in its
    /// own). Limits and features are read back from the device.
    pub fn from_device(device: wgpu::Device, queue: wgpu::Queue, info: &wgpu::AdapterInfo) -> Gpu {
        let errors = Arc::new(Mutex::new(Vec::new()));
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            sink.lock().unwrap().push(e.to_string());
        }));
        let caps = Capabilities::new(
            info,
            device.limits(),
            device.features(),
            queue.get_timestamp_period(),
        );
        log::info!("opened {}", caps.describe());
        Gpu {
            device,
            queue,
            caps,
            kernels: KernelCache::default(),
            counters: Counters::default(),
            errors,
            next_buffer_id: AtomicU64::new(1),
            profiling: AtomicBool::new(false),
        }
    }

    pub fn caps(&self) -> &Capabilities {
        &self.caps
    }

    pub fn counters(&self) -> CounterSnapshot {
        self.counters.snapshot()
    }

    pub(crate) fn count(&self) -> &Counters {
        &self.counters
    }

    pub(crate) fn next_buffer_id(&self) -> u64 {
        self.next_buffer_id.fetch_add(1, Ordering::Relaxed)
    }

    /// With profiling on (and TIMESTAMP_QUERY_INSIDE_PASSES granted), every submit measures each
    /// dispatch with GPU timestamps. It costs one readback per submit, so it is off by default.
    pub fn set_profiling(&self, on: bool) {
        self.profiling.store(on, Ordering::Relaxed);
    }

    pub fn profiling(&self) -> bool {
        self.profiling.load(Ordering::Relaxed) && self.caps.timestamp_inside_passes
    }

    /// Returns the validation errors wgpu reported since the last call, as one error.
    pub fn check_errors(&self) -> Result<()> {
        let mut errs = self.errors.lock().unwrap();
        if errs.is_empty() {
            Ok(())
        } else {
            let msg = errs.join("; ");
            errs.clear();
            Err(GpuError::Validation(msg))
        }
    }

    /// Blocks until the queue is idle.
    pub fn sync(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| GpuError::Validation(format!("device poll failed: {e}")))?;
        self.check_errors()
    }
}
