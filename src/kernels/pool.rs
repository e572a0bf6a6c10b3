//! 2x2 stride-2 pooling (max or average) and its backward: `shaders/pool.wgsl`. The forward
//! pass writes each window's routes (1 bit per input element), which is all the backward
//! reads of the input.

use bytemuck::{Pod, Zeroable};

use super::setup::{Builder, Setup, F32};
use crate::gpu::{Dispatch, Gpu, Kernel};
use crate::model::Pooling;

pub const WGSL: &str = include_str!("../../shaders/pool.wgsl");

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PoolParams {
    channels: u32,
    h: u32,
    w: u32,
    mode: u32,
    mask: u32,
    src_base: u32,
    pooled_base: u32,
    routes_base: u32,
    _pad: [u32; 4],
}

pub struct PoolKernels {
    pub(super) setup: Setup,
    forward: Kernel,
    backward: Kernel,
}

impl PoolKernels {
    pub(super) fn build(b: &Builder<'_>) -> PoolKernels {
        PoolKernels {
            setup: b.setup,
            forward: b.kernel(
                "pool_forward",
                WGSL,
                &["Src", "Pooled"],
                &["src", "pooled", "routes"],
            ),
            backward: b.kernel(
                "pool_backward",
                WGSL,
                &["Grad"],
                // In the forward's order: the full-size map, the pooled one, the routes.
                &["grad_src", "grad_pooled", "routes"],
            ),
        }
    }
}

/// u32 words of the routes of a `[c][h][w]` input.
pub fn routes_len((c, h, w): (usize, usize, usize)) -> usize {
    c * (h / 2) * (w / 2).div_ceil(8)
}

/// Workgroups for pool.wgsl's grid of windows: columns along x (64 per group), rows, channels.
fn pool_groups(c: usize, rows: usize, cols: usize) -> [u32; 3] {
    [
        cols.div_ceil(64).max(1) as u32,
        rows.max(1) as u32,
        c as u32,
    ]
}

impl PoolKernels {
    /// One dispatch per range of channels small enough to bind the three maps (the whole
    /// map, unless it is larger than a binding): `maps` are the full-size map, the pooled one
    /// and the routes, each a buffer and its bytes per element; `groups` the workgroups for
    /// a number of channels.
    #[allow(clippy::too_many_arguments)]
    fn launch(
        &self, gpu: &Gpu, kernel: &Kernel, (c, h, w): (usize, usize, usize), mode: Pooling,
        mask: bool, maps: [(&wgpu::Buffer, usize); 3], groups: impl Fn(usize) -> [u32; 3],
        info: impl Fn(usize) -> (f64, usize),
    ) -> Vec<Dispatch> {
        let planes = [h * w, (h / 2) * (w / 2), routes_len((1, h, w))];
        let shapes: Vec<(usize, usize)> =
            planes.iter().zip(&maps).map(|(&p, m)| (p, m.1)).collect();
        let pieces = self.setup.pieces(c, &shapes);
        pieces
            .iter()
            .map(|r| {
                let [full, pooled, routes] =
                    [0, 1, 2].map(|k| self.setup.piece(maps[k].0, r, shapes[k]));
                let params = PoolParams {
                    channels: r.len() as u32,
                    h: h as u32,
                    w: w as u32,
                    mode: (mode == Pooling::Avg) as u32,
                    mask: mask as u32,
                    src_base: full.base,
                    pooled_base: pooled.base,
                    routes_base: routes.base,
                    _pad: [0; 4],
                };
                let bound = [full.bound, pooled.bound, routes.bound];
                let (flops, bytes) = info(r.len());
                let mut detail = format!("{c}x{h}x{w}");
                if pieces.len() > 1 {
                    detail += &format!(" [{r:?}]");
                }
                kernel
                    .dispatch_bound(gpu, &params, &bound, groups(r.len()))
                    .info(detail, flops, bytes)
            })
            .collect()
    }

    /// `dst[c][h/2][w/2]` = 2x2 stride-2 pooling of `src[c][h][w]`, and `routes`
    /// ([`routes_len`] words) for the backward; with `mask` (src is a ReLU's output), no
    /// gradient is routed to src's non-positive elements.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self, gpu: &Gpu, (c, h, w): (usize, usize, usize), mode: Pooling, mask: bool,
        src: &wgpu::Buffer, dst: &wgpu::Buffer, routes: &wgpu::Buffer,
    ) -> Vec<Dispatch> {
        let sb = self.setup.storage.bytes();
        self.launch(
            gpu,
            &self.forward,
            (c, h, w),
            mode,
            mask,
            [(src, sb), (dst, sb), (routes, F32)],
            |c| pool_groups(c, h / 2, (w / 2).div_ceil(8)),
            |c| {
                let bytes = c * (h * w + (h / 2) * (w / 2)) * sb + routes_len((c, h, w)) * F32;
                ((c * h * w) as f64, bytes)
            },
        )
    }

    /// dst = dL/d(src) `[c][h][w]` from grad = dL/d(output) `[c][h/2][w/2]` and the
    /// forward pass's routes.
    pub fn backward(
        &self, gpu: &Gpu, (c, h, w): (usize, usize, usize), mode: Pooling, routes: &wgpu::Buffer,
        grad: &wgpu::Buffer, dst: &wgpu::Buffer,
    ) -> Vec<Dispatch> {
        // Gradients are stored as feature maps are.
        let gb = self.setup.storage.bytes();
        self.launch(
            gpu,
            &self.backward,
            (c, h, w),
            mode,
            false,
            [(dst, gb), (grad, gb), (routes, F32)],
            |c| pool_groups(c, h.div_ceil(2), w.div_ceil(2)),
            |c| {
                let bytes = c * (h * w + (h / 2) * (w / 2)) * gb + routes_len((c, h, w)) * F32;
                ((c * h * w) as f64, bytes)
            },
        )
    }
}
