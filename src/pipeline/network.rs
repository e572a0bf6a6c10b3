//! The VGG19 network on the GPU: each conv layer's weights in the layouts its kernels read,
//! and the forward pass for one image size.

use anyhow::Result;

use crate::gpu::Dispatch;
use crate::gpu::Gpu;
use crate::kernels::conv::{pad_backward_weights, pad_forward_weights};
use crate::kernels::pool::routes_len;
use crate::kernels::signs::words;
use crate::kernels::Kernels;
use crate::model::convention::Affine;
use crate::model::vgg19::{conv_stage, held, Held, Stage, StageOp};
use crate::weights::ConvWeights;

/// A conv layer's parameters on the GPU, in the layouts the forward and backward kernels read.
pub struct GpuConv {
    pub forward: wgpu::Buffer,
    pub bias: wgpu::Buffer,
    pub backward: wgpu::Buffer,
}

impl GpuConv {
    /// Uploads `w` padded for `kernels`' conv tile.
    pub fn upload(gpu: &Gpu, kernels: &Kernels, name: &str, w: &ConvWeights) -> Result<GpuConv> {
        let b = kernels.tiling.pad();
        Ok(GpuConv {
            forward: gpu.storage_from(name, &pad_forward_weights(&w.hwio, w.cin, w.cout, b))?,
            bias: gpu.storage_from(name, &w.bias)?,
            backward: gpu.storage_from(name, &pad_backward_weights(&w.hwio, w.cin, w.cout, b))?,
        })
    }
}

/// The forward pass of the network for one image size: the preprocessed input, every stage's
/// output, each pooling stage's routes, and the dispatches that compute them from the image
/// buffer `x`.
pub struct GpuNet {
    pub stages: Vec<Stage>,
    pub input: wgpu::Buffer,
    pub acts: Vec<wgpu::Buffer>,
    /// Per stage: where a pooling stage's backward sends each gradient (`kernels::pool`).
    pub routes: Vec<Option<wgpu::Buffer>>,
    /// Per stage: the signs of a convolution's output, as bits, when the network keeps only
    /// those for the next convolution's backward (`model::Held`; `kernels::signs`).
    pub signs: Vec<Option<wgpu::Buffer>>,
    pub forward: Vec<Dispatch>,
    /// Circular padding in every convolution (`--seamless`): the backward's too.
    pub seamless: bool,
}

/// Two buffers the forward pass may write the outputs the backward never reads into, instead
/// of buffers of their own (the gradient buffers, idle until the backward): the pooling
/// stages' outputs (dead once the next convolution has read them) go to the first, and the
/// outputs of convolutions that feed a pooling stage and are no loss layer (the backward
/// reads only the pool's routes) to the second.
pub struct Lent<'a> {
    pub buffers: &'a [wgpu::Buffer; 2],
    pub loss_layers: Vec<usize>,
}

impl GpuNet {
    /// `convs[l]` holds conv layer l, for every layer the stages use; `seamless`: circular
    /// padding in every convolution.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        gpu: &Gpu, kernels: &Kernels, stages: Vec<Stage>, convs: &[GpuConv], affine: &Affine,
        x: &wgpu::Buffer, lent: Option<Lent<'_>>, seamless: bool,
    ) -> Result<GpuNet> {
        let (h, w) = (stages[0].h, stages[0].w);
        let input = kernels.feature_map(gpu, "network input", 3 * h * w)?;
        let mut forward = vec![kernels.preprocess.forward(gpu, h * w, affine, x, &input)];
        let mut acts: Vec<wgpu::Buffer> = Vec::new();
        let mut routes = Vec::new();
        let mut signs = Vec::new();
        let held = match &lent {
            Some(l) => held(&stages, &l.loss_layers),
            None => vec![Held::Own; stages.len()],
        };
        for (i, s) in stages.iter().enumerate() {
            let (out, keep_signs) = match (held[i], &lent) {
                (Held::Lent { lent: k, signs }, Some(lent)) => (lent.buffers[k].clone(), signs),
                _ => (kernels.feature_map(gpu, "activation", s.out_len())?, false),
            };
            let src = acts.last().unwrap_or(&input);
            let mut stage_routes = None;
            forward.extend(match s.op {
                StageOp::Conv(l) => {
                    let c = &convs[l];
                    kernels.conv.forward(
                        gpu,
                        ((s.cin, s.cout, s.h, s.w), seamless),
                        src,
                        &c.forward,
                        &c.bias,
                        &out,
                    )
                }
                StageOp::Pool(mode) => {
                    let dims = (s.cin, s.h, s.w);
                    let r = gpu.storage("pool routes", routes_len(dims))?;
                    let after_relu = i > 0 && matches!(stages[i - 1].op, StageOp::Conv(_));
                    let d = kernels
                        .pool
                        .forward(gpu, dims, mode, after_relu, src, &out, &r);
                    stage_routes = Some(r);
                    d
                }
            });
            let stage_signs = match keep_signs {
                true => {
                    let bits = gpu.storage("relu signs", words(s.out_len()))?;
                    forward.extend(kernels.signs.relu_signs(gpu, s.out_len(), &out, &bits));
                    Some(bits)
                }
                false => None,
            };
            acts.push(out);
            routes.push(stage_routes);
            signs.push(stage_signs);
        }
        Ok(GpuNet {
            stages,
            input,
            acts,
            routes,
            signs,
            forward,
            seamless,
        })
    }

    /// The stage that outputs conv layer `layer`.
    pub fn conv_stage(&self, layer: usize) -> usize {
        conv_stage(&self.stages, layer).expect("layer within the stages")
    }
}
