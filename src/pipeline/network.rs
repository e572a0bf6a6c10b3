//! The VGG19 network on the GPU: each conv layer's weights in the layouts its kernels read,
//! and the forward pass for one image size.

use anyhow::Result;

use crate::gpu::Dispatch;
use crate::gpu::Gpu;
use crate::kernels::conv::{pad_backward_weights, pad_forward_weights};
use crate::kernels::Kernels;
use crate::model::convention::Affine;
use crate::model::vgg19::{conv_stage, Stage, StageOp};
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
/// output, and the dispatches that compute them from the image buffer `x`.
pub struct GpuNet {
    pub stages: Vec<Stage>,
    pub input: wgpu::Buffer,
    pub acts: Vec<wgpu::Buffer>,
    pub forward: Vec<Dispatch>,
}

impl GpuNet {
    /// `convs[l]` holds conv layer l, for every layer the stages use. With `pooled`, the
    /// pooling stages write their outputs there (a buffer the forward pass does not otherwise
    /// use, large enough for any of them: each is dead once the next convolution has read
    /// it) instead of into buffers of their own.
    pub fn new(
        gpu: &Gpu, kernels: &Kernels, stages: Vec<Stage>, convs: &[GpuConv], affine: &Affine,
        x: &wgpu::Buffer, pooled: Option<&wgpu::Buffer>,
    ) -> Result<GpuNet> {
        let (h, w) = (stages[0].h, stages[0].w);
        let input = kernels.feature_map(gpu, "network input", 3 * h * w)?;
        let mut forward = vec![kernels.preprocess.forward(gpu, h * w, affine, x, &input)];
        let mut acts: Vec<wgpu::Buffer> = Vec::new();
        for s in &stages {
            let out = match (s.op, pooled) {
                (StageOp::Pool(_), Some(p)) => p.clone(),
                _ => kernels.feature_map(gpu, "activation", s.out_len())?,
            };
            let src = acts.last().unwrap_or(&input);
            forward.push(match s.op {
                StageOp::Conv(l) => {
                    let c = &convs[l];
                    kernels.conv.forward(
                        gpu,
                        (s.cin, s.cout, s.h, s.w),
                        src,
                        &c.forward,
                        &c.bias,
                        &out,
                    )
                }
                StageOp::Pool(mode) => {
                    kernels
                        .pool
                        .forward(gpu, (s.cin, s.h, s.w), mode, src, &out)
                }
            });
            acts.push(out);
        }
        Ok(GpuNet {
            stages,
            input,
            acts,
            forward,
        })
    }

    /// The stage that outputs conv layer `layer`.
    pub fn conv_stage(&self, layer: usize) -> usize {
        conv_stage(&self.stages, layer).expect("layer within the stages")
    }
}
