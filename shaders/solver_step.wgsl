// The step kernels shared by the posterior samplers of crates/equireg/src/solvers: the model
// timestep of the current step, Tweedie's clean estimate, and one general affine update
//
//     x_next = A x0 + B x + C eps + D z + E g
//
// with every coefficient read from a step table on the GPU (one row of ROW floats per network
// evaluation, in loop order), indexed by a step counter that also lives on the GPU. The column
// of each named coefficient is an override constant set from the Rust enum
// `equireg_gpu::ops::solver_step::Column`, so the layout has one definition.
//
// Tensors: x, x0, z, g, out [N, C, H, W]; the model output [N, MC, H, W] with MC = C (epsilon)
// or 2C (epsilon, then learned-variance channels, which these kernels ignore).

override WG: u32 = 256u;
override ROW: u32 = 8u;
override COL_T: u32 = 0u;
override COL_C1: u32 = 1u;
override COL_C2: u32 = 2u;
override COL_A: u32 = 3u;
override COL_B: u32 = 4u;
override COL_C: u32 = 5u;
override COL_D: u32 = 6u;
override COL_E: u32 = 7u;

struct Params {
    total: u32,     // N * C * H * W (set_timesteps: N)
    hw: u32,        // H * W
    channels: u32,  // C
    model_channels: u32,
    steps: u32,     // rows in the table
    clip: u32,      // tweedie: 1 clamps x0 to [-1, 1]
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

fn flat_index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.x + wid.y * nwg.x) * WG + lid;
}

// Start of the current row; a counter past the end stays on the last row.
fn row_base(step: u32) -> u32 {
    return min(step, p.steps - 1u) * ROW;
}

// Index of the epsilon value of element i in a model output with `model_channels` channels.
fn eps_index(i: u32) -> u32 {
    let n = i / (p.channels * p.hw);
    let c = (i / p.hw) % p.channels;
    return (n * p.model_channels + c) * p.hw + i % p.hw;
}

// ---- step_timesteps: t[n] = the current row's model timestep ----

@group(0) @binding(1) var<storage, read> st_table: array<f32>;
@group(0) @binding(2) var<storage, read> st_step: array<u32>;
@group(0) @binding(3) var<storage, read_write> st_out: array<f32>;

@compute @workgroup_size(WG)
fn step_timesteps(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x < p.total) {
        st_out[gid.x] = st_table[row_base(st_step[0]) + COL_T];
    }
}

// ---- tweedie: x0 = C1 x - C2 eps, clamped to [-1, 1] when clip = 1 ----

@group(0) @binding(1) var<storage, read> tw_table: array<f32>;
@group(0) @binding(2) var<storage, read> tw_step: array<u32>;
@group(0) @binding(3) var<storage, read> tw_x: array<f32>;
@group(0) @binding(4) var<storage, read> tw_model: array<f32>;
@group(0) @binding(5) var<storage, read_write> tw_x0: array<f32>;

@compute @workgroup_size(WG)
fn tweedie(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.total) { return; }
    let r = row_base(tw_step[0]);
    var x0 = tw_table[r + COL_C1] * tw_x[i] - tw_table[r + COL_C2] * tw_model[eps_index(i)];
    if (p.clip == 1u) { x0 = clamp(x0, -1.0, 1.0); }
    tw_x0[i] = x0;
}

// ---- affine_update: out = A x0 + B x + C eps + D z + E g ----

@group(0) @binding(1) var<storage, read> au_table: array<f32>;
@group(0) @binding(2) var<storage, read> au_step: array<u32>;
@group(0) @binding(3) var<storage, read> au_x0: array<f32>;
@group(0) @binding(4) var<storage, read> au_x: array<f32>;
@group(0) @binding(5) var<storage, read> au_model: array<f32>;
@group(0) @binding(6) var<storage, read> au_z: array<f32>;
@group(0) @binding(7) var<storage, read> au_g: array<f32>;
@group(0) @binding(8) var<storage, read_write> au_out: array<f32>;

@compute @workgroup_size(WG)
fn affine_update(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.total) { return; }
    let r = row_base(au_step[0]);
    au_out[i] = au_table[r + COL_A] * au_x0[i] + au_table[r + COL_B] * au_x[i]
        + au_table[r + COL_C] * au_model[eps_index(i)] + au_table[r + COL_D] * au_z[i]
        + au_table[r + COL_E] * au_g[i];
}

// ---- adam_step: one torch.optim.Adam step (no weight decay) on u with gradient g ----
// t = iter[0] + 1; m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
// u -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps), in torch's order of operations.

struct AdamParams {
    total: u32,
    per_sample: u32,  // adam_step_masked: values per sample (C * H * W)
    ln_beta1: f32,    // ln(beta1), ln(beta2) from the host in f64: the bias corrections
    ln_beta2: f32,    // 1 - beta^t need them where beta^t is close to 1
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
}

@group(0) @binding(0) var<uniform> ap: AdamParams;
@group(0) @binding(1) var<storage, read> ad_iter: array<u32>;
@group(0) @binding(2) var<storage, read> ad_g: array<f32>;
@group(0) @binding(3) var<storage, read_write> ad_m: array<f32>;
@group(0) @binding(4) var<storage, read_write> ad_v: array<f32>;
@group(0) @binding(5) var<storage, read_write> ad_u: array<f32>;
@group(0) @binding(6) var<storage, read> ad_active: array<f32>;

// 1 - beta^t = -expm1(t ln beta), by its series where t ln beta is small: pow(0.999, 1) in
// f32 leaves 1 - beta^t with a relative error near 1e-4, and the step inherits it.
fn one_minus_pow(ln_beta: f32, t: f32) -> f32 {
    let x = t * ln_beta;
    if (abs(x) < 0.01) {
        return -x * (1.0 + x * (0.5 + x * (1.0 / 6.0 + x / 24.0)));
    }
    return 1.0 - exp(x);
}

fn adam_at(i: u32) {
    let t = f32(ad_iter[0] + 1u);
    let g = ad_g[i];
    let m = ap.beta1 * ad_m[i] + (1.0 - ap.beta1) * g;
    let v = ap.beta2 * ad_v[i] + (1.0 - ap.beta2) * g * g;
    ad_m[i] = m;
    ad_v[i] = v;
    let bc1 = one_minus_pow(ap.ln_beta1, t);
    let bc2 = one_minus_pow(ap.ln_beta2, t);
    let denom = sqrt(v) / sqrt(bc2) + ap.eps;
    ad_u[i] = ad_u[i] - (ap.lr / bc1) * (m / denom);
}

@compute @workgroup_size(WG)
fn adam_step(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + lid;
    if (i >= ap.total) { return; }
    adam_at(i);
}

// ---- adam_step_masked: adam_step for the samples whose active flag is not 0 ----
// An inactive sample's u, m and v are left as they are (its inner loop has stopped).

@compute @workgroup_size(WG)
fn adam_step_masked(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + lid;
    if (i >= ap.total) { return; }
    if (ad_active[i / ap.per_sample] == 0.0) { return; }
    adam_at(i);
}

// ---- stop_flags: a sample stops (active 0, for good) once its loss falls below a threshold ----
// loss = norm^2 (norm: the per-sample residual L2 norm); active[n] = 0 where loss < threshold.

struct StopParams {
    items: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
    threshold: f32,
    _pad3: f32,
    _pad4: f32,
    _pad5: f32,
}

@group(0) @binding(0) var<uniform> sf: StopParams;
@group(0) @binding(1) var<storage, read> sf_norm: array<f32>;
@group(0) @binding(2) var<storage, read_write> sf_active: array<f32>;

@compute @workgroup_size(64)
fn stop_flags(@builtin(global_invocation_id) gid: vec3<u32>) {
    let n = gid.x;
    if (n >= sf.items) { return; }
    let r = sf_norm[n];
    if (r * r < sf.threshold) { sf_active[n] = 0.0; }
}

// ---- reset_counter: a GPU step counter back to 0 (a fresh inner optimisation) ----

@group(0) @binding(0) var<storage, read_write> rc_counter: array<u32>;

@compute @workgroup_size(1)
fn reset_counter() {
    rc_counter[0] = 0u;
}
