// Portable tiled GEMM kernels (no optional feature): batched matmul with arbitrary strides
// (transposes, broadcast batches) and conv2d as an implicit GEMM. The classic GPU scheme: a
// workgroup of TS x TS invocations computes a (4 TS) x (4 TS) output tile, stages KT-deep slices
// of both operands in workgroup memory, and each invocation accumulates a 4 x 4 block in
// registers. Rows/columns of an invocation's block are TS apart so that neighbouring invocations
// touch neighbouring addresses (coalesced global access, no bank conflicts).
// conv2d.wgsl holds the faster kernels for adapters with 8-wide subgroups (lavapipe).
//
// Binding layout of every entry point (group 0):
//   0 params (uniform), 1 a / x (read), 2 b / w (read), 3 bias (read), 4 residual (read),
//   5 out (read_write). bias and residual are bound to some input when absent (flags say so).

// Invocations per side of the workgroup.
override TS: u32 = 16u;
// Depth of the k slice staged per barrier pair.
override KT: u32 = 16u;

const HAS_BIAS: u32 = 1u;
const HAS_RES: u32 = 2u;

struct GemmParams {
    m: u32, n: u32, k: u32, batch: u32,
    // Strides in elements; a batch stride of 0 broadcasts that operand.
    a_sb: u32, a_sm: u32, a_sk: u32, b_sb: u32,
    b_sk: u32, b_sn: u32, o_sb: u32, o_sm: u32,
    o_sn: u32, bias_sm: u32, bias_sn: u32, flags: u32,
    tiles_n: u32, tiles_m: u32, total: u32, _pad: u32,
}

struct ConvParams {
    n: u32, ci: u32, h: u32, w: u32,
    co: u32, ho: u32, wo: u32, kh: u32,
    kw: u32, stride: u32, pad: u32, flags: u32,
    // t0 = pixel tiles, t1 = channel tiles, total = t0 * t1.
    t0: u32, t1: u32, t2: u32, total: u32,
}

@group(0) @binding(0) var<uniform> gp: GemmParams;
@group(0) @binding(0) var<uniform> cp: ConvParams;
@group(0) @binding(1) var<storage, read> in0: array<f32>;
@group(0) @binding(2) var<storage, read> in1: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read> res: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

// [KT][4 TS] slices of the two operands: row/column index fastest.
var<workgroup> ta: array<f32, KT * TS * 4u>;
var<workgroup> tb: array<f32, KT * TS * 4u>;

// acc[i][j] += ta[kk][ty + i TS] * tb[kk][tx + j TS] over the staged slice.
fn mac_tile(acc: ptr<function, array<vec4<f32>, 4>>, tx: u32, ty: u32) {
    let w = TS * 4u;
    for (var kk = 0u; kk < KT; kk++) {
        let ra = kk * w + ty;
        let rb = kk * w + tx;
        let av = vec4(ta[ra], ta[ra + TS], ta[ra + 2u * TS], ta[ra + 3u * TS]);
        let bv = vec4(tb[rb], tb[rb + TS], tb[rb + 2u * TS], tb[rb + 3u * TS]);
        (*acc)[0] += av.x * bv;
        (*acc)[1] += av.y * bv;
        (*acc)[2] += av.z * bv;
        (*acc)[3] += av.w * bv;
    }
}

// ---- batched GEMM: out[b, m, n] = sum_k a[b, m, k] * b[b, k, n] (+ bias, + residual) ---------

fn gemm_a(b: u32, m: u32, k: u32) -> f32 {
    if (m >= gp.m || k >= gp.k) { return 0.0; }
    return in0[b * gp.a_sb + m * gp.a_sm + k * gp.a_sk];
}

fn gemm_b(b: u32, k: u32, n: u32) -> f32 {
    if (k >= gp.k || n >= gp.n) { return 0.0; }
    return in1[b * gp.b_sb + k * gp.b_sk + n * gp.b_sn];
}

@compute @workgroup_size(TS, TS)
fn gemm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let tile = wid.x + wid.y * nwg.x;
    if (tile >= gp.total) { return; }
    let w = TS * 4u;
    let n0 = (tile % gp.tiles_n) * w;
    let m0 = ((tile / gp.tiles_n) % gp.tiles_m) * w;
    let b = tile / (gp.tiles_n * gp.tiles_m);
    let tid = lid.y * TS + lid.x;
    // Stage along k when k is the contiguous axis of an operand, else along m / n.
    let a_k_fast = gp.a_sk == 1u;
    let b_k_fast = gp.b_sk == 1u;
    var acc: array<vec4<f32>, 4>;
    for (var k0 = 0u; k0 < gp.k; k0 += KT) {
        for (var e = tid; e < KT * w; e += TS * TS) {
            var kk = e / w;
            var mm = e % w;
            if (a_k_fast) { kk = e % KT; mm = e / KT; }
            ta[kk * w + mm] = gemm_a(b, m0 + mm, k0 + kk);
            var kb = e / w;
            var nn = e % w;
            if (b_k_fast) { kb = e % KT; nn = e / KT; }
            tb[kb * w + nn] = gemm_b(b, k0 + kb, n0 + nn);
        }
        workgroupBarrier();
        mac_tile(&acc, lid.x, lid.y);
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
        let m = m0 + lid.y + i * TS;
        for (var j = 0u; j < 4u; j++) {
            let n = n0 + lid.x + j * TS;
            if (m < gp.m && n < gp.n) {
                let o = b * gp.o_sb + m * gp.o_sm + n * gp.o_sn;
                var r = acc[i][j];
                if ((gp.flags & HAS_BIAS) != 0u) { r += bias[m * gp.bias_sm + n * gp.bias_sn]; }
                if ((gp.flags & HAS_RES) != 0u) { r += res[o]; }
                out[o] = r;
            }
        }
    }
}

// ---- conv2d as an implicit GEMM ----------------------------------------------------------------
// M = output channels, N = all output pixels of the batch, K = ci * kh * kw. The weight tensor
// [co, ci, kh, kw] is the row-major [M, K] operand; the [K, N] operand is gathered from the
// input on the fly (zero outside the image).

fn conv_w(m: u32, k: u32) -> f32 {
    let kk = cp.ci * cp.kh * cp.kw;
    if (m >= cp.co || k >= kk) { return 0.0; }
    return in1[m * kk + k];
}

fn conv_x(k: u32, col: u32) -> f32 {
    let plane = cp.ho * cp.wo;
    let khw = cp.kh * cp.kw;
    if (k >= cp.ci * khw || col >= cp.n * plane) { return 0.0; }
    let ci = k / khw;
    let r = k % khw;
    let nimg = col / plane;
    let pix = col % plane;
    let iy = i32((pix / cp.wo) * cp.stride + r / cp.kw) - i32(cp.pad);
    let ix = i32((pix % cp.wo) * cp.stride + r % cp.kw) - i32(cp.pad);
    if (iy < 0 || iy >= i32(cp.h) || ix < 0 || ix >= i32(cp.w)) { return 0.0; }
    return in0[((nimg * cp.ci + ci) * cp.h + u32(iy)) * cp.w + u32(ix)];
}

@compute @workgroup_size(TS, TS)
fn conv_gemm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_id) lid: vec3<u32>) {
    let tile = wid.x + wid.y * nwg.x;
    if (tile >= cp.total) { return; }
    let w = TS * 4u;
    let n0 = (tile % cp.t0) * w;
    let m0 = (tile / cp.t0) * w;
    let tid = lid.y * TS + lid.x;
    let kk_all = cp.ci * cp.kh * cp.kw;
    var acc: array<vec4<f32>, 4>;
    for (var k0 = 0u; k0 < kk_all; k0 += KT) {
        for (var e = tid; e < KT * w; e += TS * TS) {
            // Weights are k-contiguous; the gathered input is pixel-contiguous.
            ta[(e % KT) * w + e / KT] = conv_w(m0 + e / KT, k0 + e % KT);
            tb[e] = conv_x(k0 + e / w, n0 + e % w);
        }
        workgroupBarrier();
        mac_tile(&acc, lid.x, lid.y);
        workgroupBarrier();
    }
    let plane = cp.ho * cp.wo;
    for (var i = 0u; i < 4u; i++) {
        let m = m0 + lid.y + i * TS;
        for (var j = 0u; j < 4u; j++) {
            let col = n0 + lid.x + j * TS;
            if (m < cp.co && col < cp.n * plane) {
                let o = ((col / plane) * cp.co + m) * plane + col % plane;
                var r = acc[i][j];
                if ((cp.flags & HAS_BIAS) != 0u) { r += bias[m]; }
                if ((cp.flags & HAS_RES) != 0u) { r += res[o]; }
                out[o] = r;
            }
        }
    }
}
