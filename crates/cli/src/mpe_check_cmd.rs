//! `equireg mpe-check`: is f manifold-preferential on your images? The equivariance error
//! `||rho(g) f(x) - f(g x)||` (per image, every element of each group) on clean images against the
//! same images noised and blurred. EquiReg's premise is that the first is clearly smaller.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use equireg::images::{self, RgbImage, SizePolicy};
use equireg::mpe::{Mpe, NetworkMpe};
use equireg::operators::Operator;
use equireg::operators::blur::Blur;
use equireg::regularizer::Group;
use equireg_gpu::ops::equivariance::{
    Action, Element, Form, Items, Residual, equi_norms, transform,
};
use equireg_gpu::{DType, Gpu};

use crate::checks;
use crate::outdir::OutDir;

#[derive(Args)]
pub struct MpeCheckArgs {
    /// MPE network folder (config.json + weights.safetensors), or "default" for the embedded
    /// default encoder
    #[arg(long, default_value = "default")]
    mpe: PathBuf,
    /// Folder of clean PNG/JPEG images (centre-cropped to --size)
    #[arg(long)]
    images: PathBuf,
    /// Side of the square crops
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Groups to test, comma separated (hflip, vflip, rot90, c4, rot180, d4)
    #[arg(long, default_value = "hflip,rot90,d4")]
    groups: String,
    /// Std of the Gaussian noise of the noised copies, in [-1, 1] units
    #[arg(long, default_value_t = 0.2)]
    noise: f64,
    /// Further image sets as columns, LABEL=FOLDER (repeatable), e.g. restorations:
    /// --restored dps=out/dps --restored equireg=out/equireg. Cropped like --images.
    #[arg(long, value_name = "LABEL=FOLDER")]
    restored: Vec<String>,
    /// Output folder: mpe_check.json, mpe_check.md (the table) and histogram.png. It must be
    /// empty or new, unless --overwrite
    #[arg(long)]
    out: PathBuf,
    /// Reuse a non-empty --out: first remove what the earlier equireg run recorded in its
    /// manifest, nothing else
    #[arg(long)]
    overwrite: bool,
}

/// Equivariance errors of f on `x` ([N, 3, S, S] host data) for every element of `group`.
fn errors(
    gpu: &Gpu,
    mpe: &dyn Mpe,
    x: &[f32],
    n: usize,
    s: usize,
    group: &Group,
) -> anyhow::Result<Vec<f64>> {
    let run = mpe.plan(gpu, 2 * n, s, s)?;
    let out = run.output().shape().to_vec();
    let (rho_is_g, shift_div) = match out.as_slice() {
        [_, _, h, _] if *h > 1 => (true, (s / h) as u32),
        _ => (false, 1),
    };
    let xt = gpu.upload(&[n, 3, s, s], x)?;
    let sq = gpu.alloc(&[n], DType::F32)?;
    let mut all = Vec::new();
    for (i, d) in group.elements.iter().enumerate() {
        let g = gpu.upload_u32(
            &[4],
            &Element {
                dihedral: *d,
                dy: 0,
                dx: 0,
            }
            .words(i as u32),
        )?;
        let mut rec = gpu.recorder();
        let items = |dst| Items {
            src_item: 0,
            dst_item: dst,
            count: n,
        };
        transform(
            &mut rec,
            &g,
            &xt,
            run.input(),
            Action::Identity,
            items(0),
            false,
            1,
        )?;
        transform(
            &mut rec,
            &g,
            &xt,
            run.input(),
            Action::Forward,
            items(n),
            false,
            1,
        )?;
        run.record_forward(&mut rec)?;
        let res = Residual {
            g: &g,
            f_out: run.output(),
            x: &xt,
            form: Form::Equi,
            rho_is_g,
            shift_div,
        };
        equi_norms(&mut rec, res, &sq)?;
        rec.submit()?;
        all.extend(gpu.download(&sq)?.iter().map(|v| (*v as f64).sqrt()));
    }
    Ok(all)
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let m = v.iter().sum::<f64>() / v.len().max(1) as f64;
    let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / v.len().max(1) as f64;
    (m, var.sqrt())
}

/// The images of `folder`, shrunk so that their short side is `s` and centre-cropped to s x s (the
/// crop holds the picture rather than a corner of it).
fn load_crops(folder: &Path, s: usize) -> anyhow::Result<Vec<RgbImage>> {
    let files = images::list_images(folder)?;
    let mut clean = Vec::new();
    for f in &files {
        let img = images::load_rgb(f)?;
        let short = img.height.min(img.width);
        if short < s {
            bail!(
                "{}: {}x{} is smaller than --size {s}",
                f.display(),
                img.height,
                img.width
            );
        }
        let scale = s as f64 / short as f64;
        let resized = images::fit(
            &img,
            1,
            &SizePolicy::Resize(Some([
                ((img.height as f64 * scale).round() as usize).max(s),
                ((img.width as f64 * scale).round() as usize).max(s),
            ])),
        )?;
        clean.push(images::fit(&resized, 1, &SizePolicy::Crop(Some([s, s])))?);
    }
    Ok(clean)
}

pub fn run(args: &MpeCheckArgs, gpu: &Gpu) -> anyhow::Result<()> {
    let mpe = if args.mpe.as_os_str() == equireg::default_models::MPE_SPEC {
        equireg::default_models::mpe(gpu)?
    } else {
        NetworkMpe::load(gpu, &args.mpe)?
    };
    let s = checks::side("--size", args.size)?;
    let noise_sigma = checks::non_negative("--noise", args.noise)?;
    let groups = args
        .groups
        .split(',')
        .map(str::trim)
        .map(|name| Group::parse(name).map(|g| (name, g)))
        .collect::<Result<Vec<_>, _>>()
        .context("--groups")?;
    let clean = load_crops(&args.images, s)?;
    let n = clean.len();
    let x = images::to_model_batch(&clean)?;
    let noise = equireg_gpu::reference::rng::normal(x.len(), 12345, 0, 0);
    let noised: Vec<f32> = x
        .iter()
        .zip(&noise)
        .map(|(a, z)| a + noise_sigma as f32 * z)
        .collect();
    let blur = Blur::gaussian(gpu, [n, 3, s, s], 13, 2.0)?;
    let blurred = blur.forward_cpu(&x);
    let mut variants: Vec<(String, Vec<f32>)> = vec![
        ("clean".into(), x),
        ("noised".into(), noised),
        ("blurred".into(), blurred),
    ];
    for item in &args.restored {
        let Some((label, folder)) = item.split_once('=') else {
            bail!("--restored {item:?}: expected LABEL=FOLDER");
        };
        if label.is_empty() || variants.iter().any(|(l, _)| l == label) {
            bail!("--restored {item:?}: the label must be new and not empty");
        }
        let imgs = load_crops(Path::new(folder), s)?;
        variants.push((label.to_string(), images::to_model_batch(&imgs)?));
    }
    let mut table = String::from("| group |");
    for (label, _) in &variants {
        table += &format!(" {label} mean (std) |");
    }
    table += "\n|---|";
    table += &"---|".repeat(variants.len());
    table += "\n";
    let mut json_rows = Vec::new();
    let mut hist: Vec<(String, Vec<f64>)> = Vec::new();
    for (name, group) in &groups {
        let mut row = format!("| {name} |");
        for (label, data) in &variants {
            let e = errors(gpu, &mpe, data, data.len() / (3 * s * s), s, group)?;
            let (m, sd) = mean_std(&e);
            row += &format!(" {m:.4} ({sd:.4}) |");
            json_rows.push(serde_json::json!({"group": name, "images": label, "mean": m, "std": sd, "errors": e}));
            if let Some(h) = hist.iter_mut().find(|(l, _)| l == label) {
                h.1.extend(&e);
            } else {
                hist.push((label.to_string(), e));
            }
        }
        table += &row;
        table += "\n";
    }
    let mut out = OutDir::open(&args.out, args.overwrite, "mpe-check")?;
    let doc = serde_json::json!({
        "mpe": mpe.name(), "images": n, "size": s, "noise_sigma": noise_sigma,
        "blur": "gaussian 13x13, sigma 2", "rows": json_rows,
    });
    let write = |path: PathBuf, bytes: &[u8]| {
        equireg_nn::io::write_atomic(&path, bytes)
            .with_context(|| format!("cannot write {}", path.display()))
    };
    write(
        out.file("mpe_check.json")?,
        serde_json::to_string_pretty(&doc)?.as_bytes(),
    )?;
    write(out.file("mpe_check.md")?, table.as_bytes())?;
    images::save_png(&out.file("histogram.png")?, &histogram(&hist)?)?;
    print!("{table}");
    eprintln!("wrote {}", args.out.display());
    Ok(())
}

/// Overlaid histograms (one colour per image set) of the equivariance errors, 40 bins.
fn histogram(sets: &[(String, Vec<f64>)]) -> anyhow::Result<RgbImage> {
    let (w, h, bins) = (400usize, 200usize, 40usize);
    let hi = sets
        .iter()
        .flat_map(|(_, v)| v.iter())
        .copied()
        .fold(1e-12, f64::max);
    let colours = [
        [0.1, 0.5, 0.1],
        [0.8, 0.2, 0.2],
        [0.2, 0.3, 0.8],
        [0.9, 0.6, 0.0],
        [0.5, 0.1, 0.6],
        [0.0, 0.6, 0.7],
    ];
    let mut data = vec![1.0f32; 3 * h * w];
    for (k, (_, v)) in sets.iter().enumerate() {
        let mut counts = vec![0usize; bins];
        for x in v {
            counts[((x / hi * bins as f64) as usize).min(bins - 1)] += 1;
        }
        let top = *counts.iter().max().unwrap_or(&1) as f64;
        for (b, c) in counts.iter().enumerate() {
            let bar = (*c as f64 / top.max(1.0) * (h - 1) as f64) as usize;
            let x0 = b * w / bins + k * (w / bins / 3);
            for x in x0..(x0 + w / bins / 3).min(w) {
                for y in h - bar..h {
                    for ch in 0..3 {
                        data[ch * h * w + y * w + x] = colours[k % colours.len()][ch];
                    }
                }
            }
        }
    }
    Ok(RgbImage::new(h, w, data)?)
}
