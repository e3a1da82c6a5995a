// Softmax over the last axis of x viewed as [rows, cols], with the logits scaled first
// (out[r, :] = softmax(scale * x[r, :])), and its VJP. Attention with one head over hundreds of
// channels (CompVis' AttnBlock) runs as matmul -> softmax -> matmul; this is the middle step.
//
// One workgroup per row: strided per-invocation partials, then a fixed-shape tree in workgroup
// memory, so the result depends only on the shape and the width WG, and is bitwise repeatable.
// The host picks WG per adapter (256 on GPUs, 16 on CPU adapters: ops::reduction_width). The max is
// subtracted before exp so large logits cannot overflow.
//
// Binding layouts (group 0):
//   softmax_rows:     0 params, 1 x (read), 2 out (read_write)
//   softmax_rows_vjp: 0 params, 1 y (read, the forward output), 2 dy (read), 3 dx (read_write)

// Must be a power of two (tree reduction).
override WG: u32 = 256u;

struct Params {
    rows: u32,
    cols: u32,
    scale: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@group(0) @binding(1) var<storage, read> vy: array<f32>;
@group(0) @binding(2) var<storage, read> vdy: array<f32>;
@group(0) @binding(3) var<storage, read_write> vdx: array<f32>;

var<workgroup> red: array<f32, WG>;

fn row_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}

fn workgroup_sum(lid: u32, v: f32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s >> 1u) {
        if (lid < s) {
            red[lid] = red[lid] + red[lid + s];
        }
        workgroupBarrier();
    }
    let total = red[0];
    // Nobody may overwrite red[0] for the next reduction before everyone has read it.
    workgroupBarrier();
    return total;
}

fn workgroup_max(lid: u32, v: f32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s >> 1u) {
        if (lid < s) {
            red[lid] = max(red[lid], red[lid + s]);
        }
        workgroupBarrier();
    }
    let total = red[0];
    workgroupBarrier();
    return total;
}

@compute @workgroup_size(WG)
fn softmax_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let row = row_index(wid, nwg);
    // The whole workgroup leaves together, so the barriers below stay in uniform control flow.
    if (row >= p.rows) { return; }
    let base = row * p.cols;
    // -inf is not a WGSL literal; the most negative finite f32 works as the start of a max.
    var m = -3.4028235e38;
    for (var j = lid; j < p.cols; j += WG) {
        m = max(m, p.scale * x[base + j]);
    }
    m = workgroup_max(lid, m);
    var s = 0.0;
    for (var j = lid; j < p.cols; j += WG) {
        s += exp(p.scale * x[base + j] - m);
    }
    let inv = 1.0 / workgroup_sum(lid, s);
    for (var j = lid; j < p.cols; j += WG) {
        out[base + j] = exp(p.scale * x[base + j] - m) * inv;
    }
}

// dx = scale * y * (dy - sum_j dy_j y_j)
@compute @workgroup_size(WG)
fn softmax_rows_vjp(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let row = row_index(wid, nwg);
    if (row >= p.rows) { return; }
    let base = row * p.cols;
    var d = 0.0;
    for (var j = lid; j < p.cols; j += WG) {
        d += vdy[base + j] * vy[base + j];
    }
    let yd = workgroup_sum(lid, d);
    for (var j = lid; j < p.cols; j += WG) {
        vdx[base + j] = p.scale * vy[base + j] * (vdy[base + j] - yd);
    }
}
