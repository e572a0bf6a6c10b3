//! `impasto stylize`'s inputs: the flags and output paths checked, the weights and images
//! loaded once, and each scale's images made from them.

use std::path::Path;

use anyhow::{bail, Context, Result};
use rand::{Rng, SeedableRng};

use super::flags::{FlagError, PreserveColors, StylizeArgs};
use super::optimise::{intermediate_path, save_step};
use crate::io::image::{self as image_io, Original};
use crate::io::same_file::{check_distinct, Named};
use crate::model::colour::match_histogram;
use crate::model::scales::{schedule, Scale};
use crate::model::vgg19::Arch;
use crate::model::{AdamConfig, Image, LossConfig};
use crate::pipeline::session::Setup;
use crate::weights::{self, Weights};

/// Where the first scale starts.
pub enum Init {
    Content,
    Noise(u64),
    Image(Original),
}

/// Everything a run reads, checked and loaded before any GPU work. The images are kept as
/// decoded and resized for each scale.
pub struct Inputs {
    pub arch: Arch,
    pub loss: LossConfig,
    pub weights: Weights,
    pub content: Original,
    pub styles: Vec<(Original, f64)>,
    pub init: Init,
}

/// The images of one scale: content, styles (colour-matched when asked) and the start.
pub struct ScaleImages {
    pub content: Image,
    pub styles: Vec<(Image, f64)>,
    pub init: Image,
}

impl Inputs {
    /// A session's setup for the images of one scale.
    pub fn setup<'a>(
        &'a self, images: &'a ScaleImages, args: &StylizeArgs, adam: AdamConfig,
    ) -> Setup<'a> {
        Setup {
            arch: &self.arch,
            weights: &self.weights,
            loss: &self.loss,
            pooling: args.pooling,
            adam,
            content: &images.content,
            styles: &images.styles,
            init: &images.init,
            average: args.average,
        }
    }

    /// The images at `size`; `previous` (the last scale's result) upsampled as the start.
    pub fn at(&self, args: &StylizeArgs, size: usize, previous: Option<&Image>) -> ScaleImages {
        let content = self.content.at(size);
        let style_side = ((size as f64 * args.style_scale).round() as usize).max(1);
        let styles = self
            .styles
            .iter()
            .map(|(s, w)| {
                let img = s.at(style_side);
                let img = match args.preserve_colors {
                    Some(PreserveColors::Histogram) => match_histogram(&img, &content),
                    _ => img,
                };
                (img, *w)
            })
            .collect();
        let (h, w) = (content.h, content.w);
        let init = match (previous, &self.init) {
            (Some(p), _) => upsample(p, (h, w)),
            (None, Init::Content) => content.clone(),
            (None, Init::Noise(seed)) => {
                let mut r = rand::rngs::StdRng::seed_from_u64(*seed);
                Image {
                    h,
                    w,
                    data: (0..3 * h * w).map(|_| r.random::<f32>()).collect(),
                }
            }
            (None, Init::Image(o)) => o.exactly(w, h),
        };
        ScaleImages {
            content,
            styles,
            init,
        }
    }
}

/// An image resized to h x w in f32 (Lanczos3), clamped to [0, 1].
pub fn upsample(img: &Image, (h, w): (usize, usize)) -> Image {
    if (img.h, img.w) == (h, w) {
        return img.clone();
    }
    let mut data = image_io::resize_planes(&img.data, (img.h, img.w), (h, w));
    data.iter_mut().for_each(|v| *v = v.clamp(0.0, 1.0));
    Image { h, w, data }
}

/// The scales of this run (`--min-size`, `--size`, `--initial-steps`, `--steps`).
pub fn run_scales(args: &StylizeArgs) -> Vec<Scale> {
    schedule(
        args.min_size.unwrap_or(args.size),
        args.size,
        args.initial_steps.unwrap_or(args.steps),
        args.steps,
    )
}

/// Checks the flags and output paths, then loads the weights and images.
pub fn load_inputs(args: &StylizeArgs) -> Result<Inputs> {
    image_io::check_output(&args.output, args.bit_depth)
        .map_err(|e| FlagError(format!("{e:#}")))?;
    if let Some(r) = &args.report {
        crate::io::atomic::check_parent_dir(r, "--report")?;
    }
    if let Some(p) = &args.plot {
        crate::io::plot::check_plot_path(p).map_err(|e| FlagError(format!("{e:#}")))?;
    }
    if let Some(b) = &args.style_blend {
        if b.len() != args.style.len() {
            bail!(
                "--style-blend has {} weights for {} --style images",
                b.len(),
                args.style.len()
            );
        }
    }
    let arch = Arch::vgg19();
    let layers = |names: &[String], flag: &str| -> Result<Vec<usize>> {
        names
            .iter()
            .map(|n| {
                arch.layer_index(n.trim())
                    .with_context(|| format!("--{flag}"))
            })
            .collect()
    };
    let loss = LossConfig {
        content_layers: layers(&args.layers.content_layers, "content-layers")?,
        style_layers: layers(&args.layers.style_layers, "style-layers")?,
        content_weight: args.content_weight,
        style_weight: args.style_weight,
        tv_weight: args.tv_weight,
    };
    let weights_path = weights::cache::resolve_path(args.weights.as_deref())?;
    check_outputs_spare_inputs(args, weights_path.as_deref())?;
    let weights = match &weights_path {
        Some(path) => Weights::load(path)?,
        None => weights::cache::fetch_default()?,
    };
    let asked = [
        (&loss.content_layers, "--content-layers"),
        (&loss.style_layers, "--style-layers"),
    ];
    for (layers, flag) in asked {
        for &l in layers {
            for spec in &arch.convs[..=l] {
                weights.layer(&spec.name).with_context(|| {
                    format!("{flag} {} needs every layer up to it", arch.convs[l].name)
                })?;
            }
        }
    }

    let content = image_io::load_original(&args.content)?;
    let blend = args
        .style_blend
        .clone()
        .unwrap_or_else(|| vec![1.0; args.style.len()]);
    let styles = args
        .style
        .iter()
        .zip(&blend)
        .map(|(p, &w)| Ok((image_io::load_original(p)?, w)))
        .collect::<Result<Vec<_>>>()?;
    let init = match args.init.as_str() {
        "content" => Init::Content,
        "noise" => Init::Noise(args.seed),
        path => Init::Image(image_io::load_original(Path::new(path)).context("--init")?),
    };
    Ok(Inputs {
        arch,
        loss,
        weights,
        content,
        styles,
        init,
    })
}

/// Refuses, before any work, an output (`--output`, `--report`, a `--save-every` file) that
/// is the same file as an input (`--content`, a `--style`, `--init PATH`, the weights) or as
/// another output: the run would destroy it.
fn check_outputs_spare_inputs(args: &StylizeArgs, weights: Option<&Path>) -> Result<()> {
    let named = |flag: &str, path| Named {
        flag: flag.to_string(),
        path,
    };
    let mut inputs = vec![named("--content", args.content.as_path())];
    inputs.extend(args.style.iter().map(|s| named("--style", s.as_path())));
    if !matches!(args.init.as_str(), "content" | "noise") {
        inputs.push(named("--init", Path::new(&args.init)));
    }
    if let Some(w) = weights {
        inputs.push(named("--weights", w));
    }
    let mut outputs = vec![named("--output", args.output.as_path())];
    if let Some(r) = &args.report {
        outputs.push(named("--report", r.as_path()));
    }
    if let Some(p) = &args.plot {
        outputs.push(named("--plot", p.as_path()));
    }
    // --save-every writes OUT[.scaleK].stepNNNNNN.EXT for every K-th step of each scale:
    // look for a file of that form among the others rather than listing them all.
    let mut saves = Vec::new();
    if let Some(k) = args.save_every {
        let scales = run_scales(args);
        let several = scales.len() > 1;
        for f in inputs.iter().chain(&outputs) {
            let Some((scale, step)) = save_step(&args.output, f.path) else {
                continue;
            };
            let steps = match (scale, several) {
                (Some(i), true) if i < scales.len() => scales[i].steps,
                (None, false) => scales[0].steps,
                _ => continue,
            };
            if step > 0 && step % k == 0 && (step as u64) < steps {
                saves.push((
                    format!("--save-every (step {step})"),
                    intermediate_path(&args.output, scale, step),
                ));
            }
        }
    }
    outputs.extend(saves.iter().map(|(flag, p)| Named {
        flag: flag.clone(),
        path: p.as_path(),
    }));
    check_distinct(&inputs, &outputs).map_err(|e| FlagError(e).into())
}
