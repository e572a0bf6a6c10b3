//! The weights' input convention applied to the image, and its backward: `shaders/preprocess.wgsl`.

use bytemuck::{Pod, Zeroable};

use super::setup::{groups_1d, Builder, Setup, F32};
use crate::gpu::{Bound, Dispatch, Gpu, Kernel};
use crate::model::Affine;

pub const WGSL: &str = include_str!("../../shaders/preprocess.wgsl");

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PreParams {
    mul: [f32; 4],
    sub: [f32; 4],
    source: [u32; 4],
    hw: u32,
    _pad: [u32; 3],
}

impl PreParams {
    fn new(hw: usize, a: &Affine) -> PreParams {
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
}

pub struct PreprocessKernels {
    pub(super) setup: Setup,
    forward: Kernel,
    backward: Kernel,
    scale_update: Kernel,
}

/// The gradient scale's state at the start ([`PreprocessKernels::backward`]): scale 1.
pub fn initial_grad_scale(scale: f32) -> [u32; 4] {
    [scale.to_bits(), (1.0 / scale).to_bits(), 0, 0]
}

impl PreprocessKernels {
    pub(super) fn build(b: &Builder<'_>) -> PreprocessKernels {
        PreprocessKernels {
            setup: b.setup,
            forward: b.kernel("preprocess", WGSL, &["Input"], &["image", "input"]),
            backward: b.kernel(
                "preprocess_backward",
                WGSL,
                &["Grad"],
                &["grad_input", "grad_image", "grad_scale"],
            ),
            scale_update: b.kernel("grad_scale_update", WGSL, &[], &["grad_scale"]),
        }
    }
}

impl PreprocessKernels {
    /// dst = the network input for the RGB image x `[3][hw]`.
    pub fn forward(
        &self, gpu: &Gpu, hw: usize, affine: &Affine, x: &wgpu::Buffer, dst: &wgpu::Buffer,
    ) -> Dispatch {
        let bytes = 3 * hw * (F32 + self.setup.storage.bytes());
        launch(&self.forward, gpu, (hw, affine), (x, dst), bytes)
    }

    /// dst = dL/dx from grad = dL/d(network input), divided by the gradient scale in
    /// `scale` (its state: [`initial_grad_scale`]), whose overflow flag it raises when the
    /// result is not finite.
    pub fn backward(
        &self, gpu: &Gpu, hw: usize, affine: &Affine, grad: &wgpu::Buffer, dst: &wgpu::Buffer,
        scale: &wgpu::Buffer,
    ) -> Dispatch {
        let gb = self.setup.storage.bytes();
        let bytes = 3 * hw * (gb + F32);
        // The gradient buffers are larger than dL/d(network input) and may be past the binding limit.
        let from = Bound {
            buffer: grad,
            range: Some((0, (3 * hw * gb).next_multiple_of(4) as u64)),
        };
        let bound = [from, Bound::whole(dst), Bound::whole(scale)];
        self.backward
            .dispatch_bound(gpu, &PreParams::new(hw, affine), &bound, groups_1d(3 * hw))
            .info(String::new(), 0.0, bytes)
    }

    /// After a step: halves the scale when the step's gradient overflowed (Adam skipped it).
    pub fn scale_update(&self, gpu: &Gpu, scale: &wgpu::Buffer) -> Dispatch {
        // The kernel reads no parameters; the uniform is bound all the same.
        self.scale_update
            .dispatch(gpu, &PreParams::zeroed(), &[scale], [1, 1, 1])
            .info(String::new(), 0.0, 16)
    }
}

/// Either kernel over the 3·hw elements, reading `from` and writing `to`.
fn launch(
    kernel: &Kernel, gpu: &Gpu, (hw, affine): (usize, &Affine),
    (from, to): (&wgpu::Buffer, &wgpu::Buffer), bytes: usize,
) -> Dispatch {
    let params = PreParams::new(hw, affine);
    kernel
        .dispatch(gpu, &params, &[from, to], groups_1d(3 * hw))
        .info(String::new(), 0.0, bytes)
}
