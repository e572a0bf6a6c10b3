//! The kernel variants `impasto tune` found fastest on an adapter, kept in the user cache
//! (`$XDG_CACHE_HOME/impasto/tuning.json`, else `~/.cache/impasto/`) under a key naming the
//! adapter, its driver and impasto's version: a GPU engine takes them from there, and without
//! an entry the adapter's default.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::gpu::Gpu;
use crate::kernels::{precision, Precision, Storage, Tiling, Variants};

/// One adapter's tuning: the variants chosen and what each variant's families took.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Tuned {
    pub variants: Variants,
    /// The image side the steps were timed at.
    pub size: usize,
    /// Milliseconds a step, by family (`conv`, `gram`) and variant.
    pub ms: BTreeMap<String, BTreeMap<String, f64>>,
    /// When it was measured (seconds since the Unix epoch).
    pub measured_at: u64,
}

/// The cache's file.
pub fn cache_path() -> Option<PathBuf> {
    Some(crate::weights::cache::cache_dir()?.join("tuning.json"))
}

/// The key of an adapter's entry: its name, driver, backend, the feature-map storage, the
/// precision (mixed only: f32 entries keep their keys) and impasto's version (another
/// version's kernels may differ).
pub fn key(info: &wgpu::AdapterInfo, storage: Storage, precision: Precision) -> String {
    let mixed = match precision {
        Precision::Mixed => " | Mixed",
        Precision::F32 => "",
    };
    format!(
        "{} | {} {} | {:?} | {:?}{mixed} | impasto {}",
        info.name,
        info.driver,
        info.driver_info,
        info.backend,
        storage,
        env!("CARGO_PKG_VERSION")
    )
}

fn read_all() -> BTreeMap<String, Tuned> {
    let text = cache_path().and_then(|p| std::fs::read_to_string(p).ok());
    // A cache that does not parse is as good as none: it is rewritten by the next tune.
    text.and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// The tuned variants of an adapter, if `impasto tune` ran on it.
pub fn cached(info: &wgpu::AdapterInfo, storage: Storage, precision: Precision) -> Option<Tuned> {
    read_all().remove(&key(info, storage, precision))
}

/// The variants a GPU run on the adapter takes: the tuned ones, else the adapter's default
/// (for mixed precision the first variant on cooperative matrices it offers, else coop16-64x64, which
/// the engine then refuses with the reason).
pub fn variants(gpu: &Gpu, storage: Storage, precision: Precision) -> Variants {
    if let Some(t) = cached(&gpu.info, storage, precision) {
        return t.variants;
    }
    match precision {
        Precision::F32 => Variants::uniform(Tiling::for_adapter(&gpu.info)),
        Precision::Mixed => {
            Variants::uniform(precision::mixed_tiling(gpu).unwrap_or(Tiling::coop(16, 2, 4)))
        }
    }
}

/// Keeps `t` as the adapter's entry (the other adapters' entries stay); returns the file.
pub fn store(gpu: &Gpu, (storage, precision): (Storage, Precision), t: &Tuned) -> Result<PathBuf> {
    use std::io::Write;
    let path = cache_path().context("no cache folder: set XDG_CACHE_HOME or HOME")?;
    let mut all = read_all();
    all.insert(key(&gpu.info, storage, precision), t.clone());
    std::fs::create_dir_all(path.parent().expect("a folder"))
        .with_context(|| format!("creating {}", path.display()))?;
    let text = serde_json::to_string_pretty(&all)?;
    crate::io::atomic::write_atomic(&path, |f| Ok(f.write_all(text.as_bytes())?))?;
    Ok(path)
}
