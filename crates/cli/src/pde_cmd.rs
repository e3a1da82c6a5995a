//! `equireg pde`: reconstruct joint PDE fields (coefficient, solution) from random point
//! observations of one or both channels, with a 2-channel diffusion prior, DPS guidance and
//! (with `--compare`) DPS+EquiReg with the problem's valid symmetry group.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args;
use equireg::images;
use equireg::mpe;
use equireg::operators::Operator;
use equireg::pde::metrics::CaseMetrics;
use equireg::pde::observe::{PointObservation, check_points};
use equireg::pde::panel::{PanelInput, render};
use equireg::pde::problem::load_cases;
use equireg::pde::reconstruct::{PdeSettings, default_zeta, reconstruct};
use equireg::pde::residual::{DarcyPenalty, ResidualSettings};
use equireg::pde::{FieldNorm, Observe, Problem};
use equireg::regularizer::EquiRegConfig;
use equireg::schedule::Sampler;
use equireg::solvers::Penalty;
use equireg_gpu::Gpu;
use equireg_nn::{UNet, UNetConfig, Weights, io::write_atomic, npy};
use serde_json::json;

use crate::outdir::OutDir;

#[derive(Args)]
#[command(after_long_help = "\
INPUT: CASES.npy, float32 [N, 2, H, W] in physical units: channel 0 the coefficient (Darcy's a, \
the source f, or w0), channel 1 the solution (u, or w at T). tools/pde_data.py makes them.

OUTPUTS: DIR/case-0000/ ... one folder per case in input order, each with observed.npy (the \
mask of observed points, [2, H, W]), reconstruction_dps.npy and, with --compare, \
reconstruction_equireg.npy ([2, H, W], physical units), panel.png (rows: the two channels; \
columns: truth, observed points, each reconstruction, each absolute error) and panel.txt (its \
colour scales); DIR/metrics.json and DIR/metrics.csv: relative L2 of each channel per case and \
method, and for Darcy the error rate of the coefficient thresholded at 7.5.

MODELS: --model DIR holds config.json, weights.safetensors and field.json (the normalisation) as \
tools/train_prior.py --fields writes them; without it, the embedded prior of the problem is used \
(Darcy ships one).

EXAMPLES:
  equireg pde --problem darcy --observe a --points 123 --input assets/pde/darcy_test.npy --out out/pde
  equireg pde --problem darcy --observe u --points 500 --input cases.npy --compare --out out/pde")]
pub struct PdeArgs {
    /// darcy, poisson, helmholtz or navier-stokes
    #[arg(long)]
    problem: String,
    /// The observed channel: a (the coefficient: forward problem), u (the solution: inverse
    /// problem) or both
    #[arg(long)]
    observe: String,
    /// Observed points per observed channel, drawn uniformly without replacement from --seed
    #[arg(long, default_value_t = 500)]
    points: usize,
    /// The cases: float32 .npy [N, 2, H, W], physical units
    #[arg(long)]
    input: PathBuf,
    /// Output folder; it must be empty or new, unless --overwrite
    #[arg(long)]
    out: PathBuf,
    /// Reuse a non-empty --out: remove what an earlier run recorded writing there first
    #[arg(long)]
    overwrite: bool,
    /// Sampling steps (respaced from 1000), or a respacing like "ddim50"
    #[arg(long, default_value = "100")]
    steps: String,
    /// Seed of the observed points and of the sampler
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Also run DPS+EquiReg (the problem's valid group, the prior's own denoiser as the MPE
    /// function) from the same seed and points
    #[arg(long)]
    compare: bool,
    /// Plain DPS only (the default without --compare; refused with it)
    #[arg(long, conflicts_with = "compare")]
    no_equireg: bool,
    /// EquiReg settings over the problem's defaults, e.g. alpha=0.03,group=shift:4
    #[arg(long, value_name = "KEY=VALUE,...")]
    equireg: Option<String>,
    /// DPS step size (default: the problem's, see assets/pde/README.md)
    #[arg(long)]
    zeta: Option<f64>,
    /// Add the PDE residual penalty with this weight to every method (Darcy: FunDPS's
    /// Dx(a Dx u) + Dy(a Dy u) + 1 on the physical fields, Huber with delta 1, mean over the
    /// interior, acting once the step's sigma is at most 1)
    #[arg(long, value_name = "WEIGHT")]
    residual: Option<f64>,
    /// A prior folder (config.json, weights.safetensors, field.json) instead of the embedded one
    #[arg(long)]
    model: Option<PathBuf>,
    /// Cases restored together
    #[arg(long, default_value_t = 8)]
    batch: usize,
}

struct Prior {
    config: UNetConfig,
    weights: Weights,
    norm: FieldNorm,
    label: String,
}

fn load_prior(problem: Problem, dir: Option<&Path>) -> anyhow::Result<Prior> {
    match dir {
        Some(dir) => {
            let config_path = dir.join("config.json");
            let text = std::fs::read_to_string(&config_path)
                .with_context(|| format!("cannot read {}", config_path.display()))?;
            let config = UNetConfig::from_json(&text)
                .with_context(|| format!("{}", config_path.display()))?;
            let weights_path = dir.join("weights.safetensors");
            let weights = Weights::load(&weights_path)?;
            let norm = FieldNorm::load(&dir.join("field.json"))?;
            Ok(Prior {
                config,
                weights,
                norm,
                label: dir.display().to_string(),
            })
        }
        None => match problem {
            Problem::Darcy => Ok(Prior {
                config: equireg::default_models::darcy_config()?,
                weights: equireg::default_models::darcy_weights()?,
                norm: equireg::default_models::darcy_norm()?,
                label: "darcy (embedded default)".into(),
            }),
            other => bail!(
                "--problem {}: no embedded prior for this problem yet; train one with \
                 tools/train_prior.py --fields and pass --model DIR",
                other.name()
            ),
        },
    }
}

fn case_name(index: usize) -> String {
    format!("case-{index:04}")
}

pub fn run(args: &PdeArgs, gpu: &Gpu) -> anyhow::Result<()> {
    let problem = Problem::parse(&args.problem)?;
    let observe = Observe::parse(&args.observe)?;
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    if let Some(z) = args.zeta
        && !(z.is_finite() && z >= 0.0)
    {
        bail!("--zeta {z}: the step size must be finite and >= 0");
    }
    let residual = args.residual.map(|weight| ResidualSettings {
        weight,
        ..ResidualSettings::default()
    });
    if let Some(r) = &residual {
        r.validate(problem)?;
    }
    let (shape, mut cases) = load_cases(&args.input)?;
    let [n, _, h, w] = shape;
    let plane = h * w;
    check_points(args.points, h, w)?;
    let prior = load_prior(problem, args.model.as_deref())?;
    if prior.config.in_channels != 2 {
        bail!(
            "the prior {} has {} input channels; a field prior has 2",
            prior.label,
            prior.config.in_channels
        );
    }
    let unet = UNet::new(gpu, &prior.config, &prior.weights)?;
    let zeta = args.zeta.unwrap_or_else(|| default_zeta(observe));
    let settings = PdeSettings {
        respacing: args.steps.trim().to_string(),
        sampler: Sampler::Ddpm,
        zeta,
        seed: args.seed,
    };
    // EquiReg: the problem's valid group unless overridden, the prior's own denoiser as f.
    let equireg_cfg = if args.compare {
        let mut cfg = EquiRegConfig::default();
        if let Some(g) = problem.valid_group() {
            cfg = cfg.with_settings(&format!("group={g}"))?;
        } else if args.equireg.is_none() {
            bail!(
                "--problem {}: no valid group is built in; name one with --equireg group=...",
                problem.name()
            );
        }
        if let Some(s) = &args.equireg {
            cfg = cfg
                .with_settings(s)
                .with_context(|| format!("--equireg {s}"))?;
        }
        Some(cfg)
    } else {
        if args.equireg.is_some() {
            bail!("--equireg needs --compare (the EquiReg run is the second of the comparison)");
        }
        None
    };
    let mpe = match &equireg_cfg {
        Some(cfg) => Some(mpe::from_spec(gpu, &cfg.mpe, &unet)?),
        None => None,
    };
    let mut out = OutDir::open(&args.out, args.overwrite, "pde")?;
    let truth_phys = cases.clone();
    prior.norm.to_model(&mut cases, plane);

    let started = Instant::now();
    let mut rows: Vec<CaseMetrics> = Vec::new();
    let names = problem.channels();
    let threshold = problem.coefficient_threshold();
    let mut start = 0;
    while start < n {
        let count = args.batch.min(n - start);
        let bshape = [count, 2, h, w];
        let x = &cases[start * 2 * plane..(start + count) * 2 * plane];
        let op = PointObservation::new(gpu, bshape, observe, args.points, args.seed, start as u64)?;
        let y = op.forward_cpu(x);
        let mask = op.mask().to_vec();
        let penalties = || -> anyhow::Result<Vec<Box<dyn Penalty>>> {
            Ok(match residual {
                None => Vec::new(),
                Some(r) => vec![Box::new(DarcyPenalty::new(
                    gpu,
                    problem,
                    bshape,
                    &prior.norm,
                    r,
                )?)],
            })
        };
        let mut methods: Vec<(&str, Vec<f32>)> = Vec::new();
        let dps = reconstruct(
            gpu,
            &unet,
            &op,
            &y,
            &settings,
            None,
            penalties()?,
            start as u32,
        )?;
        methods.push(("dps", dps));
        if let (Some(cfg), Some(f)) = (&equireg_cfg, &mpe) {
            let er = reconstruct(
                gpu,
                &unet,
                &op,
                &y,
                &settings,
                Some((cfg, f.as_ref())),
                penalties()?,
                start as u32,
            )?;
            methods.push(("equireg", er));
        }
        for (_, r) in methods.iter_mut() {
            prior.norm.to_physical(r, plane);
            if let Some(i) = r.iter().position(|v| !v.is_finite()) {
                bail!(
                    "the reconstruction of {} diverged (a non-finite value); try a smaller --zeta \
                     than {zeta}",
                    case_name(start + i / (2 * plane))
                );
            }
        }
        for k in 0..count {
            let index = start + k;
            let name = case_name(index);
            let dir = out.folder(&name)?;
            let sl = k * 2 * plane..(k + 1) * 2 * plane;
            let truth = &truth_phys[(start + k) * 2 * plane..(start + k + 1) * 2 * plane];
            npy::write_f32(&dir.join("observed.npy"), &[2, h, w], &mask[sl.clone()])?;
            for (method, r) in &methods {
                npy::write_f32(
                    &dir.join(format!("reconstruction_{method}.npy")),
                    &[2, h, w],
                    &r[sl.clone()],
                )?;
                rows.push(CaseMetrics::of(
                    &name,
                    index,
                    method,
                    &r[sl.clone()],
                    truth,
                    threshold,
                ));
            }
            let (img, caption) = render(
                &PanelInput {
                    h,
                    w,
                    truth,
                    mask: &mask[sl.clone()],
                    reconstructions: methods.iter().map(|(m, r)| (*m, &r[sl.clone()])).collect(),
                },
                names,
            )?;
            images::save_png(&dir.join("panel.png"), &img)?;
            write_atomic(&dir.join("panel.txt"), caption.as_bytes())
                .with_context(|| format!("cannot write {}", dir.join("panel.txt").display()))?;
        }
        eprintln!(
            "{} of {n} cases done ({:.0} s)",
            start + count,
            started.elapsed().as_secs_f64()
        );
        start += count;
    }
    write_metrics(
        &mut out,
        args,
        problem,
        observe,
        &settings,
        &prior,
        &equireg_cfg,
        &rows,
    )?;
    for method in ["dps", "equireg"] {
        let r: Vec<&CaseMetrics> = rows.iter().filter(|m| m.method == method).collect();
        if r.is_empty() {
            continue;
        }
        let mean =
            |f: &dyn Fn(&CaseMetrics) -> f64| r.iter().map(|m| f(m)).sum::<f64>() / r.len() as f64;
        let mut line = format!(
            "{method}: relative L2 {} {:.4}, {} {:.4}",
            names[0],
            mean(&|m| m.rel_l2_a),
            names[1],
            mean(&|m| m.rel_l2_u)
        );
        if threshold.is_some() {
            line.push_str(&format!(
                ", error rate of {} {:.4}",
                names[0],
                mean(&|m| m.error_rate_a.unwrap_or(0.0))
            ));
        }
        eprintln!("{line} (mean of {} cases)", r.len());
    }
    eprintln!(
        "{n} cases in {:.1} s; wrote {}",
        started.elapsed().as_secs_f64(),
        args.out.display()
    );
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn write_metrics(
    out: &mut OutDir,
    args: &PdeArgs,
    problem: Problem,
    observe: Observe,
    settings: &PdeSettings,
    prior: &Prior,
    equireg_cfg: &Option<EquiRegConfig>,
    rows: &[CaseMetrics],
) -> anyhow::Result<()> {
    let doc = json!({
        "problem": problem.name(),
        "observe": observe.name(),
        "points": args.points,
        "steps": settings.respacing,
        "seed": settings.seed,
        "zeta": settings.zeta,
        "input": args.input.display().to_string(),
        "prior": prior.label,
        "equireg": equireg_cfg.as_ref().map(|c| c.settings()),
        "residual_weight": args.residual,
        "cases": rows,
    });
    let path = out.file("metrics.json")?;
    write_atomic(&path, serde_json::to_string_pretty(&doc)?.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    let mut csv = csv::Writer::from_writer(Vec::new());
    for r in rows {
        csv.serialize(r)?;
    }
    let bytes = csv.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
    let path = out.file("metrics.csv")?;
    write_atomic(&path, &bytes).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
