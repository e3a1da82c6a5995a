//! equireg-gpu: the GPU runtime (device, tensors, planned memory, kernel registry, Recorder,
//! timestamps, counters) and the verified WGSL kernel library, each op with a plain-Rust CPU
//! reference in [`mod@reference`].

pub mod caps;
pub mod context;
pub mod counters;
pub mod error;
pub mod kernels;
pub mod ops;
pub mod plan;
pub mod recorder;
pub mod reference;
pub mod tensor;

pub use caps::Capabilities;
pub use context::{Gpu, GpuOptions, list_adapters};
pub use counters::CounterSnapshot;
pub use error::{GpuError, INSTALL_HINT, Result};
pub use kernels::{Bind, Kernel, SHADERS};
pub use plan::{MemoryPlan, PlannedMemory, TensorId};
pub use recorder::{DispatchTiming, Recorder};
pub use tensor::{DType, Tensor};
