//! The GPU context: adapter choice, device, limits, errors, memory accounting and buffers.

use std::sync::{Arc, Mutex};

use anyhow::{anyhow, bail, Context, Result};
use wgpu::util::DeviceExt;

/// Environment variable that picks an adapter by name, like `--adapter`.
pub const ADAPTER_ENV: &str = "IMPASTO_ADAPTER";

pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    pub features: wgpu::Features,
    /// The cooperative-matrix (tensor core) configurations the device was opened with (none
    /// where the adapter offers no cooperative matrices).
    pub cooperative_matrices: Vec<wgpu::CooperativeMatrixProperties>,
    /// Errors the device reported outside any error scope (e.g. out of memory during a step).
    errors: Arc<Mutex<Vec<String>>>,
    /// Why the device was lost (driver reset, GPU removed, destroyed), once it is.
    lost: Arc<Mutex<Option<String>>>,
    /// Bytes of storage buffers created so far (impasto's own GPU memory; freed buffers included).
    allocated: std::sync::atomic::AtomicU64,
    /// The most memory wgpu's allocator has held at once: (live allocations, reserved blocks),
    /// sampled after every storage buffer is made, which is when it can grow.
    peak: Mutex<Option<(u64, u64)>>,
    /// Every storage buffer made, in order: its label and bytes (the memory plan's source).
    ledger: Mutex<Vec<(String, u64)>>,
    /// The most work (see `gpu::submit`) one submit may carry, as f64 bits.
    submit_budget: std::sync::atomic::AtomicU64,
}

/// Work one submit may carry on a hardware adapter: 2e11 flop-equivalents, about 0.2 s on a
/// 1-TFLOP/s integrated GPU, well inside the 2 s after which Windows resets a GPU that has not
/// finished a command buffer (TDR; macOS has a similar watchdog). Software drivers run on the
/// CPU, where no watchdog applies: one submit a step.
pub const SUBMIT_BUDGET: f64 = 2e11;

/// Peak GPU memory, from wgpu's allocator report where the backend gives one.
#[derive(Clone, Copy, Debug)]
pub struct MemoryUse {
    /// The most bytes held by live allocations at once (all of wgpu's: buffers, uniforms...).
    pub peak_allocated: Option<u64>,
    /// The most bytes of memory blocks reserved at once (what the driver was asked for).
    pub peak_reserved: Option<u64>,
    /// Bytes of impasto's storage buffers created in all, freed ones included.
    pub created: u64,
}

/// What `impasto devices` prints of an adapter.
pub struct AdapterSummary {
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    pub features: wgpu::Features,
    /// The cooperative-matrix (tensor core) shapes and types the adapter offers to WGSL.
    pub cooperative_matrices: Vec<wgpu::CooperativeMatrixProperties>,
}

fn instance() -> wgpu::Instance {
    quiet_headless_vulkan();
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    desc.flags = super::validation::instance_flags();
    // The backends the design names: Vulkan, Metal, DX12. GL only when WGPU_BACKEND asks for
    // it: probing it on a headless machine prints EGL's and Wayland's complaints on stderr.
    if std::env::var_os("WGPU_BACKEND").is_none() {
        desc.backends = wgpu::Backends::VULKAN | wgpu::Backends::METAL | wgpu::Backends::DX12;
    }
    wgpu::Instance::new(desc)
}

/// Mesa's device-select layer (implicit: on every Vulkan instance where Mesa is installed)
/// connects to Wayland to find the default GPU, and on a headless machine libwayland prints
/// "error: XDG_RUNTIME_DIR is invalid or not set" twice. impasto ranks the adapters itself, so
/// there (no XDG_RUNTIME_DIR, and NODEVICE_SELECT not set by the user) the layer is turned off
/// by its own switch, once, before the first instance.
fn quiet_headless_vulkan() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let set = |v: &str| std::env::var_os(v).is_some();
        if !set("XDG_RUNTIME_DIR") && !set("NODEVICE_SELECT") {
            std::env::set_var("NODEVICE_SELECT", "1");
        }
    });
}

fn type_rank(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 3,
        wgpu::DeviceType::Other => 4,
    }
}

/// All adapters, best first: discrete > integrated > virtual > software.
fn ranked_adapters(instance: &wgpu::Instance) -> Vec<wgpu::Adapter> {
    let mut adapters = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()));
    adapters.retain(|a| a.get_info().backend != wgpu::Backend::Noop);
    adapters.sort_by_key(|a| {
        let info = a.get_info();
        // Prefer Vulkan/Metal/DX12 over GL for the same kind of device.
        (
            type_rank(info.device_type),
            info.backend == wgpu::Backend::Gl,
        )
    });
    adapters
}

pub fn list_adapters() -> Vec<AdapterSummary> {
    ranked_adapters(&instance())
        .iter()
        .map(|a| AdapterSummary {
            info: a.get_info(),
            limits: a.limits(),
            features: a.features(),
            cooperative_matrices: match a
                .features()
                .contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX)
            {
                true => a.cooperative_matrix_properties(),
                false => Vec::new(),
            },
        })
        .collect()
}

const NO_ADAPTER_HELP: &str =
    "no GPU adapter found. impasto needs a Vulkan, Metal or DX12 driver; \
on a machine without a GPU install Mesa's software Vulkan driver (Debian/Ubuntu: \
`apt-get install mesa-vulkan-drivers`) and run again";

/// wgpu's feature for cooperative matrices (tensor cores from WGSL): experimental.
const COOPERATIVE: wgpu::Features = wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX;

/// The device with every limit of the adapter and the features impasto uses where offered:
/// timestamps, shader-f16 and cooperative matrices (`--precision mixed`; should the driver
/// refuse the experimental feature, the device is opened without it).
fn open_device(
    adapter: &wgpu::Adapter, limits: &wgpu::Limits,
) -> Result<(wgpu::Device, wgpu::Queue, wgpu::Features)> {
    let wanted = wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::SHADER_F16 | COOPERATIVE;
    let open = |features: wgpu::Features| {
        pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("impasto"),
            required_features: features,
            required_limits: limits.clone(),
            // SAFETY: cooperative matrices are only used by kernels built for
            // `--precision mixed`, and those are checked against the f32 ones before a run
            // takes them (kernels::precision).
            experimental_features: match features.contains(COOPERATIVE) {
                true => unsafe { wgpu::ExperimentalFeatures::enabled() },
                false => wgpu::ExperimentalFeatures::disabled(),
            },
            ..Default::default()
        }))
        .map(|(d, q)| (d, q, features))
    };
    let features = adapter.features() & wanted;
    match open(features) {
        Err(_) if features.contains(COOPERATIVE) => Ok(open(features - COOPERATIVE)?),
        opened => Ok(opened?),
    }
}

impl Gpu {
    /// Opens the best adapter, or the first whose name contains `wanted` (case-insensitive),
    /// or the adapter at that index of `impasto devices`' list. `None` falls back to `IMPASTO_ADAPTER`.
    pub fn new(wanted: Option<&str>) -> Result<Gpu> {
        let env = std::env::var(ADAPTER_ENV).ok().filter(|s| !s.is_empty());
        let wanted = wanted.map(str::to_owned).or(env);
        let instance = instance();
        let adapters = ranked_adapters(&instance);
        if adapters.is_empty() {
            bail!(NO_ADAPTER_HELP);
        }
        let adapter = match &wanted {
            None => &adapters[0],
            Some(w) => {
                let by_index = w.parse::<usize>().ok().and_then(|i| adapters.get(i));
                let lower = w.to_lowercase();
                by_index
                    .or_else(|| {
                        adapters
                            .iter()
                            .find(|a| a.get_info().name.to_lowercase().contains(&lower))
                    })
                    .ok_or_else(|| {
                        let names: Vec<String> = adapters
                            .iter()
                            .enumerate()
                            .map(|(i, a)| {
                                let info = a.get_info();
                                format!("{i}: {} ({:?})", info.name, info.backend)
                            })
                            .collect();
                        anyhow!(
                            "--adapter / {ADAPTER_ENV}: no adapter matches {w:?}; available: {}",
                            names.join(", ")
                        )
                    })?
            }
        };
        let info = adapter.get_info();
        let software = info.device_type == wgpu::DeviceType::Cpu;
        // Ask for everything the adapter allows: big storage bindings matter for big images.
        let limits = adapter.limits();
        let (device, queue, features) = open_device(adapter, &limits)
            .with_context(|| format!("could not open adapter {}", info.name))?;
        let cooperative_matrices = match features.contains(COOPERATIVE) {
            true => adapter.cooperative_matrix_properties(),
            false => Vec::new(),
        };
        let errors = Arc::new(Mutex::new(Vec::new()));
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            sink.lock().unwrap().push(e.to_string());
        }));
        let lost = Arc::new(Mutex::new(None));
        let lost_sink = lost.clone();
        device.set_device_lost_callback(move |reason, message| {
            *lost_sink.lock().unwrap() = Some(format!("{reason:?}: {message}"));
        });
        Ok(Gpu {
            device,
            queue,
            info,
            limits,
            features,
            cooperative_matrices,
            errors,
            lost,
            allocated: Default::default(),
            peak: Mutex::new(None),
            ledger: Mutex::new(Vec::new()),
            submit_budget: std::sync::atomic::AtomicU64::new(
                if software {
                    f64::INFINITY
                } else {
                    SUBMIT_BUDGET
                }
                .to_bits(),
            ),
        })
    }

    /// The error for a failed GPU operation: the device's loss when that is the cause.
    fn failure(&self, what: String) -> anyhow::Error {
        match self.lost() {
            Some(why) => anyhow!("the GPU device was lost ({why})"),
            None => anyhow!(what),
        }
    }

    /// Why the device was lost, if it was: nothing more can run on it.
    pub fn lost(&self) -> Option<String> {
        self.lost.lock().unwrap().clone()
    }

    /// Fails with the first error the device reported since the last check.
    pub fn check_errors(&self) -> Result<()> {
        if let Some(why) = self.lost() {
            bail!("the GPU device was lost ({why})");
        }
        let mut errors = self.errors.lock().unwrap();
        if errors.is_empty() {
            return Ok(());
        }
        let all = std::mem::take(&mut *errors).join("; ");
        if all.to_lowercase().contains("out of memory") {
            bail!("the GPU ran out of memory ({all}); try a smaller --size");
        }
        bail!("GPU error: {all}")
    }

    /// A storage buffer of `len` f32s, zeroed. Refuses sizes past the adapter's binding limit.
    pub fn storage(&self, label: &str, len: usize) -> Result<wgpu::Buffer> {
        self.storage_bytes(label, len * 4)
    }

    /// A zeroed storage buffer of at least `bytes` (rounded up to whole 32-bit words).
    pub fn storage_bytes(&self, label: &str, bytes: usize) -> Result<wgpu::Buffer> {
        let bytes = (bytes.max(1) as u64).next_multiple_of(4);
        self.check_size(label, bytes, self.binding_limit())?;
        self.make_storage(label, bytes)
    }

    /// A zeroed storage buffer for a feature map or gradient of `bytes`: the kernels bind it
    /// by ranges of channels, so only the adapter's buffer size limits it.
    pub fn map_storage(&self, label: &str, bytes: usize) -> Result<wgpu::Buffer> {
        let bytes = (bytes.max(1) as u64).next_multiple_of(4);
        self.check_size(label, bytes, self.limits.max_buffer_size)?;
        self.make_storage(label, bytes)
    }

    /// A zeroed storage buffer for an image-sized array of `planes` planes of `plane` f32s (an
    /// image, its gradient, Adam's moments), which the kernels bind by ranges of planes: only
    /// the adapter's buffer size limits it, and one plane's binding.
    pub fn plane_storage(
        &self, label: &str, (planes, plane): (usize, usize),
    ) -> Result<wgpu::Buffer> {
        let (bytes, limit) = (4 * plane as u64, self.binding_limit());
        if bytes > limit {
            bail!(
                "{label}: one plane needs {} MiB but this adapter ({}) binds at most {} MiB; try a smaller --size",
                bytes >> 20,
                self.info.name,
                limit >> 20
            );
        }
        self.map_storage(label, 4 * planes * plane)
    }

    fn make_storage(&self, label: &str, bytes: u64) -> Result<wgpu::Buffer> {
        let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes.next_multiple_of(4),
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.sample_memory();
        Ok(buffer)
    }

    /// A storage buffer holding `data`.
    pub fn storage_from(&self, label: &str, data: &[f32]) -> Result<wgpu::Buffer> {
        if data.is_empty() {
            return self.storage(label, 1);
        }
        self.check_size(label, (data.len() * 4) as u64, self.binding_limit())?;
        let buffer = self
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: bytemuck::cast_slice(data),
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
            });
        self.sample_memory();
        // The upload goes through a staging copy that wgpu frees only once a submission has
        // completed: flush it now, or every upload of a setup (the weights) piles up at once.
        self.queue.submit([]);
        self.wait()?;
        Ok(buffer)
    }

    pub fn uniform<T: bytemuck::Pod>(&self, label: &str, value: &T) -> wgpu::Buffer {
        self.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: bytemuck::bytes_of(value),
                usage: wgpu::BufferUsages::UNIFORM,
            })
    }

    /// The most work one submit may carry (flop-equivalents, see `gpu::submit`).
    pub fn submit_budget(&self) -> f64 {
        f64::from_bits(
            self.submit_budget
                .load(std::sync::atomic::Ordering::Relaxed),
        )
    }

    /// Changes it (tests, and tuning for a slow GPU behind a watchdog).
    pub fn set_submit_budget(&self, work: f64) {
        self.submit_budget
            .store(work.to_bits(), std::sync::atomic::Ordering::Relaxed);
    }

    /// How many storage buffers have been made so far (a mark in the ledger).
    pub fn ledger_len(&self) -> usize {
        self.ledger.lock().unwrap().len()
    }

    /// The storage buffers made between two marks: label and bytes.
    pub fn ledger(&self, range: std::ops::Range<usize>) -> Vec<(String, u64)> {
        self.ledger.lock().unwrap()[range].to_vec()
    }

    /// Peak GPU memory so far, and the bytes of storage buffers created in all.
    pub fn memory(&self) -> MemoryUse {
        let peak = *self.peak.lock().unwrap();
        MemoryUse {
            peak_allocated: peak.map(|p| p.0),
            peak_reserved: peak.map(|p| p.1),
            created: self.allocated.load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// Folds the allocator's current totals into the peak (Vulkan and DX12 report them).
    fn sample_memory(&self) {
        if let Some(r) = self.device.generate_allocator_report() {
            let mut peak = self.peak.lock().unwrap();
            let (a, b) = peak.unwrap_or((0, 0));
            *peak = Some((
                a.max(r.total_allocated_bytes),
                b.max(r.total_reserved_bytes),
            ));
        }
    }

    /// The most bytes a buffer bound whole may have.
    fn binding_limit(&self) -> u64 {
        self.limits
            .max_storage_buffer_binding_size
            .min(self.limits.max_buffer_size)
    }

    fn check_size(&self, label: &str, bytes: u64, limit: u64) -> Result<()> {
        if bytes > limit {
            let what = if limit < self.limits.max_buffer_size {
                "binds at most"
            } else {
                "makes buffers of at most"
            };
            bail!(
                "{label} needs {} MiB but this adapter ({}) {what} {} MiB; try a smaller --size",
                bytes >> 20,
                self.info.name,
                limit >> 20
            );
        }
        self.allocated
            .fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
        self.ledger.lock().unwrap().push((label.to_string(), bytes));
        Ok(())
    }

    pub fn write(&self, buffer: &wgpu::Buffer, data: &[f32]) {
        self.queue
            .write_buffer(buffer, 0, bytemuck::cast_slice(data));
    }

    /// Copies the first `len` f32s of `buffer` back to the CPU (waits for the GPU).
    pub fn read(&self, buffer: &wgpu::Buffer, len: usize) -> Result<Vec<f32>> {
        let bytes = (len * 4) as u64;
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: bytes.max(4),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = self.device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(buffer, 0, &staging, 0, bytes);
        self.queue.submit([encoder.finish()]);
        let (tx, rx) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| self.failure(format!("GPU poll failed: {e}")))?;
        rx.recv()
            .map_err(|_| self.failure("GPU readback was dropped".into()))?
            .map_err(|e| self.failure(format!("GPU readback failed: {e}")))?;
        self.check_errors()?;
        let view = staging
            .get_mapped_range(..)
            .map_err(|e| self.failure(format!("GPU readback failed: {e}")))?;
        let out = bytemuck::cast_slice(&view).to_vec();
        drop(view);
        staging.unmap();
        Ok(out)
    }

    /// Blocks until all submitted work has finished.
    pub fn wait(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| self.failure(format!("GPU poll failed: {e}")))?;
        self.check_errors()
    }
}
