// VJP of QKVAttentionLegacy (attention.wgsl) with respect to all of qkv, flash-attention-2 style:
// nothing T x T is stored; the softmax weights are recomputed from per-query statistics.
//
// Per (sample, head), with q~ = q * scale, k~ = k * scale (scale = D^(-1/4)), w[t, s] = q~_t . k~_s,
// P = softmax over s, out_t = sum_s P[t, s] v_s and dO the cotangent of out:
//   dP[t, s] = dO_t . v_s,   delta_t = sum_s P[t, s] dP[t, s] (= dO_t . out_t),
//   dW[t, s] = P[t, s] (dP[t, s] - delta_t),
//   dq_t = scale * sum_s dW[t, s] k~_s,  dk_s = scale * sum_t dW[t, s] q~_t,  dv_s = sum_t P[t, s] dO_t.
// Three dispatches, in order:
//   stats: per query, lse_t = log sum_s exp(w[t, s]) and delta_t, by an online pass over keys that
//          accumulates sum_s exp(w - m) dP (a scalar, so out itself is never formed);
//   dkv:   per key, a pass over queries with P[t, s] = exp(w[t, s] - lse_t): dk and dv;
//   dq:    per query, a pass over keys: dq.
// lse and delta live in dqkv itself, in rows 0 and 1 of each head's dq block (so D >= 2): dkv
// reads them there without writing that block, and dq reads its own query's two values before it
// overwrites the query's column, all within one invocation.
//
// One invocation per row (query or key), WG rows per workgroup; the other side streams through
// workgroup memory BK rows at a time, and rows of a tile are taken 4 at a time with their scores
// as one vec4. Channels are vec4 (D padded to D4 * 4 with zeros). Mesa's llvmpipe stops all
// loops of an invocation after 65535 iterations in total; a pass makes about
// T * (2 * D4 + 1) / 4 + T / 4 of them (about 8.5 T at D = 64), so T up to ~7000.
//
// Bindings (group 0), all entry points: 0 params, 1 qkv (read), 2 dout (read), 3 dqkv (read_write).

// Channels per head (2 <= D <= DMAX4 * 4).
override D: u32 = 64u;
override D4: u32 = (D + 3u) / 4u;
const DMAX4: u32 = 16u;
// Rows per tile of the streamed side: a multiple of 4.
override BK: u32 = 32u;
const WG: u32 = 64u;
// Stands in for -inf: WGSL has no infinity literal.
const NEG_BIG: f32 = -3.0e38;

struct Params {
    tokens: u32,  // T
    heads: u32,
    scale: f32,   // D^(-1/4)
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> qkv: array<f32>;
@group(0) @binding(2) var<storage, read> dout: array<f32>;
@group(0) @binding(3) var<storage, read_write> dqkv: array<f32>;

// Tiles of the streamed side: rows [j * D4 + c4] of one operand in ta, of the other in tb.
var<workgroup> ta: array<vec4<f32>, D4 * BK>;
var<workgroup> tb: array<vec4<f32>, D4 * BK>;
// Per-query lse and delta of the tile (dkv only).
var<workgroup> t_lse: array<f32, BK>;
var<workgroup> t_delta: array<f32, BK>;

// Channels 4 * c4 .. 4 * c4 + 3 of row t of the [D, T] plane at `base` of `src`, times `mul`;
// zeros past D and past T (0 * uninitialised memory could be NaN).
fn load_qkv4(base: u32, c4: u32, t: u32, mul: f32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    if (t < p.tokens) {
        let c = 4u * c4;
        let at = base + c * p.tokens + t;
        v.x = qkv[at];
        if (c + 1u < D) { v.y = qkv[at + p.tokens]; }
        if (c + 2u < D) { v.z = qkv[at + 2u * p.tokens]; }
        if (c + 3u < D) { v.w = qkv[at + 3u * p.tokens]; }
    }
    return v * mul;
}

fn load_dout4(base: u32, c4: u32, t: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    if (t < p.tokens) {
        let c = 4u * c4;
        let at = base + c * p.tokens + t;
        v.x = dout[at];
        if (c + 1u < D) { v.y = dout[at + p.tokens]; }
        if (c + 2u < D) { v.z = dout[at + 2u * p.tokens]; }
        if (c + 3u < D) { v.w = dout[at + 3u * p.tokens]; }
    }
    return v;
}

fn store_dqkv4(base: u32, c4: u32, t: u32, v: vec4<f32>) {
    let c = 4u * c4;
    let at = base + c * p.tokens + t;
    dqkv[at] = v.x;
    if (c + 1u < D) { dqkv[at + p.tokens] = v.y; }
    if (c + 2u < D) { dqkv[at + 2u * p.tokens] = v.z; }
    if (c + 3u < D) { dqkv[at + 3u * p.tokens] = v.w; }
}

fn max4(v: vec4<f32>) -> f32 {
    return max(max(v.x, v.y), max(v.z, v.w));
}

// Offsets of the q, k, v planes of (sample, head) in qkv and dqkv, and of the head in dout.
struct Planes {
    q: u32,
    k: u32,
    v: u32,
    o: u32,
}

fn planes(n: u32, head: u32) -> Planes {
    let q = (n * p.heads + head) * 3u * D * p.tokens;
    return Planes(q, q + D * p.tokens, q + 2u * D * p.tokens, (n * p.heads + head) * D * p.tokens);
}

// Loads keys s0 .. s0 + BK: ta = k~, tb = v.
fn load_key_tile(pl: Planes, s0: u32, lid: u32) {
    for (var e = lid; e < D4 * BK; e += WG) {
        let j = e % BK;
        let c4 = e / BK;
        ta[j * D4 + c4] = load_qkv4(pl.k, c4, s0 + j, p.scale);
        tb[j * D4 + c4] = load_qkv4(pl.v, c4, s0 + j, 1.0);
    }
}

@compute @workgroup_size(WG)
fn stats(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t_len = p.tokens;
    let pl = planes(wid.z, wid.y);
    let t = wid.x * WG + lid;
    let live = t < t_len;
    var q: array<vec4<f32>, DMAX4>;
    var g: array<vec4<f32>, DMAX4>;
    for (var c4 = 0u; c4 < D4; c4++) {
        q[c4] = load_qkv4(pl.q, c4, t, p.scale);
        g[c4] = load_dout4(pl.o, c4, t);
    }
    var m = NEG_BIG;
    var l = 0.0;
    // sum_s exp(w - m) * dP[t, s]
    var acc = 0.0;
    let lane = vec4<u32>(0u, 1u, 2u, 3u);
    for (var s0 = 0u; s0 < t_len; s0 += BK) {
        load_key_tile(pl, s0, lid);
        workgroupBarrier();
        for (var j0 = 0u; j0 < BK; j0 += 4u) {
            var w = vec4<f32>(0.0);
            var dp = vec4<f32>(0.0);
            for (var c4 = 0u; c4 < D4; c4++) {
                let a = j0 * D4 + c4;
                let qq = q[c4];
                let gg = g[c4];
                w += vec4<f32>(dot(qq, ta[a]), dot(qq, ta[a + D4]), dot(qq, ta[a + 2u * D4]),
                               dot(qq, ta[a + 3u * D4]));
                dp += vec4<f32>(dot(gg, tb[a]), dot(gg, tb[a + D4]), dot(gg, tb[a + 2u * D4]),
                                dot(gg, tb[a + 3u * D4]));
            }
            let ok = (s0 + j0) + lane < vec4<u32>(t_len);
            w = select(vec4<f32>(NEG_BIG), w, ok);
            // Key 0 is in the first chunk, so m is finite from then on.
            let m_new = max(m, max4(w));
            let corr = exp(m - m_new);
            let e = select(vec4<f32>(0.0), exp(w - m_new), ok);
            l = l * corr + dot(e, vec4<f32>(1.0));
            acc = acc * corr + dot(e, dp);
            m = m_new;
        }
        // The next tile overwrites ta and tb.
        workgroupBarrier();
    }
    if (live) {
        dqkv[pl.q + t] = m + log(l);
        dqkv[pl.q + t_len + t] = acc / l;
    }
}

@compute @workgroup_size(WG)
fn dkv(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t_len = p.tokens;
    let pl = planes(wid.z, wid.y);
    // This invocation's key.
    let s = wid.x * WG + lid;
    var k: array<vec4<f32>, DMAX4>;
    var v: array<vec4<f32>, DMAX4>;
    var dk: array<vec4<f32>, DMAX4>;
    var dv: array<vec4<f32>, DMAX4>;
    for (var c4 = 0u; c4 < D4; c4++) {
        k[c4] = load_qkv4(pl.k, c4, s, p.scale);
        v[c4] = load_qkv4(pl.v, c4, s, 1.0);
        dk[c4] = vec4<f32>(0.0);
        dv[c4] = vec4<f32>(0.0);
    }
    let lane = vec4<u32>(0u, 1u, 2u, 3u);
    for (var t0 = 0u; t0 < t_len; t0 += BK) {
        // ta = q~, tb = dO of queries t0 .. t0 + BK, with their lse and delta.
        for (var e = lid; e < D4 * BK; e += WG) {
            let j = e % BK;
            let c4 = e / BK;
            ta[j * D4 + c4] = load_qkv4(pl.q, c4, t0 + j, p.scale);
            tb[j * D4 + c4] = load_dout4(pl.o, c4, t0 + j);
        }
        for (var j = lid; j < BK; j += WG) {
            let t = t0 + j;
            var lse = 0.0;
            var delta = 0.0;
            if (t < t_len) {
                lse = dqkv[pl.q + t];
                delta = dqkv[pl.q + t_len + t];
            }
            t_lse[j] = lse;
            t_delta[j] = delta;
        }
        workgroupBarrier();
        for (var j0 = 0u; j0 < BK; j0 += 4u) {
            var w = vec4<f32>(0.0);
            var dp = vec4<f32>(0.0);
            for (var c4 = 0u; c4 < D4; c4++) {
                let a = j0 * D4 + c4;
                let kk = k[c4];
                let vv = v[c4];
                w += vec4<f32>(dot(kk, ta[a]), dot(kk, ta[a + D4]), dot(kk, ta[a + 2u * D4]),
                               dot(kk, ta[a + 3u * D4]));
                dp += vec4<f32>(dot(vv, tb[a]), dot(vv, tb[a + D4]), dot(vv, tb[a + 2u * D4]),
                                dot(vv, tb[a + 3u * D4]));
            }
            let ok = (t0 + j0) + lane < vec4<u32>(t_len);
            let lse = vec4<f32>(t_lse[j0], t_lse[j0 + 1u], t_lse[j0 + 2u], t_lse[j0 + 3u]);
            let delta = vec4<f32>(t_delta[j0], t_delta[j0 + 1u], t_delta[j0 + 2u],
                                  t_delta[j0 + 3u]);
            let pr = select(vec4<f32>(0.0), exp(w - lse), ok);
            let ds = pr * (dp - delta);
            for (var c4 = 0u; c4 < D4; c4++) {
                let a = j0 * D4 + c4;
                dv[c4] += pr.x * tb[a] + pr.y * tb[a + D4] + pr.z * tb[a + 2u * D4]
                    + pr.w * tb[a + 3u * D4];
                dk[c4] += ds.x * ta[a] + ds.y * ta[a + D4] + ds.z * ta[a + 2u * D4]
                    + ds.w * ta[a + 3u * D4];
            }
        }
        workgroupBarrier();
    }
    if (s < t_len) {
        for (var c4 = 0u; c4 < D4; c4++) {
            store_dqkv4(pl.k, c4, s, dk[c4] * p.scale);
            store_dqkv4(pl.v, c4, s, dv[c4]);
        }
    }
}

@compute @workgroup_size(WG)
fn dq(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t_len = p.tokens;
    let pl = planes(wid.z, wid.y);
    let t = wid.x * WG + lid;
    let live = t < t_len;
    var q: array<vec4<f32>, DMAX4>;
    var g: array<vec4<f32>, DMAX4>;
    var acc: array<vec4<f32>, DMAX4>;
    for (var c4 = 0u; c4 < D4; c4++) {
        q[c4] = load_qkv4(pl.q, c4, t, p.scale);
        g[c4] = load_dout4(pl.o, c4, t);
        acc[c4] = vec4<f32>(0.0);
    }
    // Read before this invocation overwrites them below (they are in its own column).
    var lse = 0.0;
    var delta = 0.0;
    if (live) {
        lse = dqkv[pl.q + t];
        delta = dqkv[pl.q + t_len + t];
    }
    let lane = vec4<u32>(0u, 1u, 2u, 3u);
    for (var s0 = 0u; s0 < t_len; s0 += BK) {
        load_key_tile(pl, s0, lid);
        workgroupBarrier();
        for (var j0 = 0u; j0 < BK; j0 += 4u) {
            var w = vec4<f32>(0.0);
            var dp = vec4<f32>(0.0);
            for (var c4 = 0u; c4 < D4; c4++) {
                let a = j0 * D4 + c4;
                let qq = q[c4];
                let gg = g[c4];
                w += vec4<f32>(dot(qq, ta[a]), dot(qq, ta[a + D4]), dot(qq, ta[a + 2u * D4]),
                               dot(qq, ta[a + 3u * D4]));
                dp += vec4<f32>(dot(gg, tb[a]), dot(gg, tb[a + D4]), dot(gg, tb[a + 2u * D4]),
                                dot(gg, tb[a + 3u * D4]));
            }
            let ok = (s0 + j0) + lane < vec4<u32>(t_len);
            let ds = select(vec4<f32>(0.0), exp(w - lse), ok) * (dp - delta);
            for (var c4 = 0u; c4 < D4; c4++) {
                let a = j0 * D4 + c4;
                acc[c4] += ds.x * ta[a] + ds.y * ta[a + D4] + ds.z * ta[a + 2u * D4]
                    + ds.w * ta[a + 3u * D4];
            }
        }
        workgroupBarrier();
    }
    if (live) {
        for (var c4 = 0u; c4 < D4; c4++) {
            store_dqkv4(pl.q, c4, t, acc[c4] * p.scale);
        }
    }
}
