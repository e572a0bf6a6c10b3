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

/// The buffers a network's forward pass writes: its preprocessed input, every stage's output,
/// each pooling stage's routes and the kept ReLU signs. Made for one size, they serve every
/// smaller network of the same stages (a tiled evaluation's crops: `pipeline::tiled`).
#[derive(Clone)]
pub struct NetBuffers {
    pub input: wgpu::Buffer,
    pub acts: Vec<wgpu::Buffer>,
    pub routes: Vec<Option<wgpu::Buffer>>,
    pub signs: Vec<Option<wgpu::Buffer>>,
}

impl NetBuffers {
    /// The buffers of a network of `stages`, the outputs the backward never reads in `lent`'s.
    pub fn new(
        gpu: &Gpu, kernels: &Kernels, stages: &[Stage], lent: Option<Lent<'_>>,
    ) -> Result<NetBuffers> {
        let (h, w) = (stages[0].h, stages[0].w);
        let input = kernels.feature_map(gpu, "network input", 3 * h * w)?;
        let held = match &lent {
            Some(l) => held(stages, &l.loss_layers),
            None => vec![Held::Own; stages.len()],
        };
        let mut b = NetBuffers {
            input,
            acts: Vec::new(),
            routes: Vec::new(),
            signs: Vec::new(),
        };
        for (i, s) in stages.iter().enumerate() {
            let (out, keep_signs) = match (held[i], &lent) {
                (Held::Lent { lent: k, signs }, Some(lent)) => (lent.buffers[k].clone(), signs),
                _ => (kernels.feature_map(gpu, "activation", s.out_len())?, false),
            };
            b.acts.push(out);
            b.routes.push(match s.op {
                StageOp::Pool(_) => {
                    Some(gpu.storage("pool routes", routes_len((s.cin, s.h, s.w)))?)
                }
                StageOp::Conv(_) => None,
            });
            b.signs.push(match keep_signs {
                true => Some(gpu.storage("relu signs", words(s.out_len()))?),
                false => None,
            });
        }
        Ok(b)
    }
}

impl GpuNet {
    /// `convs[l]` holds conv layer l, for every layer the stages use; `seamless`: circular
    /// padding in every convolution.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        gpu: &Gpu, kernels: &Kernels, stages: Vec<Stage>, convs: &[GpuConv], affine: &Affine,
        x: &wgpu::Buffer, lent: Option<Lent<'_>>, seamless: bool,
    ) -> Result<GpuNet> {
        let buffers = NetBuffers::new(gpu, kernels, &stages, lent)?;
        Ok(GpuNet::on(
            gpu,
            kernels,
            stages,
            &buffers,
            (convs, affine),
            x,
            seamless,
        ))
    }

    /// The network of `stages` writing into `buffers` (made for these stages or larger ones
    /// of the same layers), reading the image buffer `x`.
    pub fn on(
        gpu: &Gpu, kernels: &Kernels, stages: Vec<Stage>, buffers: &NetBuffers,
        (convs, affine): (&[GpuConv], &Affine), x: &wgpu::Buffer, seamless: bool,
    ) -> GpuNet {
        let (h, w) = (stages[0].h, stages[0].w);
        let b = buffers;
        let mut forward = vec![kernels.preprocess.forward(gpu, h * w, affine, x, &b.input)];
        for (i, s) in stages.iter().enumerate() {
            let (src, out) = (if i == 0 { &b.input } else { &b.acts[i - 1] }, &b.acts[i]);
            forward.extend(match s.op {
                StageOp::Conv(l) => {
                    let c = &convs[l];
                    let dims = ((s.cin, s.cout, s.h, s.w), seamless);
                    (kernels.conv).forward(gpu, dims, src, &c.forward, &c.bias, out)
                }
                StageOp::Pool(mode) => {
                    let r = b.routes[i].as_ref().expect("a pooling stage's routes");
                    let after_relu = i > 0 && matches!(stages[i - 1].op, StageOp::Conv(_));
                    let dims = (s.cin, s.h, s.w);
                    (kernels.pool).forward(gpu, dims, mode, after_relu, src, out, r)
                }
            });
            if let Some(bits) = &b.signs[i] {
                forward.extend(kernels.signs.relu_signs(gpu, s.out_len(), out, bits));
            }
        }
        GpuNet {
            stages,
            input: b.input.clone(),
            acts: b.acts.clone(),
            routes: b.routes.clone(),
            signs: b.signs.clone(),
            forward,
            seamless,
        }
    }

    /// The stage that outputs conv layer `layer`.
    pub fn conv_stage(&self, layer: usize) -> usize {
        conv_stage(&self.stages, layer).expect("layer within the stages")
    }
}
