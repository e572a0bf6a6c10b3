//! Keras HDF5 weight files (`model.save_weights` / the Keras applications downloads) read in
//! pure Rust. Each layer is a group named after it holding its kernel and bias, directly
//! (Keras 1: `block1_conv1/block1_conv1_W_1:0`) or one level down (Keras 2:
//! `block1_conv1/block1_conv1/kernel:0`); the kernel is the 4-D dataset, the bias the 1-D one.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};

use crate::model::vgg19::Arch;

/// A tensor's shape and values.
pub type Tensor = (Vec<usize>, Vec<f32>);

/// Kernels and biases by Keras name (`block1_conv1/kernel`, `block1_conv1/bias`), with shapes.
pub fn read(bytes: Vec<u8>, what: &str) -> Result<BTreeMap<String, Tensor>> {
    let file = hdf5_pure::File::from_bytes(bytes)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("{what} is not a readable HDF5 file (truncated or corrupt?)"))?;
    // Keras saves a whole model's weights either at the root or under `model_weights`.
    let root = match file.group("model_weights") {
        Ok(g) => g,
        Err(_) => file.root(),
    };
    let mut out = BTreeMap::new();
    for spec in Arch::vgg19().convs {
        let Ok(group) = root.group(&spec.name) else {
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
        let group = root.group(&spec.name).map_err(|e| anyhow::anyhow!("{e}"))?;
        for d in datasets {
            let ds = group
                .dataset(&d)
                .map_err(|e| anyhow::anyhow!("{what}: {}/{d}: {e}", spec.name))?;
            let shape: Vec<usize> = ds
                .shape()
                .map_err(|e| anyhow::anyhow!("{what}: {}/{d}: {e}", spec.name))?
                .iter()
                .map(|&s| s as usize)
                .collect();
            let role = match shape.len() {
                4 => "kernel",
                1 => "bias",
                _ => bail!(
                    "{what}: {}/{d} has shape {shape:?}; expected a kernel or a bias",
                    spec.name
                ),
            };
            let data: Vec<f32> = ds
                .read::<f32>()
                .map_err(|e| anyhow::anyhow!("{what}: {}/{d} is unreadable: {e}", spec.name))?;
            if data.len() != shape.iter().product::<usize>() {
                bail!(
                    "{what}: {}/{d} holds {} values for shape {shape:?}",
                    spec.name,
                    data.len()
                );
            }
            let key = format!("{}/{role}", spec.name);
            if out.insert(key.clone(), (shape, data)).is_some() {
                bail!("{what}: layer {} has more than one {role}", spec.name);
            }
        }
    }
    Ok(out)
}
