//! The terms on the image itself, unpadded `[3][h][w]`: total variation and the video's
//! temporal term, with their gradients (sums in f64 and a fixed order).

/// `Σ_c [Σ (x[i+1,j] − x[i,j])² + Σ (x[i,j+1] − x[i,j])²]` of an unpadded image, in f64.
/// With `wrap` (`--seamless`), also the last row against the first and the last column
/// against the first.
pub fn tv_sum(x: &[f32], (c, h, w): (usize, usize, usize), wrap: bool) -> f64 {
    let mut s = 0.0f64;
    for ch in 0..c {
        for y in 0..h {
            for xx in 0..w {
                let i = (ch * h + y) * w + xx;
                if let Some(j) = below(i, (ch, y, xx), (h, w), wrap) {
                    s += ((x[j] - x[i]) as f64).powi(2);
                }
                if let Some(j) = right(i, (ch, y, xx), (h, w), wrap) {
                    s += ((x[j] - x[i]) as f64).powi(2);
                }
            }
        }
    }
    s
}

/// The TV's neighbour below element i at (channel, row, column), if it has one.
fn below(
    i: usize, (ch, y, x): (usize, usize, usize), (h, w): (usize, usize), wrap: bool,
) -> Option<usize> {
    match y + 1 < h {
        true => Some(i + w),
        false => wrap.then_some(ch * h * w + x),
    }
}

/// The TV's neighbour to the right of element i, if it has one.
fn right(
    i: usize, (ch, y, _): (usize, usize, usize), (h, w): (usize, usize), wrap: bool,
) -> Option<usize> {
    match i % w + 1 < w {
        true => Some(i + 1),
        false => wrap.then_some((ch * h + y) * w),
    }
}

/// `grad += coef · d tv(x) / dx`.
pub fn tv_grad(
    x: &[f32], (c, h, w): (usize, usize, usize), coef: f32, wrap: bool, grad: &mut [f32],
) {
    for ch in 0..c {
        for y in 0..h {
            for xx in 0..w {
                let i = (ch * h + y) * w + xx;
                // Each pair (element, neighbour) adds its derivative to both.
                for j in [
                    below(i, (ch, y, xx), (h, w), wrap),
                    right(i, (ch, y, xx), (h, w), wrap),
                ]
                .into_iter()
                .flatten()
                {
                    let d = 2.0 * coef * (x[j] - x[i]);
                    grad[j] += d;
                    grad[i] -= d;
                }
            }
        }
    }
}

/// The temporal term `Σ_p c(p) Σ_ch (x − w)² / (3·h·w)` of an unpadded image (c: h·w values),
/// in f64 and a fixed order.
pub fn temporal_sum(x: &[f32], target: &[f32], c: &[f32]) -> f64 {
    let hw = c.len();
    let s: f64 = (x.iter().zip(target).enumerate())
        .map(|(i, (&a, &b))| c[i % hw] as f64 * ((a - b) as f64).powi(2))
        .sum();
    s / x.len() as f64
}

/// `grad += coef · 2 c (x − w) / (3·h·w)`: the temporal term's gradient, weighted.
pub fn temporal_grad(x: &[f32], target: &[f32], c: &[f32], coef: f32, grad: &mut [f32]) {
    let (hw, k) = (c.len(), 2.0 * coef / x.len() as f32);
    for (i, g) in grad.iter_mut().enumerate() {
        *g += k * c[i % hw] * (x[i] - target[i]);
    }
}
