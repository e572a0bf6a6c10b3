//! Writing files so that a failure never leaves a partial or clobbered one: the content goes
//! to a temporary file beside the target, which is renamed over it only once complete.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{bail, Context, Result};

/// The directory a path's file lives in ("." for a bare file name).
pub fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Fails, naming `flag`, when the directory `path` would be written in does not exist.
pub fn check_parent_dir(path: &Path, flag: &str) -> Result<()> {
    let dir = parent_dir(path);
    if !dir.is_dir() {
        bail!(
            "{flag} {}: directory {} does not exist",
            path.display(),
            dir.display()
        );
    }
    Ok(())
}

/// Atomic writes under way in this process (see [`wait_for_writes`]).
static IN_PROGRESS: AtomicUsize = AtomicUsize::new(0);

/// Counts one write in progress while it lives.
struct Writing;

impl Writing {
    fn start() -> Writing {
        IN_PROGRESS.fetch_add(1, Ordering::SeqCst);
        Writing
    }
}

impl Drop for Writing {
    fn drop(&mut self) {
        IN_PROGRESS.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Blocks (up to `limit`) until no atomic write is under way: an exit on Ctrl-C calls it
/// first, so that it never leaves a temporary file behind.
pub fn wait_for_writes(limit: std::time::Duration) {
    let start = std::time::Instant::now();
    while IN_PROGRESS.load(Ordering::SeqCst) > 0 && start.elapsed() < limit {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Writes `path` atomically with what `fill` writes to the temporary file.
pub fn write_atomic(
    path: &Path, fill: impl FnOnce(&mut std::fs::File) -> Result<()>,
) -> Result<()> {
    let _writing = Writing::start();
    let dir = parent_dir(path);
    let mut tmp = tempfile::Builder::new()
        .prefix(".impasto-")
        .suffix(".tmp")
        .tempfile_in(&dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    fill(tmp.as_file_mut()).with_context(|| format!("cannot write {}", path.display()))?;
    // Temporary files are private (0600); the result gets the usual permissions instead.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map(|m| m.permissions().mode())
            .unwrap_or(0o644);
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode))?;
    }
    tmp.as_file_mut().flush()?;
    tmp.as_file().sync_all().ok();
    tmp.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
