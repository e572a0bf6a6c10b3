//! `impasto stylize`'s flags made into the library's terms: the output paths checked, the
//! weights and images loaded, the settings and losses of the job.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::flags::{FlagError, StylizeArgs};
use super::observers::{intermediate_path, save_step};
use crate::io::same_file::{check_distinct, Named};
use crate::job::{open_image, Job, Losses, Settings, StyleMask};
use crate::options;
use crate::weights::{self, Weights};

/// The job's settings from the flags.
pub fn settings(args: &StylizeArgs) -> Settings {
    options::settings_of(&args.options)
}

/// The loss settings from the flags.
pub fn losses(args: &StylizeArgs) -> Losses {
    options::losses_of(&args.options)
}

/// Checks the flags and output paths, then loads the weights (fetched when none are named).
pub fn check_and_load_weights(args: &StylizeArgs) -> Result<Weights> {
    load_weights(check_paths(args)?.as_deref())
}

/// Checks the flags and output paths (an output over an input is refused); returns the
/// weights file to read (None: the default source, fetched into the cache).
pub fn check_paths(args: &StylizeArgs) -> Result<Option<PathBuf>> {
    let o = &args.options;
    crate::io::image::check_output(&args.output, o.bit_depth)
        .map_err(|e| FlagError(format!("{e:#}")))?;
    if let Some(r) = &o.report {
        crate::io::atomic::check_parent_dir(r, "--report")?;
    }
    if let Some(p) = &o.plot {
        crate::io::plot::check_plot_path(p).map_err(|e| FlagError(format!("{e:#}")))?;
    }
    let styles = args.styles()?;
    if !args.style_mask.is_empty() && args.style_mask.len() != styles.len() {
        return Err(FlagError(format!(
            "--style-mask: {} masks for {} --style images; give one mask per --style, in the same order",
            args.style_mask.len(),
            styles.len()
        ))
        .into());
    }
    if let Some(b) = &o.style_blend {
        if b.len() != args.style.len() {
            bail!(
                "--style-blend has {} weights for {} --style images",
                b.len(),
                args.style.len()
            );
        }
    }
    let weights_path = weights::cache::resolve_path(o.weights.as_deref())?;
    check_outputs_spare_inputs(args, weights_path.as_deref())?;
    Ok(weights_path)
}

/// The weights of `path`, or of the default source (fetched into the cache when missing).
pub fn load_weights(path: Option<&Path>) -> Result<Weights> {
    Ok(crate::job::load_weights(path)?)
}

/// The job: the content, style and `--init` images read, the settings from the flags.
pub fn load_job(args: &StylizeArgs) -> Result<Job> {
    let content = open_image(&args.content)?;
    let parsed = args.styles()?;
    let styles = (parsed.iter())
        .map(|(p, _)| open_image(p).context("--style"))
        .collect::<Result<Vec<_>>>()?;
    let style_masks = match &args.regions {
        Some(map) => {
            let colours: Vec<[u8; 3]> = parsed.iter().filter_map(|s| s.1).collect();
            Some(StyleMask::regions(map, &colours)?)
        }
        None if args.style_mask.is_empty() => None,
        None => Some(
            (args.style_mask.iter())
                .map(|p| StyleMask::open(p).context("--style-mask"))
                .collect::<Result<Vec<_>>>()?,
        ),
    };
    options::assemble(&args.options, content, styles, style_masks)
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
    let styles = args.styles()?;
    inputs.extend(styles.iter().map(|s| named("--style", s.0.as_path())));
    inputs.extend(
        args.style_mask
            .iter()
            .map(|s| named("--style-mask", s.as_path())),
    );
    inputs.extend(args.regions.iter().map(|s| named("--regions", s.as_path())));
    if !matches!(args.options.init.as_str(), "content" | "noise") {
        inputs.push(named("--init", Path::new(&args.options.init)));
    }
    if let Some(w) = weights {
        inputs.push(named("--weights", w));
    }
    let mut outputs = vec![named("--output", args.output.as_path())];
    if let Some(r) = &args.options.report {
        outputs.push(named("--report", r.as_path()));
    }
    if let Some(p) = &args.options.plot {
        outputs.push(named("--plot", p.as_path()));
    }
    let saves = save_every_files(args, inputs.iter().chain(&outputs).map(|f| f.path));
    outputs.extend(saves.iter().map(|(flag, p)| Named {
        flag: flag.clone(),
        path: p.as_path(),
    }));
    check_distinct(&inputs, &outputs).map_err(|e| FlagError(e).into())
}

/// The `--save-every` files among `paths`: --save-every writes OUT[.scaleK].stepNNNNNN.EXT
/// for every K-th step of each scale, so look for a file of that form among them rather than
/// listing them all.
fn save_every_files<'p>(
    args: &StylizeArgs, paths: impl Iterator<Item = &'p Path>,
) -> Vec<(String, std::path::PathBuf)> {
    let Some(k) = args.options.save_every else {
        return Vec::new();
    };
    let scales = settings(args).scales();
    let several = scales.len() > 1;
    let mut saves = Vec::new();
    for path in paths {
        let Some((scale, step)) = save_step(&args.output, path) else {
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
    saves
}
