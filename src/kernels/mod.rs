//! The kernels of style transfer, one file per family beside its shaders (`conv.rs` ↔
//! `shaders/conv*.wgsl`, ...): each file holds its parameters, its pipelines, the launches
//! that turn buffers into [`Dispatch`](crate::gpu::Dispatch)es and, for the convolutions, the weight layouts.
//! [`Kernels`] builds every family's pipelines once per device; `setup.rs` holds what they share.

pub mod adam;
pub mod conv;
pub mod gram;
pub mod loss;
pub mod mask;
pub mod pool;
pub mod precision;
pub mod preprocess;
pub mod setup;
pub mod signs;
pub mod tiles;

use anyhow::Result;

use crate::gpu::Gpu;
use adam::AdamKernels;
use conv::ConvKernels;
use gram::GramKernels;
use loss::LossKernels;
use mask::MaskKernels;
use pool::PoolKernels;
use preprocess::PreprocessKernels;
use setup::{Builder, Setup, MAX_GROUPS};
use signs::SignKernels;
use tiles::TileKernels;

pub use setup::{Checks, Precision, Storage, Tiling, Variants, MIXED_TILINGS, TILINGS};

/// Every WGSL file as the host compiles it (preludes joined; conv.wgsl in its default
/// tiling), by file name, for validation and listing.
pub fn shaders() -> Vec<(&'static str, String)> {
    vec![
        ("conv.wgsl", conv::source(Tiling::Registers(8))),
        ("conv_gemm.wgsl", conv::source(Tiling::Workgroup)),
        ("conv_coop.wgsl", conv::source(Tiling::coop(16, 2, 4))),
        ("pool.wgsl", pool::WGSL.to_string()),
        ("gram.wgsl", gram::source(Tiling::Registers(8))),
        ("gram_gemm.wgsl", gram::source(Tiling::Workgroup)),
        ("gram_coop.wgsl", gram::coop_source(16)),
        ("loss.wgsl", loss::WGSL.to_string()),
        ("mask.wgsl", mask::WGSL.to_string()),
        ("preprocess.wgsl", preprocess::WGSL.to_string()),
        ("adam.wgsl", adam::WGSL.to_string()),
        ("signs.wgsl", signs::WGSL.to_string()),
        ("tiles.wgsl", tiles::WGSL.to_string()),
    ]
}

/// The preludes the host joins in front of other files (parameters and bindings shared by
/// two tilings of one family); validated only as joined.
pub const PRELUDES: [(&str, &str); 2] = [
    ("conv_common.wgsl", conv::COMMON_WGSL),
    ("gram_common.wgsl", gram::COMMON_WGSL),
];

/// Every pipeline impasto uses, built once per device.
pub struct Kernels {
    /// How the conv kernels are tiled; conv weights must be padded to `tiling.pad()`.
    pub tiling: Tiling,
    /// How the Gram and style-gradient kernels are tiled (`impasto tune` may pick another
    /// variant than the convolutions').
    pub gram_tiling: Tiling,
    /// How feature maps are stored; allocate them with [`Kernels::feature_map`].
    pub storage: Storage,
    pub conv: ConvKernels,
    pub pool: PoolKernels,
    pub gram: GramKernels,
    pub loss: LossKernels,
    pub mask: MaskKernels,
    pub preprocess: PreprocessKernels,
    pub adam: AdamKernels,
    pub signs: SignKernels,
    pub tiles: TileKernels,
    /// Whether the shader modules carry wgpu's runtime checks.
    pub checks: Checks,
}

impl Kernels {
    /// The kernels with the tiling chosen for the adapter.
    pub fn new(gpu: &Gpu) -> Result<Kernels> {
        Kernels::with_tiling(gpu, Tiling::for_adapter(&gpu.info))
    }

    pub fn with_tiling(gpu: &Gpu, tiling: Tiling) -> Result<Kernels> {
        Kernels::with_options(gpu, tiling, Storage::F32)
    }

    /// The kernels of `tiling` and `storage`, checked as `IMPASTO_CHECKED_SHADERS` says.
    pub fn with_options(gpu: &Gpu, tiling: Tiling, storage: Storage) -> Result<Kernels> {
        Kernels::with_checks(gpu, tiling, storage, Checks::from_env())
    }

    pub fn with_checks(
        gpu: &Gpu, tiling: Tiling, storage: Storage, checks: Checks,
    ) -> Result<Kernels> {
        Kernels::with_variants(gpu, Variants::uniform(tiling), storage, checks)
    }

    /// The kernels with each family's variant as `v` says.
    pub fn with_variants(
        gpu: &Gpu, v: Variants, storage: Storage, checks: Checks,
    ) -> Result<Kernels> {
        let tiling = v.conv;
        let v = Variants {
            gram: v.gram.gram(),
            ..v
        };
        for t in [v.conv, v.gram] {
            anyhow::ensure!(
                TILINGS.contains(&t) || MIXED_TILINGS.contains(&t),
                "tiling {t} is not one the host can build"
            );
            if let Some(why) = setup::not_offered(gpu, t) {
                anyhow::bail!("{t} runs on cooperative matrices, but {why}");
            }
        }
        anyhow::ensure!(
            storage != Storage::F16 || gpu.features.contains(wgpu::Features::SHADER_F16),
            "--storage f16 needs shader-f16, which {} does not offer; use --storage f32",
            gpu.info.name
        );
        let scope = gpu.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let setup = Setup {
            tiling,
            storage,
            fold_limit: MAX_GROUPS,
            binding_limit: gpu.limits.max_storage_buffer_binding_size,
            align: gpu.limits.min_storage_buffer_offset_alignment as u64,
            checks,
        };
        let b = Builder { gpu, setup };
        let gram_builder = Builder {
            gpu,
            setup: Setup {
                tiling: v.gram,
                ..setup
            },
        };
        let kernels = Kernels {
            tiling,
            gram_tiling: v.gram,
            storage,
            checks,
            conv: ConvKernels::build(&b),
            pool: PoolKernels::build(&b),
            gram: GramKernels::build(&gram_builder),
            loss: LossKernels::build(&b),
            mask: MaskKernels::build(&b),
            preprocess: PreprocessKernels::build(&b),
            adam: AdamKernels::build(&b),
            signs: SignKernels::build(&b),
            tiles: TileKernels::build(&b),
        };
        if let Some(e) = pollster::block_on(scope.pop()) {
            anyhow::bail!("building the compute pipelines failed: {e}");
        }
        Ok(kernels)
    }

    /// The variant each family runs.
    pub fn variants(&self) -> Variants {
        Variants {
            conv: self.tiling,
            gram: self.gram_tiling,
        }
    }

    /// Folds the tiled kernels' workgroups past `limit` instead of the dispatch limit (tests).
    #[cfg(test)]
    pub(crate) fn set_fold_limit(&mut self, limit: usize) {
        self.conv.setup.fold_limit = limit;
        self.gram.setup.fold_limit = limit;
    }

    /// Binds feature maps and gradients by ranges of at most `bytes` (the adapter's limit
    /// by default): the tests lower it to split small maps.
    pub fn set_binding_limit(&mut self, bytes: u64) {
        for setup in [
            &mut self.conv.setup,
            &mut self.pool.setup,
            &mut self.gram.setup,
            &mut self.loss.setup,
            &mut self.mask.setup,
            &mut self.signs.setup,
            &mut self.tiles.setup,
            &mut self.adam.setup,
        ] {
            setup.binding_limit = bytes;
        }
    }

    /// A zeroed buffer for a feature map of `len` values, in this kernel set's storage. It may
    /// exceed the adapter's binding limit: the kernels bind it by ranges of channels.
    pub fn feature_map(&self, gpu: &Gpu, label: &str, len: usize) -> Result<wgpu::Buffer> {
        gpu.map_storage(label, len * self.storage.bytes())
    }
}

#[cfg(test)]
mod fold_tests;
