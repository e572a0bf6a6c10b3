//! `impasto bench`: time a whole optimisation step and each kernel in it, on random weights
//! of VGG19's shapes (timings do not depend on the weights' values).

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::Result;
use rand::{Rng, SeedableRng};

use super::flags::BenchArgs;
use crate::gpu::Dispatch;
use crate::gpu::Gpu;
use crate::job::tuning::Tuned;
use crate::kernels::{precision, Kernels, Precision, Tiling, Variants, MIXED_TILINGS, TILINGS};
use crate::model::vgg19::Arch;
use crate::model::Image;
use crate::model::LossConfig;
use crate::pipeline::session::{Session, Setup};
use crate::weights::Weights;

#[derive(Clone)]
pub struct BenchConfig {
    /// Square image side in pixels.
    pub size: usize,
    pub content_layers: Vec<String>,
    pub style_layers: Vec<String>,
    /// Timed steps (after two warm-up steps).
    pub steps: usize,
    /// Tiling override; default: what `impasto tune` kept for the adapter, else its default.
    pub tiling: Option<crate::kernels::Tiling>,
    pub storage: crate::kernels::Storage,
    /// Mixed: the variants on cooperative matrices (checked against f32 first).
    pub precision: crate::kernels::Precision,
    /// `--tile`: the tiled evaluation's side.
    pub tile: Option<usize>,
    pub style_loss: crate::model::StyleLossKind,
}

/// Random weights with VGG19's shapes for every conv layer up to `deepest`; the He-style
/// scale keeps activations in a realistic range through the depth.
pub fn random_weights(arch: &Arch, deepest: usize, seed: u64) -> Weights {
    let he = |c: &crate::model::vgg19::ConvSpec| (2.0 / (9 * c.cin) as f32).sqrt();
    Weights::random(arch, deepest, seed, he, 0.0..0.1)
}

/// One kernel launch of the step: what it is and how long it took.
pub use crate::model::engine::KernelTime as Row;

pub struct StepTiming {
    pub ms_per_step: f64,
    pub rows: Vec<Row>,
    pub gpu_timestamps: bool,
    pub memory: crate::gpu::MemoryUse,
    pub tiling: crate::kernels::Tiling,
    pub checks: crate::kernels::Checks,
}

/// Image sides for the criterion benchmarks (`benches/`): IMPASTO_BENCH_SIZES, a comma-separated
/// list, else 256 and 512.
pub fn sizes_from_env() -> Vec<usize> {
    std::env::var("IMPASTO_BENCH_SIZES")
        .unwrap_or_else(|_| "256,512".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

/// The kernels `cfg` asks for: its tiling, else the tuned variants or the adapter's default
/// for its precision (as a GPU run takes them), and its storage. Variants on cooperative
/// matrices are checked against f32 first (the figures said); refused, they are an error:
/// a benchmark of other kernels than asked would mislead.
pub fn kernels(gpu: &Gpu, cfg: &BenchConfig) -> Result<Kernels> {
    let variants = match cfg.tiling {
        Some(t) => crate::kernels::Variants::uniform(t),
        None => crate::job::tuning::variants(gpu, cfg.storage, cfg.precision),
    };
    match precision::admit(gpu, variants) {
        Ok(None) => {}
        Ok(Some(check)) => println!("mixed precision checked against f32: {}", check.describe()),
        Err(why) => anyhow::bail!("{} refused: {why}", variants.conv),
    }
    Kernels::with_variants(
        gpu,
        variants,
        cfg.storage,
        crate::kernels::Checks::from_env(),
    )
}

/// A session on random images and random weights of VGG19's shapes, as `cfg` describes.
/// The benchmark's problem: random weights of VGG19's shapes, random content and style images
/// of `cfg.size`, the default loss weights.
struct Problem {
    arch: Arch,
    loss: LossConfig,
    weights: Weights,
    content: Image,
    styles: [(Image, f64); 1],
    tile: Option<usize>,
}

impl Problem {
    fn setup(&self) -> Setup<'_> {
        Setup {
            tile: self.tile,
            ..Setup::plain(
                (&self.arch, &self.weights, &self.loss),
                &self.content,
                &self.styles,
            )
        }
    }
}

fn problem(cfg: &BenchConfig) -> Result<Problem> {
    let arch = Arch::vgg19();
    let idx = |v: &[String]| {
        v.iter()
            .map(|n| arch.layer_index(n))
            .collect::<Result<Vec<_>>>()
    };
    let loss = LossConfig {
        content_layers: idx(&cfg.content_layers)?,
        style_layers: idx(&cfg.style_layers)?,
        content_weight: crate::model::loss::DEFAULT_CONTENT_WEIGHT,
        style_weight: crate::model::loss::DEFAULT_STYLE_WEIGHT,
        tv_weight: crate::model::loss::DEFAULT_TV_WEIGHT,
        style_loss: cfg.style_loss,
        ..LossConfig::default()
    };
    let weights = random_weights(&arch, loss.deepest(), 1);
    let mut r = rand::rngs::StdRng::seed_from_u64(2);
    let mut image = || Image {
        h: cfg.size,
        w: cfg.size,
        data: (0..3 * cfg.size * cfg.size)
            .map(|_| r.random::<f32>())
            .collect(),
    };
    let (content, style) = (image(), image());
    Ok(Problem {
        arch,
        loss,
        weights,
        content,
        styles: [(style, 1.0)],
        tile: cfg.tile,
    })
}

/// A session on random images and random weights of VGG19's shapes, as `cfg` describes.
pub fn session<'g>(gpu: &'g Gpu, kernels: &Kernels, cfg: &BenchConfig) -> Result<Session<'g>> {
    let p = problem(cfg)?;
    Session::new(gpu, kernels, &p.setup())
}

/// The same problem on the CPU engine: milliseconds per whole step (after two warm-up
/// steps), then one more step with each kernel timed.
pub fn cpu_step_timing(cfg: &BenchConfig) -> Result<(f64, Vec<Row>)> {
    let p = problem(cfg)?;
    let mut s = crate::cpu::CpuSession::new(&p.setup())?;
    use crate::model::EngineSession;
    for _ in 0..2 {
        s.step(false)?;
    }
    let t = Instant::now();
    for _ in 0..cfg.steps {
        s.step(false)?;
    }
    let ms = t.elapsed().as_secs_f64() * 1e3 / cfg.steps.max(1) as f64;
    Ok((ms, s.profiled_step()))
}

pub fn run(gpu: &Gpu, cfg: &BenchConfig) -> Result<StepTiming> {
    let kernels = kernels(gpu, cfg)?;
    let mut session = session(gpu, &kernels, cfg)?;
    for _ in 0..2 {
        session.step(false)?;
    }
    gpu.wait()?;
    let t = Instant::now();
    for _ in 0..cfg.steps {
        session.step(false)?;
    }
    gpu.wait()?;
    let ms_per_step = t.elapsed().as_secs_f64() * 1e3 / cfg.steps.max(1) as f64;

    let dispatches = session.step_dispatches(false);
    let gpu_timestamps = gpu.features.contains(wgpu::Features::TIMESTAMP_QUERY);
    let times = if gpu_timestamps {
        time_with_timestamps(gpu, &dispatches)?
    } else {
        time_with_wall_clock(gpu, &dispatches)?
    };
    let rows = dispatches
        .iter()
        .zip(times)
        .map(|(d, ms)| Row {
            name: d.name,
            detail: d.detail.clone(),
            ms,
            flops: d.flops,
            bytes: d.bytes,
        })
        .collect();
    Ok(StepTiming {
        ms_per_step,
        rows,
        gpu_timestamps,
        memory: gpu.memory(),
        tiling: kernels.tiling,
        checks: kernels.checks,
    })
}

/// Each dispatch in its own pass, bracketed by GPU timestamps; milliseconds per dispatch. A
/// query set holds at most `wgpu::QUERY_SET_MAX_QUERIES` timestamps, so a long step (a tiled
/// one) is timed in consecutive batches, each its own submit.
fn time_with_timestamps(gpu: &Gpu, dispatches: &[&Dispatch]) -> Result<Vec<f64>> {
    let per_batch = (wgpu::QUERY_SET_MAX_QUERIES / 2) as usize;
    let mut times = Vec::with_capacity(dispatches.len());
    for batch in dispatches.chunks(per_batch) {
        times.extend(time_batch(gpu, batch)?);
    }
    Ok(times)
}

/// [`time_with_timestamps`] for at most `QUERY_SET_MAX_QUERIES / 2` dispatches.
fn time_batch(gpu: &Gpu, dispatches: &[&Dispatch]) -> Result<Vec<f64>> {
    let n = dispatches.len() as u32 * 2;
    let queries = gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
        label: Some("bench timestamps"),
        ty: wgpu::QueryType::Timestamp,
        count: n,
    });
    let resolved = gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("bench timestamps"),
        size: n as u64 * 8,
        usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let mut enc = gpu.device.create_command_encoder(&Default::default());
    for (i, d) in dispatches.iter().enumerate() {
        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some(d.name),
            timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                query_set: &queries,
                beginning_of_pass_write_index: Some(2 * i as u32),
                end_of_pass_write_index: Some(2 * i as u32 + 1),
            }),
        });
        d.record(&mut pass);
    }
    enc.resolve_query_set(&queries, 0..n, &resolved, 0);
    gpu.queue.submit([enc.finish()]);
    // Read the u64 ticks through the f32 readback path: 2 f32s per tick.
    let raw = gpu.read(&resolved, n as usize * 2)?;
    let ticks: &[u64] = bytemuck::cast_slice(&raw);
    let period_ns = gpu.queue.get_timestamp_period() as f64;
    Ok(ticks
        .chunks_exact(2)
        .map(|t| t[1].saturating_sub(t[0]) as f64 * period_ns / 1e6)
        .collect())
}

/// Fallback without timestamp queries: submit and wait for each dispatch alone.
fn time_with_wall_clock(gpu: &Gpu, dispatches: &[&Dispatch]) -> Result<Vec<f64>> {
    dispatches
        .iter()
        .map(|d| {
            let t = Instant::now();
            crate::gpu::submit(gpu, &[], &[d]);
            gpu.wait()?;
            Ok(t.elapsed().as_secs_f64() * 1e3)
        })
        .collect()
}

/// The per-kernel table, either engine's.
fn print_rows(rows: &[Row]) {
    let total: f64 = rows.iter().map(|r| r.ms).sum();
    println!(
        "{:<26} {:<22} {:>10} {:>10} {:>9} {:>8} {:>7}",
        "kernel", "shape", "ms", "GFLOP", "GFLOP/s", "GB/s", "share"
    );
    // GB/s counts the bytes a kernel must move at the least (see gpu::Dispatch::bytes).
    for r in rows {
        let ms = r.ms.max(1e-9);
        println!(
            "{:<26} {:<22} {:>10.3} {:>10.3} {:>9.1} {:>8.2} {:>6.1}%",
            r.name,
            r.detail,
            r.ms,
            r.flops / 1e9,
            r.flops / 1e6 / ms,
            r.bytes / 1e6 / ms,
            100.0 * r.ms / total.max(1e-12)
        );
    }
    let flops: f64 = rows.iter().map(|r| r.flops).sum();
    println!(
        "sum of kernels: {total:.2} ms, {:.2} GFLOP, {:.1} GFLOP/s",
        flops / 1e9,
        flops / 1e6 / total.max(1e-9)
    );
}

/// The table's first words: the problem benchmarked.
fn problem_line(cfg: &BenchConfig) -> String {
    let tiles = cfg
        .tile
        .map_or(String::new(), |t| format!(", in tiles of {t} px"));
    let loss = match cfg.style_loss {
        crate::model::StyleLossKind::Gram => "",
        crate::model::StyleLossKind::W2 => " (W2 loss)",
    };
    format!(
        "impasto bench: {}x{} px, content {}, style {}{loss}{tiles}",
        cfg.size,
        cfg.size,
        cfg.content_layers.join(","),
        cfg.style_layers.join(",")
    )
}

pub fn print_table(cfg: &BenchConfig, gpu: &Gpu, t: &StepTiming) {
    println!(
        "{}, tiling {}, {:?} feature maps, {:?} shaders, on {} ({:?})",
        problem_line(cfg),
        t.tiling,
        cfg.storage,
        t.checks,
        gpu.info.name,
        gpu.info.backend
    );
    println!(
        "per-kernel times from {}",
        if t.gpu_timestamps {
            "GPU timestamp queries"
        } else {
            "wall clock, one submit per kernel"
        }
    );
    print_rows(&t.rows);
    // (W2 pauses the step after the forward for the host's square roots: two submits.)
    let submits = match cfg.style_loss {
        crate::model::StyleLossKind::Gram => "one submit",
        crate::model::StyleLossKind::W2 => "two submits, the W2 host step between",
    };
    println!(
        "full step ({submits}, {} timed steps): {:.2} ms/step, {:.2} steps/s",
        cfg.steps,
        t.ms_per_step,
        1e3 / t.ms_per_step
    );
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    let m = &t.memory;
    match (m.peak_allocated, m.peak_reserved) {
        (Some(a), Some(r)) => println!(
            "peak GPU memory: {:.1} MiB allocated, {:.1} MiB reserved (wgpu's allocator); {:.1} MiB of storage buffers created in all",
            mib(a),
            mib(r),
            mib(m.created)
        ),
        _ => println!(
            "GPU memory: {:.1} MiB of storage buffers created in all (no allocator report on this backend)",
            mib(m.created)
        ),
    }
}

/// Runs `impasto bench` and prints its table.
pub fn command(args: &BenchArgs, adapter: Option<&str>) -> Result<()> {
    let cfg = BenchConfig {
        size: args.size,
        content_layers: args.layers.content_layers.clone(),
        style_layers: args.layers.style_layers.clone(),
        steps: args.steps,
        tiling: args.tiling,
        storage: args.storage,
        precision: args.precision,
        tile: args.tile,
        style_loss: args.style_loss,
    };
    if args.engine == crate::job::EngineChoice::Cpu {
        let before = resident_kib("VmRSS");
        let (ms, rows) = cpu_step_timing(&cfg)?;
        let peak = resident_kib("VmHWM");
        println!("{}, on the {}", problem_line(&cfg), crate::cpu::describe());
        println!("per-kernel times from the wall clock, one extra step timed kernel by kernel");
        print_rows(&rows);
        println!(
            "full step ({} timed steps): {ms:.2} ms/step, {:.2} steps/s",
            cfg.steps,
            1e3 / ms
        );
        if let (Some(b), Some(p)) = (before, peak) {
            // Measured as compare_pytorch.py measures PyTorch on the CPU.
            let mib = p.saturating_sub(b) as f64 / 1024.0;
            println!("peak memory: {mib:.1} MiB (resident set growth over setup and steps)");
        }
        return Ok(());
    }
    let gpu = Gpu::new(adapter)?;
    if args.variants {
        measure(&gpu, &cfg)?;
        return Ok(());
    }
    let t = run(&gpu, &cfg)?;
    print_table(&cfg, &gpu, &t);
    Ok(())
}

/// A `/proc/self/status` figure in KiB (Linux; None elsewhere).
fn resident_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The family a kernel launch belongs to, if it has variants.
fn family(kernel: &str) -> Option<&'static str> {
    if kernel.starts_with("conv") {
        Some("conv")
    } else if kernel.starts_with("gram") || kernel == "style_grad" {
        Some("gram")
    } else {
        None
    }
}

/// The variant of the least time in `ms` (variant → ms).
fn fastest(ms: &BTreeMap<String, f64>) -> Tiling {
    let (name, _) = (ms.iter())
        .min_by(|a, b| a.1.total_cmp(b.1))
        .expect("at least one variant timed");
    name.parse().expect("a variant's own name")
}

/// Why the tuner does not time `t` (a variant on cooperative matrices) at `precision`: not
/// offered by the adapter, refused by the check against f32, or f32 asked for.
fn mixed_candidate(gpu: &Gpu, precision: Precision, t: Tiling) -> Option<String> {
    match (precision::not_offered(gpu, t), precision) {
        (Some(why), _) => Some(format!("not offered: {why}")),
        (None, Precision::F32) => Some("mixed precision: timed with --precision mixed".into()),
        (None, Precision::Mixed) => precision::admit(gpu, Variants::uniform(t))
            .err()
            .map(|why| format!("refused: {why}")),
    }
}

/// Times a step of `cfg` (its tiling aside) in every variant, printing a row each, and
/// returns the fastest of each family with every family's time by variant.
pub fn measure(gpu: &Gpu, cfg: &BenchConfig) -> Result<Tuned> {
    let i = &gpu.info;
    println!(
        "timing every kernel variant on {} ({:?}, {} {}), {size}x{size} px, {:?} maps, {} timed steps a variant",
        i.name,
        i.backend,
        i.driver,
        i.driver_info,
        cfg.storage,
        cfg.steps,
        size = cfg.size,
    );
    println!(
        "{:<14} {:>12} {:>12} {:>12}",
        "variant", "conv ms", "gram ms", "step ms"
    );
    let mut ms: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    let (mixed, notes): (Vec<_>, Vec<_>) = MIXED_TILINGS
        .into_iter()
        .map(|t| (t, mixed_candidate(gpu, cfg.precision, t)))
        .partition(|(_, why)| why.is_none());
    for tiling in TILINGS.into_iter().chain(mixed.into_iter().map(|(t, _)| t)) {
        let t = run(
            gpu,
            &BenchConfig {
                tiling: Some(tiling),
                ..cfg.clone()
            },
        )?;
        let mut by_family: BTreeMap<&str, f64> = BTreeMap::new();
        for row in &t.rows {
            if let Some(f) = family(row.name) {
                *by_family.entry(f).or_default() += row.ms;
            }
        }
        let (conv, gram) = (by_family["conv"], by_family["gram"]);
        // The Gram kernels have one variant of each kind (Tiling::gram): timed once each.
        let own_gram = tiling.gram() == tiling;
        let shown = match own_gram {
            true => format!("{gram:>12.2}"),
            false => format!("{:>12}", format!("(as {})", tiling.gram())),
        };
        println!(
            "{:<14} {conv:>12.2} {shown} {:>12.2}",
            tiling.to_string(),
            t.ms_per_step
        );
        let mut keep = |f: &str, v: f64| {
            ms.entry(f.into())
                .or_default()
                .insert(tiling.to_string(), v)
        };
        keep("conv", conv);
        if own_gram {
            keep("gram", gram);
        }
    }
    for (t, why) in notes {
        println!("{:<14} {}", t.to_string(), why.unwrap_or_default());
    }
    let variants = Variants {
        conv: fastest(&ms["conv"]),
        gram: fastest(&ms["gram"]),
    };
    let measured_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Ok(Tuned {
        variants,
        size: cfg.size,
        ms,
        measured_at,
    })
}
