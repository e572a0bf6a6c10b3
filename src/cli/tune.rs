//! `impasto tune` and `--tiling`: each variant's step on the adapter (`impasto bench`'s
//! timing), its convolutions and its Gram kernels summed apart; the fastest of each family goes
//! to the tuning cache (`crate::job::tuning`), which GPU runs on this adapter then use.

use anyhow::Result;

use super::bench::{measure, BenchConfig};
use super::flags::{JobOptions, TilingChoice, TuneArgs};
use crate::gpu::Gpu;
use crate::job::tuning;
use crate::job::Engine;
use crate::kernels::Variants;

/// Measures and keeps the fastest variants of `gpu` for `cfg.storage`; says what it chose.
fn tune_and_keep(gpu: &Gpu, cfg: &BenchConfig) -> Result<Variants> {
    let tuned = measure(gpu, cfg)?;
    let path = tuning::store(&gpu.info, cfg.storage, &tuned)?;
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
        tile: None,
        style_loss: crate::model::StyleLossKind::Gram,
    };
    tune_and_keep(&gpu, &cfg)?;
    Ok(())
}

/// The engine the job options ask for, its GPU kernels as `--tiling` says: a variant for
/// every family, or (auto) the tuned ones, tuning first at the run's size and layers when the
/// adapter has no entry yet; without the flag the engine's own choice (tuned, else default).
pub fn engine(o: &JobOptions, adapter: Option<&str>) -> Result<(Engine, String)> {
    let (mut engine, why) = Engine::choose(o.engine, adapter, o.storage)?;
    let Some(choice) = o.tiling else {
        return Ok((engine, why));
    };
    let Some((gpu, kernels)) = engine.gpu_parts() else {
        crate::say!("--tiling: the CPU engine has no kernel variants; ignored");
        return Ok((engine, why));
    };
    let variants = match choice {
        TilingChoice::Fixed(t) => Variants::uniform(t),
        TilingChoice::Auto => match tuning::cached(&gpu.info, kernels.storage) {
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
                    tile: None,
                    style_loss: crate::model::StyleLossKind::Gram,
                };
                tune_and_keep(gpu, &cfg)?
            }
        },
    };
    engine.use_variants(variants)?;
    Ok((engine, why))
}
