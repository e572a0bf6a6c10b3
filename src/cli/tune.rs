//! `impasto tune` and `--tiling`: each variant's step on the adapter (`impasto bench`'s
//! timing), its convolutions and its Gram kernels summed apart; the fastest of each family goes
//! to the tuning cache (`crate::job::tuning`), which GPU runs on this adapter then use.

use anyhow::Result;

use super::bench::{measure, BenchConfig};
use super::flags::{JobOptions, TilingChoice, TuneArgs};
use crate::gpu::Gpu;
use crate::job::tuning;
use crate::job::Engine;
use crate::kernels::{Precision, Variants};
use crate::options::FlagError;

/// Measures and keeps the fastest variants of `gpu` for `cfg.storage` and `cfg.precision`;
/// says what it chose.
fn tune_and_keep(gpu: &Gpu, cfg: &BenchConfig) -> Result<Variants> {
    let tuned = measure(gpu, cfg)?;
    let path = tuning::store(gpu, (cfg.storage, cfg.precision), &tuned)?;
    let v = tuned.variants;
    println!(
        "chosen: conv {}, gram {}; GPU runs on this adapter use them (kept in {})",
        v.conv,
        v.gram,
        path.display()
    );
    Ok(v)
}

pub fn run(args: &TuneArgs, adapter: Option<&str>) -> Result<()> {
    let gpu = Gpu::new(adapter)?;
    let cfg = BenchConfig {
        size: args.size,
        content_layers: args.layers.content_layers.clone(),
        style_layers: args.layers.style_layers.clone(),
        steps: args.steps,
        tiling: None,
        storage: args.storage,
        precision: args.precision,
        tile: None,
        style_loss: crate::model::StyleLossKind::Gram,
    };
    tune_and_keep(&gpu, &cfg)?;
    Ok(())
}

/// `--tiling VARIANT` against `--precision`: a variant on cooperative matrices computes in
/// mixed precision, the others in f32.
fn check_tiling(choice: Option<TilingChoice>, precision: Precision) -> Result<(), FlagError> {
    let Some(TilingChoice::Fixed(t)) = choice else {
        return Ok(());
    };
    match (t.is_mixed(), precision) {
        (true, Precision::F32) => Err(FlagError(format!(
            "--tiling {t} computes in mixed precision (cooperative matrices): add --precision mixed"
        ))),
        (false, Precision::Mixed) => Err(FlagError(format!(
            "--tiling {t} computes in f32: with --precision mixed use a coop variant or auto"
        ))),
        _ => Ok(()),
    }
}

/// The engine the job options ask for, its GPU kernels as `--tiling` and `--precision` say: a
/// variant for every family, or (auto) the tuned ones, tuning first at the run's size and
/// layers when the adapter has no entry yet; without `--tiling` the engine's own choice (tuned,
/// else default) in f32, or in mixed precision the tuned or default mixed variants (which
/// the engine checks against f32 first: `Engine::use_variants`).
pub fn engine(o: &JobOptions, adapter: Option<&str>) -> Result<(Engine, String)> {
    check_tiling(o.tiling, o.precision)?;
    let (mut engine, why) = Engine::choose(o.engine, adapter, o.storage)?;
    let Some((gpu, kernels)) = engine.gpu_parts() else {
        if o.tiling.is_some() || o.precision == Precision::Mixed {
            crate::say!("--tiling, --precision: the CPU engine computes in f32 and has no kernel variants; ignored");
        }
        return Ok((engine, why));
    };
    let choice = match (o.tiling, o.precision) {
        (None, Precision::F32) => return Ok((engine, why)),
        (None, Precision::Mixed) => None,
        (Some(c), _) => Some(c),
    };
    let variants = match choice {
        None => tuning::variants(gpu, kernels.storage, o.precision),
        Some(TilingChoice::Fixed(t)) => Variants::uniform(t),
        Some(TilingChoice::Auto) => match tuning::cached(&gpu.info, kernels.storage, o.precision) {
            Some(t) => t.variants,
            None => {
                crate::say!(
                    "--tiling auto: no tuning kept for {}; timing each variant once (impasto tune)",
                    gpu.info.name
                );
                let cfg = BenchConfig {
                    size: o.size,
                    content_layers: o.layers.content_layers.clone(),
                    style_layers: o.layers.style_layers.clone(),
                    steps: 2,
                    tiling: None,
                    storage: kernels.storage,
                    precision: o.precision,
                    tile: None,
                    style_loss: crate::model::StyleLossKind::Gram,
                };
                tune_and_keep(gpu, &cfg)?
            }
        },
    };
    engine.use_variants(variants)?;
    if o.precision == Precision::Mixed && variants.precision() == Precision::F32 {
        let adapter = engine.adapter();
        engine.note_precision(format!(
            "the variants tuned for {adapter} compute in f32 (faster there than its cooperative ones)"
        ));
    }
    Ok((engine, why))
}
