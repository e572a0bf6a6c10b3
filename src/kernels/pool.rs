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
    _pad: [u32; 3],
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
                &[],
                &["routes", "grad_pooled", "grad_src"],
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

impl PoolKernels {
    /// `dst[c][h/2][w/2]` = 2x2 stride-2 pooling of `src[c][h][w]`, and `routes`
    /// ([`routes_len`] words) for the backward; with `mask` (src is a ReLU's output), no
    /// gradient is routed to src's non-positive elements.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self, gpu: &Gpu, (c, h, w): (usize, usize, usize), mode: Pooling, mask: bool,
        src: &wgpu::Buffer, dst: &wgpu::Buffer, routes: &wgpu::Buffer,
    ) -> Dispatch {
        let params = pool_params(c, h, w, mode, mask);
        let groups = pool_groups(c, h / 2, (w / 2).div_ceil(8));
        self.forward
            .dispatch(gpu, &params, &[src, dst, routes], groups)
            .info(
                format!("{c}x{h}x{w}"),
                (c * h * w) as f64,
                c * (h * w + (h / 2) * (w / 2)) * self.setup.storage.bytes()
                    + routes_len((c, h, w)) * F32,
            )
    }

    /// dst = dL/d(src) `[c][h][w]` from grad = dL/d(output) `[c][h/2][w/2]` and the
    /// forward pass's routes.
    pub fn backward(
        &self, gpu: &Gpu, (c, h, w): (usize, usize, usize), mode: Pooling, routes: &wgpu::Buffer,
        grad: &wgpu::Buffer, dst: &wgpu::Buffer,
    ) -> Dispatch {
        let params = pool_params(c, h, w, mode, false);
        self.backward
            .dispatch(
                gpu,
                &params,
                &[routes, grad, dst],
                pool_groups(c, h.div_ceil(2), w.div_ceil(2)),
            )
            .info(
                format!("{c}x{h}x{w}"),
                (c * h * w) as f64,
                c * h * w * F32 + c * (h / 2) * (w / 2) * F32 + routes_len((c, h, w)) * F32,
            )
    }
}
