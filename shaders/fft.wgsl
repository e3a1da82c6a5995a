// Mixed-radix Stockham autosort FFT along one axis of a batch of complex images stored as
// interleaved f32 pairs (array<vec2<f32>>), plus the fused shift/pad/magnitude kernels of the
// phase-retrieval operator.
//
// A "line" is one 1-D transform: `n` elements `inner` apart. Lines of the last axis have
// inner = 1; lines of the second-to-last axis have inner = W. Invocations vary fastest over the
// position inside `inner` so neighbouring invocations touch neighbouring memory on either axis.
//
// Stockham pass with radix R after earlier passes of total size ns (Govindaraju et al. 2008):
// for j in 0..n/R, k = j mod ns, the inputs are src[j + r n/R] (r < R), each multiplied by the
// twiddle w^(r k n/(ns R)) with w = exp(sign 2 pi i / n), then a length-R DFT; output q goes to
// (j / ns) ns R + k + q ns. After all passes the result is in natural order.
//
// The twiddle table holds (cos, sin)(2 pi m / n) for m < n, computed in f64 on the host: WGSL's
// sin/cos have no guaranteed accuracy. The sign of the sine selects forward or inverse.
//
// Binding layouts (group 0):
//   fft_r2 / fft_r3 / fft_r4 / fft_r5 / fft_generic: 0 params, 1 twiddles, 2 src, 3 dst
//   copy_complex:                                   0 params, 1 src, 2 dst
//   embed_real_shifted:                             0 shift params, 1 x (real), 2 out (complex)
//   shifted_magnitude:                              0 shift params, 1 z (complex), 2 y (real)
//   shifted_phase_vjp:                              0 shift params, 1 z, 2 dy (real), 3 out
//   crop_real_shifted:                              0 shift params, 1 g (complex), 2 dx (real)

override WG: u32 = 64u;

struct Params {
    n: u32,        // line length
    inner: u32,    // element stride of a line
    ns: u32,       // product of the radices of the earlier passes
    radix: u32,
    total: u32,    // invocations of this dispatch
    tw_off: u32,   // start of this axis's table inside the twiddle buffer
    sign: f32,     // -1 forward, +1 inverse
    scale: f32,    // applied to every output (1/sqrt(n) on the last pass of an axis, else 1)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> tw: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read> src: array<vec2<f32>>;
@group(0) @binding(3) var<storage, read_write> dst: array<vec2<f32>>;

fn flat_index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.x + wid.y * nwg.x) * WG + lid;
}

fn cmul(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> {
    return vec2<f32>(a.x * b.x - a.y * b.y, a.x * b.y + a.y * b.x);
}

// Multiplication by sign * i.
fn mul_si(a: vec2<f32>) -> vec2<f32> {
    return vec2<f32>(-p.sign * a.y, p.sign * a.x);
}

fn twiddle(m: u32) -> vec2<f32> {
    let t = tw[p.tw_off + m];
    return vec2<f32>(t.x, p.sign * t.y);
}

struct Unit {
    src0: u32,     // index of input r = 0
    dst0: u32,     // index of output q = 0
    src_step: u32, // distance between inputs r and r + 1
    dst_step: u32, // distance between outputs q and q + 1
    k: u32,
    tstep: u32,    // n / (ns R): twiddle index per unit of r k
}

// `j` is the butterfly index along the line, `line0` the index of the line's first element.
fn unit_of(line0: u32, j: u32) -> Unit {
    let m = p.n / p.radix;
    let k = j % p.ns;
    let out_j = (j / p.ns) * p.ns * p.radix + k;
    var u: Unit;
    u.src0 = line0 + j * p.inner;
    u.dst0 = line0 + out_j * p.inner;
    u.src_step = m * p.inner;
    u.dst_step = p.ns * p.inner;
    u.k = k;
    u.tstep = m / p.ns;
    return u;
}

// Invocation t -> (line start, butterfly j), with the inner position varying fastest.
fn butterfly_unit(t: u32) -> Unit {
    let m = p.n / p.radix;
    let w = t % p.inner;
    let rest = t / p.inner;
    let j = rest % m;
    let o = rest / m;
    return unit_of(o * p.n * p.inner + w, j);
}

// Input r of a butterfly, already multiplied by its twiddle.
fn load(u: Unit, r: u32) -> vec2<f32> {
    let v = src[u.src0 + r * u.src_step];
    if (r == 0u || u.k == 0u) { return v; }
    return cmul(v, twiddle(r * u.k * u.tstep));
}

@compute @workgroup_size(WG)
fn fft_r2(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let t = flat_index(wid, nwg, lid);
    if (t >= p.total) { return; }
    let u = butterfly_unit(t);
    let a0 = load(u, 0u);
    let a1 = load(u, 1u);
    dst[u.dst0] = (a0 + a1) * p.scale;
    dst[u.dst0 + u.dst_step] = (a0 - a1) * p.scale;
}

@compute @workgroup_size(WG)
fn fft_r3(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let t = flat_index(wid, nwg, lid);
    if (t >= p.total) { return; }
    let u = butterfly_unit(t);
    let a0 = load(u, 0u);
    let a1 = load(u, 1u);
    let a2 = load(u, 2u);
    let s = a1 + a2;
    let d = mul_si(a1 - a2) * 0.8660254037844386; // sin(2 pi / 3)
    let m = a0 - 0.5 * s;
    dst[u.dst0] = (a0 + s) * p.scale;
    dst[u.dst0 + u.dst_step] = (m + d) * p.scale;
    dst[u.dst0 + 2u * u.dst_step] = (m - d) * p.scale;
}

@compute @workgroup_size(WG)
fn fft_r4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let t = flat_index(wid, nwg, lid);
    if (t >= p.total) { return; }
    let u = butterfly_unit(t);
    let a0 = load(u, 0u);
    let a1 = load(u, 1u);
    let a2 = load(u, 2u);
    let a3 = load(u, 3u);
    let t0 = a0 + a2;
    let t1 = a0 - a2;
    let t2 = a1 + a3;
    let t3 = mul_si(a1 - a3);
    dst[u.dst0] = (t0 + t2) * p.scale;
    dst[u.dst0 + u.dst_step] = (t1 + t3) * p.scale;
    dst[u.dst0 + 2u * u.dst_step] = (t0 - t2) * p.scale;
    dst[u.dst0 + 3u * u.dst_step] = (t1 - t3) * p.scale;
}

@compute @workgroup_size(WG)
fn fft_r5(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let t = flat_index(wid, nwg, lid);
    if (t >= p.total) { return; }
    let u = butterfly_unit(t);
    let a0 = load(u, 0u);
    let a1 = load(u, 1u);
    let a2 = load(u, 2u);
    let a3 = load(u, 3u);
    let a4 = load(u, 4u);
    // cos and sin of 2 pi / 5 and 4 pi / 5
    let c1 = 0.30901699437494745;
    let c2 = -0.8090169943749475;
    let s1 = 0.9510565162951535;
    let s2 = 0.5877852522924731;
    let t1 = a1 + a4;
    let t2 = a2 + a3;
    let d1 = a1 - a4;
    let d2 = a2 - a3;
    let m1 = a0 + c1 * t1 + c2 * t2;
    let m2 = a0 + c2 * t1 + c1 * t2;
    let e1 = mul_si(s1 * d1 + s2 * d2);
    let e2 = mul_si(s2 * d1 - s1 * d2);
    dst[u.dst0] = (a0 + t1 + t2) * p.scale;
    dst[u.dst0 + u.dst_step] = (m1 + e1) * p.scale;
    dst[u.dst0 + 2u * u.dst_step] = (m2 + e2) * p.scale;
    dst[u.dst0 + 3u * u.dst_step] = (m2 - e2) * p.scale;
    dst[u.dst0 + 4u * u.dst_step] = (m1 - e1) * p.scale;
}

// Any radix: one invocation per output q of a butterfly, a direct length-R DFT. Twiddle and DFT
// factor combine into w^(r (k + q ns) n/(ns R)), so one table lookup per term.
@compute @workgroup_size(WG)
fn fft_generic(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let t = flat_index(wid, nwg, lid);
    if (t >= p.total) { return; }
    let m = p.n / p.radix;
    let w = t % p.inner;
    let rest = t / p.inner;
    let jq = rest % p.n;
    let o = rest / p.n;
    let q = jq / m;
    let u = unit_of(o * p.n * p.inner + w, jq % m);
    let step = (u.k + q * p.ns) * u.tstep; // < n
    var idx = 0u;
    var acc = vec2<f32>(0.0, 0.0);
    for (var r = 0u; r < p.radix; r++) {
        acc += cmul(src[u.src0 + r * u.src_step], twiddle(idx));
        idx += step;
        if (idx >= p.n) { idx -= p.n; }
    }
    dst[u.dst0 + q * u.dst_step] = acc * p.scale;
}

// ---- copy (lands an odd number of passes back in the caller's tensor) -------------------------
@group(0) @binding(1) var<storage, read> csrc: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read_write> cdst: array<vec2<f32>>;

@compute @workgroup_size(WG)
fn copy_complex(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let t = flat_index(wid, nwg, lid);
    if (t < p.total) { cdst[t] = csrc[t]; }
}

// ---- fused shifts ------------------------------------------------------------------------------
// A roll by s moves element i to (i + s) mod n; ifftshift rolls by -(n / 2), fftshift by n / 2.
// Small images [B, h, w] sit inside big ones [B, H, W] at (top, left) before the roll.

struct Shift {
    total: u32,  // invocations: one per element of the tensor named in each entry point
    h: u32,
    w: u32,
    big_h: u32,
    big_w: u32,
    top: u32,
    left: u32,
    sy: u32,     // roll along H, in [0, big_h)
    sx: u32,     // roll along W, in [0, big_w)
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> sp: Shift;

@group(0) @binding(1) var<storage, read> ex: array<f32>;
@group(0) @binding(2) var<storage, read_write> eout: array<vec2<f32>>;

// out[(i + sy) mod H, (j + sx) mod W] = (x padded)[i, j] + 0i, one invocation per output.
@compute @workgroup_size(WG)
fn embed_real_shifted(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    let t = flat_index(wid, nwg, lid);
    if (t >= sp.total) { return; }
    let plane = sp.big_h * sp.big_w;
    let b = t / plane;
    let pq = t % plane;
    // Position before the roll, then inside the small image.
    let i = (pq / sp.big_w + sp.big_h - sp.sy) % sp.big_h;
    let j = (pq % sp.big_w + sp.big_w - sp.sx) % sp.big_w;
    var v = 0.0;
    // Unsigned wrap-around makes indices above the image fail the < test too.
    let a = i - sp.top;
    let c = j - sp.left;
    if (i >= sp.top && j >= sp.left && a < sp.h && c < sp.w) {
        v = ex[(b * sp.h + a) * sp.w + c];
    }
    eout[t] = vec2<f32>(v, 0.0);
}

@group(0) @binding(1) var<storage, read> mz: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read_write> my: array<f32>;

// y[(i + sy) mod H, (j + sx) mod W] = |z[i, j]|, one invocation per output.
@compute @workgroup_size(WG)
fn shifted_magnitude(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let t = flat_index(wid, nwg, lid);
    if (t >= sp.total) { return; }
    let plane = sp.big_h * sp.big_w;
    let b = t / plane;
    let pq = t % plane;
    let i = (pq / sp.big_w + sp.big_h - sp.sy) % sp.big_h;
    let j = (pq % sp.big_w + sp.big_w - sp.sx) % sp.big_w;
    my[t] = length(mz[b * plane + i * sp.big_w + j]);
}

@group(0) @binding(1) var<storage, read> vz: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read> vdy: array<f32>;
@group(0) @binding(3) var<storage, read_write> vout: array<vec2<f32>>;

// The VJP of shifted_magnitude: out[i, j] = dy[(i + sy) mod H, (j + sx) mod W] z / |z|, and 0
// where z = 0 (the subgradient torch's abs uses there).
@compute @workgroup_size(WG)
fn shifted_phase_vjp(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let t = flat_index(wid, nwg, lid);
    if (t >= sp.total) { return; }
    let plane = sp.big_h * sp.big_w;
    let b = t / plane;
    let ij = t % plane;
    let i = (ij / sp.big_w + sp.sy) % sp.big_h;
    let j = (ij % sp.big_w + sp.sx) % sp.big_w;
    let z = vz[t];
    let r = length(z);
    var g = vec2<f32>(0.0, 0.0);
    if (r > 0.0) {
        g = z * (vdy[b * plane + i * sp.big_w + j] / r);
    }
    vout[t] = g;
}

@group(0) @binding(1) var<storage, read> cg: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read_write> cdx: array<f32>;

// The adjoint of embed_real_shifted: dx[a, c] = Re g[(a + top + sy) mod H, (c + left + sx) mod W],
// one invocation per element of dx.
@compute @workgroup_size(WG)
fn crop_real_shifted(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let t = flat_index(wid, nwg, lid);
    if (t >= sp.total) { return; }
    let plane = sp.h * sp.w;
    let b = t / plane;
    let ac = t % plane;
    let i = (ac / sp.w + sp.top + sp.sy) % sp.big_h;
    let j = (ac % sp.w + sp.left + sp.sx) % sp.big_w;
    cdx[t] = cg[(b * sp.big_h + i) * sp.big_w + j].x;
}
