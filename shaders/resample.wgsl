// 2x resampling of NCHW planes, one invocation per output element: nearest-neighbour upsampling
// (guided-diffusion's Upsample without conv) and 2x2 average pooling (Downsample without conv).
// Both results are multiplied by `scale`, which makes the same two kernels each other's
// transposes: the VJP of upsampling is a 2x2 block sum (pooling with scale 1), the VJP of
// average pooling spreads dy / 4 over each block (upsampling with scale 1/4). Scales of 1 and
// 1/4 are exact in f32.
//
// Bindings (group 0), both entry points: 0 params, 1 x (read), 2 out (read_write).

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
