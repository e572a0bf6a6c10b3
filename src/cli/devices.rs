//! `impasto devices`.

use anyhow::Result;

/// `impasto devices`: the CPU engine and the adapters impasto can use, best first, with the
/// limits that matter (the library's `job::devices`).
pub fn run() -> Result<()> {
    let devices = crate::job::devices();
    let mib = |b: Option<u64>| b.unwrap_or_default() >> 20;
    for d in &devices {
        let Some(i) = d.index else {
            println!(
                "cpu: {} (--engine cpu; --engine auto without a hardware GPU)",
                d.name
            );
            continue;
        };
        println!(
            "{i}: {} ({}, {}){}",
            d.name,
            d.backend.as_deref().unwrap_or_default(),
            d.device_type.as_deref().unwrap_or_default(),
            if i == 0 { "  [default]" } else { "" }
        );
        println!(
            "   max storage binding {} MiB, max buffer {} MiB, workgroup storage {} KiB, invocations/workgroup {}, timestamps {}",
            mib(d.max_storage_binding_bytes),
            mib(d.max_buffer_bytes),
            d.workgroup_storage_bytes.unwrap_or_default() >> 10,
            d.invocations_per_workgroup.unwrap_or_default(),
            if d.timestamps == Some(true) { "yes" } else { "no" }
        );
        let coop = d.cooperative_matrices.as_deref().unwrap_or_default();
        let mixed = match &d.mixed_variant {
            Some(v) => format!("--precision mixed runs {v}"),
            None => "--precision mixed computes in f32 here".into(),
        };
        println!(
            "   tensor cores from WGSL (cooperative matrices): {} ({mixed})",
            if coop.is_empty() {
                "none".to_string()
            } else {
                coop.join(", ")
            }
        );
    }
    if devices.len() == 1 {
        println!("no GPU adapter found (for --engine gpu without a GPU: `apt-get install mesa-vulkan-drivers`)");
    }
    Ok(())
}
