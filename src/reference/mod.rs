//! Plain-Rust reference for every kernel, in f64, written for clarity rather than speed.
//! Tests compare the shaders against these; the GPU path never calls them.
//! Maps are CHW, row-major; weights are HWIO `[3][3][cin][cout]` as Keras stores them.

mod w2;
pub use w2::{w2_grad, w2_loss, Moments};

use crate::model::{
    AdamConfig, Affine, LossConfig, LossValues, Pooling, Stage, StageOp, StyleLossKind,
};

/// The taps of a 3x3 kernel at (y, x) of an h x w map that land inside it (zero padding 1), or
/// with `wrap` (circular padding: `--seamless`) all nine, rows and columns taken modulo the
/// map's: (tap index ky·3 + kx, row y + ky − 1, column x + kx − 1).
fn taps(
    y: usize, x: usize, (h, w): (usize, usize), wrap: bool,
) -> impl Iterator<Item = (usize, usize, usize)> {
    (0..9).filter_map(move |t| {
        if wrap {
            return Some((t, (y + t / 3 + h - 1) % h, (x + t % 3 + w - 1) % w));
        }
        let (yy, xx) = ((y + t / 3).checked_sub(1)?, (x + t % 3).checked_sub(1)?);
        (yy < h && xx < w).then_some((t, yy, xx))
    })
}

/// relu(conv3x3(src) + bias), zero padding 1.
pub fn conv_forward(
    src: &[f64], hwio: &[f64], bias: &[f64], shape: (usize, usize, usize, usize),
) -> Vec<f64> {
    conv_forward_padded(src, hwio, bias, shape, false)
}

/// The same, with circular padding when `wrap`.
pub fn conv_forward_padded(
    src: &[f64], hwio: &[f64], bias: &[f64], (cin, cout, h, w): (usize, usize, usize, usize),
    wrap: bool,
) -> Vec<f64> {
    let mut out = vec![0.0; cout * h * w];
    for co in 0..cout {
        for y in 0..h {
            for x in 0..w {
                let mut s = bias[co];
                for (t, yy, xx) in taps(y, x, (h, w), wrap) {
                    for ci in 0..cin {
                        s += hwio[(t * cin + ci) * cout + co] * src[(ci * h + yy) * w + xx];
                    }
                }
                out[(co * h + y) * w + x] = s.max(0.0);
            }
        }
    }
    out
}

/// dL/d(input) of [`conv_forward`], given dL/d(output) and the forward's output (the ReLU mask).
pub fn conv_backward_input(
    grad: &[f64], act: &[f64], hwio: &[f64], shape: (usize, usize, usize, usize),
) -> Vec<f64> {
    conv_backward_input_padded(grad, act, hwio, shape, false)
}

/// The same for [`conv_forward_padded`]: each output scatters back along the taps it read.
pub fn conv_backward_input_padded(
    grad: &[f64], act: &[f64], hwio: &[f64], (cin, cout, h, w): (usize, usize, usize, usize),
    wrap: bool,
) -> Vec<f64> {
    let mut out = vec![0.0; cin * h * w];
    for co in 0..cout {
        for y in 0..h {
            for x in 0..w {
                let i = (co * h + y) * w + x;
                if act[i] <= 0.0 {
                    continue;
                }
                let g = grad[i];
                for (t, yy, xx) in taps(y, x, (h, w), wrap) {
                    for ci in 0..cin {
                        out[(ci * h + yy) * w + xx] += g * hwio[(t * cin + ci) * cout + co];
                    }
                }
            }
        }
    }
    out
}

/// 2x2 stride-2 pooling; odd sizes floor.
pub fn pool_forward(src: &[f64], (c, h, w): (usize, usize, usize), mode: Pooling) -> Vec<f64> {
    let (oh, ow) = (h / 2, w / 2);
    let mut out = vec![0.0; c * oh * ow];
    for ch in 0..c {
        for oy in 0..oh {
            for ox in 0..ow {
                let v = window(src, ch, oy, ox, h, w);
                out[(ch * oh + oy) * ow + ox] = match mode {
                    Pooling::Max => v.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
                    Pooling::Avg => v.iter().sum::<f64>() / 4.0,
                };
            }
        }
    }
    out
}

fn window(src: &[f64], ch: usize, oy: usize, ox: usize, h: usize, w: usize) -> [f64; 4] {
    let b = (ch * h + 2 * oy) * w + 2 * ox;
    [src[b], src[b + 1], src[b + w], src[b + w + 1]]
}

/// dL/d(input) of [`pool_forward`]; max sends the gradient to the first maximum (row-major).
pub fn pool_backward(
    src: &[f64], grad: &[f64], (c, h, w): (usize, usize, usize), mode: Pooling,
) -> Vec<f64> {
    let (oh, ow) = (h / 2, w / 2);
    let mut out = vec![0.0; c * h * w];
    for ch in 0..c {
        for oy in 0..oh {
            for ox in 0..ow {
                let g = grad[(ch * oh + oy) * ow + ox];
                let v = window(src, ch, oy, ox, h, w);
                let b = (ch * h + 2 * oy) * w + 2 * ox;
                let cells = [b, b + 1, b + w, b + w + 1];
                match mode {
                    Pooling::Max => {
                        let mut best = 0;
                        for k in 1..4 {
                            if v[k] > v[best] {
                                best = k;
                            }
                        }
                        out[cells[best]] += g;
                    }
                    Pooling::Avg => cells.iter().for_each(|&i| out[i] += g / 4.0),
                }
            }
        }
    }
    out
}

/// G = F Fᵀ for F `[n][m]`.
pub fn gram(f: &[f64], n: usize, m: usize) -> Vec<f64> {
    let mut g = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            g[i * n + j] = (0..m).map(|k| f[i * m + k] * f[j * m + k]).sum();
        }
    }
    g
}

/// E = 1/(4 n² m²) Σ (G − A)².
pub fn style_loss(g: &[f64], a: &[f64], n: usize, m: usize) -> f64 {
    let s: f64 = g.iter().zip(a).map(|(g, a)| (g - a) * (g - a)).sum();
    s / (4.0 * (n * n) as f64 * (m * m) as f64)
}

/// dE/dF = 1/(n² m²) (G − A) F.
pub fn style_grad(f: &[f64], g: &[f64], a: &[f64], n: usize, m: usize) -> Vec<f64> {
    let coef = 1.0 / ((n * n) as f64 * (m * m) as f64);
    let mut out = vec![0.0; n * m];
    for i in 0..n {
        for k in 0..n {
            let d = coef * (g[i * n + k] - a[i * n + k]);
            for q in 0..m {
                out[i * m + q] += d * f[k * m + q];
            }
        }
    }
    out
}

/// ½ Σ (F − C)².
pub fn content_loss(f: &[f64], c: &[f64]) -> f64 {
    0.5 * f.iter().zip(c).map(|(f, c)| (f - c) * (f - c)).sum::<f64>()
}

/// F − C.
pub fn content_grad(f: &[f64], c: &[f64]) -> Vec<f64> {
    f.iter().zip(c).map(|(f, c)| f - c).collect()
}

/// `Σ_c [Σ (x[i+1,j] − x[i,j])² + Σ (x[i,j+1] − x[i,j])²]`, as sums of differences between
/// the image and itself shifted by a row (vertical) and by a column (horizontal) — a
/// formulation of its own, not the engines' loop over pixels.
pub fn tv_loss(x: &[f64], shape: (usize, usize, usize)) -> f64 {
    tv_loss_padded(x, shape, false)
}

/// The same, with `wrap` also across the edges (the last row against the first, the last
/// column against the first): the TV of a periodic image.
pub fn tv_loss_padded(x: &[f64], (c, h, w): (usize, usize, usize), wrap: bool) -> f64 {
    let sq = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(a, b)| (a - b).powi(2)).sum::<f64>();
    x[..c * h * w]
        .chunks_exact(h * w)
        .map(|plane| {
            let mut vertical = sq(&plane[w..], &plane[..(h - 1) * w]);
            let mut horizontal: f64 = plane
                .chunks_exact(w)
                .map(|r| sq(&r[1..], &r[..w - 1]))
                .sum();
            if wrap {
                vertical += sq(&plane[..w], &plane[(h - 1) * w..]);
                horizontal += plane
                    .chunks_exact(w)
                    .map(|r| (r[0] - r[w - 1]).powi(2))
                    .sum::<f64>();
            }
            vertical + horizontal
        })
        .sum()
}

pub fn tv_grad(x: &[f64], shape: (usize, usize, usize)) -> Vec<f64> {
    tv_grad_padded(x, shape, false)
}

pub fn tv_grad_padded(x: &[f64], (c, h, w): (usize, usize, usize), wrap: bool) -> Vec<f64> {
    let mut g = vec![0.0; x.len()];
    for ch in 0..c {
        for y in 0..h {
            for xx in 0..w {
                let i = (ch * h + y) * w + xx;
                // Each pair (pixel, its neighbour below / to the right) once.
                let below = (y + 1 < h)
                    .then_some(i + w)
                    .or(wrap.then_some((ch * h) * w + xx));
                let right = (xx + 1 < w)
                    .then_some(i + 1)
                    .or(wrap.then_some((ch * h + y) * w));
                for j in [below, right].into_iter().flatten() {
                    let d = x[j] - x[i];
                    g[j] += 2.0 * d;
                    g[i] -= 2.0 * d;
                }
            }
        }
    }
    g
}

pub fn preprocess(x: &[f64], hw: usize, a: &Affine) -> Vec<f64> {
    let mut out = vec![0.0; 3 * hw];
    for c in 0..3 {
        for q in 0..hw {
            out[c * hw + q] = x[a.source[c] * hw + q] * a.mul[c] as f64 - a.sub[c] as f64;
        }
    }
    out
}

pub fn preprocess_backward(grad: &[f64], hw: usize, a: &Affine) -> Vec<f64> {
    let mut out = vec![0.0; 3 * hw];
    for c in 0..3 {
        for q in 0..hw {
            out[a.source[c] * hw + q] += grad[c * hw + q] * a.mul[c] as f64;
        }
    }
    out
}

/// One Adam step t (1-based) on x, then clamp to [0, 1].
pub fn adam_step(x: &mut [f64], m: &mut [f64], v: &mut [f64], g: &[f64], t: u32, c: &AdamConfig) {
    let b1t = 1.0 - c.beta1.powi(t as i32);
    let b2t = 1.0 - c.beta2.powi(t as i32);
    for i in 0..x.len() {
        m[i] = c.beta1 * m[i] + (1.0 - c.beta1) * g[i];
        v[i] = c.beta2 * v[i] + (1.0 - c.beta2) * g[i] * g[i];
        let step = c.lr * (m[i] / b1t) / ((v[i] / b2t).sqrt() + c.eps);
        x[i] = (x[i] - step).clamp(0.0, 1.0);
    }
}

/// The whole objective on the CPU: forward through the stages, the losses, and the gradient
/// with respect to the image, all in f64. The reference for the GPU step and for finite differences.
pub struct Model<'a> {
    pub stages: &'a [Stage],
    /// HWIO weights and bias of each conv layer, by layer index.
    pub weights: &'a [(Vec<f64>, Vec<f64>)],
    pub affine: Affine,
    pub loss: &'a LossConfig,
}

/// Per-stage activations of one forward pass; `acts[i]` is stage i's output.
pub struct Forward {
    pub input: Vec<f64>,
    pub acts: Vec<Vec<f64>>,
}

/// Loss targets: content features by content layer, Gram matrices by style layer; with
/// `masked` styles, those instead of `style` (guided Gram matrices, one term per style); with
/// the W2 loss, `moments` instead (the blended mean and G/M per style layer).
pub struct Targets {
    pub content: Vec<Vec<f64>>,
    pub style: Vec<Vec<f64>>,
    pub masked: Vec<MaskedStyle>,
    pub moments: Vec<Moments>,
}

/// A style with its mask: where it applies (the optimised image's size, h x w, row-major),
/// its blend weight (normalised), and its Gram matrices per position, G(s) / M_s, one per
/// style layer ([`Model::grams_per_position`]).
pub struct MaskedStyle {
    pub mask: Vec<f64>,
    pub weight: f64,
    pub grams: Vec<Vec<f64>>,
}

/// The masked style loss of one layer and style: w / (4 n²) Σ (G_m − A)², with
/// G_m = (F ∘ m)(F ∘ m)ᵀ / Σ m² and A the style's Gram per position.
pub fn masked_style_loss(f: &[f64], mask: &[f64], a: &[f64], n: usize, w: f64) -> f64 {
    let (g, _) = masked_gram(f, mask, n);
    let s: f64 = g.iter().zip(a).map(|(g, a)| (g - a) * (g - a)).sum();
    w * s / (4.0 * (n * n) as f64)
}

/// (F ∘ m)(F ∘ m)ᵀ / Σ m², and F ∘ m.
fn masked_gram(f: &[f64], mask: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    let m = mask.len();
    let fm: Vec<f64> = (0..n * m).map(|i| f[i] * mask[i % m]).collect();
    let norm: f64 = mask.iter().map(|v| v * v).sum();
    let g = gram(&fm, n, m).into_iter().map(|v| v / norm).collect();
    (g, fm)
}

/// d/dF of [`masked_style_loss`]: m ∘ (w / (n² Σ m²)) (G_m − A)(F ∘ m).
pub fn masked_style_grad(f: &[f64], mask: &[f64], a: &[f64], n: usize, w: f64) -> Vec<f64> {
    let m = mask.len();
    let (g, fm) = masked_gram(f, mask, n);
    let norm: f64 = mask.iter().map(|v| v * v).sum();
    // style_grad's 1/(n² m²) made w / (n² Σ m²).
    let scale = w * (m * m) as f64 / norm;
    let mut out = style_grad(&fm, &g, a, n, m);
    for (i, o) in out.iter_mut().enumerate() {
        *o *= scale * mask[i % m];
    }
    out
}

impl Model<'_> {
    fn conv_stage(&self, layer: usize) -> usize {
        crate::model::vgg19::conv_stage(self.stages, layer).expect("loss layer within the stages")
    }

    pub fn forward(&self, x: &[f64]) -> Forward {
        let s0 = &self.stages[0];
        let input = preprocess(x, s0.h * s0.w, &self.affine);
        let mut acts: Vec<Vec<f64>> = Vec::new();
        for s in self.stages {
            let src = acts.last().unwrap_or(&input);
            let out = match s.op {
                StageOp::Conv(l) => {
                    let (k, b) = &self.weights[l];
                    conv_forward_padded(src, k, b, (s.cin, s.cout, s.h, s.w), self.loss.seamless)
                }
                StageOp::Pool(mode) => pool_forward(src, (s.cin, s.h, s.w), mode),
            };
            acts.push(out);
        }
        Forward { input, acts }
    }

    /// Features and Grams of x at the loss layers (the targets a content / style image sets).
    pub fn targets(&self, x: &[f64]) -> Targets {
        let f = self.forward(x);
        Targets {
            masked: Vec::new(),
            moments: Vec::new(),
            content: self
                .loss
                .content_layers
                .iter()
                .map(|&l| f.acts[self.conv_stage(l)].clone())
                .collect(),
            style: self
                .loss
                .style_layers
                .iter()
                .map(|&l| {
                    let s = &self.stages[self.conv_stage(l)];
                    gram(&f.acts[self.conv_stage(l)], s.cout, s.h * s.w)
                })
                .collect(),
        }
    }

    /// Each style layer's Gram matrix of x divided by its positions, G / M (a style image's
    /// part of the targets, whatever its size).
    pub fn grams_per_position(&self, x: &[f64]) -> Vec<Vec<f64>> {
        let t = self.targets(x);
        (self.loss.style_layers.iter())
            .zip(t.style)
            .map(|(&l, g)| {
                let s = &self.stages[self.conv_stage(l)];
                let m = (s.h * s.w) as f64;
                g.into_iter().map(|v| v / m).collect()
            })
            .collect()
    }

    /// Each style layer's raw moments of x: channel means and G / M.
    pub fn moments_per_position(&self, x: &[f64]) -> Vec<Moments> {
        let f = self.forward(x);
        (self.loss.style_layers.iter())
            .map(|&l| {
                let s = &self.stages[self.conv_stage(l)];
                let (n, m) = (s.cout, s.h * s.w);
                let a = &f.acts[self.conv_stage(l)];
                let mean = (0..n).map(|c| a[c * m..(c + 1) * m].iter().sum::<f64>() / m as f64);
                let g = gram(a, n, m).into_iter().map(|v| v / m as f64);
                (mean.collect(), g.collect())
            })
            .collect()
    }

    /// The styles' moments blended by their weights (normalised here): the W2 targets.
    pub fn blended_moments(styles: &[(Vec<Moments>, f64)]) -> Vec<Moments> {
        let total: f64 = styles.iter().map(|s| s.1).sum();
        let blend = |part: &dyn Fn(&Vec<Moments>) -> &Vec<f64>| -> Vec<f64> {
            let mut out = vec![0.0; part(&styles[0].0).len()];
            for (m, w) in styles {
                out.iter_mut()
                    .zip(part(m))
                    .for_each(|(o, v)| *o += w / total * v);
            }
            out
        };
        (0..styles[0].0.len())
            .map(|j| (blend(&|m| &m[j].0), blend(&|m| &m[j].1)))
            .collect()
    }

    /// Style layer k's share of the style loss: its weight over their sum (1/|S| without).
    fn share(&self, k: usize) -> f64 {
        let w = &self.loss.style_layer_weights;
        match w.is_empty() {
            true => 1.0 / self.loss.style_layers.len() as f64,
            false => w[k] / w.iter().sum::<f64>(),
        }
    }

    /// The blended style targets of this (the optimised image's) network: M_l Σ_k w_k A_k
    /// for styles' Gram matrices per position A_k and weights w_k (normalised here).
    pub fn blended_style(&self, styles: &[(Vec<Vec<f64>>, f64)]) -> Vec<Vec<f64>> {
        let total: f64 = styles.iter().map(|s| s.1).sum();
        (self.loss.style_layers.iter())
            .enumerate()
            .map(|(j, &l)| {
                let s = &self.stages[self.conv_stage(l)];
                let m = (s.h * s.w) as f64;
                let mut out = vec![0.0; s.cout * s.cout];
                for (a, w) in styles {
                    out.iter_mut()
                        .zip(&a[j])
                        .for_each(|(o, a)| *o += m * w / total * a);
                }
                out
            })
            .collect()
    }

    /// A content-sized mask at conv layer `l`: 2x2 averages (floor) at each pooling stage
    /// before it.
    pub fn mask_at(&self, mask: &[f64], l: usize) -> Vec<f64> {
        let mut cur = mask.to_vec();
        for s in &self.stages[..self.conv_stage(l)] {
            if let StageOp::Pool(_) = s.op {
                cur = pool_forward(&cur, (1, s.h, s.w), Pooling::Avg);
            }
        }
        cur
    }

    /// The unweighted loss terms of x.
    pub fn losses(&self, x: &[f64], t: &Targets) -> LossValues {
        let f = self.forward(x);
        let nc = self.loss.content_layers.len() as f64;
        let w2 = self.loss.style_loss == StyleLossKind::W2;
        let content: f64 = self
            .loss
            .content_layers
            .iter()
            .zip(&t.content)
            .map(|(&l, c)| content_loss(&f.acts[self.conv_stage(l)], c) / nc)
            .sum();
        let style: f64 = match t.masked.is_empty() {
            true => (self.loss.style_layers.iter().enumerate())
                .map(|(k, &l)| {
                    let s = &self.stages[self.conv_stage(l)];
                    let (n, m) = (s.cout, s.h * s.w);
                    let fa = &f.acts[self.conv_stage(l)];
                    let e = match w2 {
                        true => w2_loss(fa, n, m, &t.moments[k]),
                        false => style_loss(&gram(fa, n, m), &t.style[k], n, m),
                    };
                    self.share(k) * e
                })
                .sum(),
            false => (self.loss.style_layers.iter().enumerate())
                .flat_map(|(j, &l)| t.masked.iter().map(move |ms| (j, l, ms)))
                .map(|(j, l, ms)| {
                    let (i, n) = (self.conv_stage(l), self.stages[self.conv_stage(l)].cout);
                    let m = self.mask_at(&ms.mask, l);
                    self.share(j) * masked_style_loss(&f.acts[i], &m, &ms.grams[j], n, ms.weight)
                })
                .sum(),
        };
        let s0 = &self.stages[0];
        let tv = tv_loss_padded(x, (3, s0.h, s0.w), self.loss.seamless);
        self.loss.combine(content, style, tv)
    }

    /// d(total)/dx.
    pub fn gradient(&self, x: &[f64], t: &Targets) -> Vec<f64> {
        let f = self.forward(x);
        let cfg = self.loss;
        let nc = cfg.content_layers.len() as f64;
        let mut grad: Vec<f64> = vec![0.0; self.stages.last().unwrap().out_len()];
        for (i, s) in self.stages.iter().enumerate().rev() {
            if let StageOp::Conv(l) = s.op {
                let fa = &f.acts[i];
                if let Some(k) = cfg.content_layers.iter().position(|&c| c == l) {
                    let g = content_grad(fa, &t.content[k]);
                    axpy(&mut grad, cfg.content_weight / nc, &g);
                }
                if let Some(k) = cfg.style_layers.iter().position(|&c| c == l) {
                    let (n, m) = (s.cout, s.h * s.w);
                    let beta = cfg.style_weight * self.share(k);
                    if t.masked.is_empty() {
                        let g = match cfg.style_loss {
                            StyleLossKind::W2 => w2_grad(fa, n, m, &t.moments[k]),
                            StyleLossKind::Gram => {
                                style_grad(fa, &gram(fa, n, m), &t.style[k], n, m)
                            }
                        };
                        // (d/dF of the post-ReLU F: the ReLU's gate is the conv's backward.)
                        axpy(&mut grad, beta, &g);
                    }
                    for ms in &t.masked {
                        let mask = self.mask_at(&ms.mask, l);
                        let g = masked_style_grad(fa, &mask, &ms.grams[k], n, ms.weight);
                        axpy(&mut grad, beta, &g);
                    }
                }
            }
            let src = if i == 0 { &f.input } else { &f.acts[i - 1] };
            grad = match s.op {
                StageOp::Conv(l) => conv_backward_input_padded(
                    &grad,
                    &f.acts[i],
                    &self.weights[l].0,
                    (s.cin, s.cout, s.h, s.w),
                    cfg.seamless,
                ),
                StageOp::Pool(mode) => pool_backward(src, &grad, (s.cin, s.h, s.w), mode),
            };
        }
        let s0 = &self.stages[0];
        let mut gx = preprocess_backward(&grad, s0.h * s0.w, &self.affine);
        axpy(
            &mut gx,
            cfg.tv_weight,
            &tv_grad_padded(x, (3, s0.h, s0.w), cfg.seamless),
        );
        gx
    }
}

fn axpy(y: &mut [f64], a: f64, x: &[f64]) {
    y.iter_mut().zip(x).for_each(|(y, x)| *y += a * x);
}

/// A video frame's temporal term: Σ_p c(p) Σ_ch (x − w)² / (3·h·w), x and w `[3][h][w]`, c `[h][w]`.
pub fn temporal_loss(x: &[f64], w: &[f64], c: &[f64]) -> f64 {
    let hw = c.len();
    let s: f64 = (0..x.len())
        .map(|i| c[i % hw] * (x[i] - w[i]).powi(2))
        .sum();
    s / x.len() as f64
}

/// d/dx of [`temporal_loss`]: 2 c (x − w) / (3·h·w).
pub fn temporal_grad(x: &[f64], w: &[f64], c: &[f64]) -> Vec<f64> {
    let hw = c.len();
    (0..x.len())
        .map(|i| 2.0 * c[i % hw] * (x[i] - w[i]) / x.len() as f64)
        .collect()
}
