// Channel concatenation out = [a, b] along dim 1 (the UNet's skip connections,
// torch.cat([h, skip], dim=1)), one invocation per output element. Each sample's output block
// is a's block (ca * inner elements) followed by b's (cb * inner).
//
// Bindings (group 0): 0 params, 1 a (read), 2 b (read), 3 out (read_write).
// (split_channels, at the end, reuses bindings 0..2 for its own globals.)
//
// concat_channels4 and split_channels4 are the same copies over vec4s, for planes of a multiple
// of 4 elements (every block and offset is then a whole number of vec4s; the params count
// vec4s): one load per 4 floats, and one index computation.

override WG: u32 = 256u;

struct Params {
    total: u32,    // output element count
    a_block: u32,  // Ca * inner
    b_block: u32,  // Cb * inner
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG)
fn concat_channels(@builtin(workgroup_id) wid: vec3<u32>,
                   @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + lid;
    if (i >= p.total) { return; }
    let block = p.a_block + p.b_block;
    let n = i / block;
    let r = i % block;
    if (r < p.a_block) {
        out[i] = a[n * p.a_block + r];
    } else {
        out[i] = b[n * p.b_block + (r - p.a_block)];
    }
}

@group(0) @binding(1) var<storage, read> a4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> out4: array<vec4<f32>>;

@compute @workgroup_size(WG)
fn concat_channels4(@builtin(workgroup_id) wid: vec3<u32>,
                    @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + lid;
    if (i >= p.total) { return; }
    let block = p.a_block + p.b_block;
    let n = i / block;
    let r = i % block;
    if (r < p.a_block) {
        out4[i] = a4[n * p.a_block + r];
    } else {
        out4[i] = b4[n * p.b_block + (r - p.a_block)];
    }
}

// out = x[:, start:start + C] (the VJP of concat_channels for one of its inputs): each sample's
// output block is the range [offset, offset + out_block) of its x block.
// Bindings (group 0): 0 split params, 1 x (read), 2 out (read_write).

struct SplitParams {
    total: u32,      // output element count
    out_block: u32,  // C * inner
    x_block: u32,    // Ctot * inner
    offset: u32,     // start * inner
}

@group(0) @binding(0) var<uniform> sp: SplitParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> split_out: array<f32>;

@compute @workgroup_size(WG)
fn split_channels(@builtin(workgroup_id) wid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + lid;
    if (i >= sp.total) { return; }
    let n = i / sp.out_block;
    split_out[i] = x[n * sp.x_block + sp.offset + i % sp.out_block];
}

@group(0) @binding(1) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> split_out4: array<vec4<f32>>;

@compute @workgroup_size(WG)
fn split_channels4(@builtin(workgroup_id) wid: vec3<u32>,
                   @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + lid;
    if (i >= sp.total) { return; }
    let n = i / sp.out_block;
    split_out4[i] = x4[n * sp.x_block + sp.offset + i % sp.out_block];
}
