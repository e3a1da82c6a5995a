// guided-diffusion's QKVAttentionLegacy, flash style. qkv is [N, heads * 3 * D, T] with the
// channels of head h laid out as q (D), k (D), v (D); out is [N, heads * D, T].
//
// A workgroup owns BQ queries of one (sample, head) and has SPLITS invocations per query. Keys
// and values stream through workgroup memory BK at a time; within a tile, each of a query's
// SPLITS invocations takes KS = BK / SPLITS adjacent keys and keeps its own running max, sum and
// output accumulator (online softmax: weights are exp(score - running max), so no exp sees a
// positive argument and large logits cannot overflow). At the end the splits of a query are
// merged in a fixed order, so results are repeatable.
//
// Channels are handled as vec4 (D padded to D4 * 4 with zeros) and each invocation's KS = 8 keys
// per tile are written out explicitly. Besides being fewer instructions, this keeps the number of
// loop iterations per invocation small (about 40 per tile): Mesa's llvmpipe stops every loop of
// an invocation once it has run 65535 iterations in total, which a scalar loop over channels
// nested in a loop over keys would hit at T ~ 1000.
//
// Bindings (group 0): 0 params, 1 qkv (read), 2 out (read_write).

// Channels per head (<= DMAX4 * 4).
override D: u32 = 64u;
override D4: u32 = (D + 3u) / 4u;
const DMAX4: u32 = 16u;
// Queries per workgroup, invocations per query, keys per tile, keys per invocation per tile.
const BQ: u32 = 64u;
const SPLITS: u32 = 4u;
const BK: u32 = 32u;
const KS: u32 = 8u;
const WG: u32 = 256u; // BQ * SPLITS
// Stands in for -inf: WGSL has no infinity literal.
const NEG_BIG: f32 = -3.0e38;

struct Params {
    tokens: u32,   // T
    heads: u32,
    scale: f32,    // 1 / sqrt(sqrt(D)), applied to q and to k as the reference does
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> qkv: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

// The k tile at [key * D4 + c4], the v tile after it at [VOFF + key * D4 + c4]. After the key
// loop the same memory holds merged accumulators [query * D4 + c4] (BQ <= 2 * BK).
override VOFF: u32 = D4 * BK;
var<workgroup> kv: array<vec4<f32>, 2u * D4 * BK>;
var<workgroup> part_m: array<f32, BQ>;
var<workgroup> part_l: array<f32, BQ>;

fn max4(v: vec4<f32>) -> f32 {
    return max(max(v.x, v.y), max(v.z, v.w));
}

@compute @workgroup_size(WG)
fn attention_legacy(@builtin(workgroup_id) wid: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let t_len = p.tokens;
    let head = wid.y;
    let n = wid.z;
    let qi = lid % BQ;
    let split = lid / BQ;
    let qt = wid.x * BQ + qi;
    let live = qt < t_len;
    // Offsets of this head's q, k and v planes (D rows of T each).
    let q_base = (n * p.heads + head) * 3u * D * t_len;
    let k_base = q_base + D * t_len;
    let v_base = k_base + D * t_len;

    var q: array<vec4<f32>, DMAX4>;
    var acc: array<vec4<f32>, DMAX4>;
    for (var c4 = 0u; c4 < D4; c4++) {
        var v = vec4<f32>(0.0);
        for (var i = 0u; i < 4u; i++) {
            let c = c4 * 4u + i;
            if (live && c < D) {
                v[i] = qkv[q_base + c * t_len + qt] * p.scale;
            }
        }
        q[c4] = v;
        acc[c4] = vec4<f32>(0.0);
    }
    var m = NEG_BIG;
    var l = 0.0;
    // This invocation's first key inside a tile.
    let kb = split * KS;
    let lane_a = vec4<u32>(0u, 1u, 2u, 3u);

    for (var s0 = 0u; s0 < t_len; s0 += BK) {
        // Padded channels and keys past T are zeros: 0 * (uninitialised) could be NaN.
        for (var e = lid; e < D4 * 4u * BK; e += WG) {
            let c = e / BK;
            let j = e % BK;
            let s = s0 + j;
            var kval = 0.0;
            var vval = 0.0;
            if (c < D && s < t_len) {
                kval = qkv[k_base + c * t_len + s] * p.scale;
                vval = qkv[v_base + c * t_len + s];
            }
            kv[j * D4 + c / 4u][c % 4u] = kval;
            kv[VOFF + j * D4 + c / 4u][c % 4u] = vval;
        }
        workgroupBarrier();

        var sa = vec4<f32>(0.0);
        var sb = vec4<f32>(0.0);
        for (var c4 = 0u; c4 < D4; c4++) {
            let q4 = q[c4];
            let k0 = kb * D4 + c4;
            sa += vec4<f32>(dot(q4, kv[k0]), dot(q4, kv[k0 + D4]),
                            dot(q4, kv[k0 + 2u * D4]), dot(q4, kv[k0 + 3u * D4]));
            sb += vec4<f32>(dot(q4, kv[k0 + 4u * D4]), dot(q4, kv[k0 + 5u * D4]),
                            dot(q4, kv[k0 + 6u * D4]), dot(q4, kv[k0 + 7u * D4]));
        }
        let ok_a = (s0 + kb) + lane_a < vec4<u32>(t_len);
        let ok_b = (s0 + kb + 4u) + lane_a < vec4<u32>(t_len);
        sa = select(vec4<f32>(NEG_BIG), sa, ok_a);
        sb = select(vec4<f32>(NEG_BIG), sb, ok_b);
        // Stays NEG_BIG (and corr 1, weights 0) while this split has seen no valid key.
        let m_new = max(m, max(max4(sa), max4(sb)));
        let corr = exp(m - m_new);
        let pa = select(vec4<f32>(0.0), exp(sa - m_new), ok_a);
        let pb = select(vec4<f32>(0.0), exp(sb - m_new), ok_b);
        l = l * corr + dot(pa, vec4<f32>(1.0)) + dot(pb, vec4<f32>(1.0));
        for (var c4 = 0u; c4 < D4; c4++) {
            let v0 = VOFF + kb * D4 + c4;
            let a = pa.x * kv[v0] + pa.y * kv[v0 + D4] + pa.z * kv[v0 + 2u * D4]
                + pa.w * kv[v0 + 3u * D4];
            let b = pb.x * kv[v0 + 4u * D4] + pb.y * kv[v0 + 5u * D4]
                + pb.z * kv[v0 + 6u * D4] + pb.w * kv[v0 + 7u * D4];
            acc[c4] = acc[c4] * corr + (a + b);
        }
        m = m_new;
        // The next tile overwrites kv.
        workgroupBarrier();
    }

    // Merge splits 1.. into split 0, one at a time. Split 0 saw key 0, so its m is finite and
    // splits that saw no valid key (m = NEG_BIG, l = 0) get weight 0.
    for (var r = 1u; r < SPLITS; r++) {
        if (split == r) {
            part_m[qi] = m;
            part_l[qi] = l;
            for (var c4 = 0u; c4 < D4; c4++) {
                kv[qi * D4 + c4] = acc[c4];
            }
        }
        workgroupBarrier();
        if (split == 0u) {
            let mr = part_m[qi];
            let m_new = max(m, mr);
            let f0 = exp(m - m_new);
            let f1 = exp(mr - m_new);
            l = l * f0 + part_l[qi] * f1;
            for (var c4 = 0u; c4 < D4; c4++) {
                acc[c4] = acc[c4] * f0 + kv[qi * D4 + c4] * f1;
            }
            m = m_new;
        }
        workgroupBarrier();
    }
    if (split == 0u) {
        let inv = 1.0 / l;
        for (var c4 = 0u; c4 < D4; c4++) {
            kv[qi * D4 + c4] = acc[c4] * inv;
        }
    }
    workgroupBarrier();
    // All invocations write, consecutive ones to consecutive tokens.
    let o_base = (n * p.heads + head) * D * t_len + wid.x * BQ;
    for (var e = lid; e < D * BQ; e += WG) {
        let c = e / BQ;
        let i = e % BQ;
        if (wid.x * BQ + i < t_len) {
            out[o_base + c * t_len + i] = kv[i * D4 + c / 4u][c % 4u];
        }
    }
}
