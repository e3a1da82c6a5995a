//! Planned allocation: a model declares every tensor it will need for one (batch, height, width)
//! with the interval of op steps during which it is live; the plan packs tensors whose intervals
//! do not overlap into the same buffer ("slot") and allocates each slot once. Each tensor owns a
//! whole buffer while it is live, so no dispatch ever binds two ranges of one buffer (which wgpu
//! would reject when one of them is writable).

use crate::context::Gpu;
use crate::error::{GpuError, Result};
use crate::tensor::{DType, STORAGE_USAGE, Tensor};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TensorId(usize);

#[derive(Clone, Debug)]
struct Request {
    shape: Vec<usize>,
    dtype: DType,
    first: usize,
    last: usize,
}

impl Request {
    fn bytes(&self) -> u64 {
        self.shape.iter().product::<usize>() as u64 * self.dtype.size()
    }
}

#[derive(Default, Debug)]
pub struct MemoryPlan {
    requests: Vec<Request>,
}

pub struct PlannedMemory {
    tensors: Vec<Tensor>,
    slot_bytes: Vec<u64>,
}

impl MemoryPlan {
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares a tensor live from op step `first` to op step `last`, both included.
    pub fn request(
        &mut self,
        shape: &[usize],
        dtype: DType,
        first: usize,
        last: usize,
    ) -> TensorId {
        self.requests.push(Request {
            shape: shape.to_vec(),
            dtype,
            first: first.min(last),
            last: first.max(last),
        });
        TensorId(self.requests.len() - 1)
    }

    /// A tensor live for the whole plan (weights of a step, outputs read after it).
    pub fn request_persistent(&mut self, shape: &[usize], dtype: DType) -> TensorId {
        self.request(shape, dtype, 0, usize::MAX)
    }

    /// Assigns tensors to slots (largest first, first slot whose live intervals do not overlap)
    /// and returns (slot of each request, bytes of each slot). Pure: no GPU needed.
    fn assign(&self) -> (Vec<usize>, Vec<u64>) {
        let mut order: Vec<usize> = (0..self.requests.len()).collect();
        order.sort_by_key(|&i| (std::cmp::Reverse(self.requests[i].bytes()), i));
        let mut slots: Vec<(u64, Vec<(usize, usize)>)> = Vec::new();
        let mut slot_of = vec![0; self.requests.len()];
        for i in order {
            let r = &self.requests[i];
            let free = slots
                .iter()
                .position(|(_, live)| live.iter().all(|&(f, l)| r.last < f || l < r.first));
            let s = match free {
                Some(s) => s,
                None => {
                    slots.push((0, Vec::new()));
                    slots.len() - 1
                }
            };
            slots[s].0 = slots[s].0.max(r.bytes());
            slots[s].1.push((r.first, r.last));
            slot_of[i] = s;
        }
        (slot_of, slots.into_iter().map(|(b, _)| b).collect())
    }

    /// Total bytes the plan will allocate.
    pub fn planned_bytes(&self) -> u64 {
        self.assign().1.iter().sum()
    }

    pub fn allocate(&self, gpu: &Gpu) -> Result<PlannedMemory> {
        let (slot_of, slot_bytes) = self.assign();
        let buffers = slot_bytes
            .iter()
            .enumerate()
            .map(|(s, &b)| gpu.create_buffer(b, STORAGE_USAGE, &format!("planned slot {s}")))
            .collect::<Result<Vec<_>>>()?;
        let tensors = self
            .requests
            .iter()
            .zip(&slot_of)
            .map(|(r, &s)| Tensor::from_buffer(buffers[s].clone(), 0, &r.shape, r.dtype))
            .collect();
        Ok(PlannedMemory {
            tensors,
            slot_bytes,
        })
    }
}

impl PlannedMemory {
    pub fn get(&self, id: TensorId) -> &Tensor {
        &self.tensors[id.0]
    }

    pub fn try_get(&self, id: TensorId) -> Result<&Tensor> {
        self.tensors
            .get(id.0)
            .ok_or_else(|| GpuError::shape("plan", format!("no tensor {id:?} in this plan")))
    }

    pub fn total_bytes(&self) -> u64 {
        self.slot_bytes.iter().sum()
    }

    pub fn slots(&self) -> usize {
        self.slot_bytes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disjoint_lifetimes_share_a_slot_and_overlapping_ones_do_not() {
        let mut p = MemoryPlan::new();
        p.request(&[4, 4], DType::F32, 0, 1); // 64 B
        p.request(&[2, 4], DType::F32, 2, 3); // 32 B, after the first: shares its slot
        p.request(&[8], DType::F32, 1, 2); // 32 B, overlaps both: own slot
        let (slot_of, bytes) = p.assign();
        assert_eq!(slot_of[0], slot_of[1]);
        assert_ne!(slot_of[0], slot_of[2]);
        assert_eq!(bytes.iter().sum::<u64>(), 64 + 32);
    }

    #[test]
    fn persistent_tensors_never_share() {
        let mut p = MemoryPlan::new();
        p.request_persistent(&[4], DType::F32);
        p.request(&[4], DType::F32, 3, 5);
        let (slot_of, _) = p.assign();
        assert_ne!(slot_of[0], slot_of[1]);
    }
}
