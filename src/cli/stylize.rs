//! `impasto stylize`: the inputs (`inputs.rs`), the memory plan checked, each scale run
//! through the loop (`optimise.rs`), then the image, report and plot written.

use std::io::Write;
use std::time::Instant;

use anyhow::{bail, Result};

use super::flags::{EngineChoice, FlagError, StylizeArgs};
use super::inputs::{load_inputs, run_scales, upsample, Inputs};
use super::optimise::{resize_adam, write_image, Optimiser, Outcome, ReportEntry, ScaleResult};
use super::plan;
use crate::cpu::CpuSession;
use crate::gpu::Gpu;
use crate::io::plot::Point;
use crate::kernels::{Kernels, Tiling};
use crate::model::AdamConfig;
use crate::pipeline::session::Session;
use crate::preview::Preview;
use crate::weights::Weights;

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
    /// Adam steps skipped because their 16-bit gradient overflowed (the scale halved each time).
    skipped_steps: usize,
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

/// The dry session's plan at longest side `size` (see [`plan::plan`]).
fn plan_at(
    inputs: &Inputs, args: &StylizeArgs, adam: AdamConfig, engine: Option<(&Gpu, &Kernels)>,
    size: usize,
) -> Result<plan::Planned> {
    let images = inputs.at(args, size, None);
    let setup = inputs.setup(&images, args, adam);
    let mut planned = plan::plan(engine, &setup)?;
    if let Some(max) = args.max_memory {
        planned.available = Some(planned.available.map_or(max, |a| a.min(max)));
    }
    Ok(planned)
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
    args: &StylizeArgs, inputs: &Inputs, adam: AdamConfig, planned: Result<plan::Planned>,
    what: &str, engine: Option<(&Gpu, &Kernels)>,
) -> Result<i32> {
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
    // The smallest scale must still be large enough for the layers.
    if let (Some(first), true) = (scales.first(), scales.len() > 1) {
        let images = inputs.at(args, first.size, None);
        crate::model::vgg19::check_sizes(
            &inputs.arch,
            &inputs.loss,
            args.pooling,
            &images.content,
            &images.styles,
        )
        .map_err(|e| {
            FlagError(format!(
                "--min-size {}: the first scale, {} px, is too small ({e:#})",
                args.min_size.unwrap_or(args.size),
                first.size
            ))
        })?;
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
        return dry_run(args, &inputs, adam, planned, &what, engine_parts);
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
        let setup = inputs.setup(&images, args, adam);
        let carried = result.as_ref().and_then(|r| {
            Some(resize_adam(
                r.adam.as_ref()?,
                (r.image.h, r.image.w),
                (h, w),
            ))
        });
        // The previous scale's session is gone before this one allocates.
        let (r, skipped_steps) = match (&gpu, &kernels) {
            (Some(gpu), Some(kernels)) => {
                let mut session = Session::new(gpu, kernels, &setup)?;
                setup_seconds.get_or_insert(t0.elapsed().as_secs_f64());
                let r = opt.scale(index, Some(gpu), &mut session, carried.as_ref(), (h, w))?;
                gpu.check_errors()?;
                (r, session.grad_scale()?.1)
            }
            _ => {
                let mut session = CpuSession::new(&setup)?;
                setup_seconds.get_or_insert(t0.elapsed().as_secs_f64());
                let r = opt.scale(index, None, &mut session, carried.as_ref(), (h, w))?;
                (r, 0)
            }
        };
        if skipped_steps > 0 {
            crate::say!(
                "{skipped_steps} steps at {w}x{h} skipped: their 16-bit gradient overflowed (the gradient scale was halved each time)"
            );
        }
        scale_reports.push(ScaleReport {
            size: scale.size,
            width: w,
            height: h,
            steps: scale.steps,
            steps_done: r.steps,
            skipped_steps,
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
