//! `impasto stylize`: inputs checked and loaded, the session run with progress and logging,
//! and the result written atomically, also on Ctrl-C or when the loss turns non-finite.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use rand::{Rng, SeedableRng};

use crate::cli::StylizeArgs;
use crate::gpu::Gpu;
use crate::io::image as image_io;
use crate::kernels::{Kernels, Tiling};
use crate::model::vgg19::Arch;
use crate::model::AdamConfig;
use crate::model::Image;
use crate::model::{LossConfig, LossValues};
use crate::pipeline::session::{Session, Setup};
use crate::weights::{self, Weights};

#[derive(serde::Serialize)]
struct ReportEntry {
    step: usize,
    content: f64,
    style: f64,
    tv: f64,
    total: f64,
}

#[derive(serde::Serialize)]
struct Report<'a> {
    steps: &'a [ReportEntry],
    outcome: &'a str,
    adapter: String,
    backend: String,
    width: usize,
    height: usize,
    steps_done: usize,
    setup_seconds: f64,
    optimise_seconds: f64,
    steps_per_second: f64,
    /// The most GPU memory held at once (wgpu's allocator report; null where the backend has none).
    peak_gpu_memory_bytes: Option<u64>,
    settings: serde_json::Value,
}

const NOT_FINITE_AT_START: &str =
    "the loss of the initial image is non-finite (the weights or loss \
weights overflow f32); nothing was written";

/// How the run ended.
#[derive(PartialEq, Eq, Clone, Copy)]
enum Outcome {
    Completed,
    Interrupted,
    NonFinite,
}

/// Runs `impasto stylize`; returns the process exit status on success paths that are not 0
/// (130 after Ctrl-C, 1 after a non-finite loss).
pub fn run(args: &StylizeArgs, adapter: Option<&str>) -> Result<i32> {
    let t0 = Instant::now();
    image_io::check_output(&args.output)?;
    if let Some(r) = &args.report {
        crate::io::atomic::check_parent_dir(r, "--report")?;
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
    let weights = match weights::resolve_path(args.weights.as_deref())? {
        Some(path) => Weights::load(&path)?,
        None => weights::fetch_default()?,
    };
    for &l in loss.content_layers.iter().chain(&loss.style_layers) {
        for spec in &arch.convs[..=l] {
            weights.layer(&spec.name)?;
        }
    }

    let content = image_io::load(&args.content, Some(args.size))?;
    let style_side = ((args.size as f64 * args.style_scale).round() as usize).max(1);
    let blend = args
        .style_blend
        .clone()
        .unwrap_or_else(|| vec![1.0; args.style.len()]);
    let styles = args
        .style
        .iter()
        .zip(&blend)
        .map(|(p, &w)| Ok((image_io::load(p, Some(style_side))?, w)))
        .collect::<Result<Vec<_>>>()?;
    let init = match args.init.as_str() {
        "content" => content.clone(),
        "noise" => {
            let mut r = rand::rngs::StdRng::seed_from_u64(args.seed);
            Image {
                h: content.h,
                w: content.w,
                data: (0..content.data.len()).map(|_| r.random::<f32>()).collect(),
            }
        }
        path => image_io::load_exact(Path::new(path), content.w, content.h).context("--init")?,
    };

    let gpu = Gpu::new(adapter)?;
    let kernels = Kernels::with_options(&gpu, Tiling::for_adapter(&gpu.info), args.storage)?;
    let setup = Setup {
        arch: &arch,
        weights: &weights,
        loss: &loss,
        pooling: args.pooling,
        adam: AdamConfig {
            lr: args.lr,
            beta1: args.beta1,
            beta2: args.beta2,
            eps: args.eps,
        },
        content: &content,
        styles: &styles,
        init: &init,
    };
    let mut session = Session::new(&gpu, &kernels, &setup)?;
    let setup_seconds = t0.elapsed().as_secs_f64();

    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let flag = interrupted.clone();
        // A second Ctrl-C (or a failure to install the handler) falls back to the default.
        let _ = ctrlc::set_handler(move || {
            if flag.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
        });
    }

    let steps = args.steps as usize;
    let progress = Progress::new(steps);
    let mut log: Vec<ReportEntry> = Vec::new();
    let mut outcome = Outcome::Completed;
    let mut any_finite = false;
    let t1 = Instant::now();
    let record = |step: usize, v: LossValues, log: &mut Vec<ReportEntry>, rate: f64| {
        progress.log(step, &v, rate);
        log.push(ReportEntry {
            step,
            content: v.content,
            style: v.style,
            tv: v.tv,
            total: v.total,
        });
    };
    for s in 0..steps {
        if interrupted.load(Ordering::SeqCst) {
            outcome = Outcome::Interrupted;
            break;
        }
        let log_now = s % args.log_every == 0;
        let losses = session.step(log_now)?;
        if let Some(v) = losses {
            if !v.total.is_finite() {
                if !any_finite {
                    bail!(NOT_FINITE_AT_START);
                }
                outcome = Outcome::NonFinite;
                progress.finish();
                eprintln!("the loss became non-finite at step {s}; keeping the image of the last finite loss");
                break;
            }
            session.keep_last_evaluated();
            any_finite = true;
            record(
                s,
                v,
                &mut log,
                s as f64 / t1.elapsed().as_secs_f64().max(1e-9),
            );
        }
        progress.advance();
        if let Some(k) = args.save_every {
            if (s + 1) % k == 0 && s + 1 < steps {
                let path = intermediate_path(&args.output, s + 1);
                image_io::save(
                    &finish(&session.image()?, &content, args.preserve_colors),
                    &path,
                )?;
            }
        }
    }
    gpu.check_errors()?;
    let optimise_seconds = t1.elapsed().as_secs_f64();
    let steps_done = session.steps_done;

    let result = match outcome {
        Outcome::NonFinite => session.good_image()?,
        _ => {
            let v = session.evaluate()?;
            if v.total.is_finite() {
                session.keep_last_evaluated();
                record(
                    steps_done,
                    v,
                    &mut log,
                    steps_done as f64 / optimise_seconds.max(1e-9),
                );
                session.image()?
            } else {
                if !any_finite {
                    bail!(NOT_FINITE_AT_START);
                }
                outcome = Outcome::NonFinite;
                eprintln!("the loss became non-finite at step {steps_done}; keeping the image of the last finite loss");
                session.good_image()?
            }
        }
    };
    progress.finish();
    image_io::save(
        &finish(&result, &content, args.preserve_colors),
        &args.output,
    )?;
    let outcome_name = match outcome {
        Outcome::Completed => "completed",
        Outcome::Interrupted => "interrupted",
        Outcome::NonFinite => "non-finite loss",
    };
    if let Some(path) = &args.report {
        let report = Report {
            steps: &log,
            outcome: outcome_name,
            adapter: gpu.info.name.clone(),
            backend: format!("{:?}", gpu.info.backend),
            width: content.w,
            height: content.h,
            steps_done,
            setup_seconds,
            optimise_seconds,
            steps_per_second: steps_done as f64 / optimise_seconds.max(1e-9),
            peak_gpu_memory_bytes: gpu.memory().peak_allocated,
            settings: settings_json(args, &weights),
        };
        let json = serde_json::to_string_pretty(&report)?;
        crate::io::atomic::write_atomic(path, |f| Ok(f.write_all(json.as_bytes())?))?;
    }
    eprintln!(
        "wrote {} ({}x{}, {} steps in {:.1} s on {})",
        args.output.display(),
        content.w,
        content.h,
        steps_done,
        optimise_seconds,
        gpu.info.name
    );
    Ok(match outcome {
        Outcome::Completed => 0,
        Outcome::Interrupted => 130,
        Outcome::NonFinite => 1,
    })
}

fn finish(img: &Image, content: &Image, preserve_colors: bool) -> Image {
    if preserve_colors {
        image_io::preserve_colors(img, content)
    } else {
        img.clone()
    }
}

fn intermediate_path(output: &Path, step: usize) -> PathBuf {
    let stem = output.file_stem().and_then(|s| s.to_str()).unwrap_or("out");
    let ext = output.extension().and_then(|s| s.to_str()).unwrap_or("png");
    output.with_file_name(format!("{stem}.step{step:06}.{ext}"))
}

fn settings_json(a: &StylizeArgs, w: &Weights) -> serde_json::Value {
    serde_json::json!({
        "content": a.content, "style": a.style, "style_blend": a.style_blend,
        "weights": w.path, "input_convention": w.convention,
        "size": a.size, "style_scale": a.style_scale,
        "content_layers": a.layers.content_layers, "style_layers": a.layers.style_layers,
        "content_weight": a.content_weight, "style_weight": a.style_weight, "tv_weight": a.tv_weight,
        "steps": a.steps, "lr": a.lr, "beta1": a.beta1, "beta2": a.beta2, "eps": a.eps,
        "init": a.init, "seed": a.seed, "pooling": a.pooling, "preserve_colors": a.preserve_colors, "storage": a.storage,
    })
}

/// A progress bar on a terminal, plain lines on logged steps otherwise.
struct Progress {
    bar: Option<ProgressBar>,
    steps: usize,
}

impl Progress {
    fn new(steps: usize) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = ProgressBar::new(steps as u64);
            b.set_style(
                ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} {per_sec} ETA {eta}")
                    .expect("valid template"),
            );
            b
        });
        Progress { bar, steps }
    }

    fn log(&self, step: usize, v: &LossValues, rate: f64) {
        let msg = format!(
            "content {:.4e} style {:.4e} tv {:.4e} total {:.4e}",
            v.content, v.style, v.tv, v.total
        );
        match &self.bar {
            Some(b) => b.set_message(msg),
            None => eprintln!("step {step}/{}  {msg}  {rate:.2} steps/s", self.steps),
        }
    }

    fn advance(&self) {
        if let Some(b) = &self.bar {
            b.inc(1);
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
