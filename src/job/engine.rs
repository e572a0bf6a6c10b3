//! The engine a job runs on, chosen and made once: the GPU (an adapter with its kernels built
//! for its tiling and storage) or the CPU engine. It builds the sessions and memory plans, so
//! that nothing above it asks which one it is.

use anyhow::Result;

use crate::cpu::CpuSession;
use crate::gpu::Gpu;
use crate::kernels::{precision, Checks, Kernels, Precision, Storage, Variants};
use crate::model::engine::{EngineSession, MemoryPlan, Setup};
use crate::pipeline::session::Session;
use crate::weights::Weights;

/// Which engine computes the objective (`--engine`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineChoice {
    /// A hardware GPU adapter if there is one, else the CPU engine.
    Auto,
    /// Any GPU adapter, software drivers included.
    Gpu,
    /// SIMD and threads on the CPU.
    Cpu,
}

/// The GPU or the CPU engine, ready to build sessions.
pub struct Engine {
    gpu: Option<(Gpu, Kernels)>,
    /// Why mixed precision was asked for and not taken, or its check's figures when it was.
    precision_note: Option<String>,
}

/// A memory plan with what it was measured against.
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

/// Field `key` of a /proc file in kB, as bytes (Linux; None elsewhere).
fn proc_kib(path: &str, key: &str) -> Option<u64> {
    let info = std::fs::read_to_string(path).ok()?;
    let line = info.lines().find(|l| l.starts_with(key))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

/// `MemAvailable` of /proc/meminfo, in bytes (Linux; None elsewhere).
pub fn host_available() -> Option<u64> {
    proc_kib("/proc/meminfo", "MemAvailable:")
}

/// This process's peak resident memory so far (`VmHWM`; Linux, None elsewhere): what a run's
/// report gives beside its memory plan.
pub fn host_peak() -> Option<u64> {
    proc_kib("/proc/self/status", "VmHWM:")
}

impl Engine {
    /// The CPU engine.
    pub fn cpu() -> Engine {
        Engine {
            gpu: None,
            precision_note: None,
        }
    }

    /// A GPU adapter (`adapter`: a name substring or an index; None: the best), with the
    /// kernels `impasto tune` chose for it, else of its default tiling, and feature maps
    /// stored as `storage`.
    pub fn gpu(adapter: Option<&str>, storage: Storage) -> Result<Engine> {
        Engine::on(Gpu::new(adapter)?, storage)
    }

    /// With the variants `impasto tune` chose for this adapter, else the adapter's default.
    fn on(gpu: Gpu, storage: Storage) -> Result<Engine> {
        let variants = super::tuning::variants(&gpu, storage, Precision::F32);
        let kernels = Kernels::with_variants(&gpu, variants, storage, Checks::from_env())?;
        Ok(Engine {
            gpu: Some((gpu, kernels)),
            precision_note: None,
        })
    }

    /// Rebuilds the GPU engine's kernels with each family's variant as `v` says (the CPU
    /// engine has none: nothing changes). Variants on cooperative matrices (mixed precision)
    /// are taken only where the adapter offers them and they pass the check against f32
    /// (`kernels::precision::admit`); else the f32 variants the adapter would run, said.
    pub fn use_variants(&mut self, v: Variants) -> Result<()> {
        let Some((gpu, k)) = &mut self.gpu else {
            return Ok(());
        };
        let (v, note) = match precision::admit(gpu, v) {
            Ok(None) => (v, None),
            Ok(Some(check)) => {
                let note = format!("mixed precision checked against f32: {}", check.describe());
                (v, Some(note))
            }
            Err(why) => {
                let note = format!("mixed precision refused ({why}): the run computes in f32");
                let f32_variants = super::tuning::variants(gpu, k.storage, Precision::F32);
                (f32_variants, Some(note))
            }
        };
        *k = Kernels::with_variants(gpu, v, k.storage, k.checks)?;
        if let Some(note) = note {
            self.note_precision(note);
        }
        Ok(())
    }

    /// The engine for `choice`, with a line saying which and why (auto: a hardware GPU
    /// adapter if there is one, else the CPU engine).
    pub fn choose(
        choice: EngineChoice, adapter: Option<&str>, storage: Storage,
    ) -> Result<(Engine, String)> {
        let cpu = crate::cpu::describe();
        match choice {
            EngineChoice::Gpu => Ok((Engine::gpu(adapter, storage)?, String::new())),
            EngineChoice::Cpu => Ok((Engine::cpu(), format!("engine: {cpu} (--engine cpu)"))),
            EngineChoice::Auto => match Gpu::new(adapter) {
                Ok(gpu) if adapter.is_some() || gpu.info.device_type != wgpu::DeviceType::Cpu => {
                    let why = format!(
                        "engine: GPU, {} (--engine auto: a hardware adapter)",
                        gpu.info.name
                    );
                    Ok((Engine::on(gpu, storage)?, why))
                }
                Ok(gpu) => Ok((
                    Engine::cpu(),
                    format!(
                        "engine: {cpu} (--engine auto: the only adapter, {}, is a software driver; --engine gpu uses it)",
                        gpu.info.name
                    ),
                )),
                Err(e) => Ok((
                    Engine::cpu(),
                    format!("engine: {cpu} (--engine auto: no GPU adapter: {e:#})"),
                )),
            },
        }
    }

    /// Says `note` about the precision the run computes in, and keeps it for the report.
    pub fn note_precision(&mut self, note: String) {
        crate::say!("--precision mixed: {note}");
        self.precision_note = Some(note);
    }

    /// "gpu" or "cpu", as reports name it.
    pub fn name(&self) -> &'static str {
        if self.gpu.is_some() {
            "gpu"
        } else {
            "cpu"
        }
    }

    /// The adapter's name, or the CPU engine's description.
    pub fn adapter(&self) -> String {
        self.gpu
            .as_ref()
            .map_or_else(crate::cpu::describe, |(g, _)| g.info.name.clone())
    }

    /// The graphics backend (Vulkan, Metal, ...), or "cpu".
    pub fn backend(&self) -> String {
        self.gpu
            .as_ref()
            .map_or_else(|| "cpu".into(), |(g, _)| format!("{:?}", g.info.backend))
    }

    /// What runs where, for messages: "gpu engine on NAME, F32 feature maps".
    pub fn describe(&self) -> String {
        match &self.gpu {
            Some((g, k)) => format!(
                "gpu engine on {}, {:?} feature maps",
                g.info.name, k.storage
            ),
            None => format!("cpu engine on {}", crate::cpu::describe()),
        }
    }

    /// The kernel variant each family runs, for the report (empty for the CPU engine):
    /// `conv` and `gram` (the tiling), `storage` (feature maps), `precision` (with
    /// `precision_note` when mixed was asked for) and `shader_checks`.
    pub fn variants(&self) -> std::collections::BTreeMap<String, String> {
        let Some((_, k)) = &self.gpu else {
            return Default::default();
        };
        [
            ("conv", k.tiling.to_string()),
            ("gram", k.gram_tiling.to_string()),
            ("storage", format!("{:?}", k.storage).to_lowercase()),
            ("shader_checks", format!("{:?}", k.checks).to_lowercase()),
            (
                "precision",
                format!("{:?}", k.variants().precision()).to_lowercase(),
            ),
        ]
        .into_iter()
        .chain(self.precision_note.clone().map(|n| ("precision_note", n)))
        .map(|(f, v)| (f.to_string(), v))
        .collect()
    }

    /// The GPU and its kernels (None for the CPU engine).
    pub fn gpu_parts(&self) -> Option<(&Gpu, &Kernels)> {
        self.gpu.as_ref().map(|(g, k)| (g, k))
    }

    /// A session set up from `setup` (its targets computed, its buffers made).
    pub fn session(&self, setup: &Setup<'_, Weights>) -> Result<Box<dyn EngineSession + '_>> {
        Ok(match &self.gpu {
            Some((gpu, kernels)) => Box::new(Session::new(gpu, kernels, setup)?),
            None => Box::new(CpuSession::new(setup)?),
        })
    }

    /// The memory plan of `setup`: its dry session built with every buffer made, in the order
    /// a real run makes and frees them, but no kernel run. An error is a buffer the adapter
    /// cannot hold (over its binding limit, out of memory).
    pub fn plan(&self, setup: &Setup<'_, Weights>) -> Result<Planned> {
        let Some((gpu, kernels)) = &self.gpu else {
            return Ok(Planned {
                plan: CpuSession::dry(setup)?.plan(),
                allocator_peak: None,
                available: host_available(),
            });
        };
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

    /// A GPU error raised since the last check (validation, out of memory), or a lost device.
    pub fn check_errors(&self) -> Result<()> {
        match &self.gpu {
            Some((g, _)) => g.check_errors(),
            None => Ok(()),
        }
    }

    /// Whether the GPU device was lost (never for the CPU engine).
    pub fn lost(&self) -> bool {
        self.gpu.as_ref().is_some_and(|(g, _)| g.lost().is_some())
    }

    /// The most GPU memory held at once (wgpu's allocator report; None where the backend has
    /// none, and for the CPU engine).
    pub fn peak_memory(&self) -> Option<u64> {
        self.gpu
            .as_ref()
            .and_then(|(g, _)| g.memory().peak_allocated)
    }
}
