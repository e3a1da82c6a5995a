//! Diffusion noise schedules, guided-diffusion's timestep respacing, and the per-step
//! coefficient table that the GPU sampler kernels read.
//!
//! Everything here is computed in f64 on the CPU, once per run, exactly as guided-diffusion's
//! `GaussianDiffusion` / `SpacedDiffusion` do, and only the final coefficients are rounded to f32
//! for the GPU.

use std::collections::BTreeSet;

use crate::{Error, Result};

/// The forward-process noise schedule over the model's training timesteps.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BetaSchedule {
    /// betas = linspace(scale * 1e-4, scale * 0.02, T) with scale = 1000 / T (DDPM, DPS).
    Linear,
    /// Nichol & Dhariwal: abar(t) = cos^2(((t/T) + 0.008) / 1.008 * pi/2), betas capped at 0.999.
    Cosine,
}

impl BetaSchedule {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "linear" => Ok(Self::Linear),
            "cosine" => Ok(Self::Cosine),
            _ => Err(Error::invalid(format!(
                "unknown beta schedule {s:?} (expected linear or cosine)"
            ))),
        }
    }

    /// The cumulative products abar_t = prod_{s <= t} (1 - beta_s) of `steps` timesteps.
    pub fn alphas_cumprod(self, steps: usize) -> Vec<f64> {
        cumprod(&self.betas(steps))
    }

    /// The betas of `steps` training timesteps (guided-diffusion's `get_named_beta_schedule`).
    pub fn betas(self, steps: usize) -> Vec<f64> {
        match self {
            Self::Linear => {
                let scale = 1000.0 / steps as f64;
                let (start, end) = (scale * 1e-4, scale * 0.02);
                if steps == 1 {
                    return vec![start];
                }
                // numpy.linspace: start + i * step, with the last value exactly `end`.
                let step = (end - start) / (steps - 1) as f64;
                (0..steps)
                    .map(|i| {
                        if i == steps - 1 {
                            end
                        } else {
                            start + i as f64 * step
                        }
                    })
                    .collect()
            }
            Self::Cosine => {
                let abar = |t: f64| {
                    ((t + 0.008) / 1.008 * std::f64::consts::FRAC_PI_2)
                        .cos()
                        .powi(2)
                };
                (0..steps)
                    .map(|i| {
                        let t1 = i as f64 / steps as f64;
                        let t2 = (i + 1) as f64 / steps as f64;
                        (1.0 - abar(t2) / abar(t1)).min(0.999)
                    })
                    .collect()
            }
        }
    }
}

/// What the model's extra output channels mean, or how the reverse variance is fixed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VarianceKind {
    /// learn_sigma models: log var = frac log(beta) + (1 - frac) log(beta_tilde), frac = (v+1)/2.
    LearnedRange,
    /// beta_t (with beta_tilde_1 at t = 0), guided-diffusion's "fixed_large".
    FixedLarge,
    /// beta_tilde_t, clipped at t = 0, "fixed_small".
    FixedSmall,
}

/// guided-diffusion's `space_timesteps`: which of `num_timesteps` training steps to keep.
///
/// `spec` is "K" (K evenly strided steps), "ddimK" (the stride that gives exactly K steps, as
/// DDIM), or comma-separated section counts "10,15,20" (each section of the timeline strided
/// separately). Rounding is Python's `round` (half to even), as the reference.
pub fn space_timesteps(num_timesteps: usize, spec: &str) -> Result<Vec<usize>> {
    let spec = spec.trim();
    let bad = |why: &str| {
        Error::invalid(format!(
            "timestep respacing {spec:?}: {why} (expected \"K\", \"ddimK\" or \"a,b,c\")"
        ))
    };
    if let Some(rest) = spec.strip_prefix("ddim") {
        let want: usize = rest.parse().map_err(|_| bad("not a step count"))?;
        for stride in 1..num_timesteps {
            if (0..num_timesteps).step_by(stride).count() == want {
                return Ok((0..num_timesteps).step_by(stride).collect());
            }
        }
        return Err(bad(&format!(
            "no integer stride gives exactly {want} of {num_timesteps} steps"
        )));
    }
    let counts: Vec<usize> = spec
        .split(',')
        .map(|s| s.trim().parse::<usize>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| bad("not a list of step counts"))?;
    if counts.is_empty() || counts.contains(&0) {
        return Err(bad("every section needs at least one step"));
    }
    let size_per = num_timesteps / counts.len();
    let extra = num_timesteps % counts.len();
    let mut kept = BTreeSet::new();
    let mut start = 0usize;
    for (i, &count) in counts.iter().enumerate() {
        let size = size_per + usize::from(i < extra);
        if size < count {
            return Err(bad(&format!(
                "cannot take {count} steps from a section of {size}"
            )));
        }
        let stride = if count <= 1 {
            1.0
        } else {
            (size - 1) as f64 / (count - 1) as f64
        };
        let mut cur = 0.0f64;
        for _ in 0..count {
            kept.insert(start + cur.round_ties_even() as usize);
            cur += stride;
        }
        start += size;
    }
    Ok(kept.into_iter().collect())
}

/// A (possibly respaced) diffusion process: betas over the kept steps and the derived terms,
/// in f64, as guided-diffusion's `GaussianDiffusion.__init__`.
#[derive(Clone, Debug)]
pub struct Diffusion {
    /// Original training timestep of each kept step (what the model is called with).
    pub timestep_map: Vec<usize>,
    pub betas: Vec<f64>,
    pub alphas_cumprod: Vec<f64>,
    pub alphas_cumprod_prev: Vec<f64>,
    pub posterior_variance: Vec<f64>,
    pub posterior_log_variance_clipped: Vec<f64>,
    pub posterior_mean_coef1: Vec<f64>,
    pub posterior_mean_coef2: Vec<f64>,
}

impl Diffusion {
    /// The process over `num_timesteps` training steps respaced to `respacing` (see
    /// [`space_timesteps`]); respacing recomputes the betas from the kept cumulative alphas.
    pub fn new(schedule: BetaSchedule, num_timesteps: usize, respacing: &str) -> Result<Self> {
        if num_timesteps < 2 {
            return Err(Error::invalid(
                "a diffusion needs at least 2 training timesteps",
            ));
        }
        let base = BetaSchedule::betas(schedule, num_timesteps);
        let kept = space_timesteps(num_timesteps, respacing)?;
        let mut abar = 1.0f64;
        let mut last = 1.0f64;
        let mut betas = Vec::with_capacity(kept.len());
        let mut next = kept.iter().peekable();
        for (i, b) in base.iter().enumerate() {
            abar *= 1.0 - b;
            if next.peek() == Some(&&i) {
                next.next();
                betas.push(1.0 - abar / last);
                last = abar;
            }
        }
        Ok(Self::from_betas(betas, kept))
    }

    fn from_betas(betas: Vec<f64>, timestep_map: Vec<usize>) -> Self {
        let k = betas.len();
        let alphas_cumprod = cumprod(&betas);
        let alphas_cumprod_prev: Vec<f64> = std::iter::once(1.0)
            .chain(alphas_cumprod[..k - 1].iter().copied())
            .collect();
        let posterior_variance: Vec<f64> = (0..k)
            .map(|i| betas[i] * (1.0 - alphas_cumprod_prev[i]) / (1.0 - alphas_cumprod[i]))
            .collect();
        // Index 0 of the posterior variance is 0; the reference replaces it by index 1.
        let posterior_log_variance_clipped = (0..k)
            .map(|i| posterior_variance[if i == 0 && k > 1 { 1 } else { i }].ln())
            .collect();
        let posterior_mean_coef1 = (0..k)
            .map(|i| betas[i] * alphas_cumprod_prev[i].sqrt() / (1.0 - alphas_cumprod[i]))
            .collect();
        let posterior_mean_coef2 = (0..k)
            .map(|i| {
                (1.0 - alphas_cumprod_prev[i]) * (1.0 - betas[i]).sqrt() / (1.0 - alphas_cumprod[i])
            })
            .collect();
        Self {
            timestep_map,
            betas,
            alphas_cumprod,
            alphas_cumprod_prev,
            posterior_variance,
            posterior_log_variance_clipped,
            posterior_mean_coef1,
            posterior_mean_coef2,
        }
    }

    /// Number of sampling steps.
    pub fn steps(&self) -> usize {
        self.betas.len()
    }

    /// The per-step coefficient table for `sampler`, in loop order (row 0 is the first step,
    /// index K-1; the last row is index 0).
    pub fn step_table(&self, sampler: Sampler, variance: VarianceKind) -> Vec<StepCoefficients> {
        (0..self.steps())
            .rev()
            .map(|i| self.coefficients(i, sampler, variance))
            .collect()
    }

    fn coefficients(&self, i: usize, sampler: Sampler, variance: VarianceKind) -> StepCoefficients {
        let ab = self.alphas_cumprod[i];
        let ab_prev = self.alphas_cumprod_prev[i];
        let c1 = (1.0 / ab).sqrt();
        let c2 = (1.0 / ab - 1.0).sqrt();
        let last = i == 0;
        match sampler {
            Sampler::Ddpm => {
                let (max_log, min_log) = match variance {
                    VarianceKind::LearnedRange => {
                        (self.betas[i].ln(), self.posterior_log_variance_clipped[i])
                    }
                    VarianceKind::FixedLarge => {
                        // append(posterior_variance[1], betas[1:])
                        let v = if i == 0 && self.steps() > 1 {
                            self.posterior_variance[1]
                        } else {
                            self.betas[i]
                        };
                        (v.ln(), v.ln())
                    }
                    VarianceKind::FixedSmall => (
                        self.posterior_log_variance_clipped[i],
                        self.posterior_log_variance_clipped[i],
                    ),
                };
                StepCoefficients {
                    timestep: self.timestep_map[i] as f64,
                    sqrt_recip_abar: c1,
                    sqrt_recipm1_abar: c2,
                    coef_x0: self.posterior_mean_coef1[i],
                    coef_xt: self.posterior_mean_coef2[i],
                    max_log_var: max_log,
                    min_log_var: min_log,
                    noise_gate: if last { 0.0 } else { 1.0 },
                }
            }
            Sampler::Ddim { eta } => {
                // sigma = eta sqrt((1 - abar_prev) / (1 - abar)) sqrt(1 - abar / abar_prev), and
                // the eps re-derived from the clipped x0: eps = (c1 x_t - x0) / c2.
                let sigma =
                    eta * ((1.0 - ab_prev) / (1.0 - ab)).sqrt() * (1.0 - ab / ab_prev).sqrt();
                let k = (1.0 - ab_prev - sigma * sigma).max(0.0).sqrt();
                let (gate, log_var) = if sigma > 0.0 && !last {
                    (1.0, 2.0 * sigma.ln())
                } else {
                    (0.0, 0.0)
                };
                StepCoefficients {
                    timestep: self.timestep_map[i] as f64,
                    sqrt_recip_abar: c1,
                    sqrt_recipm1_abar: c2,
                    coef_x0: ab_prev.sqrt() - k / c2,
                    coef_xt: k * c1 / c2,
                    max_log_var: log_var,
                    min_log_var: log_var,
                    noise_gate: gate,
                }
            }
        }
    }
}

/// The reverse-step rule.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Sampler {
    /// Ancestral sampling from the posterior q(x_{t-1} | x_t, x0_hat).
    Ddpm,
    /// DDIM with stochasticity eta (0: deterministic).
    Ddim { eta: f64 },
}

impl Sampler {
    /// `ddpm` or `ddim` with DDIM's stochasticity `eta`, which must be finite and >= 0 (it is
    /// checked for `ddpm` too, where it is unused, so a bad value never passes silently).
    pub fn parse(s: &str, eta: f64) -> Result<Self> {
        if !(eta.is_finite() && eta >= 0.0) {
            return Err(Error::invalid(format!(
                "--eta {eta}: DDIM's eta must be a finite number >= 0"
            )));
        }
        match s {
            "ddpm" => Ok(Self::Ddpm),
            "ddim" => Ok(Self::Ddim { eta }),
            _ => Err(Error::invalid(format!(
                "unknown sampler {s:?} (expected ddpm or ddim)"
            ))),
        }
    }
}

/// One step's coefficients, in f64 (the GPU table rounds them to f32).
///
/// With `eps` the model's noise prediction and `v` its variance channels:
///   x0      = clip(sqrt_recip_abar x_t - sqrt_recipm1_abar eps)
///   frac    = (v + 1) / 2 (learned range; the two logs are equal otherwise)
///   x_prev  = coef_x0 x0 + coef_xt x_t
///             + noise_gate exp(0.5 (frac max_log_var + (1 - frac) min_log_var)) z
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepCoefficients {
    pub timestep: f64,
    pub sqrt_recip_abar: f64,
    pub sqrt_recipm1_abar: f64,
    pub coef_x0: f64,
    pub coef_xt: f64,
    pub max_log_var: f64,
    pub min_log_var: f64,
    pub noise_gate: f64,
}

impl StepCoefficients {
    /// Floats per row of the GPU table (see `shaders/diffusion.wgsl`).
    pub const ROW: usize = 8;

    pub fn row(&self) -> [f32; Self::ROW] {
        [
            self.timestep as f32,
            self.sqrt_recip_abar as f32,
            self.sqrt_recipm1_abar as f32,
            self.coef_x0 as f32,
            self.coef_xt as f32,
            self.max_log_var as f32,
            self.min_log_var as f32,
            self.noise_gate as f32,
        ]
    }
}

/// `prod_{s <= t} (1 - beta_s)` for every t.
fn cumprod(betas: &[f64]) -> Vec<f64> {
    let mut acc = 1.0f64;
    betas
        .iter()
        .map(|b| {
            acc *= 1.0 - b;
            acc
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn respacing_matches_guided_diffusion() {
        // Values worked out from guided-diffusion's space_timesteps by hand.
        assert_eq!(
            space_timesteps(10, "3").unwrap(),
            vec![0, 4, 9] // stride 4.5: 0, round(4.5) = 4 (half to even), 9
        );
        assert_eq!(space_timesteps(1000, "ddim50").unwrap().len(), 50);
        assert_eq!(space_timesteps(1000, "ddim50").unwrap()[1], 20);
        assert_eq!(space_timesteps(300, "10,10,10").unwrap().len(), 30);
        assert_eq!(space_timesteps(10, "2,1").unwrap(), vec![0, 4, 5]);
        let hundred = space_timesteps(1000, "100").unwrap();
        assert_eq!(hundred.len(), 100);
        assert_eq!((hundred[0], hundred[99]), (0, 999));
        assert!(space_timesteps(10, "11").is_err());
        assert!(space_timesteps(1000, "ddim999").is_err());
        assert!(space_timesteps(1000, "x").is_err());
    }

    #[test]
    fn full_schedule_is_unchanged_by_identity_respacing() {
        let d = Diffusion::new(BetaSchedule::Linear, 1000, "1000").unwrap();
        let b = BetaSchedule::Linear.betas(1000);
        for (x, y) in d.betas.iter().zip(&b) {
            assert!((x - y).abs() < 1e-15);
        }
        assert!((b[0] - 1e-4).abs() < 1e-18 && (b[999] - 0.02).abs() < 1e-18);
    }

    #[test]
    fn respaced_schedule_keeps_the_cumulative_alphas() {
        let full = Diffusion::new(BetaSchedule::Linear, 1000, "1000").unwrap();
        let spaced = Diffusion::new(BetaSchedule::Linear, 1000, "25").unwrap();
        for (j, &t) in spaced.timestep_map.iter().enumerate() {
            let rel = (spaced.alphas_cumprod[j] / full.alphas_cumprod[t] - 1.0).abs();
            assert!(rel < 1e-12, "step {j} (t = {t}): {rel}");
        }
    }

    #[test]
    fn ddim_eta_one_on_the_full_schedule_is_ddpm_fixed_small() {
        let d = Diffusion::new(BetaSchedule::Cosine, 50, "50").unwrap();
        let a = d.step_table(Sampler::Ddpm, VarianceKind::FixedSmall);
        let b = d.step_table(Sampler::Ddim { eta: 1.0 }, VarianceKind::FixedSmall);
        // Every step but the last (index 0, where the log-variance clipping differs and no
        // noise is added).
        for (x, y) in a.iter().zip(&b).take(a.len() - 1) {
            assert!((x.coef_x0 - y.coef_x0).abs() < 1e-9, "{x:?} {y:?}");
            assert!((x.coef_xt - y.coef_xt).abs() < 1e-9, "{x:?} {y:?}");
            assert!((x.max_log_var - y.max_log_var).abs() < 1e-9, "{x:?} {y:?}");
        }
    }
}
