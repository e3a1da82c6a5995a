//! The output folder of a run (`--out`): one run at a time, never mixed with another run's
//! files, nothing written outside it.
//!
//! Policy:
//! - a lock file `OUT/.equireg.lock`, created with `create_new` (so two runs cannot both hold
//!   it) and removed when the run ends, well or not; a second run into the folder while it is
//!   there is refused, naming the lock and the process that holds it;
//! - a folder that is not empty is refused unless `--overwrite`; with it, the files and folders
//!   an earlier run recorded in its manifest `OUT/.equireg-manifest.json` are removed first
//!   (only those; without a manifest, what an earlier `metrics.json` names), and the run then
//!   refuses to write into any folder it finds there that it did not make itself;
//! - every folder and file the run writes is recorded in the manifest as it goes, so an
//!   interrupted run can be cleaned up by the next one with `--overwrite`;
//! - per-image folder names come from [`output_names`]: a plain name, or an error.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use equireg_nn::io::write_atomic;
use serde::{Deserialize, Serialize};

pub const LOCK: &str = ".equireg.lock";
pub const MANIFEST: &str = ".equireg-manifest.json";
/// Files in the folder's root that runs write; no image may take these names.
const RESERVED: &[&str] = &[
    "metrics.json",
    "metrics.csv",
    "mpe_check.json",
    "mpe_check.md",
    "histogram.png",
    "grid.png",
];

#[derive(Default, Serialize, Deserialize)]
struct Manifest {
    /// The command that wrote the folder ("restore", "sample", "mpe-check").
    command: String,
    /// Folders directly in the output folder that the run made (one per image).
    folders: Vec<String>,
    /// Files directly in the output folder that the run wrote.
    files: Vec<String>,
}

/// An output folder held by this run (the lock is released on drop).
pub struct OutDir {
    root: PathBuf,
    lock: PathBuf,
    manifest: Manifest,
}

impl OutDir {
    /// Creates `root` if needed, takes its lock and applies the reuse policy (module docs).
    pub fn open(root: &Path, overwrite: bool, command: &str) -> anyhow::Result<OutDir> {
        std::fs::create_dir_all(root)
            .with_context(|| format!("cannot create the output folder {}", root.display()))?;
        let lock = root.join(LOCK);
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&lock)
        {
            Ok(mut f) => {
                let _ = writeln!(f, "{}", std::process::id());
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let pid = std::fs::read_to_string(&lock).unwrap_or_default();
                bail!(
                    "{}: another equireg run (process {}) is writing into {}; wait for it, or \
                     delete the lock file if that run is gone",
                    lock.display(),
                    pid.trim(),
                    root.display()
                );
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot create the lock file {}", lock.display()));
            }
        }
        let mut out = OutDir {
            root: root.to_path_buf(),
            lock,
            manifest: Manifest {
                command: command.to_string(),
                ..Manifest::default()
            },
        };
        // From here on, dropping `out` releases the lock, on every error path too.
        out.clean_earlier_run(overwrite)?;
        out.save_manifest()?;
        Ok(out)
    }

    fn entries(&self) -> anyhow::Result<Vec<String>> {
        let mut v = Vec::new();
        for e in std::fs::read_dir(&self.root)
            .with_context(|| format!("cannot list {}", self.root.display()))?
        {
            let e = e.with_context(|| format!("cannot list {}", self.root.display()))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name != LOCK {
                v.push(name);
            }
        }
        v.sort();
        Ok(v)
    }

    fn clean_earlier_run(&mut self, overwrite: bool) -> anyhow::Result<()> {
        let entries = self.entries()?;
        if entries.is_empty() {
            return Ok(());
        }
        if !overwrite {
            let shown: Vec<&str> = entries.iter().take(3).map(String::as_str).collect();
            bail!(
                "the output folder {} is not empty ({}{}): a run would leave its outputs beside \
                 others that look as current; pass --overwrite to remove the earlier equireg \
                 run's outputs first, or choose an empty or new --out",
                self.root.display(),
                shown.join(", "),
                if entries.len() > 3 { ", ..." } else { "" }
            );
        }
        let (folders, files) = self.earlier_outputs()?;
        for name in &folders {
            let p = self.root.join(name);
            if p.is_dir() {
                std::fs::remove_dir_all(&p)
                    .with_context(|| format!("--overwrite: cannot remove {}", p.display()))?;
            }
        }
        for name in files.iter().map(String::as_str).chain([MANIFEST]) {
            let p = self.root.join(name);
            if p.is_file() {
                std::fs::remove_file(&p)
                    .with_context(|| format!("--overwrite: cannot remove {}", p.display()))?;
            }
        }
        Ok(())
    }

    /// What an earlier run wrote here: its manifest, else the folders its metrics.json names.
    fn earlier_outputs(&self) -> anyhow::Result<(Vec<String>, Vec<String>)> {
        let plain = |n: &String| safe_name(n).is_ok();
        let manifest = self.root.join(MANIFEST);
        if manifest.is_file() {
            let text = std::fs::read_to_string(&manifest)
                .with_context(|| format!("cannot read {}", manifest.display()))?;
            let m: Manifest = serde_json::from_str(&text).with_context(|| {
                format!(
                    "{}: not an equireg manifest; remove the folder's contents by hand",
                    manifest.display()
                )
            })?;
            // A manifest names plain entries of this folder only: nothing outside it is removed.
            return Ok((
                m.folders.into_iter().filter(plain).collect(),
                m.files.into_iter().filter(plain).collect(),
            ));
        }
        let metrics = self.root.join("metrics.json");
        let mut folders = Vec::new();
        if let Some(doc) = std::fs::read_to_string(&metrics)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        {
            for r in doc["images"].as_array().into_iter().flatten() {
                if let Some(n) = r["name"].as_str().map(str::to_string)
                    && plain(&n)
                    && !folders.contains(&n)
                {
                    folders.push(n);
                }
            }
        }
        Ok((
            folders,
            vec!["metrics.json".to_string(), "metrics.csv".to_string()],
        ))
    }

    fn save_manifest(&self) -> anyhow::Result<()> {
        let p = self.root.join(MANIFEST);
        write_atomic(&p, serde_json::to_string_pretty(&self.manifest)?.as_bytes())
            .with_context(|| format!("cannot write {}", p.display()))
    }

    /// The folder `name` (a plain name, see [`output_names`]) inside the output folder, made
    /// and recorded; an error if it exists and this run did not make it.
    pub fn folder(&mut self, name: &str) -> anyhow::Result<PathBuf> {
        safe_name(name)?;
        let p = self.root.join(name);
        if !self.manifest.folders.iter().any(|f| f == name) {
            if p.exists() {
                bail!(
                    "{} exists and was not written by this run; refusing to write into it \
                     (move it away or choose another --out)",
                    p.display()
                );
            }
            self.manifest.folders.push(name.to_string());
            self.save_manifest()?;
        }
        std::fs::create_dir_all(&p).with_context(|| format!("cannot create {}", p.display()))?;
        Ok(p)
    }

    /// The path of the file `name` in the output folder's root, recorded as this run's.
    pub fn file(&mut self, name: &str) -> anyhow::Result<PathBuf> {
        if !self.manifest.files.iter().any(|f| f == name) {
            self.manifest.files.push(name.to_string());
            self.save_manifest()?;
        }
        Ok(self.root.join(name))
    }
}

impl Drop for OutDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.lock);
    }
}

/// An error unless `name` is a plain folder name that stays inside the output folder: not
/// empty, not `.` or `..`, no path separator, no leading dot (hidden names are the run's own
/// bookkeeping), no control character, none of the file names runs write there.
pub fn safe_name(name: &str) -> anyhow::Result<()> {
    let why = if name.is_empty() {
        Some("it is empty")
    } else if name == "." || name == ".." {
        Some("it names a folder, not a file")
    } else if name.contains('/') || name.contains('\\') {
        Some("it holds a path separator")
    } else if name.starts_with('.') {
        Some("it starts with a dot")
    } else if name.chars().any(char::is_control) {
        Some("it holds a control character")
    } else if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(name)) {
        Some("a run writes a file of that name beside the image folders")
    } else if !matches!(
        Path::new(name).components().collect::<Vec<_>>().as_slice(),
        [std::path::Component::Normal(_)]
    ) {
        Some("it is not a plain name")
    } else {
        None
    };
    match why {
        Some(why) => {
            bail!("the output folder name {name:?} is refused: {why}; rename the input file")
        }
        None => Ok(()),
    }
}

/// The output folder name of each input file: its stem, which must be a [`safe_name`]; two
/// files whose names differ only in extension or letter case (which would share one folder, or
/// collide on a case-insensitive file system) are refused, naming both.
pub fn output_names(files: &[PathBuf]) -> anyhow::Result<Vec<String>> {
    let mut seen: HashMap<String, &Path> = HashMap::new();
    let mut names = Vec::with_capacity(files.len());
    for f in files {
        let name = f
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        safe_name(&name).with_context(|| format!("{}", f.display()))?;
        if let Some(other) = seen.insert(name.to_lowercase(), f) {
            bail!(
                "{} and {} would both write to the output folder {name:?} (names that differ \
                 only in extension or case); rename one",
                other.display(),
                f.display()
            );
        }
        names.push(name);
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_leave_the_folder_or_collide_are_refused() {
        for bad in [
            "..",
            ".",
            "",
            "a/b",
            "a\\b",
            ".hidden",
            "metrics.json",
            "x\ny",
        ] {
            assert!(safe_name(bad).is_err(), "{bad:?}");
        }
        assert!(safe_name("photo 1").is_ok());
        let p = |s: &str| PathBuf::from(s);
        let e = output_names(&[p("d/...png")]).unwrap_err();
        assert!(format!("{e:#}").contains("d/...png"), "{e:#}");
        let e = output_names(&[p("d/a.png"), p("d/A.jpg")]).unwrap_err();
        assert!(e.to_string().contains("d/a.png and d/A.jpg"), "{e}");
        assert_eq!(
            output_names(&[p("d/a.png"), p("d/b.png")]).unwrap(),
            ["a", "b"]
        );
    }
}
