// conv2d and GEMM kernels for adapters with subgroups of exactly 8 invocations (lavapipe on
// AVX2: one subgroup = one 8-wide SIMD register). Needs the SUBGROUP feature; the Rust side only
// selects these entry points when the adapter reports subgroup_min_size == subgroup_max_size == 8.
// The portable kernels (no optional feature) are in matmul.wgsl.
//
// Why this shape: on lavapipe every storage or workgroup load whose address differs between
// lanes is compiled to a loop over the 8 lanes with a store-forwarding stall per element
// (~20-25 cycles per loaded float), while arithmetic runs 8 lanes per instruction and
// subgroupBroadcast with a constant lane is a register shuffle. So the kernels load every value
// exactly once per subgroup (each lane a different one, no shared memory, no barriers) and hand
// the values that all lanes need to every lane with subgroupBroadcast; each lane then does many
// FMAs per loaded float. Loop-carried accumulators cost a masked write per update, so partial
// sums are formed in temporaries first.
//
// Binding layout of every entry point (group 0):
//   0 params (uniform), 1 x / a (read), 2 w / b (read), 3 bias (read), 4 residual (read),
//   5 out (read_write). bias and residual are bound to some input when absent (flags say so).

// Tile shapes are fixed per entry point: broadcasts need constant lane indices and the register
// blocks are written out. Accumulators are separate variables, not one array, because naga's
// SPIR-V backend (v30) panics on a pointer argument to an array element (&a[i]).
//
// conv_any: subgroups per workgroup (workgroup size = 8 * SG).
override SG: u32 = 8u;
// conv_any: output channels per subgroup = 8 * RM (RM = 1 or 2).
override RM: u32 = 2u;
// conv_any: the stride; stride 1 slides a window instead of reloading.
override STRIDE: u32 = 1u;

const HAS_BIAS: u32 = 1u;
const HAS_RES: u32 = 2u;

struct ConvParams {
    n: u32, ci: u32, h: u32, w: u32,
    co: u32, ho: u32, wo: u32, kh: u32,
    kw: u32, stride: u32, pad: u32, flags: u32,
    // Tiling, filled per entry point (see ops/conv.rs).
    t0: u32, t1: u32, t2: u32, total: u32,
}

struct GemmParams {
    m: u32, n: u32, k: u32, batch: u32,
    // Strides in elements; a batch stride of 0 broadcasts that operand.
    a_sb: u32, a_sm: u32, a_sk: u32, b_sb: u32,
    b_sk: u32, b_sn: u32, o_sb: u32, o_sm: u32,
    o_sn: u32, bias_sm: u32, bias_sn: u32, flags: u32,
    tiles_n: u32, tiles_m: u32, total: u32, _pad: u32,
}

@group(0) @binding(0) var<uniform> cp: ConvParams;
@group(0) @binding(0) var<uniform> gp: GemmParams;
@group(0) @binding(1) var<storage, read> in0: array<f32>;
@group(0) @binding(2) var<storage, read> in1: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read> res: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

// out[i] = v (+ residual[i]); the bias is already in v.
fn store_res(i: u32, v: f32) {
    var r = v;
    if ((cp.flags & HAS_RES) != 0u) { r += res[i]; }
    out[i] = r;
}

fn conv_store(co: u32, i: u32, v: f32) {
    var r = v;
    if ((cp.flags & HAS_BIAS) != 0u) { r += bias[co]; }
    if ((cp.flags & HAS_RES) != 0u) { r += res[i]; }
    out[i] = r;
}

// ---- 3x3, stride 1 ---------------------------------------------------------------------------
// One subgroup computes 16 output channels x 8 rows x 16 columns. Lane l owns channels co0 + l
// and co0 + 8 + l (it loads their weights itself). The 10 x 18 input patch of one input channel
// is loaded once: lane l loads patch row l (lanes 0 and 1 also rows 8 and 9), and every patch
// row is broadcast to all lanes. Per input channel: 324 loaded floats, 2304 FMAs per lane.

// x[base + iy * W + ix], zero outside the image.
fn x_at(base: u32, iy: i32, ix: i32) -> f32 {
    let ok = iy >= 0 && iy < i32(cp.h) && ix >= 0 && ix < i32(cp.w);
    return select(0.0, in0[base + u32(select(0, iy * i32(cp.w) + ix, ok))], ok);
}

// 18 consecutive inputs of one row (the last two vec4 lanes are padding).
fn x_row18(base: u32, iy: i32, ix: i32) -> array<vec4<f32>, 5> {
    return array<vec4<f32>, 5>(
        vec4(x_at(base, iy, ix), x_at(base, iy, ix + 1), x_at(base, iy, ix + 2), x_at(base, iy, ix + 3)),
        vec4(x_at(base, iy, ix + 4), x_at(base, iy, ix + 5), x_at(base, iy, ix + 6), x_at(base, iy, ix + 7)),
        vec4(x_at(base, iy, ix + 8), x_at(base, iy, ix + 9), x_at(base, iy, ix + 10), x_at(base, iy, ix + 11)),
        vec4(x_at(base, iy, ix + 12), x_at(base, iy, ix + 13), x_at(base, iy, ix + 14), x_at(base, iy, ix + 15)),
        vec4(x_at(base, iy, ix + 16), x_at(base, iy, ix + 17), 0.0, 0.0));
}

// The row held by lane L, in every lane (one function per lane: the lane must be a constant).
fn row_of0(v: array<vec4<f32>, 5>) -> array<vec4<f32>, 5> {
    return array(subgroupBroadcast(v[0], 0u), subgroupBroadcast(v[1], 0u), subgroupBroadcast(v[2], 0u),
                 subgroupBroadcast(v[3], 0u), subgroupBroadcast(v[4], 0u));
}
fn row_of1(v: array<vec4<f32>, 5>) -> array<vec4<f32>, 5> {
    return array(subgroupBroadcast(v[0], 1u), subgroupBroadcast(v[1], 1u), subgroupBroadcast(v[2], 1u),
                 subgroupBroadcast(v[3], 1u), subgroupBroadcast(v[4], 1u));
}
fn row_of2(v: array<vec4<f32>, 5>) -> array<vec4<f32>, 5> {
    return array(subgroupBroadcast(v[0], 2u), subgroupBroadcast(v[1], 2u), subgroupBroadcast(v[2], 2u),
                 subgroupBroadcast(v[3], 2u), subgroupBroadcast(v[4], 2u));
}
fn row_of3(v: array<vec4<f32>, 5>) -> array<vec4<f32>, 5> {
    return array(subgroupBroadcast(v[0], 3u), subgroupBroadcast(v[1], 3u), subgroupBroadcast(v[2], 3u),
                 subgroupBroadcast(v[3], 3u), subgroupBroadcast(v[4], 3u));
}
fn row_of4(v: array<vec4<f32>, 5>) -> array<vec4<f32>, 5> {
    return array(subgroupBroadcast(v[0], 4u), subgroupBroadcast(v[1], 4u), subgroupBroadcast(v[2], 4u),
                 subgroupBroadcast(v[3], 4u), subgroupBroadcast(v[4], 4u));
}
fn row_of5(v: array<vec4<f32>, 5>) -> array<vec4<f32>, 5> {
    return array(subgroupBroadcast(v[0], 5u), subgroupBroadcast(v[1], 5u), subgroupBroadcast(v[2], 5u),
                 subgroupBroadcast(v[3], 5u), subgroupBroadcast(v[4], 5u));
}
fn row_of6(v: array<vec4<f32>, 5>) -> array<vec4<f32>, 5> {
    return array(subgroupBroadcast(v[0], 6u), subgroupBroadcast(v[1], 6u), subgroupBroadcast(v[2], 6u),
                 subgroupBroadcast(v[3], 6u), subgroupBroadcast(v[4], 6u));
}
fn row_of7(v: array<vec4<f32>, 5>) -> array<vec4<f32>, 5> {
    return array(subgroupBroadcast(v[0], 7u), subgroupBroadcast(v[1], 7u), subgroupBroadcast(v[2], 7u),
                 subgroupBroadcast(v[3], 7u), subgroupBroadcast(v[4], 7u));
}

// Three horizontal taps of one input row for output columns 4j..4j+3.
fn row3(r: array<vec4<f32>, 5>, j: u32, w0: f32, w1: f32, w2: f32) -> vec4<f32> {
    return r[j] * w0 + vec4(r[j].yzw, r[j + 1u].x) * w1 + vec4(r[j].zw, r[j + 1u].xy) * w2;
}

// All nine taps of one output row (16 columns) and one output channel.
fn taps9(a: ptr<function, array<vec4<f32>, 4>>, r0: array<vec4<f32>, 5>, r1: array<vec4<f32>, 5>,
         r2: array<vec4<f32>, 5>, w: array<f32, 9>) {
    (*a)[0] += row3(r0, 0u, w[0], w[1], w[2]) + row3(r1, 0u, w[3], w[4], w[5]) + row3(r2, 0u, w[6], w[7], w[8]);
    (*a)[1] += row3(r0, 1u, w[0], w[1], w[2]) + row3(r1, 1u, w[3], w[4], w[5]) + row3(r2, 1u, w[6], w[7], w[8]);
    (*a)[2] += row3(r0, 2u, w[0], w[1], w[2]) + row3(r1, 2u, w[3], w[4], w[5]) + row3(r2, 2u, w[6], w[7], w[8]);
    (*a)[3] += row3(r0, 3u, w[0], w[1], w[2]) + row3(r1, 3u, w[3], w[4], w[5]) + row3(r2, 3u, w[6], w[7], w[8]);
}

fn w9(b: u32) -> array<f32, 9> {
    return array(in1[b], in1[b + 1u], in1[b + 2u], in1[b + 3u], in1[b + 4u], in1[b + 5u], in1[b + 6u],
                 in1[b + 7u], in1[b + 8u]);
}

// Writes one output row of 16 columns (fewer at the right edge) of channel co.
fn store_row16(a: array<vec4<f32>, 4>, co: u32, oy: u32, n: u32, ox0: u32) {
    if (co >= cp.co || oy >= cp.ho) { return; }
    var bv = 0.0;
    if ((cp.flags & HAS_BIAS) != 0u) { bv = bias[co]; }
    let ob = ((n * cp.co + co) * cp.ho + oy) * cp.wo + ox0;
    let m = min(cp.wo - ox0, 16u);
    for (var jb = 0u; jb < 4u; jb++) {
        let v = a[jb] + bv;
        let j = 4u * jb;
        if (j < m) { store_res(ob + j, v.x); }
        if (j + 1u < m) { store_res(ob + j + 1u, v.y); }
        if (j + 2u < m) { store_res(ob + j + 2u, v.z); }
        if (j + 3u < m) { store_res(ob + j + 3u, v.w); }
    }
}

// Tiles: t0 = column tiles, t1 = row tiles, t2 = channel tiles, total = all tiles (with batch).
@compute @workgroup_size(8)
fn conv3x3_s1(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(subgroup_invocation_id) sl: u32) {
    let tile = wid.x + wid.y * nwg.x;
    if (tile >= cp.total) { return; }
    let ct = tile % cp.t2;
    let rest = tile / cp.t2;
    let tx = rest % cp.t0;
    let ty = (rest / cp.t0) % cp.t1;
    let n = rest / (cp.t0 * cp.t1);
    let oy0 = ty * 8u;
    let ox0 = tx * 16u;
    let co0 = ct * 16u;
    let k9 = cp.ci * 9u;
    // Lanes past the last channel compute a copy of it and do not store.
    let wa = min(co0 + sl, cp.co - 1u) * k9;
    let wb = min(co0 + 8u + sl, cp.co - 1u) * k9;
    let iy = i32(oy0 + sl) - i32(cp.pad);
    let ix = i32(ox0) - i32(cp.pad);
    // a<row><channel>: 16 columns of output row oy0 + row for channel co0 (+8) + lane.
    var a00: array<vec4<f32>, 4>; var a01: array<vec4<f32>, 4>;
    var a10: array<vec4<f32>, 4>; var a11: array<vec4<f32>, 4>;
    var a20: array<vec4<f32>, 4>; var a21: array<vec4<f32>, 4>;
    var a30: array<vec4<f32>, 4>; var a31: array<vec4<f32>, 4>;
    var a40: array<vec4<f32>, 4>; var a41: array<vec4<f32>, 4>;
    var a50: array<vec4<f32>, 4>; var a51: array<vec4<f32>, 4>;
    var a60: array<vec4<f32>, 4>; var a61: array<vec4<f32>, 4>;
    var a70: array<vec4<f32>, 4>; var a71: array<vec4<f32>, 4>;
    for (var ci = 0u; ci < cp.ci; ci++) {
        let base = (n * cp.ci + ci) * cp.h * cp.w;
        let lo = x_row18(base, iy, ix);
        // Patch rows 8 and 9 live in lanes 0 and 1; the other lanes skip the loads (a masked-off
        // lane costs no memory access on lavapipe).
        var hi: array<vec4<f32>, 5>;
        if (sl < 2u) { hi = x_row18(base, iy + 8, ix); }
        let w0 = w9(wa + ci * 9u);
        let w1 = w9(wb + ci * 9u);
        let r0 = row_of0(lo); let r1 = row_of1(lo); let r2 = row_of2(lo); let r3 = row_of3(lo);
        let r4 = row_of4(lo); let r5 = row_of5(lo); let r6 = row_of6(lo); let r7 = row_of7(lo);
        let r8 = row_of0(hi); let r9 = row_of1(hi);
        taps9(&a00, r0, r1, r2, w0); taps9(&a01, r0, r1, r2, w1);
        taps9(&a10, r1, r2, r3, w0); taps9(&a11, r1, r2, r3, w1);
        taps9(&a20, r2, r3, r4, w0); taps9(&a21, r2, r3, r4, w1);
        taps9(&a30, r3, r4, r5, w0); taps9(&a31, r3, r4, r5, w1);
        taps9(&a40, r4, r5, r6, w0); taps9(&a41, r4, r5, r6, w1);
        taps9(&a50, r5, r6, r7, w0); taps9(&a51, r5, r6, r7, w1);
        taps9(&a60, r6, r7, r8, w0); taps9(&a61, r6, r7, r8, w1);
        taps9(&a70, r7, r8, r9, w0); taps9(&a71, r7, r8, r9, w1);
    }
    let c0 = co0 + sl;
    let c1 = co0 + 8u + sl;
    store_row16(a00, c0, oy0, n, ox0); store_row16(a01, c1, oy0, n, ox0);
    store_row16(a10, c0, oy0 + 1u, n, ox0); store_row16(a11, c1, oy0 + 1u, n, ox0);
    store_row16(a20, c0, oy0 + 2u, n, ox0); store_row16(a21, c1, oy0 + 2u, n, ox0);
    store_row16(a30, c0, oy0 + 3u, n, ox0); store_row16(a31, c1, oy0 + 3u, n, ox0);
    store_row16(a40, c0, oy0 + 4u, n, ox0); store_row16(a41, c1, oy0 + 4u, n, ox0);
    store_row16(a50, c0, oy0 + 5u, n, ox0); store_row16(a51, c1, oy0 + 5u, n, ox0);
    store_row16(a60, c0, oy0 + 6u, n, ox0); store_row16(a61, c1, oy0 + 6u, n, ox0);
    store_row16(a70, c0, oy0 + 7u, n, ox0); store_row16(a71, c1, oy0 + 7u, n, ox0);
}

// ---- any kernel size and stride -------------------------------------------------------------
// Lane l of a subgroup owns 4 consecutive output pixels of one row; the subgroup shares 8 * RM
// output channels, whose weights are loaded one per lane and broadcast. With stride 1 the four
// inputs of a tap slide by one per kx, so each tap loads one new input per lane.

fn x_or0(rb: u32, ix: i32, row_ok: bool) -> f32 {
    let ok = row_ok && ix >= 0 && ix < i32(cp.w);
    return select(0.0, in0[rb + u32(select(0, ix, ok))], ok);
}

// acc[c] += w[c] * xv for the 8 channels whose weights lanes 0..7 hold in wl.
fn bcast_fma8(acc: ptr<function, array<vec4<f32>, 8>>, wl: f32, xv: vec4<f32>) {
    (*acc)[0] += subgroupBroadcast(wl, 0u) * xv;
    (*acc)[1] += subgroupBroadcast(wl, 1u) * xv;
    (*acc)[2] += subgroupBroadcast(wl, 2u) * xv;
    (*acc)[3] += subgroupBroadcast(wl, 3u) * xv;
    (*acc)[4] += subgroupBroadcast(wl, 4u) * xv;
    (*acc)[5] += subgroupBroadcast(wl, 5u) * xv;
    (*acc)[6] += subgroupBroadcast(wl, 6u) * xv;
    (*acc)[7] += subgroupBroadcast(wl, 7u) * xv;
}

fn store_px4(acc: array<vec4<f32>, 8>, co0: u32, nimg: u32, oy: u32, ox0: u32) {
    let plane = cp.ho * cp.wo;
    for (var c = 0u; c < 8u; c++) {
        let co = co0 + c;
        if (co >= cp.co) { return; }
        let ob = (nimg * cp.co + co) * plane + oy * cp.wo + ox0;
        let v = acc[c];
        for (var j = 0u; j < 4u; j++) {
            if (ox0 + j < cp.wo) { conv_store(co, ob + j, v[j]); }
        }
    }
}

// t0 = pixel chunks of 4 per output row (ceil(Wo / 4)), t1 = all chunks (N * Ho * t0),
// t2 = channel tiles, total = t2 * ceil(t1 / (8 * SG)).
@compute @workgroup_size(8 * SG)
fn conv_any(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) sl: u32) {
    let flat = wid.x + wid.y * nwg.x;
    if (flat >= cp.total) { return; }
    let ct = flat % cp.t2;
    let chunk = (flat / cp.t2) * 8u * SG + lid;
    // Lanes past the end compute a copy of the last chunk (they must run to feed the broadcasts).
    let c = min(chunk, cp.t1 - 1u);
    let row = c / cp.t0;
    let ox0 = (c % cp.t0) * 4u;
    let nimg = row / cp.ho;
    let oy = row % cp.ho;
    let co0 = ct * 8u * RM;
    let kk = cp.ci * cp.kh * cp.kw;
    let w_lo = min(co0 + sl, cp.co - 1u) * kk;
    let w_hi = min(co0 + 8u + sl, cp.co - 1u) * kk;
    var acc0: array<vec4<f32>, 8>;
    var acc1: array<vec4<f32>, 8>;
    var k = 0u;
    let ix0 = i32(ox0 * STRIDE) - i32(cp.pad);
    for (var ci = 0u; ci < cp.ci; ci++) {
        let plane = (nimg * cp.ci + ci) * cp.h;
        for (var ky = 0u; ky < cp.kh; ky++) {
            let iy = i32(oy * STRIDE + ky) - i32(cp.pad);
            let row_ok = iy >= 0 && iy < i32(cp.h);
            let rb = (plane + u32(clamp(iy, 0, i32(cp.h) - 1))) * cp.w;
            var v0 = 0.0;
            var v1 = 0.0;
            var v2 = 0.0;
            if (STRIDE == 1u) {
                v0 = x_or0(rb, ix0, row_ok);
                v1 = x_or0(rb, ix0 + 1, row_ok);
                v2 = x_or0(rb, ix0 + 2, row_ok);
            }
            for (var kx = 0u; kx < cp.kw; kx++) {
                var xv: vec4<f32>;
                if (STRIDE == 1u) {
                    let v3 = x_or0(rb, ix0 + i32(kx) + 3, row_ok);
                    xv = vec4(v0, v1, v2, v3);
                    v0 = v1;
                    v1 = v2;
                    v2 = v3;
                } else {
                    let s = i32(STRIDE);
                    let i0 = ix0 + i32(kx);
                    xv = vec4(x_or0(rb, i0, row_ok), x_or0(rb, i0 + s, row_ok),
                              x_or0(rb, i0 + 2 * s, row_ok), x_or0(rb, i0 + 3 * s, row_ok));
                }
                bcast_fma8(&acc0, in1[w_lo + k], xv);
                if (RM == 2u) { bcast_fma8(&acc1, in1[w_hi + k], xv); }
                k++;
            }
        }
    }
    if (chunk >= cp.t1) { return; }
    store_px4(acc0, co0, nimg, oy, ox0);
    if (RM == 2u) { store_px4(acc1, co0 + 8u, nimg, oy, ox0); }
}

// ---- one input and one output channel, stride 1 (blur-sized kernels) -----------------------
// Lane l owns 32 consecutive output columns of row oy0 + l (8 rows per subgroup). Each kernel
// row runs in chunks of 8 taps: lane l loads tap kx0 + l (0 past the end) and the 8 weights are
// broadcast; each lane keeps 40 inputs (its 32 columns + 8) in registers and loads 8 new ones
// per chunk. Per chunk: 9 loads and 256 FMAs per lane, one accumulator write per 8 taps.

fn sh1(a: vec4<f32>, b: vec4<f32>) -> vec4<f32> { return vec4(a.yzw, b.x); }
fn sh2(a: vec4<f32>, b: vec4<f32>) -> vec4<f32> { return vec4(a.zw, b.xy); }
fn sh3(a: vec4<f32>, b: vec4<f32>) -> vec4<f32> { return vec4(a.w, b.xyz); }

// Output columns 4q..4q+3: sum over the 8 taps j of w[j] * inputs 4q + j ..
fn taps8(c: array<vec4<f32>, 10>, q: u32, w: array<f32, 8>) -> vec4<f32> {
    let a = c[q];
    let b = c[q + 1u];
    let d = c[q + 2u];
    return a * w[0] + sh1(a, b) * w[1] + sh2(a, b) * w[2] + sh3(a, b) * w[3]
         + b * w[4] + sh1(b, d) * w[5] + sh2(b, d) * w[6] + sh3(b, d) * w[7];
}

fn x_vec4(rb: u32, ix: i32, row_ok: bool) -> vec4<f32> {
    return vec4(x_or0(rb, ix, row_ok), x_or0(rb, ix + 1, row_ok), x_or0(rb, ix + 2, row_ok),
                x_or0(rb, ix + 3, row_ok));
}

// t0 = column tiles of 32, t1 = row tiles of 8, total = t0 * t1 * N (images = planes).
@compute @workgroup_size(8)
fn conv1ch_s1(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(subgroup_invocation_id) sl: u32) {
    let tile = wid.x + wid.y * nwg.x;
    if (tile >= cp.total) { return; }
    let ox0 = (tile % cp.t0) * 32u;
    let oy = ((tile / cp.t0) % cp.t1) * 8u + sl;
    let n = tile / (cp.t0 * cp.t1);
    let plane = n * cp.h * cp.w;
    let ix0 = i32(ox0) - i32(cp.pad);
    var acc: array<vec4<f32>, 8>;
    for (var ky = 0u; ky < cp.kh; ky++) {
        let iy = i32(oy + ky) - i32(cp.pad);
        let row_ok = iy >= 0 && iy < i32(cp.h);
        let rb = plane + u32(clamp(iy, 0, i32(cp.h) - 1)) * cp.w;
        var win = array(x_vec4(rb, ix0, row_ok), x_vec4(rb, ix0 + 4, row_ok),
                        x_vec4(rb, ix0 + 8, row_ok), x_vec4(rb, ix0 + 12, row_ok),
                        x_vec4(rb, ix0 + 16, row_ok), x_vec4(rb, ix0 + 20, row_ok),
                        x_vec4(rb, ix0 + 24, row_ok), x_vec4(rb, ix0 + 28, row_ok));
        for (var kx0 = 0u; kx0 < cp.kw; kx0 += 8u) {
            let i = ix0 + i32(kx0) + 32;
            let n0 = x_vec4(rb, i, row_ok);
            let n1 = x_vec4(rb, i + 4, row_ok);
            let kx = kx0 + sl;
            let wl = select(0.0, in1[ky * cp.kw + min(kx, cp.kw - 1u)], kx < cp.kw);
            let w = array(subgroupBroadcast(wl, 0u), subgroupBroadcast(wl, 1u), subgroupBroadcast(wl, 2u),
                          subgroupBroadcast(wl, 3u), subgroupBroadcast(wl, 4u), subgroupBroadcast(wl, 5u),
                          subgroupBroadcast(wl, 6u), subgroupBroadcast(wl, 7u));
            let c = array(win[0], win[1], win[2], win[3], win[4], win[5], win[6], win[7], n0, n1);
            acc[0] += taps8(c, 0u, w);
            acc[1] += taps8(c, 1u, w);
            acc[2] += taps8(c, 2u, w);
            acc[3] += taps8(c, 3u, w);
            acc[4] += taps8(c, 4u, w);
            acc[5] += taps8(c, 5u, w);
            acc[6] += taps8(c, 6u, w);
            acc[7] += taps8(c, 7u, w);
            win = array(c[2], c[3], c[4], c[5], c[6], c[7], c[8], c[9]);
        }
    }
    if (oy >= cp.ho) { return; }
    var bv = 0.0;
    if ((cp.flags & HAS_BIAS) != 0u) { bv = bias[0]; }
    let ob = (n * cp.ho + oy) * cp.wo + ox0;
    let m = min(cp.wo - ox0, 32u);
    for (var q = 0u; q < 8u; q++) {
        let v = acc[q] + bv;
        let j = 4u * q;
        if (j < m) { store_res(ob + j, v.x); }
        if (j + 1u < m) { store_res(ob + j + 1u, v.y); }
        if (j + 2u < m) { store_res(ob + j + 2u, v.z); }
        if (j + 3u < m) { store_res(ob + j + 3u, v.w); }
    }
}

// ---- batched GEMM: out[b, m, n] = sum_k a[b, m, k] * b[b, k, n] ------------------------------
// One subgroup computes 64 rows x 64 columns. Lane l owns rows m0 + l + 8i (i < 8) and loads
// their a values itself; the 64 b values of a k step are loaded one per lane (8 loads) and
// broadcast. Per k step: 128 loaded floats, 512 FMAs per lane. (64 x 32 tiles were 30% slower;
// two k steps per accumulator write gained nothing measurable and doubled the compile time.)

fn gemm_store(m: u32, n: u32, b: u32, v: f32) {
    if (m >= gp.m || n >= gp.n) { return; }
    let i = b * gp.o_sb + m * gp.o_sm + n * gp.o_sn;
    var r = v;
    if ((gp.flags & HAS_BIAS) != 0u) { r += bias[m * gp.bias_sm + n * gp.bias_sn]; }
    if ((gp.flags & HAS_RES) != 0u) { r += res[i]; }
    out[i] = r;
}

// acc[2c], acc[2c+1] += rows 0-3, 4-7 of this lane times the column value lane c holds in bl.
fn bcast_outer8(acc: ptr<function, array<vec4<f32>, 16>>, a0: vec4<f32>, a1: vec4<f32>, bl: f32) {
    let b0 = subgroupBroadcast(bl, 0u); let b1 = subgroupBroadcast(bl, 1u);
    let b2 = subgroupBroadcast(bl, 2u); let b3 = subgroupBroadcast(bl, 3u);
    let b4 = subgroupBroadcast(bl, 4u); let b5 = subgroupBroadcast(bl, 5u);
    let b6 = subgroupBroadcast(bl, 6u); let b7 = subgroupBroadcast(bl, 7u);
    (*acc)[0] += a0 * b0; (*acc)[1] += a1 * b0;
    (*acc)[2] += a0 * b1; (*acc)[3] += a1 * b1;
    (*acc)[4] += a0 * b2; (*acc)[5] += a1 * b2;
    (*acc)[6] += a0 * b3; (*acc)[7] += a1 * b3;
    (*acc)[8] += a0 * b4; (*acc)[9] += a1 * b4;
    (*acc)[10] += a0 * b5; (*acc)[11] += a1 * b5;
    (*acc)[12] += a0 * b6; (*acc)[13] += a1 * b6;
    (*acc)[14] += a0 * b7; (*acc)[15] += a1 * b7;
}

// Column n (one of n0 + c, c < 8) for the 8 rows of this lane: lo holds rows +0..+24, hi +32..+56.
fn gemm_store_col(lo: vec4<f32>, hi: vec4<f32>, m0: u32, n: u32, b: u32) {
    gemm_store(m0, n, b, lo.x); gemm_store(m0 + 8u, n, b, lo.y);
    gemm_store(m0 + 16u, n, b, lo.z); gemm_store(m0 + 24u, n, b, lo.w);
    gemm_store(m0 + 32u, n, b, hi.x); gemm_store(m0 + 40u, n, b, hi.y);
    gemm_store(m0 + 48u, n, b, hi.z); gemm_store(m0 + 56u, n, b, hi.w);
}

// Unrolled by hand with constant indices: llvmpipe turns a loop-indexed private array into
// memory traffic, and the loop form made gemm_sg 2.5x slower on the UNet's 1x1 convs (K of 32
// to 96, where the stores weigh most).
fn gemm_store8(acc: array<vec4<f32>, 16>, m0: u32, n0: u32, b: u32) {
    gemm_store_col(acc[0], acc[1], m0, n0, b);
    gemm_store_col(acc[2], acc[3], m0, n0 + 1u, b);
    gemm_store_col(acc[4], acc[5], m0, n0 + 2u, b);
    gemm_store_col(acc[6], acc[7], m0, n0 + 3u, b);
    gemm_store_col(acc[8], acc[9], m0, n0 + 4u, b);
    gemm_store_col(acc[10], acc[11], m0, n0 + 5u, b);
    gemm_store_col(acc[12], acc[13], m0, n0 + 6u, b);
    gemm_store_col(acc[14], acc[15], m0, n0 + 7u, b);
}

fn a_at(base: u32, m: u32, k: u32) -> f32 {
    return in0[base + min(m, gp.m - 1u) * gp.a_sm + k * gp.a_sk];
}

// The 8 a values of this lane's rows at step k, as two vec4 (rows +0..+24 and +32..+56).
fn a_rows8(base: u32, m0: u32, k: u32) -> array<vec4<f32>, 2> {
    return array(
        vec4(a_at(base, m0, k), a_at(base, m0 + 8u, k), a_at(base, m0 + 16u, k), a_at(base, m0 + 24u, k)),
        vec4(a_at(base, m0 + 32u, k), a_at(base, m0 + 40u, k), a_at(base, m0 + 48u, k),
             a_at(base, m0 + 56u, k)));
}

@compute @workgroup_size(8)
fn gemm_sg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(subgroup_invocation_id) sl: u32) {
    let tile = wid.x + wid.y * nwg.x;
    if (tile >= gp.total) { return; }
    let tn = tile % gp.tiles_n;
    let tm = (tile / gp.tiles_n) % gp.tiles_m;
    let b = tile / (gp.tiles_n * gp.tiles_m);
    let m0 = tm * 64u + sl;
    let n0 = tn * 64u;
    let abase = b * gp.a_sb;
    let bbase = b * gp.b_sb;
    // Column loaded by this lane in each group of 8 (clamped: copies are not stored).
    let bc0 = bbase + min(n0 + sl, gp.n - 1u) * gp.b_sn;
    let bc1 = bbase + min(n0 + 8u + sl, gp.n - 1u) * gp.b_sn;
    let bc2 = bbase + min(n0 + 16u + sl, gp.n - 1u) * gp.b_sn;
    let bc3 = bbase + min(n0 + 24u + sl, gp.n - 1u) * gp.b_sn;
    let bc4 = bbase + min(n0 + 32u + sl, gp.n - 1u) * gp.b_sn;
    let bc5 = bbase + min(n0 + 40u + sl, gp.n - 1u) * gp.b_sn;
    let bc6 = bbase + min(n0 + 48u + sl, gp.n - 1u) * gp.b_sn;
    let bc7 = bbase + min(n0 + 56u + sl, gp.n - 1u) * gp.b_sn;
    var c0: array<vec4<f32>, 16>; var c1: array<vec4<f32>, 16>;
    var c2: array<vec4<f32>, 16>; var c3: array<vec4<f32>, 16>;
    var c4: array<vec4<f32>, 16>; var c5: array<vec4<f32>, 16>;
    var c6: array<vec4<f32>, 16>; var c7: array<vec4<f32>, 16>;
    for (var k = 0u; k < gp.k; k++) {
        let a = a_rows8(abase, m0, k);
        let kb = k * gp.b_sk;
        bcast_outer8(&c0, a[0], a[1], in1[bc0 + kb]);
        bcast_outer8(&c1, a[0], a[1], in1[bc1 + kb]);
        bcast_outer8(&c2, a[0], a[1], in1[bc2 + kb]);
        bcast_outer8(&c3, a[0], a[1], in1[bc3 + kb]);
        bcast_outer8(&c4, a[0], a[1], in1[bc4 + kb]);
        bcast_outer8(&c5, a[0], a[1], in1[bc5 + kb]);
        bcast_outer8(&c6, a[0], a[1], in1[bc6 + kb]);
        bcast_outer8(&c7, a[0], a[1], in1[bc7 + kb]);
    }
    gemm_store8(c0, m0, n0, b);
    gemm_store8(c1, m0, n0 + 8u, b);
    gemm_store8(c2, m0, n0 + 16u, b);
    gemm_store8(c3, m0, n0 + 24u, b);
    gemm_store8(c4, m0, n0 + 32u, b);
    gemm_store8(c5, m0, n0 + 40u, b);
    gemm_store8(c6, m0, n0 + 48u, b);
    gemm_store8(c7, m0, n0 + 56u, b);
}
