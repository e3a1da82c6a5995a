//! Penalties on a solver's clean estimate, added to the data term's gradient before it is used:
//! the interface a PDE residual implements, and the set of them a run carries with EquiReg.

use equireg_gpu::{Recorder, Tensor};

use crate::Result;
use crate::regularizer::EquiReg;

/// A penalty on the clean estimate x0 added to the data term before differentiation (a PDE
/// residual, for example): it records its gradient with respect to x0 into the data term's.
pub trait Penalty {
    fn name(&self) -> &str;
    /// Does the penalty act at loop step `k` of `steps`, whose noise level is
    /// `sigma = sqrt((1 - abar_t) / abar_t)` (the variance-exploding sigma of the step)?
    fn fires(&self, k: usize, steps: usize, sigma: f64) -> bool;
    /// Records `dx0 += d penalty / d x0` at `x0` (both the solver's shape).
    fn record_grad(&self, rec: &mut Recorder, x0: &Tensor, dx0: &Tensor) -> Result<()>;
}

/// Where a loop step stands, for the penalties' schedules.
#[derive(Clone, Copy, Debug)]
pub struct StepPosition<'a> {
    /// Loop index of the step (0 = the first).
    pub k: usize,
    /// Steps in the loop.
    pub steps: usize,
    /// The step's variance-exploding noise level `sqrt((1 - abar) / abar)`.
    pub sigma: f64,
    /// The sampler's GPU step counter (EquiReg's element draw is keyed by it).
    pub counter: &'a Tensor,
}

/// What a run adds to the data term's gradient: further penalties (PDE residuals), then
/// EquiReg's equivariance penalty, in that order.
#[derive(Default)]
pub struct Penalties<'m> {
    /// EquiReg's penalty.
    pub regularizer: Option<EquiReg<'m>>,
    /// Further penalties on x0.
    pub extra: Vec<Box<dyn Penalty + 'm>>,
}

impl<'m> Penalties<'m> {
    /// The seed of EquiReg's element draws (the run's seed).
    pub fn set_seed(&mut self, seed: u64) {
        if let Some(r) = self.regularizer.as_mut() {
            r.set_seed(seed);
        }
    }

    /// Records every penalty that fires at `at`, each adding its gradient at `x0` into `dx0`.
    pub fn record(
        &self,
        rec: &mut Recorder,
        x0: &Tensor,
        dx0: &Tensor,
        at: StepPosition,
    ) -> Result<()> {
        self.record_extra(rec, x0, dx0, at)?;
        self.record_regularizer(rec, x0, dx0, at)
    }

    /// Records the further penalties (PDE residuals) that fire at `at`.
    pub fn record_extra(
        &self,
        rec: &mut Recorder,
        x0: &Tensor,
        dx0: &Tensor,
        at: StepPosition,
    ) -> Result<()> {
        for p in &self.extra {
            if p.fires(at.k, at.steps, at.sigma) {
                rec.section("penalty");
                p.record_grad(rec, x0, dx0)?;
            }
        }
        Ok(())
    }

    /// Does EquiReg act at `at`?
    pub fn regularizer_fires(&self, at: StepPosition) -> bool {
        self.regularizer
            .as_ref()
            .is_some_and(|r| r.config.fires(at.k, at.steps))
    }

    /// Records EquiReg's gradient at `x0` into `dx0` when it fires at `at`.
    pub fn record_regularizer(
        &self,
        rec: &mut Recorder,
        x0: &Tensor,
        dx0: &Tensor,
        at: StepPosition,
    ) -> Result<()> {
        if let Some(r) = &self.regularizer
            && r.config.fires(at.k, at.steps)
        {
            rec.section("equireg");
            r.record(rec, x0, dx0, at.counter)?;
        }
        Ok(())
    }
}
