// Pointwise pieces of measurement operators, one invocation per element.
//   clip_scale:     out = clamp(scale * x, -1, 1)                 (HDR: scale 2)
//   clip_scale_vjp: dx = scale * dy where -1 <= scale * x <= 1, else 0. The bounds are inclusive,
//                   as torch.clamp's gradient: a value exactly at a bound still passes.
//   mul_mask:       out[n, c, h, w] = x[n, c, h, w] * mask[n?, c?, h, w]: the mask shared by
//                   the channels when mask_period is H * W, one per channel when it is C * H * W,
//                   and shared by the batch when mask_stride is 0.
//
// Bindings (group 0):
//   clip_scale:     0 params, 1 x (read), 2 out (read_write)
//   clip_scale_vjp: 0 params, 1 x (read), 2 dy (read), 3 dx (read_write)
//   mul_mask:       0 params, 1 x (read), 2 mask (read), 3 out (read_write)

override WG: u32 = 256u;

struct Params {
    n: u32,            // element count
    plane: u32,        // H * W
    sample: u32,       // C * H * W
    mask_stride: u32,  // mask elements per sample: H * W or C * H * W, or 0 for one mask for the batch
    scale: f32,
    mask_period: u32,  // H * W (shared by the channels) or C * H * W (one per channel)
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;

fn flat_index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.x + wid.y * nwg.x) * WG + lid;
}

@group(0) @binding(2) var<storage, read_write> cs_out: array<f32>;

@compute @workgroup_size(WG)
fn clip_scale(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid);
    if (i < p.n) { cs_out[i] = clamp(p.scale * x[i], -1.0, 1.0); }
}

@group(0) @binding(2) var<storage, read> vjp_dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> vjp_dx: array<f32>;

@compute @workgroup_size(WG)
fn clip_scale_vjp(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid);
    if (i < p.n) {
        let v = p.scale * x[i];
        vjp_dx[i] = select(0.0, p.scale * vjp_dy[i], v >= -1.0 && v <= 1.0);
    }
}

@group(0) @binding(2) var<storage, read> mask: array<f32>;
@group(0) @binding(3) var<storage, read_write> mm_out: array<f32>;

@compute @workgroup_size(WG)
fn mul_mask(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid);
    if (i < p.n) {
        let m = mask[(i / p.sample) * p.mask_stride + i % p.mask_period];
        mm_out[i] = x[i] * m;
    }
}

