use equireg_gpu::ops::elementwise as ew;
use equireg_gpu::{DType, MemoryPlan};

use crate::common::{gpu, own_gpu, random};

/// A repeated step over planned memory allocates nothing and reads nothing back.
#[test]
fn repeated_steps_over_planned_memory_allocate_nothing() {
    let g = &own_gpu();
    let mut plan = MemoryPlan::new();
    let x = plan.request_persistent(&[3, 1000], DType::F32);
    let t1 = plan.request(&[3, 1000], DType::F32, 0, 1);
    let t2 = plan.request(&[3, 1000], DType::F32, 1, 2);
    let t3 = plan.request(&[3, 1000], DType::F32, 2, 3); // may reuse t1's slot
    let mem = plan.allocate(g).unwrap();
    assert!(mem.slots() < 4, "t1 and t3 should share a slot");
    let data = random(3000, 9);
    g.write(mem.get(x), &data).unwrap();
    let step = || {
        let mut r = g.recorder();
        ew::silu(&mut r, mem.get(x), mem.get(t1)).unwrap();
        ew::scale(&mut r, mem.get(t1), mem.get(t2), 2.0, 0.0).unwrap();
        ew::add(&mut r, mem.get(t2), mem.get(x), mem.get(t3)).unwrap();
        r.submit().unwrap();
    };
    step();
    let before = g.counters();
    step();
    step();
    let d = g.counters() - before;
    assert_eq!(d.buffers_allocated, 0);
    assert_eq!(d.bytes_allocated, 0);
    assert_eq!(d.pipelines_created, 0);
    assert_eq!(d.bind_groups_created, 0);
    assert_eq!(d.readbacks, 0);
    assert_eq!(d.submits, 2);
    assert_eq!(d.dispatches, 6);
    let out = g.download(mem.get(t3)).unwrap();
    let want: Vec<f32> = equireg_gpu::reference::elementwise::silu(&data)
        .iter()
        .zip(&data)
        .map(|(s, x)| 2.0 * s + x)
        .collect();
    crate::common::assert_close(&out, &want, 1e-6, 1e-5, "planned chain");
    assert_eq!(g.counters().readbacks - before.readbacks, 1);
}

#[test]
fn buffer_over_the_binding_limit_is_a_clear_error() {
    let g = gpu();
    let limit = g.caps().limits.max_storage_buffer_binding_size;
    let n = (limit / 4 + 1) as usize;
    let e = g.alloc(&[n], DType::F32).unwrap_err().to_string();
    assert!(
        e.contains("max_storage_buffer_binding_size") || e.contains("max_buffer_size"),
        "{e}"
    );
}
