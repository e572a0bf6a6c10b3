//! 3x3 convolutions (stride 1, padding 1) with bias and ReLU, and their input gradient:
//! `shaders/conv_common.wgsl` (parameters and bindings) joined in front of `conv.wgsl`
//! (register-blocked) or `conv_gemm.wgsl` (workgroup GEMM tiles), and the weight layouts
//! both read.

use bytemuck::{Pod, Zeroable};

use super::setup::{fold_tiles, Builder, Setup, Tiling, F32, GEMM_TILE};
use crate::gpu::{Dispatch, Gpu, Kernel};

pub const COMMON_WGSL: &str = include_str!("../../shaders/conv_common.wgsl");
pub const REGISTERS_WGSL: &str = include_str!("../../shaders/conv.wgsl");
pub const GEMM_WGSL: &str = include_str!("../../shaders/conv_gemm.wgsl");

/// The WGSL the host compiles for a tiling: the common prelude, then conv.wgsl with its
/// channel block substituted, or conv_gemm.wgsl.
pub fn source(tiling: Tiling) -> String {
    let body = match tiling {
        Tiling::Registers(block) => {
            let line = "const CV: u32 = 2u;";
            assert!(REGISTERS_WGSL.contains(line) && block.is_multiple_of(4));
            REGISTERS_WGSL.replace(line, &format!("const CV: u32 = {}u;", block / 4))
        }
        Tiling::Workgroup => GEMM_WGSL.to_string(),
    };
    format!("{COMMON_WGSL}\n{body}")
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct ConvParams {
    cin: u32,
    cout: u32,
    h: u32,
    w: u32,
    row_vec4s: u32,
    _pad: [u32; 3],
}

pub struct ConvKernels {
    pub(super) setup: Setup,
    forward: Kernel,
    backward_input: Kernel,
    backward_input_masked: Kernel,
}

impl ConvKernels {
    pub(super) fn build(b: &Builder<'_>) -> ConvKernels {
        let src = source(b.setup.tiling);
        ConvKernels {
            setup: b.setup,
            forward: b.kernel(
                "conv_forward",
                &src,
                &["Src", "Dst"],
                &["src", "weight", "bias", "dst"],
            ),
            backward_input: b.kernel("conv_backward_input", &src, &[], &["src", "weight", "dst"]),
            backward_input_masked: b.kernel(
                "conv_backward_input_masked",
                &src,
                &["Mask"],
                &["src", "weight", "dst", "mask"],
            ),
        }
    }
}

fn conv_flops(cin: usize, cout: usize, h: usize, w: usize) -> f64 {
    2.0 * 9.0 * (cin * cout * h * w) as f64
}

impl ConvKernels {
    /// Uniforms and workgroups of a conv kernel whose invocations own blocks of `blocked` channels.
    fn launch(
        &self, (cin, cout, h, w): (usize, usize, usize, usize), blocked: usize,
    ) -> (ConvParams, [u32; 3]) {
        let params = ConvParams {
            cin: cin as u32,
            cout: cout as u32,
            h: h as u32,
            w: w as u32,
            row_vec4s: (blocked.next_multiple_of(self.setup.tiling.pad()) / 4) as u32,
            _pad: [0; 3],
        };
        let groups = match self.setup.tiling {
            Tiling::Registers(block) => [
                w.div_ceil(4).div_ceil(8) as u32,
                h.div_ceil(8) as u32,
                blocked.div_ceil(block) as u32,
            ],
            Tiling::Workgroup => fold_tiles(
                (h * w).div_ceil(GEMM_TILE),
                blocked.div_ceil(GEMM_TILE),
                self.setup.fold_limit,
            ),
        };
        (params, groups)
    }

    /// `dst[cout][h][w] = relu(conv3x3(src[cin][h][w]) + bias)`. `weight` holds
    /// `[3][3][cin][cout padded]` and `bias` `[cout]` (see [`pad_forward_weights`]).
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self, gpu: &Gpu, (cin, cout, h, w): (usize, usize, usize, usize), src: &wgpu::Buffer,
        weight: &wgpu::Buffer, bias: &wgpu::Buffer, dst: &wgpu::Buffer,
    ) -> Dispatch {
        // Invocations own blocks of output channels.
        let (params, groups) = self.launch((cin, cout, h, w), cout);
        let bytes = (cin + cout) * h * w * self.setup.storage.bytes() + (9 * cin + 1) * cout * F32;
        self.forward
            .dispatch(gpu, &params, &[src, weight, bias, dst], groups)
            .info(
                format!("{cin}->{cout} {h}x{w}"),
                conv_flops(cin, cout, h, w),
                bytes,
            )
    }

    /// `dst[cin][h][w]` = dL/d(input) from grad = dL/d(output) `[cout][h][w]`, already masked by
    /// this layer's ReLU. With `input_relu` (the layer's input, when it is a ReLU's output),
    /// dst is zeroed where that input is, so it leaves masked for the layer below.
    /// `weight_t` holds `[3][3][cout][cin padded]` (see [`pad_backward_weights`]).
    #[allow(clippy::too_many_arguments)]
    pub fn backward_input(
        &self, gpu: &Gpu, (cin, cout, h, w): (usize, usize, usize, usize), grad: &wgpu::Buffer,
        weight_t: &wgpu::Buffer, input_relu: Option<&wgpu::Buffer>, dst: &wgpu::Buffer,
    ) -> Dispatch {
        // Invocations own blocks of input channels.
        let (params, groups) = self.launch((cin, cout, h, w), cin);
        let bytes = (cout + cin) * h * w * F32 + 9 * cin * cout * F32;
        let d = match input_relu {
            None => self
                .backward_input
                .dispatch(gpu, &params, &[grad, weight_t, dst], groups),
            Some(mask) => self.backward_input_masked.dispatch(
                gpu,
                &params,
                &[grad, weight_t, dst, mask],
                groups,
            ),
        };
        let mask_bytes = input_relu.map_or(0, |_| cin * h * w * self.setup.storage.bytes());
        d.info(
            format!("{cout}->{cin} {h}x{w}"),
            conv_flops(cin, cout, h, w),
            bytes + mask_bytes,
        )
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
    crate::model::vgg19::taps_by_output(hwio, cin, cout, block)
}
