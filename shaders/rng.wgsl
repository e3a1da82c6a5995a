// Counter-based random numbers: Philox4x32-10 (Salmon et al., SC'11). Stateless, so any element
// of a draw can be computed by any invocation, and a draw repeats bit for bit.
//
// Scheme (fixed; mirrored by reference/rng.rs): element i of a draw is word i % 4 of
//   philox4x32_10(counter = (i / 4, stream, offset, 0), key = (seed_lo, seed_hi)).
// One invocation computes one block of four elements.
//
// Binding layouts (group 0): 0 params, 1 out (read_write; f32, or u32 for rng_bits)

override WG: u32 = 256u;

const PHILOX_M0: u32 = 0xD2511F53u;
const PHILOX_M1: u32 = 0xCD9E8D57u;
const PHILOX_W0: u32 = 0x9E3779B9u;
const PHILOX_W1: u32 = 0xBB67AE85u;

// ln 2 split in two so that e * LN2_HI is exact (LN2_HI has 16 significant bits).
const LN2_HI: f32 = 0.693145751953125;
const LN2_LO: f32 = 1.4286068e-6;

// 2^-24: turns the top 24 bits of a word into an exact f32 in [0, 1).
const INV_2_24: f32 = 5.9604644775390625e-8;

// (high, low) words of the 64-bit product a * b. WGSL has no u64, so the high word is assembled
// from 16-bit halves; every partial sum below stays under 2^32.
fn mulhilo(a: u32, b: u32) -> vec2<u32> {
    let a0 = a & 0xFFFFu;
    let a1 = a >> 16u;
    let b0 = b & 0xFFFFu;
    let b1 = b >> 16u;
    let p00 = a0 * b0;
    let p01 = a0 * b1;
    let p10 = a1 * b0;
    // The three terms that reach bit 16 of the product: under 3 * 2^16, so no overflow.
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

// -2 ln(m * 2^-24) for m in [1, 2^24]. Written out rather than using the builtin log, whose
// WGSL accuracy bound (2^-21 absolute near 1) would swamp -2 ln u1 for u1 near 1 and could even
// make it negative. The mantissa is centred on 1 so that ln stays accurate to a few ulp
// relative: ln f = 2 atanh(s) with s = (f - 1) / (f + 1), |s| <= 0.172.
fn neg2_log_unit(m: u32) -> f32 {
    let x = f32(m) * INV_2_24; // exact: m has at most 25 significant bits and m = 2^24 is 1.0
    let bits = bitcast<u32>(x);
    var e = i32(bits >> 23u) - 127;
    var f = bitcast<f32>((bits & 0x007FFFFFu) | 0x3F800000u);
    if (f > 1.41421356) {
        f = f * 0.5;
        e = e + 1;
    }
    let d = f - 1.0; // exact (Sterbenz)
    let s = d / (2.0 + d);
    let z = s * s;
    let ln_f = 2.0 * s * (1.0 + z * (0.33333333 + z * (0.2 + z * (0.14285714 + z * 0.11111111))));
    let fe = f32(e);
    return -2.0 * (fe * LN2_HI + (fe * LN2_LO + ln_f));
}

// (cos, sin) of 2 pi m 2^-24 for m in [0, 2^24). The angle is an exact fraction of a turn, so
// the reduction to a quadrant plus [-pi/4, pi/4) is exact integer arithmetic; the builtins'
// WGSL bound (2^-11 absolute) is too loose, hence the polynomials (truncation < 2e-9).
fn cos_sin_turns(m: u32) -> vec2<f32> {
    let qf = (m + 0x200000u) >> 22u; // nearest quarter turn, 0..=4
    let r = i32(m) - i32(qf << 22u);  // in [-2^21, 2^21): at most an eighth of a turn
    let phi = f32(r) * 3.7450702829239286e-7; // 2 pi / 2^24
    let z = phi * phi;
    let s = phi * (1.0 + z * (-1.6666667e-1 + z * (8.3333333e-3 + z * (-1.9841270e-4
            + z * 2.7557319e-6))));
    let c = 1.0 + z * (-0.5 + z * (4.1666667e-2 + z * (-1.3888889e-3 + z * (2.4801587e-5
            - z * 2.7557319e-7))));
    switch qf & 3u {
        case 1u: { return vec2<f32>(-s, c); }
        case 2u: { return vec2<f32>(-c, -s); }
        case 3u: { return vec2<f32>(s, -c); }
        default: { return vec2<f32>(c, s); }
    }
}

struct Params {
    n: u32,       // element count
    blocks: u32,  // ceil(n / 4), passed in because n + 3 may overflow
    seed_lo: u32,
    seed_hi: u32,
    stream: u32,
    offset: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;

fn block_index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.x + wid.y * nwg.x) * WG + lid;
}

fn block_words_at(b: u32, offset: u32) -> vec4<u32> {
    return philox4x32_10(vec4<u32>(b, p.stream, offset, 0u), vec2<u32>(p.seed_lo, p.seed_hi));
}

fn block_words(b: u32) -> vec4<u32> {
    return block_words_at(b, p.offset);
}

// Uniform in [0, 1): the top 24 bits times 2^-24, exactly representable.
@compute @workgroup_size(WG)
fn rng_uniform(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let b = block_index(wid, nwg, lid);
    if (b >= p.blocks) { return; }
    let w = block_words(b);
    for (var q = 0u; q < 4u; q++) {
        let i = 4u * b + q;
        if (i < p.n) { out[i] = f32(w[q] >> 8u) * INV_2_24; }
    }
}

// Standard normal by Box-Muller on word pairs (0, 1) and (2, 3): u1 = ((w >> 8) + 1) 2^-24 is
// in (0, 1], so the log is finite; even elements take the cosine, odd ones the sine.
fn write_normals(b: u32, w: vec4<u32>) {
    for (var pair = 0u; pair < 2u; pair++) {
        let radius = sqrt(neg2_log_unit((w[2u * pair] >> 8u) + 1u));
        let cs = cos_sin_turns(w[2u * pair + 1u] >> 8u);
        let i = 4u * b + 2u * pair;
        if (i < p.n) { out[i] = radius * cs.x; }
        if (i + 1u < p.n) { out[i + 1u] = radius * cs.y; }
    }
}

@compute @workgroup_size(WG)
fn rng_normal(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let b = block_index(wid, nwg, lid);
    if (b >= p.blocks) { return; }
    write_normals(b, block_words(b));
}

// Per-item draws: the tensor is a batch of items of `item_len` elements (p.n counts them all),
// and element j of item k is element j of the draw with counter word 3 = p.first_item + k and
// offset p.offset + counter[0]. An item (an image of a batch) so gets the same numbers whatever
// its place in a batch, and `counter` is a value kernels on the GPU advance (the sampler's step
// index), so a loop draws fresh noise every step with identical params and bind groups.
// One element per invocation, because an item need not be a multiple of 4 elements long.
struct ItemParams {
    n: u32,
    item_len: u32,
    seed_lo: u32,
    seed_hi: u32,
    stream: u32,
    offset: u32,
    first_item: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> ip: ItemParams;
@group(0) @binding(1) var<storage, read_write> item_out: array<f32>;
@group(0) @binding(2) var<storage, read> counter: array<u32>;

@compute @workgroup_size(WG)
fn rng_normal_items(@builtin(workgroup_id) wid: vec3<u32>,
                    @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + lid;
    if (i >= ip.n) { return; }
    let j = i % ip.item_len;
    let w = philox4x32_10(
        vec4<u32>(j / 4u, ip.stream, ip.offset + counter[0], ip.first_item + i / ip.item_len),
        vec2<u32>(ip.seed_lo, ip.seed_hi));
    let pair = (j % 4u) / 2u;
    let radius = sqrt(neg2_log_unit((w[2u * pair] >> 8u) + 1u));
    let cs = cos_sin_turns(w[2u * pair + 1u] >> 8u);
    item_out[i] = select(radius * cs.y, radius * cs.x, j % 2u == 0u);
}

// The raw Philox words, for checks of the generator itself and for integer randomness.
@group(0) @binding(1) var<storage, read_write> out_bits: array<u32>;

@compute @workgroup_size(WG)
fn rng_bits(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let b = block_index(wid, nwg, lid);
    if (b >= p.blocks) { return; }
    let w = block_words(b);
    for (var q = 0u; q < 4u; q++) {
        let i = 4u * b + q;
        if (i < p.n) { out_bits[i] = w[q]; }
    }
}
