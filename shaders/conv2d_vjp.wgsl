// Input gradient of conv2d (weights frozen).
//
// Stride 1 (every conv of the UNets): dx = conv2d(dy, w~) with w~[ci, co, ky, kx] =
// w[co, ci, Kh-1-ky, Kw-1-kx] and padding K-1-p, so the tuned forward conv kernels do the work;
// `transpose_flip` builds w~ into a scratch tensor (weights are small next to activations).
// Other strides: `input_grad_direct`, one dx element per invocation (correct, not fast; no preset
// uses a strided conv on the gradient path).
//
// Binding layouts (group 0):
//   transpose_flip:     0 params, 1 w (read), 2 w~ (read_write)
//   input_grad_direct:  0 params, 1 dy (read), 2 w (read), 3 dx (read_write)

override WG: u32 = 256u;

struct Params {
    n: u32, ci: u32, h: u32, w: u32,
    co: u32, ho: u32, wo: u32, kh: u32,
    kw: u32, stride: u32, pad: u32, total: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

fn flat_index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.x + wid.y * nwg.x) * WG + lid;
}

@group(0) @binding(1) var<storage, read> tw_in: array<f32>;
@group(0) @binding(2) var<storage, read_write> tw_out: array<f32>;

@compute @workgroup_size(WG)
fn transpose_flip(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.total) { return; }
    // i indexes w~ [ci, co, kh, kw].
    let kx = i % p.kw;
    let ky = (i / p.kw) % p.kh;
    let co = (i / (p.kw * p.kh)) % p.co;
    let ci = i / (p.kw * p.kh * p.co);
    let src = ((co * p.ci + ci) * p.kh + (p.kh - 1u - ky)) * p.kw + (p.kw - 1u - kx);
    tw_out[i] = tw_in[src];
}

@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read> wt: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;

@compute @workgroup_size(WG)
fn input_grad_direct(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.total) { return; }
    let ix = i % p.w;
    let iy = (i / p.w) % p.h;
    let ci = (i / (p.w * p.h)) % p.ci;
    let n = i / (p.w * p.h * p.ci);
    var acc = 0.0;
    for (var ky = 0u; ky < p.kh; ky++) {
        // oy * stride = iy + pad - ky must be a non-negative multiple of the stride.
        let ny = i32(iy + p.pad) - i32(ky);
        if (ny < 0 || u32(ny) % p.stride != 0u) { continue; }
        let oy = u32(ny) / p.stride;
        if (oy >= p.ho) { continue; }
        for (var kx = 0u; kx < p.kw; kx++) {
            let nx = i32(ix + p.pad) - i32(kx);
            if (nx < 0 || u32(nx) % p.stride != 0u) { continue; }
            let ox = u32(nx) / p.stride;
            if (ox >= p.wo) { continue; }
            for (var co = 0u; co < p.co; co++) {
                acc += dy[((n * p.co + co) * p.ho + oy) * p.wo + ox] * wt[((co * p.ci + ci) * p.kh + ky) * p.kw + kx];
            }
        }
    }
    dx[i] = acc;
}
