// 2x resampling of NCHW planes, one invocation per output element: nearest-neighbour upsampling
// (guided-diffusion's Upsample without conv) and 2x2 average pooling (Downsample without conv).
// Both results are multiplied by `scale`, which makes the same two kernels each other's
// transposes: the VJP of upsampling is a 2x2 block sum (pooling with scale 1), the VJP of
// average pooling spreads dy / 4 over each block (upsampling with scale 1/4). Scales of 1 and
// 1/4 are exact in f32.
//
// Bindings (group 0), every entry point: 0 params, 1 x (read), 2 out (read_write).
//
// upsample_nearest2x4 and avg_pool2x4 write 4 adjacent outputs per invocation (output widths of
// a multiple of 4; p.total then counts vec4s), loading the inputs as vec2s and vec4s: the same
// sums in the same order as the scalar kernels, so the same bits, with a quarter of the loads.

override WG: u32 = 256u;

struct Params {
    total: u32,  // output element count
    out_w: u32,
    out_h: u32,
    scale: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

fn flat_index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.x + wid.y * nwg.x) * WG + lid;
}

// out [.., 2H, 2W] from x [.., H, W]
@compute @workgroup_size(WG)
fn upsample_nearest2x(@builtin(workgroup_id) wid: vec3<u32>,
                      @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.total) { return; }
    let ox = i % p.out_w;
    let oy = (i / p.out_w) % p.out_h;
    let plane = i / (p.out_w * p.out_h);
    let in_w = p.out_w / 2u;
    let in_h = p.out_h / 2u;
    out[i] = x[(plane * in_h + oy / 2u) * in_w + ox / 2u] * p.scale;
}

// out [.., H/2, W/2] from x [.., H, W]
@compute @workgroup_size(WG)
fn avg_pool2x(@builtin(workgroup_id) wid: vec3<u32>,
              @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.total) { return; }
    let ox = i % p.out_w;
    let oy = (i / p.out_w) % p.out_h;
    let plane = i / (p.out_w * p.out_h);
    let in_w = p.out_w * 2u;
    let top = (plane * p.out_h * 2u + oy * 2u) * in_w + ox * 2u;
    let bottom = top + in_w;
    out[i] = ((x[top] + x[top + 1u]) + (x[bottom] + x[bottom + 1u])) * p.scale;
}

@group(0) @binding(1) var<storage, read> x2: array<vec2<f32>>;
@group(0) @binding(1) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> out4: array<vec4<f32>>;

// out [.., 2H, 2W] from x [.., H, W]; outputs 4i..4i+3 of a row repeat inputs 2i' and 2i'+1.
@compute @workgroup_size(WG)
fn upsample_nearest2x4(@builtin(workgroup_id) wid: vec3<u32>,
                       @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.total) { return; }
    let row4 = p.out_w / 4u;
    let ox4 = i % row4;
    let oy = (i / row4) % p.out_h;
    let plane = i / (row4 * p.out_h);
    let in_h = p.out_h / 2u;
    // Input row (plane, oy / 2) holds in_w = 2 * row4 floats, row4 vec2s.
    let v = x2[(plane * in_h + oy / 2u) * row4 + ox4] * p.scale;
    out4[i] = vec4<f32>(v.x, v.x, v.y, v.y);
}

// out [.., H/2, W/2] from x [.., H, W]; 4 outputs read 8 inputs of each of two rows.
@compute @workgroup_size(WG)
fn avg_pool2x4(@builtin(workgroup_id) wid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.total) { return; }
    let row4 = p.out_w / 4u;
    let ox4 = i % row4;
    let oy = (i / row4) % p.out_h;
    let plane = i / (row4 * p.out_h);
    // An input row is 2 * out_w floats, 2 * row4 vec4s.
    let top = (plane * p.out_h * 2u + oy * 2u) * (2u * row4) + 2u * ox4;
    let bottom = top + 2u * row4;
    let t0 = x4[top];
    let t1 = x4[top + 1u];
    let b0 = x4[bottom];
    let b1 = x4[bottom + 1u];
    let s = vec4<f32>((t0.x + t0.y) + (b0.x + b0.y), (t0.z + t0.w) + (b0.z + b0.w),
                      (t1.x + t1.y) + (b1.x + b1.y), (t1.z + t1.w) + (b1.z + b1.w));
    out4[i] = s * p.scale;
}
