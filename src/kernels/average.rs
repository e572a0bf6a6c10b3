//! The moving average of the iterates (`--average`): `shaders/average.wgsl`.

use bytemuck::{Pod, Zeroable};

use super::setup::{groups_1d, Builder, F32};
use crate::gpu::{Dispatch, Gpu, Kernel};

pub const WGSL: &str = include_str!("../../shaders/average.wgsl");

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct AverageParams {
    decay: f32,
    len: u32,
    _pad: [u32; 2],
}

pub struct AverageKernels {
    fold: Kernel,
}

impl AverageKernels {
    pub(super) fn build(b: &Builder<'_>) -> AverageKernels {
        AverageKernels {
            fold: b.kernel("average_fold", WGSL, &[], &["x", "avg"]),
        }
    }

    /// `avg = decay·avg + (1 − decay)·x` over `len` values.
    pub fn fold(
        &self, gpu: &Gpu, decay: f32, len: usize, x: &wgpu::Buffer, avg: &wgpu::Buffer,
    ) -> Dispatch {
        let params = AverageParams {
            decay,
            len: len as u32,
            _pad: [0; 2],
        };
        self.fold
            .dispatch(gpu, &params, &[x, avg], groups_1d(len))
            .info(String::new(), 2.0 * len as f64, 3 * len * F32)
    }
}
