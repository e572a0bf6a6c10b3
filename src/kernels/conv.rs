//! 3x3 convolutions (stride 1, padding 1) with bias and ReLU, and their input gradient:
//! `shaders/conv_common.wgsl` (parameters and bindings) joined in front of `conv.wgsl`
//! (register-blocked), `conv_gemm.wgsl` (workgroup GEMM tiles) or `conv_coop.wgsl`
//! (cooperative matrices: tensor cores), and the weight layouts they read.

use bytemuck::{Pod, Zeroable};

use super::setup::{fold_tiles, Builder, Setup, Tiling, F32};
use crate::gpu::{Bound, Dispatch, Gpu, Kernel};

pub const COMMON_WGSL: &str = include_str!("../../shaders/conv_common.wgsl");
pub const REGISTERS_WGSL: &str = include_str!("../../shaders/conv.wgsl");
pub const GEMM_WGSL: &str = include_str!("../../shaders/conv_gemm.wgsl");
pub const COOP_WGSL: &str = include_str!("../../shaders/conv_coop.wgsl");

/// conv_coop.wgsl as the host compiles it for cooperative tiling `t`: its extensions, the
/// common prelude, the kernel on m x m matrices with its accumulators a workgroup and
/// workgroups of `invocations` (the adapter's largest subgroup:
/// [`super::setup::coop_invocations`]).
pub fn coop_source(t: Tiling, invocations: u32) -> String {
    let Tiling::Cooperative {
        m,
        channels,
        pixels,
    } = t
    else {
        panic!("{t} is not a cooperative tiling");
    };
    let (least, most) = super::setup::coop_workgroups(t);
    assert!(matches!(m, 8 | 16) && (least..=most).contains(&invocations));
    let body = super::setup::rewrite(
        COOP_WGSL,
        &[
            ("const M: u32 = 16u;", format!("const M: u32 = {m}u;")),
            (
                "const RA: u32 = 2u;",
                format!("const RA: u32 = {}u;", channels / m),
            ),
            (
                "const RB: u32 = 4u;",
                format!("const RB: u32 = {}u;", pixels / m),
            ),
            (
                "const WG: u32 = 32u;",
                format!("const WG: u32 = {invocations}u;"),
            ),
            ("coop_mat16x16", format!("coop_mat{m}x{m}")),
        ],
    );
    format!("enable f16;\nenable wgpu_cooperative_matrix;\n{COMMON_WGSL}\n{body}")
}

/// The WGSL the host compiles for a tiling: the common prelude, then conv.wgsl with its
/// channel block substituted, or conv_gemm.wgsl (conv_coop.wgsl: [`coop_source`]).
pub fn source(tiling: Tiling) -> String {
    let body = match tiling {
        t @ Tiling::Cooperative { .. } => {
            return coop_source(t, super::setup::coop_workgroups(t).0)
        }
        Tiling::Registers(block) => {
            let line = "const CV: u32 = 2u;";
            assert!(REGISTERS_WGSL.contains(line) && block.is_multiple_of(4));
            REGISTERS_WGSL.replace(line, &format!("const CV: u32 = {}u;", block / 4))
        }
        Tiling::Workgroup => GEMM_WGSL.to_string(),
        Tiling::Gemm8 { channels, k } => {
            let mut body = GEMM_WGSL.to_string();
            for (name, default, value) in [
                ("TC", 64, channels),
                ("TK", 16, k),
                ("RC", 4, 8),
                ("RP", 4, 8),
            ] {
                let line = format!("const {name}: u32 = {default}u;");
                assert!(body.contains(&line), "no {line:?} in conv_gemm.wgsl");
                body = body.replace(&line, &format!("const {name}: u32 = {value}u;"));
            }
            body
        }
    };
    format!("{COMMON_WGSL}\n{body}")
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct ConvParams {
    red: u32,
    outs: u32,
    h: u32,
    w: u32,
    row_vec4s: u32,
    red_rows: u32,
    red0: u32,
    out0: u32,
    src_base: u32,
    dst_base: u32,
    mask_base: u32,
    flags: u32,
}

/// Pixels per workgroup of conv_gemm.wgsl's narrow backward (64 invocations of 4).
const NARROW_PIXELS: usize = 256;

/// The most input channels for which the GEMM tilings' backward takes the narrow kernel.
const NARROW_CHANNELS: usize = 4;

const ADD_PREVIOUS: u32 = 1;
const LAST_PIECE: u32 = 2;
const CIRCULAR: u32 = 4;

pub struct ConvKernels {
    pub(super) setup: Setup,
    forward: Kernel,
    backward_input: Kernel,
    backward_input_masked: Kernel,
    backward_input_bitmask: Kernel,
    /// conv_gemm.wgsl's backward for at most [`NARROW_CHANNELS`] input channels (GEMM
    /// tilings only).
    backward_input_narrow: Option<Kernel>,
}

impl ConvKernels {
    pub(super) fn build(b: &Builder<'_>) -> ConvKernels {
        let src = match b.setup.tiling {
            t @ Tiling::Cooperative { .. } => {
                coop_source(t, super::setup::coop_invocations(&b.gpu.info, t))
            }
            t => source(t),
        };
        // (The narrow backward has no cooperative twin: 3 channels would waste the tiles.)
        let narrow_src = match b.setup.tiling {
            Tiling::Cooperative { .. } => source(Tiling::Workgroup),
            _ => src.clone(),
        };
        ConvKernels {
            setup: b.setup,
            forward: b.kernel(
                "conv_forward",
                &src,
                &["Src", "Dst"],
                &["src", "weight", "bias", "dst"],
            ),
            // The backward's src and dst are gradients, stored as feature maps are.
            backward_input: b.kernel(
                "conv_backward_input",
                &src,
                &["Src", "Dst"],
                &["src", "weight", "dst"],
            ),
            backward_input_masked: b.kernel(
                "conv_backward_input_masked",
                &src,
                &["Src", "Dst", "Mask"],
                &["src", "weight", "dst", "mask"],
            ),
            backward_input_bitmask: b.kernel(
                "conv_backward_input_bitmask",
                &src,
                &["Src", "Dst"],
                &["src", "weight", "dst", "mask_bits"],
            ),
            backward_input_narrow: b.setup.tiling.conv_tile().map(|_| {
                b.kernel(
                    "conv_backward_input_narrow",
                    &narrow_src,
                    &["Src", "Dst"],
                    &["src", "weight", "dst"],
                )
            }),
        }
    }
}

fn conv_flops(cin: usize, cout: usize, h: usize, w: usize) -> f64 {
    2.0 * 9.0 * (cin * cout * h * w) as f64
}

/// One conv launch as [`ConvKernels::launch`] takes it: the reduction and output channels
/// (all of them), the map size, the buffers, and their bytes per element.
struct Launch<'a> {
    kernel: &'a Kernel,
    red: usize,
    outs: usize,
    hw: (usize, usize),
    src: (&'a wgpu::Buffer, usize),
    dst: (&'a wgpu::Buffer, usize),
    mask: Option<(&'a wgpu::Buffer, usize)>,
    /// The input's signs as bits (`kernels::signs`), bound whole.
    mask_bits: Option<&'a wgpu::Buffer>,
    weight: &'a wgpu::Buffer,
    bias: Option<&'a wgpu::Buffer>,
    /// The kernel is conv_gemm.wgsl's narrow backward.
    narrow: bool,
    /// Circular padding (`--seamless`) instead of zeros.
    circular: bool,
}

impl ConvKernels {
    /// The dispatches of a launch: one, or, when a map is too large to bind whole, one per
    /// piece of output channels and piece of reduction channels (reduction pieces in order,
    /// each adding to the last; the final one applies the epilogue).
    fn launch(&self, gpu: &Gpu, l: Launch<'_>) -> Vec<Dispatch> {
        let (h, w) = l.hw;
        let setup = &self.setup;
        let mut out_maps = vec![(h * w, l.dst.1)];
        out_maps.extend(l.mask.map(|m| (h * w, m.1)));
        let reds = setup.pieces(l.red, &[(h * w, l.src.1)]);
        let mut dispatches = Vec::new();
        for outs in setup.pieces(l.outs, &out_maps) {
            let dst = setup.piece(l.dst.0, &outs, (h * w, l.dst.1));
            let mask = l.mask.map(|m| setup.piece(m.0, &outs, (h * w, m.1)));
            for (k, red) in reds.iter().enumerate() {
                let src = setup.piece(l.src.0, red, (h * w, l.src.1));
                let params = ConvParams {
                    red: red.len() as u32,
                    outs: outs.len() as u32,
                    h: h as u32,
                    w: w as u32,
                    row_vec4s: (l.outs.next_multiple_of(setup.tiling.pad()) / 4) as u32,
                    red_rows: l.red as u32,
                    red0: red.start as u32,
                    out0: outs.start as u32,
                    src_base: src.base,
                    dst_base: dst.base,
                    mask_base: match (&mask, l.mask_bits) {
                        (Some(m), _) => m.base,
                        // The bits are bound whole: the piece's first element in the map.
                        (None, Some(_)) => (outs.start * h * w) as u32,
                        (None, None) => 0,
                    },
                    flags: if k > 0 { ADD_PREVIOUS } else { 0 }
                        | if k + 1 == reds.len() { LAST_PIECE } else { 0 }
                        | if l.circular { CIRCULAR } else { 0 },
                };
                let groups = match (l.narrow, setup.tiling.conv_tile()) {
                    (true, _) => fold_tiles(
                        (h * w).div_ceil(NARROW_PIXELS),
                        outs.len().div_ceil(4),
                        setup.fold_limit,
                    ),
                    (false, Some((tc, tp))) => fold_tiles(
                        (h * w).div_ceil(tp),
                        outs.len().div_ceil(tc),
                        setup.fold_limit,
                    ),
                    (false, None) => [
                        w.div_ceil(4).div_ceil(8) as u32,
                        h.div_ceil(8) as u32,
                        outs.len().div_ceil(setup.tiling.pad()) as u32,
                    ],
                };
                let mut bound = vec![src.bound, Bound::whole(l.weight)];
                bound.extend(l.bias.map(Bound::whole));
                bound.push(dst.bound);
                bound.extend(mask.as_ref().map(|m| m.bound));
                bound.extend(l.mask_bits.map(Bound::whole));
                let (r, o) = (red.len(), outs.len());
                let bytes = (r * l.src.1 + o * l.dst.1 * (1 + (k > 0) as usize)) * h * w
                    + 9 * r * o * F32
                    + l.mask.map_or(0, |m| o * h * w * m.1);
                let mut detail = format!("{}->{} {h}x{w}", l.red, l.outs);
                if (r, o) != (l.red, l.outs) {
                    detail += &format!(" [{red:?} -> {outs:?}]");
                }
                dispatches.push(l.kernel.dispatch_bound(gpu, &params, &bound, groups).info(
                    detail,
                    conv_flops(r, o, h, w),
                    bytes,
                ));
            }
        }
        dispatches
    }

    /// `dst[cout][h][w] = relu(conv3x3(src[cin][h][w]) + bias)`, zero padding 1 or, with
    /// `circular`, circular padding (`--seamless`). `weight` holds `[3][3][cin][cout padded]`
    /// and `bias` `[cout]` (see [`pad_forward_weights`]).
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self, gpu: &Gpu, ((cin, cout, h, w), circular): ((usize, usize, usize, usize), bool),
        src: &wgpu::Buffer, weight: &wgpu::Buffer, bias: &wgpu::Buffer, dst: &wgpu::Buffer,
    ) -> Vec<Dispatch> {
        let bytes = self.setup.storage.bytes();
        self.launch(
            gpu,
            Launch {
                kernel: &self.forward,
                red: cin,
                outs: cout,
                hw: (h, w),
                src: (src, bytes),
                dst: (dst, bytes),
                mask: None,
                mask_bits: None,
                weight,
                bias: Some(bias),
                narrow: false,
                circular,
            },
        )
    }

    /// `dst[cin][h][w]` = dL/d(input) from grad = dL/d(output) `[cout][h][w]`, already masked by
    /// this layer's ReLU. With `input_relu` (the layer's input, when it is a ReLU's output),
    /// dst is zeroed where that input is, so it leaves masked for the layer below.
    /// `weight_t` holds `[3][3][cout][cin padded]` (see [`pad_backward_weights`]).
    /// `circular` as for [`ConvKernels::forward`].
    #[allow(clippy::too_many_arguments)]
    pub fn backward_input(
        &self, gpu: &Gpu, ((cin, cout, h, w), circular): ((usize, usize, usize, usize), bool),
        grad: &wgpu::Buffer, weight_t: &wgpu::Buffer, input_relu: Option<&wgpu::Buffer>,
        dst: &wgpu::Buffer,
    ) -> Vec<Dispatch> {
        let narrow = (self.backward_input_narrow.as_ref())
            .filter(|_| input_relu.is_none() && cin <= NARROW_CHANNELS);
        let kernel = match (input_relu, narrow) {
            (Some(_), _) => &self.backward_input_masked,
            (None, Some(k)) => k,
            (None, None) => &self.backward_input,
        };
        self.launch(
            gpu,
            Launch {
                kernel,
                red: cout,
                outs: cin,
                hw: (h, w),
                src: (grad, self.setup.storage.bytes()),
                dst: (dst, self.setup.storage.bytes()),
                mask: input_relu.map(|m| (m, self.setup.storage.bytes())),
                mask_bits: None,
                weight: weight_t,
                bias: None,
                narrow: narrow.is_some(),
                circular,
            },
        )
    }

    /// The same, dst zeroed where the layer's input is not positive as `input_signs` (its
    /// signs as bits, `kernels::signs`) say.
    pub fn backward_input_bitmask(
        &self, gpu: &Gpu, ((cin, cout, h, w), circular): ((usize, usize, usize, usize), bool),
        grad: &wgpu::Buffer, weight_t: &wgpu::Buffer, input_signs: &wgpu::Buffer,
        dst: &wgpu::Buffer,
    ) -> Vec<Dispatch> {
        self.launch(
            gpu,
            Launch {
                kernel: &self.backward_input_bitmask,
                red: cout,
                outs: cin,
                hw: (h, w),
                src: (grad, self.setup.storage.bytes()),
                dst: (dst, self.setup.storage.bytes()),
                mask: None,
                mask_bits: Some(input_signs),
                weight: weight_t,
                bias: None,
                narrow: false,
                circular,
            },
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
