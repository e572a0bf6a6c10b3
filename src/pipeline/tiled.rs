//! The GPU engine's tiled evaluation (`--tile`; the geometry: `model::tiles`; the same passes on
//! the CPU engine: `cpu/tiled.rs`): the objective and its gradient computed a tile at a time,
//! in the memory of the largest tile's crop network, equal to the untiled ones up to the order
//! of f32 sums. The image, its gradient and Adam's state stay whole on the device.
//!
//! Pass 1 forwards every tile's crop and adds the Gram matrices of its interior (every style
//! term's map multiplied by the tile's window: 1, or the term's mask, inside the interior and
//! 0 elsewhere) into the whole image's, and with the losses its content loss (the content
//! target outside the interior set to the tile's own features, so those positions add
//! nothing). Pass 2 forwards each crop again (the last tile of pass 1 is still in the network:
//! pass 2 starts there) and runs the backward with the same windows against the whole image's
//! Gram matrices; the crops' input gradients, added where the halos overlap, make the image's.
//! TV and a video frame's temporal term are computed on the whole image.
//!
//! The crops come in a few sizes (edge tiles are smaller): each size has its network's
//! dispatches, all writing into the buffers of the largest crop's network.

use anyhow::Result;

use crate::gpu::{Dispatch, Gpu};
use crate::kernels::tiles::CropAt;
use crate::kernels::Kernels;
use crate::model::tiles::{level, Tile, TilePlan};
use crate::model::vgg19::{conv_stage, Arch, Stage};
use crate::model::{Affine, Pooling};
use crate::pipeline::network::{GpuConv, GpuNet, Lent, NetBuffers};
use crate::pipeline::objective::{gradient_buffers, scratch_for, TileWindows};

/// What a crop network is made of: the layers, the pooling, and circular padding (never, in a
/// crop: the halos hold what wraps around).
pub struct Layers<'a> {
    pub arch: &'a Arch,
    pub pooling: Pooling,
    /// The loss layers whose outputs the network keeps (the rest go through the lent buffers).
    pub loss_layers: Vec<usize>,
    pub style_layers: &'a [usize],
    pub convs: &'a [GpuConv],
    pub affine: &'a Affine,
}

/// A tiled image's crop networks: one per crop size on shared buffers, each tile's crop of
/// the image, and per size the Gram dispatches of each style layer's windowed map.
pub struct CropNets {
    pub plan: TilePlan,
    /// The whole image's stages, and the largest crop's (shapes only).
    pub whole: Vec<Stage>,
    pub largest: Vec<Stage>,
    nets: Vec<GpuNet>,
    /// Per crop size, per style layer: the Gram matrix of the windowed map (in the idle gradient
    /// buffer, `objective::scratch_for`) into `part`.
    net_grams: Vec<Vec<Vec<Dispatch>>>,
    /// Per tile: its network's index, and its crop of the image into `_crop_x`.
    tiles: Vec<(usize, Vec<Dispatch>)>,
    /// The tile at hand's crop of the image (the crop networks' input): cropped on the device,
    /// or written from the host (`write_crop`).
    crop_x: wgpu::Buffer,
    /// The largest crop network's gradient buffers (lent to the forward pass, used by the
    /// backward).
    pub grads: [wgpu::Buffer; 2],
    /// One tile's Gram matrix, and the stand-in for an absent mask.
    part: wgpu::Buffer,
    no_mask: wgpu::Buffer,
}

/// Where tile `t`'s crop lies in an image of `size`.
fn crop_at(t: &Tile, size: (usize, usize)) -> CropAt {
    CropAt {
        size,
        base: (t.source(t.crop.y0, size.0), t.source(t.crop.x0, size.1)),
        crop: (t.crop.h(), t.crop.w()),
    }
}

impl CropNets {
    /// The networks of `plan`'s crops of the image buffer `image`, or (None) of an image on the
    /// host whose crops the caller writes (`write_crop`): a style image, never on the device
    /// whole, so that any size takes only a crop's memory.
    pub fn new(
        gpu: &Gpu, kernels: &Kernels, layers: &Layers<'_>, plan: TilePlan,
        image: Option<&wgpu::Buffer>,
    ) -> Result<CropNets> {
        let deepest = layers.loss_layers.iter().copied().max().unwrap_or(0);
        let stages_of = |h, w| layers.arch.stages(deepest, h, w, layers.pooling);
        let largest = plan
            .tiles
            .iter()
            .fold((0, 0), |(h, w), t| (h.max(t.crop.h()), w.max(t.crop.w())));
        let big = stages_of(largest.0, largest.1);
        let grads = gradient_buffers(gpu, kernels, &big)?;
        let lent = Lent {
            buffers: &grads,
            loss_layers: layers.loss_layers.clone(),
        };
        let buffers = NetBuffers::new(gpu, kernels, &big, Some(lent))?;
        let crop_x = gpu.storage("tile crop", 3 * largest.0 * largest.1)?;
        let style_maps = layers
            .style_layers
            .iter()
            .map(|&l| &big[conv_stage(&big, l).unwrap()]);
        let part_len = style_maps.map(|s| s.cout * s.cout).max().unwrap_or(1);
        let part = gpu.storage("tile gram", part_len)?;
        let (mut sizes, mut nets, mut net_grams, mut tiles) = (vec![], vec![], vec![], vec![]);
        for t in &plan.tiles {
            let hw = (t.crop.h(), t.crop.w());
            let k = match sizes.iter().position(|&s| s == hw) {
                Some(k) => k,
                None => {
                    let st = stages_of(hw.0, hw.1);
                    let net = (layers.convs, layers.affine);
                    let net = GpuNet::on(gpu, kernels, st, &buffers, net, &crop_x, false);
                    net_grams.push(grams_of(
                        gpu,
                        kernels,
                        &net,
                        layers.style_layers,
                        (&grads, &part),
                    )?);
                    nets.push(net);
                    sizes.push(hw);
                    sizes.len() - 1
                }
            };
            let at = crop_at(t, plan.size);
            let crop = image.map(|x| kernels.tiles.crop(gpu, at, x, &crop_x));
            tiles.push((k, crop.unwrap_or_default()));
        }
        Ok(CropNets {
            whole: stages_of(plan.size.0, plan.size.1),
            largest: big,
            plan,
            nets,
            net_grams,
            tiles,
            crop_x,
            grads,
            part,
            no_mask: gpu.storage("no mask", 1)?,
        })
    }

    /// Writes tile `t`'s crop of the host image `x` (`[3][h][w]`) into the networks' input;
    /// `scratch`: the crop's memory, reused from tile to tile.
    pub fn write_crop(&self, gpu: &Gpu, t: usize, x: &[f32], scratch: &mut Vec<f32>) {
        self.plan.tiles[t].crop_of(x, self.plan.size, scratch);
        gpu.write(&self.crop_x, scratch);
    }

    /// Tile `t`'s network.
    pub fn net(&self, t: usize) -> &GpuNet {
        &self.nets[self.tiles[t].0]
    }

    /// Tile `t`'s crop and its network's forward pass.
    pub fn forward(&self, t: usize) -> impl Iterator<Item = &Dispatch> {
        self.tiles[t].1.iter().chain(&self.net(t).forward)
    }

    /// Tile `t`'s windows at the style layers `style_layers`.
    pub fn windows(&self, t: usize, style_layers: &[usize]) -> TileWindows<'_> {
        let (tile, net) = (&self.plan.tiles[t], self.net(t));
        let layers = (style_layers.iter())
            .map(|&l| {
                let i = net.conv_stage(l);
                let lv = level(&net.stages, i);
                let a = tile.interior_at(lv, self.plan.size);
                (
                    tile.interior_in_crop(lv, self.plan.size),
                    (a.y0, a.x0),
                    self.whole[i].w,
                )
            })
            .collect();
        TileWindows {
            layers,
            no_mask: &self.no_mask,
        }
    }

    /// The dispatches that add tile `t`'s interior Gram matrices into `sums` (per style layer
    /// j, per mask k of `masks` — None: no mask — at `sums[j * masks.len() + k]`); the first
    /// tile overwrites.
    pub fn tile_grams(
        &self, gpu: &Gpu, kernels: &Kernels, t: usize, (style_layers, masks): TermMasks<'_>,
        (sums, channel_sums): (&[wgpu::Buffer], &[Option<&wgpu::Buffer>]),
    ) -> TileGrams {
        let (net, windows) = (self.net(t), self.windows(t, style_layers));
        let mut per = Vec::new();
        for (j, &l) in style_layers.iter().enumerate() {
            let i = net.conv_stage(l);
            let (s, feat, scratch) = (&net.stages[i], &net.acts[i], scratch_for(&self.grads, i));
            let (inside, at, whole_w) = windows.layers[j];
            for (k, mask) in masks.iter().enumerate() {
                let w = crate::kernels::mask::Window {
                    map: (s.h, s.w),
                    inside,
                    mask: mask.map(|m| (&m[j], whole_w, at)),
                    no_mask: &self.no_mask,
                };
                let window = (kernels.mask).window(gpu, s.cout, &w, false, feat, scratch);
                let sum = &sums[j * masks.len() + k];
                let add = kernels
                    .tiles
                    .add_into(gpu, s.cout * s.cout, t == 0, &self.part, sum);
                // A W2 term's channel sums of the windowed map, added over the tiles too.
                let channel = match channel_sums[j * masks.len() + k] {
                    Some(c) => {
                        (kernels.loss).channel_sums(gpu, (s.cout, s.h * s.w), scratch, c, t > 0)
                    }
                    None => Vec::new(),
                };
                per.push((window, j, add, channel));
            }
        }
        TileGrams { tile: t, per }
    }

    /// The dispatches of `g` in order, with its tile's network's Gram dispatches.
    pub fn push_grams<'a>(&'a self, out: &mut Vec<&'a Dispatch>, g: &'a TileGrams) {
        let grams = &self.net_grams[self.tiles[g.tile].0];
        for (window, j, add, channel) in &g.per {
            out.extend(window);
            out.extend(&grams[*j]);
            out.push(add);
            out.extend(channel);
        }
    }

    /// Tile `t`'s crop `at` in the image (for its gradient).
    pub fn crop_at(&self, t: usize) -> CropAt {
        crop_at(&self.plan.tiles[t], self.plan.size)
    }
}

/// The style layers, and the masks of each style term there (None: a term without one).
pub type TermMasks<'a> = (&'a [usize], &'a [Option<&'a [wgpu::Buffer]>]);

/// A tile's pass-1 Gram work: per style layer and term, the window's dispatches, the style
/// layer (whose Gram dispatches its network holds), the add into the sum, and a W2 term's
/// channel sums.
pub struct TileGrams {
    tile: usize,
    per: Vec<(Vec<Dispatch>, usize, Dispatch, Vec<Dispatch>)>,
}

/// Per style layer, the Gram matrix of `net`'s windowed map (in `scratch_for(grads, stage)`)
/// into `part`.
fn grams_of(
    gpu: &Gpu, kernels: &Kernels, net: &GpuNet, style_layers: &[usize],
    (grads, part): (&[wgpu::Buffer; 2], &wgpu::Buffer),
) -> Result<Vec<Vec<Dispatch>>> {
    (style_layers.iter())
        .map(|&l| {
            let i = net.conv_stage(l);
            let s = &net.stages[i];
            (kernels.gram).matrix(gpu, (s.cout, s.h * s.w), scratch_for(grads, i), part)
        })
        .collect()
}

/// The Gram matrices (`[n][n]` per style layer) and channel sums (`[n]`) of an image, `image`
/// (`[3][h][w]`, on the host: each tile's crop uploaded in turn, so the image may be larger
/// than the adapter binds), computed by tiles of `plan` in the memory of one crop's network.
/// `dry`: every buffer made, nothing run (zeros).
#[allow(clippy::type_complexity)]
pub fn grams_by_tiles(
    gpu: &Gpu, kernels: &Kernels, layers: &Layers<'_>, plan: TilePlan, image: &[f32], dry: bool,
) -> Result<(Vec<Vec<f32>>, Vec<Vec<f64>>)> {
    let nets = CropNets::new(gpu, kernels, layers, plan, None)?;
    let sizes: Vec<usize> = (layers.style_layers.iter())
        .map(|&l| nets.whole[conv_stage(&nets.whole, l).unwrap()].cout.pow(2))
        .collect();
    let sums = (sizes.iter())
        .map(|&n| gpu.storage("style gram", n))
        .collect::<Result<Vec<_>>>()?;
    let channels: Vec<usize> = sizes.iter().map(|&n| n.isqrt()).collect();
    let channel_sums = (channels.iter())
        .map(|&n| gpu.storage("style channel sums", n))
        .collect::<Result<Vec<_>>>()?;
    if dry {
        let zeros = |v: &[usize]| v.iter().map(|&n| vec![0.0; n]).collect::<Vec<_>>();
        let sums = channels.iter().map(|&n| vec![0.0; n]).collect();
        return Ok((zeros(&sizes), sums));
    }
    let bound: Vec<Option<&wgpu::Buffer>> = channel_sums.iter().map(Some).collect();
    let mut crop = Vec::new();
    for t in 0..nets.plan.tiles.len() {
        nets.write_crop(gpu, t, image, &mut crop);
        let g = nets.tile_grams(
            gpu,
            kernels,
            t,
            (layers.style_layers, &[None]),
            (&sums, &bound),
        );
        let mut d: Vec<&Dispatch> = nets.forward(t).collect();
        nets.push_grams(&mut d, &g);
        crate::gpu::submit(gpu, &[], &d);
    }
    let grams = (sums.iter().zip(&sizes))
        .map(|(g, &n)| gpu.read(g, n))
        .collect::<Result<Vec<_>>>()?;
    let means = (channel_sums.iter().zip(&channels))
        .map(|(c, &n)| Ok(gpu.read(c, n)?.into_iter().map(f64::from).collect()))
        .collect::<Result<Vec<_>>>()?;
    Ok((grams, means))
}
