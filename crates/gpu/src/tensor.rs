//! Tensors: a GPU buffer (or a range of one) plus a shape and a dtype. Host copies happen only on
//! explicit upload and download; downloads are counted as readbacks.

use std::sync::Arc;

use crate::context::Gpu;
use crate::error::{GpuError, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    U32,
    I32,
}

impl DType {
    pub fn size(self) -> u64 {
        4
    }
}

/// One wgpu buffer with an id of ours (wgpu buffers have no stable id to key caches on).
#[derive(Debug)]
pub struct GpuBuffer {
    pub(crate) id: u64,
    pub(crate) buffer: wgpu::Buffer,
    pub(crate) size: u64,
}

impl GpuBuffer {
    pub fn raw(&self) -> &wgpu::Buffer {
        &self.buffer
    }
    pub fn size(&self) -> u64 {
        self.size
    }
}

#[derive(Clone, Debug)]
pub struct Tensor {
    buf: Arc<GpuBuffer>,
    offset: u64,
    shape: Vec<usize>,
    dtype: DType,
}

impl Tensor {
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    pub fn dtype(&self) -> DType {
        self.dtype
    }
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn bytes(&self) -> u64 {
        self.numel() as u64 * self.dtype.size()
    }
    /// Byte offset of the first element inside the buffer.
    pub fn offset(&self) -> u64 {
        self.offset
    }
    pub fn buffer(&self) -> &Arc<GpuBuffer> {
        &self.buf
    }
    /// Dimension `i` counted from the end (`dim_from_end(0)` is the last one).
    pub fn dim_from_end(&self, i: usize) -> usize {
        self.shape[self.shape.len() - 1 - i]
    }

    /// The same memory under another shape with the same number of elements.
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        if n != self.numel() {
            return Err(GpuError::shape(
                "reshape",
                format!("cannot view {:?} as {:?}", self.shape, shape),
            ));
        }
        Ok(Tensor {
            shape: shape.to_vec(),
            ..self.clone()
        })
    }

    /// The same memory seen as another 4-byte dtype (for kernels that write raw bits).
    pub fn bitcast(&self, dtype: DType) -> Tensor {
        Tensor {
            dtype,
            ..self.clone()
        }
    }

    /// Whether two tensors share any bytes.
    pub fn overlaps(&self, other: &Tensor) -> bool {
        self.buf.id == other.buf.id
            && self.offset < other.offset + other.bytes()
            && other.offset < self.offset + self.bytes()
    }

    pub(crate) fn binding(&self) -> wgpu::BufferBinding<'_> {
        wgpu::BufferBinding {
            buffer: &self.buf.buffer,
            offset: self.offset,
            size: wgpu::BufferSize::new(self.bytes().max(4)),
        }
    }

    pub(crate) fn from_buffer(
        buf: Arc<GpuBuffer>,
        offset: u64,
        shape: &[usize],
        dtype: DType,
    ) -> Tensor {
        Tensor {
            buf,
            offset,
            shape: shape.to_vec(),
            dtype,
        }
    }
}

pub(crate) const STORAGE_USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

impl Gpu {
    /// Creates one buffer, checked against the adapter's limits first so an oversized request is a
    /// clear error instead of a validation panic.
    pub fn create_buffer(
        &self,
        bytes: u64,
        usage: wgpu::BufferUsages,
        what: &str,
    ) -> Result<Arc<GpuBuffer>> {
        let limits = &self.caps().limits;
        if bytes > limits.max_buffer_size {
            return Err(GpuError::OverLimit {
                what: what.to_string(),
                needed: bytes,
                limit_name: "max_buffer_size",
                limit: limits.max_buffer_size,
            });
        }
        if usage.contains(wgpu::BufferUsages::STORAGE)
            && bytes > limits.max_storage_buffer_binding_size
        {
            return Err(GpuError::OverLimit {
                what: what.to_string(),
                needed: bytes,
                limit_name: "max_storage_buffer_binding_size",
                limit: limits.max_storage_buffer_binding_size,
            });
        }
        // Sizes are rounded up to 16 bytes: copies need multiples of 4, uniforms of 16.
        let size = bytes.max(16).div_ceil(16) * 16;
        let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(what),
            size,
            usage,
            mapped_at_creation: false,
        });
        self.count().add_buffer(size);
        Ok(Arc::new(GpuBuffer {
            id: self.next_buffer_id(),
            buffer,
            size,
        }))
    }

    /// A new zero-filled tensor.
    pub fn alloc(&self, shape: &[usize], dtype: DType) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        let bytes = n as u64 * dtype.size();
        let buf = self.create_buffer(bytes, STORAGE_USAGE, &format!("tensor {shape:?}"))?;
        Ok(Tensor::from_buffer(buf, 0, shape, dtype))
    }

    /// A new f32 tensor holding `data`.
    pub fn upload(&self, shape: &[usize], data: &[f32]) -> Result<Tensor> {
        let t = self.alloc(shape, DType::F32)?;
        self.write(&t, data)?;
        Ok(t)
    }

    /// A new u32 tensor holding `data`.
    pub fn upload_u32(&self, shape: &[usize], data: &[u32]) -> Result<Tensor> {
        let t = self.alloc(shape, DType::U32)?;
        self.write(&t, data)?;
        Ok(t)
    }

    /// Overwrites a tensor's contents from the host (4-byte element types only).
    pub fn write<T: bytemuck::Pod>(&self, t: &Tensor, data: &[T]) -> Result<()> {
        if std::mem::size_of::<T>() != 4 || data.len() != t.numel() {
            return Err(GpuError::shape(
                "write",
                format!(
                    "{} host elements of {} bytes for a tensor of shape {:?}",
                    data.len(),
                    std::mem::size_of::<T>(),
                    t.shape()
                ),
            ));
        }
        if !data.is_empty() {
            self.queue
                .write_buffer(&t.buffer().buffer, t.offset(), bytemuck::cast_slice(data));
        }
        self.count().add_upload();
        Ok(())
    }

    /// Copies a tensor back to the host as f32 (waits for all submitted work).
    pub fn download(&self, t: &Tensor) -> Result<Vec<f32>> {
        self.download_raw(t)
    }

    /// Copies a tensor back to the host as u32 (waits for all submitted work).
    pub fn download_u32(&self, t: &Tensor) -> Result<Vec<u32>> {
        self.download_raw(t)
    }

    fn download_raw<T: bytemuck::Pod>(&self, t: &Tensor) -> Result<Vec<T>> {
        let bytes = t.bytes();
        if bytes == 0 {
            return Ok(Vec::new());
        }
        let size = bytes.div_ceil(4) * 4;
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("readback"),
            });
        enc.copy_buffer_to_buffer(&t.buffer().buffer, t.offset(), &staging, 0, size);
        self.queue.submit([enc.finish()]);
        self.count().add_submit();
        self.count().add_readback();
        let out = read_mapped(self, &staging, size)?;
        Ok(bytemuck::cast_slice(&out).to_vec())
    }
}

/// Maps a MAP_READ buffer and copies its first `size` bytes out.
pub(crate) fn read_mapped(gpu: &Gpu, staging: &wgpu::Buffer, size: u64) -> Result<Vec<u8>> {
    let (tx, rx) = std::sync::mpsc::channel();
    staging.map_async(wgpu::MapMode::Read, 0..size, move |r| {
        let _ = tx.send(r);
    });
    gpu.sync()?;
    rx.recv()
        .map_err(|e| GpuError::Readback(e.to_string()))?
        .map_err(|e| GpuError::Readback(e.to_string()))?;
    let data = staging
        .get_mapped_range(0..size)
        .map_err(|e| GpuError::Readback(e.to_string()))?
        .to_vec();
    staging.unmap();
    Ok(data)
}
