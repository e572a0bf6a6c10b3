//! `impasto stylize`: the flags made into a job (`inputs.rs`), the engine chosen, then either
//! the memory plan printed (`--dry-run`) or the job run by the library with the command's
//! observers (`observers.rs`: progress, `--save-every`, preview, outputs).

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;

use super::flags::{FlagError, StylizeArgs};
use super::inputs::{check_and_load_weights, load_job, losses};
use super::observers::{CommandObservers, Outputs};
use super::plan;
use crate::job::{Job, Stylizer};
use crate::options;
use crate::preview::Preview;
use crate::weights::Weights;

/// Runs `impasto stylize`: inputs, engine, then the job. Returns the process exit status
/// ([`crate::job::Ending::exit_code`]).
pub fn run(args: &StylizeArgs, adapter: Option<&str>) -> Result<i32> {
    let t0 = Instant::now();
    // Listening first: a taken port is refused before any work.
    let preview = match &args.options.preview {
        Some(addr) => Some(Preview::start(addr).map_err(|e| FlagError(format!("{e:#}")))?),
        None => None,
    };
    let weights = check_and_load_weights(args)?;
    if let Some(p) = &preview {
        crate::say!("preview: {}", p.url);
    }
    let (engine, why) = super::tune::engine(&args.options, adapter)?;
    if !why.is_empty() {
        crate::say!("{why}");
    }
    let mut settings = settings_json(args, &weights);
    let mut stylizer = Stylizer::new(engine, weights, &losses(args))?;
    stylizer = stylizer.with_max_memory(args.options.max_memory);
    let mut job = load_job(args)?;
    settings["styles"] = styles_json(args, &job)?;
    merge(&mut settings, options::take_tiles(&stylizer, &mut job)?);
    if let Some(p) = &preview {
        p.set_head(preview_head(&stylizer, &job, settings.clone()));
    }
    stylizer.check_scales(&job)?;
    stylizer.check_masks(&job)?;
    if args.options.dry_run {
        return dry_run(args, &stylizer, &job, settings);
    }
    let outputs = Outputs {
        job: &job,
        output: &args.output,
        bit_depth: args.options.bit_depth,
        report: args.options.report.as_deref(),
        preview: preview.as_ref(),
        plot: args.options.plot.as_deref(),
        settings,
        loading_seconds: t0.elapsed().as_secs_f64(),
        only_completed: false,
    };
    let mut observers = CommandObservers::new(&job, args, outputs);
    let cancel = stylizer.cancel_flag();
    handle_ctrl_c(&cancel);
    let done = stylizer.run(&job, &mut observers.all())?;
    let (w, h) = (done.image.w, done.image.h);
    crate::say!(
        "wrote {} ({w}x{h}, {} steps in {:.1} s on {})",
        args.output.display(),
        done.steps_done,
        done.optimise_seconds,
        done.adapter
    );
    if let (Some(p), true) = (&preview, args.options.preview_hold) {
        crate::say!("preview: serving the final state at {} until Ctrl-C", p.url);
        while !cancel.load(Ordering::SeqCst) {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    Ok(done.ending.exit_code())
}

/// Ctrl-C raises `cancel` (the run stops after its step and writes what it has); a second
/// Ctrl-C exits at once, but not in the middle of writing a file (so no temporary file is
/// left). A failure to install the handler leaves the default.
pub(super) fn handle_ctrl_c(cancel: &Arc<AtomicBool>) {
    let flag = cancel.clone();
    let _ = ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            crate::io::atomic::wait_for_writes(std::time::Duration::from_secs(30));
            std::process::exit(130);
        }
    });
}

/// The report's fixed fields, as the preview page shows them from the start.
fn preview_head(stylizer: &Stylizer, job: &Job, settings: serde_json::Value) -> serde_json::Value {
    let engine = stylizer.engine();
    let (h, w) = job.output_size();
    let planned: Vec<_> = (job.settings.scales().iter())
        .map(|s| serde_json::json!({ "size": s.size, "steps": s.steps }))
        .collect();
    serde_json::json!({
        "engine": engine.name(), "adapter": engine.adapter(), "backend": engine.backend(),
        "width": w, "height": h, "scales": planned, "settings": settings,
    })
}

/// `--dry-run`: prints the plan (or why the largest scale cannot be held, with the largest
/// size that can), writes the report; exit status 0 when it fits, 1 when not.
fn dry_run(
    args: &StylizeArgs, stylizer: &Stylizer, job: &Job, settings: serde_json::Value,
) -> Result<i32> {
    let (fh, fw) = job.output_size();
    let what = format!("{fw}x{fh}, {}", stylizer.engine().describe());
    let mut json = options::plan_json(stylizer, job, |planned, largest| {
        match planned {
            Ok(p) => plan::print(p, &what),
            Err(e) => println!("memory plan: {what}: cannot be held: {e}"),
        }
        match largest {
            Some(Some(s)) => println!("  the largest --size that fits: {s}"),
            Some(None) => println!("  no --size fits"),
            None => {}
        }
    });
    json["dry_run"] = true.into();
    json["settings"] = settings;
    let fits = json["fits"] == true;
    if let Some(path) = &args.options.report {
        let text = serde_json::to_string_pretty(&json)?;
        crate::io::atomic::write_atomic(path, |f| Ok(f.write_all(text.as_bytes())?))?;
    }
    Ok(if fits { 0 } else { 1 })
}

/// Each style with its share of the style loss and its mask (the file, or the region map and
/// colour, and the fraction of the picture it covers; null without masks): the report's and
/// the preview's list of styles.
fn styles_json(args: &StylizeArgs, job: &Job) -> Result<serde_json::Value> {
    let paths = args.styles()?;
    let total: f64 = job.styles.iter().map(|s| s.1).sum();
    let masks = job.style_masks.as_deref();
    let list = (paths.iter().zip(&job.styles).enumerate())
        .map(|(k, ((path, _), (_, w)))| {
            let mask = masks.map(|m| &m[k]);
            serde_json::json!({
                "image": path, "share": w / total,
                "mask": mask.map(|m| &m.source), "mask_coverage": mask.map(|m| m.coverage()),
            })
        })
        .collect();
    Ok(serde_json::Value::Array(list))
}

/// `fields` set in the JSON object `settings`.
pub(super) fn merge(
    settings: &mut serde_json::Value, fields: serde_json::Map<String, serde_json::Value>,
) {
    if let Some(object) = settings.as_object_mut() {
        object.extend(fields);
    }
}

pub(super) fn settings_json(a: &StylizeArgs, w: &Weights) -> serde_json::Value {
    let o = &a.options;
    serde_json::json!({
        "content": a.content, "style": a.style, "style_blend": o.style_blend,
        "style_mask": a.style_mask, "regions": a.regions,
        "weights": w.path, "input_convention": w.convention,
        "size": o.size, "style_scale": o.style_scale,
        "content_layers": o.layers.content_layers, "style_layers": o.layers.style_layers,
        "content_weight": o.content_weight, "style_weight": o.style_weight(), "tv_weight": o.tv_weight,
        "style_loss": o.style_loss, "style_layer_weights": o.style_layer_weights, "preset": o.preset,
        "steps": o.steps, "lr": o.lr, "beta1": o.beta1, "beta2": o.beta2, "eps": o.eps,
        "init": o.init, "seed": o.seed, "pooling": o.pooling, "seamless": o.seamless, "tile": o.tile, "preserve_colors": o.preserve_colors, "storage": o.storage,
        "min_size": o.min_size.unwrap_or(o.size), "initial_steps": o.initial_steps.unwrap_or(o.steps),
        "optimizer": o.optimizer, "plot": o.plot, "history": o.history, "average": o.average, "bit_depth": o.bit_depth,
    })
}
