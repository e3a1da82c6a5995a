//! Scratch timing harness for conv2d and matmul on the local adapter:
//! `cargo run --release -p equireg-gpu --example conv_bench [-- reps [portable|subgroup8|auto] [case-filter]]`.
//!
//! Wall time is measured around submit + sync after two warm-up runs; the median is reported.
//! Lavapipe runs its worker threads in this process, so the process CPU time per run is
//! reported too: it is far less disturbed by other processes on a shared machine than wall time.

use std::time::Instant;

use equireg_gpu::ops::conv::{Conv2dParams, KernelPath, conv2d_with};
use equireg_gpu::ops::matmul::matmul_with;
use equireg_gpu::{DType, Gpu, GpuOptions, Recorder, Result, Tensor};

type Record = Box<dyn Fn(&mut Recorder) -> Result<()>>;
/// (batch, channels, image side, kernel side, stride)
type Conv = (usize, usize, usize, usize, usize);

fn data(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let h = (i as u32)
                .wrapping_mul(2654435761)
                .wrapping_add(seed.wrapping_mul(40503));
            (h >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        })
        .collect()
}

fn tensor(g: &Gpu, shape: &[usize], seed: u32) -> Tensor {
    g.upload(shape, &data(shape.iter().product(), seed))
        .unwrap()
}

/// Process CPU time (user + system) in seconds.
fn cpu_seconds() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let f: Vec<&str> = s
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (t(11) + t(12)) / 100.0
}

/// (first run incl. pipeline creation, median wall seconds, CPU seconds per run).
fn time(g: &Gpu, reps: usize, f: &Record) -> (f64, f64, f64) {
    let t0 = Instant::now();
    let mut first = 0.0;
    for i in 0..2 {
        if i == 1 {
            first = t0.elapsed().as_secs_f64();
        }
        let mut r = g.recorder();
        f(&mut r).unwrap();
        r.submit().unwrap();
        g.sync().unwrap();
    }
    let c0 = cpu_seconds();
    let mut ts: Vec<f64> = (0..reps)
        .map(|_| {
            let mut r = g.recorder();
            f(&mut r).unwrap();
            let t = Instant::now();
            r.submit().unwrap();
            g.sync().unwrap();
            t.elapsed().as_secs_f64()
        })
        .collect();
    let cpu = (cpu_seconds() - c0) / reps as f64;
    ts.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (first, ts[reps / 2], cpu)
}

/// A square convolution with c channels in and out, "same" padding.
fn conv_case(g: &Gpu, (n, c, hw, k, s): Conv, path: KernelPath) -> Record {
    let x = tensor(g, &[n, c, hw, hw], 1);
    let w = tensor(g, &[c, c, k, k], 2);
    let b = tensor(g, &[c], 3);
    let p = Conv2dParams {
        stride: s as u32,
        padding: (k / 2) as u32,
    };
    let out = g
        .alloc(&[n, c, hw.div_ceil(s), hw.div_ceil(s)], DType::F32)
        .unwrap();
    Box::new(move |rec| conv2d_with(rec, &x, &w, Some(&b), None, &out, p, path))
}

fn main() {
    let g = Gpu::new(&GpuOptions::default()).unwrap();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let reps: usize = args.first().map_or(5, |s| s.parse().unwrap());
    let path = match args.get(1).map(String::as_str) {
        Some("portable") => KernelPath::Portable,
        Some("subgroup8") => KernelPath::Subgroup8,
        _ => KernelPath::Auto,
    };
    let filter = args.get(2).cloned().unwrap_or_default();
    println!(
        "adapter: {}, path {path:?}, {reps} runs",
        g.caps().describe()
    );
    let conv = |n: usize, c: usize, hw: usize, k: usize, s: usize| {
        let stride = if s > 1 {
            format!("s{s}")
        } else {
            String::new()
        };
        let ho = hw.div_ceil(s);
        (
            format!("conv{k}x{k}{stride}-c{c}-{hw}x{hw}-b{n}"),
            2.0 * (n * c * c * k * k * ho * ho) as f64,
            (n, c, hw, k, s),
        )
    };
    let mut cases = vec![
        conv(1, 128, 64, 3, 1),
        conv(1, 256, 32, 3, 1),
        conv(4, 128, 64, 3, 1),
        conv(1, 512, 16, 1, 1),
    ];
    cases.push((
        "matmul-1024".into(),
        2.0 * 1024f64.powi(3),
        (0, 1024, 0, 0, 0),
    ));
    // Not in the target list: the generic kernel (stride 2, 5x5, blur-sized single channel).
    if filter == "extra" {
        cases = vec![
            conv(1, 128, 64, 3, 2),
            conv(1, 64, 32, 5, 1),
            conv(3, 1, 128, 61, 1),
        ];
    }
    for (name, flops, cfg) in cases {
        let (_, c, ..) = cfg;
        if filter != "extra" && !name.contains(&filter) {
            continue;
        }
        let f: Record = if name.starts_with("matmul") {
            let a = tensor(&g, &[c, c], 4);
            let b = tensor(&g, &[c, c], 5);
            let out = g.alloc(&[c, c], DType::F32).unwrap();
            Box::new(move |rec| matmul_with(rec, &a, &b, &out, false, false, path))
        } else {
            conv_case(&g, cfg, path)
        };
        let (first, wall, cpu) = time(&g, reps, &f);
        println!(
            "{name:24} median {:8.2} ms {:6.2} GFLOP/s | cpu {:8.2} ms/run = {:6.2} GFLOP/s on 2 cores | first run {first:.1} s",
            wall * 1e3,
            flops / wall * 1e-9,
            cpu * 1e3,
            flops / (cpu / 2.0) * 1e-9
        );
    }
}
