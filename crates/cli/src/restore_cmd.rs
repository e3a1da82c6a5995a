//! `equireg restore`: restore images with DPS on the GPU, from clean images (the measurement is
//! simulated with the task's operator and seeded noise, and metrics are reported) or from an
//! existing measurement.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args;
use equireg::images::{self, RgbImage, SizePolicy};
use equireg::metrics;
use equireg::mpe::{self, Mpe};
use equireg::regularizer::EquiRegConfig;
use equireg::restore::{Measured, RestoreSettings, residuals, restore_best_of, simulate};
use equireg::schedule::Sampler;
use equireg::solvers::{SolverKind, SolverSpec};
use equireg::task::Task;
use equireg_gpu::Gpu;
use equireg_nn::{UNet, Weights, io::write_atomic, npy};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::checks;
use crate::outdir::{self, OutDir};
use crate::unet_cmd::load_config;

#[derive(Args)]
#[command(after_long_help = "\
SIZE POLICY: image sides must be multiples of the network's downsampling factor (32 for ffhq256, \
8 for small64). Other sizes are refused unless you pass --resize (scale to the nearest allowed \
size, or to --resize HxW) or --crop (centre crop to the largest allowed size, or to --crop HxW); \
an image is never changed silently.

OUTPUTS: DIR/<image name>/restored.png, measurement.png, baseline.png (the naive reconstruction: \
bicubic upsampling, the measurement itself, the mean in masked pixels, a flat image for phase \
retrieval), grid.png (ground truth, measurement, baseline, result(s); without ground truth: \
measurement, baseline, result(s)), the operator's random parameters when it \
has any (kernel.npy, mask.npy), DIR/metrics.json and DIR/metrics.csv. Every file is written \
atomically: an interrupted run never leaves a file that looks complete. The metrics are rewritten \
after every finished batch with \"complete\": false and once more at the end; they only ever \
describe this run's finished images. DIR must be empty or new (or pass --overwrite); image \
folders are named after the input files' stems, which must be plain names that differ in more \
than letter case.

EXAMPLES:
  equireg restore --task sr4 --input assets/images/chelsea.png --compare --out out/
  equireg restore --task sr4 --input photo.png --weights ffhq_10m.safetensors --preset ffhq256 --out out/
  equireg restore --task box-inpaint --set dps.zeta=1.0 --steps 250 --input faces/ --batch 4 ...")]
pub struct RestoreArgs {
    /// Task preset (sr4, gaussian-deblur, motion-deblur, box-inpaint, random-inpaint,
    /// phase-retrieval, hdr) or a task .toml file
    #[arg(long)]
    task: String,
    /// Override a task field, e.g. --set noise.sigma=0.01 --set dps.zeta=1.0 (repeatable);
    /// solver.KEY=VALUE sets KEY of the chosen --solver's [solver.NAME] table
    #[arg(long = "set", value_name = "FIELD=VALUE")]
    set: Vec<String>,
    /// Posterior sampler: dps (Diffusion Posterior Sampling), daps (decoupled annealing,
    /// --steps annealing levels), ddnm (DDNM+) or pigdm (PiGDM) for operators with a
    /// pseudo-inverse, diffpir (DiffPIR, gradient form), sitcom (SITCOM) or
    /// red-diff (RED-diff); its settings come from the task's [dps] or [solver.NAME] table
    #[arg(long, default_value = "dps")]
    solver: String,
    /// Clean image (PNG or JPEG) or a folder of them: the measurement is simulated from it and
    /// metrics are computed against it
    #[arg(
        long,
        required_unless_present = "measurement",
        conflicts_with = "measurement"
    )]
    input: Option<PathBuf>,
    /// An existing measurement instead: a PNG/JPEG (image-like tasks) or a float32 .npy with the
    /// operator's output shape [1, C, h, w]; the operator's random parameters come from --seed
    #[arg(long)]
    measurement: Option<PathBuf>,
    /// Model weights (safetensors, guided-diffusion names); without it, the embedded default
    /// prior (photo64, natural photographs at 64x64) is used
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Architecture preset of the weights (ffhq256, imagenet256, small64, photo64, tiny32)
    #[arg(long, conflicts_with = "config")]
    preset: Option<String>,
    /// Architecture as a JSON file with guided-diffusion's create_model field names
    #[arg(long)]
    config: Option<PathBuf>,
    /// Outer diffusion steps of the solver; for dps also a guided-diffusion respacing like
    /// "ddim50"
    #[arg(long, default_value = "100")]
    steps: String,
    /// Sampler: ddpm (ancestral, as DPS) or ddim
    #[arg(long, default_value = "ddpm")]
    sampler: String,
    /// DDIM stochasticity
    #[arg(long, default_value_t = 0.0)]
    eta: f64,
    /// Guidance step size; default: the task's zeta scaled to the step count
    #[arg(long)]
    zeta: Option<f64>,
    /// Seed of the noise, the measurement noise and the operator's random parameters
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Images restored together on the GPU
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Run each solver this many times from other sampler seeds on the same measurement and keep,
    /// per image, the result with the smallest data residual ||y - A(x)|| (no ground truth is
    /// used). DPS is reported as the best of several runs on phase retrieval.
    #[arg(long, default_value_t = 1)]
    restarts: usize,
    /// Resize images to allowed sides (or to HxW)
    #[arg(long, value_name = "HxW", num_args = 0..=1, default_missing_value = "", conflicts_with = "crop")]
    resize: Option<String>,
    /// Centre-crop images to allowed sides (or to HxW)
    #[arg(long, value_name = "HxW", num_args = 0..=1, default_missing_value = "")]
    crop: Option<String>,
    /// EquiReg settings on top of the task's [equireg] table, e.g.
    /// group=rot90,alpha=0.01,freq=0.1,form=equi,reduction=norm,schedule=constant,mpe=default
    /// (mpe: default = the embedded encoder, denoiser or denoiser:T, or an MPE folder;
    /// count: loop = the schedule sees 0..K-1, so the first step fires (the presets);
    /// timestep = it sees DPS's index K-1..0 as the reference, so the last step fires)
    /// (EquiReg is on by default)
    #[arg(long, value_name = "KEY=VALUE,...", conflicts_with = "no_equireg")]
    equireg: Option<String>,
    /// Plain DPS, without EquiReg
    #[arg(long)]
    no_equireg: bool,
    /// Run DPS and DPS+EquiReg from the same seed; write both results, both metrics and a grid
    /// with both
    #[arg(long, conflicts_with = "no_equireg")]
    compare: bool,
    /// Output folder. It must be empty or new, unless --overwrite; one run at a time (a lock
    /// file, OUT/.equireg.lock)
    #[arg(long)]
    out: PathBuf,
    /// Reuse a non-empty --out: first remove what the earlier equireg run recorded in its
    /// manifest (OUT/.equireg-manifest.json), nothing else
    #[arg(long)]
    overwrite: bool,
}

/// One solver configuration of a run: the solver alone or with EquiReg.
struct Variant {
    /// "dps", "dps+equireg", "diffpir", ...
    label: &'static str,
    solver: SolverKind,
    equireg: Option<EquiRegConfig>,
}

impl Variant {
    /// File-name suffix: `restored_<suffix>.png` when several variants run.
    fn suffix(&self) -> &'static str {
        if self.equireg.is_some() {
            "equireg"
        } else {
            self.solver.name()
        }
    }
}

/// `--set solver.KEY=VALUE` addresses the chosen solver's table, `solver.NAME.KEY`.
fn solver_overrides(set: &[String], solver: SolverKind) -> Vec<String> {
    set.iter()
        .map(|o| match o.strip_prefix("solver.") {
            Some(rest) if rest.split_once('=').is_some_and(|(k, _)| !k.contains('.')) => {
                format!("solver.{}.{rest}", solver.name())
            }
            _ => o.clone(),
        })
        .collect()
}

fn parse_hw(s: &str) -> anyhow::Result<Option<[usize; 2]>> {
    if s.is_empty() {
        return Ok(None);
    }
    let (h, w) = s
        .split_once('x')
        .with_context(|| format!("size {s:?}: expected HxW, e.g. 64x64"))?;
    Ok(Some([
        h.trim().parse().with_context(|| format!("size {s:?}"))?,
        w.trim().parse().with_context(|| format!("size {s:?}"))?,
    ]))
}

fn size_policy(args: &RestoreArgs) -> anyhow::Result<SizePolicy> {
    Ok(match (&args.resize, &args.crop) {
        (Some(r), _) => SizePolicy::Resize(parse_hw(r)?),
        (_, Some(c)) => SizePolicy::Crop(parse_hw(c)?),
        _ => SizePolicy::Strict,
    })
}

/// The user's checkpoint (--weights with --preset or --config), else the embedded default.
fn load_prior(gpu: &Gpu, args: &RestoreArgs) -> anyhow::Result<UNet> {
    Ok(match &args.weights {
        Some(path) => {
            if args.preset.is_none() && args.config.is_none() {
                bail!("--weights needs --preset or --config to say its architecture");
            }
            let config = load_config(args.preset.as_deref(), args.config.as_ref())?;
            let weights = Weights::load(path)?;
            UNet::new(gpu, &config, &weights)
                .with_context(|| format!("{} does not fit that architecture", path.display()))?
        }
        None if args.preset.is_some() || args.config.is_some() => {
            bail!(
                "--preset and --config describe the architecture of --weights; give --weights \
                 too, or neither for the embedded default prior"
            )
        }
        None => equireg::default_models::prior(gpu).context("the embedded default prior")?,
    })
}

/// One restored image's record for metrics.json / metrics.csv.
struct Record {
    name: String,
    solver: &'static str,
    psnr: Option<f64>,
    ssim: Option<f64>,
    psnr_measurement: Option<f64>,
    /// The data residual ||y - A(x)|| of the result.
    residual: Option<f64>,
    /// With --restarts: the restart that was kept.
    restart: Option<usize>,
    seconds: f64,
    /// Why this result was not written (a diverged sample).
    failure: Option<String>,
}

/// What a run restores: clean images (the measurement is simulated) or one measurement file.
enum Inputs {
    Clean {
        files: Vec<PathBuf>,
        names: Vec<String>,
        clean: Vec<RgbImage>,
    },
    Measurement {
        path: PathBuf,
        name: String,
    },
}

/// Everything that can be checked before the first diffusion step, in order: the settings,
/// the model, every input image (read, fitted, named, large enough for SSIM, its operator
/// built). Nothing is written before these pass.
fn prepare(
    args: &RestoreArgs,
    gpu: &Gpu,
    task: &Task,
    equireg_cfg: Option<&EquiRegConfig>,
    multiple: usize,
) -> anyhow::Result<Inputs> {
    if let Some(m) = &args.measurement {
        let name = outdir::output_names(std::slice::from_ref(m))?.remove(0);
        return Ok(Inputs::Measurement {
            path: m.clone(),
            name,
        });
    }
    let input = args
        .input
        .as_ref()
        .expect("clap requires --input or --measurement");
    let files = if input.is_dir() {
        images::list_images(input)?
    } else {
        vec![input.clone()]
    };
    let names = outdir::output_names(&files)?;
    let policy = size_policy(args)?;
    let mut clean = Vec::with_capacity(files.len());
    let mut sizes: Vec<[usize; 2]> = Vec::new();
    for f in &files {
        let img = images::fit(&images::load_rgb(f)?, multiple, &policy)
            .with_context(|| format!("{}", f.display()))?;
        let [h, w] = img.size();
        if h < metrics::SSIM_WINDOW || w < metrics::SSIM_WINDOW {
            bail!(
                "{}: {h}x{w} is too small to be scored: SSIM needs images of at least \
                 {win}x{win}; pass --resize HxW",
                f.display(),
                win = metrics::SSIM_WINDOW
            );
        }
        if !sizes.contains(&[h, w]) {
            if let Some(cfg) = equireg_cfg
                && cfg.group.needs_square()
                && h != w
            {
                bail!(
                    "{}: {h}x{w} is not square, but EquiReg's group {} rotates, which needs \
                     square images; pass --crop HxW or choose another group",
                    f.display(),
                    cfg.group.name
                );
            }
            task.build_operator(gpu, [1, 3, h, w], args.seed)
                .with_context(|| format!("{}: task {} at {h}x{w}", f.display(), task.name))?;
            sizes.push([h, w]);
        }
        clean.push(img);
    }
    Ok(Inputs::Clean {
        files,
        names,
        clean,
    })
}

pub fn run(args: &RestoreArgs, gpu: &Gpu) -> anyhow::Result<()> {
    let solver = SolverKind::parse(&args.solver)?;
    let task = Task::load(&args.task, &solver_overrides(&args.set, solver))?;
    checks::at_least_one("--batch", args.batch)?;
    checks::at_least_one("--restarts", args.restarts)?;
    let sampler = Sampler::parse(&args.sampler, args.eta)?;
    if let Some(z) = args.zeta {
        checks::non_negative("--zeta", z)?;
    }
    if solver != SolverKind::Dps && (args.zeta.is_some() || args.sampler != "ddpm") {
        bail!(
            "--zeta and --sampler are DPS's; {} takes its settings with --set solver.KEY=VALUE",
            solver.name()
        );
    }
    let settings = RestoreSettings {
        solver,
        respacing: args.steps.trim().to_string(),
        sampler,
        zeta: args.zeta,
        seed: args.seed,
    };
    let steps = settings.steps()?;
    let equireg_cfg = task.equireg.config(args.equireg.as_deref().unwrap_or(""))?;
    if !args.no_equireg {
        equireg_cfg.check_steps(steps)?;
    }
    size_policy(args)?;
    let unet = load_prior(gpu, args)?;
    let multiple = unet.config().downsampling_factor();
    let inputs = prepare(
        args,
        gpu,
        &task,
        (!args.no_equireg).then_some(&equireg_cfg),
        multiple,
    )?;
    let spec = settings.resolve(&task, &unet)?;
    // A solver that cannot serve the task's operator is refused before any output is written.
    if let Inputs::Clean { clean, .. } = &inputs
        && let Some(img) = clean.first()
    {
        let op = task.build_operator(gpu, [1, 3, img.height, img.width], args.seed)?;
        spec.check_operator(op.as_ref())?;
    }
    let adapter = gpu.caps().adapter_name.clone();
    let mpe = mpe::from_spec(gpu, &equireg_cfg.mpe, &unet)?;
    let mut variants = Vec::new();
    if args.no_equireg || args.compare {
        variants.push(Variant {
            label: solver.label(false),
            solver,
            equireg: None,
        });
    }
    if !args.no_equireg {
        variants.push(Variant {
            label: solver.label(true),
            solver,
            equireg: Some(equireg_cfg.clone()),
        });
    }
    let mut out = OutDir::open(&args.out, args.overwrite, "restore")?;
    let mut records = Vec::new();
    let header = RunHeader {
        task: task.name.clone(),
        seed: args.seed,
        steps,
        solver: spec.describe(),
        zeta: match &spec {
            SolverSpec::Dps { zeta, .. } => Some(*zeta),
            _ => None,
        },
        adapter: adapter.clone(),
        equireg: (!args.no_equireg).then(|| equireg_cfg.settings()),
    };
    let ctx = Ctx {
        gpu,
        unet: &unet,
        task: &task,
        spec: &spec,
        mpe: mpe.as_ref(),
        variants: &variants,
        steps,
        args,
    };
    let result = match &inputs {
        Inputs::Measurement { path, name } => {
            restore_from_measurement(&ctx, &mut out, path, name, &mut records)
        }
        Inputs::Clean {
            files,
            names,
            clean,
        } => restore_clean(&ctx, &mut out, files, names, clean, &mut records, &header),
    };
    let failures: Vec<String> = records
        .iter()
        .filter_map(|r| {
            r.failure
                .as_ref()
                .map(|f| format!("{} [{}]: {f}", r.name, r.solver))
        })
        .collect();
    let error = result.as_ref().err().map(|e| format!("{e:#}"));
    write_metrics(
        &mut out,
        &records,
        &header,
        result.is_ok(),
        error.as_deref(),
    )?;
    if let Err(e) = result {
        let done = records.iter().filter(|r| r.failure.is_none()).count();
        return Err(e.context(format!(
            "the run stopped; {} holds the metrics of the {done} results finished before",
            args.out.join("metrics.json").display()
        )));
    }
    if !failures.is_empty() {
        bail!(
            "{} result(s) not written: {}; the other results and their metrics are in {}",
            failures.len(),
            failures.join("; "),
            args.out.display()
        );
    }
    eprintln!("wrote {}", args.out.display());
    Ok(())
}

/// What every restoration of a run shares.
struct Ctx<'a> {
    gpu: &'a Gpu,
    unet: &'a UNet,
    task: &'a Task,
    spec: &'a SolverSpec,
    mpe: &'a dyn Mpe,
    variants: &'a [Variant],
    steps: usize,
    args: &'a RestoreArgs,
}

/// The image of a result, or why it is not one (NaN or infinite values: a diverged sample).
fn checked_result(img: RgbImage) -> Result<RgbImage, String> {
    let bad = equireg_nn::io::count_non_finite(&img.data);
    if bad > 0 {
        return Err(format!(
            "the result has {bad} NaN or infinite values: the sampler diverged (try a smaller \
             --zeta or more --steps)"
        ));
    }
    Ok(img)
}

fn restore_from_measurement(
    ctx: &Ctx,
    out: &mut OutDir,
    m: &Path,
    name: &str,
    records: &mut Vec<Record>,
) -> anyhow::Result<()> {
    let dir = out.folder(name)?;
    let mut results = Vec::new();
    let mut measured_pic = None;
    let mut baseline = None;
    for v in ctx.variants {
        let started = Instant::now();
        let cfg = v.equireg.as_ref().map(|c| (c, ctx.mpe));
        let r = restore_measurement(
            ctx.gpu,
            ctx.unet,
            ctx.task,
            ctx.spec,
            ctx.args.seed,
            cfg,
            m,
            ctx.unet.config().downsampling_factor(),
            ctx.steps,
            ctx.args.restarts,
            &dir,
            name,
        )?;
        measured_pic = r.picture;
        if baseline.is_none() {
            records.push(Record {
                name: name.to_string(),
                solver: "baseline",
                psnr: None,
                ssim: None,
                psnr_measurement: None,
                residual: Some(r.baseline_residual),
                restart: None,
                seconds: 0.0,
                failure: None,
            });
        }
        baseline = Some(r.baseline);
        let restored = checked_result(r.restored);
        records.push(Record {
            name: name.to_string(),
            solver: v.label,
            psnr: None,
            ssim: None,
            psnr_measurement: None,
            residual: restored.is_ok().then_some(r.residual),
            restart: (ctx.args.restarts > 1).then_some(r.restart),
            seconds: started.elapsed().as_secs_f64(),
            failure: restored.as_ref().err().cloned(),
        });
        results.push(restored.ok());
    }
    write_image_outputs(
        &dir,
        None,
        measured_pic.as_ref(),
        baseline.as_ref().expect("at least one variant ran"),
        ctx.variants,
        &results,
    )
}

#[allow(clippy::too_many_arguments)]
fn restore_clean(
    ctx: &Ctx,
    out: &mut OutDir,
    files: &[PathBuf],
    names: &[String],
    clean: &[RgbImage],
    records: &mut Vec<Record>,
    header: &RunHeader,
) -> anyhow::Result<()> {
    let (gpu, task, args, steps) = (ctx.gpu, ctx.task, ctx.args, ctx.steps);
    let mut item = 0usize;
    while item < files.len() {
        let end = (item + args.batch).min(files.len());
        // A batch holds images of one size; stop it where the size changes.
        let (h, w) = (clean[item].height, clean[item].width);
        let end = (item..end)
            .find(|&j| (clean[j].height, clean[j].width) != (h, w))
            .unwrap_or(end);
        let batch = &clean[item..end];
        let started = Instant::now();
        let x = images::to_model_batch(batch)?;
        let shape = [batch.len(), 3, h, w];
        let measured = simulate(gpu, task, shape, &x, args.seed, item as u64)?;
        let params = measured.operator.parameters();
        let y = &measured.y;
        let pics = measured.operator.measurement_picture(y);
        let measured_imgs = pics
            .map(|(data, shape)| images::from_model_shape(&data, shape))
            .transpose()?;
        let naive = measured.operator.naive_estimate(y);
        let baseline_residuals = residuals(measured.operator.as_ref(), y, &naive)?;
        let baselines = images::from_model(&naive, batch.len(), h, w)?;
        let setup = started.elapsed().as_secs_f64();
        let mut results: Vec<Vec<RgbImage>> = Vec::new();
        let mut kept: Vec<(Vec<f64>, Vec<usize>)> = Vec::new();
        let mut seconds = Vec::new();
        for v in ctx.variants {
            let started = Instant::now();
            // Each variant (and restart) restores from the same measurement, borrowed, and
            // the same seed; `measured` also judges the results.
            let bar = progress_bar(
                steps * args.restarts,
                &format!("{} {} ({}x{})", v.label, names[item], h, w),
            );
            let cfg = v.equireg.as_ref().map(|c| (c, ctx.mpe));
            let best = restore_best_of(
                gpu,
                ctx.unet,
                ctx.spec,
                &measured,
                args.seed,
                cfg,
                item as u32,
                args.restarts,
                |r, k, _| bar.set_position((r * steps + k) as u64 + 1),
            )
            .with_context(|| format!("{} on {}", v.label, names[item..end].join(", ")))?;
            bar.finish_and_clear();
            seconds.push((setup + started.elapsed().as_secs_f64()) / batch.len() as f64);
            results.push(images::from_model(&best.x, batch.len(), h, w)?);
            kept.push((best.residuals, best.chosen));
        }
        for (k, gt) in batch.iter().enumerate() {
            let name = &names[item + k];
            let dir = out.folder(name)?;
            let pic = measured_imgs.as_ref().map(|v| &v[k]);
            let restored: Vec<Result<RgbImage, String>> = results
                .iter()
                .map(|r| checked_result(r[k].clone()))
                .collect();
            let baseline = &baselines[k];
            let shown: Vec<Option<RgbImage>> =
                restored.iter().map(|r| r.as_ref().ok().cloned()).collect();
            write_image_outputs(&dir, Some(gt), pic, baseline, ctx.variants, &shown)?;
            for (pname, pshape, pdata) in &params {
                npy::write_f32(&dir.join(format!("{pname}.npy")), pshape, pdata)?;
            }
            let psnr_measurement = match pic {
                Some(p) if p.height == gt.height && p.width == gt.width => {
                    Some(metrics::psnr(p, gt)?)
                }
                _ => None,
            };
            records.push(Record {
                name: name.clone(),
                solver: "baseline",
                psnr: Some(metrics::psnr(baseline, gt)?),
                ssim: Some(metrics::ssim(baseline, gt)?),
                psnr_measurement,
                residual: Some(baseline_residuals[k]),
                restart: None,
                seconds: 0.0,
                failure: None,
            });
            for (vi, v) in ctx.variants.iter().enumerate() {
                let (psnr, ssim, failure) = match &restored[vi] {
                    Ok(img) => (
                        Some(metrics::psnr(img, gt)?),
                        Some(metrics::ssim(img, gt)?),
                        None,
                    ),
                    Err(why) => (None, None, Some(why.clone())),
                };
                let rec = Record {
                    name: name.clone(),
                    solver: v.label,
                    psnr,
                    ssim,
                    psnr_measurement,
                    residual: failure.is_none().then_some(kept[vi].0[k]),
                    restart: (args.restarts > 1).then_some(kept[vi].1[k]),
                    seconds: seconds[vi],
                    failure,
                };
                match &rec.failure {
                    None => eprintln!(
                        "{} [{}]: PSNR {:.2} dB, SSIM {:.4}, {:.1} s",
                        rec.name,
                        rec.solver,
                        rec.psnr.unwrap_or(f64::NAN),
                        rec.ssim.unwrap_or(f64::NAN),
                        rec.seconds
                    ),
                    Some(f) => eprintln!("{} [{}]: not written: {f}", rec.name, rec.solver),
                }
                records.push(rec);
            }
        }
        item = end;
        if item < files.len() {
            // The finished images' metrics, in case a later batch never finishes.
            write_metrics(out, records, header, false, None)?;
        }
    }
    Ok(())
}

fn progress_bar(steps: usize, label: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(steps as u64);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} steps, {per_sec}, ETA {eta}")
            .expect("the template is valid")
            .progress_chars("=> "),
    );
    bar.set_message(label.to_string());
    bar
}

/// What `restore_measurement` gives back.
struct FromMeasurement {
    restored: RgbImage,
    picture: Option<RgbImage>,
    baseline: RgbImage,
    /// ||y - A(x)|| of the restored image and of the baseline.
    residual: f64,
    baseline_residual: f64,
    /// The restart that was kept.
    restart: usize,
}

/// Restores from an existing measurement file.
#[allow(clippy::too_many_arguments)]
fn restore_measurement(
    gpu: &Gpu,
    unet: &UNet,
    task: &Task,
    spec: &SolverSpec,
    seed: u64,
    equireg: Option<(&EquiRegConfig, &dyn Mpe)>,
    path: &Path,
    multiple: usize,
    steps: usize,
    restarts: usize,
    dir: &Path,
    name: &str,
) -> anyhow::Result<FromMeasurement> {
    let is_npy = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("npy"));
    let (y_shape, y) = if is_npy {
        let (s, d) = npy::read_f32_finite(path)?;
        if s.len() != 4 || s[0] != 1 || s[1] != 3 {
            bail!(
                "{}: a measurement .npy must be float32 [1, 3, h, w], got {s:?}",
                path.display()
            );
        }
        (s, d)
    } else {
        let img = images::load_rgb(path)?;
        let d = images::to_model_batch(std::slice::from_ref(&img))?;
        (vec![1, 3, img.height, img.width], d)
    };
    let [h, w] = task.image_size_for_measurement([y_shape[2], y_shape[3]])?;
    if h % multiple != 0 || w % multiple != 0 {
        bail!(
            "{}: the measurement implies {h}x{w} images, but the network needs sides that are \
             multiples of {multiple}",
            path.display()
        );
    }
    let operator = task.build_operator(gpu, [1, 3, h, w], seed)?;
    spec.check_operator(operator.as_ref())?;
    if operator.output_shape() != y_shape {
        bail!(
            "{}: the {} operator produces {:?} for {h}x{w} images, the file holds {y_shape:?}",
            path.display(),
            task.name,
            operator.output_shape()
        );
    }
    for (pname, pshape, pdata) in operator.parameters() {
        npy::write_f32(&dir.join(format!("{pname}.npy")), &pshape, &pdata)?;
    }
    let pic = operator
        .measurement_picture(&y)
        .map(|(d, shape)| images::from_model_shape(&d, shape))
        .transpose()?
        .map(|mut v| v.remove(0));
    let naive = operator.naive_estimate(&y);
    let baseline_residual = residuals(operator.as_ref(), &y, &naive)?[0];
    let baseline = images::from_model(&naive, 1, h, w)?.remove(0);
    // Every restart borrows this measurement, which also judges the results.
    let judge = Measured { operator, y };
    let bar = progress_bar(steps * restarts, name);
    let best = restore_best_of(
        gpu,
        unet,
        spec,
        &judge,
        seed,
        equireg,
        0,
        restarts,
        |r, k, _| bar.set_position((r * steps + k) as u64 + 1),
    )?;
    bar.finish_and_clear();
    Ok(FromMeasurement {
        restored: images::from_model(&best.x, 1, h, w)?.remove(0),
        picture: pic,
        baseline,
        residual: best.residuals[0],
        baseline_residual,
        restart: best.chosen[0],
    })
}

/// The image outputs of one input in its folder `dir`; a result that is `None` (not
/// written: it diverged) is left out of the files and the grid.
fn write_image_outputs(
    dir: &Path,
    gt: Option<&RgbImage>,
    measurement: Option<&RgbImage>,
    baseline: &RgbImage,
    variants: &[Variant],
    restored: &[Option<RgbImage>],
) -> anyhow::Result<()> {
    let mut panels: Vec<&RgbImage> = Vec::new();
    if let Some(g) = gt {
        panels.push(g);
    }
    if let Some(m) = measurement {
        images::save_png(&dir.join("measurement.png"), m)?;
        panels.push(m);
    }
    images::save_png(&dir.join("baseline.png"), baseline)?;
    panels.push(baseline);
    for (v, r) in variants.iter().zip(restored) {
        let file = if variants.len() == 1 {
            "restored.png".to_string()
        } else {
            format!("restored_{}.png", v.suffix())
        };
        if let Some(r) = r {
            images::save_png(&dir.join(file), r)?;
            panels.push(r);
        }
    }
    images::save_png(&dir.join("grid.png"), &images::grid(&panels, 4)?)?;
    Ok(())
}

/// What metrics.json says of the whole run.
struct RunHeader {
    task: String,
    seed: u64,
    steps: usize,
    /// The solver's resolved settings.
    solver: String,
    /// DPS's step size (None for the other solvers).
    zeta: Option<f64>,
    adapter: String,
    /// The regularizer's full settings (`key=value,...`), when a solver ran with EquiReg.
    equireg: Option<String>,
}

/// One row of metrics.csv.
#[derive(serde::Serialize)]
struct CsvRow<'a> {
    name: &'a str,
    solver: &'a str,
    task: &'a str,
    seed: u64,
    steps: usize,
    zeta: Option<f64>,
    psnr: String,
    ssim: String,
    psnr_measurement: String,
    residual: String,
    restart: Option<usize>,
    seconds: String,
    failure: Option<&'a str>,
}

/// metrics.json and metrics.csv of the records so far, each written atomically. `complete`:
/// the run finished (false while it runs, and when it stopped at `error`).
fn write_metrics(
    out: &mut OutDir,
    records: &[Record],
    run: &RunHeader,
    complete: bool,
    error: Option<&str>,
) -> anyhow::Result<()> {
    let RunHeader {
        task,
        seed,
        steps,
        zeta,
        adapter,
        ..
    } = run;
    let mean = |f: &dyn Fn(&Record) -> Option<f64>| {
        let v: Vec<f64> = records.iter().filter_map(f).collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    let mut solvers: Vec<&str> = Vec::new();
    for r in records {
        if !solvers.contains(&r.solver) {
            solvers.push(r.solver);
        }
    }
    let means: serde_json::Map<String, serde_json::Value> = solvers
        .iter()
        .map(|&s| {
            let of = |f: &dyn Fn(&Record) -> Option<f64>| {
                mean(&|r: &Record| if r.solver == s { f(r) } else { None })
            };
            (
                s.to_string(),
                json!({
                    "psnr": of(&|r| r.psnr), "ssim": of(&|r| r.ssim),
                    "psnr_measurement": of(&|r| r.psnr_measurement),
                    "residual": of(&|r| r.residual),
                    "seconds": of(&|r| Some(r.seconds)),
                }),
            )
        })
        .collect();
    let per: Vec<_> = records
        .iter()
        .map(|r| {
            json!({
                "name": r.name, "solver": r.solver, "psnr": r.psnr, "ssim": r.ssim,
                "psnr_measurement": r.psnr_measurement, "residual": r.residual,
                "restart": r.restart, "seconds": r.seconds, "failure": r.failure,
            })
        })
        .collect();
    let doc = json!({
        "task": task, "seed": seed, "steps": steps, "solver": run.solver, "zeta": zeta,
        "adapter": adapter,
        "equireg": run.equireg,
        "complete": complete,
        "error": error,
        "images": per,
        "mean": means,
    });
    let json_path = out.file("metrics.json")?;
    write_atomic(&json_path, serde_json::to_string_pretty(&doc)?.as_bytes())
        .with_context(|| format!("cannot write {}", json_path.display()))?;
    let fmt = |v: Option<f64>| v.map(|x| format!("{x:.6}")).unwrap_or_default();
    let mut csv = csv::Writer::from_writer(Vec::new());
    for r in records {
        csv.serialize(CsvRow {
            name: &r.name,
            solver: r.solver,
            task,
            seed: *seed,
            steps: *steps,
            zeta: *zeta,
            psnr: fmt(r.psnr),
            ssim: fmt(r.ssim),
            psnr_measurement: fmt(r.psnr_measurement),
            residual: fmt(r.residual),
            restart: r.restart,
            seconds: format!("{:.3}", r.seconds),
            failure: r.failure.as_deref(),
        })?;
    }
    let bytes = csv.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
    let csv_path = out.file("metrics.csv")?;
    write_atomic(&csv_path, &bytes)
        .with_context(|| format!("cannot write {}", csv_path.display()))?;
    Ok(())
}
