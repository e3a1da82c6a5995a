// A dense matrix applied along one axis of a tensor: x seen as [outer, red, inner], out as
// [outer, rows, inner], out[o, i, j] = sum_k M[i, k] x[o, k, j]. Axis H of [N, C, H, W] is
// (outer, inner) = (N*C, W), axis W is (N*C*H, 1). M is read through two strides so the same
// kernel applies a stored W [out_len, in_len] (si = in_len, sk = 1) or its transpose W^T
// (si = 1, sk = in_len) without a transposed copy. One invocation per output element: the
// contraction is an image side (at most a few thousand), well under lavapipe's loop limit.
//
// Bindings (group 0): 0 params, 1 x (read), 2 m (read), 3 out (read_write).

override WG: u32 = 256u;

struct Params {
    n: u32,      // output element count
    rows: u32,   // output length along the axis
    red: u32,    // input length along the axis (the contraction)
    inner: u32,  // elements after the axis (the stride of the axis)
    si: u32,     // stride of M along the output index
    sk: u32,     // stride of M along the contraction index
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> m: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG)
fn axis_matmul(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let idx = (wid.x + wid.y * nwg.x) * WG + lid;
    if (idx >= p.n) { return; }
    let j = idx % p.inner;
    let i = (idx / p.inner) % p.rows;
    let o = idx / (p.inner * p.rows);
    var xi = o * p.red * p.inner + j;
    var mi = i * p.si;
    var acc = 0.0;
    for (var k = 0u; k < p.red; k++) {
        acc += m[mi] * x[xi];
        xi += p.inner;
        mi += p.sk;
    }
    out[idx] = acc;
}
