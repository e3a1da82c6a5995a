// Sinusoidal timestep embedding, guided-diffusion convention: with half = dim / 2,
// freq[i] = exp(-ln(10000) * i / half), out[n, :] = [cos(t[n] * freq), sin(t[n] * freq)], plus a
// zero column when dim is odd. One invocation per output element.
//
// The argument t * freq reaches ~1000 rad for t up to 999, where an f32 ulp is 6e-5 and the
// built-in exp/sin/cos carry no useful accuracy guarantee (WGSL only bounds sin/cos on [-pi, pi],
// and exp within 3 + 2|x| ulp). So freq and the argument are computed in f32 exactly as PyTorch
// does (f32 products and quotient), and exp, sin and cos are evaluated here with an exact
// Cody-Waite range reduction and Taylor polynomials, accurate to about an ulp on every device.
//
// Bindings (group 0): 0 params, 1 t [N] (read), 2 out [N, dim] (read_write).

override WG: u32 = 256u;

struct Params {
    total: u32,  // N * dim
    dim: u32,
    half: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> ts: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

// -ln(10000) rounded to f32, as PyTorch rounds the Python float.
const NEG_LN_MAX_PERIOD: f32 = -9.21034049987793;

// ln 2 = LN2_HI + LN2_LO, LN2_HI with 16 significant bits so k * LN2_HI is exact for |k| < 256.
const LOG2E: f32 = 1.4426950216293335;
const LN2_HI: f32 = 0.693145751953125;
const LN2_LO: f32 = 1.428606765330187e-06;

// pi/2 = PIO2_1 + PIO2_2 + PIO2_3, the first two with 12 significant bits so k * PIO2_1 and
// k * PIO2_2 are exact for |k| < 4096 (arguments up to ~6400 rad).
const TWO_OVER_PI: f32 = 0.6366197466850281;
const PIO2_1: f32 = 1.57080078125;
const PIO2_2: f32 = -4.453584551811218e-06;
const PIO2_3: f32 = -8.705515752716053e-10;

// exp(x) for moderate |x|: x = k ln2 + r with |r| <= ln2 / 2, exp(r) by Taylor to r^8 (the
// next term is below 3e-10).
fn exp_accurate(x: f32) -> f32 {
    let k = round(x * LOG2E);
    let r = (x - k * LN2_HI) - k * LN2_LO;
    var e = 1.0 / 40320.0;
    e = e * r + 1.0 / 5040.0;
    e = e * r + 1.0 / 720.0;
    e = e * r + 1.0 / 120.0;
    e = e * r + 1.0 / 24.0;
    e = e * r + 1.0 / 6.0;
    e = e * r + 0.5;
    e = e * r + 1.0;
    e = e * r + 1.0;
    return ldexp(e, i32(k));
}

// (cos(a), sin(a)): a = k pi/2 + r with |r| <= ~pi/4, then Taylor series in r (truncation
// below 1e-11) and the quadrant k mod 4.
fn cos_sin(a: f32) -> vec2<f32> {
    let k = round(a * TWO_OVER_PI);
    let r = ((a - k * PIO2_1) - k * PIO2_2) - k * PIO2_3;
    let r2 = r * r;
    var s = -1.0 / 39916800.0;
    s = s * r2 + 1.0 / 362880.0;
    s = s * r2 - 1.0 / 5040.0;
    s = s * r2 + 1.0 / 120.0;
    s = s * r2 - 1.0 / 6.0;
    s = r + r * r2 * s;
    var c = 1.0 / 479001600.0;
    c = c * r2 - 1.0 / 3628800.0;
    c = c * r2 + 1.0 / 40320.0;
    c = c * r2 - 1.0 / 720.0;
    c = c * r2 + 1.0 / 24.0;
    c = c * r2 - 0.5;
    c = 1.0 + r2 * c;
    switch (i32(k) & 3) {
        case 0: { return vec2<f32>(c, s); }
        case 1: { return vec2<f32>(-s, c); }
        case 2: { return vec2<f32>(-c, -s); }
        default: { return vec2<f32>(s, -c); }
    }
}

@compute @workgroup_size(WG)
fn timestep_embedding(@builtin(workgroup_id) wid: vec3<u32>,
                      @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    let idx = (wid.x + wid.y * nwg.x) * WG + lid;
    if (idx >= p.total) { return; }
    let row = idx / p.dim;
    let j = idx % p.dim;
    if (j >= 2u * p.half) {
        out[idx] = 0.0;
        return;
    }
    let i = select(j, j - p.half, j >= p.half);
    let freq = exp_accurate(NEG_LN_MAX_PERIOD * f32(i) / f32(p.half));
    let cs = cos_sin(ts[row] * freq);
    out[idx] = select(cs.x, cs.y, j >= p.half);
}
