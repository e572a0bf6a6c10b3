//! Compute kernels and their launches: a [`Kernel`] is one entry point's pipeline with its
//! labelled bindings; a [`Dispatch`] binds buffers to it once, so a step is a list of
//! dispatches recorded into one compute pass.

use bytemuck::Pod;

use super::context::Gpu;

/// How an entry point uses a binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Uniform,
    Read,
    ReadWrite,
}

/// One binding of an entry point: its number in the shader, its name there, and its access.
#[derive(Clone, Copy, Debug)]
pub struct Binding {
    pub index: u32,
    pub name: &'static str,
    pub access: Access,
}

impl Binding {
    pub const fn params() -> Binding {
        Binding {
            index: 0,
            name: "p",
            access: Access::Uniform,
        }
    }
    pub const fn read(index: u32, name: &'static str) -> Binding {
        Binding {
            index,
            name,
            access: Access::Read,
        }
    }
    pub const fn write(index: u32, name: &'static str) -> Binding {
        Binding {
            index,
            name,
            access: Access::ReadWrite,
        }
    }
}

/// The bindings named `names`, in that order, as the WGSL `src` declares them
/// (`@group(0) @binding(N) var<storage, read> name: ...`): the shader is the one place that
/// numbers them and says how they are accessed.
pub fn bindings_in(src: &str, names: &[&'static str]) -> Vec<Binding> {
    names
        .iter()
        .map(|&name| {
            let declared = src.lines().find_map(|l| {
                let rest = l.trim().strip_prefix("@group(0) @binding(")?;
                let (index, rest) = rest.split_once(") var<")?;
                let (kind, rest) = rest.split_once('>')?;
                let var = rest.trim().split(':').next()?.trim();
                (var == name).then(|| (index.parse::<u32>().ok(), kind.to_string()))
            });
            let (index, access) = match declared {
                Some((Some(i), kind)) => (
                    i,
                    match kind.as_str() {
                        "uniform" => Access::Uniform,
                        "storage, read" => Access::Read,
                        "storage, read_write" => Access::ReadWrite,
                        other => panic!("binding {name}: unknown address space {other:?}"),
                    },
                ),
                _ => panic!("the shader declares no binding named {name}"),
            };
            Binding {
                index,
                name,
                access,
            }
        })
        .collect()
}

/// One entry point's compute pipeline.
#[derive(Clone)]
pub struct Kernel {
    pub name: &'static str,
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
    /// The storage bindings after the uniform at 0, in the order [`Kernel::dispatch`] takes buffers.
    storage: Vec<Binding>,
}

impl Kernel {
    /// The pipeline of entry point `name` in `module`; `bindings` starts with the uniform at 0.
    /// Workgroup memory is zeroed at each workgroup's start only with `zero_workgroup_memory`
    /// (WebGPU's default; a kernel that writes before it reads does not need it).
    pub fn new(
        gpu: &Gpu, module: &wgpu::ShaderModule, name: &'static str, bindings: &[Binding],
        zero_workgroup_memory: bool,
    ) -> Kernel {
        assert!(
            matches!(bindings.first(), Some(b) if b.index == 0 && b.access == Access::Uniform),
            "{name}: binding 0 is the parameters' uniform"
        );
        let entries: Vec<wgpu::BindGroupLayoutEntry> = bindings
            .iter()
            .map(|b| wgpu::BindGroupLayoutEntry {
                binding: b.index,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: match b.access {
                        Access::Uniform => wgpu::BufferBindingType::Uniform,
                        Access::Read => wgpu::BufferBindingType::Storage { read_only: true },
                        Access::ReadWrite => wgpu::BufferBindingType::Storage { read_only: false },
                    },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            })
            .collect();
        let layout = gpu
            .device
            .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some(name),
                entries: &entries,
            });
        let pipeline_layout = gpu
            .device
            .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(name),
                bind_group_layouts: &[Some(&layout)],
                immediate_size: 0,
            });
        let pipeline = gpu
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(name),
                layout: Some(&pipeline_layout),
                module,
                entry_point: Some(name),
                compilation_options: wgpu::PipelineCompilationOptions {
                    zero_initialize_workgroup_memory: zero_workgroup_memory,
                    ..Default::default()
                },
                cache: None,
            });
        Kernel {
            name,
            pipeline,
            layout,
            storage: bindings[1..].to_vec(),
        }
    }

    /// A dispatch of this kernel over `groups` workgroups: `uniform` at binding 0, then
    /// `buffers` (whole) in the order of the kernel's storage bindings.
    pub fn dispatch<T: Pod>(
        &self, gpu: &Gpu, uniform: &T, buffers: &[&wgpu::Buffer], groups: [u32; 3],
    ) -> Dispatch {
        let bound: Vec<Bound<'_>> = buffers.iter().map(|&b| Bound::whole(b)).collect();
        self.dispatch_bound(gpu, uniform, &bound, groups)
    }

    /// The same with each buffer bound whole or by a byte range.
    pub fn dispatch_bound<T: Pod>(
        &self, gpu: &Gpu, uniform: &T, buffers: &[Bound<'_>], groups: [u32; 3],
    ) -> Dispatch {
        assert_eq!(
            buffers.len(),
            self.storage.len(),
            "{} binds {:?}",
            self.name,
            self.storage.iter().map(|b| b.name).collect::<Vec<_>>()
        );
        let uniform = gpu.uniform(self.name, uniform);
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: uniform.as_entire_binding(),
        }];
        for (b, bound) in self.storage.iter().zip(buffers) {
            entries.push(wgpu::BindGroupEntry {
                binding: b.index,
                resource: match bound.range {
                    None => bound.buffer.as_entire_binding(),
                    Some((offset, size)) => wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: bound.buffer,
                        offset,
                        size: std::num::NonZeroU64::new(size),
                    }),
                },
            });
        }
        let bind_group = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(self.name),
            layout: &self.layout,
            entries: &entries,
        });
        Dispatch {
            name: self.name,
            detail: String::new(),
            flops: 0.0,
            bytes: 0.0,
            pipeline: self.pipeline.clone(),
            bind_group,
            groups,
            _uniform: uniform,
        }
    }
}

/// A buffer as a dispatch binds it: whole, or the bytes `offset .. offset + size`.
#[derive(Clone, Copy)]
pub struct Bound<'a> {
    pub buffer: &'a wgpu::Buffer,
    pub range: Option<(u64, u64)>,
}

impl<'a> Bound<'a> {
    pub fn whole(buffer: &'a wgpu::Buffer) -> Bound<'a> {
        Bound {
            buffer,
            range: None,
        }
    }
}

/// One recorded kernel launch with everything it binds.
pub struct Dispatch {
    pub name: &'static str,
    /// Shape, for benchmark tables.
    pub detail: String,
    /// Floating-point operations (multiply-adds count 2), for GFLOP/s.
    pub flops: f64,
    /// Bytes the kernel must read and write at the least (each input once, each output
    /// once), for GB/s.
    pub bytes: f64,
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    pub groups: [u32; 3],
    _uniform: wgpu::Buffer,
}

impl Dispatch {
    /// The same dispatch described for benchmark tables.
    pub fn info(mut self, detail: String, flops: f64, bytes: usize) -> Dispatch {
        self.detail = detail;
        self.flops = flops;
        self.bytes = bytes as f64;
        self
    }

    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        pass.dispatch_workgroups(self.groups[0], self.groups[1], self.groups[2]);
    }
}

/// A dispatch's work for splitting submits: its flops, and 10 per byte it moves (a GPU does
/// about ten flops in the time it moves a byte), so memory-bound kernels count too.
fn work(d: &Dispatch) -> f64 {
    d.flops + 10.0 * d.bytes
}

/// Records `copies` (source, destination: whole-buffer copies, done first), then
/// `dispatches` into compute passes, and submits them: one command buffer, or, when their
/// work exceeds the adapter's submit budget ([`Gpu::submit_budget`]), consecutive groups in
/// one submit each, so that no command buffer runs long enough to trip the operating
/// system's GPU watchdog. The dispatches run in the same order either way, so the results
/// are the same bits.
pub fn submit(gpu: &Gpu, copies: &[(&wgpu::Buffer, &wgpu::Buffer)], dispatches: &[&Dispatch]) {
    for (k, group) in submit_groups(gpu, dispatches).iter().enumerate() {
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        if k == 0 {
            for (from, to) in copies {
                encoder.copy_buffer_to_buffer(from, 0, to, 0, None);
            }
        }
        if !group.is_empty() {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            for d in group.iter() {
                d.record(&mut pass);
            }
        }
        gpu.queue.submit([encoder.finish()]);
    }
}

/// The consecutive groups of `dispatches` that [`submit`] submits one by one: as many as
/// fit the budget, and at least one dispatch each.
pub fn submit_groups<'a, 'd>(gpu: &Gpu, dispatches: &'a [&'d Dispatch]) -> Vec<&'a [&'d Dispatch]> {
    let budget = gpu.submit_budget();
    let mut groups = Vec::new();
    let (mut start, mut acc) = (0, 0.0);
    for (i, d) in dispatches.iter().enumerate() {
        if i > start && acc + work(d) > budget {
            groups.push(&dispatches[start..i]);
            (start, acc) = (i, 0.0);
        }
        acc += work(d);
    }
    groups.push(&dispatches[start..]);
    groups
}

/// `src` with the named element-type aliases (`alias Src = f32;` ...) switched to f16. An
/// alias's store helper, `fn to_src(v: f32) -> Src { return Src(v); }` where the shader has
/// one, then goes to ±infinity past f16's range (a plain conversion is indeterminate there;
/// the largest f16 doubled, at run time, is infinity), so that an overflow shows as a
/// non-finite value downstream.
pub fn specialise(src: &str, f16_aliases: &[&str]) -> String {
    if f16_aliases.is_empty() {
        return src.to_string();
    }
    // (Sources on cooperative matrices enable f16 themselves.)
    let mut out = match src.contains("enable f16;") {
        true => String::new(),
        false => String::from("enable f16;\n"),
    };
    out.push_str(src);
    for a in f16_aliases {
        let line = format!("alias {a} = f32;");
        assert!(out.contains(&line), "no {line:?} to specialise");
        out = out.replace(&line, &format!("alias {a} = f16;"));
        let helper = format!(
            "fn to_{}(v: f32) -> {a} {{ return {a}(v); }}",
            a.to_lowercase()
        );
        let saturating = format!(
            "fn to_{}(v: f32) -> {a} {{ if (abs(v) <= 65504.0) {{ return {a}(v); }} \
             return {a}(select(65504.0, -65504.0, v < 0.0)) * {a}(2.0); }}",
            a.to_lowercase()
        );
        out = out.replace(&helper, &saturating);
    }
    out
}
