// Row reductions (sum, sum of squares, L2 norm, max |x|) of x viewed as [rows, cols], in a fixed
// order: every element goes to the same thread, and every thread to the same tree slot, whatever
// the timing, so one input always gives the same bits.
//
// Stage 1 (`reduce_chunks`): one workgroup per (row, chunk of CHUNK = WG * ITEMS elements). Thread
// t sums chunk elements t, t + WG, ... (coalesced loads), then a tree in workgroup memory folds the
// WG thread sums. With one chunk per row it finalises and writes the row result directly.
// Stage 2 (`reduce_partials`): one workgroup per row folds that row's chunk partials the same way
// and finalises.
//
// Binding layouts (group 0):
//   reduce_chunks:   0 params, 1 x (read),        2 dst (read_write: partials, or out if one pass)
//   reduce_partials: 0 params, 1 partials (read), 2 out (read_write)

override WG: u32 = 256u;    // threads per workgroup; a power of two (the tree halves it)
override ITEMS: u32 = 16u;  // elements per thread per chunk

const OP_SUM: u32 = 0u;
const OP_SUMSQ: u32 = 1u;
const OP_L2: u32 = 2u;
const OP_MAXABS: u32 = 3u;

struct Params {
    rows: u32,
    cols: u32,
    chunks: u32,    // chunks per row
    op: u32,
    finalize: u32,  // stage 1 only: 1 when it is the only stage
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

var<workgroup> tree: array<f32, WG>;

// The value an element contributes before combining.
fn lift(v: f32) -> f32 {
    switch p.op {
        case OP_SUM: { return v; }
        case OP_MAXABS: { return abs(v); }
        default: { return v * v; }
    }
}

fn combine(a: f32, b: f32) -> f32 {
    if (p.op == OP_MAXABS) { return max(a, b); }
    return a + b;
}

fn finish(v: f32) -> f32 {
    if (p.op == OP_L2) { return sqrt(v); }
    return v;
}

// Folds tree[0..WG] into tree[0]; every thread of the workgroup must call it.
fn fold_tree(lid: u32) {
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        workgroupBarrier();
        if (lid < s) { tree[lid] = combine(tree[lid], tree[lid + s]); }
    }
    workgroupBarrier();
}

// ---- stage 1 ---------------------------------------------------------------------------------
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(WG)
fn reduce_chunks(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    // Uniform across the workgroup, so the early return keeps barriers in uniform control flow.
    let g = wid.x + wid.y * nwg.x;
    if (g >= p.rows * p.chunks) { return; }
    let row = g / p.chunks;
    let chunk = g % p.chunks;
    let start = chunk * WG * ITEMS;
    let end = min(start + WG * ITEMS, p.cols);
    let base = row * p.cols;
    // 0 is the identity of both + and max(|.|).
    var acc = 0.0;
    for (var i = start + lid; i < end; i = i + WG) {
        acc = combine(acc, lift(x[base + i]));
    }
    tree[lid] = acc;
    fold_tree(lid);
    if (lid == 0u) {
        if (p.finalize == 1u) { dst[row] = finish(tree[0]); } else { dst[g] = tree[0]; }
    }
}

// ---- stage 2 ---------------------------------------------------------------------------------
@group(0) @binding(1) var<storage, read> partials: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG)
fn reduce_partials(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let row = wid.x + wid.y * nwg.x;
    if (row >= p.rows) { return; }
    let base = row * p.chunks;
    var acc = 0.0;
    for (var i = lid; i < p.chunks; i = i + WG) {
        acc = combine(acc, partials[base + i]);
    }
    tree[lid] = acc;
    fold_tree(lid);
    if (lid == 0u) { out[row] = finish(tree[0]); }
}
