//! `impasto shaders --out DIR` (a developer command): the WGSL of every pipeline of every
//! variant exactly as the host hands it to wgpu, after its substitutions (the tiling's
//! constants, each entry point's f16 aliases), one file each, FAMILY.VARIANT.ENTRY.wgsl. The
//! host's own builder records them while it builds every variant on the adapter, so what is
//! written cannot drift from what runs (tests/shaders.rs translates each for Vulkan, Metal
//! and DX12).

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::{Context, Result};

use super::flags::ShadersArgs;
use crate::gpu::Gpu;
use crate::kernels::setup::record_builds;
use crate::kernels::{conv, gram, precision, shaders, Checks, Kernels, Storage, TILINGS};

/// Each family's sources as the builder receives them: conv and Gram for every tiling (the
/// cooperative ones as built for `gpu`), then every other shader file (named without `.wgsl`).
fn families(gpu: &Gpu) -> Vec<(String, String)> {
    let tiled = TILINGS.iter().flat_map(|&t| {
        [
            ("conv".to_string(), conv::source(t)),
            ("gram".to_string(), gram::source(t)),
        ]
    });
    let coop = crate::kernels::MIXED_TILINGS.into_iter().flat_map(|t| {
        let invocations = crate::kernels::setup::coop_invocations(&gpu.info, t);
        let crate::kernels::Tiling::Cooperative { m, .. } = t else {
            unreachable!("MIXED_TILINGS are cooperative")
        };
        [
            ("conv".to_string(), conv::coop_source(t, invocations)),
            ("gram".to_string(), gram::coop_source(m)),
        ]
    });
    let tiled = tiled.chain(coop);
    let files = (shaders().into_iter()).map(|(n, s)| (n.trim_end_matches(".wgsl").to_string(), s));
    tiled.chain(files).collect()
}

pub fn run(args: &ShadersArgs, adapter: Option<&str>) -> Result<()> {
    let gpu = Gpu::new(adapter)?;
    let mut storages = vec![Storage::F32];
    match gpu.features.contains(wgpu::Features::SHADER_F16) {
        true => storages.push(Storage::F16),
        false => crate::say!(
            "{} offers no shader-f16: the f16 storage variants are left out",
            gpu.info.name
        ),
    }
    let out = &args.out;
    std::fs::create_dir_all(out).with_context(|| format!("--out {}", out.display()))?;
    let families = families(&gpu);
    // The variants on cooperative matrices the adapter offers (mixed precision).
    let mut tilings = TILINGS.to_vec();
    for t in crate::kernels::MIXED_TILINGS {
        match precision::not_offered(&gpu, t) {
            None => tilings.push(t),
            Some(why) => crate::say!("{t} left out: {why}"),
        }
    }
    // Each file written, by name, with its source.
    let mut sources: BTreeMap<String, String> = BTreeMap::new();
    for &storage in &storages {
        for &tiling in &tilings {
            let (kernels, built) =
                record_builds(|| Kernels::with_checks(&gpu, tiling, storage, Checks::Unchecked));
            kernels.with_context(|| format!("building the {tiling} {storage:?} kernels"))?;
            for b in built {
                let family = (families.iter().find(|(_, s)| *s == b.family_source))
                    .map_or("unknown", |(n, _)| n.as_str());
                let storage = format!("{:?}", b.storage).to_lowercase();
                // Only the conv and Gram families have tilings; the others one variant a storage.
                let variant = match family {
                    "conv" | "gram" => format!("{}-{storage}", b.tiling),
                    _ => storage,
                };
                let mut name = format!("{family}.{variant}.{}.wgsl", b.entry);
                // An entry point built twice in one variant, with other f16 aliases (a loss
                // over f16 feature maps, and the same over f32 images): the second is named
                // by its aliases.
                if sources.get(&name).is_some_and(|s| *s != b.source) {
                    let aliases = match b.f16_aliases.is_empty() {
                        true => "f32".to_string(),
                        false => b.f16_aliases.join("-"),
                    };
                    name = format!("{family}.{variant}.{}.{aliases}.wgsl", b.entry);
                }
                if !sources.contains_key(&name) {
                    sources.insert(name.clone(), b.source.clone());
                    let path = out.join(&name);
                    crate::io::atomic::write_atomic(&path, |f| {
                        Ok(f.write_all(b.source.as_bytes())?)
                    })
                    .with_context(|| format!("writing {}", path.display()))?;
                }
            }
        }
    }
    let on = &gpu.info.name;
    crate::say!(
        "wrote {} shaders to {} (built on {on})",
        sources.len(),
        out.display()
    );
    Ok(())
}
