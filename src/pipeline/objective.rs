//! The style-transfer objective on the GPU (the formulas: [`crate::model::loss`]): content,
//! style and total-variation losses, their gradients flowing down through the network to
//! the image, and the loss readback.

use anyhow::Result;

use crate::gpu::Dispatch;
use crate::gpu::Gpu;
use crate::kernels::preprocess::initial_grad_scale;
use crate::kernels::Kernels;
use crate::model::{Affine, LossConfig, LossValues};
use crate::model::{Stage, StageOp};
use crate::pipeline::network::{GpuConv, GpuNet};

/// Targets uploaded to the GPU: content features per content layer, blended Grams per style layer.
pub struct GpuTargets {
    pub content: Vec<wgpu::Buffer>,
    pub style: Vec<wgpu::Buffer>,
}

/// One optimisation step's GPU work, minus the optimiser: forward, losses, backward to dL/dx.
pub struct Objective {
    pub net: GpuNet,
    pub grams: Vec<wgpu::Buffer>,
    /// dL/dx, 3 x H x W.
    pub grad_x: wgpu::Buffer,
    /// The gradient scale's state, [scale, 1 / scale, overflow, skipped] as bits
    /// (`kernels::preprocess`), and the dispatch that halves the scale after an overflow.
    pub grad_scale: wgpu::Buffer,
    pub scale_update: Dispatch,
    /// Loss slots: content layers, then style layers, then tv.
    pub loss_buf: wgpu::Buffer,
    forward_extra: Vec<Dispatch>,
    loss_values: Vec<Dispatch>,
    backward: Vec<Dispatch>,
    config: LossConfig,
    _grads: [wgpu::Buffer; 2],
}

/// The two gradient buffers of a network of `stages`: each holds the largest stage output
/// (or the image). The forward pass borrows them for the outputs the backward never reads
/// (`network::Lent`).
pub fn gradient_buffers(
    gpu: &Gpu, kernels: &Kernels, stages: &[Stage],
) -> Result<[wgpu::Buffer; 2]> {
    let (h, w) = (stages[0].h, stages[0].w);
    let max_len = stages
        .iter()
        .map(Stage::out_len)
        .chain([3 * h * w])
        .max()
        .unwrap();
    // Stored as feature maps are, and like them bound by ranges of channels.
    Ok([
        kernels.feature_map(gpu, "gradient A", max_len)?,
        kernels.feature_map(gpu, "gradient B", max_len)?,
    ])
}

/// What the objective's dispatches are made from.
struct Parts<'a> {
    gpu: &'a Gpu,
    kernels: &'a Kernels,
    net: &'a GpuNet,
    convs: &'a [GpuConv],
    config: &'a LossConfig,
    targets: &'a GpuTargets,
    /// Gradients of consecutive stage outputs alternate between these two buffers, made by
    /// the session before the network (whose pooling outputs live in the first: see
    /// [`gradient_buffers`]).
    grads: &'a [wgpu::Buffer; 2],
    grad_scale: &'a wgpu::Buffer,
}

/// The loss terms' dispatches: the Gram matrices (after the forward pass), and the loss
/// values into their slots.
struct LossDispatches {
    grams: Vec<wgpu::Buffer>,
    forward_extra: Vec<Dispatch>,
    loss_values: Vec<Dispatch>,
}

impl Parts<'_> {
    /// The gradient buffer of stage `i`'s output (-1: the network's input).
    fn grad_of(&self, i: isize) -> &wgpu::Buffer {
        &self.grads[((i + 1) % 2) as usize]
    }

    fn losses(&self, x: &wgpu::Buffer, loss_buf: &wgpu::Buffer) -> Result<LossDispatches> {
        let (gpu, kernels, net, config) = (self.gpu, self.kernels, self.net, self.config);
        let nc = config.content_layers.len();
        let ns = config.style_layers.len();
        let mut out = LossDispatches {
            grams: Vec::new(),
            forward_extra: Vec::new(),
            loss_values: Vec::new(),
        };
        for (k, &l) in config.content_layers.iter().enumerate() {
            let i = net.conv_stage(l);
            let s = &net.stages[i];
            let scale = 0.5 / nc as f32;
            out.loss_values.extend(kernels.loss.sq_diff_sum(
                gpu,
                (s.out_len(), true),
                scale,
                (&net.acts[i], &self.targets.content[k]),
                (loss_buf, k),
            ));
        }
        for (k, &l) in config.style_layers.iter().enumerate() {
            let i = net.conv_stage(l);
            let s = &net.stages[i];
            let (n, m) = (s.cout, s.h * s.w);
            let g = gpu.storage("gram", n * n)?;
            (out.forward_extra).extend(kernels.gram.matrix(gpu, (n, m), &net.acts[i], &g)?);
            let scale = (1.0 / (4.0 * (n * n) as f64 * (m * m) as f64 * ns as f64)) as f32;
            out.loss_values.extend(kernels.loss.sq_diff_sum(
                gpu,
                (n * n, false),
                scale,
                (&g, &self.targets.style[k]),
                (loss_buf, nc + k),
            ));
            out.grams.push(g);
        }
        let (h, w) = (net.stages[0].h, net.stages[0].w);
        (out.loss_values).extend(
            kernels
                .loss
                .tv_sum(gpu, (3, h, w), 1.0, x, (loss_buf, nc + ns)),
        );
        Ok(out)
    }

    /// The loss terms' gradients at stage `i`'s output (when it is a loss layer), added into
    /// its gradient buffer.
    fn loss_gradients(&self, i: usize, grams: &[wgpu::Buffer]) -> Vec<Dispatch> {
        let (gpu, kernels, net, config) = (self.gpu, self.kernels, self.net, self.config);
        let s = &net.stages[i];
        let gi = self.grad_of(i as isize);
        let mut d = Vec::new();
        let StageOp::Conv(l) = s.op else {
            return d;
        };
        // The deepest stage has no gradient from above: its first loss term overwrites.
        let mut accumulate = i != net.stages.len() - 1;
        let nc = config.content_layers.len() as f64;
        let ns = config.style_layers.len() as f64;
        if let Some(k) = config.content_layers.iter().position(|&c| c == l) {
            let coef = (config.content_weight / nc) as f32;
            d.extend(kernels.loss.content_grad(
                gpu,
                s.out_len(),
                coef,
                accumulate,
                &net.acts[i],
                &self.targets.content[k],
                (gi, self.grad_scale),
            ));
            accumulate = true;
        }
        if let Some(k) = config.style_layers.iter().position(|&c| c == l) {
            let (n, m) = (s.cout, s.h * s.w);
            let coef = (config.style_weight / (ns * (n * n) as f64 * (m * m) as f64)) as f32;
            d.extend(kernels.gram.style_grad(
                gpu,
                (n, m),
                coef,
                accumulate,
                &net.acts[i],
                &grams[k],
                &self.targets.style[k],
                (gi, self.grad_scale),
            ));
        }
        d
    }

    /// Stage `i`'s backward: the gradient of its output taken down to its input's.
    fn stage_backward(&self, i: usize) -> Vec<Dispatch> {
        let (gpu, kernels, net) = (self.gpu, self.kernels, self.net);
        let s = &net.stages[i];
        let (gi, below) = (self.grad_of(i as isize), self.grad_of(i as isize - 1));
        let src = if i == 0 { &net.input } else { &net.acts[i - 1] };
        // The gradient for the stage below leaves masked when that stage ends in a ReLU.
        let below_relu = i > 0 && matches!(net.stages[i - 1].op, StageOp::Conv(_));
        match s.op {
            StageOp::Conv(l) => {
                let dims = (s.cin, s.cout, s.h, s.w);
                let weights = &self.convs[l].backward;
                // The stage below may have kept only its output's signs.
                match i.checked_sub(1).and_then(|b| net.signs[b].as_ref()) {
                    Some(bits) if below_relu => kernels
                        .conv
                        .backward_input_bitmask(gpu, dims, gi, weights, bits, below),
                    _ => kernels.conv.backward_input(
                        gpu,
                        dims,
                        gi,
                        weights,
                        below_relu.then_some(src),
                        below,
                    ),
                }
            }
            StageOp::Pool(mode) => {
                let routes = net.routes[i].as_ref().expect("a pooling stage's routes");
                kernels
                    .pool
                    .backward(gpu, (s.cin, s.h, s.w), mode, routes, gi, below)
            }
        }
    }
}

impl Objective {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        gpu: &Gpu, kernels: &Kernels, net: GpuNet, convs: &[GpuConv], config: &LossConfig,
        targets: &GpuTargets, affine: &Affine, x: &wgpu::Buffer, grads: [wgpu::Buffer; 2],
    ) -> Result<Objective> {
        let (h, w) = (net.stages[0].h, net.stages[0].w);
        let nc = config.content_layers.len();
        let ns = config.style_layers.len();
        let loss_buf = gpu.storage("loss values", nc + ns + 1)?;
        let grad_x = gpu.storage("dL/dx", 3 * h * w)?;
        let grad_scale = gpu.storage_from(
            "gradient scale",
            bytemuck::cast_slice(&initial_grad_scale(1.0)),
        )?;
        let parts = Parts {
            gpu,
            kernels,
            net: &net,
            convs,
            config,
            targets,
            grads: &grads,
            grad_scale: &grad_scale,
        };
        let losses = parts.losses(x, &loss_buf)?;
        let mut backward = Vec::new();
        for i in (0..net.stages.len()).rev() {
            backward.extend(parts.loss_gradients(i, &losses.grams));
            backward.extend(parts.stage_backward(i));
        }
        backward.push(kernels.preprocess.backward(
            gpu,
            h * w,
            affine,
            parts.grad_of(-1),
            &grad_x,
            &grad_scale,
        ));
        if config.tv_weight != 0.0 {
            let tv = config.tv_weight as f32;
            backward.push(kernels.loss.tv_grad(gpu, (3, h, w), tv, x, &grad_x));
        }
        Ok(Objective {
            net,
            grams: losses.grams,
            grad_x,
            scale_update: kernels.preprocess.scale_update(gpu, &grad_scale),
            grad_scale,
            loss_buf,
            forward_extra: losses.forward_extra,
            loss_values: losses.loss_values,
            backward,
            config: config.clone(),
            _grads: grads,
        })
    }

    /// The dispatches of one forward + backward, with the loss values when `with_losses`.
    pub fn step_dispatches(&self, with_losses: bool) -> Vec<&Dispatch> {
        let mut d: Vec<&Dispatch> = self.net.forward.iter().chain(&self.forward_extra).collect();
        if with_losses {
            d.extend(&self.loss_values);
        }
        d.extend(&self.backward);
        d
    }

    /// The dispatches that evaluate the losses only (no gradient).
    pub fn loss_dispatches(&self) -> Vec<&Dispatch> {
        self.net
            .forward
            .iter()
            .chain(&self.forward_extra)
            .chain(&self.loss_values)
            .collect()
    }

    /// Reads back the loss values the last recorded loss dispatches produced.
    pub fn read_losses(&self, gpu: &Gpu) -> Result<LossValues> {
        let nc = self.config.content_layers.len();
        let ns = self.config.style_layers.len();
        let v = gpu.read(&self.loss_buf, nc + ns + 1)?;
        let content = v[..nc].iter().map(|&x| x as f64).sum();
        let style = v[nc..nc + ns].iter().map(|&x| x as f64).sum();
        Ok(self.config.combine(content, style, v[nc + ns] as f64))
    }
}
