//! Style masks applied to feature maps: `shaders/mask.wgsl`. The masked Gram matrix and the
//! masked style gradient reuse the Gram kernels on the masked map ([`crate::model::style`]).

use bytemuck::{Pod, Zeroable};

use super::setup::{groups_1d, Builder, Setup, F32};
use crate::gpu::{Bound, Dispatch, Gpu, Kernel};
use crate::model::tiles::Rect;

pub const WGSL: &str = include_str!("../../shaders/mask.wgsl");

#[repr(C)]
#[derive(Clone, Copy, Default, Pod, Zeroable)]
struct MaskParams {
    positions: u32,
    len: u32,
    src_base: u32,
    dst_base: u32,
    squared: u32,
    width: u32,
    y0: u32,
    y1: u32,
    x0: u32,
    x1: u32,
    mask_y: u32,
    mask_x: u32,
    mask_w: u32,
    has_mask: u32,
    _pad: [u32; 2],
}

/// A tiled evaluation's window on a crop's map of `map` (rows, columns): the tile's interior
/// there, and the whole image's mask at the map's level with its columns and the interior's
/// first row and column in it (None: 1 inside the interior).
pub struct Window<'a> {
    pub map: (usize, usize),
    pub inside: Rect,
    pub mask: Option<(&'a wgpu::Buffer, usize, (usize, usize))>,
    /// Bound in place of the mask when there is none (one f32).
    pub no_mask: &'a wgpu::Buffer,
}

pub struct MaskKernels {
    pub(super) setup: Setup,
    mask_features: Kernel,
    window_features: Kernel,
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
            window_features: b.kernel(
                "window_features",
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
        let params = MaskParams {
            positions: m as u32,
            squared: squared as u32,
            ..Default::default()
        };
        self.launch(gpu, &self.mask_features, (n, params), (src, mask, dst))
    }

    /// `dst = src ∘ w` (or `src ∘ w²` when `squared`) for a crop's maps of `n` channels, `w`
    /// the tile's window (`window`): 1, or the whole image's mask, inside the tile's interior,
    /// 0 elsewhere.
    pub fn window(
        &self, gpu: &Gpu, n: usize, window: &Window<'_>, squared: bool, src: &wgpu::Buffer,
        dst: &wgpu::Buffer,
    ) -> Vec<Dispatch> {
        let (r, (h, w)) = (window.inside, window.map);
        let (mask, mask_w, (mask_y, mask_x)) = window.mask.unwrap_or((window.no_mask, 0, (0, 0)));
        let params = MaskParams {
            positions: (h * w) as u32,
            squared: squared as u32,
            width: w as u32,
            y0: r.y0 as u32,
            y1: r.y1 as u32,
            x0: r.x0 as u32,
            x1: r.x1 as u32,
            mask_y: mask_y as u32,
            mask_x: mask_x as u32,
            mask_w: mask_w as u32,
            has_mask: window.mask.is_some() as u32,
            ..Default::default()
        };
        self.launch(gpu, &self.window_features, (n, params), (src, mask, dst))
    }

    /// `kernel` over maps of `n` channels of `params.positions`, by ranges of channels.
    fn launch(
        &self, gpu: &Gpu, kernel: &Kernel, (n, params): (usize, MaskParams),
        (src, mask, dst): (&wgpu::Buffer, &wgpu::Buffer, &wgpu::Buffer),
    ) -> Vec<Dispatch> {
        let sb = self.setup.storage.bytes();
        let m = params.positions as usize;
        let squared = params.squared as usize;
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
                    len: len as u32,
                    src_base: ps.base,
                    dst_base: pd.base,
                    ..params
                };
                let bound = [ps.bound, Bound::whole(mask), pd.bound];
                kernel
                    .dispatch_bound(gpu, &params, &bound, groups_1d(len))
                    .info(
                        format!("{n}x{m}"),
                        len as f64 * (1 + squared) as f64,
                        2 * len * sb + m * F32,
                    )
            })
            .collect()
    }
}
