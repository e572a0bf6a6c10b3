//! Warping the previous result into the current frame, and where that can be trusted (Ruder,
//! Dosovitskiy & Brox's consistency check and motion boundaries).

use super::flow::{bicubic, flow, Flow, FlowSettings, Plane};
use crate::model::Image;

/// `img` sampled at p + flow(p) for each pixel p (bicubic, Catmull-Rom, clamped to [0, 1] and
/// at the border): with the backward flow of frame t (from t to t−1), the result of frame t−1
/// moved into frame t. Bicubic rather than bilinear: each frame starts from the last one
/// warped, so a bilinear warp's blur would pile up frame after frame (docs/video.md).
pub fn warp(img: &Image, flow: &Flow) -> Image {
    assert_eq!((img.h, img.w), (flow.h, flow.w));
    let (h, w) = (img.h, img.w);
    let hw = h * w;
    let mut data = vec![0.0; 3 * hw];
    for y in 0..h {
        for x in 0..w {
            let p = y * w + x;
            let (sx, sy) = (x as f32 + flow.u[p], y as f32 + flow.v[p]);
            for c in 0..3 {
                data[c * hw + p] =
                    bicubic(&img.data[c * hw..][..hw], (h, w), sx, sy).clamp(0.0, 1.0);
            }
        }
    }
    Image { h, w, data }
}

/// Per-pixel weights of the temporal term for frame t from its backward flow (t → t−1) and
/// the forward flow (t−1 → t): 0 where the two disagree (|b + f|² > 0.01 (|b|² + |f|²) + 0.5,
/// f read at p + b: the pixel was occluded or the flow is wrong), at motion boundaries
/// (|∇b_u|² + |∇b_v|² > 0.01 |b|² + 0.002) and where p + b leaves the frame; else 1.
pub fn consistency(backward: &Flow, forward: &Flow) -> Vec<f32> {
    let (h, w) = (backward.h, backward.w);
    let mut c = vec![0.0; h * w];
    let grad = |d: &[f32], x: usize, y: usize| {
        let at = |xx: usize, yy: usize| d[yy.min(h - 1) * w + xx.min(w - 1)];
        let gx = 0.5 * (at(x + 1, y) - at(x.saturating_sub(1), y));
        let gy = 0.5 * (at(x, y + 1) - at(x, y.saturating_sub(1)));
        gx * gx + gy * gy
    };
    for y in 0..h {
        for x in 0..w {
            let p = y * w + x;
            let (bu, bv) = (backward.u[p], backward.v[p]);
            let (sx, sy) = (x as f32 + bu, y as f32 + bv);
            let inside = sx >= 0.0 && sy >= 0.0 && sx <= (w - 1) as f32 && sy <= (h - 1) as f32;
            let (fu, fv) = forward.sample(sx, sy);
            let sum = (bu + fu).powi(2) + (bv + fv).powi(2);
            let b2 = bu * bu + bv * bv;
            let consistent = sum <= 0.01 * (b2 + fu * fu + fv * fv) + 0.5;
            let boundary = grad(&backward.u, x, y) + grad(&backward.v, x, y) > 0.01 * b2 + 0.002;
            c[p] = (inside && consistent && !boundary) as u8 as f32;
        }
    }
    c
}

/// The flow from frame `here` back to frame `there`, and where it can be trusted
/// ([`consistency`] against the flow the other way): what the temporal term and the
/// warping error both warp by.
pub fn trusted_flow(here: &Plane, there: &Plane) -> (Flow, Vec<f32>) {
    let backward = flow(here, there, FlowSettings::default());
    let c = consistency(&backward, &flow(there, here, FlowSettings::default()));
    (backward, c)
}

/// The temporal warping error of stylised sequences of the frames `content`: over each pair
/// of consecutive frames, the mean |o_t − warp(o_{t−1})| over the pixels whose flow is
/// consistent, the flow computed on the content frames as `impasto video` does (once for all
/// of `runs`); averaged over the pairs, in [0, 1] units, one figure a run. Lower is steadier
/// (docs/video.md).
pub fn warping_errors(content: &[Image], runs: &[&[Image]]) -> Vec<f64> {
    let mut sums = vec![0.0; runs.len()];
    for t in 1..content.len() {
        let (a, b) = (Plane::luma(&content[t]), Plane::luma(&content[t - 1]));
        let (backward, c) = trusted_flow(&a, &b);
        let n = c.len();
        let k = 3.0 * c.iter().map(|&c| c as f64).sum::<f64>();
        for (sum, results) in sums.iter_mut().zip(runs) {
            assert_eq!(results.len(), content.len(), "as many results as frames");
            let warped = warp(&results[t - 1], &backward);
            let mut s = 0.0;
            for (p, &cp) in c.iter().enumerate() {
                for ch in 0..3 {
                    let d = results[t].data[ch * n + p] - warped.data[ch * n + p];
                    s += (cp * d.abs()) as f64;
                }
            }
            *sum += s / k.max(1.0);
        }
    }
    let pairs = content.len().saturating_sub(1).max(1) as f64;
    sums.iter().map(|s| s / pairs).collect()
}

/// How far a sequence's results are from their content frames: the mean |o_t − c_t| over
/// every pixel, channel and frame (how stylised it is; per-frame runs set the scale).
pub fn stylisation(content: &[Image], results: &[Image]) -> f64 {
    let (mut s, mut n) = (0.0, 0usize);
    for (c, o) in content.iter().zip(results) {
        s += (c.data.iter().zip(&o.data))
            .map(|(a, b)| (a - b).abs() as f64)
            .sum::<f64>();
        n += c.data.len();
    }
    s / n.max(1) as f64
}
