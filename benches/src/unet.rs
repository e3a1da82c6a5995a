//! `equireg bench unet`: ms per UNet forward, GFLOP per forward from the config, achieved
//! GFLOP/s and the planned GPU memory. Random (synthetic) weights: timing does not depend on them.

use equireg_gpu::Gpu;
use equireg_nn::{UNet, UNetConfig, synthetic};
use serde::Serialize;

use crate::harness::{BenchOptions, BenchResult, time_case};

#[derive(Clone, Debug, Serialize)]
pub struct UNetBench {
    #[serde(flatten)]
    pub timing: BenchResult,
    pub gflop_per_forward: f64,
    pub parameters: usize,
    pub planned_mib: f64,
    pub weights_mib: f64,
    pub dispatches_per_forward: u64,
}

pub fn run(
    gpu: &Gpu,
    name: &str,
    config: &UNetConfig,
    size: usize,
    batch: usize,
    opts: &BenchOptions,
) -> equireg_nn::Result<UNetBench> {
    let spec = UNet::weight_spec(config)?;
    let unet = UNet::new(gpu, config, &synthetic::weights(0, &spec))?;
    let run = unet.plan(gpu, batch, size, size)?;
    gpu.write(run.input(), &synthetic::tensor(0, "x", run.input().shape()))?;
    gpu.write(run.timesteps(), &vec![500.0f32; batch])?;
    let flops = run.flops();
    let before = gpu.counters();
    {
        let mut rec = gpu.recorder();
        run.record_forward(&mut rec, &unet)?;
        rec.submit()?;
        gpu.sync()?;
    }
    let dispatches = (gpu.counters() - before).dispatches;
    let case = format!("unet-{name}-{size}x{size}-b{batch}");
    let timing = time_case(gpu, &case, Some(flops), None, opts, &|rec| {
        run.record_forward(rec, &unet).map_err(|e| match e {
            equireg_nn::NnError::Gpu(g) => g,
            other => equireg_gpu::GpuError::Validation(other.to_string()),
        })
    })?;
    Ok(UNetBench {
        timing,
        gflop_per_forward: flops / 1e9,
        parameters: unet.parameter_count(),
        planned_mib: run.planned_bytes() as f64 / (1 << 20) as f64,
        weights_mib: unet.parameter_count() as f64 * 4.0 / (1 << 20) as f64,
        dispatches_per_forward: dispatches,
    })
}
