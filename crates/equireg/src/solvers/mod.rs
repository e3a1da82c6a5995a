//! Posterior samplers for inverse problems, each a loop resident on the GPU, over shared pieces
//! that each have one job:
//!
//! - [`table`]: the per-step coefficients, one named-column table on the GPU read through a GPU
//!   step counter (`equireg_gpu::ops::solver_step::Column` is the one layout definition);
//! - the denoiser: the UNet's epsilon and Tweedie's x0 (`ops::solver_step::tweedie`), kept apart
//!   from the update so that a solver can correct x0 in between;
//! - [`data_term`]: `y - A(u)` for a borrowed operator and measurement, a per-sample loss (norm,
//!   half squared norm, squared norm, mean) and its gradient through the operator's VJP;
//! - [`penalty`]: what is added to that gradient at x0 (PDE residuals, EquiReg);
//! - the general affine update `x_next = a x0 + b x_t + c eps + d z + e g`
//!   (`ops::solver_step::affine_update`).
//!
//! A solver is one file here implementing [`PosteriorSampler`]: [`dps`] (Diffusion Posterior
//! Sampling, also the unconditional DDPM / DDIM sampler), [`daps`] (decoupled annealing with
//! Langevin dynamics), [`ddnm`] (DDNM+: the range-space correction by the spectral
//! pseudo-inverse), [`diffpir`] (DiffPIR, gradient
//! form), [`pigdm`] (PiGDM: the pseudo-inverse residual through the denoiser's VJP),
//! [`sitcom`] (Adam on the network input with a per-sample stop) and [`red_diff`] (RED-diff: Adam on the clean estimate). Adding one touches this module's [`SolverKind`] and [`build`], the task presets'
//! `[solver.NAME]` table and a test; `docs/ARCHITECTURE.md` lists the steps.

pub mod daps;
pub mod data_term;
pub mod ddnm;
pub mod diffpir;
pub mod dps;
pub mod penalty;
pub mod pigdm;
pub mod red_diff;
pub mod sitcom;
pub mod table;

use equireg_gpu::{Gpu, Tensor};
use equireg_nn::UNet;

use crate::operators::Operator;
use crate::regularizer::EquiReg;
use crate::{Error, Result};

pub use dps::{DiffusionConfig, Guidance, Solver};
pub use penalty::{Penalties, Penalty};

/// Philox streams of the solvers' draws (an operator's own draws use others).
pub(crate) const STREAM_INITIAL: u32 = 0;
pub(crate) const STREAM_STEP: u32 = 1;
/// DAPS's re-noising between annealing levels.
pub(crate) const STREAM_RENOISE: u32 = 2;

/// An inverse problem as a solver sees it: the operator and the measurement `y` (borrowed, so
/// one simulated measurement serves every solver, variant and restart), and the penalties added
/// to the data term at the clean estimate.
pub struct Problem<'m> {
    pub operator: &'m dyn Operator,
    /// `operator.output_shape()`, on the GPU.
    pub measurement: &'m Tensor,
    /// EquiReg's penalty.
    pub regularizer: Option<EquiReg<'m>>,
    /// Further penalties on x0 (PDE residuals).
    pub penalties: Vec<Box<dyn Penalty + 'm>>,
}

impl<'m> Problem<'m> {
    /// The problem without penalties.
    pub fn new(operator: &'m dyn Operator, measurement: &'m Tensor) -> Self {
        Self {
            operator,
            measurement,
            regularizer: None,
            penalties: Vec::new(),
        }
    }

    pub(crate) fn split(self) -> (&'m dyn Operator, &'m Tensor, Penalties<'m>) {
        (
            self.operator,
            self.measurement,
            Penalties {
                regularizer: self.regularizer,
                extra: self.penalties,
            },
        )
    }
}

/// Refuses host data for a run's state (`what`: "x_T", "mu_0") that does not fill `shape`.
pub(crate) fn check_state_len(what: &str, len: usize, shape: [usize; 4]) -> Result<()> {
    let want = shape.iter().product::<usize>();
    if len != want {
        return Err(Error::invalid(format!(
            "{what} has {len} values, the run's shape {shape:?} needs {want}"
        )));
    }
    Ok(())
}

/// Network evaluations of a whole run, for benchmarks and the evaluation tables.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Evaluations {
    /// UNet forwards.
    pub forward: usize,
    /// UNet input VJPs.
    pub vjp: usize,
}

/// A posterior sampler planned for one batch shape: every tensor is allocated at construction,
/// and each step records dispatches only (nothing uploaded, nothing read back).
pub trait PosteriorSampler {
    /// The solver's name, as `--solver` takes it.
    fn name(&self) -> &'static str;
    /// Outer steps of a run.
    fn steps(&self) -> usize;
    /// `[N, C, H, W]`.
    fn shape(&self) -> [usize; 4];
    /// Starts a run from `seed`; image `k` of the batch draws as item `first_item + k`, so its
    /// result is that of a run of that item alone.
    fn begin(&mut self, seed: u64, first_item: u32) -> Result<()>;
    /// Records and submits the next outer step.
    fn step(&self) -> Result<()>;
    /// The current state (after the last step: the result, in the model's range, unclamped).
    fn state(&self) -> &Tensor;
    /// The current step's clean estimate x0 (for progress frames).
    fn x0(&self) -> &Tensor;
    /// Network evaluations of a whole run.
    fn evaluations(&self) -> Evaluations;
    /// Waits for the GPU and downloads the state.
    fn finish(&self) -> Result<Vec<f32>>;
    /// Runs every step from [`PosteriorSampler::begin`]; `each_step(k)` is called after step k
    /// is submitted. Returns the final batch, downloaded.
    fn run(&self, each_step: &mut dyn FnMut(usize) -> Result<()>) -> Result<Vec<f32>> {
        for k in 0..self.steps() {
            self.step()?;
            each_step(k)?;
        }
        self.finish()
    }
}

/// The solvers `--solver` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SolverKind {
    Dps,
    Daps,
    Ddnm,
    DiffPir,
    Pigdm,
    Sitcom,
    RedDiff,
}

impl SolverKind {
    pub const ALL: [SolverKind; 7] = [
        SolverKind::Dps,
        SolverKind::Daps,
        SolverKind::Ddnm,
        SolverKind::DiffPir,
        SolverKind::Pigdm,
        SolverKind::Sitcom,
        SolverKind::RedDiff,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SolverKind::Dps => "dps",
            SolverKind::Daps => "daps",
            SolverKind::Ddnm => "ddnm",
            SolverKind::DiffPir => "diffpir",
            SolverKind::Pigdm => "pigdm",
            SolverKind::Sitcom => "sitcom",
            SolverKind::RedDiff => "red-diff",
        }
    }

    /// The label of its results, with or without EquiReg ("dps", "dps+equireg").
    pub fn label(self, equireg: bool) -> &'static str {
        match (self, equireg) {
            (SolverKind::Dps, false) => "dps",
            (SolverKind::Dps, true) => "dps+equireg",
            (SolverKind::Daps, false) => "daps",
            (SolverKind::Daps, true) => "daps+equireg",
            (SolverKind::Ddnm, false) => "ddnm",
            (SolverKind::Ddnm, true) => "ddnm+equireg",
            (SolverKind::DiffPir, false) => "diffpir",
            (SolverKind::DiffPir, true) => "diffpir+equireg",
            (SolverKind::Pigdm, false) => "pigdm",
            (SolverKind::Pigdm, true) => "pigdm+equireg",
            (SolverKind::Sitcom, false) => "sitcom",
            (SolverKind::Sitcom, true) => "sitcom+equireg",
            (SolverKind::RedDiff, false) => "red-diff",
            (SolverKind::RedDiff, true) => "red-diff+equireg",
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "unknown solver {s:?}: expected one of {}",
                    Self::ALL.map(|k| k.name()).join(", ")
                ))
            })
    }
}

/// A solver with its resolved settings.
#[derive(Clone, Debug)]
pub enum SolverSpec {
    Dps { config: DiffusionConfig, zeta: f64 },
    Daps(daps::DapsSettings),
    Ddnm(ddnm::DdnmSettings),
    DiffPir(diffpir::DiffPirSettings),
    Pigdm(pigdm::PigdmSettings),
    Sitcom(sitcom::SitcomSettings),
    RedDiff(red_diff::RedDiffSettings),
}

impl SolverSpec {
    pub fn kind(&self) -> SolverKind {
        match self {
            SolverSpec::Dps { .. } => SolverKind::Dps,
            SolverSpec::Daps(_) => SolverKind::Daps,
            SolverSpec::Ddnm(_) => SolverKind::Ddnm,
            SolverSpec::DiffPir(_) => SolverKind::DiffPir,
            SolverSpec::Pigdm(_) => SolverKind::Pigdm,
            SolverSpec::Sitcom(_) => SolverKind::Sitcom,
            SolverSpec::RedDiff(_) => SolverKind::RedDiff,
        }
    }

    /// Refuses an operator the solver cannot serve (DDNM and DiffPIR's prox step need a
    /// pseudo-inverse), with one clear error naming the solvers that can; callers check before
    /// writing any output.
    pub fn check_operator(&self, op: &dyn Operator) -> Result<()> {
        match self {
            SolverSpec::Ddnm(_) => ddnm::needs_spectral("ddnm", op).map(|_| ()),
            SolverSpec::Pigdm(_) => ddnm::needs_spectral("pigdm", op).map(|_| ()),
            SolverSpec::DiffPir(s) if s.data_step == diffpir::DataStep::Prox => {
                ddnm::needs_spectral("diffpir's prox step", op).map(|_| ())
            }
            _ => Ok(()),
        }
    }

    /// The resolved settings as `key=value` pairs, for logs, `equireg tasks` and metrics.
    pub fn describe(&self) -> String {
        match self {
            SolverSpec::Dps { config, zeta } => format!(
                "dps: steps={}, sampler={:?}, zeta={zeta}",
                config.respacing, config.sampler
            ),
            SolverSpec::Daps(s) => s.describe(),
            SolverSpec::Ddnm(s) => s.describe(),
            SolverSpec::DiffPir(s) => s.describe(),
            SolverSpec::Pigdm(s) => s.describe(),
            SolverSpec::Sitcom(s) => s.describe(),
            SolverSpec::RedDiff(s) => s.describe(),
        }
    }
}

/// Plans the solver `spec` for `n` images of `h` x `w` on `problem`.
pub fn build<'a>(
    gpu: &'a Gpu,
    unet: &'a UNet,
    [n, h, w]: [usize; 3],
    spec: &SolverSpec,
    problem: Problem<'a>,
) -> Result<Box<dyn PosteriorSampler + 'a>> {
    Ok(match spec {
        SolverSpec::Dps { config, zeta } => {
            let guidance = Guidance {
                problem,
                zeta: *zeta as f32,
            };
            Box::new(Solver::new(gpu, unet, [n, h, w], config, Some(guidance))?)
        }
        SolverSpec::Daps(s) => Box::new(daps::Daps::new(gpu, unet, [n, h, w], s, problem)?),
        SolverSpec::Ddnm(s) => Box::new(ddnm::Ddnm::new(gpu, unet, [n, h, w], s, problem)?),
        SolverSpec::DiffPir(s) => {
            Box::new(diffpir::DiffPir::new(gpu, unet, [n, h, w], s, problem)?)
        }
        SolverSpec::Pigdm(s) => Box::new(pigdm::Pigdm::new(gpu, unet, [n, h, w], s, problem)?),
        SolverSpec::Sitcom(s) => Box::new(sitcom::Sitcom::new(gpu, unet, [n, h, w], s, problem)?),
        SolverSpec::RedDiff(s) => {
            Box::new(red_diff::RedDiff::new(gpu, unet, [n, h, w], s, problem)?)
        }
    })
}
