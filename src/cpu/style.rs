//! The style loss on the CPU engine, term by term ([`crate::model::style`]): each term's Gram
//! matrices (of F, or of F ∘ m with a mask), their loss, and their gradients (the unmasked
//! style gradient of F ∘ m²).

use super::clock::Clock;
use super::kernels as k;
use super::net::Net;
use crate::model::style::StyleTerm;
use crate::model::LossConfig;

pub struct StyleLoss {
    pub terms: Vec<StyleTerm>,
    /// Per term, per style layer: its mask as one padded plane.
    masks: Vec<Option<Vec<Vec<f32>>>>,
    /// Per style layer, per term: the Gram matrix of the last forward.
    grams: Vec<Vec<Vec<f32>>>,
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
    /// The terms' buffers for the content-sized network `net` (the masks at their layers'
    /// sizes are laid out as the engine's padded planes here, once).
    pub fn new(terms: Vec<StyleTerm>, net: &Net, cfg: &LossConfig) -> StyleLoss {
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
                        let s = net.stages[net.stage_of(l)];
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
        StyleLoss {
            terms,
            masks,
            grams,
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
        4 * (masks + grams + diff + self.masked.len()) as u64
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

    /// Every term's Gram matrices at the style layers, from the last forward of `net`.
    pub fn grams(&mut self, net: &Net, cfg: &LossConfig, clock: &mut Clock) {
        for (j, &l) in cfg.style_layers.iter().enumerate() {
            let i = net.stage_of(l);
            let s = net.stages[i];
            let (n, m) = (s.cout, s.h * s.w);
            for t in 0..self.terms.len() {
                let mask = self.masks[t].as_ref().map(|planes| &planes[j][..]);
                let f = masked(&net.acts[i], (n, mask), false, &mut self.masked, clock);
                let (g, parts) = (&mut self.grams[j][t], &mut self.gram_parts);
                clock.time(
                    "gram",
                    || format!("{n}x{m}"),
                    2.0 * (n * n * m) as f64,
                    n * m + n * n,
                    || k::gram(f, n, (s.h, s.w), g, parts),
                );
            }
        }
    }

    /// The style loss of the last [`StyleLoss::grams`].
    pub fn loss(&self, net: &Net, cfg: &LossConfig, clock: &mut Clock) -> f64 {
        let ns = cfg.style_layers.len();
        let mut style = 0.0;
        for (j, &l) in cfg.style_layers.iter().enumerate() {
            let n = net.stages[net.stage_of(l)].cout;
            for (t, term) in self.terms.iter().enumerate() {
                let (a, b) = (&self.grams[j][t], &term.targets[j]);
                let d = clock.time("sq_diff_sum", String::new, 0.0, 2 * a.len(), || {
                    k::sq_diff_sum(a, b)
                });
                style += term.loss_scale(j, n, ns) * d;
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
        let ns = cfg.style_layers.len();
        for (t, term) in self.terms.iter().enumerate() {
            let mask = self.masks[t].as_ref().map(|planes| &planes[j][..]);
            let f = masked(&net.acts[i], (n, mask), true, &mut self.masked, clock);
            let coef = term.grad_coef(j, n, ns, cfg.style_weight);
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
