//! Batched matmul with optionally transposed operands, and `linear` (PyTorch layout). Both run
//! one strided GEMM kernel, shared with the 1x1 convolutions of [`super::conv`]:
//! - `matmul.wgsl::gemm`: portable, workgroup-memory tiles and 4x4 register blocks;
//! - `conv2d.wgsl::gemm_sg`: for adapters whose subgroups are exactly 8 wide (lavapipe), no
//!   workgroup memory, operands shared through subgroup broadcasts.

use bytemuck::{Pod, Zeroable};

use super::{expect_disjoint, expect_f32, to_u32};
use crate::error::{GpuError, Result};
use crate::kernels::{Bind, Kernel};
use crate::recorder::Recorder;
use crate::tensor::Tensor;

/// Which kernel family runs an op.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KernelPath {
    /// `Subgroup8` when the adapter has subgroups of exactly 8 invocations, else `Portable`.
    #[default]
    Auto,
    /// The workgroup-memory tiled kernels of `matmul.wgsl` (no optional feature needed).
    Portable,
    /// The subgroup-broadcast kernels of `conv2d.wgsl`; an error on other adapters.
    Subgroup8,
}

impl KernelPath {
    /// Resolves `Auto` for the adapter of `rec`; `true` means the subgroup kernels.
    pub(crate) fn use_subgroups(self, op: &'static str, rec: &Recorder) -> Result<bool> {
        let caps = rec.gpu().caps();
        let available = caps.subgroup && caps.subgroup_min_size == 8 && caps.subgroup_max_size == 8;
        match self {
            KernelPath::Auto => Ok(available),
            KernelPath::Portable => Ok(false),
            KernelPath::Subgroup8 if available => Ok(true),
            KernelPath::Subgroup8 => Err(GpuError::shape(
                op,
                format!(
                    "the subgroup kernels need subgroups of exactly 8 invocations; the adapter \
                     has subgroups {} with sizes {}..{}",
                    if caps.subgroup { "on" } else { "off" },
                    caps.subgroup_min_size,
                    caps.subgroup_max_size
                ),
            )),
        }
    }
}

pub(crate) const HAS_BIAS: u32 = 1;
pub(crate) const HAS_RES: u32 = 2;

/// Mirrors `GemmParams` of both shader files.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub(crate) struct GemmParams {
    pub m: u32,
    pub n: u32,
    pub k: u32,
    pub batch: u32,
    pub a_sb: u32,
    pub a_sm: u32,
    pub a_sk: u32,
    pub b_sb: u32,
    pub b_sk: u32,
    pub b_sn: u32,
    pub o_sb: u32,
    pub o_sm: u32,
    pub o_sn: u32,
    pub bias_sm: u32,
    pub bias_sn: u32,
    pub flags: u32,
    pub tiles_n: u32,
    pub tiles_m: u32,
    pub total: u32,
    pub _pad: u32,
}

impl GemmParams {
    /// The same product computed as out^T = b^T a^T: rows and columns trade places.
    fn transposed(self) -> GemmParams {
        GemmParams {
            m: self.n,
            n: self.m,
            a_sb: self.b_sb,
            a_sm: self.b_sn,
            a_sk: self.b_sk,
            b_sb: self.a_sb,
            b_sk: self.a_sk,
            b_sn: self.a_sm,
            o_sm: self.o_sn,
            o_sn: self.o_sm,
            bias_sm: self.bias_sn,
            bias_sn: self.bias_sm,
            ..self
        }
    }
}

/// Workgroup side and k depth of the portable tiled kernels, from the adapter's limits: 16x16
/// invocations and 16-deep slices (8 KiB of workgroup memory) where allowed, smaller otherwise.
pub(crate) fn portable_tiles(rec: &Recorder) -> (u32, u32) {
    let l = &rec.gpu().caps().limits;
    let mut ts = 16u32;
    while ts > 1
        && (ts * ts > l.max_compute_invocations_per_workgroup
            || ts > l.max_compute_workgroup_size_x
            || ts > l.max_compute_workgroup_size_y)
    {
        ts /= 2;
    }
    let mut kt = 16u32;
    // Two [kt][4 ts] f32 slices.
    while kt > 1 && 2 * kt * 4 * ts * 4 > l.max_compute_workgroup_storage_size {
        kt /= 2;
    }
    (ts, kt)
}

/// Records out = a * b (+ bias) (+ residual) for a strided problem; `p` holds sizes, strides and
/// flags (tiles are filled here). `a` and `b` are the tensors the strides index into.
#[allow(clippy::too_many_arguments)]
pub(crate) fn record_gemm(
    rec: &mut Recorder,
    op: &'static str,
    mut p: GemmParams,
    a: &Tensor,
    b: &Tensor,
    bias: Option<&Tensor>,
    residual: Option<&Tensor>,
    out: &Tensor,
    subgroups: bool,
) -> Result<()> {
    if p.m == 0 || p.n == 0 || p.batch == 0 {
        return Ok(());
    }
    let (mut a, mut b) = (a, b);
    let (kernel, consts, tm, tn);
    let portable_consts;
    if subgroups {
        // 64 rows (loaded per lane) x 64 columns (broadcast) per subgroup: orient the problem
        // so that less of the padded tile is wasted.
        let padded = |m: u32, n: u32| m.div_ceil(64) as u64 * 64 * (n.div_ceil(64) as u64 * 64);
        if padded(p.n, p.m) < padded(p.m, p.n) {
            p = p.transposed();
            std::mem::swap(&mut a, &mut b);
        }
        kernel = Kernel::new("conv2d", "gemm_sg");
        consts = &[][..];
        (tm, tn) = (64, 64);
    } else {
        let (ts, kt) = portable_tiles(rec);
        portable_consts = [("TS", ts as f64), ("KT", kt as f64)];
        kernel = Kernel::new("matmul", "gemm");
        consts = &portable_consts[..];
        (tm, tn) = (4 * ts, 4 * ts);
    }
    p.tiles_m = p.m.div_ceil(tm);
    p.tiles_n = p.n.div_ceil(tn);
    let total = p.tiles_m as u64 * p.tiles_n as u64 * p.batch as u64;
    p.total = to_u32(op, "workgroup count", total as usize)?;
    let groups = rec.gpu().grid(p.total);
    rec.dispatch(
        &kernel.with(consts),
        &[
            Bind::Params(bytemuck::bytes_of(&p)),
            Bind::Tensor(a),
            Bind::Tensor(b),
            Bind::Tensor(bias.unwrap_or(a)),
            Bind::Tensor(residual.unwrap_or(a)),
            Bind::Tensor(out),
        ],
        groups,
    )
}

/// (batch, rows, cols) of a 2-D or 3-D operand.
fn dims3(op: &'static str, what: &str, t: &Tensor) -> Result<(usize, usize, usize)> {
    match *t.shape() {
        [r, c] => Ok((1, r, c)),
        [b, r, c] => Ok((b, r, c)),
        _ => Err(GpuError::shape(
            op,
            format!("{what} must be 2-D or 3-D, got shape {:?}", t.shape()),
        )),
    }
}

fn check_numel(op: &'static str, ts: &[(&str, &Tensor)]) -> Result<()> {
    for (what, t) in ts {
        expect_f32(op, what, t)?;
        to_u32(op, &format!("{what} element count"), t.numel())?;
    }
    Ok(())
}

/// `out[b] = op(a[b]) * op(b[b])` where op transposes the last two axes when asked.
/// a is [B, M, K] ([B, K, M] if `trans_a`), b is [B, K, N] ([B, N, K] if `trans_b`); 2-D operands
/// have B = 1, and an operand with batch 1 is shared by every batch of the other. out is
/// [B, M, N], or [M, N] when B = 1.
pub fn matmul(
    rec: &mut Recorder,
    a: &Tensor,
    b: &Tensor,
    out: &Tensor,
    trans_a: bool,
    trans_b: bool,
) -> Result<()> {
    matmul_with(rec, a, b, out, trans_a, trans_b, KernelPath::Auto)
}

/// [`matmul`] on a chosen kernel family.
pub fn matmul_with(
    rec: &mut Recorder,
    a: &Tensor,
    b: &Tensor,
    out: &Tensor,
    trans_a: bool,
    trans_b: bool,
    path: KernelPath,
) -> Result<()> {
    let op = "matmul";
    check_numel(op, &[("a", a), ("b", b), ("out", out)])?;
    let (ba, ar, ac) = dims3(op, "a", a)?;
    let (bb, br, bc) = dims3(op, "b", b)?;
    let (m, k) = if trans_a { (ac, ar) } else { (ar, ac) };
    let (kb, n) = if trans_b { (bc, br) } else { (br, bc) };
    if k != kb {
        return Err(GpuError::shape(
            op,
            format!(
                "inner sizes differ: a {:?} (trans {trans_a}) has K = {k}, b {:?} (trans \
                 {trans_b}) has K = {kb}",
                a.shape(),
                b.shape()
            ),
        ));
    }
    if ba != bb && ba != 1 && bb != 1 {
        return Err(GpuError::shape(
            op,
            format!(
                "batch sizes {ba} and {bb} differ and neither is 1 (a {:?}, b {:?})",
                a.shape(),
                b.shape()
            ),
        ));
    }
    let batch = ba.max(bb);
    let want3 = [batch, m, n];
    let ok = out.shape() == want3 || (batch == 1 && out.shape() == [m, n]);
    if !ok {
        return Err(GpuError::shape(
            op,
            format!("out has shape {:?}, expected {want3:?}", out.shape()),
        ));
    }
    if k == 0 {
        return Err(GpuError::shape(op, "the inner size K is 0"));
    }
    expect_disjoint(op, out, &[a, b])?;
    let u = |v: usize| v as u32; // every size and stride is bounded by a checked element count
    let p = GemmParams {
        m: u(m),
        n: u(n),
        k: u(k),
        batch: u(batch),
        a_sb: if ba == 1 { 0 } else { u(m * k) },
        a_sm: if trans_a { 1 } else { u(k) },
        a_sk: if trans_a { u(m) } else { 1 },
        b_sb: if bb == 1 { 0 } else { u(k * n) },
        b_sk: if trans_b { 1 } else { u(n) },
        b_sn: if trans_b { u(k) } else { 1 },
        o_sb: u(m * n),
        o_sm: u(n),
        o_sn: 1,
        ..Default::default()
    };
    let sg = path.use_subgroups(op, rec)?;
    record_gemm(rec, op, p, a, b, None, None, out, sg)
}

/// out = x w^T + bias with x [N, in], w [out, in] (PyTorch's layout), bias `[out]`, out [N, out].
pub fn linear(
    rec: &mut Recorder,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    out: &Tensor,
) -> Result<()> {
    linear_with(rec, x, w, bias, out, KernelPath::Auto)
}

/// [`linear`] on a chosen kernel family.
pub fn linear_with(
    rec: &mut Recorder,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    out: &Tensor,
    path: KernelPath,
) -> Result<()> {
    let op = "linear";
    check_numel(op, &[("x", x), ("w", w), ("out", out)])?;
    let (&[rows, fin], &[fout, win]) = (x.shape(), w.shape()) else {
        return Err(GpuError::shape(
            op,
            format!(
                "x must be [N, in] and w [out, in], got {:?} and {:?}",
                x.shape(),
                w.shape()
            ),
        ));
    };
    if fin != win || fin == 0 {
        return Err(GpuError::shape(
            op,
            format!(
                "x {:?} and w {:?} disagree on the input size",
                x.shape(),
                w.shape()
            ),
        ));
    }
    super::expect_shape(op, "out", out, &[rows, fout])?;
    let mut flags = 0;
    if let Some(b) = bias {
        check_numel(op, &[("bias", b)])?;
        super::expect_shape(op, "bias", b, &[fout])?;
        flags |= HAS_BIAS;
    }
    let mut inputs = vec![x, w];
    inputs.extend(bias);
    expect_disjoint(op, out, &inputs)?;
    let u = |v: usize| v as u32;
    let p = GemmParams {
        m: u(rows),
        n: u(fout),
        k: u(fin),
        batch: 1,
        a_sm: u(fin),
        a_sk: 1,
        b_sk: 1,
        b_sn: u(fin),
        o_sm: u(fout),
        o_sn: 1,
        bias_sn: 1,
        flags,
        ..Default::default()
    };
    let sg = path.use_subgroups(op, rec)?;
    record_gemm(rec, op, p, x, w, bias, None, out, sg)
}
