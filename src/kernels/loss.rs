//! Loss values and the elementwise / stencil gradients: `shaders/loss.wgsl`. The sums run in
//! one workgroup in a fixed order, so the same inputs give the same bits.

use bytemuck::{Pod, Zeroable};

use super::setup::{groups_1d, Builder, Setup, F32};
use crate::gpu::{Dispatch, Gpu, Kernel};

pub const WGSL: &str = include_str!("../../shaders/loss.wgsl");

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct LossParams {
    len: u32,
    h: u32,
    w: u32,
    slot: u32,
    scale: f32,
    accumulate: u32,
    _pad: [u32; 2],
}

impl LossParams {
    fn new(len: usize, (h, w): (usize, usize), scale: f32) -> LossParams {
        LossParams {
            len: len as u32,
            h: h as u32,
            w: w as u32,
            slot: 0,
            scale,
            accumulate: 0,
            _pad: [0; 2],
        }
    }
}

pub struct LossKernels {
    pub(super) setup: Setup,
    sq_diff_sum: Kernel,
    sq_diff_sum_features: Kernel,
    tv_sum: Kernel,
    content_grad: Kernel,
    tv_grad: Kernel,
}

impl LossKernels {
    pub(super) fn build(b: &Builder<'_>) -> LossKernels {
        LossKernels {
            setup: b.setup,
            sq_diff_sum: b.kernel("sq_diff_sum", WGSL, &[], &["a", "b", "sums"]),
            sq_diff_sum_features: b.kernel("sq_diff_sum", WGSL, &["A", "B"], &["a", "b", "sums"]),
            tv_sum: b.kernel("tv_sum", WGSL, &[], &["sums", "image"]),
            content_grad: b.kernel("content_grad", WGSL, &["A", "B"], &["a", "b", "grad"]),
            tv_grad: b.kernel("tv_grad", WGSL, &[], &["grad", "image"]),
        }
    }
}

impl LossKernels {
    /// `out[slot] = scale · Σ (a − b)²` over `len` values: f32s (Gram matrices), or feature
    /// maps stored as [`super::Kernels::storage`] says when `features`.
    pub fn sq_diff_sum(
        &self, gpu: &Gpu, (len, features): (usize, bool), scale: f32,
        (a, b): (&wgpu::Buffer, &wgpu::Buffer), (out, slot): (&wgpu::Buffer, usize),
    ) -> Dispatch {
        let (kernel, element_bytes) = match features {
            true => (&self.sq_diff_sum_features, self.setup.storage.bytes()),
            false => (&self.sq_diff_sum, F32),
        };
        let params = LossParams {
            slot: slot as u32,
            ..LossParams::new(len, (0, 0), scale)
        };
        kernel.dispatch(gpu, &params, &[a, b, out], [1, 1, 1]).info(
            String::new(),
            0.0,
            2 * len * element_bytes,
        )
    }

    /// `out[slot] = scale · tv(x)` for x `[c][h][w]`.
    pub fn tv_sum(
        &self, gpu: &Gpu, (c, h, w): (usize, usize, usize), scale: f32, x: &wgpu::Buffer,
        (out, slot): (&wgpu::Buffer, usize),
    ) -> Dispatch {
        let params = LossParams {
            slot: slot as u32,
            ..LossParams::new(c, (h, w), scale)
        };
        self.tv_sum
            .dispatch(gpu, &params, &[out, x], [1, 1, 1])
            .info(String::new(), 0.0, c * h * w * F32)
    }

    /// `dst (+)= coef · (feat − target) · [feat > 0]` (feat is post-ReLU).
    #[allow(clippy::too_many_arguments)]
    pub fn content_grad(
        &self, gpu: &Gpu, len: usize, coef: f32, accumulate: bool, feat: &wgpu::Buffer,
        target: &wgpu::Buffer, dst: &wgpu::Buffer,
    ) -> Dispatch {
        let params = LossParams {
            accumulate: accumulate as u32,
            ..LossParams::new(len, (0, 0), coef)
        };
        let bytes = len * (2 * self.setup.storage.bytes() + (1 + accumulate as usize) * F32);
        self.content_grad
            .dispatch(gpu, &params, &[feat, target, dst], groups_1d(len))
            .info(String::new(), 0.0, bytes)
    }

    /// dst += coef · d tv(x) / dx.
    pub fn tv_grad(
        &self, gpu: &Gpu, (c, h, w): (usize, usize, usize), coef: f32, x: &wgpu::Buffer,
        dst: &wgpu::Buffer,
    ) -> Dispatch {
        let params = LossParams::new(c, (h, w), coef);
        self.tv_grad
            .dispatch(gpu, &params, &[dst, x], groups_1d(c * h * w))
            .info(String::new(), 0.0, 3 * c * h * w * F32)
    }
}
