//! One guided reverse diffusion over a batch of cases: DPS on the point observations
//! (DiffusionPDE's guidance, the gradient of `||M (y - x0_hat)||` through the denoiser), with
//! EquiReg's penalty when given. Everything is in the prior's normalised range; the caller maps
//! fields with [`super::FieldNorm`].

use equireg_gpu::Gpu;
use equireg_nn::UNet;

use crate::Result;
use crate::mpe::Mpe;
use crate::operators::Operator;
use crate::regularizer::{EquiReg, EquiRegConfig};
use crate::schedule::Sampler;
use crate::solvers::{DiffusionConfig, Guidance, Penalty, Problem, Solver};

/// Settings of a field reconstruction.
#[derive(Clone, Debug)]
pub struct PdeSettings {
    /// guided-diffusion respacing ("100", "ddim50").
    pub respacing: String,
    pub sampler: Sampler,
    /// DPS step size.
    pub zeta: f64,
    pub seed: u64,
}

/// The DPS step size of a problem's observation when none is given: one value per observed
/// side, chosen on the validation cases by `tools/pde_protocol.sh tune` (zeta 1 on both sides
/// from {0.3, 1, 3}; `docs/RESULTS.md`, the PDE section).
pub fn default_zeta(observe: super::Observe) -> f64 {
    match observe {
        super::Observe::Coefficient => 1.0,
        super::Observe::Solution | super::Observe::Both => 1.0,
    }
}

/// Reconstructs the cases whose noiseless observation `y` (model range, shape of the operator's
/// output) `operator` made, with `penalties` (PDE residuals) added to the data term. Cases are
/// items `first_item..first_item + N` of the run (their sampler noise does not depend on the
/// batch). Returns the fields in the model's range.
#[allow(clippy::too_many_arguments)]
pub fn reconstruct<'a>(
    gpu: &'a Gpu,
    unet: &'a UNet,
    operator: &'a dyn Operator,
    y: &[f32],
    settings: &PdeSettings,
    equireg: Option<(&EquiRegConfig, &'a dyn Mpe)>,
    penalties: Vec<Box<dyn Penalty + 'a>>,
    first_item: u32,
) -> Result<Vec<f32>> {
    let shape = operator.input_shape();
    let [n, _, h, w] = shape;
    let mut config = DiffusionConfig::for_model(unet.config(), &settings.respacing);
    config.sampler = settings.sampler;
    // Fields are normalised to a standard deviation, not to [-1, 1]: clipping x0 would cut the
    // tails of the solution channel.
    config.clip_denoised = false;
    let measurement = gpu.upload(&operator.output_shape(), y)?;
    let regularizer = match equireg {
        None => None,
        Some((cfg, mpe)) => Some(EquiReg::new(gpu, cfg.clone(), mpe, shape)?),
    };
    let guidance = Guidance {
        problem: Problem {
            operator,
            measurement: &measurement,
            regularizer,
            penalties,
        },
        zeta: settings.zeta as f32,
    };
    let mut solver = Solver::new(gpu, unet, [n, h, w], &config, Some(guidance))?;
    solver.begin(settings.seed, first_item)?;
    solver.run(|_| Ok(()))
}
