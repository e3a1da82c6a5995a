// Input gradient of conv2d for adapters with subgroups of exactly 8 invocations (lavapipe on
// AVX2). Needs the SUBGROUP feature; the Rust side only selects these entry points when the
// adapter reports subgroup_min_size == subgroup_max_size == 8. The portable kernel is in
// conv2d_vjp.wgsl, which also states the sum computed and the meaning of the parameters.
//
// Same scheme as conv2d.wgsl (whose header explains why): on lavapipe a load costs one memory
// access per lane whatever its address, so every value is loaded by one lane only and handed to
// the others with subgroupBroadcast; each lane then does many FMAs per loaded float.
//
// Binding layout of every entry point (group 0):
//   0 params (uniform), 1 dy (read), 2 w (read), 3 dx (read_write).

// Subgroups per workgroup of vjp_any (workgroup size = 8 * SG).
override SG: u32 = 8u;
// vjp_any: input channels per subgroup = 8 * RM (RM = 1 or 2).
override RM: u32 = 2u;

struct VjpParams {
    n: u32, ci: u32, h: u32, w: u32,
    co: u32, ho: u32, wo: u32, kh: u32,
    kw: u32, stride: u32, pad: u32, accum: u32,
    // The output channels [r0, r1) summed by this dispatch.
    r0: u32, r1: u32,
    // vjp_any: the dx pixels of this dispatch are (cy + stride a, cx + stride b), a < ha, b < wa.
    cy: u32, cx: u32, ha: u32, wa: u32,
    t0: u32, t1: u32, t2: u32, total: u32,
    _p0: u32, _p1: u32,
}

@group(0) @binding(0) var<uniform> p: VjpParams;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read> wt: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;

fn store(i: u32, v: f32) {
    var r = v;
    if (p.accum != 0u) { r += dx[i]; }
    dx[i] = r;
}

// ---- 3x3, stride 1 -----------------------------------------------------------------------------
// With stride 1 the gradient is a forward 3x3 convolution of dy with the weights transposed over
// (co, ci) and rotated by 180 degrees, padded by q = 2 - pad:
//   dx[iy, ix] = sum over co, a, b of dy[iy - q + a, ix - q + b] * w[co, ci, 2 - a, 2 - b].
// One subgroup computes 16 input channels x 8 rows x 16 columns of dx. Lane l owns channels
// ci0 + l and ci0 + 8 + l (it loads their weights itself). The 10 x 18 patch of dy of one output
// channel is loaded once: lane l loads patch row l (lanes 0 and 1 also rows 8 and 9), and every
// row is broadcast to all lanes. Per output channel: 324 loaded floats, 2304 FMAs per lane.

// dy[base + oy * Wo + ox], zero outside dy.
fn dy_at(base: u32, oy: i32, ox: i32) -> f32 {
    let ok = oy >= 0 && oy < i32(p.ho) && ox >= 0 && ox < i32(p.wo);
    return select(0.0, dy[base + u32(select(0, oy * i32(p.wo) + ox, ok))], ok);
}

// 18 consecutive values of one dy row (the last two vec4 lanes are padding).
fn dy_row18(base: u32, oy: i32, ox: i32) -> array<vec4<f32>, 5> {
    return array<vec4<f32>, 5>(
        vec4(dy_at(base, oy, ox), dy_at(base, oy, ox + 1), dy_at(base, oy, ox + 2), dy_at(base, oy, ox + 3)),
        vec4(dy_at(base, oy, ox + 4), dy_at(base, oy, ox + 5), dy_at(base, oy, ox + 6), dy_at(base, oy, ox + 7)),
        vec4(dy_at(base, oy, ox + 8), dy_at(base, oy, ox + 9), dy_at(base, oy, ox + 10), dy_at(base, oy, ox + 11)),
        vec4(dy_at(base, oy, ox + 12), dy_at(base, oy, ox + 13), dy_at(base, oy, ox + 14), dy_at(base, oy, ox + 15)),
        vec4(dy_at(base, oy, ox + 16), dy_at(base, oy, ox + 17), 0.0, 0.0));
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

// Three horizontal taps of one dy row for dx columns 4j..4j+3.
fn row3(r: array<vec4<f32>, 5>, j: u32, w0: f32, w1: f32, w2: f32) -> vec4<f32> {
    return r[j] * w0 + vec4(r[j].yzw, r[j + 1u].x) * w1 + vec4(r[j].zw, r[j + 1u].xy) * w2;
}

// All nine taps of one dx row (16 columns) and one channel; w is already rotated.
fn taps9(a: ptr<function, array<vec4<f32>, 4>>, r0: array<vec4<f32>, 5>, r1: array<vec4<f32>, 5>,
         r2: array<vec4<f32>, 5>, w: array<f32, 9>) {
    (*a)[0] += row3(r0, 0u, w[0], w[1], w[2]) + row3(r1, 0u, w[3], w[4], w[5]) + row3(r2, 0u, w[6], w[7], w[8]);
    (*a)[1] += row3(r0, 1u, w[0], w[1], w[2]) + row3(r1, 1u, w[3], w[4], w[5]) + row3(r2, 1u, w[6], w[7], w[8]);
    (*a)[2] += row3(r0, 2u, w[0], w[1], w[2]) + row3(r1, 2u, w[3], w[4], w[5]) + row3(r2, 2u, w[6], w[7], w[8]);
    (*a)[3] += row3(r0, 3u, w[0], w[1], w[2]) + row3(r1, 3u, w[3], w[4], w[5]) + row3(r2, 3u, w[6], w[7], w[8]);
}

// The 3x3 taps at wt[b..b+9], rotated by 180 degrees.
fn w9_rotated(b: u32) -> array<f32, 9> {
    return array(wt[b + 8u], wt[b + 7u], wt[b + 6u], wt[b + 5u], wt[b + 4u], wt[b + 3u], wt[b + 2u],
                 wt[b + 1u], wt[b]);
}

// Writes one dx row of 16 columns (fewer at the right edge) of channel ci.
fn store_row16(a: array<vec4<f32>, 4>, ci: u32, iy: u32, n: u32, ix0: u32) {
    if (ci >= p.ci || iy >= p.h) { return; }
    let ob = ((n * p.ci + ci) * p.h + iy) * p.w + ix0;
    let m = min(p.w - ix0, 16u);
    for (var jb = 0u; jb < 4u; jb++) {
        let v = a[jb];
        let j = 4u * jb;
        if (j < m) { store(ob + j, v.x); }
        if (j + 1u < m) { store(ob + j + 1u, v.y); }
        if (j + 2u < m) { store(ob + j + 2u, v.z); }
        if (j + 3u < m) { store(ob + j + 3u, v.w); }
    }
}

// Tiles: t0 = column tiles, t1 = row tiles, t2 = channel tiles, total = all tiles (with batch).
@compute @workgroup_size(8)
fn vjp3x3_s1(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(subgroup_invocation_id) sl: u32) {
    let tile = wid.x + wid.y * nwg.x;
    if (tile >= p.total) { return; }
    let ct = tile % p.t2;
    let rest = tile / p.t2;
    let tx = rest % p.t0;
    let ty = (rest / p.t0) % p.t1;
    let n = rest / (p.t0 * p.t1);
    let iy0 = ty * 8u;
    let ix0 = tx * 16u;
    let ci0 = ct * 16u;
    // Lanes past the last channel compute a copy of it and do not store.
    let wa = min(ci0 + sl, p.ci - 1u) * 9u;
    let wb = min(ci0 + 8u + sl, p.ci - 1u) * 9u;
    let q = 2 - i32(p.pad);
    let oy = i32(iy0 + sl) - q;
    let ox = i32(ix0) - q;
    // a<row><channel>: 16 columns of dx row iy0 + row for channel ci0 (+8) + lane.
    var a00: array<vec4<f32>, 4>; var a01: array<vec4<f32>, 4>;
    var a10: array<vec4<f32>, 4>; var a11: array<vec4<f32>, 4>;
    var a20: array<vec4<f32>, 4>; var a21: array<vec4<f32>, 4>;
    var a30: array<vec4<f32>, 4>; var a31: array<vec4<f32>, 4>;
    var a40: array<vec4<f32>, 4>; var a41: array<vec4<f32>, 4>;
    var a50: array<vec4<f32>, 4>; var a51: array<vec4<f32>, 4>;
    var a60: array<vec4<f32>, 4>; var a61: array<vec4<f32>, 4>;
    var a70: array<vec4<f32>, 4>; var a71: array<vec4<f32>, 4>;
    let wstep = p.ci * 9u;
    for (var co = p.r0; co < p.r1; co++) {
        let base = (n * p.co + co) * p.ho * p.wo;
        let lo = dy_row18(base, oy, ox);
        // Patch rows 8 and 9 live in lanes 0 and 1; the other lanes skip the loads (a masked-off
        // lane costs no memory access on lavapipe).
        var hi: array<vec4<f32>, 5>;
        if (sl < 2u) { hi = dy_row18(base, oy + 8, ox); }
        let w0 = w9_rotated(co * wstep + wa);
        let w1 = w9_rotated(co * wstep + wb);
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
    let c0 = ci0 + sl;
    let c1 = ci0 + 8u + sl;
    store_row16(a00, c0, iy0, n, ix0); store_row16(a01, c1, iy0, n, ix0);
    store_row16(a10, c0, iy0 + 1u, n, ix0); store_row16(a11, c1, iy0 + 1u, n, ix0);
    store_row16(a20, c0, iy0 + 2u, n, ix0); store_row16(a21, c1, iy0 + 2u, n, ix0);
    store_row16(a30, c0, iy0 + 3u, n, ix0); store_row16(a31, c1, iy0 + 3u, n, ix0);
    store_row16(a40, c0, iy0 + 4u, n, ix0); store_row16(a41, c1, iy0 + 4u, n, ix0);
    store_row16(a50, c0, iy0 + 5u, n, ix0); store_row16(a51, c1, iy0 + 5u, n, ix0);
    store_row16(a60, c0, iy0 + 6u, n, ix0); store_row16(a61, c1, iy0 + 6u, n, ix0);
    store_row16(a70, c0, iy0 + 7u, n, ix0); store_row16(a71, c1, iy0 + 7u, n, ix0);
}

// ---- any kernel size and stride, one residue class of dx per dispatch ------------------------
// The dx pixels iy = cy + stride a (likewise ix = cx + stride b) are reached only by the taps
// ky = ky0 + stride u with ky0 = (cy + pad) mod stride, from dy row a + offy - u with
// offy = (cy + pad - ky0) / stride. Within one class this is a stride-1 correlation with
// ceil((kh - ky0) / stride) taps per axis, so no multiply is wasted on taps that miss.
// Lane l of a subgroup owns 4 consecutive columns b of one row a of the class; the subgroup
// shares 8 * RM input channels, whose weights are loaded one per lane and broadcast. Along u and
// v the four dy values of a lane slide by one, so each tap loads one new value per lane.

fn dy_or0(rb: u32, ox: i32, row_ok: bool) -> f32 {
    let ok = row_ok && ox >= 0 && ox < i32(p.wo);
    return select(0.0, dy[rb + u32(select(0, ox, ok))], ok);
}

// acc[c] += w[c] * v for the 8 channels whose weights lanes 0..7 hold in wl.
fn bcast_fma8(acc: ptr<function, array<vec4<f32>, 8>>, wl: f32, v: vec4<f32>) {
    (*acc)[0] += subgroupBroadcast(wl, 0u) * v;
    (*acc)[1] += subgroupBroadcast(wl, 1u) * v;
    (*acc)[2] += subgroupBroadcast(wl, 2u) * v;
    (*acc)[3] += subgroupBroadcast(wl, 3u) * v;
    (*acc)[4] += subgroupBroadcast(wl, 4u) * v;
    (*acc)[5] += subgroupBroadcast(wl, 5u) * v;
    (*acc)[6] += subgroupBroadcast(wl, 6u) * v;
    (*acc)[7] += subgroupBroadcast(wl, 7u) * v;
}

fn store_px4(acc: array<vec4<f32>, 8>, ci0: u32, nimg: u32, a: u32, b0: u32) {
    let iy = p.cy + p.stride * a;
    for (var c = 0u; c < 8u; c++) {
        let ci = ci0 + c;
        if (ci >= p.ci) { return; }
        let rb = ((nimg * p.ci + ci) * p.h + iy) * p.w + p.cx;
        let v = acc[c];
        for (var j = 0u; j < 4u; j++) {
            if (b0 + j < p.wa) { store(rb + p.stride * (b0 + j), v[j]); }
        }
    }
}

// t0 = column chunks of 4 per class row (ceil(wa / 4)), t1 = all chunks (N * ha * t0),
// t2 = channel tiles, total = t2 * ceil(t1 / (8 * SG)).
@compute @workgroup_size(8 * SG)
fn vjp_any(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) sl: u32) {
    let flat = wid.x + wid.y * nwg.x;
    if (flat >= p.total) { return; }
    let ct = flat % p.t2;
    let chunk = (flat / p.t2) * 8u * SG + lid;
    // Lanes past the end compute a copy of the last chunk (they must run to feed the broadcasts).
    let c = min(chunk, p.t1 - 1u);
    let row = c / p.t0;
    let b0 = (c % p.t0) * 4u;
    let nimg = row / p.ha;
    let a = row % p.ha;
    let ci0 = ct * 8u * RM;
    let s = p.stride;
    let ky0 = (p.cy + p.pad) % s;
    let kx0 = (p.cx + p.pad) % s;
    let ku = (p.kh + s - 1u - ky0) / s;
    let kv = (p.kw + s - 1u - kx0) / s;
    let offy = i32((p.cy + p.pad - ky0) / s);
    // dy column of tap v for column b0 + j: b0 + offx - v + j.
    let ox0 = i32(b0 + (p.cx + p.pad - kx0) / s);
    let khw = p.kh * p.kw;
    let w_lo = min(ci0 + sl, p.ci - 1u) * khw;
    let w_hi = min(ci0 + 8u + sl, p.ci - 1u) * khw;
    var acc0: array<vec4<f32>, 8>;
    var acc1: array<vec4<f32>, 8>;
    for (var co = p.r0; co < p.r1; co++) {
        let plane = (nimg * p.co + co) * p.ho;
        let wco = co * p.ci * khw;
        for (var u = 0u; u < ku; u++) {
            let oy = i32(a) + offy - i32(u);
            let row_ok = oy >= 0 && oy < i32(p.ho);
            let rb = (plane + u32(clamp(oy, 0, i32(p.ho) - 1))) * p.wo;
            let wrow = wco + (ky0 + s * u) * p.kw + kx0;
            // The values at columns ox0 + 1..3 for tap v = 0; each tap prepends one more.
            var e1 = dy_or0(rb, ox0 + 1, row_ok);
            var e2 = dy_or0(rb, ox0 + 2, row_ok);
            var e3 = dy_or0(rb, ox0 + 3, row_ok);
            for (var v = 0u; v < kv; v++) {
                let e0 = dy_or0(rb, ox0 - i32(v), row_ok);
                let win = vec4(e0, e1, e2, e3);
                e3 = e2;
                e2 = e1;
                e1 = e0;
                let k = wrow + s * v;
                bcast_fma8(&acc0, wt[w_lo + k], win);
                if (RM == 2u) { bcast_fma8(&acc1, wt[w_hi + k], win); }
            }
        }
    }
    if (chunk >= p.t1) { return; }
    store_px4(acc0, ci0, nimg, a, b0);
    if (RM == 2u) { store_px4(acc1, ci0 + 8u, nimg, a, b0); }
}
