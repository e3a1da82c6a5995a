//! Counters of GPU work. Tests assert on them ("a second forward allocates nothing and reads
//! nothing back"); benchmarks report them.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default, Debug)]
pub struct Counters {
    dispatches: AtomicU64,
    submits: AtomicU64,
    readbacks: AtomicU64,
    uploads: AtomicU64,
    buffers_allocated: AtomicU64,
    bytes_allocated: AtomicU64,
    pipelines_created: AtomicU64,
    bind_groups_created: AtomicU64,
}

/// A copy of the counters at one moment; subtract two to get the work in between.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct CounterSnapshot {
    pub dispatches: u64,
    pub submits: u64,
    pub readbacks: u64,
    pub uploads: u64,
    pub buffers_allocated: u64,
    pub bytes_allocated: u64,
    pub pipelines_created: u64,
    pub bind_groups_created: u64,
}

impl Counters {
    pub(crate) fn add_dispatches(&self, n: u64) {
        self.dispatches.fetch_add(n, Ordering::Relaxed);
    }
    pub(crate) fn add_submit(&self) {
        self.submits.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn add_readback(&self) {
        self.readbacks.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn add_upload(&self) {
        self.uploads.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn add_buffer(&self, bytes: u64) {
        self.buffers_allocated.fetch_add(1, Ordering::Relaxed);
        self.bytes_allocated.fetch_add(bytes, Ordering::Relaxed);
    }
    pub(crate) fn add_pipeline(&self) {
        self.pipelines_created.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn add_bind_group(&self) {
        self.bind_groups_created.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> CounterSnapshot {
        CounterSnapshot {
            dispatches: self.dispatches.load(Ordering::Relaxed),
            submits: self.submits.load(Ordering::Relaxed),
            readbacks: self.readbacks.load(Ordering::Relaxed),
            uploads: self.uploads.load(Ordering::Relaxed),
            buffers_allocated: self.buffers_allocated.load(Ordering::Relaxed),
            bytes_allocated: self.bytes_allocated.load(Ordering::Relaxed),
            pipelines_created: self.pipelines_created.load(Ordering::Relaxed),
            bind_groups_created: self.bind_groups_created.load(Ordering::Relaxed),
        }
    }
}

impl std::ops::Sub for CounterSnapshot {
    type Output = CounterSnapshot;
    fn sub(self, o: CounterSnapshot) -> CounterSnapshot {
        CounterSnapshot {
            dispatches: self.dispatches - o.dispatches,
            submits: self.submits - o.submits,
            readbacks: self.readbacks - o.readbacks,
            uploads: self.uploads - o.uploads,
            buffers_allocated: self.buffers_allocated - o.buffers_allocated,
            bytes_allocated: self.bytes_allocated - o.bytes_allocated,
            pipelines_created: self.pipelines_created - o.pipelines_created,
            bind_groups_created: self.bind_groups_created - o.bind_groups_created,
        }
    }
}
