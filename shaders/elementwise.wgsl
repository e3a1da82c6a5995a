// Elementwise ops on flat f32 arrays. One invocation per element; the grid is 2-D when the
// element count needs more than 65535 workgroups along x (see Gpu::grid), hence flat_index().
//
// Binding layouts (group 0):
//   unary  (copy, scale, silu, clamp):       0 params, 1 x (read), 2 out (read_write)
//   binary (add, mul, axpby):                 0 params, 1 a (read), 2 b (read), 3 out (read_write)
//   in place (axpby_inplace):                 0 params, 1 x (read), 2 y (read_write)
//   fill:                                     0 params, 1 out (read_write)
//   add_channel_bias:                         0 params, 1 x (read), 2 bias (read), 3 out (read_write)
//   add4: as add over vec4s (p.n counts vec4s), for element counts of a multiple of 4; one load
//   instruction per 4 floats (on lavapipe a load costs the same for a vec4 as for one float)

override WG: u32 = 256u;

struct Params {
    n: u32,        // element count
    inner: u32,    // add_channel_bias: elements per (sample, channel) plane
    alpha: f32,
    beta: f32,
}

@group(0) @binding(0) var<uniform> p: Params;

fn flat_index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.x + wid.y * nwg.x) * WG + lid;
}

// ---- unary -----------------------------------------------------------------------------------
@group(0) @binding(1) var<storage, read> ux: array<f32>;
@group(0) @binding(2) var<storage, read_write> uout: array<f32>;

@compute @workgroup_size(WG)
fn copy(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid);
    if (i < p.n) { uout[i] = ux[i]; }
}

// out = alpha * x + beta
@compute @workgroup_size(WG)
fn scale(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid);
    if (i < p.n) { uout[i] = p.alpha * ux[i] + p.beta; }
}

@compute @workgroup_size(WG)
fn silu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid);
    if (i < p.n) {
        let v = ux[i];
        uout[i] = v / (1.0 + exp(-v));
    }
}

// out = clamp(x, alpha, beta)
@compute @workgroup_size(WG)
fn clamp_range(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid);
    if (i < p.n) { uout[i] = min(max(ux[i], p.alpha), p.beta); }
}

// ---- binary ----------------------------------------------------------------------------------
@group(0) @binding(1) var<storage, read> ba: array<f32>;
@group(0) @binding(2) var<storage, read> bb: array<f32>;
@group(0) @binding(3) var<storage, read_write> bout: array<f32>;

@compute @workgroup_size(WG)
fn add(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
       @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid);
    if (i < p.n) { bout[i] = ba[i] + bb[i]; }
}

@group(0) @binding(1) var<storage, read> ba4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> bb4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> bout4: array<vec4<f32>>;

@compute @workgroup_size(WG)
fn add4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid);
    if (i < p.n) { bout4[i] = ba4[i] + bb4[i]; }
}

@compute @workgroup_size(WG)
fn mul(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
       @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid);
    if (i < p.n) { bout[i] = ba[i] * bb[i]; }
}

// out = alpha * a + beta * b
@compute @workgroup_size(WG)
fn axpby(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid);
    if (i < p.n) { bout[i] = p.alpha * ba[i] + p.beta * bb[i]; }
}

// out[n, c, :] = a[n, c, :] + b[n, c]  (b broadcast over each plane of `inner` elements)
@compute @workgroup_size(WG)
fn add_channel_bias(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid);
    if (i < p.n) { bout[i] = ba[i] + bb[i / p.inner]; }
}

// ---- in place --------------------------------------------------------------------------------
@group(0) @binding(1) var<storage, read> ix: array<f32>;
@group(0) @binding(2) var<storage, read_write> iy: array<f32>;

// y = alpha * x + beta * y
@compute @workgroup_size(WG)
fn axpby_inplace(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid);
    if (i < p.n) { iy[i] = p.alpha * ix[i] + p.beta * iy[i]; }
}

// ---- fill ------------------------------------------------------------------------------------
@group(0) @binding(1) var<storage, read_write> fout: array<f32>;

@compute @workgroup_size(WG)
fn fill(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid);
    if (i < p.n) { fout[i] = p.alpha; }
}
