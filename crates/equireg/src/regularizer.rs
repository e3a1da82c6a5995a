//! EquiReg (Tolooshams et al. 2025): the equivariance error of an MPE function f at the clean
//! estimate, added to the data term before differentiation.
//!
//! Semantics follow the reference implementation (Anima-Lab/Equireg):
//! - `equi`: `red(rho(g) f(x0) - f(g x0))`; `equi_plus`: `red(x0 - g^-1 f(g x0))`, per sample;
//!   `red` is `norm`, `sqnorm` or `mse`. When f returns a vector (no spatial axes), rho(g) is the
//!   identity and the penalty measures invariance (the reference rotates such vectors, which
//!   means nothing).
//! - one element g per firing step, drawn uniformly from the group's elements (here on the GPU,
//!   from the step counter, so a run repeats with its seed);
//! - schedules: `constant` fires when `step % int(1/freq) == 0`, `cutoff` likewise but not while
//!   `step > total - cutoff`, `every` fires every step; alpha 0 never fires (no work at all).
//!   `step` is what the reference's DPS integration passes (`reg(x_0_hat, step=idx)`): DPS's
//!   loop index `idx`, which counts the respaced timesteps down from K-1 to 0. So at K = 100 and
//!   freq 0.1 the penalty fires on loop steps 9, 19, ..., 99: never on the first step (pure
//!   noise), always on the last. `count=loop` counts loop steps up from 0 instead: the task
//!   presets' count ([`crate::task::EquiRegPreset`]), chosen on validation crops (docs/RESULTS.md);
//!   `EquiRegConfig::default()` keeps the reference's.
//!
//! Per firing step, after the data term's VJP has written dL/dx0:
//! `draw g; f([x0; g x0]); fused residual + norms + cotangents; f VJP; dx0 += (f-grads mapped
//! back by identity and g^-1)`. The UNet VJP that follows then carries both terms: no extra UNet
//! evaluation.

use equireg_gpu::ops::equivariance::{
    Action, Dihedral, DrawSpec, Form, Items, Reduce, Residual, draw_element, equi_cotangent,
    equi_norms, penalty, transform,
};
use equireg_gpu::{DType, Gpu, Recorder, Tensor};

use crate::mpe::{Mpe, MpeRun};
use crate::{Error, Result};

/// Philox stream of the group-element draws.
const STREAM_GROUP: u32 = 7;

/// When the penalty fires.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Schedule {
    /// Every int(1/freq) steps.
    Constant {
        freq: f64,
    },
    /// As constant, but off for the last `last` steps.
    Cutoff {
        freq: f64,
        last: usize,
    },
    Every,
}

impl Schedule {
    /// Whether the schedule's `step` of `total` fires (the reference's rule; which loop step a
    /// `step` is, is [`StepCount`]'s business).
    pub fn fires(&self, step: usize, total: usize) -> bool {
        let period = |freq: f64| ((1.0 / freq) as usize).max(1);
        match *self {
            Schedule::Every => true,
            Schedule::Constant { freq } => step.is_multiple_of(period(freq)),
            Schedule::Cutoff { freq, last } => {
                step.is_multiple_of(period(freq)) && step + last <= total
            }
        }
    }
}

/// Which number of a loop step the schedule sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepCount {
    /// DPS's timestep index: K-1 on the first of K steps, 0 on the last (the reference).
    Timestep,
    /// The loop step: 0 on the first step, K-1 on the last.
    Loop,
}

impl StepCount {
    /// The schedule's step for loop step `k` (0 = the first) of `total`.
    pub fn step(self, k: usize, total: usize) -> usize {
        match self {
            StepCount::Timestep => total.saturating_sub(1 + k),
            StepCount::Loop => k,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            StepCount::Timestep => "timestep",
            StepCount::Loop => "loop",
        }
    }
}

/// A group by name: `hflip`, `vflip`, `rot90` ({90, 270} degrees, as the reference), `c4`
/// (all four rotations), `rot180`, `d4` (all 8), `shift:S` (cyclic translations with |dy|, |dx|
/// <= S steps), or products joined by `*` (e.g. `hflip*rot90`, `d4*shift:4`).
#[derive(Clone, Debug, PartialEq)]
pub struct Group {
    pub elements: Vec<Dihedral>,
    pub max_shift: u32,
    pub name: String,
}

impl Group {
    pub fn parse(spec: &str) -> Result<Group> {
        let mut elements = vec![Dihedral::Identity];
        let mut max_shift = 0u32;
        for factor in spec.split('*').map(str::trim) {
            let f: Vec<Dihedral> = match factor {
                "hflip" => vec![Dihedral::FlipH],
                "vflip" => vec![Dihedral::FlipV],
                "rot90" => vec![Dihedral::Rot90, Dihedral::Rot270],
                "c4" => vec![
                    Dihedral::Identity,
                    Dihedral::Rot90,
                    Dihedral::Rot180,
                    Dihedral::Rot270,
                ],
                "rot180" => vec![Dihedral::Rot180],
                "d4" => Dihedral::ALL.to_vec(),
                s if s.starts_with("shift:") => {
                    max_shift = s[6..].parse().map_err(|_| {
                        Error::invalid(format!(
                            "group factor {s:?}: expected shift:S, e.g. shift:4"
                        ))
                    })?;
                    vec![Dihedral::Identity]
                }
                other => {
                    return Err(Error::invalid(format!(
                        "unknown group {other:?}: expected hflip, vflip, rot90, c4, rot180, d4, \
                         shift:S or a product like hflip*rot90"
                    )));
                }
            };
            let mut next = Vec::new();
            for a in &elements {
                for b in &f {
                    let c = a.compose(*b);
                    if !next.contains(&c) {
                        next.push(c);
                    }
                }
            }
            elements = next;
        }
        if max_shift == 0 && elements.iter().all(|d| *d == Dihedral::Identity) {
            return Err(Error::invalid(format!(
                "EquiReg group {spec:?} holds only the identity: the penalty would be exactly \
                 zero; use hflip, vflip, rot90, c4, rot180, d4, shift:S with S >= 1 or a product"
            )));
        }
        Ok(Group {
            elements,
            max_shift,
            name: spec.to_string(),
        })
    }

    /// Whether an element of the group needs square images (a rotation by 90 or 270 degrees).
    pub fn needs_square(&self) -> bool {
        self.elements.iter().any(|d| d.needs_square())
    }
}

/// Settings of the regularizer (the `--equireg` option).
#[derive(Clone, Debug)]
pub struct EquiRegConfig {
    pub group: Group,
    pub alpha: f64,
    pub form: Form,
    pub reduce: Reduce,
    pub schedule: Schedule,
    pub count: StepCount,
    /// Where f comes from: a path (weights + config) or `denoiser[:t]`.
    pub mpe: String,
}

impl Default for EquiRegConfig {
    fn default() -> Self {
        Self {
            group: Group::parse("hflip").expect("a valid group"),
            alpha: 0.01,
            form: Form::Equi,
            reduce: Reduce::Norm,
            schedule: Schedule::Constant { freq: 0.1 },
            count: StepCount::Timestep,
            mpe: "denoiser".into(),
        }
    }
}

impl EquiRegConfig {
    /// Applies `key=value,key=value` settings (group, alpha, freq, form, reduction, schedule,
    /// cutoff, count, mpe) on top of `self`.
    pub fn with_settings(mut self, spec: &str) -> Result<Self> {
        let mut freq = match self.schedule {
            Schedule::Constant { freq } | Schedule::Cutoff { freq, .. } => freq,
            Schedule::Every => 1.0,
        };
        let mut last = match self.schedule {
            Schedule::Cutoff { last, .. } => last,
            _ => 100,
        };
        let mut kind = match self.schedule {
            Schedule::Constant { .. } => "constant",
            Schedule::Cutoff { .. } => "cutoff",
            Schedule::Every => "every",
        }
        .to_string();
        for kv in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (k, v) = kv.split_once('=').ok_or_else(|| {
                Error::invalid(format!("EquiReg setting {kv:?}: expected key=value"))
            })?;
            let num = |v: &str| -> Result<f64> {
                v.parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite())
                    .ok_or_else(|| Error::invalid(format!("EquiReg {k}={v}: not a number")))
            };
            match k.trim() {
                "group" => self.group = Group::parse(v)?,
                "alpha" => {
                    self.alpha = num(v)?;
                    if self.alpha < 0.0 {
                        return Err(Error::invalid("EquiReg alpha must be >= 0"));
                    }
                }
                "freq" => {
                    freq = num(v)?;
                    if !(freq > 0.0 && freq <= 1.0) {
                        return Err(Error::invalid("EquiReg freq must be in (0, 1]"));
                    }
                }
                "cutoff" => {
                    last = v.trim().parse::<usize>().map_err(|_| {
                        Error::invalid(format!(
                            "EquiReg cutoff={v}: expected a whole number of steps >= 0"
                        ))
                    })?
                }
                "schedule" => kind = v.to_string(),
                "form" => {
                    self.form = match v {
                        "equi" => Form::Equi,
                        "equi_plus" => Form::EquiPlus,
                        _ => {
                            return Err(Error::invalid(format!(
                                "EquiReg form {v:?}: expected equi or equi_plus"
                            )));
                        }
                    }
                }
                "reduction" => {
                    self.reduce = match v {
                        "norm" => Reduce::Norm,
                        "sqnorm" => Reduce::SqNorm,
                        "mse" => Reduce::Mse,
                        _ => {
                            return Err(Error::invalid(format!(
                                "EquiReg reduction {v:?}: expected norm, sqnorm or mse"
                            )));
                        }
                    }
                }
                "count" => {
                    self.count = match v {
                        "timestep" => StepCount::Timestep,
                        "loop" => StepCount::Loop,
                        _ => {
                            return Err(Error::invalid(format!(
                                "EquiReg count {v:?}: expected timestep (the reference: DPS's \
                                 index, K-1 down to 0) or loop (0 up to K-1)"
                            )));
                        }
                    }
                }
                "mpe" => self.mpe = v.to_string(),
                other => {
                    return Err(Error::invalid(format!(
                        "unknown EquiReg setting {other:?}: expected group, alpha, freq, form, \
                         reduction, schedule, cutoff, count or mpe"
                    )));
                }
            }
        }
        self.schedule = match kind.as_str() {
            "constant" => Schedule::Constant { freq },
            "cutoff" => Schedule::Cutoff { freq, last },
            "every" => Schedule::Every,
            _ => {
                return Err(Error::invalid(format!(
                    "EquiReg schedule {kind:?}: expected constant, cutoff or every"
                )));
            }
        };
        Ok(self)
    }

    /// All settings as `key=value,...`, which [`EquiRegConfig::with_settings`] reads back to
    /// the same configuration: what a run records of the regularizer it used.
    pub fn settings(&self) -> String {
        let (schedule, freq, cutoff) = match self.schedule {
            Schedule::Constant { freq } => ("constant", freq, None),
            Schedule::Cutoff { freq, last } => ("cutoff", freq, Some(last)),
            Schedule::Every => ("every", 1.0, None),
        };
        let form = match self.form {
            Form::Equi => "equi",
            Form::EquiPlus => "equi_plus",
        };
        let reduction = match self.reduce {
            Reduce::Norm => "norm",
            Reduce::SqNorm => "sqnorm",
            Reduce::Mse => "mse",
        };
        let cutoff = cutoff.map(|c| format!(",cutoff={c}")).unwrap_or_default();
        format!(
            "group={},alpha={},freq={freq},form={form},reduction={reduction},schedule={schedule}\
             {cutoff},count={},mpe={}",
            self.group.name,
            self.alpha,
            self.count.name(),
            self.mpe
        )
    }

    /// An error unless the settings make sense for a run of `steps` sampling steps: a `cutoff`
    /// schedule whose cutoff is not below the step count would never fire.
    pub fn check_steps(&self, steps: usize) -> Result<()> {
        if let Schedule::Cutoff { last, .. } = self.schedule
            && last >= steps
        {
            return Err(Error::invalid(format!(
                "EquiReg cutoff={last} with schedule=cutoff: out of range for {steps} steps \
                 (the penalty would never fire); the cutoff must be below the step count"
            )));
        }
        Ok(())
    }

    /// Whether loop step `k` (0 = the first) of `total` does regularizer work.
    pub fn fires(&self, k: usize, total: usize) -> bool {
        self.alpha > 0.0 && self.schedule.fires(self.count.step(k, total), total)
    }
}

/// The regularizer planned for a batch `[N, C, H, W]`.
pub struct EquiReg<'m> {
    pub config: EquiRegConfig,
    run: Box<dyn MpeRun + 'm>,
    n: usize,
    seed: u64,
    elements: Tensor,
    g: Tensor,
    sq: Tensor,
    value: Tensor,
    /// rho(g) acts on f's output grid, whose shifts are the image's divided by this.
    shift_div: u32,
    rho_is_g: bool,
    item: usize,
}

impl<'m> EquiReg<'m> {
    pub fn new(
        gpu: &Gpu,
        config: EquiRegConfig,
        mpe: &'m dyn Mpe,
        [n, c, h, w]: [usize; 4],
    ) -> Result<Self> {
        if config.group.needs_square() && h != w {
            return Err(Error::invalid(format!(
                "group {} rotates or transposes, which needs square images; got {h}x{w}",
                config.group.name
            )));
        }
        let batch = match config.form {
            Form::Equi => 2 * n,
            Form::EquiPlus => n,
        };
        let run = mpe.plan(gpu, batch, h, w)?;
        let out = run.output().shape().to_vec();
        let (rho_is_g, shift_div, item) = match out.as_slice() {
            [_, d] => (false, 1, *d),
            [_, cf, hf, wf] if *hf == 1 && *wf == 1 => (false, 1, *cf),
            [_, cf, hf, wf] => {
                if h % hf != 0 || w % wf != 0 || h / hf != w / wf {
                    return Err(Error::invalid(format!(
                        "MPE output {out:?} is not a uniform downsampling of {h}x{w}"
                    )));
                }
                (true, (h / hf) as u32, cf * hf * wf)
            }
            _ => {
                return Err(Error::invalid(format!(
                    "MPE output must be [B, D] or [B, C, H, W], got {out:?}"
                )));
            }
        };
        if config.form == Form::EquiPlus && out != [n, c, h, w] {
            return Err(Error::invalid(format!(
                "equi_plus compares x0 with g^-1 f(g x0), so f must keep the image shape \
                 [{n}, {c}, {h}, {w}]; {} returns {out:?}",
                mpe.name()
            )));
        }
        if config.group.max_shift > 0 && !rho_is_g && config.form == Form::Equi {
            log::info!("translations with a vector-valued MPE: the penalty measures invariance");
        }
        let codes: Vec<u32> = config.group.elements.iter().map(|d| d.code()).collect();
        Ok(Self {
            elements: gpu.upload_u32(&[codes.len()], &codes)?,
            g: gpu.alloc(&[4], DType::U32)?,
            sq: gpu.alloc(&[n], DType::F32)?,
            value: gpu.alloc(&[n], DType::F32)?,
            config,
            run,
            n,
            seed: 0,
            shift_div,
            rho_is_g,
            item,
        })
    }

    /// The seed of the element draws (the run's seed).
    pub fn set_seed(&mut self, seed: u64) {
        self.seed = seed;
    }

    /// The penalty alpha * red(r) per sample at the last firing step.
    pub fn value(&self) -> &Tensor {
        &self.value
    }

    /// The element drawn at the last firing step, [code, dy, dx, index].
    pub fn element(&self) -> &Tensor {
        &self.g
    }

    /// Records the penalty's gradient with respect to `x0`, added into `dx0`; `step` is the
    /// sampler's GPU step counter (it keys the element draw).
    pub fn record(
        &self,
        rec: &mut Recorder,
        x0: &Tensor,
        dx0: &Tensor,
        step: &Tensor,
    ) -> Result<()> {
        let n = self.n;
        draw_element(
            rec,
            &self.elements,
            step,
            &self.g,
            DrawSpec {
                seed: self.seed,
                stream: STREAM_GROUP,
                max_shift: self.config.group.max_shift,
                shift_multiple: self.shift_div,
            },
        )?;
        let f_in = self.run.input();
        let at = |src_item, dst_item| Items {
            src_item,
            dst_item,
            count: n,
        };
        match self.config.form {
            Form::Equi => {
                transform(rec, &self.g, x0, f_in, Action::Identity, at(0, 0), false, 1)?;
                transform(rec, &self.g, x0, f_in, Action::Forward, at(0, n), false, 1)?;
            }
            Form::EquiPlus => {
                transform(rec, &self.g, x0, f_in, Action::Forward, at(0, 0), false, 1)?;
            }
        }
        self.run.record_forward(rec)?;
        let res = Residual {
            g: &self.g,
            f_out: self.run.output(),
            x: x0,
            form: self.config.form,
            rho_is_g: self.rho_is_g,
            shift_div: self.shift_div,
        };
        let alpha = self.config.alpha as f32;
        equi_norms(rec, res, &self.sq)?;
        // equi_plus writes its direct term straight into dx0 (accumulate).
        equi_cotangent(
            rec,
            res,
            &self.sq,
            self.config.reduce,
            alpha,
            self.run.cotangent(),
            dx0,
            true,
        )?;
        penalty(
            rec,
            &self.sq,
            &self.value,
            self.config.reduce,
            alpha,
            self.item,
        )?;
        self.run.record_vjp(rec)?;
        let grad = self.run.input_grad();
        match self.config.form {
            Form::Equi => {
                transform(rec, &self.g, grad, dx0, Action::Identity, at(0, 0), true, 1)?;
                transform(rec, &self.g, grad, dx0, Action::Inverse, at(n, 0), true, 1)?;
            }
            Form::EquiPlus => {
                transform(rec, &self.g, grad, dx0, Action::Inverse, at(0, 0), true, 1)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_parse_and_compose() {
        assert_eq!(
            Group::parse("hflip").unwrap().elements,
            vec![Dihedral::FlipH]
        );
        assert_eq!(
            Group::parse("rot90").unwrap().elements,
            vec![Dihedral::Rot90, Dihedral::Rot270]
        );
        assert_eq!(Group::parse("d4").unwrap().elements.len(), 8);
        assert_eq!(Group::parse("hflip*rot90").unwrap().elements.len(), 2);
        let t = Group::parse("c4*shift:3").unwrap();
        assert_eq!((t.elements.len(), t.max_shift), (4, 3));
        assert!(Group::parse("rot45").is_err());
        assert!(Group::parse("shift:x").is_err());
        // A group of the identity alone gives a penalty of exactly zero: refused.
        for only_identity in ["shift:0", "hflip*hflip", "rot180*rot180"] {
            let e = Group::parse(only_identity).unwrap_err().to_string();
            assert!(e.contains("only the identity"), "{only_identity}: {e}");
        }
    }

    #[test]
    fn cutoffs_are_whole_numbers_below_the_step_count() {
        for bad in ["cutoff=-5", "cutoff=1.5", "cutoff=nan", "cutoff=inf"] {
            let e = EquiRegConfig::default().with_settings(bad).unwrap_err();
            assert!(e.to_string().contains("cutoff"), "{bad}: {e}");
        }
        let c = EquiRegConfig::default()
            .with_settings("schedule=cutoff,cutoff=10")
            .unwrap();
        assert!(c.check_steps(11).is_ok());
        let e = c.check_steps(10).unwrap_err().to_string();
        assert!(e.contains("cutoff=10") && e.contains("never fire"), "{e}");
        // The cutoff means nothing to the other schedules.
        let c = EquiRegConfig::default()
            .with_settings("cutoff=500")
            .unwrap();
        assert!(c.check_steps(10).is_ok());
    }

    #[test]
    fn schedules_fire_as_the_reference() {
        let c = Schedule::Constant { freq: 0.1 };
        let fired: Vec<usize> = (0..30).filter(|&k| c.fires(k, 30)).collect();
        assert_eq!(fired, vec![0, 10, 20]);
        let cut = Schedule::Cutoff { freq: 0.5, last: 4 };
        let fired: Vec<usize> = (0..10).filter(|&k| cut.fires(k, 10)).collect();
        assert_eq!(fired, vec![0, 2, 4, 6]);
        assert!((0..5).all(|k| Schedule::Every.fires(k, 5)));
        let off = EquiRegConfig::default().with_settings("alpha=0").unwrap();
        assert!(!(0..100).any(|k| off.fires(k, 100)));
    }

    /// Which loop steps fire, as the reference's DPS loop would call `reg(x_0_hat, step=idx)`
    /// for idx in reversed(range(K)), restated independently of [`StepCount`].
    fn reference_loop_steps(schedule: Schedule, total: usize) -> Vec<usize> {
        (0..total)
            .rev()
            .enumerate()
            .filter(|&(_, idx)| schedule.fires(idx, total))
            .map(|(k, _)| k)
            .collect()
    }

    #[test]
    fn the_default_count_is_dps_timestep_index() {
        let on = |spec: &str, total: usize| -> Vec<usize> {
            let c = EquiRegConfig::default().with_settings(spec).unwrap();
            (0..total).filter(|&k| c.fires(k, total)).collect()
        };
        // K = 100, every 10th: the last loop step fires, the first does not.
        let steps = on("", 100);
        assert_eq!(steps, (0..10).map(|j| 9 + 10 * j).collect::<Vec<_>>());
        assert_eq!(
            steps,
            reference_loop_steps(Schedule::Constant { freq: 0.1 }, 100)
        );
        assert_eq!(
            on("count=loop", 100),
            (0..10).map(|j| 10 * j).collect::<Vec<_>>()
        );
        // cutoff 100 at K = 1000 is off on the 99 noisiest steps: idx > 900.
        let cut = on("schedule=cutoff,cutoff=100", 1000);
        assert_eq!(cut.first(), Some(&99));
        assert_eq!(cut.last(), Some(&999));
        assert_eq!(
            cut,
            reference_loop_steps(
                Schedule::Cutoff {
                    freq: 0.1,
                    last: 100
                },
                1000
            )
        );
        // and at K = 50 never fires (idx > -50 always), as in the reference.
        assert!(on("schedule=cutoff,cutoff=100", 50).is_empty());
        assert!(EquiRegConfig::default().with_settings("count=up").is_err());
    }

    #[test]
    fn settings_read_back_to_the_same_configuration() {
        for spec in [
            "",
            "count=loop",
            "group=d4*shift:2,alpha=0.5,freq=0.25,form=equi_plus,reduction=mse,schedule=cutoff,\
             cutoff=30,mpe=denoiser:200",
            "schedule=every,reduction=sqnorm,alpha=0",
        ] {
            let c = EquiRegConfig::default().with_settings(spec).unwrap();
            let back = EquiRegConfig::default()
                .with_settings(&c.settings())
                .unwrap();
            assert_eq!(back.settings(), c.settings(), "{spec}");
            assert_eq!(
                (
                    back.group,
                    back.alpha,
                    back.form,
                    back.reduce,
                    back.schedule,
                    back.count,
                    back.mpe
                ),
                (
                    c.group, c.alpha, c.form, c.reduce, c.schedule, c.count, c.mpe
                ),
                "{spec}"
            );
        }
        assert!(
            EquiRegConfig::default()
                .settings()
                .contains("count=timestep")
        );
    }

    #[test]
    fn settings_parse_and_reject_bad_values() {
        let c = EquiRegConfig::default()
            .with_settings(
                "group=rot90,alpha=0.05,freq=0.5,form=equi_plus,reduction=mse,schedule=every",
            )
            .unwrap();
        assert_eq!(c.group.elements.len(), 2);
        assert_eq!(
            (c.form, c.reduce, c.schedule),
            (Form::EquiPlus, Reduce::Mse, Schedule::Every)
        );
        for bad in [
            "alpha=-1",
            "freq=0",
            "form=x",
            "reduction=l1",
            "schedule=x",
            "colour=red",
            "alpha",
        ] {
            assert!(
                EquiRegConfig::default().with_settings(bad).is_err(),
                "{bad}"
            );
        }
    }
}
