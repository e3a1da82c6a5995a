//! The kernel benchmark cases (`equireg bench kernels`). Case names are a contract: scripts and
//! docs/PERFORMANCE.md refer to them.

use equireg_gpu::ops::attention::attention_legacy;
use equireg_gpu::ops::conv::{Conv2dParams, conv2d};
use equireg_gpu::ops::elementwise::axpby;
use equireg_gpu::ops::group_norm::{GroupNormParams, group_norm};
use equireg_gpu::ops::matmul::matmul;
use equireg_gpu::ops::reduce::{Reduction, reduce_rows, reduce_scratch};
use equireg_gpu::ops::rng::rng_normal;
use equireg_gpu::{DType, Gpu, Recorder, Result, Tensor};

use crate::harness::{BenchOptions, BenchResult, time_case};

type Record = Box<dyn Fn(&mut Recorder) -> Result<()>>;

/// One benchmark case: its name, work, and a builder that allocates its tensors once and returns
/// the closure recording one execution.
pub struct Case {
    pub name: &'static str,
    pub flops: Option<f64>,
    pub bytes: Option<f64>,
    build: fn(&Gpu) -> Result<Record>,
}

fn random_tensor(gpu: &Gpu, shape: &[usize], seed: u32) -> Result<Tensor> {
    // A cheap deterministic fill; values do not matter for timing, only that they are finite.
    let n: usize = shape.iter().product();
    let data: Vec<f32> = (0..n)
        .map(|i| {
            let h = (i as u32)
                .wrapping_mul(2654435761)
                .wrapping_add(seed.wrapping_mul(40503));
            (h >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        })
        .collect();
    gpu.upload(shape, &data)
}

fn conv_case(gpu: &Gpu, n: usize, c: usize, hw: usize, k: usize) -> Result<Record> {
    let x = random_tensor(gpu, &[n, c, hw, hw], 1)?;
    let w = random_tensor(gpu, &[c, c, k, k], 2)?;
    let b = random_tensor(gpu, &[c], 3)?;
    let out = gpu.alloc(&[n, c, hw, hw], DType::F32)?;
    let p = Conv2dParams {
        stride: 1,
        padding: (k / 2) as u32,
    };
    Ok(Box::new(move |rec| {
        conv2d(rec, &x, &w, Some(&b), None, &out, p)
    }))
}

fn conv_flops(n: usize, c: usize, hw: usize, k: usize) -> Option<f64> {
    Some(2.0 * (n * c * c * k * k * hw * hw) as f64)
}

pub fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "conv3x3-c128-64x64-b1",
            flops: conv_flops(1, 128, 64, 3),
            bytes: None,
            build: |g| conv_case(g, 1, 128, 64, 3),
        },
        Case {
            name: "conv3x3-c256-32x32-b1",
            flops: conv_flops(1, 256, 32, 3),
            bytes: None,
            build: |g| conv_case(g, 1, 256, 32, 3),
        },
        Case {
            name: "conv3x3-c128-64x64-b4",
            flops: conv_flops(4, 128, 64, 3),
            bytes: None,
            build: |g| conv_case(g, 4, 128, 64, 3),
        },
        Case {
            name: "conv1x1-c512-16x16-b1",
            flops: conv_flops(1, 512, 16, 1),
            bytes: None,
            build: |g| conv_case(g, 1, 512, 16, 1),
        },
        Case {
            name: "matmul-1024",
            flops: Some(2.0 * 1024f64.powi(3)),
            bytes: None,
            build: |g| {
                let a = random_tensor(g, &[1024, 1024], 4)?;
                let b = random_tensor(g, &[1024, 1024], 5)?;
                let out = g.alloc(&[1024, 1024], DType::F32)?;
                Ok(Box::new(move |rec| matmul(rec, &a, &b, &out, false, false)))
            },
        },
        Case {
            name: "groupnorm-c128-64x64",
            flops: None,
            // One read and one write of the tensor (statistics passes hit the cache).
            bytes: Some(2.0 * 4.0 * (128 * 64 * 64) as f64),
            build: |g| {
                let x = random_tensor(g, &[1, 128, 64, 64], 6)?;
                let gamma = random_tensor(g, &[128], 7)?;
                let beta = random_tensor(g, &[128], 8)?;
                let out = g.alloc(&[1, 128, 64, 64], DType::F32)?;
                let p = GroupNormParams {
                    silu: true,
                    ..Default::default()
                };
                Ok(Box::new(move |rec| {
                    group_norm(rec, &x, &gamma, &beta, None, &out, p)
                }))
            },
        },
        Case {
            name: "attention-256tok-h4-d64",
            // QK^T and PV: 2 * 2 * heads * T * T * d.
            flops: Some(4.0 * (4 * 256 * 256 * 64) as f64),
            bytes: None,
            build: |g| {
                let qkv = random_tensor(g, &[1, 3 * 256, 256], 9)?;
                let out = g.alloc(&[1, 256, 256], DType::F32)?;
                Ok(Box::new(move |rec| attention_legacy(rec, &qkv, &out, 4)))
            },
        },
        Case {
            name: "axpby-4M",
            flops: None,
            bytes: Some(3.0 * 4.0 * (4 << 20) as f64),
            build: |g| {
                let a = random_tensor(g, &[4 << 20], 10)?;
                let b = random_tensor(g, &[4 << 20], 11)?;
                let out = g.alloc(&[4 << 20], DType::F32)?;
                Ok(Box::new(move |rec| axpby(rec, 0.5, &a, -2.0, &b, &out)))
            },
        },
        Case {
            name: "l2norm-b4-3x256x256",
            flops: None,
            bytes: Some(4.0 * (4 * 3 * 256 * 256) as f64),
            build: |g| {
                let x = random_tensor(g, &[4, 3, 256, 256], 12)?;
                let out = g.alloc(&[4], DType::F32)?;
                let scratch = reduce_scratch(g, 4, 3 * 256 * 256)?;
                Ok(Box::new(move |rec| {
                    reduce_rows(rec, &x, &out, &scratch, Reduction::L2)
                }))
            },
        },
        Case {
            name: "rng-normal-4M",
            flops: None,
            bytes: Some(4.0 * (4 << 20) as f64),
            build: |g| {
                let out = g.alloc(&[4 << 20], DType::F32)?;
                Ok(Box::new(move |rec| rng_normal(rec, &out, 1234, 0, 0)))
            },
        },
    ]
}

/// Runs every case whose name contains `filter` (all when `None`).
pub fn run(gpu: &Gpu, filter: Option<&str>, opts: &BenchOptions) -> Result<Vec<BenchResult>> {
    let mut out = Vec::new();
    for case in cases() {
        if filter.is_some_and(|f| !case.name.contains(f)) {
            continue;
        }
        let record = (case.build)(gpu)?;
        out.push(time_case(
            gpu, case.name, case.flops, case.bytes, opts, &*record,
        )?);
    }
    Ok(out)
}
