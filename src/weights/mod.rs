//! Convolution weights: loading, checking and the input convention they expect.
//!
//! Accepted safetensors layouts:
//! - Keras names (`block1_conv1/kernel` HWIO [3, 3, in, out], `block1_conv1/bias`), the
//!   canonical impasto layout; input convention from `__metadata__` (`input_convention`
//!   or a `preprocessing` text starting with caffe/torch), caffe when absent;
//! - torchvision names (`features.0.weight` OIHW [out, in, 3, 3], `features.0.bias`), torch convention,
//!   in safetensors or in a PyTorch `.pth` checkpoint (`torch.save` of the state_dict);
//! - Keras HDF5 weight files (`.h5`) and TensorFlow.js `model.json` + shards (Keras names, caffe).

pub mod fetch;
pub mod keras_h5;
pub mod pth;
pub mod tfjs;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use safetensors::{Dtype, SafeTensors};

use crate::model::vgg19::Arch;
use crate::model::Convention;

/// One convolution's parameters, HWIO `[3][3][cin][cout]` and bias `[cout]`.
#[derive(Clone, Debug)]
pub struct ConvWeights {
    pub cin: usize,
    pub cout: usize,
    pub hwio: Vec<f32>,
    pub bias: Vec<f32>,
}

#[derive(Clone, Debug)]
pub struct Weights {
    /// By Keras layer name.
    pub layers: BTreeMap<String, ConvWeights>,
    pub convention: Convention,
    pub path: PathBuf,
}

/// Environment variable naming the weights file, like `--weights`.
pub const WEIGHTS_ENV: &str = "IMPASTO_WEIGHTS";

/// Where the weights live by default: `$XDG_CACHE_HOME/impasto` or `~/.cache/impasto`.
pub fn cache_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .map(|d| d.join("impasto"))
}

pub const DEFAULT_FILE: &str = "vgg19.safetensors";

/// The weights file to use: `--weights`, then `$IMPASTO_WEIGHTS`, then the cache file if it
/// exists (`Ok(None)` when it does not: the caller may fetch it).
pub fn resolve_path(flag: Option<&Path>) -> Result<Option<PathBuf>> {
    if let Some(p) = flag {
        return Ok(Some(p.to_path_buf()));
    }
    if let Some(p) = std::env::var_os(WEIGHTS_ENV).filter(|s| !s.is_empty()) {
        return Ok(Some(PathBuf::from(p)));
    }
    Ok(default_path().filter(|p| p.exists()))
}

/// The cache file `stylize` reads and `weights fetch` / `weights import` write by default.
pub fn default_path() -> Option<PathBuf> {
    cache_dir().map(|d| d.join(DEFAULT_FILE))
}

/// Fetches the default source into the cache (a first run without weights).
pub fn fetch_default() -> Result<Weights> {
    let help = format!(
        "impasto needs VGG19 weights: when online run `impasto weights fetch`, or pass --weights PATH / set {WEIGHTS_ENV} \
         (safetensors with Keras names such as block1_conv1/kernel or torchvision names features.N.weight, a Keras .h5 or a torchvision .pth)"
    );
    let out = default_path().with_context(|| format!("no cache directory (HOME unset); {help}"))?;
    let run = || -> Result<Weights> {
        std::fs::create_dir_all(crate::io::atomic::parent_dir(&out))?;
        let source = crate::weights::fetch::default_source()?;
        eprintln!(
            "no VGG19 weights given and none in the cache: fetching the default ({}, {}) into {} (once)",
            source.name, source.description, out.display()
        );
        crate::weights::fetch::fetch_weights(
            &source.download()?,
            &out,
            std::time::Duration::from_secs(30),
        )
    };
    run().map_err(|e| anyhow::anyhow!("{e:#}\n{help}"))
}

/// torchvision's `features.N` index of each VGG19 conv.
const TORCHVISION_INDEX: [usize; 16] = [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34];

impl Weights {
    pub fn load(path: &Path) -> Result<Weights> {
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"))
        {
            let what = format!("weights file {}", path.display());
            // TF.js names weights like Keras, with a `:0`-free `block1_conv1/kernel`.
            return Weights::from_named(
                crate::weights::tfjs::read(path, &what)?,
                &Default::default(),
                path,
            );
        }
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot read weights file {}", path.display()))?;
        Weights::parse(&bytes, path)
    }

    /// Parses a safetensors file, a PyTorch `.pth` checkpoint (a zip archive) or a Keras HDF5 file.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Weights> {
        let shown = path.display();
        if bytes.starts_with(b"PK\x03\x04") {
            let what = format!("weights file {shown}");
            let tensors = crate::weights::pth::read(bytes, &what)?
                .into_iter()
                .map(|(name, t)| (name, (t.shape, t.data)))
                .collect();
            return Weights::from_named(tensors, &Default::default(), path);
        }
        if bytes.starts_with(b"\x89HDF\r\n\x1a\n") {
            let what = format!("weights file {shown}");
            let tensors = crate::weights::keras_h5::read(bytes.to_vec(), &what)?;
            return Weights::from_named(tensors, &Default::default(), path);
        }
        let (_, meta) = SafeTensors::read_metadata(bytes).with_context(|| {
            format!(
                "weights file {shown} is not a valid safetensors file (truncated or malformed?)"
            )
        })?;
        let st = SafeTensors::deserialize(bytes)
            .with_context(|| format!("weights file {shown} is not a valid safetensors file"))?;
        let meta = meta.metadata().clone().unwrap_or_default();
        let names: Vec<String> = st.names().iter().map(|n| n.to_string()).collect();
        let get = |name: &str| {
            st.tensor(name).ok().map(|t| {
                let data = to_f32(t.dtype(), t.data(), name, path)?;
                Ok((t.shape().to_vec(), data))
            })
        };
        Weights::from_tensors(&names, get, &meta, path)
    }

    fn from_named(
        tensors: BTreeMap<String, crate::weights::keras_h5::Tensor>,
        meta: &std::collections::HashMap<String, String>,
        path: &Path,
    ) -> Result<Weights> {
        let names: Vec<String> = tensors.keys().cloned().collect();
        let get = |name: &str| {
            tensors.get(name).map(|(shape, data)| {
                check_finite(data, name, path)?;
                Ok((shape.clone(), data.clone()))
            })
        };
        Weights::from_tensors(&names, get, meta, path)
    }

    /// The VGG19 convolutions among named tensors, in Keras (HWIO) or torchvision (OIHW) naming.
    fn from_tensors(
        names: &[String],
        get: impl Fn(&str) -> Option<Result<(Vec<usize>, Vec<f32>)>>,
        meta: &std::collections::HashMap<String, String>,
        path: &Path,
    ) -> Result<Weights> {
        let shown = path.display();
        let arch = Arch::vgg19();
        let torchvision = names.iter().any(|n| n.starts_with("features."));
        let mut layers = BTreeMap::new();
        for (i, spec) in arch.convs.iter().enumerate() {
            let (kname, bname) = if torchvision {
                let n = TORCHVISION_INDEX[i];
                (format!("features.{n}.weight"), format!("features.{n}.bias"))
            } else {
                (
                    format!("{}/kernel", spec.name),
                    format!("{}/bias", spec.name),
                )
            };
            let Some(kernel) = get(&kname) else {
                continue;
            };
            let (kshape, k) = kernel?;
            let (bshape, b) = get(&bname)
                .with_context(|| format!("weights file {shown}: {kname} has no bias {bname}"))??;
            let (cin, cout) = (spec.cin, spec.cout);
            let want_k: Vec<usize> = if torchvision {
                vec![cout, cin, 3, 3]
            } else {
                vec![3, 3, cin, cout]
            };
            if kshape != want_k || bshape != [cout] {
                bail!(
                    "weights file {shown}: layer {} has shapes {kshape:?} / {bshape:?}, expected {want_k:?} / [{cout}]",
                    spec.name
                );
            }
            let hwio = if torchvision {
                oihw_to_hwio(&k, cin, cout)
            } else {
                k
            };
            layers.insert(
                spec.name.clone(),
                ConvWeights {
                    cin,
                    cout,
                    hwio,
                    bias: b,
                },
            );
        }
        if layers.is_empty() {
            bail!("weights file {shown} holds no VGG19 convolution (expected names like block1_conv1/kernel or features.0.weight)");
        }
        let declared = meta
            .get("input_convention")
            .or_else(|| meta.get("preprocessing"))
            .map(|s| s.to_lowercase());
        let convention = match declared {
            Some(s) if s.starts_with("torch") => Convention::Torch,
            Some(s) if s.starts_with("caffe") => Convention::Caffe,
            Some(s) => bail!("weights file {shown}: unknown input convention {s:?}"),
            None if torchvision => Convention::Torch,
            None => Convention::Caffe,
        };
        Ok(Weights {
            layers,
            convention,
            path: path.to_path_buf(),
        })
    }

    /// The weights of layer `name`, or an error saying which layers the file has.
    pub fn layer(&self, name: &str) -> Result<&ConvWeights> {
        self.layers.get(name).with_context(|| {
            let have: Vec<&str> = self.layers.keys().map(String::as_str).collect();
            format!(
                "weights file {} lacks layer {name} (it has {}); choose shallower --content-layers / --style-layers or other --weights",
                self.path.display(),
                have.join(", ")
            )
        })
    }
}

fn to_f32(dtype: Dtype, data: &[u8], name: &str, path: &Path) -> Result<Vec<f32>> {
    if dtype != Dtype::F32 {
        bail!(
            "weights file {}: tensor {name} is {dtype:?}, expected F32",
            path.display()
        );
    }
    let v: Vec<f32> = data
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    check_finite(&v, name, path)?;
    Ok(v)
}

fn check_finite(v: &[f32], name: &str, path: &Path) -> Result<()> {
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        bail!(
            "weights file {}: tensor {name} holds a non-finite value ({}) at element {i}",
            path.display(),
            v[i]
        );
    }
    Ok(())
}

fn oihw_to_hwio(k: &[f32], cin: usize, cout: usize) -> Vec<f32> {
    let mut out = vec![0.0; k.len()];
    for co in 0..cout {
        for ci in 0..cin {
            for t in 0..9 {
                out[(t * cin + ci) * cout + co] = k[(co * cin + ci) * 9 + t];
            }
        }
    }
    out
}

impl Weights {
    /// Writes the canonical form: Keras names, HWIO kernels, F32, the input convention and
    /// layout in `__metadata__`. Atomic: a temporary file beside `out`, then a rename.
    pub fn save_canonical(&self, out: &Path) -> Result<()> {
        use safetensors::tensor::TensorView;
        let mut bytes: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
        for (name, l) in &self.layers {
            bytes.push((
                format!("{name}/kernel"),
                vec![3, 3, l.cin, l.cout],
                bytemuck::cast_slice(&l.hwio).to_vec(),
            ));
            bytes.push((
                format!("{name}/bias"),
                vec![l.cout],
                bytemuck::cast_slice(&l.bias).to_vec(),
            ));
        }
        let views = bytes
            .iter()
            .map(|(n, shape, b)| Ok((n.clone(), TensorView::new(Dtype::F32, shape.clone(), b)?)))
            .collect::<Result<Vec<_>>>()?;
        let meta: std::collections::HashMap<String, String> = [
            ("format", "impasto-canonical-v1".to_string()),
            ("input_convention", self.convention.name().to_string()),
            (
                "layout",
                "kernel HWIO [3, 3, in, out], bias [out]; Keras layer names".to_string(),
            ),
            ("imported_from", self.path.display().to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let data = safetensors::serialize(views, Some(meta))?;
        crate::io::atomic::check_parent_dir(out, "-o")?;
        crate::io::atomic::write_atomic(out, |f| Ok(std::io::Write::write_all(f, &data)?))?;
        Ok(())
    }
}
