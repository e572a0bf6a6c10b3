//! The style loss's terms, for both engines: what each style image is matched by (its Gram
//! matrices per position, independent of its size) and where (an optional mask per style).
//!
//! Without masks there is one term, the blend of the style images:
//!   A^l = M_l · Σ_k w_k G^l(s_k) / M_{s_k,l}
//!   style = Σ_l w_l · 1/(4 N_l² M_l²) · Σ (G^l(x) − A^l)²
//! (w_l the layer's share: [`super::LossConfig::layer_share`]
//! ; dividing by each style image's positions M_{s_k,l} makes a style image that is larger than
//! the output pull no harder than one of the output's size: with equal sizes this is Gatys et
//! al.'s Σ_k w_k G(s_k)). With masks m_k there is one term per style (guided Gram matrices,
//! Gatys et al. 2017, "Controlling Perceptual Factors in Neural Style Transfer"):
//!   G_k^l(x) = (F^l ∘ m_k^l)(F^l ∘ m_k^l)ᵀ / S_k^l,  S_k^l = Σ_p m_k^l(p)²
//!   style = Σ_l w_l Σ_k w_k · 1/(4 N_l²) · Σ (G_k^l(x) − G^l(s_k) / M_{s_k,l})²
//! where m_k^l is m_k averaged over the 2x2 windows (floor) of every pooling stage before l.
//! Both forms are kept in the engines' units: a term's Gram is the unnormalised
//! (F∘m)(F∘m)ᵀ, its target is S·A, and its loss scale and gradient coefficient carry 1/S².
//! The gradient, dL/dF = m ∘ (c (G − A)(F ∘ m)) = c (G − A)(F ∘ m²), is the unmasked style
//! gradient of F ∘ m²: the engines reuse their Gram and style-gradient kernels on F ∘ m
//! (Gram) and F ∘ m² (gradient).
//!
//! With `--style-loss w2` (unmasked only) the one term also holds the blend's Gaussian per
//! layer ([`super::wasserstein`]): the styles' raw moments (means and G/M) blended with the
//! blend weights, then made a covariance — raw moments combine linearly, covariances do not.

use anyhow::{bail, Result};

use super::loss::{LossConfig, StyleLossKind};
use super::vgg19::{Arch, Stage, StageOp};
use super::wasserstein::W2Target;

/// One style image's moments per position, one entry per style layer: what a session
/// computes once per style image and size.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StyleMoments {
    /// G^l(s) / M_{s,l} (N_l x N_l, row-major).
    pub grams: Vec<Vec<f32>>,
    /// Σ_p F^l(s) / M_{s,l} (N_l); empty where the engine did not compute them (the GPU
    /// engine, which has no W2 loss yet).
    pub means: Vec<Vec<f32>>,
}

/// One term of the style loss at every style layer.
#[derive(Clone, Debug)]
pub struct StyleTerm {
    /// The term's share of the style loss (a style's normalised blend weight; 1 unmasked).
    pub weight: f64,
    /// Per style layer, the mask at that layer's resolution (M_l values, row-major); None for
    /// no mask (all ones).
    pub masks: Option<Vec<Vec<f32>>>,
    /// Per style layer, the target in the engines' units: S^l · A^l (N_l x N_l).
    pub targets: Vec<Vec<f32>>,
    /// Per style layer, S^l: Σ_p m^l(p)² (M_l without a mask).
    pub norms: Vec<f64>,
    /// Per style layer, the W2 loss's target (`--style-loss w2`); empty for the Gram loss.
    pub w2: Vec<W2Target>,
}

impl StyleTerm {
    /// The factor of Σ (G − T)² in the style loss at style layer `j` (N_l = `n` channels,
    /// `share` the layer's share of the style loss).
    pub fn loss_scale(&self, j: usize, n: usize, share: f64) -> f64 {
        let s = self.norms[j];
        self.weight * share / (4.0 * (n * n) as f64 * s * s)
    }

    /// The coefficient c of the gradient c (G − T)(F ∘ m²) of β · style at layer `j`.
    pub fn grad_coef(&self, j: usize, n: usize, share: f64, style_weight: f64) -> f32 {
        (4.0 * style_weight * self.loss_scale(j, n, share)) as f32
    }
}

/// The mask `m` (h x w) at each of `layers`' resolutions in `stages`: averaged over 2x2
/// windows (floor: an odd last row or column is dropped, as pooling does) at every pooling
/// stage before the layer.
pub fn mask_pyramid(
    m: &[f32], (h, w): (usize, usize), stages: &[Stage], layers: &[usize],
) -> Vec<Vec<f32>> {
    assert_eq!(m.len(), h * w);
    let mut cur = m.to_vec();
    let mut out: Vec<(usize, Vec<f32>)> = Vec::new();
    for st in stages {
        match st.op {
            StageOp::Conv(l) => {
                if layers.contains(&l) {
                    out.push((l, cur.clone()));
                }
            }
            StageOp::Pool(_) => cur = halve(&cur, (st.h, st.w)),
        }
    }
    layers
        .iter()
        .map(|l| {
            let (_, v) = out
                .iter()
                .find(|(k, _)| k == l)
                .expect("a style layer in the stages");
            v.clone()
        })
        .collect()
}

/// 2x2 averages of an h x w map (floor).
fn halve(m: &[f32], (h, w): (usize, usize)) -> Vec<f32> {
    let (oh, ow) = (h / 2, w / 2);
    let mut out = Vec::with_capacity(oh * ow);
    for y in 0..oh {
        for x in 0..ow {
            let at = |dy: usize, dx: usize| m[(2 * y + dy) * w + 2 * x + dx];
            out.push(0.25 * (at(0, 0) + at(0, 1) + at(1, 0) + at(1, 1)));
        }
    }
    out
}

/// The style loss's terms for an output of `stages` (the optimised image's network) from each
/// style image's [`StyleMoments`] and blend share (summing to 1), and the style masks (output
/// sized, one per style) when there are any. A mask that selects no pixel at some style layer
/// is an error naming the style (by its index, from 1) and the layer.
pub fn style_terms(
    arch: &Arch, stages: &[Stage], cfg: &LossConfig, moments: &[StyleMoments], shares: &[f64],
    masks: Option<&[Vec<f32>]>,
) -> Result<Vec<StyleTerm>> {
    let style_layers = &cfg.style_layers[..];
    let grams: Vec<&Vec<Vec<f32>>> = moments.iter().map(|m| &m.grams).collect();
    let w2 = cfg.style_loss == StyleLossKind::W2;
    if w2 && masks.is_some() {
        bail!("the W2 style loss does not take style masks yet (use --style-loss gram)");
    }
    let positions: Vec<usize> = style_layers
        .iter()
        .map(|&l| {
            let st = stages.iter().find(|st| st.op == StageOp::Conv(l));
            st.map_or(0, |st| st.h * st.w)
        })
        .collect();
    let Some(masks) = masks else {
        let targets = (0..style_layers.len())
            .map(|j| {
                let len = grams[0][j].len();
                (0..len)
                    .map(|i| {
                        let a: f64 = grams
                            .iter()
                            .zip(shares)
                            .map(|(g, w)| w * g[j][i] as f64)
                            .sum();
                        (positions[j] as f64 * a) as f32
                    })
                    .collect()
            })
            .collect();
        let norms = positions.iter().map(|&m| m as f64).collect();
        let w2 = match w2 {
            true => w2_targets(moments, shares)?,
            false => Vec::new(),
        };
        return Ok(vec![StyleTerm {
            weight: 1.0,
            masks: None,
            targets,
            norms,
            w2,
        }]);
    };
    let (h, w) = (stages[0].h, stages[0].w);
    if let Some(e) = empty_mask(stages, style_layers, masks) {
        bail!("style mask {}: {}", e.style + 1, e.describe(arch));
    }
    let mut terms = Vec::new();
    for ((mask, g), &share) in masks.iter().zip(grams).zip(shares) {
        let pyramid = mask_pyramid(mask, (h, w), stages, style_layers);
        let norms = pyramid.iter().map(|m| norm(m)).collect::<Vec<_>>();
        let targets = g
            .iter()
            .zip(&norms)
            .map(|(a, &s)| a.iter().map(|&v| (s * v as f64) as f32).collect())
            .collect();
        terms.push(StyleTerm {
            weight: share,
            masks: Some(pyramid),
            targets,
            norms,
            w2: Vec::new(),
        });
    }
    Ok(terms)
}

/// The W2 targets per style layer: the styles' raw moments blended by `shares`, in f64.
fn w2_targets(moments: &[StyleMoments], shares: &[f64]) -> Result<Vec<W2Target>> {
    if moments.iter().any(|m| m.means.len() != m.grams.len()) {
        bail!("the W2 style loss needs the style images' feature means, which this engine does not compute (use --engine cpu)");
    }
    let layers = moments[0].grams.len();
    Ok((0..layers)
        .map(|j| {
            let blend = |part: &dyn Fn(&StyleMoments) -> &[f32]| -> Vec<f64> {
                let len = part(&moments[0]).len();
                (0..len)
                    .map(|i| {
                        moments
                            .iter()
                            .zip(shares)
                            .map(|(m, w)| w * part(m)[i] as f64)
                            .sum()
                    })
                    .collect()
            };
            let mean = blend(&|m| &m.means[j]);
            let second = blend(&|m| &m.grams[j]);
            W2Target::new(&mean, &second)
        })
        .collect())
}

/// Σ m².
fn norm(m: &[f32]) -> f64 {
    m.iter().map(|&v| (v as f64) * (v as f64)).sum()
}

/// A style mask that selects no pixel at a style layer.
#[derive(Debug)]
pub struct EmptyMask {
    /// Which mask (from 0).
    pub style: usize,
    /// The conv layer's index.
    pub layer: usize,
    /// The layer's map, (width, height).
    pub map: (usize, usize),
}

impl EmptyMask {
    pub fn describe(&self, arch: &Arch) -> String {
        format!(
            "it selects no pixel at layer {} (its map there is {}x{}): use a larger region, a larger --size, or shallower --style-layers",
            arch.convs[self.layer].name, self.map.0, self.map.1
        )
    }
}

/// The first of `masks` (content-sized, for the network `stages`) that is zero everywhere at
/// one of `style_layers`, if any.
pub fn empty_mask(
    stages: &[Stage], style_layers: &[usize], masks: &[Vec<f32>],
) -> Option<EmptyMask> {
    let (h, w) = (stages[0].h, stages[0].w);
    for (style, mask) in masks.iter().enumerate() {
        let pyramid = mask_pyramid(mask, (h, w), stages, style_layers);
        if let Some(j) = pyramid.iter().position(|m| norm(m) <= 0.0) {
            let layer = style_layers[j];
            let st = stages.iter().find(|st| st.op == StageOp::Conv(layer));
            let map = st.map_or((0, 0), |s| (s.w, s.h));
            return Some(EmptyMask { style, layer, map });
        }
    }
    None
}

/// Divides each of a style image's Gram matrices and channel sums (one per style layer of
/// `stages`, the style image's network; no sums: not computed) by the layer's positions: its
/// [`StyleMoments`].
pub fn per_position(
    stages: &[Stage], style_layers: &[usize], grams: Vec<Vec<f32>>, sums: Vec<Vec<f64>>,
) -> StyleMoments {
    let positions = style_layers.iter().map(|&l| {
        let st = stages
            .iter()
            .find(|st| st.op == StageOp::Conv(l))
            .expect("a style layer");
        (st.h * st.w) as f64
    });
    let divide = |v: Vec<f32>, m: f64| v.into_iter().map(|v| (v as f64 / m) as f32).collect();
    let positions: Vec<f64> = positions.collect();
    StyleMoments {
        grams: grams
            .into_iter()
            .zip(&positions)
            .map(|(g, &m)| divide(g, m))
            .collect(),
        means: (sums.into_iter().zip(&positions))
            .map(|(s, &m)| s.into_iter().map(|v| (v / m) as f32).collect())
            .collect(),
    }
}
