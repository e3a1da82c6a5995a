// Input gradient of conv2d (NCHW, zero padding, square stride): dx = d/dx sum(conv2d(x, w) * dy)
//   dx[n, ci, iy, ix] = sum over co, ky, kx of dy[n, co, oy, ox] * w[co, ci, ky, kx]
// where oy = (iy + pad - ky) / stride must be integral and inside [0, Ho) (likewise ox).
// An implicit GEMM with M = ci, N = every pixel of dx, K = co * kh * kw; the weights are read
// transposed over (co, ci) and flipped spatially in place (no copy). No optional feature;
// conv2d_vjp_sg.wgsl holds the faster kernels for adapters with 8-wide subgroups (lavapipe).
//
// Binding layout of every entry point (group 0):
//   0 params (uniform), 1 dy (read), 2 w (read), 3 dx (read_write).

// vjp_gemm: invocations per side of the workgroup.
override TS: u32 = 16u;
// vjp_gemm: depth of the k slice staged per barrier pair.
override KT: u32 = 16u;

struct VjpParams {
    // Sizes of dx ([n, ci, h, w]), dy ([n, co, ho, wo]) and the kernel (kh, kw).
    n: u32, ci: u32, h: u32, w: u32,
    co: u32, ho: u32, wo: u32, kh: u32,
    kw: u32, stride: u32, pad: u32,
    // 1: add to dx instead of overwriting it (later pieces of a split sum).
    accum: u32,
    // This dispatch sums over [r0, r1) only, of k = (co, ky, kx) in vjp_gemm and of co in the
    // subgroup kernels: the host splits long sums so that no invocation runs more loop
    // iterations than lavapipe allows (it silently ends loops after 65535 in one invocation).
    r0: u32, r1: u32,
    // conv2d_vjp_sg.wgsl only (see there).
    cy: u32, cx: u32, ha: u32, wa: u32,
    // Tiling, filled per entry point (see ops/conv_vjp.rs).
    t0: u32, t1: u32, t2: u32, total: u32,
    _p0: u32, _p1: u32,
}

@group(0) @binding(0) var<uniform> p: VjpParams;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read> wt: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;

// ---- any kernel size and stride: workgroup-memory tiled implicit GEMM ------------------------
// A workgroup of TS x TS invocations computes a (4 TS) x (4 TS) tile of [ci, pixel]; each
// invocation a 4 x 4 register block whose rows/columns are TS apart (neighbouring invocations
// touch neighbouring addresses).

var<workgroup> ta: array<f32, KT * TS * 4u>;
var<workgroup> tb: array<f32, KT * TS * 4u>;

// The [M, K] operand: w[co, ci, ky, kx] seen as [ci, (co, ky, kx)].
fn gemm_w(ci: u32, k: u32) -> f32 {
    let khw = p.kh * p.kw;
    if (ci >= p.ci || k >= p.r1) { return 0.0; }
    return wt[((k / khw) * p.ci + ci) * khw + k % khw];
}

// The output coordinate that reads input coordinate i through tap t, or -1 when none does.
fn out_coord(i: u32, t: u32, size: u32) -> i32 {
    let d = i32(i + p.pad) - i32(t);
    if (d < 0 || d % i32(p.stride) != 0) { return -1; }
    let o = d / i32(p.stride);
    return select(-1, o, o < i32(size));
}

// The [K, N] operand: dy gathered for tap (co, ky, kx) and dx pixel col.
fn gemm_dy(k: u32, col: u32) -> f32 {
    let plane = p.h * p.w;
    let khw = p.kh * p.kw;
    if (k >= p.r1 || col >= p.n * plane) { return 0.0; }
    let co = k / khw;
    let r = k % khw;
    let nimg = col / plane;
    let pix = col % plane;
    let oy = out_coord(pix / p.w, r / p.kw, p.ho);
    let ox = out_coord(pix % p.w, r % p.kw, p.wo);
    if (oy < 0 || ox < 0) { return 0.0; }
    return dy[((nimg * p.co + co) * p.ho + u32(oy)) * p.wo + u32(ox)];
}

// t0 = pixel tiles, t1 = channel tiles, total = t0 * t1.
@compute @workgroup_size(TS, TS)
fn vjp_gemm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_id) lid: vec3<u32>) {
    let tile = wid.x + wid.y * nwg.x;
    if (tile >= p.total) { return; }
    let w = TS * 4u;
    let n0 = (tile % p.t0) * w;
    let m0 = (tile / p.t0) * w;
    let tid = lid.y * TS + lid.x;
    var acc: array<vec4<f32>, 4>;
    for (var k0 = p.r0; k0 < p.r1; k0 += KT) {
        for (var e = tid; e < KT * w; e += TS * TS) {
            // The weights are contiguous along (ky, kx), the gathered dy along pixels.
            ta[(e % KT) * w + e / KT] = gemm_w(m0 + e / KT, k0 + e % KT);
            tb[e] = gemm_dy(k0 + e / w, n0 + e % w);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < KT; kk++) {
            let ra = kk * w + lid.y;
            let rb = kk * w + lid.x;
            let av = vec4(ta[ra], ta[ra + TS], ta[ra + 2u * TS], ta[ra + 3u * TS]);
            let bv = vec4(tb[rb], tb[rb + TS], tb[rb + 2u * TS], tb[rb + 3u * TS]);
            acc[0] += av.x * bv;
            acc[1] += av.y * bv;
            acc[2] += av.z * bv;
            acc[3] += av.w * bv;
        }
        workgroupBarrier();
    }
    let plane = p.h * p.w;
    for (var i = 0u; i < 4u; i++) {
        let ci = m0 + lid.y + i * TS;
        for (var j = 0u; j < 4u; j++) {
            let col = n0 + lid.x + j * TS;
            if (ci < p.ci && col < p.n * plane) {
                let o = ((col / plane) * p.ci + ci) * plane + col % plane;
                var v = acc[i][j];
                if (p.accum != 0u) { v += dx[o]; }
                dx[o] = v;
            }
        }
    }
}

