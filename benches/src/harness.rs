//! Timing: GPU timestamps per dispatch when the adapter has them (TIMESTAMP_QUERY_INSIDE_PASSES),
//! wall time of submit + wait otherwise; the median over repetitions after a warm-up.

use std::time::{Duration, Instant};

use equireg_gpu::{Gpu, Recorder, Result};
use serde::Serialize;

#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Keep repeating until this much time was spent (after the warm-up)...
    pub min_time: Duration,
    /// ...but at least this many and at most `max_reps` repetitions.
    pub min_reps: usize,
    pub max_reps: usize,
    /// Use GPU timestamps when the adapter has them.
    pub timestamps: bool,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            min_time: Duration::from_secs(2),
            min_reps: 5,
            max_reps: 100,
            timestamps: true,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct BenchResult {
    pub case: String,
    /// Median milliseconds of one execution of the case.
    pub ms: f64,
    pub min_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gflops: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gbps: Option<f64>,
    pub reps: usize,
    /// "gpu-timestamps" or "wall".
    pub timing: &'static str,
    pub adapter: String,
}

/// Runs `record` (which records one execution of the case) repeatedly and times it.
pub fn time_case(
    gpu: &Gpu,
    case: &str,
    flops: Option<f64>,
    bytes: Option<f64>,
    opts: &BenchOptions,
    record: &dyn Fn(&mut Recorder) -> Result<()>,
) -> Result<BenchResult> {
    let use_ts = opts.timestamps && gpu.caps().timestamp_inside_passes;
    gpu.set_profiling(use_ts);
    let run_once = || -> Result<f64> {
        let mut rec = gpu.recorder();
        record(&mut rec)?;
        let t0 = Instant::now();
        let timings = rec.submit()?;
        gpu.sync()?;
        let wall = t0.elapsed().as_secs_f64() * 1e3;
        Ok(match timings {
            Some(t) => t.iter().map(|d| d.ms).sum(),
            None => wall,
        })
    };
    // Warm-up: pipeline creation, bind groups, driver JIT.
    run_once()?;
    let start = Instant::now();
    let mut samples = Vec::new();
    while samples.len() < opts.min_reps
        || (start.elapsed() < opts.min_time && samples.len() < opts.max_reps)
    {
        samples.push(run_once()?);
    }
    gpu.set_profiling(false);
    samples.sort_by(|a, b| a.total_cmp(b));
    let ms = samples[samples.len() / 2];
    Ok(BenchResult {
        case: case.to_string(),
        ms,
        min_ms: samples[0],
        gflops: flops.map(|f| f / (ms * 1e-3) / 1e9),
        gbps: bytes.map(|b| b / (ms * 1e-3) / 1e9),
        reps: samples.len(),
        timing: if use_ts { "gpu-timestamps" } else { "wall" },
        adapter: gpu.caps().adapter_name.clone(),
    })
}

/// A plain-text table of results for terminals.
pub fn table(results: &[BenchResult]) -> String {
    let mut s = format!(
        "{:<28} {:>10} {:>10} {:>9} {:>8} {:>5}  {}\n",
        "case", "ms", "min ms", "GFLOP/s", "GB/s", "reps", "timing"
    );
    for r in results {
        let f = |v: Option<f64>| v.map(|v| format!("{v:.2}")).unwrap_or_else(|| "-".into());
        s += &format!(
            "{:<28} {:>10.3} {:>10.3} {:>9} {:>8} {:>5}  {}\n",
            r.case,
            r.ms,
            r.min_ms,
            f(r.gflops),
            f(r.gbps),
            r.reps,
            r.timing
        );
    }
    s
}
