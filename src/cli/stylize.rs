//! `impasto stylize`: inputs checked and loaded, the session run with progress and logging,
//! and the result written atomically, also on Ctrl-C or when the loss turns non-finite.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use rand::{Rng, SeedableRng};

use super::flags::{EngineChoice, FlagError, PreserveColors, StylizeArgs};
use super::optimise::{
    intermediate_path, resize_adam, save_step, write_image, Optimiser, Outcome, ReportEntry,
    ScaleResult,
};
use super::plan;
use crate::cpu::CpuSession;
use crate::gpu::Gpu;
use crate::io::image::{self as image_io, Original};
use crate::io::plot::Point;
use crate::io::same_file::{check_distinct, Named};
use crate::kernels::{Kernels, Tiling};
use crate::model::colour::match_histogram;
use crate::model::scales::{schedule, Scale};
use crate::model::vgg19::Arch;
use crate::model::AdamConfig;
use crate::model::Image;
use crate::model::LossConfig;
use crate::pipeline::session::{Session, Setup};
use crate::preview::Preview;
use crate::weights::{self, Weights};

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
    /// Each scale's longest side and steps, smallest first.
    scales: &'a [ScaleReport],
    steps_done: usize,
    setup_seconds: f64,
    optimise_seconds: f64,
    steps_per_second: f64,
    /// The most GPU memory held at once (wgpu's allocator report; null where the backend has none).
    peak_gpu_memory_bytes: Option<u64>,
    settings: serde_json::Value,
}

#[derive(serde::Serialize)]
struct ScaleReport {
    size: usize,
    width: usize,
    height: usize,
    steps: u64,
    steps_done: usize,
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

/// Where the first scale starts.
enum Init {
    Content,
    Noise(u64),
    Image(Original),
}

/// Everything a run reads, checked and loaded before any GPU work. The images are kept as
/// decoded and resized for each scale.
struct Inputs {
    arch: Arch,
    loss: LossConfig,
    weights: Weights,
    content: Original,
    styles: Vec<(Original, f64)>,
    init: Init,
}

/// The images of one scale: content, styles (colour-matched when asked) and the start.
struct ScaleImages {
    content: Image,
    styles: Vec<(Image, f64)>,
    init: Image,
}

impl Inputs {
    /// The images at `size`; `previous` (the last scale's result) upsampled as the start.
    fn at(&self, args: &StylizeArgs, size: usize, previous: Option<&Image>) -> ScaleImages {
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
fn upsample(img: &Image, (h, w): (usize, usize)) -> Image {
    if (img.h, img.w) == (h, w) {
        return img.clone();
    }
    let mut data = image_io::resize_planes(&img.data, (img.h, img.w), (h, w));
    data.iter_mut().for_each(|v| *v = v.clamp(0.0, 1.0));
    Image { h, w, data }
}

/// The dry session's plan at longest side `size` (see [`plan::plan`]).
fn plan_at(
    inputs: &Inputs, args: &StylizeArgs, adam: AdamConfig, engine: Option<(&Gpu, &Kernels)>,
    size: usize,
) -> Result<plan::Planned> {
    let images = inputs.at(args, size, None);
    let setup = Setup {
        arch: &inputs.arch,
        weights: &inputs.weights,
        loss: &inputs.loss,
        pooling: args.pooling,
        adam,
        content: &images.content,
        styles: &images.styles,
        init: &images.init,
        average: args.average,
    };
    plan::plan(engine, &setup)
}

/// The largest `--size` below the asked one whose plan fits (binary search; sizes too small
/// for the layers count as fitting, so the search stays monotone), or None.
fn largest_fitting(
    inputs: &Inputs, args: &StylizeArgs, adam: AdamConfig, engine: Option<(&Gpu, &Kernels)>,
) -> Option<usize> {
    let fits = |s: usize| match plan_at(inputs, args, adam, engine, s) {
        Ok(p) => p.fits(),
        Err(e) => format!("{e:#}").contains("too small"),
    };
    let (mut lo, mut hi) = (1, args.size);
    if !fits(lo) {
        return None;
    }
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if fits(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    // A size too small for the layers is no answer.
    plan_at(inputs, args, adam, engine, lo)
        .is_ok()
        .then_some(lo)
}

/// `--dry-run`: prints the plan (or why the largest scale cannot be held, with the largest
/// size that can), writes the report; exit status 0 when it fits, 1 when not.
fn dry_run(
    args: &StylizeArgs, inputs: &Inputs, planned: Result<plan::Planned>, what: &str,
    engine: Option<(&Gpu, &Kernels)>,
) -> Result<i32> {
    let adam = AdamConfig {
        lr: args.lr,
        beta1: args.beta1,
        beta2: args.beta2,
        eps: args.eps,
    };
    let (fits, json) = match &planned {
        Ok(p) => {
            plan::print(p, what);
            let json = serde_json::json!({
                "dry_run": true, "fits": p.fits(), "peak_bytes": p.plan.peak(),
                "peak_gpu_memory_bytes": p.allocator_peak, "available_bytes": p.available,
                "held_bytes": p.plan.held(), "setup_only_bytes": p.plan.setup_only,
                "plan": p.plan.kinds, "settings": settings_json(args, &inputs.weights),
            });
            (p.fits(), json)
        }
        Err(e) => {
            println!("memory plan: {what}: cannot be held: {e:#}");
            let json = serde_json::json!({
                "dry_run": true, "fits": false, "error": format!("{e:#}"),
                "settings": settings_json(args, &inputs.weights),
            });
            (false, json)
        }
    };
    let mut json = json;
    if !fits {
        let largest = largest_fitting(inputs, args, adam, engine);
        match largest {
            Some(s) => println!("  the largest --size that fits: {s}"),
            None => println!("  no --size fits"),
        }
        json["largest_fitting_size"] = serde_json::json!(largest);
    }
    if let Some(path) = &args.report {
        let text = serde_json::to_string_pretty(&json)?;
        crate::io::atomic::write_atomic(path, |f| Ok(f.write_all(text.as_bytes())?))?;
    }
    Ok(if fits { 0 } else { 1 })
}

/// The scales of this run (`--min-size`, `--size`, `--initial-steps`, `--steps`).
fn run_scales(args: &StylizeArgs) -> Vec<Scale> {
    schedule(
        args.min_size.unwrap_or(args.size),
        args.size,
        args.initial_steps.unwrap_or(args.steps),
        args.steps,
    )
}

/// Runs `impasto stylize`: inputs, then each scale (session, optimisation with progress),
/// then the outputs. Returns the process exit status ([`Outcome::exit_code`]).
pub fn run(args: &StylizeArgs, adapter: Option<&str>) -> Result<i32> {
    let t0 = Instant::now();
    // Listening first: a taken port is refused before any work.
    let preview = match &args.preview {
        Some(addr) => Some(Preview::start(addr).map_err(|e| FlagError(format!("{e:#}")))?),
        None => None,
    };
    let inputs = load_inputs(args)?;
    if let Some(p) = &preview {
        crate::say!("preview: {}", p.url);
    }
    let scales = run_scales(args);
    let adam = AdamConfig {
        lr: args.lr,
        beta1: args.beta1,
        beta2: args.beta2,
        eps: args.eps,
    };
    let (engine, gpu) = choose_engine(args.engine, adapter)?;
    let kernels = match &gpu {
        Some(g) => Some(Kernels::with_options(
            g,
            Tiling::for_adapter(&g.info),
            args.storage,
        )?),
        None => None,
    };
    // The output's size (the last scale's).
    let (fh, fw) = {
        let c = inputs.content.at(args.size);
        (c.h, c.w)
    };
    if let Some(p) = &preview {
        let (adapter, backend) = match &gpu {
            Some(g) => (g.info.name.clone(), format!("{:?}", g.info.backend)),
            None => (crate::cpu::describe(), "cpu".into()),
        };
        let planned: Vec<_> = scales
            .iter()
            .map(|s| serde_json::json!({ "size": s.size, "steps": s.steps }))
            .collect();
        p.set_head(serde_json::json!({
            "engine": engine, "adapter": adapter, "backend": backend, "width": fw, "height": fh,
            "scales": planned, "settings": settings_json(args, &inputs.weights),
        }));
    }
    // The memory plan of the largest scale, from a dry session: every buffer made, no kernel.
    let engine_parts = gpu.as_ref().zip(kernels.as_ref());
    let last = scales.last().expect("a scale").size;
    let planned = plan_at(&inputs, args, adam, engine_parts, last);
    let what = format!(
        "{fw}x{fh}, {} engine on {}{}",
        engine,
        gpu.as_ref()
            .map_or_else(crate::cpu::describe, |g| g.info.name.clone()),
        if gpu.is_some() {
            format!(", {:?} feature maps", args.storage)
        } else {
            String::new()
        }
    );
    if args.dry_run {
        return dry_run(args, &inputs, planned, &what, engine_parts);
    }
    match planned {
        Ok(p) if p.fits() => {}
        refused => {
            let why = match refused {
                Ok(p) => format!(
                    "its peak, {} MiB, is more than the {} MiB available",
                    p.plan.peak() >> 20,
                    p.available.unwrap_or(0) >> 20
                ),
                Err(e) => format!("{e:#}"),
            };
            let largest = largest_fitting(&inputs, args, adam, engine_parts);
            bail!(
                "this run would not fit ({what}): {why}; the largest --size that fits is {}",
                largest.map_or("none".into(), |s| s.to_string())
            );
        }
    }
    let mut opt = Optimiser::new(args, &scales, &inputs.content, preview.as_ref());
    let mut setup_seconds = None;
    let mut result: Option<ScaleResult> = None;
    let mut scale_reports = Vec::new();
    for (index, scale) in scales.iter().enumerate() {
        let images = inputs.at(args, scale.size, result.as_ref().map(|r| &r.image));
        let (h, w) = (images.content.h, images.content.w);
        let setup = Setup {
            arch: &inputs.arch,
            weights: &inputs.weights,
            loss: &inputs.loss,
            pooling: args.pooling,
            adam,
            content: &images.content,
            styles: &images.styles,
            init: &images.init,
            average: args.average,
        };
        let carried = result.as_ref().and_then(|r| {
            Some(resize_adam(
                r.adam.as_ref()?,
                (r.image.h, r.image.w),
                (h, w),
            ))
        });
        // The previous scale's session is gone before this one allocates.
        let r = match (&gpu, &kernels) {
            (Some(gpu), Some(kernels)) => {
                let mut session = Session::new(gpu, kernels, &setup)?;
                setup_seconds.get_or_insert(t0.elapsed().as_secs_f64());
                let r = opt.scale(index, Some(gpu), &mut session, carried.as_ref(), (h, w))?;
                gpu.check_errors()?;
                r
            }
            _ => {
                let mut session = CpuSession::new(&setup)?;
                setup_seconds.get_or_insert(t0.elapsed().as_secs_f64());
                opt.scale(index, None, &mut session, carried.as_ref(), (h, w))?
            }
        };
        scale_reports.push(ScaleReport {
            size: scale.size,
            width: w,
            height: h,
            steps: scale.steps,
            steps_done: r.steps,
        });
        let stop = r.outcome != Outcome::Completed;
        result = Some(r);
        if stop {
            break;
        }
    }
    let done = result.expect("at least one scale");
    let ran_on = match &gpu {
        Some(gpu) => RanOn {
            engine,
            adapter: gpu.info.name.clone(),
            backend: format!("{:?}", gpu.info.backend),
            peak_gpu_memory_bytes: gpu.memory().peak_allocated,
            setup_seconds: setup_seconds.unwrap_or_default(),
        },
        None => RanOn {
            engine,
            adapter: crate::cpu::describe(),
            backend: "cpu".into(),
            peak_gpu_memory_bytes: None,
            setup_seconds: setup_seconds.unwrap_or_default(),
        },
    };

    // A run stopped at a coarse scale still writes the size asked for.
    let image = upsample(&done.image, (fh, fw));
    write_image(args, &inputs.content, &image, &args.output)?;
    let seconds = opt.seconds();
    {
        let report = Report {
            steps: &opt.entries,
            outcome: done.outcome.name(),
            engine: ran_on.engine,
            adapter: ran_on.adapter.clone(),
            backend: ran_on.backend,
            width: fw,
            height: fh,
            scales: &scale_reports,
            steps_done: opt.steps_done(),
            setup_seconds: ran_on.setup_seconds,
            optimise_seconds: seconds,
            steps_per_second: opt.steps_done() as f64 / seconds.max(1e-9),
            peak_gpu_memory_bytes: ran_on.peak_gpu_memory_bytes,
            settings: settings_json(args, &inputs.weights),
        };
        let json = serde_json::to_string_pretty(&report)?;
        if let Some(path) = &args.report {
            crate::io::atomic::write_atomic(path, |f| Ok(f.write_all(json.as_bytes())?))?;
        }
        if let Some(p) = &preview {
            p.finish(json, done.outcome.name(), seconds, &image);
        }
    }
    if let Some(path) = &args.plot {
        let points: Vec<Point> = opt
            .entries
            .iter()
            .map(|e| Point {
                step: e.steps_done,
                content: e.content,
                style: e.style,
                tv: e.tv,
                total: e.total,
            })
            .collect();
        let title = format!("impasto: losses, {fw}x{fh}, {}", done.outcome.name());
        crate::io::plot::write(path, &points, &title)?;
    }
    crate::say!(
        "wrote {} ({fw}x{fh}, {} steps in {seconds:.1} s on {})",
        args.output.display(),
        opt.steps_done(),
        ran_on.adapter
    );
    if let (Some(p), true) = (&preview, args.preview_hold) {
        crate::say!("preview: serving the final state at {} until Ctrl-C", p.url);
        opt.wait_for_interrupt();
    }
    Ok(done.outcome.exit_code())
}

/// Checks the flags and output paths, then loads the weights and images.
fn load_inputs(args: &StylizeArgs) -> Result<Inputs> {
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

fn settings_json(a: &StylizeArgs, w: &Weights) -> serde_json::Value {
    serde_json::json!({
        "content": a.content, "style": a.style, "style_blend": a.style_blend,
        "weights": w.path, "input_convention": w.convention,
        "size": a.size, "style_scale": a.style_scale,
        "content_layers": a.layers.content_layers, "style_layers": a.layers.style_layers,
        "content_weight": a.content_weight, "style_weight": a.style_weight, "tv_weight": a.tv_weight,
        "steps": a.steps, "lr": a.lr, "beta1": a.beta1, "beta2": a.beta2, "eps": a.eps,
        "init": a.init, "seed": a.seed, "pooling": a.pooling, "preserve_colors": a.preserve_colors, "storage": a.storage,
        "min_size": a.min_size.unwrap_or(a.size), "initial_steps": a.initial_steps.unwrap_or(a.steps),
        "optimizer": a.optimizer, "plot": a.plot, "history": a.history, "average": a.average, "bit_depth": a.bit_depth,
    })
}
