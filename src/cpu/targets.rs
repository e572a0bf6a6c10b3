//! The targets a CPU session computes at its start: each style image's Gram matrices, and the
//! content image's maps with the network that made them.

use anyhow::Result;

use super::clock::Clock;
use super::kernels as k;
use super::net::{largest_map, Conv, Net};
use super::tiled::{grams_by_tiles, Tiles};
use crate::model::style::{per_position, StyleMoments};
use crate::model::Affine;
use crate::weights::Weights;

type Setup<'a> = crate::model::engine::Setup<'a, Weights>;

/// Each style image's Gram matrices per position ([`StyleMoments`]), and the bytes of the
/// largest style network, held while its targets are made. Only the style layers' outputs are
/// kept: the rest go through two scratch buffers. A dry session computes nothing (the Grams
/// are zeros).
pub fn style_targets(
    s: &Setup<'_>, convs: &[Conv], affine: &Affine, dry: bool,
) -> Result<(Vec<StyleMoments>, u64)> {
    let style_deepest = s.loss.style_layers.iter().copied().max().unwrap_or(0);
    let mut out = Vec::new();
    let mut setup_peak = 0u64;
    for (img, _) in s.styles {
        let stages = s.arch.stages(style_deepest, img.h, img.w, s.pooling);
        // (A periodic picture's style image is tiled only when its halos can wrap exactly.)
        let stride = crate::model::tiles::pooling_stride(&stages);
        let wraps = img.h.is_multiple_of(stride) && img.w.is_multiple_of(stride);
        if let Some(tile) = s.tile.filter(|_| !s.loss.seamless || wraps) {
            // In tiles too (`tiled::grams_by_tiles`): a style image as large as the output.
            let arch = (s.arch, s.pooling, s.loss.seamless);
            let tiles = Tiles::new(arch, &stages, s.loss.style_layers.clone(), tile)?;
            let (t, len) = (tiles.largest_tile(), tiles.largest_map());
            let mut scratch = [vec![0.0; len], vec![0.0; len]];
            setup_peak = setup_peak.max(4 * (tiles.net(t).held() + 2 * len) as u64);
            let (grams, sums) = match dry {
                true => (s.loss.style_layers.iter())
                    .map(|&l| {
                        (
                            vec![0.0; s.arch.convs[l].cout.pow(2)],
                            vec![0.0; s.arch.convs[l].cout],
                        )
                    })
                    .unzip(),
                false => grams_by_tiles(&tiles, (convs, affine), &img.data, s.loss, &mut scratch),
            };
            out.push(per_position(&stages, &s.loss.style_layers, grams, sums));
            continue;
        }
        let mut scratch = [0, 1].map(|_| vec![0.0; largest_map(&stages)]);
        let mut net = Net::new(stages.clone(), Some(&s.loss.style_layers), s.loss.seamless);
        let held = net.held() + 2 * scratch[0].len();
        setup_peak = setup_peak.max(4 * held as u64);
        if !dry {
            let clock = &mut Clock::default();
            net.forward(convs, affine, &img.data, clock, Some(&mut scratch));
        }
        let (grams, sums) = s
            .loss
            .style_layers
            .iter()
            .map(|&l| {
                let i = net.stage_of(l);
                let st = net.stages[i];
                let (mut g, mut sums) = (vec![0.0; st.cout * st.cout], vec![0.0; st.cout]);
                if !dry {
                    k::gram(&net.acts[i], st.cout, (st.h, st.w), &mut g, &mut Vec::new());
                    k::channel_sums(&net.acts[i], st.cout, (st.h, st.w), &mut sums);
                }
                (g, sums)
            })
            .unzip();
        out.push(per_position(&stages, &s.loss.style_layers, grams, sums));
    }
    Ok((out, setup_peak))
}

/// The untiled session's network, its lent gradient buffers and the content targets (the
/// content image's maps at the content layers; none in a dry session).
pub fn whole_net(
    s: &Setup<'_>, (convs, affine): (&[Conv], &Affine), stages: Vec<crate::model::Stage>, dry: bool,
) -> (Net, [Vec<f32>; 2], Vec<Vec<f32>>) {
    let max_len = largest_map(&stages);
    let mut grads = [vec![0.0; max_len], vec![0.0; max_len]];
    let mut net = Net::new(stages, Some(&s.loss.layers()), s.loss.seamless);
    if !dry {
        let clock = &mut Clock::default();
        net.forward(convs, affine, &s.content.data, clock, Some(&mut grads));
    }
    let content = (s.loss.content_layers.iter())
        .map(|&l| net.acts[net.stage_of(l)].clone())
        .collect();
    (net, grads, content)
}
