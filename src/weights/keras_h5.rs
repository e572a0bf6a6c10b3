//! Keras HDF5 weight files (`model.save_weights` / the Keras applications downloads) read in
//! pure Rust. Each layer is a group named after it holding its kernel and bias, directly
//! (Keras 1: `block1_conv1/block1_conv1_W_1:0`) or one level down (Keras 2:
//! `block1_conv1/block1_conv1/kernel:0`); the kernel is the 4-D dataset, the bias the 1-D one.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};

use super::tensor::Tensor;

/// Every layer's kernel and bias by Keras name (`block1_conv1/kernel`, `block1_conv1/bias`):
/// each group of the file (or of its `model_weights`) is a layer; a 4-D dataset in it is the
/// kernel, a 1-D one the bias. `keep` says which layers to read (a network's business, not
/// the file format's).
pub fn read(
    bytes: Vec<u8>, what: &str, keep: &dyn Fn(&str) -> bool,
) -> Result<BTreeMap<String, Tensor>> {
    let file_len = bytes.len();
    let file = hdf5_pure::File::from_bytes(bytes)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("{what} is not a readable HDF5 file (truncated or corrupt?)"))?;
    // Keras saves a whole model's weights either at the root or under `model_weights`.
    let root = match file.group("model_weights") {
        Ok(g) => g,
        Err(_) => file.root(),
    };
    let mut out = BTreeMap::new();
    let layers = root.groups().map_err(|e| anyhow::anyhow!("{what}: {e}"))?;
    for layer in layers {
        if !keep(&layer) {
            continue;
        }
        let Ok(group) = root.group(&layer) else {
            continue;
        };
        let mut datasets: Vec<String> = Vec::new();
        let mut pending = vec![(group, String::new())];
        while let Some((g, prefix)) = pending.pop() {
            for d in g.datasets().map_err(|e| anyhow::anyhow!("{what}: {e}"))? {
                datasets.push(format!("{prefix}{d}"));
            }
            if prefix.is_empty() {
                for sub in g.groups().map_err(|e| anyhow::anyhow!("{what}: {e}"))? {
                    if let Ok(sg) = g.group(&sub) {
                        pending.push((sg, format!("{sub}/")));
                    }
                }
            }
        }
        let group = root.group(&layer).map_err(|e| anyhow::anyhow!("{e}"))?;
        for d in datasets {
            let ds = group
                .dataset(&d)
                .map_err(|e| anyhow::anyhow!("{what}: {}/{d}: {e}", layer))?;
            let shape: Vec<usize> = ds
                .shape()
                .map_err(|e| anyhow::anyhow!("{what}: {}/{d}: {e}", layer))?
                .iter()
                .map(|&s| s as usize)
                .collect();
            let role = if shape.len() == 1 { "bias" } else { "kernel" };
            // Keras stores weights uncompressed: a dataset declaring more values than the file
            // could hold is refused before anything is allocated for it.
            let values = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
            if values.is_none_or(|n| n.saturating_mul(4) > file_len) {
                bail!("{what}: {layer}/{d} declares shape {shape:?}, more than the file holds");
            }
            let data: Vec<f32> = ds
                .read::<f32>()
                .map_err(|e| anyhow::anyhow!("{what}: {}/{d} is unreadable: {e}", layer))?;
            if data.len() != shape.iter().product::<usize>() {
                bail!(
                    "{what}: {}/{d} holds {} values for shape {shape:?}",
                    layer,
                    data.len()
                );
            }
            let key = format!("{layer}/{role}");
            if out.insert(key.clone(), Tensor { shape, data }).is_some() {
                bail!("{what}: layer {} has more than one {role}", layer);
            }
        }
    }
    Ok(out)
}
