//! How a kernel set is built and launched: the tiling of the matrix-heavy kernels, the storage
//! of feature maps, the pipeline builder, and workgroup counts folded past the dispatch limit.

use std::ops::Range;

use crate::gpu::{bindings_in, specialise, Binding, Bound, Gpu, Kernel};

/// How the matrix-heavy kernels (convolutions, Gram matrices, style gradient) split the work.
/// Every tiling computes the same thing with the same bindings and weight layouts; each
/// adapter gets the one that suits it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tiling {
    /// conv.wgsl and gram.wgsl: each conv invocation owns this many channels x 4 pixels in
    /// registers, with no workgroup memory or barriers (the software driver runs barriers slowly).
    Registers(usize),
    /// conv_gemm.wgsl and gram_gemm.wgsl: GEMMs with 64 x 64 output tiles per workgroup
    /// staged through workgroup memory, 4 x 4 outputs per invocation, 16-deep K slices (for
    /// real GPUs).
    Workgroup,
    /// conv_gemm.wgsl with `channels` x 64 output tiles (64 or 128 channels), 8 x 8 outputs per
    /// invocation and `k`-deep K slices (8 or 16): the shapes of the fastest published WGSL
    /// matmuls. The Gram kernels run gemm64's.
    Gemm8 { channels: usize, k: usize },
    /// conv_coop.wgsl and gram_coop.wgsl (`coop16`, `coop16-64x64`, `coop8`, ...): tensor
    /// cores through cooperative matrices of side `m` (m x m x m), f16 operands and f32
    /// accumulation (`--precision mixed`), on adapters that offer them; conv tiles of
    /// `channels` x `pixels` (multiples of m: one accumulator each m x m), Gram tiles of m x m,
    /// the style gradient gemm64's.
    Cooperative {
        m: usize,
        channels: usize,
        pixels: usize,
    },
}

/// The variants on cooperative matrices (mixed precision), the default first (a run without
/// tuning takes the first the adapter offers): built only where the adapter offers them
/// (`kernels::precision`), so not among [`TILINGS`]. Conv tiles of 4 x 4 accumulators
/// (`coop16-64x64`), which stage a third less a product than 2 x 4 (`coop16`): on lavapipe's
/// coop8 that made the step 1.6x faster (docs/performance.md); a GPU's tuner decides.
pub const MIXED_TILINGS: [Tiling; 4] = [
    Tiling::coop(16, 4, 4),
    Tiling::coop(16, 2, 4),
    Tiling::coop(8, 4, 4),
    Tiling::coop(8, 2, 4),
];

/// Every tiling the host can build; each is tested against the CPU reference.
pub const TILINGS: [Tiling; 8] = [
    Tiling::Registers(4),
    Tiling::Registers(8),
    Tiling::Registers(16),
    Tiling::Workgroup,
    Tiling::Gemm8 { channels: 64, k: 8 },
    Tiling::Gemm8 {
        channels: 64,
        k: 16,
    },
    Tiling::Gemm8 {
        channels: 128,
        k: 8,
    },
    Tiling::Gemm8 {
        channels: 128,
        k: 16,
    },
];

/// Which variant each kernel family runs: the convolutions', and the Gram matrices' and style
/// gradient's (the rest have one variant).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Variants {
    #[serde(serialize_with = "tiling_out", deserialize_with = "tiling_in")]
    pub conv: Tiling,
    #[serde(serialize_with = "tiling_out", deserialize_with = "tiling_in")]
    pub gram: Tiling,
}

impl Variants {
    /// One tiling for both families (the Gram kernels' variant of it: [`Tiling::gram`]).
    pub fn uniform(t: Tiling) -> Variants {
        Variants {
            conv: t,
            gram: t.gram(),
        }
    }

    /// Mixed when either family runs on cooperative matrices.
    pub fn precision(&self) -> Precision {
        match self.conv.is_mixed() || self.gram.is_mixed() {
            true => Precision::Mixed,
            false => Precision::F32,
        }
    }
}

/// A tiling in files is its name (`regs8`, `gemm64`).
fn tiling_out<S: serde::Serializer>(t: &Tiling, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_string())
}

fn tiling_in<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Tiling, D::Error> {
    let name = <String as serde::Deserialize>::deserialize(d)?;
    name.parse().map_err(serde::de::Error::custom)
}

/// Output rows and columns per workgroup of [`Tiling::Workgroup`] (conv: channels x pixels;
/// conv weight rows are padded to it).
pub(super) const GEMM_TILE: usize = 64;

impl Tiling {
    /// The multiple that conv weight rows are padded to ([`super::conv::pad_forward_weights`]).
    pub fn pad(self) -> usize {
        match self {
            Tiling::Registers(b) => b,
            Tiling::Workgroup => GEMM_TILE,
            Tiling::Gemm8 { channels, .. } => channels,
            Tiling::Cooperative { channels, .. } => channels,
        }
    }

    /// Whether the variant computes in mixed precision (f16 operands on cooperative matrices).
    pub fn is_mixed(self) -> bool {
        matches!(self, Tiling::Cooperative { .. })
    }

    /// The cooperative variant on m x m matrices with `across` x `along` accumulators a
    /// workgroup (channels x pixels).
    pub const fn coop(m: usize, across: usize, along: usize) -> Tiling {
        Tiling::Cooperative {
            m,
            channels: across * m,
            pixels: along * m,
        }
    }

    /// The Gram kernels' variant that goes with this one: gram.wgsl has one register block
    /// (regs8) and gram_gemm.wgsl one tile (gemm64).
    pub fn gram(self) -> Tiling {
        match self {
            Tiling::Registers(_) => Tiling::Registers(8),
            Tiling::Workgroup | Tiling::Gemm8 { .. } => Tiling::Workgroup,
            // (gram_coop.wgsl has one tile a matrix side.)
            Tiling::Cooperative { m, .. } => Tiling::coop(m, 2, 4),
        }
    }

    /// Output channels and pixels of a conv workgroup's tile, for the GEMM tilings.
    pub(super) fn conv_tile(self) -> Option<(usize, usize)> {
        match self {
            Tiling::Registers(_) => None,
            Tiling::Workgroup => Some((GEMM_TILE, GEMM_TILE)),
            Tiling::Gemm8 { channels, .. } => Some((channels, GEMM_TILE)),
            Tiling::Cooperative {
                channels, pixels, ..
            } => Some((channels, pixels)),
        }
    }

    /// The tiling for an adapter.
    pub fn for_adapter(info: &wgpu::AdapterInfo) -> Tiling {
        match info.device_type {
            // Measured on lavapipe (2 cores): see docs/performance.md.
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
            Tiling::Gemm8 { channels, k } => write!(f, "gemm{channels}x64k{k}"),
            Tiling::Cooperative {
                m,
                channels,
                pixels,
            } => match (channels / m, pixels / m) {
                (2, 4) => write!(f, "coop{m}"),
                _ => write!(f, "coop{m}-{channels}x{pixels}"),
            },
        }
    }
}

impl std::str::FromStr for Tiling {
    type Err = String;
    fn from_str(s: &str) -> Result<Tiling, String> {
        let all = || TILINGS.into_iter().chain(MIXED_TILINGS);
        all().find(|t| t.to_string() == s.trim()).ok_or_else(|| {
            let names: Vec<String> = all().map(|t| t.to_string()).collect();
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

/// The arithmetic of the matrix-heavy kernels (`--precision`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// f32 throughout: what the tests hold to the f64 reference at 1e-5..1e-4.
    #[default]
    F32,
    /// Convolutions and Gram matrices on tensor cores (cooperative matrices): f16 operands,
    /// f32 accumulation, relative error ~1e-4; where the adapter offers them and they pass a
    /// check against f32 at first use, else f32 with a note.
    Mixed,
}

/// Bytes of an f32 (gradients, Gram matrices, weights, the image: everything but feature maps).
pub(super) const F32: usize = 4;

/// The most workgroups along one dimension that every adapter allows.
pub(super) const MAX_GROUPS: usize = 65535;

/// Workgroups for `tiles` tiles along x, folded into y past `limit` (the shaders rebuild
/// x + y · nx), and `z` along z.
pub(super) fn fold_tiles(tiles: usize, z: usize, limit: usize) -> [u32; 3] {
    let x = tiles.clamp(1, limit);
    [x as u32, tiles.div_ceil(x).max(1) as u32, z as u32]
}

/// Workgroups for a 1-D kernel of 64-wide groups, folded into y past the dispatch limit
/// (the shaders rebuild the index as x + y · groups_x · 64).
pub(super) fn groups_1d(n: usize) -> [u32; 3] {
    fold_tiles(n.div_ceil(64), 1, MAX_GROUPS)
}

/// The invocations of a conv_coop.wgsl workgroup of cooperative tiling `t`: the adapter's
/// largest subgroup (a cooperative matrix belongs to one subgroup), within [`coop_workgroups`].
pub fn coop_invocations(info: &wgpu::AdapterInfo, t: Tiling) -> u32 {
    let (least, most) = coop_workgroups(t);
    info.subgroup_max_size
        .next_power_of_two()
        .clamp(least, most)
}

/// The fewest and the most invocations a conv_coop.wgsl workgroup of `t` can have: a
/// multiple of the pixel quads of a row (each invocation stages the same quad every pass),
/// at most the weight quads of a step.
pub fn coop_workgroups(t: Tiling) -> (u32, u32) {
    let Some((channels, pixels)) = t.conv_tile() else {
        return (0, 0);
    };
    let m = match t {
        Tiling::Cooperative { m, .. } => m,
        _ => 0,
    };
    ((pixels / 4) as u32, (m * channels / 4) as u32)
}

/// The variant on cooperative matrices the adapter runs: the first of [`MIXED_TILINGS`] it
/// offers, or why there is none.
pub fn mixed_tiling(gpu: &Gpu) -> Result<Tiling, String> {
    let mut why = None;
    for t in MIXED_TILINGS {
        match not_offered(gpu, t) {
            None => return Ok(t),
            Some(w) => why = why.or(Some(w)),
        }
    }
    Err(why.unwrap_or_default())
}

/// Why the adapter cannot run tiling `t`, if it cannot (never for an f32 tiling).
pub fn not_offered(gpu: &Gpu, t: Tiling) -> Option<String> {
    not_offered_by(&gpu.info, gpu.features, &gpu.cooperative_matrices, t)
}

/// The same from an adapter's (or device's) info, features and cooperative-matrix shapes.
pub fn not_offered_by(
    info: &wgpu::AdapterInfo, features: wgpu::Features,
    offered: &[wgpu::CooperativeMatrixProperties], t: Tiling,
) -> Option<String> {
    use wgpu::CooperativeScalarType::{F16, F32};
    let Tiling::Cooperative { m, .. } = t else {
        return None;
    };
    let name = &info.name;
    if offered.is_empty() {
        return Some(format!(
            "{name} offers no cooperative matrices (tensor cores) to WGSL"
        ));
    }
    if !features.contains(wgpu::Features::SHADER_F16) {
        return Some(format!("{name} offers no shader-f16"));
    }
    let side = m as u32;
    let wanted = |c: &&wgpu::CooperativeMatrixProperties| {
        (c.m_size, c.n_size, c.k_size) == (side, side, side) && c.ab_type == F16 && c.cr_type == F32
    };
    if !offered.iter().any(|c| wanted(&c)) {
        return Some(format!(
            "{name}'s cooperative matrices have no {m}x{m}x{m} f16 shape with f32 accumulation"
        ));
    }
    // A workgroup narrower than a subgroup would leave it partial: every workgroup must hold
    // the largest subgroup (gram_coop.wgsl's m²/4 invocations, conv_coop.wgsl's at most
    // coop_workgroups' most).
    let widest = (side * side / 4).min(coop_workgroups(t).1);
    if info.subgroup_max_size > widest {
        return Some(format!(
            "{name}'s subgroups (up to {}) are wider than {t}'s workgroups ({widest})",
            info.subgroup_max_size
        ));
    }
    None
}

/// `src` with each `(line, replacement)` replaced: the host's rewriting of a shader's
/// constants and types for a variant; a line not found is a bug.
pub(super) fn rewrite(src: &str, replacements: &[(&str, String)]) -> String {
    let mut out = src.to_string();
    for (line, new) in replacements {
        assert!(out.contains(line), "no {line:?} to rewrite");
        out = out.replace(line, new);
    }
    out
}

/// What every launch of a kernel set needs to know besides its buffers.
#[derive(Clone, Copy, Debug)]
pub struct Setup {
    /// How the conv and Gram kernels are tiled; conv weights must be padded to `tiling.pad()`.
    pub tiling: Tiling,
    /// How feature maps are stored.
    pub storage: Storage,
    /// Tiled kernels fold workgroups along x into y past this many ([`MAX_GROUPS`]; the
    /// crate's own tests lower it to exercise the folding on small inputs).
    pub(crate) fold_limit: usize,
    /// The most bytes one binding may span (the adapter's storage-binding limit; tests lower
    /// it): larger feature maps are bound a range of channels at a time ([`Setup::pieces`]).
    pub(crate) binding_limit: u64,
    /// The adapter's alignment of binding offsets.
    pub(crate) align: u64,
    /// Shader modules with wgpu's runtime checks (bounds checks, loop bounding, guarded
    /// integer division) and zero-initialised workgroup memory: [`Checks`].
    pub checks: Checks,
}

/// Whether the kernels' shader modules carry wgpu's runtime checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Checks {
    /// naga's bounds checks on every buffer and array access, bounded loops, guarded
    /// division, and workgroup memory zeroed at the start of each workgroup.
    Checked,
    /// None of them: every kernel checks its own indices against its parameters (loads past
    /// a map's edge read zero by an explicit test, weight rows are padded on the host, tile
    /// stores skip padding), its loops run to parameters, its divisors are sizes (never zero
    /// in a launch), and each GEMM tile writes its workgroup arrays before a barrier and a
    /// read. Tested: the two give the same bits (tests/kernels.rs).
    Unchecked,
}

impl Checks {
    /// `IMPASTO_CHECKED_SHADERS=1` asks for [`Checks::Checked`]; the default is unchecked.
    pub fn from_env() -> Checks {
        match std::env::var("IMPASTO_CHECKED_SHADERS").as_deref() {
            Ok("1") | Ok("true") | Ok("yes") => Checks::Checked,
            _ => Checks::Unchecked,
        }
    }
}

/// A map bound by a range of its channels: the binding, and the index of the range's first
/// element within it (binding offsets must be aligned; channel boundaries need not be).
pub(super) struct Piece<'a> {
    pub bound: Bound<'a>,
    pub base: u32,
}

/// Pieces of a map split by channels start at multiples of this many, so that conv weight
/// columns (vec4s) and register blocks line up with them.
const CHANNEL_QUANTUM: usize = 16;

impl Setup {
    /// Consecutive ranges covering `channels` channels, each small enough to bind every map
    /// in `maps` (`(elements per channel, bytes per element)`) by that range of its channels:
    /// the whole range when it fits, else equal pieces of a multiple of 16 channels (4 at the
    /// least).
    pub(super) fn pieces(&self, channels: usize, maps: &[(usize, usize)]) -> Vec<Range<usize>> {
        let room = self.binding_limit.saturating_sub(self.align + 4);
        let fit = maps
            .iter()
            .map(|&(plane, bytes)| (room / (plane * bytes).max(1) as u64) as usize)
            .min()
            .unwrap_or(channels);
        if fit >= channels {
            return std::iter::once(0..channels).collect();
        }
        let step = if fit >= CHANNEL_QUANTUM {
            fit / CHANNEL_QUANTUM * CHANNEL_QUANTUM
        } else {
            (fit / 4 * 4).max(4)
        };
        (0..channels)
            .step_by(step)
            .map(|c| c..(c + step).min(channels))
            .collect()
    }

    /// Consecutive ranges of whole planes covering an image (or its gradient, Adam's moments)
    /// of `channels` planes of `plane` f32s, each small enough to bind (one plane at the least:
    /// a plane past the limit is refused when the image's buffers are made).
    pub(super) fn planes(&self, channels: usize, plane: usize) -> Vec<Range<usize>> {
        let room = self.binding_limit.saturating_sub(self.align + 4);
        let fit = ((room / (plane * F32).max(1) as u64) as usize).max(1);
        (0..channels)
            .step_by(fit)
            .map(|c| c..(c + fit).min(channels))
            .collect()
    }

    /// Consecutive ranges covering `len` f32s, each small enough to bind (elementwise kernels).
    pub(super) fn spans(&self, len: usize) -> Vec<Range<usize>> {
        let room = self.binding_limit.saturating_sub(self.align + 4) as usize;
        let step = (room / F32 / 64 * 64).max(64);
        (0..len.max(1))
            .step_by(step)
            .map(|s| s..(s + step).min(len))
            .collect()
    }

    /// Channels `range` of the map in `buffer` (`plane` elements of `bytes` each a channel).
    pub(super) fn piece<'a>(
        &self, buffer: &'a wgpu::Buffer, range: &Range<usize>, (plane, bytes): (usize, usize),
    ) -> Piece<'a> {
        let start = (range.start * plane * bytes) as u64;
        let end = ((range.end * plane * bytes) as u64).next_multiple_of(4);
        let offset = start / self.align * self.align;
        Piece {
            bound: Bound {
                buffer,
                range: Some((offset, (end - offset).max(4))),
            },
            base: ((start - offset) / bytes as u64) as u32,
        }
    }
}

/// One pipeline's shader as the host built it (`impasto shaders --out`).
#[derive(Clone, Debug)]
pub struct BuiltShader {
    pub entry: &'static str,
    pub tiling: Tiling,
    pub storage: Storage,
    /// The family's source before the host's substitutions (which file or tiling it is).
    pub family_source: String,
    /// The feature-map aliases switched to f16 (none in f32 storage).
    pub f16_aliases: Vec<String>,
    /// The WGSL handed to wgpu.
    pub source: String,
}

thread_local! {
    static RECORDED: std::cell::RefCell<Option<Vec<BuiltShader>>> = const { std::cell::RefCell::new(None) };
}

/// Runs `build`, recording the WGSL of every pipeline it builds on this thread.
pub fn record_builds<R>(build: impl FnOnce() -> R) -> (R, Vec<BuiltShader>) {
    RECORDED.with(|r| *r.borrow_mut() = Some(Vec::new()));
    let out = build();
    let built = RECORDED.with(|r| r.borrow_mut().take()).unwrap_or_default();
    (out, built)
}

/// Builds one entry point's pipeline, its feature-map aliases switched to f16 when the
/// kernels store feature maps so.
pub(super) struct Builder<'a> {
    pub(super) gpu: &'a Gpu,
    pub(super) setup: Setup,
}

impl Builder<'_> {
    /// Entry point `name` of `src`, binding its parameters' uniform `p` and then the storage
    /// buffers named in `buffers`, in the order its launches pass them.
    pub(super) fn kernel(
        &self, name: &'static str, src: &str, f16_aliases: &[&str], buffers: &[&'static str],
    ) -> Kernel {
        let mut bindings = vec![Binding::params()];
        bindings.extend(bindings_in(src, buffers));
        let aliases = if self.setup.storage == Storage::F16 {
            f16_aliases
        } else {
            &[]
        };
        let source = specialise(src, aliases);
        RECORDED.with(|r| {
            if let Some(built) = r.borrow_mut().as_mut() {
                built.push(BuiltShader {
                    entry: name,
                    tiling: self.setup.tiling,
                    storage: self.setup.storage,
                    family_source: src.to_string(),
                    f16_aliases: aliases.iter().map(|a| a.to_string()).collect(),
                    source: source.clone(),
                });
            }
        });
        let desc = wgpu::ShaderModuleDescriptor {
            label: Some(name),
            source: wgpu::ShaderSource::Wgsl(source.into()),
        };
        let device = &self.gpu.device;
        let module = match self.setup.checks {
            Checks::Checked => device.create_shader_module(desc),
            // SAFETY: the kernels keep their accesses in bounds, their loops finite and their
            // divisors non-zero by construction (see `Checks::Unchecked`), and the tests hold
            // the unchecked modules to the checked ones' bits.
            Checks::Unchecked => unsafe {
                device.create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked())
            },
        };
        let zero_workgroup_memory = self.setup.checks == Checks::Checked;
        Kernel::new(self.gpu, &module, name, &bindings, zero_workgroup_memory)
    }
}
