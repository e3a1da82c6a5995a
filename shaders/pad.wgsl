// Zero padding of the last two axes of x [P, H, W] (P = N * C planes) by separate amounts on
// each side (PyTorch F.pad(x, (left, right, top, bottom)) with value 0), and its VJP, the crop
// that keeps the interior. One invocation per element of the destination, so every destination
// element is written exactly once and nothing needs clearing first.
//
// Binding layout (group 0, both entry points): 0 params, 1 src (read), 2 dst (read_write).
//   pad2d:  src = x  [P, H, W],  dst = out [P, OH, OW]
//   crop2d: src = dy [P, OH, OW], dst = dx [P, H, W]
// with OH = H + top + bottom, OW = W + left + right.

override WG: u32 = 256u;

struct Params {
    total: u32,  // destination element count
    h: u32,
    w: u32,
    oh: u32,
    ow: u32,
    top: u32,
    left: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

fn flat_index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.x + wid.y * nwg.x) * WG + lid;
}

@compute @workgroup_size(WG)
fn pad2d(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.total) { return; }
    let ox = i % p.ow;
    let r = i / p.ow;
    let oy = r % p.oh;
    let plane = r / p.oh;
    // Unsigned: a position left of or above the interior wraps to a huge value and fails the
    // `< w` / `< h` test like one past the far edge.
    let x = ox - p.left;
    let y = oy - p.top;
    var v = 0.0;
    if (ox >= p.left && oy >= p.top && x < p.w && y < p.h) {
        v = src[(plane * p.h + y) * p.w + x];
    }
    dst[i] = v;
}

@compute @workgroup_size(WG)
fn crop2d(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.total) { return; }
    let x = i % p.w;
    let r = i / p.w;
    let y = r % p.h;
    let plane = r / p.h;
    dst[i] = src[(plane * p.oh + y + p.top) * p.ow + x + p.left];
}
