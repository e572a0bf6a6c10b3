//! Whether two paths name the same file: after resolving relative paths, `..` and symbolic
//! links, by device and inode where the platform has them (hard links), and case-insensitively
//! in directories whose filesystem ignores case. Used to refuse an output that would replace
//! an input, or another output, before any work.

use std::path::{Path, PathBuf};

/// A path made absolute with its directory resolved (symbolic links, `..`), the file name kept
/// (the file itself may not exist yet).
fn resolved(path: &Path) -> Option<PathBuf> {
    if let Ok(p) = std::fs::canonicalize(path) {
        return Some(p);
    }
    let name = path.file_name()?;
    let dir = std::fs::canonicalize(super::atomic::parent_dir(path)).ok()?;
    Some(dir.join(name))
}

#[cfg(unix)]
fn identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

#[cfg(not(unix))]
fn identity(_path: &Path) -> Option<(u64, u64)> {
    None
}

/// True when `dir`'s filesystem treats names that differ only in case as one name: probed
/// by making a temporary file there and looking it up in upper case.
fn ignores_case(dir: &Path) -> bool {
    let Ok(probe) = tempfile::Builder::new()
        .prefix(".impasto-case-probe-")
        .tempfile_in(dir)
    else {
        return false;
    };
    let Some(name) = probe.path().file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    dir.join(name.to_uppercase()).exists()
}

/// Whether `a` and `b` are, or would be once written, the same file.
pub fn same_file(a: &Path, b: &Path) -> bool {
    if let (Some(x), Some(y)) = (identity(a), identity(b)) {
        return x == y;
    }
    let (Some(ra), Some(rb)) = (resolved(a), resolved(b)) else {
        return false;
    };
    if ra == rb {
        return true;
    }
    let (Some(da), Some(db)) = (ra.parent(), rb.parent()) else {
        return false;
    };
    let same_dir = da == db || matches!((identity(da), identity(db)), (Some(x), Some(y)) if x == y);
    let (na, nb) = (ra.file_name(), rb.file_name());
    same_dir
        && na.map(|n| n.to_string_lossy().to_lowercase())
            == nb.map(|n| n.to_string_lossy().to_lowercase())
        && ignores_case(da)
}

/// A file a command reads or writes, with the flag that names it.
pub struct Named<'a> {
    pub flag: String,
    pub path: &'a Path,
}

/// Refuses (naming both flags and the file) an output that is the same file as an input or
/// as another output.
pub fn check_distinct(inputs: &[Named<'_>], outputs: &[Named<'_>]) -> Result<(), String> {
    for (i, o) in outputs.iter().enumerate() {
        for other in inputs.iter().chain(&outputs[..i]) {
            if same_file(o.path, other.path) {
                return Err(format!(
                    "{} {} is the same file as {} {}: refusing to overwrite it; choose another {}",
                    o.flag,
                    o.path.display(),
                    other.flag,
                    other.path.display(),
                    o.flag
                ));
            }
        }
    }
    Ok(())
}

/// Keys equal for paths that name the same file, for checking many paths at once (a batch's
/// manifest) in linear time: an existing file's device and inode, else its resolved path
/// (lowercased where its directory's filesystem ignores case; each directory probed once).
#[derive(Default)]
pub struct FileKeys {
    case_blind: std::collections::HashMap<PathBuf, bool>,
}

impl FileKeys {
    pub fn key(&mut self, path: &Path) -> String {
        if let Some((dev, ino)) = identity(path) {
            return format!("inode {dev}:{ino}");
        }
        let Some(r) = resolved(path) else {
            // A path whose folder does not exist yet: as written.
            return format!("path {}", path.display());
        };
        let dir = r.parent().map(Path::to_path_buf).unwrap_or_default();
        let blind = *(self.case_blind.entry(dir.clone())).or_insert_with(|| ignores_case(&dir));
        let text = r.to_string_lossy();
        match blind {
            true => format!("path {}", text.to_lowercase()),
            false => format!("path {text}"),
        }
    }
}
