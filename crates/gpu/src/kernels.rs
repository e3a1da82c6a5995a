//! The kernel registry: WGSL sources from `shaders/` compiled into the binary, and the caches that
//! make a repeated step allocation-free: pipelines per (shader, entry point, override constants),
//! immutable parameter buffers per content, and bind groups per (pipeline, buffers).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::context::Gpu;
use crate::error::{GpuError, Result};
use crate::tensor::{GpuBuffer, Tensor};

/// Every shader file of `shaders/`, by name. A test checks this list against the directory.
pub const SHADERS: &[(&str, &str)] = &[
    ("attention", include_str!("../../../shaders/attention.wgsl")),
    (
        "attention_vjp",
        include_str!("../../../shaders/attention_vjp.wgsl"),
    ),
    (
        "axis_matmul",
        include_str!("../../../shaders/axis_matmul.wgsl"),
    ),
    ("concat", include_str!("../../../shaders/concat.wgsl")),
    ("conv2d", include_str!("../../../shaders/conv2d.wgsl")),
    (
        "conv2d_vjp",
        include_str!("../../../shaders/conv2d_vjp.wgsl"),
    ),
    (
        "conv2d_vjp_sg",
        include_str!("../../../shaders/conv2d_vjp_sg.wgsl"),
    ),
    (
        "depthwise_conv",
        include_str!("../../../shaders/depthwise_conv.wgsl"),
    ),
    ("diffusion", include_str!("../../../shaders/diffusion.wgsl")),
    (
        "elementwise",
        include_str!("../../../shaders/elementwise.wgsl"),
    ),
    (
        "equivariance",
        include_str!("../../../shaders/equivariance.wgsl"),
    ),
    ("fft", include_str!("../../../shaders/fft.wgsl")),
    (
        "group_norm",
        include_str!("../../../shaders/group_norm.wgsl"),
    ),
    ("matmul", include_str!("../../../shaders/matmul.wgsl")),
    (
        "measurement",
        include_str!("../../../shaders/measurement.wgsl"),
    ),
    ("pad", include_str!("../../../shaders/pad.wgsl")),
    (
        "pde_residual",
        include_str!("../../../shaders/pde_residual.wgsl"),
    ),
    ("reduce", include_str!("../../../shaders/reduce.wgsl")),
    ("relu", include_str!("../../../shaders/relu.wgsl")),
    ("resample", include_str!("../../../shaders/resample.wgsl")),
    ("rng", include_str!("../../../shaders/rng.wgsl")),
    ("softmax", include_str!("../../../shaders/softmax.wgsl")),
    (
        "solver_step",
        include_str!("../../../shaders/solver_step.wgsl"),
    ),
    (
        "timestep_embedding",
        include_str!("../../../shaders/timestep_embedding.wgsl"),
    ),
    (
        "transforms",
        include_str!("../../../shaders/transforms.wgsl"),
    ),
];

pub fn shader_source(name: &str) -> Option<&'static str> {
    SHADERS.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

/// One compute entry point with its override constants.
#[derive(Clone, Debug, PartialEq)]
pub struct Kernel<'a> {
    pub shader: &'static str,
    pub entry: &'static str,
    pub constants: &'a [(&'static str, f64)],
}

impl<'a> Kernel<'a> {
    pub const fn new(shader: &'static str, entry: &'static str) -> Kernel<'static> {
        Kernel {
            shader,
            entry,
            constants: &[],
        }
    }
    pub fn with(self, constants: &'a [(&'static str, f64)]) -> Kernel<'a> {
        Kernel { constants, ..self }
    }
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct PipelineKey {
    shader: &'static str,
    entry: &'static str,
    constants: Vec<(&'static str, u64)>,
}

pub(crate) struct Pipeline {
    pub(crate) id: u64,
    pub(crate) pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
    pub(crate) label: String,
}

/// What one binding slot of a dispatch receives, in binding-index order.
#[derive(Clone, Copy)]
pub enum Bind<'a> {
    /// A tensor as a storage buffer (read-only or read-write, as the shader declares it).
    Tensor(&'a Tensor),
    /// Small parameters as a uniform buffer. Buffers are cached by content and never rewritten,
    /// so repeating an op with the same parameters allocates nothing.
    Params(&'a [u8]),
}

/// A bind group's identity: the pipeline and every bound (buffer id, offset, size).
type BindGroupKey = (u64, Vec<(u64, u64, u64)>);

#[derive(Default)]
pub(crate) struct KernelCache {
    modules: Mutex<HashMap<&'static str, Arc<wgpu::ShaderModule>>>,
    pipelines: Mutex<HashMap<PipelineKey, Arc<Pipeline>>>,
    params: Mutex<HashMap<Vec<u8>, Arc<GpuBuffer>>>,
    bind_groups: Mutex<HashMap<BindGroupKey, Arc<wgpu::BindGroup>>>,
}

impl Gpu {
    fn module(&self, shader: &'static str) -> Result<Arc<wgpu::ShaderModule>> {
        let mut modules = self.kernels.modules.lock().unwrap();
        if let Some(m) = modules.get(shader) {
            return Ok(m.clone());
        }
        let src = shader_source(shader).ok_or_else(|| GpuError::UnknownShader(shader.into()))?;
        let m = self
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(shader),
                source: wgpu::ShaderSource::Wgsl(src.into()),
            });
        self.check_errors()?;
        let m = Arc::new(m);
        modules.insert(shader, m.clone());
        Ok(m)
    }

    /// The pipeline of a kernel, created on first use and cached.
    pub(crate) fn pipeline(&self, k: &Kernel) -> Result<Arc<Pipeline>> {
        let key = PipelineKey {
            shader: k.shader,
            entry: k.entry,
            constants: k.constants.iter().map(|(n, v)| (*n, v.to_bits())).collect(),
        };
        if let Some(p) = self.kernels.pipelines.lock().unwrap().get(&key) {
            return Ok(p.clone());
        }
        let module = self.module(k.shader)?;
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(&format!("{}::{}", k.shader, k.entry)),
                layout: None,
                module: &module,
                entry_point: Some(k.entry),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: k.constants,
                    zero_initialize_workgroup_memory: false,
                },
                cache: None,
            });
        self.check_errors()?;
        let layout = pipeline.get_bind_group_layout(0);
        self.check_errors()?;
        self.count().add_pipeline();
        let p = Arc::new(Pipeline {
            id: self.next_buffer_id(),
            pipeline,
            layout,
            label: format!("{}::{}", k.shader, k.entry),
        });
        self.kernels
            .pipelines
            .lock()
            .unwrap()
            .insert(key, p.clone());
        Ok(p)
    }

    fn params_buffer(&self, bytes: &[u8]) -> Result<Arc<GpuBuffer>> {
        let mut padded = bytes.to_vec();
        padded.resize(bytes.len().max(16).div_ceil(16) * 16, 0);
        let mut cache = self.kernels.params.lock().unwrap();
        if let Some(b) = cache.get(&padded) {
            return Ok(b.clone());
        }
        let buf = self.create_buffer(
            padded.len() as u64,
            wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            "params",
        )?;
        self.queue.write_buffer(&buf.buffer, 0, &padded);
        cache.insert(padded, buf.clone());
        Ok(buf)
    }

    /// The bind group of a dispatch, cached by (pipeline, buffer ranges).
    pub(crate) fn bind_group(&self, p: &Pipeline, binds: &[Bind]) -> Result<Arc<wgpu::BindGroup>> {
        let align = self.caps().limits.min_storage_buffer_offset_alignment as u64;
        let mut params = Vec::new();
        let mut key = Vec::with_capacity(binds.len());
        for b in binds {
            match b {
                Bind::Tensor(t) => {
                    if t.offset() % align != 0 {
                        return Err(GpuError::shape(
                            "bind",
                            format!(
                                "{}: tensor view at byte offset {} is not aligned to {align}",
                                p.label,
                                t.offset()
                            ),
                        ));
                    }
                    key.push((t.buffer().id, t.offset(), t.bytes()));
                }
                Bind::Params(bytes) => {
                    let buf = self.params_buffer(bytes)?;
                    key.push((buf.id, 0, buf.size));
                    params.push(buf);
                }
            }
        }
        let key = (p.id, key);
        if let Some(bg) = self.kernels.bind_groups.lock().unwrap().get(&key) {
            return Ok(bg.clone());
        }
        let mut params = params.iter();
        let entries: Vec<wgpu::BindGroupEntry> = binds
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: match b {
                    Bind::Tensor(t) => wgpu::BindingResource::Buffer(t.binding()),
                    Bind::Params(_) => params.next().unwrap().buffer.as_entire_binding(),
                },
            })
            .collect();
        let bg = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(&p.label),
            layout: &p.layout,
            entries: &entries,
        });
        self.check_errors()?;
        self.count().add_bind_group();
        let bg = Arc::new(bg);
        self.kernels
            .bind_groups
            .lock()
            .unwrap()
            .insert(key, bg.clone());
        Ok(bg)
    }

    /// Drops cached bind groups and parameter buffers (they keep their buffers alive). Call it
    /// after freeing a model whose tensors should be released.
    pub fn clear_binding_caches(&self) {
        self.kernels.bind_groups.lock().unwrap().clear();
        self.kernels.params.lock().unwrap().clear();
    }
}
