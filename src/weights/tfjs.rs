//! The TensorFlow.js layers format: `model.json`, whose `weightsManifest` lists weight groups,
//! each a list of binary shard files holding its tensors back to back (little-endian).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};

use super::tensor::{f32s_from_le, Tensor};

#[derive(serde::Deserialize)]
struct Model {
    #[serde(rename = "weightsManifest")]
    weights_manifest: Vec<Group>,
}

#[derive(serde::Deserialize)]
struct Group {
    paths: Vec<String>,
    weights: Vec<Entry>,
}

#[derive(serde::Deserialize)]
struct Entry {
    name: String,
    shape: Vec<usize>,
    dtype: String,
    #[serde(default)]
    quantization: Option<serde_json::Value>,
}

/// The float32 tensors of `model.json` and its shards (found beside it), by name.
pub fn read(model_json: &Path, what: &str) -> Result<BTreeMap<String, Tensor>> {
    let text =
        std::fs::read_to_string(model_json).with_context(|| format!("cannot read {what}"))?;
    let model: Model = serde_json::from_str(&text).with_context(|| {
        format!("{what} is not a TensorFlow.js model.json with a weightsManifest")
    })?;
    let dir = model_json.parent().unwrap_or(Path::new("."));
    let mut out = BTreeMap::new();
    for group in model.weights_manifest {
        // What the manifest lists must be what the shards hold, checked from their sizes
        // before any is read (a shard paired with a lying manifest allocates nothing).
        let listed = group.weights.iter().try_fold(0usize, |sum, e| {
            e.shape
                .iter()
                .try_fold(4usize, |n, &d| n.checked_mul(d))
                .and_then(|b| sum.checked_add(b))
        });
        let mut on_disk = 0u64;
        for p in &group.paths {
            let shard = dir.join(p);
            let meta = std::fs::metadata(&shard)
                .with_context(|| format!("{what}: cannot read shard {}", shard.display()))?;
            on_disk = on_disk.saturating_add(meta.len());
        }
        if listed.is_none_or(|l| l as u64 != on_disk) {
            bail!(
                "{what}: the shards hold {on_disk} bytes but the manifest lists {} (truncated or mismatched?)",
                listed.map_or("more than can be counted".to_string(), |l| l.to_string())
            );
        }
        let mut bytes = Vec::with_capacity(on_disk as usize);
        for p in &group.paths {
            let shard = dir.join(p);
            bytes.extend(
                std::fs::read(&shard)
                    .with_context(|| format!("{what}: cannot read shard {}", shard.display()))?,
            );
        }
        let mut at = 0usize;
        for e in group.weights {
            if e.quantization.is_some() {
                bail!(
                    "{what}: {} is quantized; only float32 weights are supported",
                    e.name
                );
            }
            if e.dtype != "float32" {
                bail!("{what}: {} is {}, expected float32", e.name, e.dtype);
            }
            let end = e
                .shape
                .iter()
                .try_fold(4usize, |n, &d| n.checked_mul(d))
                .and_then(|b| b.checked_add(at));
            let chunk = end.and_then(|end| bytes.get(at..end)).with_context(|| {
                format!("{what}: the shards end inside {} (truncated?)", e.name)
            })?;
            at += chunk.len();
            let data = f32s_from_le(chunk);
            out.insert(
                e.name,
                Tensor {
                    shape: e.shape,
                    data,
                },
            );
        }
        if at != bytes.len() {
            bail!(
                "{what}: the shards hold {} bytes more than the manifest lists",
                bytes.len() - at
            );
        }
    }
    Ok(out)
}
