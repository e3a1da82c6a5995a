// Symmetry-group transforms of the last two axes of an [N, C, H, W] tensor (flips, rot90,
// transpose, cyclic translation), written as a gather: every output element reads exactly one
// input element, so the result is an exact permutation of the input and needs no atomics.
//
// Binding layout (group 0): 0 params, 1 x (read), 2 out (read_write)
//
// `Xform`, `xform_out_hw` and `xform_source` are self-contained so other kernels can copy them
// verbatim to fuse a transform into their own loads (shader files have no includes).

override WG: u32 = 256u;

// Transform codes, matching `Transform::code` in ops/transforms.rs.
const XF_IDENTITY: u32 = 0u;
const XF_FLIP_H: u32 = 1u;    // flip the W axis
const XF_FLIP_V: u32 = 2u;    // flip the H axis
const XF_ROT90: u32 = 3u;     // torch.rot90(x, k = a, dims=(-2, -1)), a in 1..4
const XF_TRANSPOSE: u32 = 4u; // swap H and W
const XF_TRANSLATE: u32 = 5u; // torch.roll(x, (dy, dx), dims=(-2, -1)), a = dy mod H, b = dx mod W

// A transform of an h x w input plane. Shifts arrive already reduced to [0, h) and [0, w) so the
// shader needs no signed modulo.
struct Xform {
    code: u32,
    h: u32,
    w: u32,
    a: u32,
    b: u32,
}

// (rows, cols) of the output plane: odd rotations and the transpose swap the axes.
fn xform_out_hw(t: Xform) -> vec2<u32> {
    if (t.code == XF_TRANSPOSE || (t.code == XF_ROT90 && (t.a & 1u) == 1u)) {
        return vec2<u32>(t.w, t.h);
    }
    return vec2<u32>(t.h, t.w);
}

// The input (row, col) that output (i, j) reads.
fn xform_source(t: Xform, i: u32, j: u32) -> vec2<u32> {
    switch t.code {
        case XF_FLIP_H: { return vec2<u32>(i, t.w - 1u - j); }
        case XF_FLIP_V: { return vec2<u32>(t.h - 1u - i, j); }
        case XF_ROT90: {
            // Counter-clockwise quarter turns, as torch.rot90 on dims (-2, -1).
            switch t.a & 3u {
                case 1u: { return vec2<u32>(j, t.w - 1u - i); }
                case 2u: { return vec2<u32>(t.h - 1u - i, t.w - 1u - j); }
                case 3u: { return vec2<u32>(t.h - 1u - j, i); }
                default: { return vec2<u32>(i, j); }
            }
        }
        case XF_TRANSPOSE: { return vec2<u32>(j, i); }
        case XF_TRANSLATE: {
            // roll moves element r to r + shift, so output r reads r - shift (mod size); adding
            // size - shift keeps the arithmetic unsigned.
            return vec2<u32>((i + t.h - t.a) % t.h, (j + t.w - t.b) % t.w);
        }
        default: { return vec2<u32>(i, j); }
    }
}

struct Params {
    n: u32,     // output element count
    code: u32,
    h: u32,     // input plane height
    w: u32,     // input plane width
    a: u32,
    b: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG)
fn apply_transform(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let o = (wid.x + wid.y * nwg.x) * WG + lid;
    if (o >= p.n) { return; }
    let t = Xform(p.code, p.h, p.w, p.a, p.b);
    let ohw = xform_out_hw(t);
    let plane = ohw.x * ohw.y;
    let nc = o / plane;
    let r = o % plane;
    let src = xform_source(t, r / ohw.y, r % ohw.y);
    out[o] = x[nc * p.h * p.w + src.x * p.w + src.y];
}
