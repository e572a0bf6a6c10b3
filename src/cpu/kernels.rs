//! The CPU engine's kernels, in f32. Feature maps are stored padded: each channel is an
//! (h + 2) x (w + 2) plane with a zero border, so a 3x3 convolution is nine GEMMs, one per tap,
//! each reading the input shifted by that tap with no im2col copy (the "wide" trick: the GEMM
//! runs over h·(w+2) − 2 positions, and its two extra columns a row land on the border, which
//! the epilogue clears). The border's zeros also leave Gram matrices and loss sums unchanged.

use rayon::prelude::*;

use super::gemm::{gemm_here, Operand, Shared};
pub use super::image_terms::{temporal_grad, temporal_sum, tv_grad, tv_sum};
use super::winograd;
pub use super::winograd::Scheme;
use crate::model::{Affine, Pooling};

/// Values in one padded plane of an h x w map.
pub fn plane(h: usize, w: usize) -> usize {
    (h + 2) * (w + 2)
}

/// A conv layer's weights as its scheme reads them, for the forward or the input gradient.
pub enum ConvTaps {
    /// Per-tap matrices `[9][co][ci]`, in the order of the taps' offsets.
    Direct(Vec<f32>),
    Winograd(winograd::Taps),
}

impl ConvTaps {
    /// f32 values held.
    pub fn len(&self) -> usize {
        match self {
            ConvTaps::Direct(t) => t.len(),
            ConvTaps::Winograd(t) => t.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// HWIO weights `[3][3][cin][cout]` → the forward's taps: per-tap matrices `[9][cout][cin]`,
/// or their Winograd transform.
pub fn forward_taps(hwio: &[f32], cin: usize, cout: usize, scheme: Scheme) -> ConvTaps {
    match scheme {
        Scheme::Direct => ConvTaps::Direct(crate::model::vgg19::taps_by_output(hwio, cin, cout, 1)),
        Scheme::Winograd(m) => {
            ConvTaps::Winograd(winograd::Taps::new(m, (cin, cout), |t, o, i| {
                hwio[(t * cin + i) * cout + o]
            }))
        }
    }
}

/// HWIO weights → the input gradient's taps: per-tap matrices `[9][cin][cout]` (HWIO already
/// is), or the Winograd transform of the flipped, transposed kernel.
pub fn backward_taps(hwio: &[f32], cin: usize, cout: usize, scheme: Scheme) -> ConvTaps {
    match scheme {
        Scheme::Direct => ConvTaps::Direct(hwio.to_vec()),
        // Input (y, x) reads output (y + 1 − ky, x + 1 − kx): tap 8 − t at offset t.
        Scheme::Winograd(m) => {
            ConvTaps::Winograd(winograd::Taps::new(m, (cout, cin), |t, o, i| {
                hwio[((8 - t) * cin + o) * cout + i]
            }))
        }
    }
}

/// Sets every padded plane's border to zero.
pub fn clear_border(maps: &mut [f32], h: usize, w: usize) {
    let pw = w + 2;
    maps.par_chunks_mut(plane(h, w)).for_each(|p| {
        p[..pw].fill(0.0);
        p[(h + 1) * pw..].fill(0.0);
        for y in 1..=h {
            p[y * pw] = 0.0;
            p[y * pw + w + 1] = 0.0;
        }
    });
}

/// Fills every padded plane's border with the map's opposite edge (circular padding, for
/// `--seamless`): a convolution then reads row −1 as row h − 1, column w as column 0, the
/// corners from the opposite corners. [`clear_border`] restores the zeros that Gram matrices
/// and loss sums rely on.
pub fn wrap_border(maps: &mut [f32], h: usize, w: usize) {
    let pw = w + 2;
    maps.par_chunks_mut(plane(h, w)).for_each(|p| {
        for y in 1..=h {
            p[y * pw] = p[y * pw + w];
            p[y * pw + w + 1] = p[y * pw + 1];
        }
        // Whole rows, their border columns included: the corners come with them.
        p.copy_within(h * pw..(h + 1) * pw, 0);
        p.copy_within(pw..2 * pw, (h + 1) * pw);
    });
}

/// Runs `conv` on padded `src` with its border wrapped (circular padding) when `seamless`,
/// else as it is (zero padding); the border is zero again afterwards.
pub fn with_padding<R>(
    src: &mut [f32], (h, w): (usize, usize), seamless: bool, conv: impl FnOnce(&[f32]) -> R,
) -> R {
    if !seamless {
        return conv(src);
    }
    wrap_border(src, h, w);
    let r = conv(src);
    clear_border(src, h, w);
    r
}

/// Nine GEMMs, one per tap: `dst[o] = Σ_t taps[t][o][i] · src[i] shifted by offset(t)`.
/// The positions are cut into chunks that keep a chunk of dst in cache while the nine taps
/// accumulate into it (nine whole-map GEMMs would stream dst through memory nine times); the
/// chunks run on rayon's threads, each output written by one thread in a fixed order.
fn conv_taps(
    src: &[f32], taps: &[f32], (ci, co, h, w): (usize, usize, usize, usize), dst: &mut [f32],
    offset: impl Fn(usize) -> usize + Sync,
) {
    let (pw, pl) = (w + 2, plane(h, w));
    let n = h * pw - 2;
    if co == 0 || ci == 0 || n == 0 {
        return;
    }
    // Every access below stays inside these bounds (the last tap reads up to 2·pw + 2 + n − 1
    // of the last channel's plane; dst is written from pw + 1 on, n values a row).
    assert!(taps.len() >= 9 * co * ci && src.len() >= ci * pl);
    assert!((0..9).all(|t| offset(t) + (ci - 1) * pl + n <= src.len()));
    assert!(pw + 1 + (co - 1) * pl + n <= dst.len());
    // About 256 KiB of dst a chunk.
    let chunk = ((1 << 16) / co).max(256).min(n);
    let out = Shared(dst.as_mut_ptr());
    let out = &out;
    (0..n.div_ceil(chunk)).into_par_iter().for_each(|c| {
        let (n0, nn) = (c * chunk, chunk.min(n - c * chunk));
        for t in 0..9 {
            let lhs = Operand(taps[t * co * ci..].as_ptr(), ci, 1);
            let rhs = Operand(src[offset(t) + n0..].as_ptr(), pl, 1);
            // SAFETY: inside the bounds asserted above; this chunk's columns are its own.
            unsafe {
                gemm_here(
                    (co, nn, ci),
                    out.0.add(pw + 1 + n0),
                    pl,
                    t > 0,
                    lhs,
                    rhs,
                    1.0,
                )
            };
        }
    });
}

/// `dst = relu(conv3x3(src) + bias)` on padded maps; `taps` from [`forward_taps`].
pub fn conv_forward(
    src: &[f32], taps: &ConvTaps, bias: &[f32], (cin, cout, h, w): (usize, usize, usize, usize),
    dst: &mut [f32],
) {
    let pw = w + 2;
    match taps {
        ConvTaps::Direct(taps) => {
            conv_taps(src, taps, (cin, cout, h, w), dst, |t| (t / 3) * pw + t % 3);
            dst.par_chunks_mut(plane(h, w))
                .zip(bias)
                .for_each(|(p, &b)| {
                    for v in p.iter_mut() {
                        *v = (*v + b).max(0.0);
                    }
                });
        }
        ConvTaps::Winograd(taps) => {
            winograd::conv(src, taps, (h, w), dst, winograd::Epilogue::BiasRelu(bias))
        }
    }
    clear_border(dst, h, w);
}

/// A conv layer's input as its backward needs it when the input is a ReLU's output: the
/// values, or their signs as bits ([`relu_signs`]).
#[derive(Clone, Copy)]
pub enum InputRelu<'a> {
    Values(&'a [f32]),
    Signs(&'a [u32]),
}

/// Bit e % 32 of word e / 32 set where element e of padded `src` is positive.
pub fn relu_signs(src: &[f32], bits: &mut [u32]) {
    debug_assert_eq!(bits.len(), src.len().div_ceil(32));
    bits.par_iter_mut()
        .zip(src.par_chunks(32))
        .for_each(|(word, values)| {
            *word = values
                .iter()
                .enumerate()
                .fold(0, |acc, (k, &v)| acc | ((v > 0.0) as u32) << k);
        });
}

/// `dst` = dL/d(input) from `grad` = dL/d(output), both padded, grad already masked by this
/// layer's ReLU; with `input_relu` (the layer's input, a ReLU's output), dst is zeroed where
/// it is not positive. `taps` from [`backward_taps`].
pub fn conv_backward_input(
    grad: &[f32], taps: &ConvTaps, input_relu: Option<InputRelu<'_>>,
    (cin, cout, h, w): (usize, usize, usize, usize), dst: &mut [f32],
) {
    let pw = w + 2;
    match taps {
        // Input (y, x) receives from output (y + 1 − ky, x + 1 − kx).
        ConvTaps::Direct(taps) => {
            conv_taps(grad, taps, (cout, cin, h, w), dst, |t| {
                (2 - t / 3) * pw + 2 - t % 3
            });
            mask_by_input(input_relu, dst);
        }
        // (The mask applied as the values are written.)
        ConvTaps::Winograd(taps) => {
            let epilogue = match input_relu {
                Some(InputRelu::Values(v)) => winograd::Epilogue::MaskValues(v),
                Some(InputRelu::Signs(bits)) => winograd::Epilogue::MaskSigns(bits),
                None => winograd::Epilogue::None,
            };
            winograd::conv(grad, taps, (h, w), dst, epilogue)
        }
    }
    clear_border(dst, h, w);
}

/// Zero in `dst` where the input (a ReLU's output) is not positive.
fn mask_by_input(input_relu: Option<InputRelu<'_>>, dst: &mut [f32]) {
    match input_relu {
        Some(InputRelu::Values(input)) => dst
            .par_chunks_mut(1 << 14)
            .zip(input.par_chunks(1 << 14))
            .for_each(|(g, input)| gate_by(g, input)),
        Some(InputRelu::Signs(bits)) => dst.par_chunks_mut(32).zip(bits).for_each(|(g, &word)| {
            for (k, v) in g.iter_mut().enumerate() {
                *v = if word >> k & 1 != 0 { *v } else { 0.0 };
            }
        }),
        None => {}
    }
}

/// `g = 0` where `f` is not positive: a select and a store for every element, not a branch
/// (which a ReLU's output, half zeros in no pattern, mispredicts half the time).
#[inline(always)]
fn gate_by(g: &mut [f32], f: &[f32]) {
    for (g, &f) in g.iter_mut().zip(f) {
        *g = if f > 0.0 { *g } else { 0.0 };
    }
}

/// u32 words of the routes of a `(c, h, w)` input: 4 bits a window, 8 windows a word (the
/// GPU's layout, `shaders/pool.wgsl`).
pub fn routes_len((c, h, w): (usize, usize, usize)) -> usize {
    c * (h / 2) * (w / 2).div_ceil(8)
}

/// 2x2 stride-2 pooling of padded `src` (c, h, w) into padded `dst` (c, h/2, w/2), and the
/// routes of the backward: bit k of a window set where its gradient goes (max: the first
/// maximum; average: all four), cleared with `mask` where src is not positive (a ReLU's output).
pub fn pool_forward(
    src: &[f32], (c, h, w): (usize, usize, usize), mode: Pooling, mask: bool, dst: &mut [f32],
    routes: &mut [u32],
) {
    let (oh, ow) = (h / 2, w / 2);
    let (pw, opw, words) = (w + 2, ow + 2, ow.div_ceil(8));
    debug_assert_eq!(
        (src.len(), routes.len()),
        (c * plane(h, w), routes_len((c, h, w)))
    );
    if routes.is_empty() {
        // No whole window: nothing pooled, nothing routed.
        dst.fill(0.0);
        return;
    }
    dst.par_chunks_mut(plane(oh, ow))
        .zip(src.par_chunks(plane(h, w)))
        .zip(routes.par_chunks_mut((oh * words).max(1)))
        .for_each(|((o, s), r)| {
            o[..opw].fill(0.0);
            o[(oh + 1) * opw..].fill(0.0);
            for y in 0..oh {
                let top = &s[(2 * y + 1) * pw + 1..][..2 * ow];
                let bottom = &s[(2 * y + 2) * pw + 1..][..2 * ow];
                let row = &mut o[(y + 1) * opw..(y + 2) * opw];
                (row[0], row[ow + 1]) = (0.0, 0.0);
                let out = &mut row[1..=ow];
                // Eight windows' routes a word, each word written once.
                for (xw, word) in r[y * words..(y + 1) * words].iter_mut().enumerate() {
                    let mut bits = 0;
                    for x in 8 * xw..(8 * xw + 8).min(ow) {
                        let v = [top[2 * x], top[2 * x + 1], bottom[2 * x], bottom[2 * x + 1]];
                        let (value, routed) = pool_window(v, mode, mask);
                        out[x] = value;
                        bits |= routed << (4 * (x % 8));
                    }
                    *word = bits;
                }
            }
        });
}

/// One window's pooled value and routes (bit k: element k of top-left, top-right,
/// bottom-left, bottom-right).
#[inline(always)]
fn pool_window(v: [f32; 4], mode: Pooling, mask: bool) -> (f32, u32) {
    match mode {
        Pooling::Max => {
            let (mut best, mut value) = (0, v[0]);
            for (k, &x) in v.iter().enumerate().skip(1) {
                if x > value {
                    (best, value) = (k, x);
                }
            }
            let routed = !mask || value > 0.0;
            (value, (routed as u32) << best)
        }
        Pooling::Avg => {
            let bits = (0..4).fold(0, |acc, k| acc | ((!mask || v[k] > 0.0) as u32) << k);
            (0.25 * ((v[0] + v[1]) + (v[2] + v[3])), bits)
        }
    }
}

/// dL/d(src) of [`pool_forward`] from its routes and grad = dL/d(output).
pub fn pool_backward(
    routes: &[u32], grad: &[f32], (c, h, w): (usize, usize, usize), mode: Pooling, dst: &mut [f32],
) {
    let (oh, ow) = (h / 2, w / 2);
    let (pw, opw, words) = (w + 2, ow + 2, ow.div_ceil(8));
    debug_assert_eq!(
        (routes.len(), grad.len()),
        (routes_len((c, h, w)), c * plane(oh, ow))
    );
    let share = match mode {
        Pooling::Max => 1.0,
        Pooling::Avg => 0.25,
    };
    if routes.is_empty() {
        dst.fill(0.0);
        return;
    }
    dst.par_chunks_mut(plane(h, w))
        .zip(routes.par_chunks((oh * words).max(1)))
        .zip(grad.par_chunks(plane(oh, ow)))
        .for_each(|((d, r), g)| {
            // Every window's four values are written; the rest (border, and an odd size's
            // last row or column) is zero.
            d[..pw].fill(0.0);
            d[(2 * oh + 1) * pw..].fill(0.0);
            for y in 0..oh {
                let (top, bottom) = d[(2 * y + 1) * pw..(2 * y + 3) * pw].split_at_mut(pw);
                let (g, r) = (&g[(y + 1) * opw + 1..][..ow], &r[y * words..][..words]);
                for row in [&mut *top, &mut *bottom] {
                    row[0] = 0.0;
                    row[2 * ow + 1..].fill(0.0);
                }
                for x in 0..ow {
                    let (gv, bits) = (share * g[x], r[x / 8] >> (4 * (x % 8)));
                    let at = |k: u32| if bits & (1 << k) != 0 { gv } else { 0.0 };
                    (top[2 * x + 1], top[2 * x + 2]) = (at(0), at(1));
                    (bottom[2 * x + 1], bottom[2 * x + 2]) = (at(2), at(3));
                }
            }
        });
}

/// Positions a chunk of a Gram or style-gradient GEMM: about 256 KiB of an n-channel map.
fn position_chunk(n: usize, positions: usize) -> usize {
    ((1 << 16) / n.max(1)).max(256).min(positions.max(1))
}

/// At most this many partial Grams a Gram matrix: their memory (n² each) would otherwise grow
/// with the map — as large as the map itself for 256 channels.
const GRAM_CHUNKS: usize = 32;

/// The positions of a Gram matrix's chunks and how many there are, for `n` channels of `pl`
/// positions: fixed by the sizes alone.
fn gram_chunks(n: usize, pl: usize) -> (usize, usize) {
    let chunk = position_chunk(n, pl).max(pl.div_ceil(GRAM_CHUNKS));
    (chunk, pl.div_ceil(chunk))
}

/// f32s of the partial Grams [`gram`] keeps for `n` channels of h x w (the memory plan's).
pub fn gram_parts_len(n: usize, (h, w): (usize, usize)) -> usize {
    gram_chunks(n, plane(h, w)).1 * n * n
}

/// G = F Fᵀ for padded F with `n` channels of h x w. The positions are cut into fixed chunks
/// whose partial Grams are made on rayon's threads (a 64 x 64 result leaves one GEMM nothing
/// to spread over threads) into `parts` (kept by the caller, so a step allocates nothing),
/// then summed in chunk order: the same bits whatever the threads.
pub fn gram(feat: &[f32], n: usize, (h, w): (usize, usize), g: &mut [f32], parts: &mut Vec<f32>) {
    let pl = plane(h, w);
    let (chunk, chunks) = gram_chunks(n, pl);
    assert!(feat.len() >= n * pl && g.len() >= n * n);
    if n == 0 {
        return;
    }
    parts.resize(chunks * n * n, 0.0);
    let out = Shared(parts.as_mut_ptr());
    let out = &out;
    (0..chunks).into_par_iter().for_each(|c| {
        let (k0, kk) = (c * chunk, chunk.min(pl - c * chunk));
        // F's chunk, and the same chunk read transposed.
        let (f, ft) = (
            Operand(feat[k0..].as_ptr(), pl, 1),
            Operand(feat[k0..].as_ptr(), 1, pl),
        );
        // SAFETY: reads rows of feat within [0, n·pl) (asserted above); writes this chunk's
        // own n x n block of parts.
        unsafe { gemm_here((n, n, kk), out.0.add(c * n * n), n, false, f, ft, 1.0) };
    });
    g[..n * n].copy_from_slice(&parts[..n * n]);
    for part in parts[n * n..].chunks_exact(n * n) {
        g.iter_mut().zip(part).for_each(|(g, p)| *g += p);
    }
}

/// `grad (+)= coef · ((G − A) F) · [R > 0]` on padded maps: R is F itself (post-ReLU), or,
/// with a style mask, F is F ∘ m² and R the layer's own output (the gate of the ReLU's
/// backward, which must not zero the other terms' gradients where m is zero).
#[allow(clippy::too_many_arguments)]
pub fn style_grad(
    feats: (&[f32], &[f32]), g: &[f32], target: &[f32], n: usize, hw: (usize, usize), coef: f32,
    accumulate: bool, grad: &mut [f32], scratch: &mut Vec<f32>,
) {
    scratch.clear();
    scratch.extend(g.iter().zip(target).map(|(a, b)| a - b));
    matrix_grad(feats, (&scratch[..], None), n, hw, coef, accumulate, grad);
}

/// The W2 loss's gradient (`model::wasserstein`): `grad (+)= coef · (D F + b ∘ m) · [R > 0]`,
/// D the n x n matrix, b one value per channel and m the plane that windows the positions
/// (a tile's interior; None: all), F and R as for [`style_grad`].
#[allow(clippy::too_many_arguments)]
pub fn w2_grad(
    feats: (&[f32], &[f32]), (d, bias, window): (&[f32], &[f32], Option<&[f32]>), n: usize,
    hw: (usize, usize), coef: f32, accumulate: bool, grad: &mut [f32],
) {
    matrix_grad(
        feats,
        (d, Some((bias, window))),
        n,
        hw,
        coef,
        accumulate,
        grad,
    );
}

/// A per-channel bias and the plane that windows it (None: every position).
type Bias<'a> = (&'a [f32], Option<&'a [f32]>);

/// `grad (+)= coef · (D F [+ b ∘ m]) · [R > 0]`: the Gram and W2 gradients' common part.
fn matrix_grad(
    (feat, relu): (&[f32], &[f32]), (d, bias): (&[f32], Option<Bias<'_>>), n: usize,
    (h, w): (usize, usize), coef: f32, accumulate: bool, grad: &mut [f32],
) {
    let pl = plane(h, w);
    assert!(feat.len() >= n * pl && grad.len() >= n * pl && d.len() >= n * n);
    assert!(relu.len() >= n * pl);
    // grad (+)= coef · D F, by chunks of positions on rayon's threads.
    let chunk = position_chunk(n, pl);
    let out = Shared(grad.as_mut_ptr());
    let out = &out;
    (0..pl.div_ceil(chunk)).into_par_iter().for_each(|c| {
        let (p0, pp) = (c * chunk, chunk.min(pl - c * chunk));
        let (lhs, rhs) = (
            Operand(d.as_ptr(), n, 1),
            Operand(feat[p0..].as_ptr(), pl, 1),
        );
        // SAFETY: reads and writes columns [p0, p0 + pp) of n rows of pl (asserted above);
        // each chunk's columns are its own.
        unsafe { gemm_here((n, pp, n), out.0.add(p0), pl, accumulate, lhs, rhs, coef) };
        for r in 0..n {
            // SAFETY: this chunk's columns of row r, as above.
            let g = unsafe { std::slice::from_raw_parts_mut(out.0.add(r * pl + p0), pp) };
            if let Some((b, window)) = bias {
                let v = coef * b[r];
                match window {
                    Some(m) => (g.iter_mut().zip(&m[p0..p0 + pp])).for_each(|(g, m)| *g += v * m),
                    None => g.iter_mut().for_each(|g| *g += v),
                }
            }
            // The ReLU's gate on the chunk just written, while it is in cache (it zeroes the
            // padding too, where R is 0).
            gate_by(g, &relu[r * pl + p0..r * pl + p0 + pp]);
        }
    });
}

/// Σ_p F[c][p] per channel c of a padded map (its padding is zero), in f64, added to `sums`.
pub fn channel_sums(feat: &[f32], n: usize, (h, w): (usize, usize), sums: &mut [f64]) {
    let pl = plane(h, w);
    assert!(feat.len() >= n * pl && sums.len() >= n);
    let rows: Vec<f64> = (0..n)
        .into_par_iter()
        .map(|r| feat[r * pl..(r + 1) * pl].iter().map(|&v| v as f64).sum())
        .collect();
    sums.iter_mut().zip(rows).for_each(|(s, r)| *s += r);
}

/// `grad (+)= coef · (F − C) · [F > 0]`.
pub fn content_grad(feat: &[f32], target: &[f32], coef: f32, accumulate: bool, grad: &mut [f32]) {
    const CHUNK: usize = 1 << 14;
    (grad.par_chunks_mut(CHUNK))
        .zip(feat.par_chunks(CHUNK).zip(target.par_chunks(CHUNK)))
        .for_each(|(g, (feat, target))| {
            for ((g, &f), &c) in g.iter_mut().zip(feat).zip(target) {
                let v = if f > 0.0 { coef * (f - c) } else { 0.0 };
                *g = if accumulate { *g + v } else { v };
            }
        });
}

/// Σ (a − b)², in f64 and a fixed order.
pub fn sq_diff_sum(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&a, &b)| ((a - b) as f64).powi(2))
        .sum()
}

/// The padded network input for the RGB image x `[3][h][w]`.
pub fn preprocess(x: &[f32], (h, w): (usize, usize), a: &Affine, dst: &mut [f32]) {
    let (pw, pl) = (w + 2, plane(h, w));
    dst.fill(0.0);
    for c in 0..3 {
        for y in 0..h {
            for xx in 0..w {
                let v = x[(a.source[c] * h + y) * w + xx];
                dst[c * pl + (y + 1) * pw + xx + 1] = v * a.mul[c] - a.sub[c];
            }
        }
    }
}

/// dL/dx from the padded dL/d(network input).
pub fn preprocess_backward(grad: &[f32], (h, w): (usize, usize), a: &Affine, dx: &mut [f32]) {
    let (pw, pl) = (w + 2, plane(h, w));
    for c in 0..3 {
        for y in 0..h {
            for xx in 0..w {
                dx[(a.source[c] * h + y) * w + xx] =
                    grad[c * pl + (y + 1) * pw + xx + 1] * a.mul[c];
            }
        }
    }
}

/// A map `[c][h][w]` in the padded layout.
pub fn pad(v: &[f32], (c, h, w): (usize, usize, usize)) -> Vec<f32> {
    let (pw, pl) = (w + 2, plane(h, w));
    let mut out = vec![0.0; c * pl];
    for ch in 0..c {
        for y in 0..h {
            let row = &v[(ch * h + y) * w..(ch * h + y + 1) * w];
            out[ch * pl + (y + 1) * pw + 1..ch * pl + (y + 1) * pw + 1 + w].copy_from_slice(row);
        }
    }
    out
}

/// The interior of a padded map, `[c][h][w]`.
pub fn unpad(v: &[f32], (c, h, w): (usize, usize, usize)) -> Vec<f32> {
    let (pw, pl) = (w + 2, plane(h, w));
    let mut out = Vec::with_capacity(c * h * w);
    for ch in 0..c {
        for y in 0..h {
            out.extend_from_slice(&v[ch * pl + (y + 1) * pw + 1..ch * pl + (y + 1) * pw + 1 + w]);
        }
    }
    out
}

/// `out = feat ∘ m` (or `feat ∘ m²` when `squared`) on padded maps of `n` channels: `m` is one
/// padded plane, applied to every channel.
pub fn mask_features(feat: &[f32], n: usize, m: &[f32], squared: bool, out: &mut [f32]) {
    let pl = m.len();
    out[..n * pl]
        .par_chunks_mut(pl)
        .zip(feat.par_chunks(pl))
        .for_each(|(o, f)| {
            for ((o, &f), &m) in o.iter_mut().zip(f).zip(m) {
                *o = if squared { f * (m * m) } else { f * m };
            }
        });
}

/// A row-major h x w map as one padded plane (zero border).
pub fn padded_plane(m: &[f32], (h, w): (usize, usize)) -> Vec<f32> {
    let mut out = vec![0.0; plane(h, w)];
    for y in 0..h {
        out[(y + 1) * (w + 2) + 1..][..w].copy_from_slice(&m[y * w..][..w]);
    }
    out
}
