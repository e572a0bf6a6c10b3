//! Style masks applied to feature maps: `shaders/mask.wgsl`. The masked Gram matrix and the
//! masked style gradient reuse the Gram kernels on the masked map ([`crate::model::style`]).

use bytemuck::{Pod, Zeroable};

use super::setup::{groups_1d, Builder, Setup, F32};
use crate::gpu::{Bound, Dispatch, Gpu, Kernel};

pub const WGSL: &str = include_str!("../../shaders/mask.wgsl");

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct MaskParams {
    positions: u32,
    len: u32,
    src_base: u32,
    dst_base: u32,
    squared: u32,
    _pad: [u32; 3],
}

pub struct MaskKernels {
    pub(super) setup: Setup,
    mask_features: Kernel,
}

impl MaskKernels {
    pub(super) fn build(b: &Builder<'_>) -> MaskKernels {
        MaskKernels {
            setup: b.setup,
            mask_features: b.kernel(
                "mask_features",
                WGSL,
                &["Src", "Dst"],
                &["src", "mask", "dst"],
            ),
        }
    }

    /// `dst = src ∘ m` (or `src ∘ m²` when `squared`) for maps of `n` channels of `m` positions
    /// (`mask`: m f32 values), by ranges of channels when the maps are too large to bind whole.
    pub fn apply(
        &self, gpu: &Gpu, (n, m): (usize, usize), squared: bool, src: &wgpu::Buffer,
        mask: &wgpu::Buffer, dst: &wgpu::Buffer,
    ) -> Vec<Dispatch> {
        let sb = self.setup.storage.bytes();
        self.setup
            .pieces(n, &[(m, sb)])
            .into_iter()
            .map(|r| {
                let (ps, pd) = (
                    self.setup.piece(src, &r, (m, sb)),
                    self.setup.piece(dst, &r, (m, sb)),
                );
                let len = r.len() * m;
                let params = MaskParams {
                    positions: m as u32,
                    len: len as u32,
                    src_base: ps.base,
                    dst_base: pd.base,
                    squared: squared as u32,
                    _pad: [0; 3],
                };
                let bound = [ps.bound, Bound::whole(mask), pd.bound];
                self.mask_features
                    .dispatch_bound(gpu, &params, &bound, groups_1d(len))
                    .info(
                        format!("{n}x{m}"),
                        len as f64 * (1 + squared as usize) as f64,
                        2 * len * sb + m * F32,
                    )
            })
            .collect()
    }
}
