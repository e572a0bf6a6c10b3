//! Loss values and the elementwise / stencil gradients: `shaders/loss.wgsl`. The sums run in
//! one workgroup in a fixed order, so the same inputs give the same bits.

use bytemuck::{Pod, Zeroable};

use super::setup::{groups_1d, Builder, Setup, F32};
use std::ops::Range;

use crate::gpu::{Bound, Dispatch, Gpu, Kernel};

pub const WGSL: &str = include_str!("../../shaders/loss.wgsl");

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct LossParams {
    len: u32,
    h: u32,
    w: u32,
    slot: u32,
    scale: f32,
    accumulate: u32,
    a_base: u32,
    b_base: u32,
    grad_base: u32,
    begin: u32,
    end: u32,
    wrap: u32,
}

impl LossParams {
    fn new(len: usize, (h, w): (usize, usize), scale: f32) -> LossParams {
        LossParams {
            len: len as u32,
            h: h as u32,
            w: w as u32,
            slot: 0,
            scale,
            accumulate: 0,
            a_base: 0,
            b_base: 0,
            grad_base: 0,
            begin: 0,
            end: 0,
            wrap: 0,
        }
    }
}

/// The most elements one sum dispatch adds: 32768 a thread (the software driver stops loops
/// silently after 65535 iterations).
const MAX_SUM: usize = 256 * 32768;

/// `r` cut into consecutive chunks of at most [`MAX_SUM`] elements.
fn sum_chunks(r: Range<usize>) -> impl Iterator<Item = Range<usize>> {
    let end = r.end;
    (r.start..r.end.max(r.start + 1))
        .step_by(MAX_SUM)
        .map(move |s| s..(s + MAX_SUM).min(end))
}

/// `out[slot] = scale · Σ` of `kernel` (a sum over an image `[c][h][w]` whose bindings are
/// `sums`, the image-sized `images`, then the per-pixel `weights` bound whole; `wrap` for a
/// periodic image), by ranges of planes small enough to bind and chunks of elements, each
/// adding to the sum in order.
fn image_sum(
    (setup, kernel): (&Setup, &Kernel), gpu: &Gpu,
    ((c, h, w), wrap): ((usize, usize, usize), bool), scale: f32,
    (images, weights): (&[&wgpu::Buffer], Option<&wgpu::Buffer>),
    (out, slot): (&wgpu::Buffer, usize),
) -> Vec<Dispatch> {
    let hw = h * w;
    let mut d = Vec::new();
    for planes in setup.planes(c, hw) {
        let pieces: Vec<_> = (images.iter())
            .map(|b| setup.piece(b, &planes, (hw, F32)))
            .collect();
        let mut bound = vec![Bound::whole(out)];
        bound.extend(pieces.iter().map(|p| p.bound));
        bound.extend(weights.map(Bound::whole));
        for r in sum_chunks(0..planes.len() * hw) {
            let params = LossParams {
                slot: slot as u32,
                accumulate: !d.is_empty() as u32,
                a_base: pieces[0].base,
                begin: r.start as u32,
                end: r.end as u32,
                wrap: wrap as u32,
                ..LossParams::new(planes.len(), (h, w), scale)
            };
            let bytes = (images.len() + weights.is_some() as usize) * r.len() * F32;
            d.push(kernel.dispatch_bound(gpu, &params, &bound, [1, 1, 1]).info(
                String::new(),
                0.0,
                bytes,
            ));
        }
    }
    d
}

/// `kernel` over an image `[c][h][w]` (bindings: the image-sized `images`, then the per-pixel
/// `weights` bound whole), by ranges of planes small enough to bind.
fn image_map(
    (setup, kernel): (&Setup, &Kernel), gpu: &Gpu,
    ((c, h, w), wrap): ((usize, usize, usize), bool), scale: f32,
    (images, weights): (&[&wgpu::Buffer], Option<&wgpu::Buffer>),
) -> Vec<Dispatch> {
    let hw = h * w;
    (setup.planes(c, hw).into_iter())
        .map(|planes| {
            let pieces: Vec<_> = (images.iter())
                .map(|b| setup.piece(b, &planes, (hw, F32)))
                .collect();
            let mut bound: Vec<Bound<'_>> = pieces.iter().map(|p| p.bound).collect();
            bound.extend(weights.map(Bound::whole));
            let params = LossParams {
                a_base: pieces[0].base,
                wrap: wrap as u32,
                ..LossParams::new(planes.len(), (h, w), scale)
            };
            let n = planes.len() * hw;
            let bytes = (images.len() + 1) * n * F32;
            kernel
                .dispatch_bound(gpu, &params, &bound, groups_1d(n))
                .info(String::new(), 0.0, bytes)
        })
        .collect()
}

pub struct LossKernels {
    pub(super) setup: Setup,
    sq_diff_sum: Kernel,
    sq_diff_sum_features: Kernel,
    tv_sum: Kernel,
    content_grad: Kernel,
    tv_grad: Kernel,
    temporal_sum: Kernel,
    temporal_grad: Kernel,
    channel_sums: Kernel,
    channel_bias: Kernel,
}

impl LossKernels {
    pub(super) fn build(b: &Builder<'_>) -> LossKernels {
        LossKernels {
            setup: b.setup,
            sq_diff_sum: b.kernel("sq_diff_sum", WGSL, &[], &["a", "b", "sums"]),
            sq_diff_sum_features: b.kernel("sq_diff_sum", WGSL, &["A", "B"], &["a", "b", "sums"]),
            tv_sum: b.kernel("tv_sum", WGSL, &[], &["sums", "image"]),
            content_grad: b.kernel(
                "content_grad",
                WGSL,
                &["A", "B", "Grad"],
                &["a", "b", "grad", "grad_scale"],
            ),
            tv_grad: b.kernel("tv_grad", WGSL, &[], &["grad_image", "image"]),
            temporal_sum: b.kernel(
                "temporal_sum",
                WGSL,
                &[],
                &["sums", "image", "image_target", "pixel_weights"],
            ),
            temporal_grad: b.kernel(
                "temporal_grad",
                WGSL,
                &[],
                &["grad_image", "image", "image_target", "pixel_weights"],
            ),
            channel_sums: b.kernel("channel_sums", WGSL, &["A"], &["a", "sums"]),
            channel_bias: b.kernel(
                "channel_bias",
                WGSL,
                &["A", "Grad"],
                &["a", "b", "grad", "grad_scale"],
            ),
        }
    }
}

impl LossKernels {
    /// `out[slot] = scale · Σ (a − b)²` over `len` values: f32s (Gram matrices), or feature
    /// maps stored as [`super::Kernels::storage`] says when `features` (by ranges, each adding
    /// to the sum in order, when they are too large to bind whole).
    pub fn sq_diff_sum(
        &self, gpu: &Gpu, (len, features): (usize, bool), scale: f32,
        (a, b): (&wgpu::Buffer, &wgpu::Buffer), out: (&wgpu::Buffer, usize),
    ) -> Vec<Dispatch> {
        self.sq_diff_sum_onto(gpu, (len, features), scale, (a, b), out, false)
    }

    /// The same, added to `out[slot]` when `add` (a sum over tiles: `pipeline::tiled`).
    pub fn sq_diff_sum_onto(
        &self, gpu: &Gpu, (len, features): (usize, bool), scale: f32,
        (a, b): (&wgpu::Buffer, &wgpu::Buffer), (out, slot): (&wgpu::Buffer, usize), add: bool,
    ) -> Vec<Dispatch> {
        let (kernel, bytes) = match features {
            true => (&self.sq_diff_sum_features, self.setup.storage.bytes()),
            false => (&self.sq_diff_sum, F32),
        };
        let setup = &self.setup;
        let pieces: Vec<Range<usize>> = setup
            .pieces(len, &[(1, bytes)])
            .into_iter()
            .flat_map(sum_chunks)
            .collect();
        pieces
            .iter()
            .enumerate()
            .map(|(k, r)| {
                let (pa, pb) = (setup.piece(a, r, (1, bytes)), setup.piece(b, r, (1, bytes)));
                let params = LossParams {
                    slot: slot as u32,
                    accumulate: (add || k > 0) as u32,
                    a_base: pa.base,
                    b_base: pb.base,
                    ..LossParams::new(r.len(), (0, 0), scale)
                };
                let bound = [pa.bound, pb.bound, Bound::whole(out)];
                kernel.dispatch_bound(gpu, &params, &bound, [1, 1, 1]).info(
                    String::new(),
                    0.0,
                    2 * r.len() * bytes,
                )
            })
            .collect()
    }

    /// `out[slot] = scale · tv(x)` for x `[c][h][w]`, across the wrap when `wrap` (a
    /// periodic image: `--seamless`).
    pub fn tv_sum(
        &self, gpu: &Gpu, (chw, wrap): ((usize, usize, usize), bool), scale: f32, x: &wgpu::Buffer,
        out: (&wgpu::Buffer, usize),
    ) -> Vec<Dispatch> {
        image_sum(
            (&self.setup, &self.tv_sum),
            gpu,
            (chw, wrap),
            scale,
            (&[x], None),
            out,
        )
    }

    /// `dst (+)= s · coef · (feat − target) · [feat > 0]` (feat is post-ReLU; s the gradient
    /// scale in `scale`), by ranges when the maps are too large to bind whole.
    #[allow(clippy::too_many_arguments)]
    pub fn content_grad(
        &self, gpu: &Gpu, len: usize, coef: f32, accumulate: bool, feat: &wgpu::Buffer,
        target: &wgpu::Buffer, (dst, scale): (&wgpu::Buffer, &wgpu::Buffer),
    ) -> Vec<Dispatch> {
        let setup = &self.setup;
        let sb = setup.storage.bytes();
        let pieces = setup.pieces(len, &[(1, sb)]);
        pieces
            .iter()
            .map(|r| {
                let pa = setup.piece(feat, r, (1, sb));
                let pb = setup.piece(target, r, (1, sb));
                let pg = setup.piece(dst, r, (1, sb));
                let params = LossParams {
                    accumulate: accumulate as u32,
                    a_base: pa.base,
                    b_base: pb.base,
                    grad_base: pg.base,
                    ..LossParams::new(r.len(), (0, 0), coef)
                };
                let bytes = r.len() * (2 + 1 + accumulate as usize) * sb;
                let bound = [pa.bound, pb.bound, pg.bound, Bound::whole(scale)];
                self.content_grad
                    .dispatch_bound(gpu, &params, &bound, groups_1d(r.len()))
                    .info(String::new(), 0.0, bytes)
            })
            .collect()
    }

    /// dst += coef · d tv(x) / dx (across the wrap when `wrap`).
    pub fn tv_grad(
        &self, gpu: &Gpu, image: ((usize, usize, usize), bool), coef: f32, x: &wgpu::Buffer,
        dst: &wgpu::Buffer,
    ) -> Vec<Dispatch> {
        image_map(
            (&self.setup, &self.tv_grad),
            gpu,
            image,
            coef,
            (&[dst, x], None),
        )
    }

    /// `out[slot] = scale · Σ c(p) (x − w)²` for images `[c][h][w]` x and w (the temporal
    /// term's target) and per-pixel weights `weights` `[h][w]`.
    pub fn temporal_sum(
        &self, gpu: &Gpu, chw: (usize, usize, usize), scale: f32,
        (x, target, weights): (&wgpu::Buffer, &wgpu::Buffer, &wgpu::Buffer),
        out: (&wgpu::Buffer, usize),
    ) -> Vec<Dispatch> {
        let kernel = (&self.setup, &self.temporal_sum);
        image_sum(
            kernel,
            gpu,
            (chw, false),
            scale,
            (&[x, target], Some(weights)),
            out,
        )
    }

    /// dst += coef · 2 c(p) (x − w): the temporal term's gradient.
    pub fn temporal_grad(
        &self, gpu: &Gpu, chw: (usize, usize, usize), coef: f32,
        (x, target, weights): (&wgpu::Buffer, &wgpu::Buffer, &wgpu::Buffer), dst: &wgpu::Buffer,
    ) -> Vec<Dispatch> {
        let kernel = (&self.setup, &self.temporal_grad);
        image_map(
            kernel,
            gpu,
            (chw, false),
            coef,
            (&[dst, x, target], Some(weights)),
        )
    }

    /// `sums[c] (+)= Σ_p feat[c][p]` for a map `[n][m]` (the W2 loss's channel sums; added
    /// when `add`: a sum over tiles), a range of channels at a time when the map is too large
    /// to bind whole. (A channel's positions are summed by one workgroup, in a fixed order.)
    pub fn channel_sums(
        &self, gpu: &Gpu, (n, m): (usize, usize), feat: &wgpu::Buffer, sums: &wgpu::Buffer,
        add: bool,
    ) -> Vec<Dispatch> {
        let sb = self.setup.storage.bytes();
        (self.setup.pieces(n, &[(m, sb)]).iter())
            .map(|r| {
                let pa = self.setup.piece(feat, r, (m, sb));
                let params = LossParams {
                    slot: r.start as u32,
                    accumulate: add as u32,
                    a_base: pa.base,
                    ..LossParams::new(m, (0, 0), 1.0)
                };
                let bound = [pa.bound, Bound::whole(sums)];
                self.channel_sums
                    .dispatch_bound(gpu, &params, &bound, [r.len() as u32, 1, 1])
                    .info(format!("{n}x{m}"), (r.len() * m) as f64, r.len() * m * sb)
            })
            .collect()
    }

    /// `dst += s · coef · bias[c] · [feat > 0]` for maps `[n][m]` and one bias a channel (f32;
    /// s the gradient scale in `scale`): the W2 gradient's per-channel part.
    pub fn channel_bias(
        &self, gpu: &Gpu, (n, m): (usize, usize), coef: f32, feat: &wgpu::Buffer,
        bias: &wgpu::Buffer, (dst, scale): (&wgpu::Buffer, &wgpu::Buffer),
    ) -> Vec<Dispatch> {
        let sb = self.setup.storage.bytes();
        (self.setup.pieces(n, &[(m, sb)]).iter())
            .map(|r| {
                let pa = self.setup.piece(feat, r, (m, sb));
                let pg = self.setup.piece(dst, r, (m, sb));
                let params = LossParams {
                    a_base: pa.base,
                    b_base: r.start as u32,
                    grad_base: pg.base,
                    ..LossParams::new(r.len(), (0, m), coef)
                };
                let bound = [pa.bound, Bound::whole(bias), pg.bound, Bound::whole(scale)];
                self.channel_bias
                    .dispatch_bound(gpu, &params, &bound, groups_1d(r.len() * m))
                    .info(format!("{n}x{m}"), 0.0, 3 * r.len() * m * sb)
            })
            .collect()
    }
}
