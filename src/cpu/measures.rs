//! The sums `impasto score` takes of pictures' feature maps (`job::score`): per content layer
//! the squared distance between two pictures' maps and the second one's squared norm; per style
//! layer a picture's channel means and second moments. Whole — in f64 from the unpadded maps —
//! or, for a picture too large for one network (`--tile`), a tile at a time with the tiled
//! evaluation's geometry: each tile's interior adds its part, the same sums up to their order
//! (the Gram matrices' parts in f32).

use anyhow::Result;

use super::clock::Clock;
use super::kernels as k;
use super::net::{convs, largest_map, Net};
use super::tiled::{grams_by_tiles, Tiles};
use crate::model::tiles::level;
use crate::model::{Arch, Image, LossConfig, Pooling};
use crate::weights::Weights;

/// A network: its weights, layers and pooling.
pub type Network<'a> = (&'a Weights, &'a Arch, Pooling);

/// A layer's channel means and second moments E[f fᵀ] (`[n]`, `[n][n]`).
pub type Moments = (Vec<f64>, Vec<f64>);

/// The tiles of side `tile` of an image of `(h, w)` through `layers` (none: it is whole).
fn tiles_of(
    (_, arch, pooling): Network<'_>, (h, w): (usize, usize), layers: &[usize], tile: Option<usize>,
) -> Result<Option<Tiles>> {
    let deepest = layers.iter().copied().max().unwrap_or(0);
    let stages = arch.stages(deepest, h, w, pooling);
    tile.map(|t| Tiles::new((arch, pooling, false), &stages, layers.to_vec(), t))
        .transpose()
}

/// The maps of `img` at conv layers `layers` (unpadded, `[c][h][w]`), through the network of
/// the image's whole size.
fn layer_maps(
    (weights, arch, pooling): Network<'_>, img: &Image, layers: &[usize],
) -> Result<Vec<Vec<f32>>> {
    let deepest = layers.iter().copied().max().unwrap_or(0);
    let stages = arch.stages(deepest, img.h, img.w, pooling);
    let convs = convs(weights, arch, &stages)?;
    let affine = weights.convention.affine();
    let mut scratch = [0, 1].map(|_| vec![0.0; largest_map(&stages)]);
    let mut net = Net::new(stages, Some(layers), false);
    net.forward(
        &convs,
        &affine,
        &img.data,
        &mut Clock::default(),
        Some(&mut scratch),
    );
    Ok((layers.iter())
        .map(|&l| {
            let s = net.stages[net.stage_of(l)];
            k::unpad(&net.acts[net.stage_of(l)], (s.cout, s.h, s.w))
        })
        .collect())
}

/// The channel means and second moments of an unpadded map `[n][m]`, in f64.
fn moments_of(map: &[f32], n: usize) -> Moments {
    let m = map.len() / n;
    let rows: Vec<Vec<f64>> = (0..n)
        .map(|c| map[c * m..(c + 1) * m].iter().map(|&v| v as f64).collect())
        .collect();
    let mean = rows
        .iter()
        .map(|r| r.iter().sum::<f64>() / m as f64)
        .collect();
    let mut second = vec![0.0; n * n];
    for i in 0..n {
        for j in i..n {
            let v = rows[i]
                .iter()
                .zip(&rows[j])
                .map(|(a, b)| a * b)
                .sum::<f64>()
                / m as f64;
            (second[i * n + j], second[j * n + i]) = (v, v);
        }
    }
    (mean, second)
}

/// Per style layer of `layers`, the [`Moments`] of `img`'s map: whole, or by tiles of `tile`.
pub fn style_moments(
    net: Network<'_>, img: &Image, layers: &[usize], tile: Option<usize>,
) -> Result<Vec<Moments>> {
    let Some(tiles) = tiles_of(net, (img.h, img.w), layers, tile)? else {
        let maps = layer_maps(net, img, layers)?;
        return Ok((maps.iter().zip(layers))
            .map(|(map, &l)| moments_of(map, net.1.convs[l].cout))
            .collect());
    };
    let whole = tiles.whole_stages();
    let convs = convs(net.0, net.1, &whole)?;
    let cfg = LossConfig {
        style_layers: layers.to_vec(),
        ..LossConfig::default()
    };
    let mut grads = [0, 1].map(|_| vec![0.0; tiles.largest_map()]);
    let affine = net.0.convention.affine();
    let (grams, sums) = grams_by_tiles(&tiles, (&convs, &affine), &img.data, &cfg, &mut grads);
    Ok((grams.into_iter().zip(sums).zip(layers))
        .map(|((g, s), &l)| {
            let st = whole[crate::model::vgg19::conv_stage(&whole, l).expect("a style layer")];
            let m = (st.h * st.w) as f64;
            (
                s.iter().map(|v| v / m).collect(),
                g.iter().map(|&v| v as f64 / m).collect(),
            )
        })
        .collect())
}

/// Per content layer of `layers`: Σ (F(x) − F(c))² and Σ F(c)² over the maps of the pictures
/// `x` and `c` (of one size), whole or by tiles of `tile` (two crop networks, one picture
/// each).
pub fn content_distances(
    net: Network<'_>, (x, c): (&Image, &Image), layers: &[usize], tile: Option<usize>,
) -> Result<Vec<(f64, f64)>> {
    let sums = |a: &[f32], b: &[f32]| {
        let d = a
            .iter()
            .zip(b)
            .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
            .sum();
        (d, b.iter().map(|&b| (b as f64).powi(2)).sum())
    };
    let Some(tiles) = tiles_of(net, (x.h, x.w), layers, tile)? else {
        let (fx, fc) = (layer_maps(net, x, layers)?, layer_maps(net, c, layers)?);
        return Ok(fx.iter().zip(&fc).map(|(a, b)| sums(a, b)).collect());
    };
    let convs = convs(net.0, net.1, &tiles.whole_stages())?;
    let affine = net.0.convention.affine();
    let size = tiles.plan.size;
    let mut grads = [0, 1].map(|_| vec![0.0; tiles.largest_map()]);
    let mut nets = [0, 1].map(|_| tiles.net(tiles.largest_tile()));
    let (mut crop, mut out) = (Vec::new(), vec![(0.0, 0.0); layers.len()]);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for t in &tiles.plan.tiles {
        for (net, img) in nets.iter_mut().zip([x, c]) {
            net.reshape(tiles.stages(t));
            t.crop_of(&img.data, size, &mut crop);
            net.forward(
                &convs,
                &affine,
                &crop,
                &mut Clock::default(),
                Some(&mut grads),
            );
        }
        for (o, &l) in out.iter_mut().zip(layers) {
            let i = nets[0].stage_of(l);
            let r = t.interior_in_crop(level(&nets[0].stages, i), size);
            interior(&nets[0], i, r, &mut a);
            interior(&nets[1], i, r, &mut b);
            let (d, n) = sums(&a, &b);
            (o.0, o.1) = (o.0 + d, o.1 + n);
        }
    }
    Ok(out)
}

/// The values of stage `i`'s map of `net` inside `r` (every channel), into `out`.
fn interior(net: &Net, i: usize, r: crate::model::tiles::Rect, out: &mut Vec<f32>) {
    let s = net.stages[i];
    let (pw, pl) = (s.w + 2, k::plane(s.h, s.w));
    out.clear();
    for ch in 0..s.cout {
        for y in r.y0..r.y1 {
            let row = ch * pl + (y + 1) * pw + 1;
            out.extend_from_slice(&net.acts[i][row + r.x0..row + r.x1]);
        }
    }
}
