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

use super::flags::{EngineChoice, FlagError, StylizeArgs};
use crate::cpu::CpuSession;
use crate::gpu::Gpu;
use crate::io::image as image_io;
use crate::io::same_file::{check_distinct, Named};
use crate::kernels::{Kernels, Tiling};
use crate::model::vgg19::Arch;
use crate::model::Image;
use crate::model::{AdamConfig, Engine};
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
    /// "gpu" or "cpu".
    engine: &'static str,
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
#[derive(PartialEq, Eq, Clone, Copy, Debug)]
pub enum Outcome {
    Completed,
    Interrupted,
    NonFinite,
    DeviceLost,
}

impl Outcome {
    /// As the report names it.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::Interrupted => "interrupted",
            Outcome::NonFinite => "non-finite loss",
            Outcome::DeviceLost => "device lost",
        }
    }

    /// The process's exit status: 130 after Ctrl-C (as shells report SIGINT), 1 after a
    /// non-finite loss or a lost GPU (the output exists but is not what was asked for).
    pub fn exit_code(self) -> i32 {
        match self {
            Outcome::Completed => 0,
            Outcome::Interrupted => 130,
            Outcome::NonFinite | Outcome::DeviceLost => 1,
        }
    }
}

/// Where a run ran, for the report.
struct RanOn {
    engine: &'static str,
    adapter: String,
    backend: String,
    peak_gpu_memory_bytes: Option<u64>,
    setup_seconds: f64,
}

/// The engine for `--engine` (auto: a hardware GPU adapter if there is one, else the CPU
/// engine; gpu: any adapter, the software driver included), said on stderr with the reason.
fn choose_engine(
    choice: EngineChoice, adapter: Option<&str>,
) -> Result<(&'static str, Option<Gpu>)> {
    match choice {
        EngineChoice::Gpu => Ok(("gpu", Some(Gpu::new(adapter)?))),
        EngineChoice::Cpu => {
            crate::say!("engine: {} (--engine cpu)", crate::cpu::describe());
            Ok(("cpu", None))
        }
        EngineChoice::Auto => match Gpu::new(adapter) {
            Ok(gpu) if adapter.is_some() || gpu.info.device_type != wgpu::DeviceType::Cpu => {
                crate::say!(
                    "engine: GPU, {} (--engine auto: a hardware adapter)",
                    gpu.info.name
                );
                Ok(("gpu", Some(gpu)))
            }
            Ok(gpu) => {
                crate::say!(
                    "engine: {} (--engine auto: the only adapter, {}, is a software driver; --engine gpu uses it)",
                    crate::cpu::describe(),
                    gpu.info.name
                );
                Ok(("cpu", None))
            }
            Err(e) => {
                crate::say!(
                    "engine: {} (--engine auto: no GPU adapter: {e:#})",
                    crate::cpu::describe()
                );
                Ok(("cpu", None))
            }
        },
    }
}

/// Everything a run reads, checked and loaded before any GPU work.
struct Inputs {
    arch: Arch,
    loss: LossConfig,
    weights: Weights,
    content: Image,
    styles: Vec<(Image, f64)>,
    init: Image,
}

/// What the optimisation left: how it ended, the log, and the image to write.
struct Optimised {
    outcome: Outcome,
    log: Vec<ReportEntry>,
    steps_done: usize,
    seconds: f64,
    image: Image,
}

/// Runs `impasto stylize`: inputs, session, optimisation with progress, outputs. Returns the
/// process exit status ([`Outcome::exit_code`]).
pub fn run(args: &StylizeArgs, adapter: Option<&str>) -> Result<i32> {
    let t0 = Instant::now();
    let inputs = load_inputs(args)?;

    let adam = AdamConfig {
        lr: args.lr,
        beta1: args.beta1,
        beta2: args.beta2,
        eps: args.eps,
    };
    let setup = Setup {
        arch: &inputs.arch,
        weights: &inputs.weights,
        loss: &inputs.loss,
        pooling: args.pooling,
        adam,
        content: &inputs.content,
        styles: &inputs.styles,
        init: &inputs.init,
    };
    let (engine, gpu) = choose_engine(args.engine, adapter)?;
    let (done, ran_on) = match gpu {
        Some(gpu) => {
            let kernels =
                Kernels::with_options(&gpu, Tiling::for_adapter(&gpu.info), args.storage)?;
            let mut session = Session::new(&gpu, &kernels, &setup)?;
            let setup_seconds = t0.elapsed().as_secs_f64();
            let done = optimise(Some(&gpu), &mut session, args, &inputs.content)?;
            gpu.check_errors()?;
            let ran_on = RanOn {
                engine,
                adapter: gpu.info.name.clone(),
                backend: format!("{:?}", gpu.info.backend),
                peak_gpu_memory_bytes: gpu.memory().peak_allocated,
                setup_seconds,
            };
            (done, ran_on)
        }
        None => {
            let mut session = CpuSession::new(&setup)?;
            let setup_seconds = t0.elapsed().as_secs_f64();
            let done = optimise(None, &mut session, args, &inputs.content)?;
            let ran_on = RanOn {
                engine,
                adapter: crate::cpu::describe(),
                backend: "cpu".into(),
                peak_gpu_memory_bytes: None,
                setup_seconds,
            };
            (done, ran_on)
        }
    };

    image_io::save(
        &finish(&done.image, &inputs.content, args.preserve_colors),
        &args.output,
    )?;
    if let Some(path) = &args.report {
        let report = Report {
            steps: &done.log,
            outcome: done.outcome.name(),
            engine: ran_on.engine,
            adapter: ran_on.adapter.clone(),
            backend: ran_on.backend,
            width: inputs.content.w,
            height: inputs.content.h,
            steps_done: done.steps_done,
            setup_seconds: ran_on.setup_seconds,
            optimise_seconds: done.seconds,
            steps_per_second: done.steps_done as f64 / done.seconds.max(1e-9),
            peak_gpu_memory_bytes: ran_on.peak_gpu_memory_bytes,
            settings: settings_json(args, &inputs.weights),
        };
        let json = serde_json::to_string_pretty(&report)?;
        crate::io::atomic::write_atomic(path, |f| Ok(f.write_all(json.as_bytes())?))?;
    }
    crate::say!(
        "wrote {} ({}x{}, {} steps in {:.1} s on {})",
        args.output.display(),
        inputs.content.w,
        inputs.content.h,
        done.steps_done,
        done.seconds,
        ran_on.adapter
    );
    Ok(done.outcome.exit_code())
}

/// Checks the flags and output paths, then loads the weights and images.
fn load_inputs(args: &StylizeArgs) -> Result<Inputs> {
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
    // --save-every writes OUT.stepNNNNNN.EXT for every K-th step: look for a file of that
    // form among the others rather than listing them all.
    let mut saves = Vec::new();
    if let Some(k) = args.save_every {
        for f in inputs.iter().chain(&outputs) {
            if let Some(step) = save_step(&args.output, f.path) {
                if step > 0 && step % k == 0 && (step as u64) < args.steps {
                    saves.push((
                        format!("--save-every (step {step})"),
                        intermediate_path(&args.output, step),
                    ));
                }
            }
        }
    }
    outputs.extend(saves.iter().map(|(flag, p)| Named {
        flag: flag.clone(),
        path: p.as_path(),
    }));
    check_distinct(&inputs, &outputs).map_err(|e| FlagError(e).into())
}

/// The step of `path` if its name has the form of an intermediate of `output` (any case).
fn save_step(output: &Path, path: &Path) -> Option<usize> {
    let stem = output.file_stem()?.to_str()?.to_lowercase();
    let ext = output
        .extension()
        .and_then(|s| s.to_str())
        .unwrap_or("png")
        .to_lowercase();
    let name = path.file_name()?.to_str()?.to_lowercase();
    let digits = name
        .strip_prefix(&format!("{stem}.step"))?
        .strip_suffix(&format!(".{ext}"))?;
    digits.parse().ok()
}

/// The step loop: progress, logged losses, `--save-every`, Ctrl-C, and a loss that turns
/// non-finite (the last image with a finite loss is kept). Ends with one more evaluation,
/// so the last report entry describes the image returned.
fn optimise(
    gpu: Option<&Gpu>, session: &mut dyn Engine, args: &StylizeArgs, content: &Image,
) -> Result<Optimised> {
    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let flag = interrupted.clone();
        // A second Ctrl-C exits at once, but not in the middle of writing a file (so no
        // temporary file is left); a failure to install the handler falls back to the default.
        let _ = ctrlc::set_handler(move || {
            if flag.swap(true, Ordering::SeqCst) {
                crate::io::atomic::wait_for_writes(std::time::Duration::from_secs(30));
                std::process::exit(130);
            }
        });
    }
    let steps = args.steps as usize;
    let mut log = Log {
        progress: Progress::new(steps),
        entries: Vec::new(),
        started: Instant::now(),
        last_good: None,
    };
    let mut outcome = Outcome::Completed;
    for s in 0..steps {
        if interrupted.load(Ordering::SeqCst) {
            outcome = Outcome::Interrupted;
            break;
        }
        let losses = match session.step(s % args.log_every == 0) {
            Err(e) if gpu.is_some_and(|g| g.lost().is_some()) => {
                log.progress.finish();
                crate::say!("{e:#}; keeping the image of the last logged step");
                outcome = Outcome::DeviceLost;
                break;
            }
            r => r?,
        };
        if let Some(v) = losses {
            if !log.accept(session, s, v)? {
                outcome = Outcome::NonFinite;
                break;
            }
        }
        log.progress.advance();
        if let Some(k) = args.save_every {
            if (s + 1) % k == 0 && s + 1 < steps {
                let path = intermediate_path(&args.output, s + 1);
                image_io::save(
                    &finish(&session.image()?, content, args.preserve_colors),
                    &path,
                )?;
            }
        }
    }
    let steps_done = session.steps_done();
    let more = !matches!(outcome, Outcome::NonFinite | Outcome::DeviceLost);
    if more {
        let v = session.evaluate()?;
        if !log.accept(session, steps_done, v)? {
            outcome = Outcome::NonFinite;
        }
    }
    let seconds = log.started.elapsed().as_secs_f64();
    log.progress.finish();
    let image = match (outcome, log.last_good) {
        (Outcome::NonFinite | Outcome::DeviceLost, Some(good)) => good,
        (Outcome::DeviceLost, None) => {
            bail!("the GPU device was lost before the first step; nothing was written")
        }
        _ => session.image()?,
    };
    Ok(Optimised {
        outcome,
        log: log.entries,
        steps_done,
        seconds,
        image,
    })
}

/// The logged losses, shown as they come, and the last image whose losses were finite.
struct Log {
    progress: Progress,
    entries: Vec<ReportEntry>,
    started: Instant,
    /// Kept on the CPU (read back on logged steps, which wait for the GPU anyway), so it
    /// survives a lost device.
    last_good: Option<Image>,
}

impl Log {
    /// Records the losses `v` of the image evaluated at `step`, and keeps that image.
    /// Ok(false) when they are non-finite after finite ones (the run stops, keeping the last
    /// good image); an error when the very first loss is non-finite (nothing to keep).
    fn accept(&mut self, session: &dyn Engine, step: usize, v: LossValues) -> Result<bool> {
        if !v.total.is_finite() {
            if self.entries.is_empty() {
                bail!(NOT_FINITE_AT_START);
            }
            self.progress.finish();
            crate::say!("the loss became non-finite at step {step}; keeping the image of the last finite loss");
            return Ok(false);
        }
        self.last_good = Some(session.evaluated_image()?);
        let rate = step as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
        self.progress.log(step, &v, rate);
        self.entries.push(ReportEntry {
            step,
            content: v.content,
            style: v.style,
            tv: v.tv,
            total: v.total,
        });
        Ok(true)
    }
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
            None => crate::say!("step {step}/{}  {msg}  {rate:.2} steps/s", self.steps),
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
