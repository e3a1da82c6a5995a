// ReLU and its VJP, and the global average pool over the trailing axes of [N, C, S...] with
// its VJP: the non-linearity and head of the EquiReg SmallCNN.
//
// Binding layouts (group 0):
//   relu:              0 params, 1 x (read), 2 out (read_write)                one per element
//   relu_vjp:          0 params, 1 x (read, the forward input), 2 dy (read), 3 dx (read_write)
//   mean_pool:         0 params, 1 x [P, S] (read), 2 out [P] (read_write)     one workgroup per P
//   mean_pool_vjp:     0 params, 1 dy [P] (read), 2 dx [P, S] (read_write)     one per element

// Must be a power of two (mean_pool reduces with a tree).
override WG: u32 = 256u;

struct Params {
    n: u32,      // elements written (relu, relu_vjp, mean_pool_vjp) or planes (mean_pool)
    plane: u32,  // S: elements averaged per plane
    inv: f32,    // 1 / S
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@group(0) @binding(2) var<storage, read> gdy: array<f32>;
@group(0) @binding(3) var<storage, read_write> gdx: array<f32>;

var<workgroup> red: array<f32, WG>;

fn flat_index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.x + wid.y * nwg.x) * WG + lid;
}

@compute @workgroup_size(WG)
fn relu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid);
    if (i < p.n) { out[i] = max(x[i], 0.0); }
}

// PyTorch's convention: the gradient at exactly 0 is 0 (it passes only where x > 0).
@compute @workgroup_size(WG)
fn relu_vjp(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid);
    if (i < p.n) { gdx[i] = select(0.0, gdy[i], x[i] > 0.0); }
}

@compute @workgroup_size(WG)
fn mean_pool(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let plane = wid.x + wid.y * nwg.x;
    // The whole workgroup leaves together, so the barriers below stay in uniform control flow.
    if (plane >= p.n) { return; }
    let base = plane * p.plane;
    var acc = 0.0;
    for (var j = lid; j < p.plane; j += WG) {
        acc += x[base + j];
    }
    red[lid] = acc;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s >> 1u) {
        if (lid < s) {
            red[lid] = red[lid] + red[lid + s];
        }
        workgroupBarrier();
    }
    if (lid == 0u) { out[plane] = red[0] * p.inv; }
}

// The binding-1 input of this entry point is dy [P] (read through `x`), the output dx [P, S]
// (through `out`).
@compute @workgroup_size(WG)
fn mean_pool_vjp(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid);
    if (i < p.n) { out[i] = x[i / p.plane] * p.inv; }
}
