// The Darcy PDE residual of a joint field and its gradient (FunDPS's form, as a penalty of the
// guidance): with a and u the physical fields of x = [N, 2, H, W] (a = ma + sa x[:, 0],
// u = mu + su x[:, 1]), central differences Dx f(i, j) = (f(i, j+1) - f(i, j-1)) / (2h) along
// columns and Dy along rows, zero outside the grid,
//
//   r = Dx(a Dx u) + Dy(a Dy u) + 1            on the interior [crop, H - crop) x [crop, W - crop)
//   L = weight * mean over the interior of psi(r), psi = Huber(delta) or r^2 (delta = 0)
//
//   residual: r and g = dL/dr = weight psi'(r) / count (0 outside the interior)
//   adjoint:  s = (Dx^T g, Dy^T g), Dx^T f(i, j) = (f(i, j-1) - f(i, j+1)) / (2h)
//   grad:     dx[:, 0] += sa (s_x Dx u + s_y Dy u);
//             dx[:, 1] += su (Dx^T(a s_x) + Dy^T(a s_y))
//
// One invocation per pixel of the batch; every pass gathers, none scatters.
//
// Bindings (group 0):
//   darcy_residual: 0 params, 1 x (read), 2 r (read_write, [N, H, W]), 3 g (read_write, [N, H, W])
//   darcy_adjoint:  0 params, 1 g (read), 2 s (read_write, [N, 2, H, W])
//   darcy_grad:     0 params, 1 x (read), 2 s (read), 3 dx (read_write, [N, 2, H, W])

override WG: u32 = 256u;

struct Params {
    n: u32,       // batch
    h: u32,
    w: u32,
    crop: u32,
    count: f32,   // interior pixels per sample
    inv2h: f32,   // 1 / (2 * grid spacing)
    ma: f32,
    sa: f32,
    mu: f32,
    su: f32,
    weight: f32,
    delta: f32,   // Huber threshold; 0: squared loss
}

@group(0) @binding(0) var<uniform> p: Params;

fn flat_index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.x + wid.y * nwg.x) * WG + lid;
}

fn inside(i: i32, j: i32) -> bool {
    return i >= 0 && j >= 0 && i < i32(p.h) && j < i32(p.w);
}

// ---- residual ------------------------------------------------------------------------------

@group(0) @binding(1) var<storage, read> rx: array<f32>;
@group(0) @binding(2) var<storage, read_write> r_out: array<f32>;
@group(0) @binding(3) var<storage, read_write> g_out: array<f32>;

fn ra(b: u32, i: i32, j: i32) -> f32 {
    if (!inside(i, j)) { return 0.0; }
    return p.ma + p.sa * rx[(b * 2u) * p.h * p.w + u32(i) * p.w + u32(j)];
}

fn ru(b: u32, i: i32, j: i32) -> f32 {
    if (!inside(i, j)) { return 0.0; }
    return p.mu + p.su * rx[(b * 2u + 1u) * p.h * p.w + u32(i) * p.w + u32(j)];
}

// a * Dx u and a * Dy u at (i, j); 0 outside the grid (the zero padding of the outer difference).
fn flux_x(b: u32, i: i32, j: i32) -> f32 {
    if (!inside(i, j)) { return 0.0; }
    return ra(b, i, j) * (ru(b, i, j + 1) - ru(b, i, j - 1)) * p.inv2h;
}

fn flux_y(b: u32, i: i32, j: i32) -> f32 {
    if (!inside(i, j)) { return 0.0; }
    return ra(b, i, j) * (ru(b, i + 1, j) - ru(b, i - 1, j)) * p.inv2h;
}

@compute @workgroup_size(WG)
fn darcy_residual(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let k = flat_index(wid, nwg, lid);
    let plane = p.h * p.w;
    if (k >= p.n * plane) { return; }
    let b = k / plane;
    let i = i32((k % plane) / p.w);
    let j = i32(k % p.w);
    let c = i32(p.crop);
    if (i < c || j < c || i >= i32(p.h) - c || j >= i32(p.w) - c) {
        r_out[k] = 0.0;
        g_out[k] = 0.0;
        return;
    }
    let r = (flux_x(b, i, j + 1) - flux_x(b, i, j - 1)) * p.inv2h
          + (flux_y(b, i + 1, j) - flux_y(b, i - 1, j)) * p.inv2h + 1.0;
    var d = 2.0 * r;
    if (p.delta > 0.0) {
        d = clamp(r, -p.delta, p.delta);
    }
    r_out[k] = r;
    g_out[k] = p.weight * d / p.count;
}

// ---- adjoint of the outer differences --------------------------------------------------------

@group(0) @binding(1) var<storage, read> ag: array<f32>;
@group(0) @binding(2) var<storage, read_write> s_out: array<f32>;

fn gv(b: u32, i: i32, j: i32) -> f32 {
    if (!inside(i, j)) { return 0.0; }
    return ag[b * p.h * p.w + u32(i) * p.w + u32(j)];
}

@compute @workgroup_size(WG)
fn darcy_adjoint(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let k = flat_index(wid, nwg, lid);
    let plane = p.h * p.w;
    if (k >= p.n * plane) { return; }
    let b = k / plane;
    let q = k % plane;
    let i = i32(q / p.w);
    let j = i32(q % p.w);
    s_out[(b * 2u) * plane + q] = (gv(b, i, j - 1) - gv(b, i, j + 1)) * p.inv2h;
    s_out[(b * 2u + 1u) * plane + q] = (gv(b, i - 1, j) - gv(b, i + 1, j)) * p.inv2h;
}

// ---- gradient with respect to x --------------------------------------------------------------

@group(0) @binding(1) var<storage, read> gx: array<f32>;
@group(0) @binding(2) var<storage, read> gs: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;

fn ga(b: u32, i: i32, j: i32) -> f32 {
    if (!inside(i, j)) { return 0.0; }
    return p.ma + p.sa * gx[(b * 2u) * p.h * p.w + u32(i) * p.w + u32(j)];
}

fn gu(b: u32, i: i32, j: i32) -> f32 {
    if (!inside(i, j)) { return 0.0; }
    return p.mu + p.su * gx[(b * 2u + 1u) * p.h * p.w + u32(i) * p.w + u32(j)];
}

fn s(b: u32, axis: u32, i: i32, j: i32) -> f32 {
    if (!inside(i, j)) { return 0.0; }
    return gs[(b * 2u + axis) * p.h * p.w + u32(i) * p.w + u32(j)];
}

@compute @workgroup_size(WG)
fn darcy_grad(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let k = flat_index(wid, nwg, lid);
    let plane = p.h * p.w;
    if (k >= p.n * plane) { return; }
    let b = k / plane;
    let q = k % plane;
    let i = i32(q / p.w);
    let j = i32(q % p.w);
    let dux = (gu(b, i, j + 1) - gu(b, i, j - 1)) * p.inv2h;
    let duy = (gu(b, i + 1, j) - gu(b, i - 1, j)) * p.inv2h;
    let da = s(b, 0u, i, j) * dux + s(b, 1u, i, j) * duy;
    let du = (ga(b, i, j - 1) * s(b, 0u, i, j - 1) - ga(b, i, j + 1) * s(b, 0u, i, j + 1)) * p.inv2h
           + (ga(b, i - 1, j) * s(b, 1u, i - 1, j) - ga(b, i + 1, j) * s(b, 1u, i + 1, j)) * p.inv2h;
    dx[(b * 2u) * plane + q] += p.sa * da;
    dx[(b * 2u + 1u) * plane + q] += p.su * du;
}
