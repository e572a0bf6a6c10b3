//! The objective evaluated by tiles on the GPU (`pipeline::tiled` has the crops and the method):
//! pass 1's Gram matrices and content loss summed over the tiles, the loss values on the sums,
//! pass 2's backward per tile into the whole image's gradient, TV and the temporal term on
//! the whole image. The step is one list of dispatches (split into submits by
//! `gpu::submit`'s budget), like the untiled objective's.

use anyhow::Result;

use crate::gpu::{submit, Dispatch, Gpu};
use crate::kernels::preprocess::initial_grad_scale;
use crate::kernels::Kernels;
use crate::model::engine::Setup;
use crate::model::tiles::{level, TilePlan};
use crate::model::{Affine, LossConfig, LossValues};
use crate::pipeline::network::GpuConv;
use crate::pipeline::objective::{
    read_losses, w2_host_step, GpuTargets, Objective, Parts, W2Layer,
};
use crate::pipeline::tiled::{CropNets, Layers, TileGrams};
use crate::weights::Weights;

/// The objective, evaluated whole or by tiles (`--tile`).
pub enum Evaluation {
    Whole(Box<Objective>),
    Tiled(Box<TiledObjective>),
}

impl Evaluation {
    /// The dispatches of one forward + backward, with the loss values when `with_losses`.
    pub fn step_dispatches(&self, with_losses: bool) -> Vec<&Dispatch> {
        match self {
            Evaluation::Whole(o) => o.step_dispatches(with_losses),
            Evaluation::Tiled(o) => o.step_dispatches(with_losses),
        }
    }

    /// The dispatches that evaluate the losses only.
    pub fn loss_dispatches(&self) -> Vec<&Dispatch> {
        match self {
            Evaluation::Whole(o) => o.loss_dispatches(),
            Evaluation::Tiled(o) => o.loss_dispatches(),
        }
    }

    pub fn read_losses(&self, gpu: &Gpu) -> Result<LossValues> {
        match self {
            Evaluation::Whole(o) => o.read_losses(gpu),
            Evaluation::Tiled(o) => o.read_losses(gpu),
        }
    }

    /// Submits `d` (dispatches that start with the forward and its loss terms, with the content
    /// loss when `losses`), pausing after the forward for the W2 terms' host part
    /// (`Objective::host_step`) when there are any; `copies` go first.
    pub fn submit(
        &self, gpu: &Gpu, copies: &[(&wgpu::Buffer, &wgpu::Buffer)], d: &[&Dispatch], losses: bool,
    ) -> Result<()> {
        let at = match self {
            Evaluation::Whole(o) => o.host_step_at(),
            Evaluation::Tiled(o) => o.host_step_at(losses),
        };
        match at {
            Some(k) => {
                let k = k.min(d.len());
                crate::gpu::submit(gpu, copies, &d[..k]);
                match self {
                    Evaluation::Whole(o) => o.host_step(gpu)?,
                    Evaluation::Tiled(o) => o.host_step(gpu)?,
                }
                if k < d.len() {
                    crate::gpu::submit(gpu, &[], &d[k..]);
                }
            }
            None => crate::gpu::submit(gpu, copies, d),
        }
        Ok(())
    }

    /// dL/dx, 3 x H x W.
    pub fn grad_x(&self) -> &wgpu::Buffer {
        match self {
            Evaluation::Whole(o) => &o.grad_x,
            Evaluation::Tiled(o) => &o.grad_x,
        }
    }

    /// The gradient scale's state (`kernels::preprocess`).
    pub fn grad_scale(&self) -> &wgpu::Buffer {
        match self {
            Evaluation::Whole(o) => &o.grad_scale,
            Evaluation::Tiled(o) => &o.grad_scale,
        }
    }

    /// Halves the scale after an overflow.
    pub fn scale_update(&self) -> &Dispatch {
        match self {
            Evaluation::Whole(o) => &o.scale_update,
            Evaluation::Tiled(o) => &o.scale_update,
        }
    }
}

pub struct TiledObjective {
    nets: CropNets,
    /// Per tile: pass 1's Gram work, its content targets, its content loss, and pass 2's
    /// backward to its crop's gradient added into `grad_x`.
    grams: Vec<TileGrams>,
    targets: Vec<Vec<Dispatch>>,
    content_loss: Vec<Vec<Dispatch>>,
    backward: Vec<Vec<Dispatch>>,
    /// The style losses of the summed Gram matrices, TV and the temporal term.
    loss_values: Vec<Dispatch>,
    zero_grad: Vec<Dispatch>,
    /// TV's and the temporal term's gradients, on the whole image.
    tail: Vec<Dispatch>,
    pub grad_x: wgpu::Buffer,
    pub grad_scale: wgpu::Buffer,
    pub scale_update: Dispatch,
    pub loss_buf: wgpu::Buffer,
    config: LossConfig,
    style_slots: usize,
    temporal: Option<f64>,
    /// The W2 terms (their Gram matrices are the summed ones), and their loss at the last host
    /// step (between pass 1 and pass 2).
    w2: Vec<W2Layer>,
    w2_loss: std::cell::Cell<f64>,
    /// Buffers only the dispatches use: the targets (the tile's content targets among them),
    /// the whole content targets, the summed Gram matrices, the crop gradient.
    _buffers: (
        GpuTargets,
        Vec<wgpu::Buffer>,
        Vec<wgpu::Buffer>,
        wgpu::Buffer,
    ),
}

/// What the tiled objective is made of besides the setup: the GPU, the kernels, the network's
/// weights and input convention, the image buffer.
pub struct Context<'a> {
    pub gpu: &'a Gpu,
    pub kernels: &'a Kernels,
    pub convs: &'a [GpuConv],
    pub affine: &'a Affine,
    pub x: &'a wgpu::Buffer,
}

impl TiledObjective {
    /// The objective of `s` in tiles of `plan`; `targets` holds the style terms and the
    /// temporal term (its content targets are computed here, by tiles, from `s.content`
    /// written into `x`, unless `dry`).
    pub fn new(
        p: &Context<'_>, s: &Setup<'_, Weights>, plan: TilePlan, mut targets: GpuTargets, dry: bool,
    ) -> Result<TiledObjective> {
        let (gpu, kernels) = (p.gpu, p.kernels);
        let layers = Layers {
            arch: s.arch,
            pooling: s.pooling,
            loss_layers: s.loss.layers(),
            style_layers: &s.loss.style_layers,
            convs: p.convs,
            affine: p.affine,
        };
        let nets = CropNets::new(gpu, kernels, &layers, plan, Some(p.x))?;
        let whole_content = content_targets(p, s, &nets, dry)?;
        targets.content = (s.loss.content_layers.iter())
            .map(|&l| nets.largest[stage(&nets.largest, l)].out_len())
            .map(|len| kernels.feature_map(gpu, "tile content target", len))
            .collect::<Result<_>>()?;
        let (nc, terms) = (s.loss.content_layers.len(), targets.style.len());
        let style_slots = s.loss.style_layers.len() * terms;
        let loss_buf = gpu.storage("loss values", nc + style_slots + 2)?;
        let sums = (s.loss.style_layers.iter())
            .map(|&l| nets.whole[stage(&nets.whole, l)].cout.pow(2))
            .flat_map(|n| (0..terms).map(move |_| n))
            .map(|n| gpu.storage("gram", n))
            .collect::<Result<Vec<_>>>()?;
        let w2 = w2_layers(p, s, &targets, &nets)?;
        let grams = pass1_grams(p, s, (&nets, &targets), (&sums, &w2));
        let tiles = 0..nets.plan.tiles.len();
        let tile_targets = (tiles.clone())
            .map(|t| tile_targets(p, s, &nets, t, (&whole_content, &targets.content)))
            .collect();
        let content_loss = tiles
            .clone()
            .map(|t| content_loss(p, s, &nets, t, (&targets.content, &loss_buf)))
            .collect();
        let (h, w) = nets.plan.size;
        let grad_x = gpu.plane_storage("dL/dx", (3, h * w))?;
        let grad_scale = gpu.storage_from(
            "gradient scale",
            bytemuck::cast_slice(&initial_grad_scale(1.0)),
        )?;
        let (ch, cw) = (nets.largest[0].h, nets.largest[0].w);
        let crop_grad = gpu.storage("tile crop gradient", 3 * ch * cw)?;
        let pass2 = Pass2 {
            nets: &nets,
            targets: &targets,
            sums: &sums,
            w2: &w2,
            grad_scale: &grad_scale,
            crop_grad: &crop_grad,
            grad_x: &grad_x,
        };
        let backward = tiles.map(|t| pass2.backward(p, s, t)).collect();
        Ok(TiledObjective {
            grams,
            targets: tile_targets,
            content_loss,
            backward,
            loss_values: loss_values(p, s, &targets, (&sums, &w2), &loss_buf, &nets),
            zero_grad: kernels.tiles.zero(gpu, 3 * h * w, &grad_x),
            tail: whole_image_grads(p, s, &targets, &grad_x, (h, w)),
            scale_update: kernels.preprocess.scale_update(gpu, &grad_scale),
            grad_x,
            grad_scale,
            loss_buf,
            config: s.loss.clone(),
            style_slots,
            temporal: targets.temporal.as_ref().map(|t| t.2),
            nets,
            w2,
            w2_loss: std::cell::Cell::new(0.0),
            _buffers: (targets, whole_content, sums, crop_grad),
        })
    }

    /// Pass 1 (with the content loss when `losses`): every tile's forward and Gram matrices.
    fn pass1(&self, losses: bool) -> Vec<&Dispatch> {
        let mut d = Vec::new();
        for (t, g) in self.grams.iter().enumerate() {
            d.extend(self.nets.forward(t));
            self.nets.push_grams(&mut d, g);
            if losses {
                d.extend(&self.targets[t]);
                d.extend(&self.content_loss[t]);
            }
        }
        d
    }

    /// The dispatches of one forward + backward, with the loss values when `with_losses`.
    pub fn step_dispatches(&self, with_losses: bool) -> Vec<&Dispatch> {
        let mut d = self.pass1(with_losses);
        if with_losses {
            d.extend(&self.loss_values);
        }
        d.extend(&self.zero_grad);
        // Pass 2 backwards through the tiles: the last one's crop is still in the network.
        let last = self.backward.len() - 1;
        for (t, b) in self.backward.iter().enumerate().rev() {
            if t != last {
                d.extend(self.nets.forward(t));
            }
            d.extend(&self.targets[t]);
            d.extend(b);
        }
        d.extend(&self.tail);
        d
    }

    /// The dispatches that evaluate the losses only (no gradient).
    pub fn loss_dispatches(&self) -> Vec<&Dispatch> {
        let mut d = self.pass1(true);
        d.extend(&self.loss_values);
        d
    }

    pub fn read_losses(&self, gpu: &Gpu) -> Result<LossValues> {
        let slots = (&self.loss_buf, self.style_slots);
        read_losses(gpu, slots, &self.config, self.temporal, self.w2_loss.get())
    }

    /// Where a step's dispatches pause for [`TiledObjective::host_step`]: after pass 1 (with
    /// the content loss when `losses`), when there are W2 terms.
    pub fn host_step_at(&self, losses: bool) -> Option<usize> {
        (!self.w2.is_empty()).then(|| self.pass1(losses).len())
    }

    /// The W2 terms' host part on the Gram matrices summed over the tiles.
    pub fn host_step(&self, gpu: &Gpu) -> Result<()> {
        self.w2_loss
            .set(w2_host_step(gpu, &self._buffers.2, &self.w2)?);
        Ok(())
    }
}

fn stage(stages: &[crate::model::Stage], l: usize) -> usize {
    crate::model::vgg19::conv_stage(stages, l).expect("a loss layer's stage")
}

/// The content layers' whole maps of the content image: each tile's interior of its crop's
/// maps copied into them (the content image is written into `p.x`; `dry`: nothing run).
fn content_targets(
    p: &Context<'_>, s: &Setup<'_, Weights>, nets: &CropNets, dry: bool,
) -> Result<Vec<wgpu::Buffer>> {
    let (gpu, kernels) = (p.gpu, p.kernels);
    let maps = (s.loss.content_layers.iter())
        .map(|&l| {
            kernels.feature_map(
                gpu,
                "content target",
                nets.whole[stage(&nets.whole, l)].out_len(),
            )
        })
        .collect::<Result<Vec<_>>>()?;
    if dry || maps.is_empty() {
        return Ok(maps);
    }
    gpu.write(p.x, &s.content.data);
    let size = nets.plan.size;
    for (t, tile) in nets.plan.tiles.iter().enumerate() {
        let net = nets.net(t);
        let mut copies = Vec::new();
        for (map, &l) in maps.iter().zip(&s.loss.content_layers) {
            let i = net.conv_stage(l);
            let lv = level(&net.stages, i);
            let (a, b) = (tile.interior_at(lv, size), tile.interior_in_crop(lv, size));
            let (ws, ts) = (&nets.whole[i], &net.stages[i]);
            copies.extend(kernels.tiles.copy_rect(
                gpu,
                ts.cout,
                (&net.acts[i], ((ts.h, ts.w), (b.y0, b.x0))),
                (map, ((ws.h, ws.w), (a.y0, a.x0))),
                (a.h(), a.w()),
            ));
        }
        submit(
            gpu,
            &[],
            &nets.forward(t).chain(&copies).collect::<Vec<_>>(),
        );
    }
    gpu.wait()?;
    Ok(maps)
}

/// Tile `t`'s content targets into `tile`'s maps: its crop's own features, and the whole
/// targets `whole` inside its interior.
fn tile_targets(
    p: &Context<'_>, s: &Setup<'_, Weights>, nets: &CropNets, t: usize,
    (whole, tile): (&[wgpu::Buffer], &[wgpu::Buffer]),
) -> Vec<Dispatch> {
    let (net, size, tl) = (nets.net(t), nets.plan.size, &nets.plan.tiles[t]);
    let mut d = Vec::new();
    for ((&l, map), target) in s.loss.content_layers.iter().zip(whole).zip(tile) {
        let i = net.conv_stage(l);
        let lv = level(&net.stages, i);
        let (a, b) = (tl.interior_at(lv, size), tl.interior_in_crop(lv, size));
        let (ws, ts) = (&nets.whole[i], &net.stages[i]);
        let own = ((ts.h, ts.w), (0, 0));
        let copy = &p.kernels.tiles;
        d.extend(copy.copy_rect(
            p.gpu,
            ts.cout,
            (&net.acts[i], own),
            (target, own),
            (ts.h, ts.w),
        ));
        d.extend(copy.copy_rect(
            p.gpu,
            ts.cout,
            (map, ((ws.h, ws.w), (a.y0, a.x0))),
            (target, ((ts.h, ts.w), (b.y0, b.x0))),
            (a.h(), a.w()),
        ));
    }
    d
}

/// Tile `t`'s content loss added into its slots (the first tile's overwrites).
fn content_loss(
    p: &Context<'_>, s: &Setup<'_, Weights>, nets: &CropNets, t: usize,
    (tile, loss_buf): (&[wgpu::Buffer], &wgpu::Buffer),
) -> Vec<Dispatch> {
    let net = nets.net(t);
    let scale = 0.5 / s.loss.content_layers.len() as f32;
    let mut d = Vec::new();
    for (k, (&l, target)) in s.loss.content_layers.iter().zip(tile).enumerate() {
        let i = net.conv_stage(l);
        let len = net.stages[i].out_len();
        let maps = (&net.acts[i], target);
        d.extend((p.kernels.loss).sq_diff_sum_onto(
            p.gpu,
            (len, true),
            scale,
            maps,
            (loss_buf, k),
            t > 0,
        ));
    }
    d
}

/// The style losses of the summed Gram matrices `sums`, TV and the temporal term, into their
/// slots.
fn loss_values(
    p: &Context<'_>, s: &Setup<'_, Weights>, targets: &GpuTargets,
    (sums, w2): (&[wgpu::Buffer], &[W2Layer]), loss_buf: &wgpu::Buffer, nets: &CropNets,
) -> Vec<Dispatch> {
    let (gpu, kernels, cfg) = (p.gpu, p.kernels, s.loss);
    let (nc, ns, terms) = (
        cfg.content_layers.len(),
        cfg.style_layers.len(),
        &targets.style,
    );
    let mut d = Vec::new();
    for (j, &l) in cfg.style_layers.iter().enumerate() {
        let n = nets.whole[stage(&nets.whole, l)].cout;
        for (t, term) in terms.iter().enumerate() {
            let slot = nc + j * terms.len() + t;
            if w2.iter().any(|w| w.gram() == j * terms.len() + t) {
                // (Its loss is the host's.)
                continue;
            }
            let scale = term.term.loss_scale(j, n, cfg.layer_share(j)) as f32;
            let grams = (&sums[j * terms.len() + t], &term.targets[j]);
            d.extend((kernels.loss).sq_diff_sum(
                gpu,
                (n * n, false),
                scale,
                grams,
                (loss_buf, slot),
            ));
        }
    }
    let (h, w) = nets.plan.size;
    let tv_slot = nc + ns * terms.len();
    let image = ((3, h, w), cfg.seamless);
    d.extend((kernels.loss).tv_sum(gpu, image, 1.0, p.x, (loss_buf, tv_slot)));
    if let Some((target, weights, _)) = &targets.temporal {
        let scale = 1.0 / (3 * h * w) as f32;
        let images = (p.x, target, weights);
        d.extend((kernels.loss).temporal_sum(
            gpu,
            (3, h, w),
            scale,
            images,
            (loss_buf, tv_slot + 1),
        ));
    }
    d
}

/// TV's and the temporal term's gradients added into `grad_x`.
fn whole_image_grads(
    p: &Context<'_>, s: &Setup<'_, Weights>, targets: &GpuTargets, grad_x: &wgpu::Buffer,
    (h, w): (usize, usize),
) -> Vec<Dispatch> {
    let mut d = Vec::new();
    if s.loss.tv_weight != 0.0 {
        let image = ((3, h, w), s.loss.seamless);
        let tv = s.loss.tv_weight as f32;
        d.extend(p.kernels.loss.tv_grad(p.gpu, image, tv, p.x, grad_x));
    }
    if let Some((target, weights, lambda)) = &targets.temporal {
        let coef = (lambda / (3 * h * w) as f64) as f32;
        let images = (p.x, target, weights);
        d.extend((p.kernels.loss).temporal_grad(p.gpu, (3, h, w), coef, images, grad_x));
    }
    d
}

/// What pass 2's backward of a tile reads and writes.
struct Pass2<'a> {
    nets: &'a CropNets,
    /// The style terms, and the tile's content targets (set by its `tile_targets` first).
    targets: &'a GpuTargets,
    sums: &'a [wgpu::Buffer],
    w2: &'a [W2Layer],
    grad_scale: &'a wgpu::Buffer,
    crop_grad: &'a wgpu::Buffer,
    grad_x: &'a wgpu::Buffer,
}

impl Pass2<'_> {
    /// Tile `t`'s backward (its crop forwarded, its content targets set): the loss gradients
    /// through its windows, down to its crop's gradient, added into the image's.
    fn backward(&self, p: &Context<'_>, s: &Setup<'_, Weights>, t: usize) -> Vec<Dispatch> {
        let net = self.nets.net(t);
        let windows = self.nets.windows(t, &s.loss.style_layers);
        let parts = Parts {
            gpu: p.gpu,
            kernels: p.kernels,
            net,
            convs: p.convs,
            config: s.loss,
            targets: self.targets,
            grads: &self.nets.grads,
            grad_scale: self.grad_scale,
            window: Some(&windows),
        };
        let mut d = Vec::new();
        for i in (0..net.stages.len()).rev() {
            d.extend(parts.loss_gradients(i, self.sums, self.w2));
            d.extend(parts.stage_backward(i));
        }
        let (ch, cw) = (net.stages[0].h, net.stages[0].w);
        let g0 = parts.grad_of(-1);
        let grad = (p.kernels.preprocess).backward(
            p.gpu,
            ch * cw,
            p.affine,
            g0,
            self.crop_grad,
            self.grad_scale,
        );
        d.push(grad);
        let at = self.nets.crop_at(t);
        d.extend((p.kernels.tiles).add_crop_gradient(p.gpu, at, self.crop_grad, self.grad_x));
        d
    }
}

/// The W2 terms' buffers, one per W2 term and style layer; their Gram matrices are the summed
/// ones (`j · terms + t`).
fn w2_layers(
    p: &Context<'_>, s: &Setup<'_, Weights>, targets: &GpuTargets, nets: &CropNets,
) -> Result<Vec<W2Layer>> {
    let terms = &targets.style;
    let mut out = Vec::new();
    for (j, &l) in s.loss.style_layers.iter().enumerate() {
        let n = nets.whole[stage(&nets.whole, l)].cout;
        for (t, term) in terms.iter().enumerate() {
            if !term.term.w2.is_empty() {
                let at = (j * terms.len() + t, j, n);
                out.push(W2Layer::new(p.gpu, at, &term.term, s.loss.layer_share(j))?);
            }
        }
    }
    Ok(out)
}

/// Each tile's pass-1 Gram work (and its W2 terms' channel sums), added into `sums`.
fn pass1_grams(
    p: &Context<'_>, s: &Setup<'_, Weights>, (nets, targets): (&CropNets, &GpuTargets),
    (sums, w2): (&[wgpu::Buffer], &[W2Layer]),
) -> Vec<TileGrams> {
    let masks: Vec<Option<&[wgpu::Buffer]>> =
        targets.style.iter().map(|t| t.masks.as_deref()).collect();
    let channel: Vec<Option<&wgpu::Buffer>> = (0..sums.len())
        .map(|k| w2.iter().find(|w| w.gram() == k).map(W2Layer::sums))
        .collect();
    (0..nets.plan.tiles.len())
        .map(|t| {
            let terms = (&s.loss.style_layers[..], &masks[..]);
            nets.tile_grams(p.gpu, p.kernels, t, terms, (sums, &channel))
        })
        .collect()
}
