//! The CPU engine's memory plan (`--dry-run`): its buffers' sizes, by kind.

use super::kernels as k;
use super::CpuSession;
use crate::model::engine::MemoryPlan;

impl CpuSession {
    /// What the session holds, by kind (f32 values, padded maps), and its setup's peak.
    pub fn plan(&self) -> MemoryPlan {
        let f = |n: usize| 4 * n as u64;
        let sum = |v: &[Vec<f32>]| v.iter().map(|b| f(b.len())).sum::<u64>();
        let weights: u64 = self
            .convs
            .iter()
            .map(|c| f(c.forward.len() + c.backward.len() + c.bias.len()))
            .sum();
        // One thread's Winograd scratch, the largest layer's (the chunks run one at a time).
        let scratch = self.convs.iter().map(|c| f(c.scratch)).max().unwrap_or(0);
        // A tiled session's crop, crop gradient and content targets of the tile at hand.
        let tile = (self.tiles.as_ref()).map_or(0, |t| f(t.scratch_len(&self.loss.content_layers)));
        let avg = self.average.as_ref().map_or(0, |a| a.1.len());
        // The partial Grams of the largest style layer (grown on the first step).
        let parts = (self.loss.style_layers.iter())
            .map(|&l| self.net.stages[self.net.stage_of(l)])
            .map(|s| k::gram_parts_len(s.cout, (s.h, s.w)))
            .max()
            .unwrap_or(0);
        let items = [
            ("weights", weights),
            ("convolution scratch (Winograd chunks)", scratch),
            (
                "activations kept for the backward",
                f(self.net.input.len()) + sum(&self.net.acts),
            ),
            (
                "pooling routes and ReLU signs",
                self.net
                    .routes
                    .iter()
                    .chain(&self.net.signs)
                    .map(|r| f(r.len()))
                    .sum(),
            ),
            ("gradients", sum(&self.grads) + f(self.grad_x.len())),
            ("tile scratch: crop, targets", tile),
            (
                "targets",
                sum(&self.content)
                    + self
                        .style_grams
                        .iter()
                        .map(|g| sum(&g.grams) + sum(&g.means))
                        .sum::<u64>()
                    + self.style.target_bytes(),
            ),
            (
                "Gram matrices, masks and loss values",
                self.style.held() + f(parts),
            ),
            (
                "image and optimiser state",
                f(self.x.len() + self.evaluated.len() + self.m.len() + self.v.len() + avg),
            ),
        ];
        MemoryPlan {
            kinds: MemoryPlan::by_kind(items),
            setup_only: self.setup_peak,
            from_setup: weights,
            ..MemoryPlan::default()
        }
    }
}
