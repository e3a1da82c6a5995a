// EquiReg's group actions and its fused equivariance-error pass.
//
// A group element g = T_t . D is a dihedral element D of the square (8 codes below) followed by
// a cyclic translation t = (dy, dx), torch.roll's convention. `draw_element` picks one on the
// GPU from the sampler's step counter (Philox), so a run repeats with its seed and nothing is
// uploaded per step; the other kernels read it from a 4-word buffer [code, dy, dx, index].
//
// Every action is a permutation of pixels, so it is applied by indexing, never by a transformed
// copy inside the residual, and its adjoint is its inverse:
//   g(x)[q]      = x[src_g(q)],   src_g(q) = src_D((q - t) mod (H, W))
//   g^-1(y)[p]   = y[dst_g(p)],   dst_g(p) = src_{D^-1}(p) + t mod (H, W)
// On a grid `shift_div` times coarser (the output of an MPE function that downsamples), t is
// divided by shift_div (draws are multiples of it) and D is the same.
//
// Dihedral codes (torch.rot90 convention, counter-clockwise for k = 1):
//   0 identity (i, j)       1 rot90 (j, W-1-i)     2 rot180 (H-1-i, W-1-j)  3 rot270 (H-1-j, i)
//   4 hflip (i, W-1-j)      5 vflip (H-1-i, j)     6 transpose (j, i)       7 anti-transpose
//                                                                             (W-1-j, H-1-i)

override WG: u32 = 256u;

const PHILOX_M0: u32 = 0xD2511F53u;
const PHILOX_M1: u32 = 0xCD9E8D57u;
const PHILOX_W0: u32 = 0x9E3779B9u;
const PHILOX_W1: u32 = 0xBB67AE85u;

struct Params {
    n: u32,            // samples
    item: u32,         // elements per sample of the tensors this kernel walks
    h: u32,            // grid height
    w: u32,            // grid width
    mode: u32,         // transform: 0 identity, 1 g, 2 g^-1
    accumulate: u32,   // transform: 1 adds into out
    src_off: u32,      // transform: first input item
    dst_off: u32,      // transform: first output item
    form: u32,         // 0 equi, 1 equi_plus
    reduction: u32,    // 0 norm, 1 sqnorm, 2 mse
    alpha: f32,
    shift_div: u32,    // translation divisor on this grid (1 on the image grid)
    seed_lo: u32,
    seed_hi: u32,
    stream: u32,
    n_elements: u32,   // draw: entries of the element table
    max_shift: u32,    // draw: |dy|, |dx| <= max_shift (in steps of shift_multiple)
    shift_multiple: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

fn flat_index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.x + wid.y * nwg.x) * WG + lid;
}

fn mulhilo(a: u32, b: u32) -> vec2<u32> {
    let a0 = a & 0xFFFFu;
    let a1 = a >> 16u;
    let b0 = b & 0xFFFFu;
    let b1 = b >> 16u;
    let p00 = a0 * b0;
    let p01 = a0 * b1;
    let p10 = a1 * b0;
    let mid = (p00 >> 16u) + (p01 & 0xFFFFu) + (p10 & 0xFFFFu);
    let hi = a1 * b1 + (p01 >> 16u) + (p10 >> 16u) + (mid >> 16u);
    return vec2<u32>(hi, a * b);
}

fn philox4x32_10(counter: vec4<u32>, key: vec2<u32>) -> vec4<u32> {
    var c = counter;
    var k = key;
    for (var r = 0u; r < 10u; r++) {
        if (r > 0u) {
            k = k + vec2<u32>(PHILOX_W0, PHILOX_W1);
        }
        let p0 = mulhilo(PHILOX_M0, c.x);
        let p1 = mulhilo(PHILOX_M1, c.z);
        c = vec4<u32>(p1.x ^ c.y ^ k.x, p1.y, p0.x ^ c.w ^ k.y, p0.y);
    }
    return c;
}

fn inverse_code(code: u32) -> u32 {
    switch code {
        case 1u: { return 3u; }
        case 3u: { return 1u; }
        default: { return code; }
    }
}

// Source pixel of output pixel (i, j) under dihedral code `code` on an h x w grid (square for
// codes 1, 3, 6, 7; the ops refuse other grids for them).
fn src_dihedral(code: u32, i: u32, j: u32, h: u32, w: u32) -> vec2<u32> {
    switch code {
        case 1u: { return vec2<u32>(j, w - 1u - i); }
        case 2u: { return vec2<u32>(h - 1u - i, w - 1u - j); }
        case 3u: { return vec2<u32>(h - 1u - j, i); }
        case 4u: { return vec2<u32>(i, w - 1u - j); }
        case 5u: { return vec2<u32>(h - 1u - i, j); }
        case 6u: { return vec2<u32>(j, i); }
        case 7u: { return vec2<u32>(w - 1u - j, h - 1u - i); }
        default: { return vec2<u32>(i, j); }
    }
}

// (dy, dx) of the element on this grid, reduced into [0, h) x [0, w).
fn shift_on_grid(g: vec4<u32>) -> vec2<u32> {
    let dy = bitcast<i32>(g.y) / i32(p.shift_div);
    let dx = bitcast<i32>(g.z) / i32(p.shift_div);
    let hh = i32(p.h);
    let ww = i32(p.w);
    return vec2<u32>(u32(((dy % hh) + hh) % hh), u32(((dx % ww) + ww) % ww));
}

// Flat source offset within one channel plane for pixel `pix` under g (forward = true) or
// g^-1 (forward = false).
fn permute(g: vec4<u32>, forward: bool, pix: u32) -> u32 {
    let i = pix / p.w;
    let j = pix % p.w;
    let t = shift_on_grid(g);
    if (forward) {
        let si = (i + p.h - t.x) % p.h;
        let sj = (j + p.w - t.y) % p.w;
        let s = src_dihedral(g.x, si, sj, p.h, p.w);
        return s.x * p.w + s.y;
    }
    let s = src_dihedral(inverse_code(g.x), i, j, p.h, p.w);
    return ((s.x + t.x) % p.h) * p.w + (s.y + t.y) % p.w;
}

// Index, within a sample of `item` elements laid out [C, h, w], of element `e` under g or g^-1.
fn permute_in_item(g: vec4<u32>, forward: bool, e: u32) -> u32 {
    let plane = p.h * p.w;
    return (e / plane) * plane + permute(g, forward, e % plane);
}

// The residual kernels' rho(g): g on the grid, or the identity (mode 0) when f returns a vector
// without spatial axes, where the penalty measures invariance.
fn rho(g: vec4<u32>, forward: bool, e: u32) -> u32 {
    if (p.mode == 0u) { return e; }
    return permute_in_item(g, forward, e);
}

// ---- draw_element: g for the current step ----

@group(0) @binding(1) var<storage, read> de_elements: array<u32>;
@group(0) @binding(2) var<storage, read> de_step: array<u32>;
@group(0) @binding(3) var<storage, read_write> de_out: array<u32>;

@compute @workgroup_size(1)
fn draw_element() {
    let w = philox4x32_10(vec4<u32>(0u, p.stream, de_step[0], 0u), vec2<u32>(p.seed_lo, p.seed_hi));
    let index = w.x % p.n_elements;
    let span = 2u * p.max_shift + 1u;
    let dy = (i32(w.y % span) - i32(p.max_shift)) * i32(p.shift_multiple);
    let dx = (i32(w.z % span) - i32(p.max_shift)) * i32(p.shift_multiple);
    de_out[0] = de_elements[index];
    de_out[1] = bitcast<u32>(dy);
    de_out[2] = bitcast<u32>(dx);
    de_out[3] = index;
}

// ---- transform: out[dst_off + n] (+)= M(x[src_off + n]) with M = identity, g or g^-1 ----

@group(0) @binding(1) var<storage, read> tr_g: array<u32>;
@group(0) @binding(2) var<storage, read> tr_x: array<f32>;
@group(0) @binding(3) var<storage, read_write> tr_out: array<f32>;

@compute @workgroup_size(WG)
fn transform(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.n * p.item) { return; }
    let n = i / p.item;
    let e = i % p.item;
    var s = e;
    if (p.mode != 0u) {
        let g = vec4<u32>(tr_g[0], tr_g[1], tr_g[2], tr_g[3]);
        s = permute_in_item(g, p.mode == 1u, e);
    }
    let v = tr_x[(p.src_off + n) * p.item + s];
    let o = (p.dst_off + n) * p.item + e;
    if (p.accumulate == 1u) {
        tr_out[o] = tr_out[o] + v;
    } else {
        tr_out[o] = v;
    }
}

// ---- the residual, by indexing ----
// equi:      r[q] = F[n][src_g(q)] - F[N + n][q]         (F = f([x; g x]), rho(g) = g on F's grid)
// equi_plus: r[p] = X[n][p] - F[n][dst_g(p)]             (F = f(g x), X on the same grid)

fn residual(g: vec4<u32>, n: u32, e: u32) -> f32 {
    if (p.form == 0u) {
        return rs_f[n * p.item + rho(g, true, e)] - rs_f[(p.n + n) * p.item + e];
    }
    return rs_x[n * p.item + e] - rs_f[n * p.item + rho(g, false, e)];
}

@group(0) @binding(1) var<storage, read> rs_g: array<u32>;
@group(0) @binding(2) var<storage, read> rs_f: array<f32>;
@group(0) @binding(3) var<storage, read> rs_x: array<f32>;
@group(0) @binding(4) var<storage, read_write> rs_sq: array<f32>;

var<workgroup> partial: array<f32, WG>;

// ---- equi_norms: sq[n] = sum of r^2 over sample n; one workgroup per sample, fixed order ----

@compute @workgroup_size(WG)
fn equi_norms(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let n = wid.x;
    let g = vec4<u32>(rs_g[0], rs_g[1], rs_g[2], rs_g[3]);
    var acc = 0.0;
    for (var e = lid; e < p.item; e += WG) {
        let r = residual(g, n, e);
        acc += r * r;
    }
    partial[lid] = acc;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (lid < s) { partial[lid] += partial[lid + s]; }
        workgroupBarrier();
    }
    if (lid == 0u) { rs_sq[n] = partial[0]; }
}

// ---- equi_cotangent: gradients of alpha * red(r) ----
// coef(n) = alpha / ||r_n|| (norm; 0 when r_n = 0), 2 alpha (sqnorm), 2 alpha / item (mse).
// equi:      dF[n][src_g(q)] = coef r[q],  dF[N + n][q] = -coef r[q]    (writes every element)
// equi_plus: dX[n][p] (+)= coef r[p],       dF[n][dst_g(p)] = -coef r[p]
// (penalty value per sample: alpha * red(r), written by the `penalty` entry.)

@group(0) @binding(1) var<storage, read> ct_g: array<u32>;
@group(0) @binding(2) var<storage, read> ct_f: array<f32>;
@group(0) @binding(3) var<storage, read> ct_x: array<f32>;
@group(0) @binding(4) var<storage, read> ct_sq: array<f32>;
@group(0) @binding(5) var<storage, read_write> ct_df: array<f32>;
@group(0) @binding(6) var<storage, read_write> ct_dx: array<f32>;

fn coefficient(sq: f32) -> f32 {
    switch p.reduction {
        case 0u: {
            if (sq > 0.0) { return p.alpha / sqrt(sq); }
            return 0.0;
        }
        case 1u: { return 2.0 * p.alpha; }
        default: { return 2.0 * p.alpha / f32(p.item); }
    }
}

fn residual_ct(g: vec4<u32>, n: u32, e: u32) -> f32 {
    if (p.form == 0u) {
        return ct_f[n * p.item + rho(g, true, e)] - ct_f[(p.n + n) * p.item + e];
    }
    return ct_x[n * p.item + e] - ct_f[n * p.item + rho(g, false, e)];
}

@compute @workgroup_size(WG)
fn equi_cotangent(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.n * p.item) { return; }
    let n = i / p.item;
    let e = i % p.item;
    let g = vec4<u32>(ct_g[0], ct_g[1], ct_g[2], ct_g[3]);
    let c = coefficient(ct_sq[n]) * residual_ct(g, n, e);
    if (p.form == 0u) {
        ct_df[n * p.item + rho(g, true, e)] = c;
        ct_df[(p.n + n) * p.item + e] = -c;
    } else {
        let o = n * p.item + e;
        if (p.accumulate == 1u) {
            ct_dx[o] = ct_dx[o] + c;
        } else {
            ct_dx[o] = c;
        }
        ct_df[n * p.item + rho(g, false, e)] = -c;
    }
}

// ---- penalty: value[n] = alpha * red(r_n) from the squared norms ----

@group(0) @binding(1) var<storage, read> pe_sq: array<f32>;
@group(0) @binding(2) var<storage, read_write> pe_out: array<f32>;

@compute @workgroup_size(WG)
fn penalty(@builtin(global_invocation_id) gid: vec3<u32>) {
    let n = gid.x;
    if (n >= p.n) { return; }
    let sq = pe_sq[n];
    switch p.reduction {
        case 0u: { pe_out[n] = p.alpha * sqrt(sq); }
        case 1u: { pe_out[n] = p.alpha * sq; }
        default: { pe_out[n] = p.alpha * sq / f32(p.item); }
    }
}
