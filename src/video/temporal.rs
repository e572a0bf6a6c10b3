//! What a frame's temporal term takes from the frames done before it (Ruder, Dosovitskiy &
//! Brox): each earlier result warped into the frame by the optical flow, where the flow can be
//! trusted, the most recent frame first.
//!
//! Long-term consistency: with the frames 1..J back, frame t − j's weights are its
//! consistency weights less those of every nearer frame (c'_j = max(c_j − Σ_{k<j} c_k, 0)),
//! so each pixel follows the nearest frame that saw it. The weights being 0 or 1 and these
//! disjoint, Σ_j c'_j (x − w_j)² is one term with target Σ_j c'_j w_j and weights Σ_j c'_j:
//! the engines' single temporal term holds any J.

use super::flow::Plane;
use super::warp::{trusted_flow, warp};
use crate::model::Image;

/// The temporal term's inputs for one frame, and where the frame starts.
pub struct TemporalInputs {
    /// The earlier results warped into the frame, each pixel from the nearest frame whose
    /// flow is consistent there (the previous frame's where none is).
    pub target: Image,
    /// 1 where some earlier frame's flow is consistent, else 0 (h x w).
    pub weights: Vec<f32>,
    /// The share of pixels with weight 1.
    pub consistent: f64,
}

/// The inputs of frame `content`'s temporal term from `earlier`: the (content, result) of the
/// frames before it, nearest first (all at the frame's size).
pub fn temporal_inputs(content: &Image, earlier: &[(&Image, &Image)]) -> TemporalInputs {
    let here = Plane::luma(content);
    let warped = earlier.iter().map(|(e_content, e_result)| {
        let (backward, c) = trusted_flow(&here, &Plane::luma(e_content));
        (warp(e_result, &backward), c)
    });
    nearest_first(warped)
}

/// The temporal inputs from earlier results already warped into the frame, each with its
/// consistency weights, nearest first: each pixel from the nearest that is consistent there.
pub fn nearest_first(warped: impl IntoIterator<Item = (Image, Vec<f32>)>) -> TemporalInputs {
    let mut target: Option<Image> = None;
    let mut weights = Vec::new();
    for (w, c) in warped {
        let hw = c.len();
        let Some(t) = &mut target else {
            weights = c.iter().map(|&c| (c > 0.0) as u8 as f32).collect();
            target = Some(w);
            continue;
        };
        for p in 0..hw {
            if c[p] > 0.0 && weights[p] == 0.0 {
                weights[p] = 1.0;
                for ch in 0..3 {
                    t.data[ch * hw + p] = w.data[ch * hw + p];
                }
            }
        }
    }
    let target = target.expect("at least the previous frame");
    let consistent = weights.iter().map(|&w| w as f64).sum::<f64>() / weights.len() as f64;
    TemporalInputs {
        target,
        weights,
        consistent,
    }
}

/// Where a frame of a later pass starts (Ruder et al.'s multi-pass): where the temporal
/// target can be trusted, `delta` of it and the rest the frame's result of the pass before;
/// elsewhere that result alone.
pub fn blended_start(inputs: &TemporalInputs, before: &Image, delta: f32) -> Image {
    let hw = inputs.weights.len();
    let mut out = before.clone();
    for (i, v) in out.data.iter_mut().enumerate() {
        let c = delta * inputs.weights[i % hw];
        *v = c * inputs.target.data[i] + (1.0 - c) * *v;
    }
    out
}
