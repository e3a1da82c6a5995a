// One 2-D kernel K [kh, kw] (odd sizes) shared by every plane of [P, H, W], applied as a
// cross-correlation over the input reflect-padded by (ph, pw) = (kh/2, kw/2) (torch
// ReflectionPad2d: padded index -1 reads 1, H reads H-2; the host checks ph < H, pw < W), and
// the exact adjoint of that map.
//
// The adjoint is a gather, not a scatter, so it needs no atomics: input pixel u receives from
// every padded position that reflects onto it (u itself, -u when u <= ph, 2(H-1)-u when
// u >= H-1-ph: at most three per axis when the pad is close to the side), and the value at a
// padded position q is the correlation of dy (zero outside the image) with the flipped kernel.
// Tap ranges are clipped to the rows and columns of dy that exist, so an invocation runs at most
// 9 * kh * kw taps (the host bounds kh * kw so that stays under lavapipe's loop limit).
//
// Bindings (group 0), both entry points: 0 params, 1 input (read: x or dy), 2 kernel (read),
// 3 out (read_write: y or dx).

override WG: u32 = 256u;

struct Params {
    n: u32,   // element count of input and output
    h: u32,
    w: u32,
    kh: u32,
    kw: u32,
    ph: u32,
    pw: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;

// ReflectionPad2d's index map for a padded index i in [-(n-1), 2n-2].
fn reflect(i: i32, n: i32) -> i32 {
    if (i < 0) { return -i; }
    if (i >= n) { return 2 * n - 2 - i; }
    return i;
}

@compute @workgroup_size(WG)
fn depthwise_conv(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let idx = (wid.x + wid.y * nwg.x) * WG + lid;
    if (idx >= p.n) { return; }
    let h = i32(p.h);
    let w = i32(p.w);
    let x = i32(idx % p.w);
    let y = i32((idx / p.w) % p.h);
    let base = (idx / (p.w * p.h)) * p.h * p.w;
    let y0 = y - i32(p.ph);
    let x0 = x - i32(p.pw);
    // Away from the left and right edges the columns need no reflection.
    let interior = x0 >= 0 && x0 + i32(p.kw) <= w;
    var acc = 0.0;
    for (var a = 0u; a < p.kh; a++) {
        let row = base + u32(reflect(y0 + i32(a), h)) * p.w;
        let krow = a * p.kw;
        if (interior) {
            let start = row + u32(x0);
            for (var b = 0u; b < p.kw; b++) {
                acc += k[krow + b] * src[start + b];
            }
        } else {
            for (var b = 0u; b < p.kw; b++) {
                acc += k[krow + b] * src[row + u32(reflect(x0 + i32(b), w))];
            }
        }
    }
    dst[idx] = acc;
}

// The padded positions (at most 3) that ReflectionPad2d maps onto index u of a side n, pad pad.
struct Preimages {
    q: array<i32, 3>,
    count: u32,
}

fn preimages(u: i32, n: i32, pad: i32) -> Preimages {
    var r: Preimages;
    r.q[0] = u;
    r.count = 1u;
    if (u >= 1 && u <= pad) {
        r.q[r.count] = -u;
        r.count += 1u;
    }
    if (u <= n - 2 && u >= n - 1 - pad) {
        r.q[r.count] = 2 * (n - 1) - u;
        r.count += 1u;
    }
    return r;
}

@compute @workgroup_size(WG)
fn depthwise_conv_vjp(@builtin(workgroup_id) wid: vec3<u32>,
                      @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    let idx = (wid.x + wid.y * nwg.x) * WG + lid;
    if (idx >= p.n) { return; }
    let h = i32(p.h);
    let w = i32(p.w);
    let ph = i32(p.ph);
    let pw = i32(p.pw);
    let kh = i32(p.kh);
    let kw = i32(p.kw);
    let base = (idx / (p.w * p.h)) * p.h * p.w;
    let py = preimages(i32((idx / p.w) % p.h), h, ph);
    let px = preimages(i32(idx % p.w), w, pw);
    var acc = 0.0;
    for (var iy = 0u; iy < py.count; iy++) {
        // Output row y = q + ph - a must lie in [0, h).
        let qy = py.q[iy] + ph;
        let a_lo = max(0, qy - (h - 1));
        let a_hi = min(kh - 1, qy);
        for (var ix = 0u; ix < px.count; ix++) {
            let qx = px.q[ix] + pw;
            let b_lo = max(0, qx - (w - 1));
            let b_hi = min(kw - 1, qx);
            for (var a = a_lo; a <= a_hi; a++) {
                let row = base + u32(qy - a) * p.w;
                let krow = u32(a * kw);
                for (var b = b_lo; b <= b_hi; b++) {
                    acc += k[krow + u32(b)] * src[row + u32(qx - b)];
                }
            }
        }
    }
    dst[idx] = acc;
}
