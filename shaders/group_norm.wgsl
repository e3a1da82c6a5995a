// GroupNorm over x [N, C, S...] (S = product of the trailing dims), optionally followed by a
// per-(sample, channel) scale-shift and SiLU, in that order (guided-diffusion's ResBlock
// out_layers: GroupNorm32 -> y * (1 + scale) + shift -> SiLU).
//
// One workgroup per (sample, group). The group's channels are adjacent in NCHW, so a group is one
// contiguous range of cpg * S elements. Statistics are two-pass (mean first, then the sum of
// squared deviations from it), each pass a strided per-invocation sum followed by a fixed-shape
// tree in workgroup memory: no catastrophic cancellation on large groups, and the reduction
// order depends only on the shape and the workgroup width WG, so results are bitwise repeatable.
//
// The host picks WG per adapter: 256 on GPUs, 16 on CPU adapters (lavapipe), where every
// barrier of the tree is a switch through all of the workgroup's subgroups and a wide workgroup
// hides no latency (16 halves the kernels' time there against 256).
//
// The entry points ending in 4 are the same computations reading and writing vec4s, for planes
// whose size S is a multiple of 4 (every UNet feature map): one load instruction per 4 floats,
// which on lavapipe costs what one scalar load does. Their per-invocation partial sums
// run over vec4s, so they round differently from the scalar ones, still deterministically.
//
// Binding layouts (group 0):
//   normalize:        0 params, 1 x (read), 2 gamma (read), 3 beta (read), 4 out (read_write)
//   normalize_ss:     as normalize, plus 5 scale_shift [N, 2C] (read)
//   normalize_vjp:    as normalize with out = dx, plus 5 dy (read)
//   normalize_ss_vjp: as normalize_vjp, plus 6 scale_shift (read)
//   and the same for normalize4, normalize_ss4, normalize_vjp4, normalize_ss_vjp4.

// Must be a power of two (tree reduction).
override WG: u32 = 256u;

struct Params {
    group_len: u32,  // cpg * S
    plane: u32,      // S
    cpg: u32,        // channels per group
    groups: u32,
    eps: f32,
    silu: u32,       // 1: apply y * sigmoid(y) last
    total: u32,      // N * groups: workgroups that have work
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> gamma: array<f32>;
@group(0) @binding(3) var<storage, read> beta: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read> ss: array<f32>;

// Only the VJP entry points use these (dy takes scale_shift's binding number there).
@group(0) @binding(5) var<storage, read> dy: array<f32>;
@group(0) @binding(6) var<storage, read> ss_vjp: array<f32>;

// The vec4 views of the same bindings, for the entry points ending in 4.
@group(0) @binding(1) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> out4: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> dy4: array<vec4<f32>>;

var<workgroup> red: array<f32, WG>;
var<workgroup> red2: array<vec2<f32>, WG>;

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

// (mean, 1 / sqrt(var + eps)) of the group starting at `base`.
fn group_stats(base: u32, lid: u32) -> vec2<f32> {
    let len = p.group_len;
    var acc = 0.0;
    for (var j = lid; j < len; j += WG) {
        acc += x[base + j];
    }
    let mean = workgroup_sum(lid, acc) / f32(len);
    var dev = 0.0;
    for (var j = lid; j < len; j += WG) {
        let d = x[base + j] - mean;
        dev += d * d;
    }
    let variance = workgroup_sum(lid, dev) / f32(len);
    // 1/sqrt rather than inverseSqrt: the latter may be a coarse approximation on some GPUs.
    return vec2<f32>(mean, 1.0 / sqrt(variance + p.eps));
}

fn finish(y: f32) -> f32 {
    if (p.silu != 0u) {
        return y / (1.0 + exp(-y));
    }
    return y;
}

fn group_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}

@compute @workgroup_size(WG)
fn normalize(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let gi = group_index(wid, nwg);
    if (gi >= p.total) { return; }
    let base = gi * p.group_len;
    let st = group_stats(base, lid);
    let c0 = (gi % p.groups) * p.cpg;
    for (var k = 0u; k < p.cpg; k++) {
        let c = c0 + k;
        let g = gamma[c];
        let b = beta[c];
        let row = base + k * p.plane;
        for (var j = lid; j < p.plane; j += WG) {
            out[row + j] = finish((x[row + j] - st.x) * st.y * g + b);
        }
    }
}

@compute @workgroup_size(WG)
fn normalize_ss(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let gi = group_index(wid, nwg);
    if (gi >= p.total) { return; }
    let base = gi * p.group_len;
    let st = group_stats(base, lid);
    let channels = p.groups * p.cpg;
    let c0 = (gi % p.groups) * p.cpg;
    // Row of this sample in scale_shift [N, 2C].
    let row = (gi / p.groups) * 2u * channels;
    for (var k = 0u; k < p.cpg; k++) {
        let c = c0 + k;
        let g = gamma[c];
        let b = beta[c];
        let scale = 1.0 + ss[row + c];
        let shift = ss[row + channels + c];
        let at = base + k * p.plane;
        for (var j = lid; j < p.plane; j += WG) {
            let y = (x[at + j] - st.x) * st.y * g + b;
            out[at + j] = finish(y * scale + shift);
        }
    }
}

// ---- VJP with respect to x (gamma, beta and scale_shift held constant) ----
//
// With xhat = (x - mean) * rstd and gh = dL/dxhat = dy * silu'(z) * (1 + scale) * gamma (z the
// value SiLU sees), the standard GroupNorm backward is
//   dx = rstd * (gh - mean(gh) - xhat * mean(gh * xhat))
// with both means over the group. A workgroup owns a group, as in the forward: statistics as
// there, one pass for the two means (one tree over vec2), one pass writing dx; gh is recomputed
// in each pass rather than stored.

fn workgroup_sum2(lid: u32, v: vec2<f32>) -> vec2<f32> {
    red2[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s >> 1u) {
        if (lid < s) {
            red2[lid] = red2[lid] + red2[lid + s];
        }
        workgroupBarrier();
    }
    let total = red2[0];
    workgroupBarrier();
    return total;
}

// dL/dxhat for one element; a = 1 + scale.
fn grad_xhat(xh: f32, dyv: f32, g: f32, b: f32, a: f32, shift: f32) -> f32 {
    var gz = dyv;
    if (p.silu != 0u) {
        let z = (xh * g + b) * a + shift;
        let sg = 1.0 / (1.0 + exp(-z));
        // d/dz z * sigmoid(z)
        gz *= sg * (1.0 + z * (1.0 - sg));
    }
    return gz * a * g;
}

// This invocation's share of (sum gh, sum gh * xhat) over the channel plane at `row`.
fn channel_sums(row: u32, st: vec2<f32>, g: f32, b: f32, a: f32, shift: f32,
                lid: u32) -> vec2<f32> {
    var acc = vec2<f32>(0.0);
    for (var j = lid; j < p.plane; j += WG) {
        let xh = (x[row + j] - st.x) * st.y;
        let gh = grad_xhat(xh, dy[row + j], g, b, a, shift);
        acc += vec2<f32>(gh, gh * xh);
    }
    return acc;
}

// means = (mean gh, mean gh * xhat) over the group.
fn channel_dx(row: u32, st: vec2<f32>, g: f32, b: f32, a: f32, shift: f32, means: vec2<f32>,
              lid: u32) {
    for (var j = lid; j < p.plane; j += WG) {
        let xh = (x[row + j] - st.x) * st.y;
        let gh = grad_xhat(xh, dy[row + j], g, b, a, shift);
        out[row + j] = st.y * ((gh - means.x) - xh * means.y);
    }
}

@compute @workgroup_size(WG)
fn normalize_vjp(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let gi = group_index(wid, nwg);
    if (gi >= p.total) { return; }
    let base = gi * p.group_len;
    let st = group_stats(base, lid);
    let c0 = (gi % p.groups) * p.cpg;
    var acc = vec2<f32>(0.0);
    for (var k = 0u; k < p.cpg; k++) {
        let c = c0 + k;
        acc += channel_sums(base + k * p.plane, st, gamma[c], beta[c], 1.0, 0.0, lid);
    }
    let means = workgroup_sum2(lid, acc) / f32(p.group_len);
    for (var k = 0u; k < p.cpg; k++) {
        let c = c0 + k;
        channel_dx(base + k * p.plane, st, gamma[c], beta[c], 1.0, 0.0, means, lid);
    }
}

@compute @workgroup_size(WG)
fn normalize_ss_vjp(@builtin(workgroup_id) wid: vec3<u32>,
                    @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let gi = group_index(wid, nwg);
    if (gi >= p.total) { return; }
    let base = gi * p.group_len;
    let st = group_stats(base, lid);
    let channels = p.groups * p.cpg;
    let c0 = (gi % p.groups) * p.cpg;
    let row = (gi / p.groups) * 2u * channels;
    var acc = vec2<f32>(0.0);
    for (var k = 0u; k < p.cpg; k++) {
        let c = c0 + k;
        let a = 1.0 + ss_vjp[row + c];
        let shift = ss_vjp[row + channels + c];
        acc += channel_sums(base + k * p.plane, st, gamma[c], beta[c], a, shift, lid);
    }
    let means = workgroup_sum2(lid, acc) / f32(p.group_len);
    for (var k = 0u; k < p.cpg; k++) {
        let c = c0 + k;
        let a = 1.0 + ss_vjp[row + c];
        let shift = ss_vjp[row + channels + c];
        channel_dx(base + k * p.plane, st, gamma[c], beta[c], a, shift, means, lid);
    }
}

// ---- The vec4 entry points (S a multiple of 4; indices below count vec4s) ----

fn hsum(v: vec4<f32>) -> f32 {
    return (v.x + v.y) + (v.z + v.w);
}

// (mean, 1 / sqrt(var + eps)) of the group starting at vec4 `base`.
fn group_stats4(base: u32, lid: u32) -> vec2<f32> {
    let len = p.group_len / 4u;
    var acc = vec4<f32>(0.0);
    for (var j = lid; j < len; j += WG) {
        acc += x4[base + j];
    }
    let mean = workgroup_sum(lid, hsum(acc)) / f32(p.group_len);
    var dev = vec4<f32>(0.0);
    for (var j = lid; j < len; j += WG) {
        let d = x4[base + j] - mean;
        dev += d * d;
    }
    let variance = workgroup_sum(lid, hsum(dev)) / f32(p.group_len);
    return vec2<f32>(mean, 1.0 / sqrt(variance + p.eps));
}

fn finish4(y: vec4<f32>) -> vec4<f32> {
    if (p.silu != 0u) {
        return y / (1.0 + exp(-y));
    }
    return y;
}

// out = finish(((x - mean) * rstd * g + b) * a + shift) over one channel plane at vec4 `row`.
fn channel_out4(row: u32, st: vec2<f32>, g: f32, b: f32, a: f32, shift: f32, lid: u32) {
    for (var j = lid; j < p.plane / 4u; j += WG) {
        let y = (x4[row + j] - st.x) * st.y * g + b;
        out4[row + j] = finish4(y * a + shift);
    }
}

@compute @workgroup_size(WG)
fn normalize4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let gi = group_index(wid, nwg);
    if (gi >= p.total) { return; }
    let base = gi * (p.group_len / 4u);
    let st = group_stats4(base, lid);
    let c0 = (gi % p.groups) * p.cpg;
    for (var k = 0u; k < p.cpg; k++) {
        let c = c0 + k;
        channel_out4(base + k * (p.plane / 4u), st, gamma[c], beta[c], 1.0, 0.0, lid);
    }
}

@compute @workgroup_size(WG)
fn normalize_ss4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let gi = group_index(wid, nwg);
    if (gi >= p.total) { return; }
    let base = gi * (p.group_len / 4u);
    let st = group_stats4(base, lid);
    let channels = p.groups * p.cpg;
    let c0 = (gi % p.groups) * p.cpg;
    let row = (gi / p.groups) * 2u * channels;
    for (var k = 0u; k < p.cpg; k++) {
        let c = c0 + k;
        channel_out4(base + k * (p.plane / 4u), st, gamma[c], beta[c], 1.0 + ss[row + c],
                     ss[row + channels + c], lid);
    }
}

fn grad_xhat4(xh: vec4<f32>, dyv: vec4<f32>, g: f32, b: f32, a: f32, shift: f32) -> vec4<f32> {
    var gz = dyv;
    if (p.silu != 0u) {
        let z = (xh * g + b) * a + shift;
        let sg = 1.0 / (1.0 + exp(-z));
        gz *= sg * (1.0 + z * (1.0 - sg));
    }
    return gz * (a * g);
}

fn channel_sums4(row: u32, st: vec2<f32>, g: f32, b: f32, a: f32, shift: f32,
                 lid: u32) -> vec2<f32> {
    var s1 = vec4<f32>(0.0);
    var s2 = vec4<f32>(0.0);
    for (var j = lid; j < p.plane / 4u; j += WG) {
        let xh = (x4[row + j] - st.x) * st.y;
        let gh = grad_xhat4(xh, dy4[row + j], g, b, a, shift);
        s1 += gh;
        s2 += gh * xh;
    }
    return vec2<f32>(hsum(s1), hsum(s2));
}

fn channel_dx4(row: u32, st: vec2<f32>, g: f32, b: f32, a: f32, shift: f32, means: vec2<f32>,
               lid: u32) {
    for (var j = lid; j < p.plane / 4u; j += WG) {
        let xh = (x4[row + j] - st.x) * st.y;
        let gh = grad_xhat4(xh, dy4[row + j], g, b, a, shift);
        out4[row + j] = st.y * ((gh - means.x) - xh * means.y);
    }
}

@compute @workgroup_size(WG)
fn normalize_vjp4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let gi = group_index(wid, nwg);
    if (gi >= p.total) { return; }
    let base = gi * (p.group_len / 4u);
    let plane = p.plane / 4u;
    let st = group_stats4(base, lid);
    let c0 = (gi % p.groups) * p.cpg;
    var acc = vec2<f32>(0.0);
    for (var k = 0u; k < p.cpg; k++) {
        let c = c0 + k;
        acc += channel_sums4(base + k * plane, st, gamma[c], beta[c], 1.0, 0.0, lid);
    }
    let means = workgroup_sum2(lid, acc) / f32(p.group_len);
    for (var k = 0u; k < p.cpg; k++) {
        let c = c0 + k;
        channel_dx4(base + k * plane, st, gamma[c], beta[c], 1.0, 0.0, means, lid);
    }
}

@compute @workgroup_size(WG)
fn normalize_ss_vjp4(@builtin(workgroup_id) wid: vec3<u32>,
                     @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let gi = group_index(wid, nwg);
    if (gi >= p.total) { return; }
    let base = gi * (p.group_len / 4u);
    let plane = p.plane / 4u;
    let st = group_stats4(base, lid);
    let channels = p.groups * p.cpg;
    let c0 = (gi % p.groups) * p.cpg;
    let row = (gi / p.groups) * 2u * channels;
    var acc = vec2<f32>(0.0);
    for (var k = 0u; k < p.cpg; k++) {
        let c = c0 + k;
        let a = 1.0 + ss_vjp[row + c];
        let shift = ss_vjp[row + channels + c];
        acc += channel_sums4(base + k * plane, st, gamma[c], beta[c], a, shift, lid);
    }
    let means = workgroup_sum2(lid, acc) / f32(p.group_len);
    for (var k = 0u; k < p.cpg; k++) {
        let c = c0 + k;
        let a = 1.0 + ss_vjp[row + c];
        let shift = ss_vjp[row + channels + c];
        channel_dx4(base + k * plane, st, gamma[c], beta[c], a, shift, means, lid);
    }
}
