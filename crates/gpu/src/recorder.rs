//! The Recorder: ops append dispatches to it, and `submit` encodes all of them into one compute
//! pass and one queue submit. Nothing is read back unless asked for (profiling timestamps are
//! the only implicit readback, and only when profiling is on).

use std::sync::Arc;

use crate::context::Gpu;
use crate::error::{GpuError, Result};
use crate::kernels::{Bind, Kernel, Pipeline};
use crate::tensor::read_mapped;

struct Dispatch {
    pipeline: Arc<Pipeline>,
    bind_group: Arc<wgpu::BindGroup>,
    groups: [u32; 3],
    section: &'static str,
}

/// Time of one dispatch measured with GPU timestamps.
#[derive(Clone, Debug)]
pub struct DispatchTiming {
    pub kernel: String,
    /// The section the dispatch was recorded in (see [`Recorder::section`]).
    pub section: &'static str,
    pub ms: f64,
}

pub struct Recorder<'g> {
    gpu: &'g Gpu,
    dispatches: Vec<Dispatch>,
    section: &'static str,
}

/// wgpu caps a query set at 4096 queries.
const QUERIES_PER_SET: u32 = 4096;

impl<'g> Recorder<'g> {
    pub fn new(gpu: &'g Gpu) -> Self {
        Recorder {
            gpu,
            dispatches: Vec::new(),
            section: "",
        }
    }

    /// Labels the dispatches recorded from now on (e.g. "forward", "vjp", "operator"), so that
    /// profiles can be split by what a step was doing rather than by kernel name alone.
    pub fn section(&mut self, name: &'static str) {
        self.section = name;
    }

    pub fn gpu(&self) -> &'g Gpu {
        self.gpu
    }

    pub fn len(&self) -> usize {
        self.dispatches.len()
    }

    pub fn is_empty(&self) -> bool {
        self.dispatches.is_empty()
    }

    /// Appends one dispatch. Bindings are given in binding-index order (group 0).
    pub fn dispatch(&mut self, kernel: &Kernel, binds: &[Bind], groups: [u32; 3]) -> Result<()> {
        let max = self.gpu.caps().limits.max_compute_workgroups_per_dimension;
        if groups.iter().any(|&g| g > max) {
            return Err(GpuError::OverLimit {
                what: format!(
                    "dispatch of {}::{} with {groups:?} workgroups",
                    kernel.shader, kernel.entry
                ),
                needed: *groups.iter().max().unwrap() as u64,
                limit_name: "max_compute_workgroups_per_dimension",
                limit: max as u64,
            });
        }
        if groups.contains(&0) {
            return Ok(());
        }
        let pipeline = self.gpu.pipeline(kernel)?;
        let bind_group = self.gpu.bind_group(&pipeline, binds)?;
        self.dispatches.push(Dispatch {
            pipeline,
            bind_group,
            groups,
            section: self.section,
        });
        Ok(())
    }

    /// Encodes everything recorded into one compute pass, submits once, and returns per-dispatch
    /// GPU times when profiling is on.
    pub fn submit(self) -> Result<Option<Vec<DispatchTiming>>> {
        let gpu = self.gpu;
        let n = self.dispatches.len() as u32;
        if n == 0 {
            return Ok(None);
        }
        let profile = gpu.profiling();
        let n_stamps = n + 1;
        let sets: Vec<wgpu::QuerySet> = if profile {
            (0..n_stamps.div_ceil(QUERIES_PER_SET))
                .map(|s| {
                    gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
                        label: Some("dispatch timestamps"),
                        ty: wgpu::QueryType::Timestamp,
                        count: (n_stamps - s * QUERIES_PER_SET).min(QUERIES_PER_SET),
                    })
                })
                .collect()
        } else {
            Vec::new()
        };
        let stamp = |pass: &mut wgpu::ComputePass, j: u32| {
            pass.write_timestamp(&sets[(j / QUERIES_PER_SET) as usize], j % QUERIES_PER_SET);
        };

        let mut enc = gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("recorder"),
            });
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("recorder"),
                timestamp_writes: None,
            });
            if profile {
                stamp(&mut pass, 0);
            }
            for (i, d) in self.dispatches.iter().enumerate() {
                pass.set_pipeline(&d.pipeline.pipeline);
                pass.set_bind_group(0, d.bind_group.as_ref(), &[]);
                pass.dispatch_workgroups(d.groups[0], d.groups[1], d.groups[2]);
                if profile {
                    stamp(&mut pass, i as u32 + 1);
                }
            }
        }
        let staging = if profile {
            let bytes = n_stamps as u64 * 8;
            let resolve = gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("timestamps"),
                size: bytes,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            let staging = gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("timestamps readback"),
                size: bytes,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            for (s, set) in sets.iter().enumerate() {
                let first = s as u32 * QUERIES_PER_SET;
                let count = (n_stamps - first).min(QUERIES_PER_SET);
                enc.resolve_query_set(set, 0..count, &resolve, first as u64 * 8);
            }
            enc.copy_buffer_to_buffer(&resolve, 0, &staging, 0, bytes);
            Some(staging)
        } else {
            None
        };
        gpu.queue.submit([enc.finish()]);
        gpu.count().add_submit();
        gpu.count().add_dispatches(n as u64);
        gpu.check_errors()?;

        let Some(staging) = staging else {
            return Ok(None);
        };
        gpu.count().add_readback();
        let raw = read_mapped(gpu, &staging, n_stamps as u64 * 8)?;
        let ticks: &[u64] = bytemuck::cast_slice(&raw);
        let period = gpu.caps().timestamp_period_ns as f64;
        Ok(Some(
            self.dispatches
                .iter()
                .enumerate()
                .map(|(i, d)| DispatchTiming {
                    kernel: d.pipeline.label.clone(),
                    section: d.section,
                    ms: ticks[i + 1].saturating_sub(ticks[i]) as f64 * period * 1e-6,
                })
                .collect(),
        ))
    }
}

impl Gpu {
    pub fn recorder(&self) -> Recorder<'_> {
        Recorder::new(self)
    }

    /// Splits `n` workgroups over x and y so no dimension exceeds the adapter's limit. Shaders
    /// recover the flat index as `wid.x + wid.y * nwg.x` and drop indices past the end.
    pub fn grid(&self, n: u32) -> [u32; 3] {
        let max = self
            .caps()
            .limits
            .max_compute_workgroups_per_dimension
            .max(1);
        if n <= max {
            [n, 1, 1]
        } else {
            let y = n.div_ceil(max);
            [n.div_ceil(y), y, 1]
        }
    }
}
