//! `impasto tune`: each tiling's step on the adapter (`impasto bench`'s timing), its
//! convolutions and its Gram kernels summed apart; the fastest of each family goes to the
//! tuning cache (`crate::job::tuning`), which GPU runs on this adapter then use.

use std::collections::BTreeMap;

use anyhow::Result;

use super::bench::{self, BenchConfig};
use super::flags::TuneArgs;
use crate::gpu::Gpu;
use crate::job::tuning::{self, Tuned};
use crate::kernels::{Tiling, Variants, TILINGS};

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

pub fn run(args: &TuneArgs, adapter: Option<&str>) -> Result<()> {
    let gpu = Gpu::new(adapter)?;
    let i = &gpu.info;
    println!(
        "tuning on {} ({:?}, {} {}), {size}x{size} px, {:?} maps, {} timed steps a variant",
        i.name,
        i.backend,
        i.driver,
        i.driver_info,
        args.storage,
        args.steps,
        size = args.size,
    );
    println!(
        "{:<8} {:>12} {:>12} {:>12}",
        "variant", "conv ms", "gram ms", "step ms"
    );
    let mut ms: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    for tiling in TILINGS {
        let cfg = BenchConfig {
            size: args.size,
            content_layers: args.layers.content_layers.clone(),
            style_layers: args.layers.style_layers.clone(),
            steps: args.steps,
            tiling: Some(tiling),
            storage: args.storage,
        };
        let t = bench::run(&gpu, &cfg)?;
        let mut by_family: BTreeMap<&str, f64> = BTreeMap::new();
        for row in &t.rows {
            if let Some(f) = family(row.name) {
                *by_family.entry(f).or_default() += row.ms;
            }
        }
        let (conv, gram) = (by_family["conv"], by_family["gram"]);
        // The Gram kernels have one register-blocked variant whatever the conv's block.
        let gram_variant = matches!(tiling, Tiling::Registers(8) | Tiling::Workgroup);
        let shown = match gram_variant {
            true => format!("{gram:>12.2}"),
            false => format!("{:>12}", "(as regs8)"),
        };
        println!(
            "{:<8} {conv:>12.2} {shown} {:>12.2}",
            tiling.to_string(),
            t.ms_per_step
        );
        ms.entry("conv".into())
            .or_default()
            .insert(tiling.to_string(), conv);
        if gram_variant {
            ms.entry("gram".into())
                .or_default()
                .insert(tiling.to_string(), gram);
        }
    }
    let variants = Variants {
        conv: fastest(&ms["conv"]),
        gram: fastest(&ms["gram"]),
    };
    let measured_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let tuned = Tuned {
        variants,
        size: args.size,
        ms,
        measured_at,
    };
    let path = tuning::store(&gpu.info, args.storage, &tuned)?;
    println!(
        "chosen: conv {}, gram {}; GPU runs on this adapter use them (kept in {})",
        variants.conv,
        variants.gram,
        path.display()
    );
    Ok(())
}
