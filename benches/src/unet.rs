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
    /// Forward + VJP, when asked for: its time, and its ratio to the forward.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forward_vjp: Option<BenchResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vjp_over_forward: Option<f64>,
    /// GPU ms per kernel entry point over one forward (+VJP when asked), largest first; filled
    /// when the adapter has timestamps inside passes.
    pub ms_by_kernel: Vec<(String, f64)>,
    /// Memory of the forward+VJP plan (saved activations, gradients, scratch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vjp_planned_mib: Option<f64>,
    pub gflop_per_forward: f64,
    pub parameters: usize,
    pub planned_mib: f64,
    pub weights_mib: f64,
    pub dispatches_per_forward: u64,
}

/// One profiled execution: GPU ms summed per kernel entry point, largest first.
fn profile(
    gpu: &Gpu,
    record: &dyn Fn(&mut equireg_gpu::Recorder) -> equireg_gpu::Result<()>,
) -> equireg_gpu::Result<Vec<(String, f64)>> {
    gpu.set_profiling(true);
    let mut rec = gpu.recorder();
    let result = record(&mut rec).and_then(|_| rec.submit());
    gpu.set_profiling(false);
    let mut by: std::collections::BTreeMap<String, f64> = Default::default();
    for d in result?.unwrap_or_default() {
        *by.entry(d.kernel).or_default() += d.ms;
    }
    let mut v: Vec<(String, f64)> = by.into_iter().collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1));
    Ok(v)
}

fn gpu_err(e: equireg_nn::NnError) -> equireg_gpu::GpuError {
    match e {
        equireg_nn::NnError::Gpu(g) => g,
        other => equireg_gpu::GpuError::Validation(other.to_string()),
    }
}

pub fn run(
    gpu: &Gpu,
    name: &str,
    config: &UNetConfig,
    size: usize,
    batch: usize,
    with_vjp: bool,
    opts: &BenchOptions,
) -> equireg_nn::Result<UNetBench> {
    let spec = UNet::weight_spec(config)?;
    let unet = UNet::new(gpu, config, &synthetic::weights(0, &spec))?;
    let run = unet.plan(gpu, batch, size, size)?;
    gpu.write(run.input(), &synthetic::tensor(0, "x", run.input().shape()))?;
    gpu.write(run.timesteps(), &vec![500.0f32; batch])?;
    let flops = run.flops();
    let planned_mib = run.planned_bytes() as f64 / (1 << 20) as f64;
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
        run.record_forward(rec, &unet).map_err(gpu_err)
    })?;
    let (mut forward_vjp, mut vjp_over_forward, mut vjp_planned_mib) = (None, None, None);
    let mut ms_by_kernel = profile(gpu, &|rec| run.record_forward(rec, &unet).map_err(gpu_err))?;
    if with_vjp {
        // Free the forward-only plan first: its cached bind groups keep its buffers alive.
        drop(run);
        gpu.clear_binding_caches();
        let vrun = unet.plan_with_vjp(gpu, batch, size, size)?;
        gpu.write(
            vrun.input(),
            &synthetic::tensor(0, "x", vrun.input().shape()),
        )?;
        gpu.write(vrun.timesteps(), &vec![500.0f32; batch])?;
        gpu.write(
            vrun.cotangent()?,
            &synthetic::tensor(0, "v", vrun.cotangent()?.shape()),
        )?;
        let all = vrun.flops() + vrun.vjp_flops();
        let r = time_case(
            gpu,
            &format!("{case}-fwd+vjp"),
            Some(all),
            None,
            opts,
            &|rec| {
                vrun.record_forward(rec, &unet).map_err(gpu_err)?;
                vrun.record_vjp(rec, &unet).map_err(gpu_err)
            },
        )?;
        ms_by_kernel = profile(gpu, &|rec| {
            vrun.record_forward(rec, &unet).map_err(gpu_err)?;
            vrun.record_vjp(rec, &unet).map_err(gpu_err)
        })?;
        vjp_over_forward = Some((r.ms - timing.ms) / timing.ms);
        vjp_planned_mib = Some(vrun.planned_bytes() as f64 / (1 << 20) as f64);
        forward_vjp = Some(r);
    }
    Ok(UNetBench {
        timing,
        forward_vjp,
        vjp_over_forward,
        vjp_planned_mib,
        ms_by_kernel,
        gflop_per_forward: flops / 1e9,
        parameters: unet.parameter_count(),
        planned_mib,
        weights_mib: unet.parameter_count() as f64 * 4.0 / (1 << 20) as f64,
        dispatches_per_forward: dispatches,
    })
}
