//! File output that never leaves a half-written file looking complete: write to a temporary
//! file in the same directory, then rename.

use std::io::Write;
use std::path::Path;

pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Reads a whole file, refusing anything but a regular file first: a FIFO, a device such as
/// `/dev/zero` or a folder would block, never end or fail with an OS error that names no path.
/// The error names the path.
pub fn read_file(path: &Path) -> Result<Vec<u8>, String> {
    check_regular_file(path)?;
    std::fs::read(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))
}

/// An error naming `path` unless it is an existing regular file (symbolic links followed).
pub fn check_regular_file(path: &Path) -> Result<(), String> {
    let meta =
        std::fs::metadata(path).map_err(|e| format!("{}: cannot open: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!(
            "{}: not a regular file ({})",
            path.display(),
            if meta.is_dir() {
                "a folder"
            } else {
                "a device, pipe or socket"
            }
        ));
    }
    Ok(())
}

/// How many values are NaN or infinite.
pub fn count_non_finite(data: &[f32]) -> usize {
    data.iter().filter(|v| !v.is_finite()).count()
}
