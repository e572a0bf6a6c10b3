//! The WGSL kernels: pipelines built once, and typed constructors for the dispatches that
//! use them. A [`Dispatch`] owns its bind group and uniform, so a step is just a list of
//! dispatches recorded into one compute pass.

use anyhow::Result;
use bytemuck::{Pod, Zeroable};

use crate::gpu::Gpu;

pub const CONV_WGSL: &str = include_str!("../../shaders/conv.wgsl");
pub const POOL_WGSL: &str = include_str!("../../shaders/pool.wgsl");
pub const GRAM_WGSL: &str = include_str!("../../shaders/gram.wgsl");
pub const LOSS_WGSL: &str = include_str!("../../shaders/loss.wgsl");
pub const PREPROCESS_WGSL: &str = include_str!("../../shaders/preprocess.wgsl");
pub const ADAM_WGSL: &str = include_str!("../../shaders/adam.wgsl");
pub const CONV_GEMM_WGSL: &str = include_str!("../../shaders/conv_gemm.wgsl");
pub const GRAM_GEMM_WGSL: &str = include_str!("../../shaders/gram_gemm.wgsl");

/// Every shader file, by name, for validation and listing.
pub const SHADERS: [(&str, &str); 8] = [
    ("conv.wgsl", CONV_WGSL),
    ("conv_gemm.wgsl", CONV_GEMM_WGSL),
    ("pool.wgsl", POOL_WGSL),
    ("gram.wgsl", GRAM_WGSL),
    ("gram_gemm.wgsl", GRAM_GEMM_WGSL),
    ("loss.wgsl", LOSS_WGSL),
    ("preprocess.wgsl", PREPROCESS_WGSL),
    ("adam.wgsl", ADAM_WGSL),
];

/// How a kernel sees one binding; bindings are numbered from 0 in this order.
#[derive(Clone, Copy)]
enum Slot {
    Uniform,
    Read,
    Write,
}

#[derive(Clone)]
pub struct Kernel {
    pub name: &'static str,
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
}

impl Kernel {
    fn new(gpu: &Gpu, module: &wgpu::ShaderModule, name: &'static str, slots: &[Slot]) -> Kernel {
        let entries: Vec<wgpu::BindGroupLayoutEntry> = slots
            .iter()
            .enumerate()
            .map(|(i, s)| wgpu::BindGroupLayoutEntry {
                binding: i as u32,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: match s {
                    Slot::Uniform => wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    Slot::Read | Slot::Write => wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Storage {
                            read_only: matches!(s, Slot::Read),
                        },
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
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
                compilation_options: Default::default(),
                cache: None,
            });
        Kernel {
            name,
            pipeline,
            layout,
        }
    }

    /// A dispatch of this kernel over `groups` workgroups; `uniform` is bound at 0, `buffers` from 1.
    fn dispatch<T: Pod>(
        &self,
        gpu: &Gpu,
        uniform: &T,
        buffers: &[&wgpu::Buffer],
        groups: [u32; 3],
    ) -> Dispatch {
        let uniform = gpu.uniform(self.name, uniform);
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: uniform.as_entire_binding(),
        }];
        for (i, b) in buffers.iter().enumerate() {
            entries.push(wgpu::BindGroupEntry {
                binding: i as u32 + 1,
                resource: b.as_entire_binding(),
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
    fn info(mut self, detail: String, flops: f64, bytes: usize) -> Dispatch {
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

/// Records `dispatches` into one compute pass and submits it.
pub fn run(gpu: &Gpu, dispatches: &[&Dispatch]) {
    let mut encoder = gpu.device.create_command_encoder(&Default::default());
    {
        let mut pass = encoder.begin_compute_pass(&Default::default());
        for d in dispatches {
            d.record(&mut pass);
        }
    }
    gpu.queue.submit([encoder.finish()]);
}

/// Workgroups for a 1-D kernel of 64-wide groups, folded into y past the 65535 limit
/// (the shaders rebuild the index as x + y · groups_x · 64).
fn groups_1d(n: usize) -> [u32; 3] {
    fold_tiles(n.div_ceil(64), 1, 65535)
}

/// How the matrix-heavy kernels (convolutions, Gram matrices, style gradient) split the work.
/// Every tiling computes the same thing with the same bindings and weight layouts; each
/// adapter gets the one that suits it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tiling {
    /// conv.wgsl and gram.wgsl: each conv invocation owns this many channels x 4 pixels in
    /// registers, with no workgroup memory or barriers (the software driver runs barriers slowly).
    Registers(usize),
    /// conv_gemm.wgsl and gram_gemm.wgsl: GEMMs with 64 x 64 output tiles per workgroup
    /// staged through workgroup memory, 4 x 4 outputs per invocation (for real GPUs).
    Workgroup,
}

/// Every tiling the host can build; each is tested against the CPU reference.
pub const TILINGS: [Tiling; 4] = [
    Tiling::Registers(4),
    Tiling::Registers(8),
    Tiling::Registers(16),
    Tiling::Workgroup,
];

/// Output rows and columns per workgroup of [`Tiling::Workgroup`] (conv: channels x pixels;
/// conv weight rows are padded to it).
const GEMM_TILE: usize = 64;

/// Workgroups for `tiles` tiles along x, folded into y past `limit` (the shaders rebuild
/// x + y · nx), and `z` along z.
fn fold_tiles(tiles: usize, z: usize, limit: usize) -> [u32; 3] {
    let x = tiles.clamp(1, limit);
    [x as u32, tiles.div_ceil(x).max(1) as u32, z as u32]
}

impl Tiling {
    /// The multiple that weight rows are padded to ([`pad_forward_weights`]).
    pub fn pad(self) -> usize {
        match self {
            Tiling::Registers(b) => b,
            Tiling::Workgroup => GEMM_TILE,
        }
    }

    /// The tiling for an adapter.
    pub fn for_adapter(info: &wgpu::AdapterInfo) -> Tiling {
        match info.device_type {
            // Measured on lavapipe (2 cores): see README, Performance.
            wgpu::DeviceType::Cpu => Tiling::Registers(8),
            _ => Tiling::Workgroup,
        }
    }
}

impl std::fmt::Display for Tiling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tiling::Registers(b) => write!(f, "regs{b}"),
            Tiling::Workgroup => write!(f, "gemm64"),
        }
    }
}

impl std::str::FromStr for Tiling {
    type Err = String;
    fn from_str(s: &str) -> Result<Tiling, String> {
        TILINGS
            .into_iter()
            .find(|t| t.to_string() == s.trim())
            .ok_or_else(|| {
                let names: Vec<String> = TILINGS.iter().map(|t| t.to_string()).collect();
                format!("{s:?} is not one of {}", names.join(", "))
            })
    }
}

/// How feature maps (the network's activations, its input and the content targets) are
/// stored. Gradients, Gram matrices and all arithmetic stay f32.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Storage {
    #[default]
    F32,
    /// Half the bytes and memory traffic of feature maps; needs the adapter's shader-f16.
    F16,
}

impl Storage {
    pub fn bytes(self) -> usize {
        match self {
            Storage::F32 => 4,
            Storage::F16 => 2,
        }
    }
}

/// `src` with the named element-type aliases (`alias Src = f32;` ...) switched to f16.
pub fn specialise(src: &str, f16_aliases: &[&str]) -> String {
    if f16_aliases.is_empty() {
        return src.to_string();
    }
    let mut out = String::from("enable f16;\n");
    out.push_str(src);
    for a in f16_aliases {
        let line = format!("alias {a} = f32;");
        assert!(out.contains(&line), "no {line:?} to specialise");
        out = out.replace(&line, &format!("alias {a} = f16;"));
    }
    out
}

/// The WGSL source of a conv tile: conv.wgsl with its channel block substituted, or conv_gemm.wgsl.
pub fn conv_source(tile: Tiling) -> String {
    match tile {
        Tiling::Registers(block) => {
            let line = "const CV: u32 = 2u;";
            assert!(CONV_WGSL.contains(line) && block.is_multiple_of(4));
            CONV_WGSL.replace(line, &format!("const CV: u32 = {}u;", block / 4))
        }
        Tiling::Workgroup => CONV_GEMM_WGSL.to_string(),
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct ConvParams {
    cin: u32,
    cout: u32,
    h: u32,
    w: u32,
    row_vec4s: u32,
    mask_output: u32,
    _pad: [u32; 2],
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PoolParams {
    channels: u32,
    h: u32,
    w: u32,
    mode: u32,
    mask: u32,
    _pad: [u32; 3],
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct GramParams {
    n: u32,
    m: u32,
    coef: f32,
    accumulate: u32,
    chunks: u32,
    chunk_len: u32,
    _pad: [u32; 2],
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct LossParams {
    len: u32,
    h: u32,
    w: u32,
    slot: u32,
    scale: f32,
    _pad: [u32; 3],
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PreParams {
    mul: [f32; 4],
    sub: [f32; 4],
    source: [u32; 4],
    hw: u32,
    _pad: [u32; 3],
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct AdamParams {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub len: u32,
    pub _pad: [u32; 3],
}

/// Pooling flavour; VGG19 uses max, average is a common alternative for style transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    Max,
    Avg,
}

/// A per-channel affine input convention: `net[c] = x[source[c]] · mul[c] − sub[c]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Affine {
    pub source: [usize; 3],
    pub mul: [f32; 3],
    pub sub: [f32; 3],
}

/// Every pipeline impasto uses, built once per device.
pub struct Kernels {
    /// How the conv and Gram kernels are tiled; conv weights must be padded to `tiling.pad()`.
    pub tiling: Tiling,
    /// How feature maps are stored; allocate them with [`Kernels::feature_map`].
    pub storage: Storage,
    /// Tiled kernels fold workgroups along x into y past this many (65535, the least every
    /// adapter allows; lowered by the tests to exercise the folding on small inputs).
    pub fold_limit: usize,
    conv_forward: Kernel,
    conv_backward_input: Kernel,
    pool_forward: Kernel,
    pool_backward: Kernel,
    gram: Kernel,
    gram_reduce: Kernel,
    style_grad: Kernel,
    sq_diff_sum: Kernel,
    sq_diff_sum_features: Kernel,
    tv_sum: Kernel,
    content_grad: Kernel,
    tv_grad: Kernel,
    preprocess: Kernel,
    preprocess_backward: Kernel,
    adam_tick: Kernel,
    adam_update: Kernel,
}

impl Kernels {
    /// The kernels with the conv tile chosen for the adapter.
    pub fn new(gpu: &Gpu) -> Result<Kernels> {
        Kernels::with_tiling(gpu, Tiling::for_adapter(&gpu.info))
    }

    pub fn with_tiling(gpu: &Gpu, tiling: Tiling) -> Result<Kernels> {
        Kernels::with_options(gpu, tiling, Storage::F32)
    }

    pub fn with_options(gpu: &Gpu, tiling: Tiling, storage: Storage) -> Result<Kernels> {
        use Slot::{Read as R, Uniform as U, Write as W};
        anyhow::ensure!(
            TILINGS.contains(&tiling),
            "tiling {tiling} is not one the host can build"
        );
        anyhow::ensure!(
            storage != Storage::F16 || gpu.features.contains(wgpu::Features::SHADER_F16),
            "--storage f16 needs shader-f16, which {} does not offer; use --storage f32",
            gpu.info.name
        );
        let scope = gpu.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = |name: &str, src: &str| {
            gpu.device
                .create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(name),
                    source: wgpu::ShaderSource::Wgsl(src.into()),
                })
        };
        // Each entry point gets its own module, with the bindings that hold feature maps
        // switched to f16 when they are stored so.
        let f16 = |aliases: &'static [&'static str]| -> &'static [&'static str] {
            if storage == Storage::F16 {
                aliases
            } else {
                &[]
            }
        };
        let build = |name: &'static str, src: &str, aliases: &[&str], slots: &[Slot]| {
            let src = specialise(src, aliases);
            Kernel::new(gpu, &module(name, &src), name, slots)
        };
        let conv = conv_source(tiling);
        let gram = match tiling {
            Tiling::Registers(_) => GRAM_WGSL,
            Tiling::Workgroup => GRAM_GEMM_WGSL,
        };
        let kernels = Kernels {
            tiling,
            storage,
            fold_limit: 65535,
            conv_forward: build(
                "conv_forward",
                &conv,
                f16(&["Src", "Dst"]),
                &[U, R, R, R, W],
            ),
            conv_backward_input: build(
                "conv_backward_input",
                &conv,
                f16(&["Aux"]),
                &[U, R, R, R, W],
            ),
            pool_forward: build(
                "pool_forward",
                POOL_WGSL,
                f16(&["Src", "Dst"]),
                &[U, R, R, W],
            ),
            pool_backward: build("pool_backward", POOL_WGSL, f16(&["Src"]), &[U, R, R, W]),
            gram: build("gram", gram, f16(&["Feat"]), &[U, R, R, R, W]),
            gram_reduce: build("gram_reduce", GRAM_WGSL, &[], &[U, R, R, R, W]),
            style_grad: build("style_grad", gram, f16(&["Feat"]), &[U, R, R, R, W]),
            sq_diff_sum: build("sq_diff_sum", LOSS_WGSL, &[], &[U, R, R, W]),
            sq_diff_sum_features: build("sq_diff_sum", LOSS_WGSL, f16(&["A", "B"]), &[U, R, R, W]),
            tv_sum: build("tv_sum", LOSS_WGSL, &[], &[U, R, R, W]),
            content_grad: build("content_grad", LOSS_WGSL, f16(&["A", "B"]), &[U, R, R, W]),
            tv_grad: build("tv_grad", LOSS_WGSL, &[], &[U, R, R, W]),
            preprocess: build("preprocess", PREPROCESS_WGSL, f16(&["Dst"]), &[U, R, W]),
            preprocess_backward: build("preprocess_backward", PREPROCESS_WGSL, &[], &[U, R, W]),
            adam_tick: build("adam_tick", ADAM_WGSL, &[], &[U, R, W, W, W, W]),
            adam_update: build("adam_update", ADAM_WGSL, &[], &[U, R, W, W, W, W]),
        };
        if let Some(e) = pollster::block_on(scope.pop()) {
            anyhow::bail!("building the compute pipelines failed: {e}");
        }
        Ok(kernels)
    }

    /// Uniforms and workgroups of a conv kernel whose invocations own blocks of `blocked` channels.
    fn conv_launch(
        &self,
        (cin, cout, h, w): (usize, usize, usize, usize),
        blocked: usize,
    ) -> (ConvParams, [u32; 3]) {
        let pad = self.tiling.pad();
        let params = ConvParams {
            cin: cin as u32,
            cout: cout as u32,
            h: h as u32,
            w: w as u32,
            row_vec4s: (blocked.next_multiple_of(pad) / 4) as u32,
            mask_output: 0,
            _pad: [0; 2],
        };
        let groups = match self.tiling {
            Tiling::Registers(block) => [
                w.div_ceil(4).div_ceil(8) as u32,
                h.div_ceil(8) as u32,
                blocked.div_ceil(block) as u32,
            ],
            Tiling::Workgroup => fold_tiles(
                (h * w).div_ceil(GEMM_TILE),
                blocked.div_ceil(GEMM_TILE),
                self.fold_limit,
            ),
        };
        (params, groups)
    }

    /// `dst[cout][h][w] = relu(conv3x3(src[cin][h][w]) + bias)`. `weight` holds
    /// `[3][3][cin][cout padded to the conv block]` and `bias` `[cout]` (see [`pad_forward_weights`]).
    #[allow(clippy::too_many_arguments)]
    pub fn conv_forward(
        &self,
        gpu: &Gpu,
        (cin, cout, h, w): (usize, usize, usize, usize),
        src: &wgpu::Buffer,
        weight: &wgpu::Buffer,
        bias: &wgpu::Buffer,
        dst: &wgpu::Buffer,
    ) -> Dispatch {
        // Invocations own blocks of output channels.
        let (params, groups) = self.conv_launch((cin, cout, h, w), cout);
        let bytes = (cin + cout) * h * w * self.storage.bytes() + (9 * cin + 1) * cout * F32;
        self.conv_forward
            .dispatch(gpu, &params, &[src, weight, bias, dst], groups)
            .info(
                format!("{cin}->{cout} {h}x{w}"),
                conv_flops(cin, cout, h, w),
                bytes,
            )
    }

    /// `dst[cin][h][w]` = dL/d(input) from grad = dL/d(output) `[cout][h][w]`, already masked by
    /// this layer's ReLU. With `input_relu` (the layer's input, when it is a ReLU's output),
    /// dst is masked where that input is 0, so it leaves masked for the layer below.
    /// `weight_t` holds `[3][3][cout][cin padded to the conv block]` (see [`pad_backward_weights`]).
    #[allow(clippy::too_many_arguments)]
    pub fn conv_backward_input(
        &self,
        gpu: &Gpu,
        (cin, cout, h, w): (usize, usize, usize, usize),
        grad: &wgpu::Buffer,
        weight_t: &wgpu::Buffer,
        input_relu: Option<&wgpu::Buffer>,
        dst: &wgpu::Buffer,
    ) -> Dispatch {
        // Invocations own blocks of input channels.
        let (mut params, groups) = self.conv_launch((cin, cout, h, w), cin);
        params.mask_output = input_relu.is_some() as u32;
        let aux = input_relu.unwrap_or(grad);
        let mask_bytes = input_relu.map_or(0, |_| cin * h * w * self.storage.bytes());
        let bytes = (cout + cin) * h * w * F32 + 9 * cin * cout * F32 + mask_bytes;
        self.conv_backward_input
            .dispatch(gpu, &params, &[grad, weight_t, aux, dst], groups)
            .info(
                format!("{cout}->{cin} {h}x{w}"),
                conv_flops(cin, cout, h, w),
                bytes,
            )
    }

    /// `dst[c][h/2][w/2]` = 2x2 stride-2 pooling of `src[c][h][w]`.
    pub fn pool_forward(
        &self,
        gpu: &Gpu,
        (c, h, w): (usize, usize, usize),
        mode: Pooling,
        src: &wgpu::Buffer,
        dst: &wgpu::Buffer,
    ) -> Dispatch {
        let params = pool_params(c, h, w, mode, false);
        // The forward does not read `grad`; bind src twice to fill the slot.
        self.pool_forward
            .dispatch(gpu, &params, &[src, src, dst], pool_groups(c, h / 2, w / 2))
            .info(
                format!("{c}x{h}x{w}"),
                (c * h * w) as f64,
                c * (h * w + (h / 2) * (w / 2)) * self.storage.bytes(),
            )
    }

    /// dst = dL/d(src) `[c][h][w]` from grad = dL/d(output) `[c][h/2][w/2]`; with `mask`
    /// (src is a ReLU's output), zero where src is not positive.
    #[allow(clippy::too_many_arguments)]
    pub fn pool_backward(
        &self,
        gpu: &Gpu,
        (c, h, w): (usize, usize, usize),
        mode: Pooling,
        mask: bool,
        src: &wgpu::Buffer,
        grad: &wgpu::Buffer,
        dst: &wgpu::Buffer,
    ) -> Dispatch {
        let params = pool_params(c, h, w, mode, mask);
        self.pool_backward
            .dispatch(
                gpu,
                &params,
                &[src, grad, dst],
                pool_groups(c, h.div_ceil(2), w.div_ceil(2)),
            )
            .info(
                format!("{c}x{h}x{w}"),
                (c * h * w) as f64,
                c * h * w * (self.storage.bytes() + F32) + c * (h / 2) * (w / 2) * F32,
            )
    }

    /// dst = feat · featᵀ for feat `[n][m]`: one dispatch, or two (partial Grams over chunks of
    /// positions, then their fixed-order sum) when n is small next to m.
    pub fn gram(
        &self,
        gpu: &Gpu,
        (n, m): (usize, usize),
        feat: &wgpu::Buffer,
        dst: &wgpu::Buffer,
    ) -> Result<Vec<Dispatch>> {
        // Workgroups over the tiles on or above G's diagonal, and how many chunks of positions
        // fill the device: a few thousand register-blocked invocations (one 8 x 8 tile each,
        // listed in x), or a few hundred workgroups (one 64 x 64 tile each, y <= x), each chunk
        // with at least 1024 positions.
        let ([x, y], chunks) = match self.tiling {
            Tiling::Registers(_) => {
                let tiles = n.div_ceil(8) * (n.div_ceil(8) + 1) / 2;
                ([tiles.div_ceil(64), 1], 4096usize.div_ceil(tiles.max(1)))
            }
            Tiling::Workgroup => {
                let t = n.div_ceil(GEMM_TILE);
                ([t, t], 512usize.div_ceil(t * (t + 1) / 2))
            }
        };
        let chunks = chunks.min(m.div_ceil(1024)).max(1);
        let chunk_len = m.div_ceil(chunks);
        let params = GramParams {
            n: n as u32,
            m: m as u32,
            coef: 1.0,
            accumulate: 0,
            chunks: chunks as u32,
            chunk_len: chunk_len as u32,
            _pad: [0; 2],
        };
        let info = |d: Dispatch| {
            let bytes = n * m * self.storage.bytes() + chunks * n * n * F32;
            d.info(format!("{n}x{m}"), 2.0 * (n * n * m) as f64, bytes)
        };
        let groups = [x as u32, y as u32, chunks as u32];
        if chunks == 1 {
            return Ok(vec![info(self.gram.dispatch(
                gpu,
                &params,
                &[feat, feat, feat, dst],
                groups,
            ))]);
        }
        let partial = gpu.storage("partial grams", chunks * n * n)?;
        Ok(vec![
            info(
                self.gram
                    .dispatch(gpu, &params, &[feat, feat, feat, &partial], groups),
            ),
            self.gram_reduce
                .dispatch(gpu, &params, &[feat, &partial, feat, dst], groups_1d(n * n))
                .info(
                    format!("{chunks} chunks"),
                    (chunks * n * n) as f64,
                    (chunks + 1) * n * n * F32,
                ),
        ])
    }

    /// `dst (+)= coef · ((gram − target) · feat) · [feat > 0]` (feat is post-ReLU).
    #[allow(clippy::too_many_arguments)]
    pub fn style_grad(
        &self,
        gpu: &Gpu,
        (n, m): (usize, usize),
        coef: f32,
        accumulate: bool,
        feat: &wgpu::Buffer,
        gram: &wgpu::Buffer,
        target: &wgpu::Buffer,
        dst: &wgpu::Buffer,
    ) -> Dispatch {
        let params = GramParams {
            n: n as u32,
            m: m as u32,
            coef,
            accumulate: accumulate as u32,
            chunks: 1,
            chunk_len: m as u32,
            _pad: [0; 2],
        };
        let groups = match self.tiling {
            Tiling::Registers(_) => {
                fold_tiles(m.div_ceil(8).div_ceil(64), n.div_ceil(8), self.fold_limit)
            }
            Tiling::Workgroup => fold_tiles(
                m.div_ceil(GEMM_TILE),
                n.div_ceil(GEMM_TILE),
                self.fold_limit,
            ),
        };
        self.style_grad
            .dispatch(gpu, &params, &[feat, gram, target, dst], groups)
            .info(
                format!("{n}x{m}"),
                2.0 * (n * n * m) as f64,
                n * m * (self.storage.bytes() + (1 + accumulate as usize) * F32) + 2 * n * n * F32,
            )
    }

    /// `out[slot] = scale · Σ (a − b)²` over `len` elements.
    pub fn sq_diff_sum(
        &self,
        gpu: &Gpu,
        len: usize,
        scale: f32,
        a: &wgpu::Buffer,
        b: &wgpu::Buffer,
        (out, slot): (&wgpu::Buffer, usize),
    ) -> Dispatch {
        sq_diff_sum_with(&self.sq_diff_sum, gpu, F32, len, scale, (a, b), (out, slot))
    }

    /// [`Kernels::sq_diff_sum`] of two feature maps (stored as [`Kernels::storage`] says).
    pub fn sq_diff_sum_features(
        &self,
        gpu: &Gpu,
        len: usize,
        scale: f32,
        a: &wgpu::Buffer,
        b: &wgpu::Buffer,
        (out, slot): (&wgpu::Buffer, usize),
    ) -> Dispatch {
        let (kernel, size) = (&self.sq_diff_sum_features, self.storage.bytes());
        sq_diff_sum_with(kernel, gpu, size, len, scale, (a, b), (out, slot))
    }

    /// A zeroed buffer for a feature map of `len` values, in this kernel set's storage.
    pub fn feature_map(&self, gpu: &Gpu, label: &str, len: usize) -> Result<wgpu::Buffer> {
        gpu.storage_bytes(label, len * self.storage.bytes())
    }

    /// `out[slot] = scale · tv(x)` for x `[c][h][w]`.
    pub fn tv_sum(
        &self,
        gpu: &Gpu,
        (c, h, w): (usize, usize, usize),
        scale: f32,
        x: &wgpu::Buffer,
        (out, slot): (&wgpu::Buffer, usize),
    ) -> Dispatch {
        let params = loss_params(c, h, w, slot, scale);
        self.tv_sum
            .dispatch(gpu, &params, &[x, x, out], [1, 1, 1])
            .info(String::new(), 0.0, c * h * w * F32)
    }

    /// `dst (+)= coef · (feat − target) · [feat > 0]` (feat is post-ReLU).
    #[allow(clippy::too_many_arguments)]
    pub fn content_grad(
        &self,
        gpu: &Gpu,
        len: usize,
        coef: f32,
        accumulate: bool,
        feat: &wgpu::Buffer,
        target: &wgpu::Buffer,
        dst: &wgpu::Buffer,
    ) -> Dispatch {
        let params = loss_params(len, 0, 0, accumulate as usize, coef);
        let bytes = len * (2 * self.storage.bytes() + (1 + accumulate as usize) * F32);
        self.content_grad
            .dispatch(gpu, &params, &[feat, target, dst], groups_1d(len))
            .info(String::new(), 0.0, bytes)
    }

    /// dst += coef · d tv(x) / dx.
    pub fn tv_grad(
        &self,
        gpu: &Gpu,
        (c, h, w): (usize, usize, usize),
        coef: f32,
        x: &wgpu::Buffer,
        dst: &wgpu::Buffer,
    ) -> Dispatch {
        let params = loss_params(c, h, w, 0, coef);
        self.tv_grad
            .dispatch(gpu, &params, &[x, x, dst], groups_1d(c * h * w))
            .info(String::new(), 0.0, 3 * c * h * w * F32)
    }

    /// dst = the network input for the RGB image x `[3][hw]`.
    pub fn preprocess(
        &self,
        gpu: &Gpu,
        hw: usize,
        affine: &Affine,
        x: &wgpu::Buffer,
        dst: &wgpu::Buffer,
    ) -> Dispatch {
        self.preprocess
            .dispatch(gpu, &pre_params(hw, affine), &[x, dst], groups_1d(3 * hw))
            .info(String::new(), 0.0, 3 * hw * (F32 + self.storage.bytes()))
    }

    /// dst = dL/dx from grad = dL/d(network input).
    pub fn preprocess_backward(
        &self,
        gpu: &Gpu,
        hw: usize,
        affine: &Affine,
        grad: &wgpu::Buffer,
        dst: &wgpu::Buffer,
    ) -> Dispatch {
        self.preprocess_backward
            .dispatch(
                gpu,
                &pre_params(hw, affine),
                &[grad, dst],
                groups_1d(3 * hw),
            )
            .info(String::new(), 0.0, 2 * 3 * hw * F32)
    }

    /// The two dispatches of one Adam step on x: bump t in `state`, then update and clamp.
    pub fn adam(&self, gpu: &Gpu, params: AdamParams, buffers: AdamBuffers<'_>) -> [Dispatch; 2] {
        let b = [buffers.grad, buffers.x, buffers.m, buffers.v, buffers.state];
        let len = params.len as usize;
        [
            self.adam_tick
                .dispatch(gpu, &params, &b, [1, 1, 1])
                .info(String::new(), 0.0, 8 * F32),
            // grad read; x, m and v read and written
            self.adam_update
                .dispatch(gpu, &params, &b, groups_1d(len))
                .info(String::new(), 0.0, 7 * len * F32),
        ]
    }
}

pub struct AdamBuffers<'a> {
    pub grad: &'a wgpu::Buffer,
    pub x: &'a wgpu::Buffer,
    pub m: &'a wgpu::Buffer,
    pub v: &'a wgpu::Buffer,
    /// 4 f32s: [t, 1 − β1^t, 1 − β2^t, unused], zero at the start.
    pub state: &'a wgpu::Buffer,
}

fn sq_diff_sum_with(
    kernel: &Kernel,
    gpu: &Gpu,
    element_bytes: usize,
    len: usize,
    scale: f32,
    (a, b): (&wgpu::Buffer, &wgpu::Buffer),
    (out, slot): (&wgpu::Buffer, usize),
) -> Dispatch {
    let params = loss_params(len, 0, 0, slot, scale);
    kernel.dispatch(gpu, &params, &[a, b, out], [1, 1, 1]).info(
        String::new(),
        0.0,
        2 * len * element_bytes,
    )
}

/// Bytes of an f32 (gradients, Gram matrices, weights, the image: everything but feature maps).
const F32: usize = 4;

fn conv_flops(cin: usize, cout: usize, h: usize, w: usize) -> f64 {
    2.0 * 9.0 * (cin * cout * h * w) as f64
}

/// Workgroups for pool.wgsl's grid of windows: columns along x (64 per group), rows, channels.
fn pool_groups(c: usize, rows: usize, cols: usize) -> [u32; 3] {
    [
        cols.div_ceil(64).max(1) as u32,
        rows.max(1) as u32,
        c as u32,
    ]
}

fn pool_params(c: usize, h: usize, w: usize, mode: Pooling, mask: bool) -> PoolParams {
    PoolParams {
        channels: c as u32,
        h: h as u32,
        w: w as u32,
        mode: (mode == Pooling::Avg) as u32,
        mask: mask as u32,
        _pad: [0; 3],
    }
}

fn loss_params(len: usize, h: usize, w: usize, slot: usize, scale: f32) -> LossParams {
    LossParams {
        len: len as u32,
        h: h as u32,
        w: w as u32,
        slot: slot as u32,
        scale,
        _pad: [0; 3],
    }
}

fn pre_params(hw: usize, a: &Affine) -> PreParams {
    PreParams {
        mul: [a.mul[0], a.mul[1], a.mul[2], 0.0],
        sub: [a.sub[0], a.sub[1], a.sub[2], 0.0],
        source: [
            a.source[0] as u32,
            a.source[1] as u32,
            a.source[2] as u32,
            0,
        ],
        hw: hw as u32,
        _pad: [0; 3],
    }
}

/// HWIO weights `[3][3][cin][cout]` → the forward kernel's layout, output channels padded to `block`.
pub fn pad_forward_weights(hwio: &[f32], cin: usize, cout: usize, block: usize) -> Vec<f32> {
    let cp = cout.next_multiple_of(block);
    let mut out = vec![0.0; 9 * cin * cp];
    for k in 0..9 * cin {
        out[k * cp..k * cp + cout].copy_from_slice(&hwio[k * cout..(k + 1) * cout]);
    }
    out
}

/// HWIO weights `[3][3][cin][cout]` → the backward kernel's layout `[3][3][cout][cin padded to block]`.
pub fn pad_backward_weights(hwio: &[f32], cin: usize, cout: usize, block: usize) -> Vec<f32> {
    let cp = cin.next_multiple_of(block);
    let mut out = vec![0.0; 9 * cout * cp];
    for tap in 0..9 {
        for ci in 0..cin {
            for co in 0..cout {
                out[(tap * cout + co) * cp + ci] = hwio[(tap * cin + ci) * cout + co];
            }
        }
    }
    out
}
