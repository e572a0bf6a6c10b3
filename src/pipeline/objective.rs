//! The style-transfer objective on the GPU (the formulas: [`crate::model::loss`]): content,
//! style and total-variation losses, their gradients flowing down through the network to
//! the image, and the loss readback.

use std::cell::Cell;

use anyhow::Result;

use crate::gpu::Dispatch;
use crate::gpu::Gpu;
use crate::kernels::mask::Window;
use crate::kernels::preprocess::initial_grad_scale;
use crate::kernels::Kernels;
use crate::model::style::StyleTerm;
use crate::model::tiles::Rect;
use crate::model::wasserstein::W2Target;
use crate::model::{Affine, LossConfig, LossValues};
use crate::model::{Stage, StageOp};
use crate::pipeline::network::{GpuConv, GpuNet};

/// Targets uploaded to the GPU: content features per content layer, and the style loss's
/// terms ([`crate::model::style`]).
pub struct GpuTargets {
    pub content: Vec<wgpu::Buffer>,
    pub style: Vec<GpuStyleTerm>,
    /// A video frame's temporal term: the warped previous result, the per-pixel weights, λ.
    pub temporal: Option<(wgpu::Buffer, wgpu::Buffer, f64)>,
}

/// One term of the style loss on the GPU: its target per style layer, and its mask at each
/// style layer's resolution when it has one.
pub struct GpuStyleTerm {
    pub term: StyleTerm,
    pub targets: Vec<wgpu::Buffer>,
    pub masks: Option<Vec<wgpu::Buffer>>,
}

impl GpuStyleTerm {
    pub fn upload(gpu: &Gpu, term: StyleTerm) -> Result<GpuStyleTerm> {
        // A W2 term's gradient matrix takes its Gram buffer's place (`Objective::host_step`):
        // the style gradient's target is then zero.
        let w2 = !term.w2.is_empty();
        let targets = (term.targets.iter())
            .map(|t| match w2 {
                true => gpu.storage("W2 zero target", t.len()),
                false => gpu.storage_from("style target", t),
            })
            .collect::<Result<Vec<_>>>()?;
        let masks = match &term.masks {
            Some(m) => Some(
                m.iter()
                    .map(|m| gpu.storage_from("style mask", m))
                    .collect::<Result<Vec<_>>>()?,
            ),
            None => None,
        };
        Ok(GpuStyleTerm {
            term,
            targets,
            masks,
        })
    }
}

/// A W2 term at one style layer (`model::wasserstein`): the forward's channel sums beside its
/// Gram matrix, and the host's part between the forward and the backward — the loss from the
/// moments read back, dE/dS written over the Gram matrix and the per-channel bias of the
/// gradient.
pub struct W2Layer {
    /// The term's Gram buffer (an index into the grams) and channel count.
    gram: usize,
    n: usize,
    sums: wgpu::Buffer,
    bias: wgpu::Buffer,
    target: W2Target,
    /// Positions of the layer (the term's norm).
    positions: f64,
    /// The term's share of the style loss: the layer's share times the term's weight.
    share: f64,
}

impl W2Layer {
    /// The buffers of `term`'s W2 target at style layer `j` (`n` channels, the layer's share
    /// `share`), whose Gram matrix is `gram` among the objective's.
    pub fn new(
        gpu: &Gpu, (gram, j, n): (usize, usize, usize), term: &StyleTerm, share: f64,
    ) -> Result<W2Layer> {
        Ok(W2Layer {
            gram,
            n,
            sums: gpu.storage("W2 channel sums", n)?,
            bias: gpu.storage("W2 gradient bias", n)?,
            target: term.w2[j].clone(),
            positions: term.norms[j],
            share: share * term.weight,
        })
    }

    /// Where the forward leaves the term's channel sums.
    pub fn sums(&self) -> &wgpu::Buffer {
        &self.sums
    }

    /// Its Gram matrix's index among the objective's.
    pub fn gram(&self) -> usize {
        self.gram
    }
}

/// The W2 terms' host part, after the forward ran: each term's moments read back (its Gram
/// matrix in `grams`, its channel sums), dE/dS written over the Gram matrix and the bias of its
/// gradient beside it. Returns their style loss.
pub fn w2_host_step(gpu: &Gpu, grams: &[wgpu::Buffer], w2: &[W2Layer]) -> Result<f64> {
    let mut loss = 0.0;
    for w in w2 {
        let (g, sums) = (
            gpu.read(&grams[w.gram], w.n * w.n)?,
            gpu.read(&w.sums, w.n)?,
        );
        let mean: Vec<f64> = sums.iter().map(|&v| v as f64 / w.positions).collect();
        let second: Vec<f64> = g.iter().map(|&v| v as f64 / w.positions).collect();
        let value = w.target.evaluate(&mean, &second);
        loss += w.share * value.loss;
        let matrix: Vec<f32> = value.d_second.iter().map(|&v| v as f32).collect();
        let bias: Vec<f32> = value.d_mean.iter().map(|&v| (0.5 * v) as f32).collect();
        gpu.write(&grams[w.gram], &matrix);
        gpu.write(&w.bias, &bias);
    }
    Ok(loss)
}

/// One optimisation step's GPU work, minus the optimiser: forward, losses, backward to dL/dx.
pub struct Objective {
    pub net: GpuNet,
    pub grams: Vec<wgpu::Buffer>,
    /// The W2 terms (none with the Gram loss): the step then pauses after the forward for
    /// [`Objective::host_step`].
    w2: Vec<W2Layer>,
    /// The W2 terms' style loss at the last host step.
    w2_loss: Cell<f64>,
    /// dL/dx, 3 x H x W.
    pub grad_x: wgpu::Buffer,
    /// The gradient scale's state, [scale, 1 / scale, overflow, skipped] as bits
    /// (`kernels::preprocess`), and the dispatch that halves the scale after an overflow.
    pub grad_scale: wgpu::Buffer,
    pub scale_update: Dispatch,
    /// Loss slots: content layers, then style layers x terms, then tv, then temporal.
    pub loss_buf: wgpu::Buffer,
    forward_extra: Vec<Dispatch>,
    loss_values: Vec<Dispatch>,
    backward: Vec<Dispatch>,
    config: LossConfig,
    /// Loss slots of the style terms: style layers x terms.
    style_slots: usize,
    /// λ of a video frame's temporal term (its value is in the slot after tv).
    temporal: Option<f64>,
    /// Buffers only the dispatches use: the gradients (masked maps go through them too).
    _buffers: [wgpu::Buffer; 2],
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

/// A tile's windows on its crop's maps (`pipeline::tiled`), per style layer: the tile's
/// interior in the crop's map, the interior's first row and column in the whole image's map
/// and that map's columns (where a style term's mask is read).
pub struct TileWindows<'a> {
    pub layers: Vec<(Rect, (usize, usize), usize)>,
    /// Bound in place of a mask for terms without one.
    pub no_mask: &'a wgpu::Buffer,
}

/// The gradient buffer idle while stage `i`'s loss gradients are made and after the forward
/// pass: the one stage `i − 1`'s output gradient goes to (written only by stage `i`'s
/// backward, after them; what the forward lent it the backward never reads). A masked or
/// windowed style map is made there, so it needs no buffer of its own.
pub fn scratch_for(grads: &[wgpu::Buffer; 2], i: usize) -> &wgpu::Buffer {
    &grads[i % 2]
}

/// What the objective's dispatches are made from.
pub(super) struct Parts<'a> {
    pub gpu: &'a Gpu,
    pub kernels: &'a Kernels,
    pub net: &'a GpuNet,
    pub convs: &'a [GpuConv],
    pub config: &'a LossConfig,
    pub targets: &'a GpuTargets,
    /// Gradients of consecutive stage outputs alternate between these two buffers, made by
    /// the session before the network (whose pooling outputs live in the first: see
    /// [`gradient_buffers`]).
    pub grads: &'a [wgpu::Buffer; 2],
    pub grad_scale: &'a wgpu::Buffer,
    /// A tile's windows (every style term's map then goes through [`scratch_for`]).
    pub window: Option<&'a TileWindows<'a>>,
}

/// The loss terms' dispatches: the Gram matrices (after the forward pass), and the loss
/// values into their slots.
struct LossDispatches {
    grams: Vec<wgpu::Buffer>,
    w2: Vec<W2Layer>,
    forward_extra: Vec<Dispatch>,
    loss_values: Vec<Dispatch>,
}

impl Parts<'_> {
    /// The gradient buffer of stage `i`'s output (-1: the network's input).
    pub fn grad_of(&self, i: isize) -> &wgpu::Buffer {
        &self.grads[((i + 1) % 2) as usize]
    }

    fn losses(&self, x: &wgpu::Buffer, loss_buf: &wgpu::Buffer) -> Result<LossDispatches> {
        let (gpu, kernels, net, config) = (self.gpu, self.kernels, self.net, self.config);
        let nc = config.content_layers.len();
        let ns = config.style_layers.len();
        let mut out = LossDispatches {
            grams: Vec::new(),
            w2: Vec::new(),
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
        let terms = &self.targets.style;
        for (j, &l) in config.style_layers.iter().enumerate() {
            let i = net.conv_stage(l);
            let s = &net.stages[i];
            let (n, m) = (s.cout, s.h * s.w);
            for (t, term) in terms.iter().enumerate() {
                let g = gpu.storage("gram", n * n)?;
                let f = self.masked_map(&mut out.forward_extra, term, (i, j), false);
                (out.forward_extra).extend(kernels.gram.matrix(gpu, (n, m), f, &g)?);
                if !term.term.w2.is_empty() {
                    let share = config.layer_share(j);
                    let w2 = W2Layer::new(gpu, (out.grams.len(), j, n), &term.term, share)?;
                    let sums = kernels.loss.channel_sums(gpu, (n, m), f, w2.sums(), false);
                    out.forward_extra.extend(sums);
                    out.w2.push(w2);
                    out.grams.push(g);
                    continue;
                }
                out.loss_values.extend(kernels.loss.sq_diff_sum(
                    gpu,
                    (n * n, false),
                    term.term.loss_scale(j, n, config.layer_share(j)) as f32,
                    (&g, &term.targets[j]),
                    (loss_buf, nc + j * terms.len() + t),
                ));
                out.grams.push(g);
            }
        }
        let (h, w) = (net.stages[0].h, net.stages[0].w);
        let tv_slot = nc + ns * terms.len();
        (out.loss_values).extend(kernels.loss.tv_sum(
            gpu,
            ((3, h, w), net.seamless),
            1.0,
            x,
            (loss_buf, tv_slot),
        ));
        if let Some((target, weights, _)) = &self.targets.temporal {
            out.loss_values.extend(kernels.loss.temporal_sum(
                gpu,
                (3, h, w),
                1.0 / (3 * h * w) as f32,
                (x, target, weights),
                (loss_buf, tv_slot + 1),
            ));
        }
        Ok(out)
    }

    /// The map a style term's kernels read at style layer `j` (stage `i`): the layer's output,
    /// or with a mask (or a tile's window), the output times the mask (squared for the
    /// gradient) made into [`scratch_for`] by dispatches pushed onto `d`.
    pub fn masked_map<'b>(
        &'b self, d: &mut Vec<Dispatch>, term: &GpuStyleTerm, (i, j): (usize, usize), squared: bool,
    ) -> &'b wgpu::Buffer {
        let feat = &self.net.acts[i];
        let s = &self.net.stages[i];
        let masked = scratch_for(self.grads, i);
        if let Some(win) = self.window {
            let (inside, at, whole_w) = win.layers[j];
            let w = Window {
                map: (s.h, s.w),
                inside,
                mask: term.masks.as_ref().map(|m| (&m[j], whole_w, at)),
                no_mask: win.no_mask,
            };
            d.extend((self.kernels.mask).window(self.gpu, s.cout, &w, squared, feat, masked));
            return masked;
        }
        let Some(masks) = &term.masks else {
            return feat;
        };
        let dims = (s.cout, s.h * s.w);
        d.extend(
            self.kernels
                .mask
                .apply(self.gpu, dims, squared, feat, &masks[j], masked),
        );
        masked
    }

    /// The loss terms' gradients at stage `i`'s output (when it is a loss layer), added into
    /// its gradient buffer (`w2`: the W2 terms' buffers, for their per-channel part).
    pub fn loss_gradients(
        &self, i: usize, grams: &[wgpu::Buffer], w2: &[W2Layer],
    ) -> Vec<Dispatch> {
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
        if let Some(j) = config.style_layers.iter().position(|&c| c == l) {
            let (n, m) = (s.cout, s.h * s.w);
            let terms = &self.targets.style;
            for (t, term) in terms.iter().enumerate() {
                let index = j * terms.len() + t;
                let layer = w2.iter().find(|w| w.gram == index);
                // W2: dE/dF = (2/M)(D F + b 1ᵀ), D written over the Gram matrix.
                let coef = match layer {
                    Some(w) => (2.0 * config.style_weight * w.share / w.positions) as f32,
                    None => (term.term).grad_coef(j, n, config.layer_share(j), config.style_weight),
                };
                let f = self.masked_map(&mut d, term, (i, j), true);
                d.extend(kernels.gram.style_grad(
                    gpu,
                    (n, m),
                    coef,
                    accumulate,
                    f,
                    &grams[index],
                    &term.targets[j],
                    (gi, self.grad_scale),
                ));
                if let Some(w) = layer {
                    let dst = (gi, self.grad_scale);
                    d.extend(
                        kernels
                            .loss
                            .channel_bias(gpu, (n, m), coef, f, &w.bias, dst),
                    );
                }
                accumulate = true;
            }
        }
        d
    }

    /// Stage `i`'s backward: the gradient of its output taken down to its input's.
    pub fn stage_backward(&self, i: usize) -> Vec<Dispatch> {
        let (gpu, kernels, net) = (self.gpu, self.kernels, self.net);
        let s = &net.stages[i];
        let (gi, below) = (self.grad_of(i as isize), self.grad_of(i as isize - 1));
        let src = if i == 0 { &net.input } else { &net.acts[i - 1] };
        // The gradient for the stage below leaves masked when that stage ends in a ReLU.
        let below_relu = i > 0 && matches!(net.stages[i - 1].op, StageOp::Conv(_));
        match s.op {
            StageOp::Conv(l) => {
                let dims = ((s.cin, s.cout, s.h, s.w), net.seamless);
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
        let ns = config.style_layers.len() * targets.style.len();
        let loss_buf = gpu.storage("loss values", nc + ns + 2)?;
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
            window: None,
        };
        let losses = parts.losses(x, &loss_buf)?;
        let mut backward = Vec::new();
        for i in (0..net.stages.len()).rev() {
            backward.extend(parts.loss_gradients(i, &losses.grams, &losses.w2));
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
            let image = ((3, h, w), config.seamless);
            backward.extend(kernels.loss.tv_grad(gpu, image, tv, x, &grad_x));
        }
        if let Some((target, weights, lambda)) = &targets.temporal {
            let coef = (lambda / (3 * h * w) as f64) as f32;
            let images = (x, target, weights);
            backward.extend(
                kernels
                    .loss
                    .temporal_grad(gpu, (3, h, w), coef, images, &grad_x),
            );
        }
        Ok(Objective {
            net,
            grams: losses.grams,
            w2: losses.w2,
            w2_loss: Cell::new(0.0),
            grad_x,
            scale_update: kernels.preprocess.scale_update(gpu, &grad_scale),
            grad_scale,
            loss_buf,
            forward_extra: losses.forward_extra,
            loss_values: losses.loss_values,
            backward,
            config: config.clone(),
            style_slots: ns,
            temporal: targets.temporal.as_ref().map(|t| t.2),
            _buffers: grads,
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
        let slots = (&self.loss_buf, self.style_slots);
        let v = read_losses(gpu, slots, &self.config, self.temporal, self.w2_loss.get())?;
        Ok(v)
    }

    /// Where a step's dispatches (which start with the forward and its loss terms) pause for
    /// [`Objective::host_step`]: after the forward, when there are W2 terms.
    pub fn host_step_at(&self) -> Option<usize> {
        (!self.w2.is_empty()).then(|| self.net.forward.len() + self.forward_extra.len())
    }

    /// The W2 terms' host part ([`w2_host_step`]), after the forward ran; their loss is kept
    /// for [`Objective::read_losses`].
    pub fn host_step(&self, gpu: &Gpu) -> Result<()> {
        self.w2_loss.set(w2_host_step(gpu, &self.grams, &self.w2)?);
        Ok(())
    }
}

/// The loss values in `loss_buf`'s slots (content layers, then `style_slots`, then tv, then
/// temporal with its λ when there is one), read back, with the style loss the host computed
/// (`host_style`: the W2 terms') added.
pub fn read_losses(
    gpu: &Gpu, (loss_buf, style_slots): (&wgpu::Buffer, usize), config: &LossConfig,
    temporal: Option<f64>, host_style: f64,
) -> Result<LossValues> {
    let nc = config.content_layers.len();
    let ns = style_slots;
    let v = gpu.read(loss_buf, nc + ns + 2)?;
    let content = v[..nc].iter().map(|&x| x as f64).sum();
    let style = host_style + v[nc..nc + ns].iter().map(|&x| x as f64).sum::<f64>();
    let values = config.combine(content, style, v[nc + ns] as f64);
    Ok(match temporal {
        Some(lambda) => values.with_temporal(v[nc + ns + 1] as f64, lambda),
        None => values,
    })
}
