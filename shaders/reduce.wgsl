// Per-row reductions (sum, sum of squares, L2 norm, max |x|) of x viewed as [rows, cols], in
// two passes with an order that depends only on (cols, WG, CHUNK), never on timing, so the same
// input gives the same bits on every run:
//   partials: one workgroup per (row, chunk of CHUNK columns); thread t folds columns
//             t, t + WG, t + 2 WG, ... of its chunk, then a fixed binary tree over the threads.
//   finish:   one workgroup per row folds that row's partials the same way and finalises
//             (sqrt for L2).
//
// Binding layouts (group 0):
//   partials: 0 params, 1 x (read),        2 scratch (read_write)  -- rows * chunks values
//   finish:   0 params, 1 scratch (read),  2 out (read_write)      -- rows values

override WG: u32 = 256u;     // a power of two: the tree halves it
override CHUNK: u32 = 4096u; // columns per stage-1 workgroup

const OP_SUM: u32 = 0u;
const OP_SUM_SQ: u32 = 1u;
const OP_L2: u32 = 2u;
const OP_MAX_ABS: u32 = 3u;

struct Params {
    rows: u32,
    cols: u32,
    chunks: u32, // ceil(cols / CHUNK), at least 1
    op: u32,
    groups: u32, // rows * chunks
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

var<workgroup> tree: array<f32, WG>;

// What one element contributes.
fn term(v: f32) -> f32 {
    switch p.op {
        case OP_SUM: { return v; }
        case OP_MAX_ABS: { return abs(v); }
        case OP_SUM_SQ, OP_L2, default: { return v * v; }
    }
}

// Zero is the identity for both folds: max |x| is never below it.
fn combine(a: f32, b: f32) -> f32 {
    if (p.op == OP_MAX_ABS) { return max(a, b); }
    return a + b;
}

// Folds one value per thread over the workgroup in a fixed binary-tree order.
fn tree_reduce(lid: u32, v: f32) -> f32 {
    tree[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (lid < s) { tree[lid] = combine(tree[lid], tree[lid + s]); }
        workgroupBarrier();
    }
    return tree[0];
}

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> scratch: array<f32>;

@compute @workgroup_size(WG)
fn reduce_partials(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let g = wid.x + wid.y * nwg.x;
    // Workgroup-uniform, so the barriers below stay in uniform control flow.
    if (g >= p.groups) { return; }
    let row = g / p.chunks;
    let start = (g % p.chunks) * CHUNK;
    let len = min(CHUNK, p.cols - start);
    let base = row * p.cols + start;
    var acc = 0.0;
    for (var k = lid; k < len; k += WG) {
        acc = combine(acc, term(x[base + k]));
    }
    let r = tree_reduce(lid, acc);
    if (lid == 0u) { scratch[g] = r; }
}

@group(0) @binding(1) var<storage, read> parts: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG)
fn reduce_finish(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let row = wid.x + wid.y * nwg.x;
    if (row >= p.rows) { return; }
    var acc = 0.0;
    for (var k = lid; k < p.chunks; k += WG) {
        acc = combine(acc, parts[row * p.chunks + k]);
    }
    let r = tree_reduce(lid, acc);
    if (lid == 0u) {
        if (p.op == OP_L2) { out[row] = sqrt(r); } else { out[row] = r; }
    }
}
