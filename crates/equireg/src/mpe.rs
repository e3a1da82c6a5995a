//! Manifold-preferential (MPE) functions f for EquiReg: anything with a planned forward and an
//! input VJP on the GPU. The regularizer runs f on a batch of 2N images (x0 and g x0) in one
//! forward and one VJP.

use equireg_gpu::ops::diffusion::{StepState, TweedieOptions, posterior_step, x0_cotangent};
use equireg_gpu::ops::elementwise::axpby;
use std::path::Path;

use equireg_gpu::{DType, Gpu, Recorder, Tensor};
use equireg_nn::{UNet, UNetRun};

use crate::schedule::{BetaSchedule, Diffusion};
use crate::{Error, Result};

/// An MPE function planned for one batch shape: f's input, output, output cotangent and input
/// gradient are tensors the caller fills and reads.
pub trait MpeRun {
    /// `[B, C, H, W]`
    fn input(&self) -> &Tensor;
    /// `[B, C', H', W']` (spatial) or `[B, D]` (a vector).
    fn output(&self) -> &Tensor;
    /// The cotangent of the output (the caller writes it before [`MpeRun::record_vjp`]).
    fn cotangent(&self) -> &Tensor;
    /// `J_f(input)^T cotangent`, input-shaped.
    fn input_grad(&self) -> &Tensor;
    fn record_forward(&self, rec: &mut Recorder) -> Result<()>;
    fn record_vjp(&self, rec: &mut Recorder) -> Result<()>;
}

/// An MPE function that can be planned for a batch shape.
pub trait Mpe {
    fn name(&self) -> String;
    fn plan(&self, gpu: &Gpu, batch: usize, h: usize, w: usize) -> Result<Box<dyn MpeRun + '_>>;
}

/// f(x) = Tweedie's estimate of the diffusion model at a fixed training timestep `t`:
/// `x0(x) = sqrt(1/abar_t) x - sqrt(1/abar_t - 1) eps(x, t)`, unclipped (the clip's gradient
/// would zero f's sensitivity where it matters).
pub struct Denoiser<'a> {
    pub unet: &'a UNet,
    pub t: usize,
}

impl<'a> Denoiser<'a> {
    pub fn new(unet: &'a UNet, t: usize) -> Result<Self> {
        if t >= 1000 {
            return Err(Error::invalid(format!(
                "denoiser MPE timestep {t} must be below 1000"
            )));
        }
        Ok(Self { unet, t })
    }
}

struct DenoiserRun<'a> {
    unet: &'a UNet,
    run: UNetRun,
    table: Tensor,
    step: Tensor,
    out: Tensor,
    scratch: Tensor,
    direct: Tensor,
    grad: Tensor,
    cotangent: Tensor,
}

impl Mpe for Denoiser<'_> {
    fn name(&self) -> String {
        format!("denoiser(t={})", self.t)
    }

    fn plan(&self, gpu: &Gpu, batch: usize, h: usize, w: usize) -> Result<Box<dyn MpeRun + '_>> {
        let run = self.unet.plan_with_vjp(gpu, batch, h, w)?;
        let d = Diffusion::new(BetaSchedule::Linear, 1000, "1000")?;
        let ab = d.alphas_cumprod[self.t];
        // One table row: x0 = c1 x - c2 eps, "x_prev" = 1 * x0, no noise.
        let row = [
            self.t as f32,
            (1.0 / ab).sqrt() as f32,
            (1.0 / ab - 1.0).sqrt() as f32,
            1.0,
            0.0,
            0.0,
            0.0,
            0.0,
        ];
        gpu.write(run.timesteps(), &vec![self.t as f32; batch])?;
        let shape = run.input().shape().to_vec();
        Ok(Box::new(DenoiserRun {
            unet: self.unet,
            table: gpu.upload(&[1, 8], &row)?,
            step: gpu.upload_u32(&[1], &[0])?,
            out: gpu.alloc(&shape, DType::F32)?,
            scratch: gpu.alloc(&shape, DType::F32)?,
            direct: gpu.alloc(&shape, DType::F32)?,
            grad: gpu.alloc(&shape, DType::F32)?,
            cotangent: gpu.alloc(&shape, DType::F32)?,
            run,
        }))
    }
}

impl DenoiserRun<'_> {
    fn state(&self) -> StepState<'_> {
        StepState {
            table: &self.table,
            step: &self.step,
        }
    }
}

impl MpeRun for DenoiserRun<'_> {
    fn input(&self) -> &Tensor {
        self.run.input()
    }
    fn output(&self) -> &Tensor {
        &self.out
    }
    fn cotangent(&self) -> &Tensor {
        &self.cotangent
    }
    fn input_grad(&self) -> &Tensor {
        &self.grad
    }

    fn record_forward(&self, rec: &mut Recorder) -> Result<()> {
        self.run.record_forward(rec, self.unet)?;
        // posterior_step with the one-row table writes x0 (= f) and an identical copy to scratch;
        // the zero noise gate makes the noise input irrelevant.
        posterior_step(
            rec,
            self.state(),
            self.run.input(),
            self.run.output(),
            &self.direct,
            &self.out,
            &self.scratch,
            TweedieOptions {
                learned_variance: false,
                clip: false,
            },
        )?;
        Ok(())
    }

    fn record_vjp(&self, rec: &mut Recorder) -> Result<()> {
        x0_cotangent(
            rec,
            self.state(),
            self.run.input(),
            self.run.output(),
            &self.cotangent,
            self.run.cotangent()?,
            &self.direct,
            false,
        )?;
        self.run.record_vjp(rec, self.unet)?;
        axpby(
            rec,
            1.0,
            &self.direct,
            1.0,
            self.run.input_grad()?,
            &self.grad,
        )?;
        Ok(())
    }
}

/// A network MPE function (equireg_nn's CompVis first-stage encoder or EquiReg's SmallCNN).
pub struct NetworkMpe {
    pub net: equireg_nn::mpe::Mpe,
    pub label: String,
}

impl NetworkMpe {
    /// Loads `DIR/config.json` and `DIR/weights.safetensors` (what tools/convert_mpe.py and
    /// tools/train_mpe.py write).
    pub fn load(gpu: &Gpu, dir: &Path) -> Result<Self> {
        let net = equireg_nn::mpe::Mpe::load(
            gpu,
            &dir.join("config.json"),
            &dir.join("weights.safetensors"),
        )?;
        Ok(Self {
            label: format!("{} ({})", net.config().kind(), dir.display()),
            net,
        })
    }
}

struct NetworkRun<'a> {
    net: &'a equireg_nn::mpe::Mpe,
    run: equireg_nn::mpe::MpeRun,
}

impl Mpe for NetworkMpe {
    fn name(&self) -> String {
        self.label.clone()
    }

    fn plan(&self, gpu: &Gpu, batch: usize, h: usize, w: usize) -> Result<Box<dyn MpeRun + '_>> {
        let run = self.net.plan_with_vjp(gpu, batch, h, w)?;
        // Fail here rather than at the first firing step.
        run.cotangent()?;
        run.input_grad()?;
        Ok(Box::new(NetworkRun {
            net: &self.net,
            run,
        }))
    }
}

impl MpeRun for NetworkRun<'_> {
    fn input(&self) -> &Tensor {
        self.run.input()
    }
    fn output(&self) -> &Tensor {
        self.run.output()
    }
    fn cotangent(&self) -> &Tensor {
        self.run.cotangent().expect("planned with the VJP")
    }
    fn input_grad(&self) -> &Tensor {
        self.run.input_grad().expect("planned with the VJP")
    }
    fn record_forward(&self, rec: &mut Recorder) -> Result<()> {
        Ok(self.run.record_forward(rec, self.net)?)
    }
    fn record_vjp(&self, rec: &mut Recorder) -> Result<()> {
        Ok(self.run.record_vjp(rec, self.net)?)
    }
}

/// The MPE function a spec names: `default` (the embedded encoder, see
/// [`crate::default_models`]), `denoiser` or `denoiser:T` (the diffusion model's own x0
/// estimate at training timestep T, default 100), or a folder with an MPE network's
/// `config.json` and `weights.safetensors`.
pub fn from_spec<'a>(gpu: &Gpu, spec: &str, unet: &'a UNet) -> Result<Box<dyn Mpe + 'a>> {
    let spec = spec.trim();
    if spec == crate::default_models::MPE_SPEC {
        return Ok(Box::new(crate::default_models::mpe(gpu)?));
    }
    if let Some(rest) = spec.strip_prefix("denoiser") {
        let t = match rest.strip_prefix(':') {
            None if rest.is_empty() => 100,
            Some(t) => t.parse().map_err(|_| {
                Error::invalid(format!(
                    "MPE {spec:?}: expected denoiser:T with T in 0..1000"
                ))
            })?,
            None => return Err(Error::invalid(format!("unknown MPE {spec:?}"))),
        };
        return Ok(Box::new(Denoiser::new(unet, t)?));
    }
    let dir = Path::new(spec);
    if !dir.is_dir() {
        return Err(Error::invalid(format!(
            "MPE {spec:?}: expected default, denoiser[:T] or a folder holding config.json and \
             weights.safetensors"
        )));
    }
    Ok(Box::new(NetworkMpe::load(gpu, dir)?))
}
