//! Unit test: the tiled evaluation's geometry (`model::tiles`) on the CPU engine's network —
//! each tile's crop, forwarded alone, gives the untiled features at every position of its
//! interior at every stage (zero padding at the crop's inner edges stays in the halo).

use super::clock::Clock;
use super::kernels as k;
use super::net::{Conv, Net};
use super::winograd::Scheme;
use crate::model::tiles::{Rect, TilePlan};
use crate::model::vgg19::{Arch, StageOp};
use crate::model::Pooling;
use crate::weights::Weights;
use rand::{Rng, SeedableRng};

/// Direct convolutions: the geometry holds bit for bit (a Winograd layer's blocks would sit
/// differently in a crop than in the whole map).
fn convs(weights: &Weights, arch: &Arch, deepest: usize) -> Vec<Conv> {
    (weights.layers_up_to(arch, deepest).unwrap().into_iter())
        .map(|cw| Conv::new(cw, (0, 0), [Scheme::Direct; 2]))
        .collect()
}

/// Rows and columns `r` of the RGB image `x` (`[3][h][w]`).
fn crop(x: &[f32], (h, w): (usize, usize), r: Rect) -> Vec<f32> {
    let mut out = Vec::with_capacity(3 * r.h() * r.w());
    for c in 0..3 {
        for y in r.y0..r.y1 {
            out.extend_from_slice(&x[(c * h + y) * w + r.x0..(c * h + y) * w + r.x1]);
        }
    }
    out
}

/// Forwards the whole image and every tile's crop; returns the largest difference between a
/// tile's interior features and the whole image's, relative to the map's largest value.
fn worst_tile_error(
    (arch, weights, deepest): (&Arch, &Weights, usize), (h, w): (usize, usize), tile: usize,
    pooling: Pooling,
) -> f64 {
    let convs = convs(weights, arch, deepest);
    let affine = weights.convention.affine();
    let mut r = rand::rngs::StdRng::seed_from_u64(5);
    let x: Vec<f32> = (0..3 * h * w).map(|_| r.random::<f32>()).collect();
    let forward = |x: &[f32], (h, w)| {
        let mut net = Net::new(arch.stages(deepest, h, w, pooling), None, false);
        net.forward(&convs, &affine, x, &mut Clock::default(), None);
        net
    };
    let whole = forward(&x, (h, w));
    let plan = TilePlan::new(&whole.stages, (h, w), tile).unwrap();
    let mut worst = 0.0f64;
    for t in &plan.tiles {
        let part = forward(&crop(&x, (h, w), t.crop), (t.crop.h(), t.crop.w()));
        let mut levels = 0;
        for (i, s) in whole.stages.iter().enumerate() {
            if let StageOp::Pool(_) = s.op {
                levels += 1;
            }
            let ((wh, ww), (ph, pw)) = (s.out_hw(), part.stages[i].out_hw());
            let (a, b) = (
                t.interior_at(levels, (h, w)),
                t.interior_in_crop(levels, (h, w)),
            );
            let scale = whole.acts[i].iter().fold(1e-30f32, |m, v| m.max(v.abs())) as f64;
            for c in 0..s.cout {
                for (dy, dx) in (0..a.h()).flat_map(|dy| (0..a.w()).map(move |dx| (dy, dx))) {
                    let wv = whole.acts[i]
                        [c * k::plane(wh, ww) + (a.y0 + dy + 1) * (ww + 2) + a.x0 + dx + 1];
                    let pv = part.acts[i]
                        [c * k::plane(ph, pw) + (b.y0 + dy + 1) * (pw + 2) + b.x0 + dx + 1];
                    worst = worst.max((wv - pv).abs() as f64 / scale);
                }
            }
        }
    }
    worst
}

#[test]
fn tiles_interiors_match_the_untiled_features_at_every_stage() {
    let arch = Arch::vgg19();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let real = Weights::load(&root.join("weights/vgg19-keras-block1-3.safetensors")).unwrap();
    // Real weights through block3_conv2 (stride 4, halo 16): tiles smaller than their halo,
    // sides no multiple of the tile.
    let block3_conv2 = arch.layer_index("block3_conv2").unwrap();
    let e = worst_tile_error((&arch, &real, block3_conv2), (57, 70), 12, Pooling::Max);
    println!("block3_conv2, 57x70, tiles of 12: max relative difference {e:.2e}");
    assert!(e < 1e-5, "{e}");
    // Random weights of VGG19's shapes through block5_conv2 (stride 16, halo 96), an image
    // wide enough that crops have inner edges on both sides.
    let he = |c: &crate::model::vgg19::ConvSpec| (2.0 / (9 * c.cin) as f32).sqrt();
    let block5_conv2 = arch.layer_index("block5_conv2").unwrap();
    let random = Weights::random(&arch, block5_conv2, 7, he, 0.0..0.1);
    let e = worst_tile_error((&arch, &random, block5_conv2), (260, 290), 96, Pooling::Avg);
    println!("block5_conv2, 260x290, tiles of 96: max relative difference {e:.2e}");
    assert!(e < 1e-5, "{e}");
}
