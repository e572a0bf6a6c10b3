//! The memory plan of a run (`stylize --dry-run`, and the check every run makes before any
//! work): the largest scale's session is built with every buffer made, in the order a real
//! run makes and frees them, but no kernel run; what it holds is summed by kind.

use anyhow::Result;

use crate::cpu::CpuSession;
use crate::gpu::Gpu;
use crate::kernels::Kernels;
use crate::model::engine::{MemoryPlan, Setup};
use crate::pipeline::session::Session;
use crate::weights::Weights;

/// A plan with what it was measured against.
pub struct Planned {
    pub plan: MemoryPlan,
    /// The allocator's peak while the dry session was built (GPU backends that report it).
    pub allocator_peak: Option<u64>,
    /// Memory the run may use: host memory available for the CPU engine and software GPU
    /// adapters; None for a hardware GPU (wgpu does not report its memory).
    pub available: Option<u64>,
}

impl Planned {
    pub fn fits(&self) -> bool {
        self.available.is_none_or(|a| self.plan.peak() <= a)
    }
}

/// `MemAvailable` of /proc/meminfo, in bytes (Linux; None elsewhere).
pub fn host_available() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

/// Builds the dry session of `setup` on the GPU (`gpu` and `kernels`) or the CPU engine. An
/// error is a buffer the adapter cannot hold (over its binding limit, out of memory).
pub fn plan(gpu: Option<(&Gpu, &Kernels)>, setup: &Setup<'_, Weights>) -> Result<Planned> {
    match gpu {
        Some((gpu, kernels)) => {
            let scope = gpu.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
            let session = Session::dry(gpu, kernels, setup);
            let oom = pollster::block_on(scope.pop());
            let session = session?;
            if let Some(e) = oom {
                anyhow::bail!("the GPU ran out of memory: {e}");
            }
            let plan = session.plan();
            drop(session);
            gpu.wait()?;
            let software = gpu.info.device_type == wgpu::DeviceType::Cpu;
            Ok(Planned {
                plan,
                allocator_peak: gpu.memory().peak_allocated,
                available: if software { host_available() } else { None },
            })
        }
        None => Ok(Planned {
            plan: CpuSession::dry(setup)?.plan(),
            allocator_peak: None,
            available: host_available(),
        }),
    }
}

fn gib(b: u64) -> String {
    if b >= 1 << 30 {
        format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64)
    } else {
        format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64)
    }
}

/// The plan as `--dry-run` prints it.
pub fn print(p: &Planned, what: &str) {
    println!("memory plan: {what}");
    for (kind, bytes) in &p.plan.kinds {
        println!("  {kind:<36} {:>12}", gib(*bytes));
    }
    println!(
        "  {:<36} {:>12}",
        "held while optimising",
        gib(p.plan.held())
    );
    println!(
        "  {:<36} {:>12}",
        "setup only (style images' networks)",
        gib(p.plan.setup_only)
    );
    println!("  {:<36} {:>12}", "peak", gib(p.plan.peak()));
    if let Some(a) = p.allocator_peak {
        println!("  {:<36} {:>12}", "peak, wgpu's allocator report", gib(a));
    }
    match p.available {
        Some(a) => println!(
            "  fits: {} ({} available)",
            if p.fits() { "yes" } else { "no" },
            gib(a)
        ),
        None => println!(
            "  fits: every buffer within the adapter's limits (wgpu does not report its memory)"
        ),
    }
}
