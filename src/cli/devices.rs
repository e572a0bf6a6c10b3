//! `impasto devices`.

use anyhow::Result;

/// `impasto devices`: the adapters impasto can use, best first, with the limits that matter,
/// and the CPU engine.
pub fn run() -> Result<()> {
    let adapters = crate::gpu::list_adapters();
    println!(
        "cpu: {} (--engine cpu; --engine auto without a hardware GPU)",
        crate::cpu::describe()
    );
    if adapters.is_empty() {
        println!("no GPU adapter found (for --engine gpu without a GPU: `apt-get install mesa-vulkan-drivers`)");
        return Ok(());
    }
    for (i, a) in adapters.iter().enumerate() {
        println!(
            "{i}: {} ({:?}, {:?}){}",
            a.info.name,
            a.info.backend,
            a.info.device_type,
            if i == 0 { "  [default]" } else { "" }
        );
        println!(
            "   max storage binding {} MiB, max buffer {} MiB, workgroup storage {} KiB, invocations/workgroup {}, timestamps {}",
            a.limits.max_storage_buffer_binding_size >> 20,
            a.limits.max_buffer_size >> 20,
            a.limits.max_compute_workgroup_storage_size >> 10,
            a.limits.max_compute_invocations_per_workgroup,
            if a.features.contains(wgpu::Features::TIMESTAMP_QUERY) { "yes" } else { "no" }
        );
    }
    Ok(())
}
