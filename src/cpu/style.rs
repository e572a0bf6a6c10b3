//! The style loss on the CPU engine, term by term ([`crate::model::style`]): each term's Gram
//! matrices (of F, or of F ∘ m with a mask), their loss, and their gradients (the unmasked
//! style gradient of F ∘ m²); with the W2 loss, the features' channel sums beside their Gram
//! matrices, and the gradient `model::wasserstein` gives for them.

use super::clock::Clock;
use super::kernels as k;
use super::net::Net;
use crate::model::style::StyleTerm;
use crate::model::vgg19::{conv_stage, Stage};
use crate::model::LossConfig;

/// A W2 term's state at one style layer after a forward: its loss value and its gradient's
/// matrix and per-channel bias (`k::w2_grad`'s D and b).
#[derive(Default)]
struct W2Step {
    loss: f64,
    matrix: Vec<f32>,
    bias: Vec<f32>,
}

pub struct StyleLoss {
    pub terms: Vec<StyleTerm>,
    /// Per term, per style layer: its mask as one padded plane.
    pub masks: Vec<Option<Vec<Vec<f32>>>>,
    /// A tiled evaluation's tile at hand: per term, per style layer, the plane that replaces
    /// the term's mask — 1 (or the mask) inside the tile's interior, 0 elsewhere.
    window: Option<Vec<Vec<Vec<f32>>>>,
    /// Per style layer, per term: the Gram matrix of the last forward.
    grams: Vec<Vec<Vec<f32>>>,
    /// Per style layer, per W2 term: the channel sums of the last forward (empty otherwise).
    sums: Vec<Vec<Vec<f64>>>,
    /// Per style layer, per W2 term: what [`StyleLoss::finish`] made of the moments.
    w2: Vec<Vec<W2Step>>,
    /// F ∘ m (or F ∘ m²) of the layer at hand: as large as the largest masked style layer.
    masked: Vec<f32>,
    /// The Gram matrices' partial sums (see [`k::gram`]).
    gram_parts: Vec<f32>,
    /// G − A of the gradient at hand.
    diff: Vec<f32>,
}

/// The map a term's kernels read: `feat` itself without a mask, else feat ∘ m (or ∘ m² when
/// `squared`) made into `out`.
fn masked<'a>(
    feat: &'a [f32], (n, mask): (usize, Option<&[f32]>), squared: bool, out: &'a mut [f32],
    clock: &mut Clock,
) -> &'a [f32] {
    let Some(mask) = mask else {
        return feat;
    };
    clock.time("mask", String::new, 0.0, 2 * n * mask.len(), || {
        k::mask_features(feat, n, mask, squared, out)
    });
    out
}

impl StyleLoss {
    /// The terms' buffers for the content-sized network of `stages` (the masks at their
    /// layers' sizes are laid out as the engine's padded planes here, once).
    pub fn new(terms: Vec<StyleTerm>, stages: &[Stage], cfg: &LossConfig) -> StyleLoss {
        let mut largest = 0;
        let masks = terms
            .iter()
            .map(|t| {
                let m = t.masks.as_ref()?;
                let planes = cfg
                    .style_layers
                    .iter()
                    .zip(m)
                    .map(|(&l, m)| {
                        let s = stages[conv_stage(stages, l).expect("a style layer's stage")];
                        largest = largest.max(s.cout * k::plane(s.h, s.w));
                        k::padded_plane(m, (s.h, s.w))
                    })
                    .collect();
                Some(planes)
            })
            .collect();
        let grams = cfg
            .style_layers
            .iter()
            .enumerate()
            .map(|(j, _)| {
                terms
                    .iter()
                    .map(|t| vec![0.0; t.targets[j].len()])
                    .collect()
            })
            .collect();
        let per_layer = |j: usize| terms.iter().map(move |t| (t, t.w2.get(j)));
        let sums = (0..cfg.style_layers.len())
            .map(|j| {
                per_layer(j)
                    .map(|(_, w)| w.map_or(Vec::new(), |w| vec![0.0; w.mean.len()]))
                    .collect()
            })
            .collect();
        let w2 = (0..cfg.style_layers.len())
            .map(|j| per_layer(j).map(|_| W2Step::default()).collect())
            .collect();
        StyleLoss {
            terms,
            masks,
            window: None,
            grams,
            sums,
            w2,
            masked: vec![0.0; largest],
            gram_parts: Vec::new(),
            diff: Vec::new(),
        }
    }

    /// Bytes held but the targets: the masks, the Gram matrices, G − A and the masked map.
    pub fn held(&self) -> u64 {
        let masks: usize = self.masks.iter().flatten().flatten().map(Vec::len).sum();
        let grams: usize = self.grams.iter().flatten().map(Vec::len).sum();
        let diff = self.grams.iter().flatten().map(Vec::len).max().unwrap_or(0);
        let sums: usize = self.sums.iter().flatten().map(Vec::len).sum();
        // (A W2 term's gradient matrix and bias are the size of its Gram matrix and sums.)
        let w2: usize = (self.sums.iter().flatten().zip(self.grams.iter().flatten()))
            .filter(|(s, _)| !s.is_empty())
            .map(|(s, g)| s.len() + g.len())
            .sum();
        4 * (masks + grams + diff + self.masked.len() + w2) as u64 + 8 * sums as u64
    }

    /// Bytes of the terms' targets.
    pub fn target_bytes(&self) -> u64 {
        let t: usize = self
            .terms
            .iter()
            .flat_map(|t| &t.targets)
            .map(Vec::len)
            .sum();
        4 * t as u64
    }

    /// Sets (or with None clears) the planes that replace every term's mask while a tile is
    /// evaluated, `[term][style layer]` for the tile's network `net`.
    pub fn set_window(&mut self, window: Option<Vec<Vec<Vec<f32>>>>, net: &Net, cfg: &LossConfig) {
        if window.is_some() {
            self.reserve_windows(net, cfg);
        }
        self.window = window;
    }

    /// Makes the masked map as large as the largest style layer of `net` (a tiled session's
    /// largest crop: every term is windowed there), so that the memory plan counts it.
    pub fn reserve_windows(&mut self, net: &Net, cfg: &LossConfig) {
        for &l in &cfg.style_layers {
            let s = net.stages[net.stage_of(l)];
            let len = s.cout * k::plane(s.h, s.w);
            if self.masked.len() < len {
                self.masked.resize(len, 0.0);
            }
        }
    }

    /// Every term's Gram matrices at the style layers, from the last forward of `net` (added
    /// to the ones there when `add`: a tiled evaluation's tiles).
    pub fn grams(&mut self, net: &Net, cfg: &LossConfig, add: bool, clock: &mut Clock) {
        for (j, &l) in cfg.style_layers.iter().enumerate() {
            let i = net.stage_of(l);
            let s = net.stages[i];
            let (n, m) = (s.cout, s.h * s.w);
            for t in 0..self.terms.len() {
                let mask = match &self.window {
                    Some(w) => Some(&w[t][j][..]),
                    None => self.masks[t].as_ref().map(|planes| &planes[j][..]),
                };
                let f = masked(&net.acts[i], (n, mask), false, &mut self.masked, clock);
                let parts = &mut self.gram_parts;
                let g = match add {
                    false => &mut self.grams[j][t],
                    true => {
                        self.diff.resize(n * n, 0.0);
                        &mut self.diff
                    }
                };
                clock.time(
                    "gram",
                    || format!("{n}x{m}"),
                    2.0 * (n * n * m) as f64,
                    n * m + n * n,
                    || k::gram(f, n, (s.h, s.w), g, parts),
                );
                if add {
                    let sum = &mut self.grams[j][t];
                    sum.iter_mut().zip(&self.diff).for_each(|(a, b)| *a += b);
                }
                let sums = &mut self.sums[j][t];
                if !sums.is_empty() {
                    if !add {
                        sums.fill(0.0);
                    }
                    clock.time("channel_sums", String::new, 0.0, n * m, || {
                        k::channel_sums(f, n, (s.h, s.w), sums)
                    });
                }
            }
        }
    }

    /// Zeroes the Gram matrices and sums (a tiled evaluation adds its tiles' to them).
    pub fn clear_grams(&mut self) {
        self.grams.iter_mut().flatten().for_each(|g| g.fill(0.0));
        self.sums.iter_mut().flatten().for_each(|s| s.fill(0.0));
    }

    /// After the Gram matrices (and sums) of a whole evaluation: each W2 term's loss and
    /// gradient from its moments, in f64 (`model::wasserstein`).
    pub fn finish(&mut self, clock: &mut Clock) {
        for (j, (steps, sums)) in self.w2.iter_mut().zip(&self.sums).enumerate() {
            for (t, (step, sums)) in steps.iter_mut().zip(sums).enumerate() {
                let term = &self.terms[t];
                let Some(target) = term.w2.get(j) else {
                    continue;
                };
                let (g, m) = (&self.grams[j][t], term.norms[j]);
                let n = sums.len();
                let value = clock.time(
                    "w2_roots",
                    || format!("{n}x{n}"),
                    0.0,
                    0,
                    || {
                        let mean: Vec<f64> = sums.iter().map(|s| s / m).collect();
                        let second: Vec<f64> = g.iter().map(|&v| v as f64 / m).collect();
                        target.evaluate(&mean, &second)
                    },
                );
                step.loss = value.loss;
                step.matrix = value.d_second.iter().map(|&v| v as f32).collect();
                // dE/dF = (2/M) (dE/dS) F + (1/M) (dE/dμ) 1ᵀ = (2/M) (D F + b 1ᵀ).
                step.bias = value.d_mean.iter().map(|&v| (0.5 * v) as f32).collect();
            }
        }
    }

    /// The style loss of the last [`StyleLoss::grams`] (`stages`: any network's of the run).
    pub fn loss(&self, stages: &[Stage], cfg: &LossConfig, clock: &mut Clock) -> f64 {
        let mut style = 0.0;
        for (j, &l) in cfg.style_layers.iter().enumerate() {
            let n = stages[conv_stage(stages, l).expect("a style layer's stage")].cout;
            let share = cfg.layer_share(j);
            for (t, term) in self.terms.iter().enumerate() {
                if !term.w2.is_empty() {
                    style += share * term.weight * self.w2[j][t].loss;
                    continue;
                }
                let (a, b) = (&self.grams[j][t], &term.targets[j]);
                let d = clock.time("sq_diff_sum", String::new, 0.0, 2 * a.len(), || {
                    k::sq_diff_sum(a, b)
                });
                style += term.loss_scale(j, n, share) * d;
            }
        }
        style
    }

    /// β · d(style)/dF at style layer `j` (stage `i` of `net`), into `gi` (added when
    /// `accumulate`, else the first term overwrites).
    pub fn gradient(
        &mut self, net: &Net, cfg: &LossConfig, (i, j): (usize, usize), mut accumulate: bool,
        gi: &mut [f32], clock: &mut Clock,
    ) {
        let s = net.stages[i];
        let (n, m) = (s.cout, s.h * s.w);
        let share = cfg.layer_share(j);
        for (t, term) in self.terms.iter().enumerate() {
            let mask = match &self.window {
                Some(w) => Some(&w[t][j][..]),
                None => self.masks[t].as_ref().map(|planes| &planes[j][..]),
            };
            let f = masked(&net.acts[i], (n, mask), true, &mut self.masked, clock);
            if !term.w2.is_empty() {
                let coef = (2.0 * cfg.style_weight * share * term.weight / term.norms[j]) as f32;
                let w2 = &self.w2[j][t];
                clock.time(
                    "w2_grad",
                    || format!("{n}x{m}"),
                    2.0 * (n * n * m) as f64,
                    n * m * (2 + accumulate as usize) + n * n,
                    || {
                        k::w2_grad(
                            (f, &net.acts[i]),
                            (&w2.matrix, &w2.bias, mask),
                            n,
                            (s.h, s.w),
                            coef,
                            accumulate,
                            gi,
                        )
                    },
                );
                accumulate = true;
                continue;
            }
            let coef = term.grad_coef(j, n, share, cfg.style_weight);
            let (g, target, diff) = (&self.grams[j][t], &term.targets[j], &mut self.diff);
            clock.time(
                "style_grad",
                || format!("{n}x{m}"),
                2.0 * (n * n * m) as f64,
                n * m * (2 + accumulate as usize) + 2 * n * n,
                || {
                    k::style_grad(
                        (f, &net.acts[i]),
                        g,
                        target,
                        n,
                        (s.h, s.w),
                        coef,
                        accumulate,
                        gi,
                        diff,
                    )
                },
            );
            accumulate = true;
        }
    }
}
