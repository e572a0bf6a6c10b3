//! The CPU engine's tiled evaluation (`model::tiles` has the geometry): the objective and its
//! gradient computed a tile at a time, in memory bounded by the largest tile's crop, equal to
//! the untiled ones up to the order of f32 sums.
//!
//! Pass 1 forwards every tile's crop and adds the Gram matrices of its interior (every term's
//! mask replaced by a window: 1, or the mask, inside the interior and 0 elsewhere) and its
//! content loss (the content target outside the interior set to the tile's own features, so
//! those positions add nothing). Pass 2 forwards each crop again (backwards through the tiles,
//! pass 1's last still in the network) and runs the backward with the
//! same windows against the whole image's Gram matrices: the loss gradients enter only at
//! interior positions, and the crops' input gradients, added where they overlap, make the
//! image's. TV and a video frame's temporal term are computed on the whole image.

use anyhow::Result;

use super::clock::Clock;
use super::kernels as k;
use super::net::{largest_map, Conv, Net};
use crate::model::tiles::{level, Tile, TilePlan};
use crate::model::vgg19::{Arch, Stage};
use crate::model::{Affine, LossConfig, Pooling};

/// The interior Gram matrices and channel sums of each tile of an image, added up: the
/// image's Gram matrices at the style layers (each `[n][n]`) and its channel sums (`[n]`), in
/// the memory of one tile's network.
pub fn grams_by_tiles(
    tiles: &Tiles, (convs, affine): (&[Conv], &Affine), x: &[f32], cfg: &LossConfig,
    grads: &mut [Vec<f32>; 2],
) -> (Vec<Vec<f32>>, Vec<Vec<f64>>) {
    let (size, whole) = (tiles.plan.size, tiles.whole_stages());
    let channels = |&l: &usize| whole[conv_index(&whole, l)].cout;
    let mut grams: Vec<Vec<f32>> = (cfg.style_layers.iter())
        .map(|l| vec![0.0; channels(l).pow(2)])
        .collect();
    let mut sums: Vec<Vec<f64>> = (cfg.style_layers.iter())
        .map(|l| vec![0.0; channels(l)])
        .collect();
    let (mut masked, mut g, mut parts) = (Vec::new(), Vec::new(), Vec::new());
    tiles.forward_each((convs, affine), x, grads, |t, net| {
        let window = tile_window(t, net, cfg, (&[None], &whole), size);
        let layers = cfg.style_layers.iter().enumerate().zip(&mut grams);
        for (((j, &l), sum), channel_sums) in layers.zip(&mut sums) {
            let s = net.stages[net.stage_of(l)];
            masked.resize(s.cout * k::plane(s.h, s.w), 0.0);
            g.resize(s.cout * s.cout, 0.0);
            let feat = &net.acts[net.stage_of(l)];
            k::mask_features(feat, s.cout, &window[0][j], false, &mut masked);
            k::gram(&masked, s.cout, (s.h, s.w), &mut g, &mut parts);
            sum.iter_mut().zip(&g).for_each(|(a, b)| *a += b);
            k::channel_sums(&masked, s.cout, (s.h, s.w), channel_sums);
        }
    });
    (grams, sums)
}

/// One padded plane per style layer (a term's mask or window).
type Planes = Vec<Vec<f32>>;

/// A session's tiles and what makes a crop's network.
pub(super) struct Tiles {
    pub plan: TilePlan,
    arch: Arch,
    deepest: usize,
    pooling: Pooling,
    loss_layers: Vec<usize>,
}

/// Copies `channels` padded planes' rectangle of `size` from `src` (maps `src_hw`, from
/// `src_at`) to `dst` (maps `dst_hw`, at `dst_at`).
fn copy_rect(
    (src, src_hw, src_at): (&[f32], (usize, usize), (usize, usize)),
    (dst, dst_hw, dst_at): (&mut [f32], (usize, usize), (usize, usize)), channels: usize,
    (rh, rw): (usize, usize),
) {
    let (sp, dp) = (k::plane(src_hw.0, src_hw.1), k::plane(dst_hw.0, dst_hw.1));
    for c in 0..channels {
        for y in 0..rh {
            let s = c * sp + (src_at.0 + y + 1) * (src_hw.1 + 2) + src_at.1 + 1;
            let d = c * dp + (dst_at.0 + y + 1) * (dst_hw.1 + 2) + dst_at.1 + 1;
            dst[d..d + rw].copy_from_slice(&src[s..s + rw]);
        }
    }
}

impl Tiles {
    /// The tiles of side `tile` of the image whose network is `stages` (`arch`'s with
    /// `pooling`, up to the deepest of `loss_layers`).
    pub fn new(
        (arch, pooling, seamless): (&Arch, Pooling, bool), stages: &[Stage],
        loss_layers: Vec<usize>, tile: usize,
    ) -> Result<Tiles> {
        let size = (stages[0].h, stages[0].w);
        let plan = match seamless {
            true => TilePlan::wrapped(stages, size, tile),
            false => TilePlan::new(stages, size, tile),
        };
        let plan = plan.map_err(anyhow::Error::msg)?;
        Ok(Tiles {
            plan,
            arch: arch.clone(),
            deepest: loss_layers.iter().copied().max().unwrap_or(0),
            pooling,
            loss_layers,
        })
    }

    /// The whole image's stages (shapes only).
    pub fn whole_stages(&self) -> Vec<Stage> {
        let (h, w) = self.plan.size;
        self.arch.stages(self.deepest, h, w, self.pooling)
    }

    /// The network stages of a tile's crop.
    pub fn stages(&self, t: &Tile) -> Vec<Stage> {
        (self.arch).stages(self.deepest, t.crop.h(), t.crop.w(), self.pooling)
    }

    /// The network of a tile's crop (its buffers made now).
    pub fn net(&self, t: &Tile) -> Net {
        Net::new(self.stages(t), Some(&self.loss_layers), false)
    }

    /// Forwards each tile's crop of the image `x` and hands the tile and its network to `f`:
    /// one network, made for the largest crop and reshaped for each (fresh memory for every
    /// tile cost minutes of page faults at 8192x6144 in tiles of 2048).
    pub fn forward_each(
        &self, (convs, affine): (&[Conv], &Affine), x: &[f32], grads: &mut [Vec<f32>; 2],
        mut f: impl FnMut(&Tile, &Net),
    ) {
        let mut net = self.net(self.largest_tile());
        let mut crop = Vec::new();
        for t in &self.plan.tiles {
            net.reshape(self.stages(t));
            t.crop_of(x, self.plan.size, &mut crop);
            net.forward(convs, affine, &crop, &mut Clock::default(), Some(grads));
            f(t, &net);
        }
    }

    /// Values in the largest map of any crop's network (the lent gradient buffers' size).
    pub fn largest_map(&self) -> usize {
        (self.plan.tiles.iter())
            .map(|t| {
                let st = (self.arch).stages(self.deepest, t.crop.h(), t.crop.w(), self.pooling);
                largest_map(&st)
            })
            .max()
            .unwrap_or(0)
    }

    /// f32 values of the tile at hand's scratch in a session: its crop and crop gradient
    /// (`[3][h][w]` each), and its content targets at `content_layers`.
    pub fn scratch_len(&self, content_layers: &[usize]) -> usize {
        let t = self.largest_tile();
        let stages = self.stages(t);
        let targets: usize = (content_layers.iter())
            .map(|&l| super::net::padded_len(&stages[conv_index(&stages, l)]))
            .sum();
        6 * t.crop.h() * t.crop.w() + targets
    }

    /// The tile whose crop has the most pixels.
    pub fn largest_tile(&self) -> &Tile {
        let area = |t: &&Tile| t.crop.h() * t.crop.w();
        self.plan
            .tiles
            .iter()
            .max_by_key(area)
            .expect("an image has a tile")
    }

    /// The content layers' whole maps (`whole`: the image's stages), zero.
    pub fn zero_content(&self, whole: &[Stage], loss_layers: &[usize]) -> Vec<Vec<f32>> {
        (loss_layers.iter())
            .map(|&l| whole[conv_index(whole, l)])
            .map(|s| vec![0.0; s.cout * k::plane(s.h, s.w)])
            .collect()
    }

    /// The content layers' whole maps (`whole`: the image's stages), gathered from the tiles'
    /// interiors of the content image `x`.
    pub fn content_targets(
        &self, (convs, affine): (&[Conv], &Affine), x: &[f32], whole: &[Stage],
        (loss_layers, grads): (&[usize], &mut [Vec<f32>; 2]),
    ) -> Vec<Vec<f32>> {
        let size = self.plan.size;
        let mut maps = self.zero_content(whole, loss_layers);
        self.forward_each((convs, affine), x, grads, |t, net| {
            for (map, &l) in maps.iter_mut().zip(loss_layers) {
                let i = net.stage_of(l);
                let lv = level(&net.stages, i);
                let (a, b) = (t.interior_at(lv, size), t.interior_in_crop(lv, size));
                let (ws, ts) = (whole[i], net.stages[i]);
                copy_rect(
                    (&net.acts[i], (ts.h, ts.w), (b.y0, b.x0)),
                    (map, (ws.h, ws.w), (a.y0, a.x0)),
                    ts.cout,
                    (a.h(), a.w()),
                );
            }
        });
        maps
    }
}

fn conv_index(stages: &[Stage], l: usize) -> usize {
    crate::model::vgg19::conv_stage(stages, l).expect("a loss layer's stage")
}

/// The content targets of a tile whose crop `net` just forwarded, as its maps, into `out`
/// (its memory reused from tile to tile): the whole targets `maps` (of the image's stages
/// `whole`) inside its interior, its own features elsewhere (they add nothing there).
pub fn tile_targets(
    t: &Tile, net: &Net, cfg: &LossConfig, (maps, whole): (&[Vec<f32>], &[Stage]),
    size: (usize, usize), out: &mut Vec<Vec<f32>>,
) {
    out.resize_with(cfg.content_layers.len(), Vec::new);
    for ((&l, map), target) in cfg.content_layers.iter().zip(maps).zip(out) {
        let i = net.stage_of(l);
        let lv = level(&net.stages, i);
        let (a, b) = (t.interior_at(lv, size), t.interior_in_crop(lv, size));
        let (ws, ts) = (whole[i], net.stages[i]);
        target.clear();
        target.extend_from_slice(&net.acts[i]);
        copy_rect(
            (map, (ws.h, ws.w), (a.y0, a.x0)),
            (target, (ts.h, ts.w), (b.y0, b.x0)),
            ts.cout,
            (a.h(), a.w()),
        );
    }
}

/// Per style term, per style layer, a tile's window as its network's padded planes: 1 (or
/// the term's mask, from its whole planes `masks`) inside its interior, 0 elsewhere.
pub fn tile_window(
    t: &Tile, net: &Net, cfg: &LossConfig, (masks, whole): (&[Option<Planes>], &[Stage]),
    size: (usize, usize),
) -> Vec<Vec<Vec<f32>>> {
    (masks.iter())
        .map(|mask| {
            (cfg.style_layers.iter().enumerate())
                .map(|(j, &l)| {
                    let i = net.stage_of(l);
                    let lv = level(&net.stages, i);
                    let (a, b) = (t.interior_at(lv, size), t.interior_in_crop(lv, size));
                    let (ws, ts) = (whole[i], net.stages[i]);
                    let mut plane = vec![0.0; k::plane(ts.h, ts.w)];
                    match mask {
                        Some(planes) => copy_rect(
                            (&planes[j], (ws.h, ws.w), (a.y0, a.x0)),
                            (&mut plane, (ts.h, ts.w), (b.y0, b.x0)),
                            1,
                            (a.h(), a.w()),
                        ),
                        // (No whole plane of ones: only the interior is written.)
                        None => {
                            for y in b.y0..b.y1 {
                                let row = (y + 1) * (ts.w + 2) + 1;
                                plane[row + b.x0..row + b.x1].fill(1.0);
                            }
                        }
                    }
                    plane
                })
                .collect()
        })
        .collect()
}

/// Adds a crop's input gradient (`g0`, dL/d(network input) as the crop network's padded
/// maps) into the image's, `grad_x` (`[3][h][w]`), through the preprocessing's backward into
/// `g` (memory reused from tile to tile), wrapping around where the tile's halos do.
pub fn add_crop_gradient(
    g0: &[f32], t: &Tile, affine: &Affine, (grad_x, (h, w)): (&mut [f32], (usize, usize)),
    g: &mut Vec<f32>,
) {
    let crop = t.crop;
    let (ch, cw) = (crop.h(), crop.w());
    g.resize(3 * ch * cw, 0.0);
    k::preprocess_backward(g0, (ch, cw), affine, g);
    for c in 0..3 {
        for y in 0..ch {
            let row = &g[(c * ch + y) * cw..(c * ch + y + 1) * cw];
            let dst = &mut grad_x[(c * h + t.source(crop.y0 + y, h)) * w..][..w];
            match t.shift {
                0 => (dst[crop.x0..crop.x1].iter_mut().zip(row)).for_each(|(d, g)| *d += g),
                _ => (crop.x0..crop.x1)
                    .zip(row)
                    .for_each(|(x, g)| dst[t.source(x, w)] += g),
            }
        }
    }
}
