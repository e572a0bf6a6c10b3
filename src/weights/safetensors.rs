//! safetensors files read into named f32 tensors, with the file's `__metadata__`.

use std::collections::{BTreeMap, HashMap};

use ::safetensors::{Dtype, SafeTensors};
use anyhow::{bail, Context, Result};

use super::tensor::{f32s_from_le, Tensor};

/// The tensors of a safetensors file whose names `keep` accepts (each must be F32), and the
/// file's metadata.
pub fn read(
    bytes: &[u8], what: &str, keep: &dyn Fn(&str) -> bool,
) -> Result<(BTreeMap<String, Tensor>, HashMap<String, String>)> {
    let (_, meta) = SafeTensors::read_metadata(bytes).with_context(|| {
        format!("{what} is not a valid safetensors file (truncated or malformed?)")
    })?;
    let st = SafeTensors::deserialize(bytes)
        .with_context(|| format!("{what} is not a valid safetensors file"))?;
    let mut out = BTreeMap::new();
    for (name, t) in st.tensors() {
        if !keep(&name) {
            continue;
        }
        if t.dtype() != Dtype::F32 {
            bail!("{what}: tensor {name} is {:?}, expected F32", t.dtype());
        }
        let data = f32s_from_le(t.data());
        out.insert(
            name,
            Tensor {
                shape: t.shape().to_vec(),
                data,
            },
        );
    }
    Ok((out, meta.metadata().clone().unwrap_or_default()))
}
