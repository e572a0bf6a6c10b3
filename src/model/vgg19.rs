//! VGG19's layer structure and names. The convolutions are named as Keras names them
//! (`block1_conv1` .. `block5_conv4`); Caffe-style `conv1_1` / `relu1_1` name the same
//! post-ReLU activations.

use anyhow::{bail, Result};

use crate::kernels::Pooling;

/// One convolution of the architecture.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvSpec {
    pub name: String,
    pub cin: usize,
    pub cout: usize,
    /// A 2x2 pooling follows this convolution.
    pub pool_after: bool,
}

/// A stack of 3x3 conv + ReLU layers with 2x2 pooling between blocks.
#[derive(Clone, Debug, PartialEq)]
pub struct Arch {
    pub convs: Vec<ConvSpec>,
}

/// The 16 convolutions of VGG19 as (block, convs in block, channels).
const VGG19_BLOCKS: [(usize, usize, usize); 5] = [
    (1, 2, 64),
    (2, 2, 128),
    (3, 4, 256),
    (4, 4, 512),
    (5, 4, 512),
];

impl Arch {
    pub fn vgg19() -> Arch {
        let mut convs = Vec::new();
        let mut cin = 3;
        for (block, n, channels) in VGG19_BLOCKS {
            for i in 1..=n {
                convs.push(ConvSpec {
                    name: format!("block{block}_conv{i}"),
                    cin,
                    cout: channels,
                    pool_after: i == n,
                });
                cin = channels;
            }
        }
        Arch { convs }
    }

    /// The index of a layer by Keras name, or by Caffe name (`conv3_1`, `relu3_1`).
    pub fn layer_index(&self, name: &str) -> Result<usize> {
        let keras = caffe_to_keras(name).unwrap_or_else(|| name.to_string());
        if let Some(i) = self.convs.iter().position(|c| c.name == keras) {
            return Ok(i);
        }
        let known: Vec<&str> = self.convs.iter().map(|c| c.name.as_str()).collect();
        bail!(
            "unknown layer {name:?}; layers are {} (or Caffe names such as conv1_1 / relu1_1)",
            known.join(", ")
        )
    }

    /// The stages needed to compute conv layers 0..=deepest, with their input shapes.
    /// No pooling is added after the deepest conv: nothing would read it.
    pub fn stages(&self, deepest: usize, h: usize, w: usize, pooling: Pooling) -> Vec<Stage> {
        let mut stages = Vec::new();
        let (mut c, mut h, mut w) = (3, h, w);
        for (i, conv) in self.convs.iter().enumerate().take(deepest + 1) {
            stages.push(Stage {
                op: StageOp::Conv(i),
                cin: c,
                cout: conv.cout,
                h,
                w,
            });
            c = conv.cout;
            if conv.pool_after && i < deepest {
                stages.push(Stage {
                    op: StageOp::Pool(pooling),
                    cin: c,
                    cout: c,
                    h,
                    w,
                });
                h /= 2;
                w /= 2;
            }
        }
        stages
    }
}

fn caffe_to_keras(name: &str) -> Option<String> {
    let rest = name
        .strip_prefix("conv")
        .or_else(|| name.strip_prefix("relu"))?;
    let (b, i) = rest.split_once('_')?;
    let (b, i): (usize, usize) = (b.parse().ok()?, i.parse().ok()?);
    Some(format!("block{b}_conv{i}"))
}

/// The index of the stage that outputs conv layer `layer`, if the stages reach it.
pub fn conv_stage(stages: &[Stage], layer: usize) -> Option<usize> {
    stages.iter().position(|s| s.op == StageOp::Conv(layer))
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum StageOp {
    /// Conv layer index into [`Arch::convs`], with its ReLU.
    Conv(usize),
    Pool(Pooling),
}

/// One step of the forward pass with its input shape (cin x h x w).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stage {
    pub op: StageOp,
    pub cin: usize,
    pub cout: usize,
    pub h: usize,
    pub w: usize,
}

impl Stage {
    pub fn out_hw(&self) -> (usize, usize) {
        match self.op {
            StageOp::Conv(_) => (self.h, self.w),
            StageOp::Pool(_) => (self.h / 2, self.w / 2),
        }
    }
    pub fn out_len(&self) -> usize {
        let (h, w) = self.out_hw();
        self.cout * h * w
    }
}

use crate::gpu::Gpu;
use crate::kernels::{pad_backward_weights, pad_forward_weights, Affine, Dispatch, Kernels};
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
    /// `convs[l]` holds conv layer l, for every layer the stages use.
    pub fn new(
        gpu: &Gpu,
        kernels: &Kernels,
        stages: Vec<Stage>,
        convs: &[GpuConv],
        affine: &Affine,
        x: &wgpu::Buffer,
    ) -> Result<GpuNet> {
        let (h, w) = (stages[0].h, stages[0].w);
        let input = kernels.feature_map(gpu, "network input", 3 * h * w)?;
        let mut forward = vec![kernels.preprocess(gpu, h * w, affine, x, &input)];
        let mut acts: Vec<wgpu::Buffer> = Vec::new();
        for s in &stages {
            let out = kernels.feature_map(gpu, "activation", s.out_len())?;
            let src = acts.last().unwrap_or(&input);
            forward.push(match s.op {
                StageOp::Conv(l) => {
                    let c = &convs[l];
                    kernels.conv_forward(
                        gpu,
                        (s.cin, s.cout, s.h, s.w),
                        src,
                        &c.forward,
                        &c.bias,
                        &out,
                    )
                }
                StageOp::Pool(mode) => {
                    kernels.pool_forward(gpu, (s.cin, s.h, s.w), mode, src, &out)
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
