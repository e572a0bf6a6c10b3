//! Convolution weights: loading, checking and the input convention they expect.
//!
//! Accepted safetensors layouts:
//! - Keras names (`block1_conv1/kernel` HWIO [3, 3, in, out], `block1_conv1/bias`), the
//!   canonical impasto layout; input convention from `__metadata__` (`input_convention`
//!   or a `preprocessing` text starting with caffe/torch), caffe when absent;
//! - torchvision names (`features.0.weight` OIHW [out, in, 3, 3], `features.0.bias`), torch convention,
//!   in safetensors or in a PyTorch `.pth` checkpoint (`torch.save` of the state_dict);
//! - Keras HDF5 weight files (`.h5`) and TensorFlow.js `model.json` + shards (Keras names, caffe).

pub mod cache;
pub mod fetch;
pub mod keras_h5;
pub mod pth;
pub mod safetensors;
pub mod tensor;
pub mod tfjs;

pub use tensor::Tensor;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use std::collections::HashMap;

use anyhow::{bail, Context, Result};

use crate::model::vgg19::{Arch, ConvSpec};
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

/// Largest weights file read, in bytes: VGG19 with its classifier is 548 MiB in f32.
pub const MAX_FILE_BYTES: u64 = 2 << 30;

/// torchvision's `features.N` index of each VGG19 conv.
const TORCHVISION_INDEX: [usize; 16] = [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34];

impl Weights {
    pub fn load(path: &Path) -> Result<Weights> {
        let what = format!("weights file {}", path.display());
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"))
        {
            // TF.js names weights like Keras (`block1_conv1/kernel`).
            let tensors = tfjs::read(path, &what)?;
            return Weights::from_tensors(tensors, &Default::default(), path);
        }
        let len = std::fs::metadata(path)
            .with_context(|| format!("cannot read {what}"))?
            .len();
        if len > MAX_FILE_BYTES {
            bail!(
                "{what} is {} MiB; impasto accepts at most {} MiB",
                len >> 20,
                MAX_FILE_BYTES >> 20
            );
        }
        let bytes = std::fs::read(path).with_context(|| format!("cannot read {what}"))?;
        Weights::parse(&bytes, path)
    }

    /// Parses a safetensors file, a PyTorch `.pth` checkpoint (a zip archive) or a Keras HDF5 file.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Weights> {
        let what = format!("weights file {}", path.display());
        let arch = Arch::vgg19();
        let no_meta = HashMap::new();
        if bytes.starts_with(b"PK\x03\x04") {
            return Weights::from_tensors(pth::read(bytes, &what)?, &no_meta, path);
        }
        if bytes.starts_with(b"\x89HDF\r\n\x1a\n") {
            let keep = |layer: &str| arch.layer_index(layer).is_ok();
            let tensors = keras_h5::read(bytes.to_vec(), &what, &keep)?;
            return Weights::from_tensors(tensors, &no_meta, path);
        }
        let names = tensor_names(&arch);
        let (tensors, meta) = safetensors::read(bytes, &what, &|n| names.iter().any(|k| k == n))?;
        Weights::from_tensors(tensors, &meta, path)
    }

    /// The VGG19 convolutions among named tensors, in Keras (HWIO) or torchvision (OIHW) naming.
    fn from_tensors(
        tensors: BTreeMap<String, Tensor>, meta: &HashMap<String, String>, path: &Path,
    ) -> Result<Weights> {
        let shown = path.display();
        let arch = Arch::vgg19();
        let torchvision = tensors.keys().any(|n| n.starts_with("features."));
        let get = |name: &str| -> Option<Result<&Tensor>> {
            tensors
                .get(name)
                .map(|t| check_finite(&t.data, name, path).map(|_| t))
        };
        let mut layers = BTreeMap::new();
        for (i, spec) in arch.convs.iter().enumerate() {
            let (kname, bname) = names_of(spec, i, torchvision);
            let Some(kernel) = get(&kname) else {
                continue;
            };
            let kernel = kernel?;
            let bias = get(&bname)
                .with_context(|| format!("weights file {shown}: {kname} has no bias {bname}"))??;
            let (cin, cout) = (spec.cin, spec.cout);
            let want_k: Vec<usize> = if torchvision {
                vec![cout, cin, 3, 3]
            } else {
                vec![3, 3, cin, cout]
            };
            if kernel.shape != want_k || bias.shape != [cout] {
                bail!(
                    "weights file {shown}: layer {} has shapes {:?} / {:?}, expected {want_k:?} / [{cout}]",
                    spec.name,
                    kernel.shape,
                    bias.shape
                );
            }
            let hwio = if torchvision {
                oihw_to_hwio(&kernel.data, cin, cout)
            } else {
                kernel.data.clone()
            };
            layers.insert(
                spec.name.clone(),
                ConvWeights {
                    cin,
                    cout,
                    hwio,
                    bias: bias.data.clone(),
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

    /// Random weights for conv layers 0..=`deepest` of `arch` (benchmarks and tests: timings
    /// do not depend on the values): kernels uniform in ±`kernel(layer)`, biases in `bias`.
    pub fn random(
        arch: &Arch, deepest: usize, seed: u64, kernel: impl Fn(&ConvSpec) -> f32,
        bias: std::ops::Range<f32>,
    ) -> Weights {
        use rand::{Rng, SeedableRng};
        let mut r = rand::rngs::StdRng::seed_from_u64(seed);
        let mut layers = BTreeMap::new();
        for c in &arch.convs[..=deepest] {
            let k = kernel(c);
            let hwio = (0..9 * c.cin * c.cout)
                .map(|_| r.random_range(-k..k))
                .collect();
            let bias = (0..c.cout).map(|_| r.random_range(bias.clone())).collect();
            let (cin, cout) = (c.cin, c.cout);
            layers.insert(
                c.name.clone(),
                ConvWeights {
                    cin,
                    cout,
                    hwio,
                    bias,
                },
            );
        }
        Weights {
            layers,
            convention: Convention::Caffe,
            path: PathBuf::from("(random)"),
        }
    }

    /// The weights of `arch`'s conv layers 0..=`deepest`, each checked against its shape.
    pub fn layers_up_to(&self, arch: &Arch, deepest: usize) -> Result<Vec<&ConvWeights>> {
        arch.convs
            .iter()
            .take(deepest + 1)
            .map(|spec| {
                let cw = self.layer(&spec.name)?;
                if (cw.cin, cw.cout) != (spec.cin, spec.cout) {
                    bail!(
                        "weights for {} are {}->{} channels, expected {}->{}",
                        spec.name,
                        cw.cin,
                        cw.cout,
                        spec.cin,
                        spec.cout
                    );
                }
                Ok(cw)
            })
            .collect()
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

/// Keras and torchvision names of conv `i`'s kernel and bias.
fn names_of(spec: &ConvSpec, i: usize, torchvision: bool) -> (String, String) {
    if torchvision {
        let n = TORCHVISION_INDEX[i];
        (format!("features.{n}.weight"), format!("features.{n}.bias"))
    } else {
        (
            format!("{}/kernel", spec.name),
            format!("{}/bias", spec.name),
        )
    }
}

/// Every tensor name, in either naming, that a VGG19 weights file may hold for the convolutions.
fn tensor_names(arch: &Arch) -> Vec<String> {
    let mut names = Vec::new();
    for (i, spec) in arch.convs.iter().enumerate() {
        for torchvision in [false, true] {
            let (k, b) = names_of(spec, i, torchvision);
            names.extend([k, b]);
        }
    }
    names
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
        use ::safetensors::tensor::TensorView;
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
            .map(|(n, shape, b)| {
                Ok((
                    n.clone(),
                    TensorView::new(::safetensors::Dtype::F32, shape.clone(), b)?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let meta: HashMap<String, String> = [
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
        let data = ::safetensors::serialize(views, Some(meta))?;
        crate::io::atomic::check_parent_dir(out, "-o")?;
        crate::io::atomic::write_atomic(out, |f| Ok(std::io::Write::write_all(f, &data)?))?;
        Ok(())
    }
}
