// The reverse-diffusion step kernels of the samplers and of DPS guidance.
//
// Every per-step number (model timestep, Tweedie and posterior coefficients, log-variance
// bounds, noise gate) comes from a coefficient table on the GPU, one row of ROW floats per step
// in loop order (crates/equireg schedule.rs writes it), indexed by a step counter that also
// lives on the GPU and that `advance_step` increments. So every step records the same
// dispatches with the same params and bind groups: nothing is uploaded or read back per step.
//
// Row layout: 0 model timestep, 1 sqrt(1/abar), 2 sqrt(1/abar - 1), 3 coefficient of x0,
// 4 coefficient of x_t, 5 max log-variance, 6 min log-variance, 7 noise gate (0 or 1).
//
// Tensors: x, x0, noise, gradients [N, C, H, W]; the model output [N, MC, H, W] with MC = C
// (epsilon only) or 2C (epsilon then the learned-range variance values v in [-1, 1]).

override WG: u32 = 256u;
const ROW: u32 = 8u;

struct Params {
    total: u32,     // N * C * H * W
    hw: u32,        // H * W
    channels: u32,  // C
    model_channels: u32,
    steps: u32,     // rows in the table
    learned: u32,   // 1: mix the log-variance bounds with v; 0: they are equal
    clip: u32,      // 1: clamp x0 to [-1, 1]
    batch: u32,     // N
    zeta: f32,      // guidance step size
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

fn flat_index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.x + wid.y * nwg.x) * WG + lid;
}

// Row of the current step; a counter past the end stays on the last row rather than reading
// out of bounds.
fn row_base(step: u32) -> u32 {
    return min(step, p.steps - 1u) * ROW;
}

// Index of channel `c` of element i's pixel in a tensor with `ch` channels.
fn channel_index(i: u32, c: u32, ch: u32) -> u32 {
    let n = i / (p.channels * p.hw);
    return (n * ch + c) * p.hw + i % p.hw;
}

// ---- set_timesteps: t[n] = the current step's model timestep, for the UNet's embedding ----

@group(0) @binding(1) var<storage, read> ts_table: array<f32>;
@group(0) @binding(2) var<storage, read> ts_step: array<u32>;
@group(0) @binding(3) var<storage, read_write> ts_out: array<f32>;

@compute @workgroup_size(WG)
fn set_timesteps(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x < p.batch) {
        ts_out[gid.x] = ts_table[row_base(ts_step[0])];
    }
}

// ---- posterior_step: Tweedie x0 (clipped) and the ancestral / DDIM proposal x_prev ----

@group(0) @binding(1) var<storage, read> ps_table: array<f32>;
@group(0) @binding(2) var<storage, read> ps_step: array<u32>;
@group(0) @binding(3) var<storage, read> ps_x: array<f32>;
@group(0) @binding(4) var<storage, read> ps_model: array<f32>;
@group(0) @binding(5) var<storage, read> ps_noise: array<f32>;
@group(0) @binding(6) var<storage, read_write> ps_x0: array<f32>;
@group(0) @binding(7) var<storage, read_write> ps_prev: array<f32>;

@compute @workgroup_size(WG)
fn posterior_step(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.total) { return; }
    let r = row_base(ps_step[0]);
    let c = (i / p.hw) % p.channels;
    let x = ps_x[i];
    let eps = ps_model[channel_index(i, c, p.model_channels)];
    var x0 = ps_table[r + 1u] * x - ps_table[r + 2u] * eps;
    if (p.clip == 1u) { x0 = clamp(x0, -1.0, 1.0); }
    var frac = 1.0;
    if (p.learned == 1u) {
        frac = (ps_model[channel_index(i, c + p.channels, p.model_channels)] + 1.0) * 0.5;
    }
    let log_var = frac * ps_table[r + 5u] + (1.0 - frac) * ps_table[r + 6u];
    ps_x0[i] = x0;
    ps_prev[i] = ps_table[r + 3u] * x0 + ps_table[r + 4u] * x
        + ps_table[r + 7u] * exp(0.5 * log_var) * ps_noise[i];
}

// ---- loss_cotangent: d||r_n|| / d A(x0) = -r / ||r_n|| per sample (0 where r_n = 0) ----
// `total` is the residual's element count and `hw` its per-sample length here.

@group(0) @binding(1) var<storage, read> lc_residual: array<f32>;
@group(0) @binding(2) var<storage, read> lc_norm: array<f32>;
@group(0) @binding(3) var<storage, read_write> lc_out: array<f32>;

@compute @workgroup_size(WG)
fn loss_cotangent(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.total) { return; }
    let norm = lc_norm[i / p.hw];
    var g = 0.0;
    if (norm > 0.0) { g = -lc_residual[i] / norm; }
    lc_out[i] = g;
}

// ---- x0_cotangent: pull d loss / d x0 back through the clamp and Tweedie's formula ----
// x0 = clip(c1 x - c2 eps): d/dx = c1 m dx0 (written to `direct`), d/deps = -c2 m dx0 (written to
// the model-output cotangent's epsilon channels; its variance channels get 0, since the loss
// does not depend on them). m = 1 where -1 <= c1 x - c2 eps <= 1 (torch.clamp's gradient).

@group(0) @binding(1) var<storage, read> xc_table: array<f32>;
@group(0) @binding(2) var<storage, read> xc_step: array<u32>;
@group(0) @binding(3) var<storage, read> xc_x: array<f32>;
@group(0) @binding(4) var<storage, read> xc_model: array<f32>;
@group(0) @binding(5) var<storage, read> xc_dx0: array<f32>;
@group(0) @binding(6) var<storage, read_write> xc_dmodel: array<f32>;
@group(0) @binding(7) var<storage, read_write> xc_direct: array<f32>;

@compute @workgroup_size(WG)
fn x0_cotangent(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.total) { return; }
    let r = row_base(xc_step[0]);
    let c = (i / p.hw) % p.channels;
    let c1 = xc_table[r + 1u];
    let c2 = xc_table[r + 2u];
    let ei = channel_index(i, c, p.model_channels);
    let x0 = c1 * xc_x[i] - c2 * xc_model[ei];
    var g = xc_dx0[i];
    if (p.clip == 1u && (x0 < -1.0 || x0 > 1.0)) { g = 0.0; }
    xc_direct[i] = c1 * g;
    xc_dmodel[ei] = -c2 * g;
    if (p.model_channels != p.channels) {
        xc_dmodel[channel_index(i, c + p.channels, p.model_channels)] = 0.0;
    }
}

// ---- guided_update: x = x_prev - zeta (direct + through_unet) ----

@group(0) @binding(1) var<storage, read> gu_prev: array<f32>;
@group(0) @binding(2) var<storage, read> gu_direct: array<f32>;
@group(0) @binding(3) var<storage, read> gu_unet: array<f32>;
@group(0) @binding(4) var<storage, read_write> gu_x: array<f32>;

@compute @workgroup_size(WG)
fn guided_update(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.total) { return; }
    gu_x[i] = gu_prev[i] - p.zeta * (gu_direct[i] + gu_unet[i]);
}

// ---- advance_step: the step counter moves on by one ----

@group(0) @binding(1) var<storage, read_write> as_step: array<u32>;

@compute @workgroup_size(1)
fn advance_step() {
    // Reads p so that the entry's layout has the same binding 0 as the others.
    as_step[0] = as_step[0] + min(p.steps, 1u);
}
