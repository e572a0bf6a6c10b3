//! The CPU engine: the same objective as the GPU pipeline, in f32 on the CPU with SIMD GEMMs
//! (the `gemm` crate: runtime dispatch over AVX2 / AVX-512 / NEON) and rayon threads, for
//! machines without a GPU. Buffers are allocated once per session; a step allocates nothing
//! but the GEMMs' packing scratch.

mod clock;
mod gemm;
mod image_terms;
pub mod kernels;
mod measures;
mod net;
mod phases;
mod plan;
mod simd;
mod style;
mod targets;
#[cfg(test)]
mod tile_tests;
mod tiled;
pub mod winograd;

use anyhow::{bail, Result};

use crate::model::engine::KernelTime;
use crate::model::style::StyleMoments;
use crate::model::temporal::Temporal;
use crate::model::tiles::Tile;
use crate::model::{
    AdamConfig, AdamState, Affine, Average, EngineSession, Image, LossConfig, LossValues, StageOp,
};
use crate::weights::Weights;
use clock::Clock;
use kernels as k;
pub use measures::{content_distances, style_moments};
use net::{stage_backward, Conv, Net};
use style::StyleLoss;
use targets::{style_targets, whole_net};

/// What `impasto devices` and the run say about the CPU engine: threads and SIMD level.
pub fn describe() -> String {
    format!(
        "CPU engine ({} threads, {})",
        rayon::current_num_threads(),
        simd_level()
    )
}

/// The widest SIMD the engine's kernels use on this CPU (`simd::level`; the `gemm` crate's
/// GEMMs go no further than AVX2+FMA).
pub fn simd_level() -> &'static str {
    #[cfg(target_arch = "aarch64")]
    {
        "NEON"
    }
    #[cfg(not(target_arch = "aarch64"))]
    {
        match simd::level() {
            simd::Level::Avx512 => "AVX-512",
            simd::Level::Avx2 => "AVX2+FMA",
            simd::Level::Plain => "SSE",
        }
    }
}

/// What a CPU session is set up from.
pub type Setup<'a> = crate::model::engine::Setup<'a, Weights>;

/// An optimisation session on the CPU.
pub struct CpuSession {
    h: usize,
    w: usize,
    convs: Vec<Conv>,
    affine: Affine,
    loss: LossConfig,
    adam: AdamConfig,
    net: Net,
    content: Vec<Vec<f32>>,
    /// Each style image's Gram matrices per position (kept for later sessions).
    style_grams: Vec<StyleMoments>,
    style: StyleLoss,
    grads: [Vec<f32>; 2],
    x: Vec<f32>,
    evaluated: Vec<f32>,
    grad_x: Vec<f32>,
    m: Vec<f32>,
    v: Vec<f32>,
    /// Adam's step count (carried over between scales).
    adam_t: usize,
    steps: usize,
    /// The moving average of the iterates, raw (see [`Average`]).
    average: Option<(Average, Vec<f32>)>,
    clock: Clock,
    /// Bytes of the largest style network, held during setup only.
    setup_peak: u64,
    /// A video frame's temporal term.
    temporal: Option<Temporal>,
    /// A tiled evaluation's tiles (`net` is then the network of the tile at hand, and
    /// `content` the content layers' whole maps).
    tiles: Option<tiled::Tiles>,
    /// The tile at hand's crop of the image, content targets and crop gradient (their memory
    /// reused from tile to tile).
    tile_scratch: (Vec<f32>, Vec<Vec<f32>>, Vec<f32>),
    /// The tile whose crop `net` holds (pass 2 starts with pass 1's last tile, not forwarding
    /// it again).
    tile_in_net: Option<Tile>,
}

impl CpuSession {
    /// The session of `s`, in tiles when `s.tile` asks (`tiled`: the network's buffers
    /// those of the largest tile's crop, the result the untiled one).
    pub fn new(s: &Setup<'_>) -> Result<CpuSession> {
        CpuSession::build(s, false)
    }

    /// A session with every buffer made but no target computed (`--dry-run`).
    pub fn dry(s: &Setup<'_>) -> Result<CpuSession> {
        CpuSession::build(s, true)
    }

    fn build(s: &Setup<'_>, dry: bool) -> Result<CpuSession> {
        let (h, w) = (s.content.h, s.content.w);
        if (s.init.h, s.init.w) != (h, w) {
            bail!(
                "the initial image is {}x{}, the content image {w}x{h}",
                s.init.w,
                s.init.h
            );
        }
        crate::model::vgg19::check_sizes(s.arch, s.loss, s.pooling, s.content, s.styles)?;
        let deepest = s.loss.deepest();
        let affine = s.weights.convention.affine();
        let stages = s.arch.stages(deepest, h, w, s.pooling);
        let convs = net::convs(s.weights, s.arch, &stages)?;
        // (A tile off the pooling grid is refused before the style targets' work.)
        let arch = (s.arch, s.pooling, s.loss.seamless);
        let tiles = (s
            .tile
            .map(|t| tiled::Tiles::new(arch, &stages, s.loss.layers(), t)))
        .transpose()?;
        let (style_grams, setup_peak) = match s.style_targets {
            Some(t) => (t.to_vec(), 0),
            None => style_targets(s, &convs, &affine, dry)?,
        };
        let terms = s.style_terms(&stages, &style_grams)?;
        let mut style = StyleLoss::new(terms, &stages, s.loss);
        let (net, grads, content) = match &tiles {
            None => whole_net(s, (&convs, &affine), stages, dry),
            Some(t) => {
                let mut grads = [vec![0.0; t.largest_map()], vec![0.0; t.largest_map()]];
                let (x, layers) = (&s.content.data, &s.loss.content_layers);
                let content = match dry {
                    true => t.zero_content(&stages, layers),
                    false => t.content_targets((&convs, &affine), x, &stages, (layers, &mut grads)),
                };
                // (The largest crop's network, and its windowed style maps: a dry session's
                // plan counts them.)
                let net = t.net(t.largest_tile());
                style.reserve_windows(&net, s.loss);
                (net, grads, content)
            }
        };
        let n = 3 * h * w;
        Ok(CpuSession {
            h,
            w,
            convs,
            affine,
            loss: s.loss.clone(),
            adam: s.adam,
            net,
            content,
            style_grams,
            style,
            grads,
            x: s.init.data.clone(),
            evaluated: s.init.data.clone(),
            grad_x: vec![0.0; n],
            m: vec![0.0; n],
            v: vec![0.0; n],
            adam_t: 0,
            steps: 0,
            average: (s.average > 0.0).then(|| {
                let d = s.average as f32;
                let raw = s.init.data.iter().map(|&x| (1.0 - d) * x).collect();
                (Average::new(s.average), raw)
            }),
            clock: Clock::default(),
            setup_peak,
            temporal: s.temporal.cloned(),
            tiles,
            tile_scratch: Default::default(),
            tile_in_net: None,
        })
    }

    /// Forward, the Gram matrices at the style layers, and (with `losses`) the loss values.
    fn forward(&mut self, losses: bool) -> Option<LossValues> {
        let content = match self.tiles.is_some() {
            true => self.forward_tiled(losses),
            false => {
                let clock = &mut self.clock;
                let lent = Some(&mut self.grads);
                self.net
                    .forward(&self.convs, &self.affine, &self.x, clock, lent);
                self.style.grams(&self.net, &self.loss, false, clock);
                match losses {
                    true => content_sum(&self.net, &self.loss, &self.content, clock),
                    false => 0.0,
                }
            }
        };
        self.style.finish(&mut self.clock);
        if !losses {
            return None;
        }
        self.evaluated.copy_from_slice(&self.x);
        let clock = &mut self.clock;
        let nc = self.loss.content_layers.len() as f64;
        let content = 0.5 / nc * content;
        let style = self.style.loss(&self.net.stages, &self.loss, clock);
        let (x, hw) = (&self.x, (3, self.h, self.w));
        let wrap = self.loss.seamless;
        let tv = clock.time("tv_sum", String::new, 0.0, x.len(), || {
            k::tv_sum(x, hw, wrap)
        });
        let values = self.loss.combine(content, style, tv);
        Some(match &self.temporal {
            Some(t) => {
                let sum = || k::temporal_sum(x, &t.target.data, &t.weights);
                let v = clock.time("temporal_sum", String::new, 0.0, 2 * x.len(), sum);
                values.with_temporal(v, t.weight)
            }
            None => values,
        })
    }

    /// dL/dx into `grad_x`, from the activations of the last forward.
    fn backward(&mut self) {
        if self.tiles.is_some() {
            self.backward_tiled();
        } else {
            let content = std::mem::take(&mut self.content);
            self.backprop(&content);
            self.content = content;
            // Stage 0 (even) wrote dL/d(network input) into the second buffer.
            let g0 = &self.grads[1][..3 * k::plane(self.h, self.w)];
            let (hw, affine, grad_x) = ((self.h, self.w), &self.affine, &mut self.grad_x);
            self.clock.time(
                "preprocess_backward",
                String::new,
                0.0,
                2 * grad_x.len(),
                || k::preprocess_backward(g0, hw, affine, grad_x),
            );
        }
        self.image_terms_backward();
    }

    /// The network's backward from the loss layers of the last forward (content targets
    /// `content`, as the network's maps) down to dL/d(network input), which stage 0 (even)
    /// leaves in the second gradient buffer.
    fn backprop(&mut self, content: &[Vec<f32>]) {
        let last = self.net.stages.len() - 1;
        for i in (0..self.net.stages.len()).rev() {
            let s = self.net.stages[i];
            let (lo, hi) = self.grads.split_at_mut(1);
            let (gi, below) = if i % 2 == 0 {
                (&mut lo[0], &mut hi[0])
            } else {
                (&mut hi[0], &mut lo[0])
            };
            let (oh, ow) = s.out_hw();
            let gi = &mut gi[..s.cout * k::plane(oh, ow)];
            let mut losses = LossTerms {
                net: &self.net,
                cfg: &self.loss,
                content,
                style: &mut self.style,
            };
            // The deepest stage has no gradient from above: its first loss term overwrites,
            // and without one the gradient is zero.
            let clock = &mut self.clock;
            if !losses.gradients(i, i != last, gi, clock) {
                gi.fill(0.0);
            }
            let below = &mut below[..s.cin * k::plane(s.h, s.w)];
            stage_backward(&self.net, &self.convs, i, gi, below, clock);
        }
    }

    /// The terms on the whole image: TV and a video frame's temporal term, added to `grad_x`.
    fn image_terms_backward(&mut self) {
        let (grad_x, clock) = (&mut self.grad_x, &mut self.clock);
        if self.loss.tv_weight != 0.0 {
            let (x, chw, tv) = (&self.x, (3, self.h, self.w), self.loss.tv_weight as f32);
            let wrap = self.loss.seamless;
            clock.time("tv_grad", String::new, 0.0, 3 * x.len(), || {
                k::tv_grad(x, chw, tv, wrap, grad_x)
            });
        }
        if let Some(t) = &self.temporal {
            let (x, coef) = (&self.x, t.weight as f32);
            clock.time("temporal_grad", String::new, 0.0, 3 * x.len(), || {
                k::temporal_grad(x, &t.target.data, &t.weights, coef, grad_x)
            });
        }
    }

    /// Forwards tile `t`'s crop of the image into `self.net`.
    fn forward_tile(&mut self, t: &Tile) {
        let tiles = self.tiles.as_ref().expect("a tiled session");
        // (The largest crop's buffers, made at the start, serve every crop.)
        self.net.reshape(tiles.stages(t));
        let crop = &mut self.tile_scratch.0;
        t.crop_of(&self.x, (self.h, self.w), crop);
        let lent = Some(&mut self.grads);
        (self.net).forward(&self.convs, &self.affine, crop, &mut self.clock, lent);
        self.tile_in_net = Some(*t);
    }

    /// Tile `t`'s content targets (`tiled::tile_targets`), and its windows set on the style
    /// terms (`tiled::tile_window`), for the tile just forwarded.
    fn tile_terms(&mut self, t: &Tile, targets: &mut Vec<Vec<f32>>) {
        let whole = self.tiles.as_ref().expect("a tiled session").whole_stages();
        let (size, cfg) = ((self.h, self.w), &self.loss);
        let window = tiled::tile_window(t, &self.net, cfg, (&self.style.masks, &whole), size);
        self.style.set_window(Some(window), &self.net, cfg);
        tiled::tile_targets(t, &self.net, cfg, (&self.content, &whole), size, targets);
    }

    /// Forwards each tile's crop, sets its windows and runs `f` with the tile and its content
    /// targets; the windows are cleared at the end. `pass2`: backwards through the tiles, the
    /// first of them (pass 1's last) still in the network, not forwarded again.
    fn for_each_tile(
        &mut self, pass2: bool, mut f: impl FnMut(&mut CpuSession, &Tile, &[Vec<f32>]),
    ) {
        let mut tiles = self
            .tiles
            .as_ref()
            .expect("a tiled session")
            .plan
            .tiles
            .clone();
        if pass2 {
            tiles.reverse();
        }
        let mut targets = std::mem::take(&mut self.tile_scratch.1);
        for t in &tiles {
            if !pass2 || self.tile_in_net != Some(*t) {
                self.forward_tile(t);
            }
            self.tile_terms(t, &mut targets);
            f(self, t, &targets);
        }
        self.tile_scratch.1 = targets;
        self.style.set_window(None, &self.net, &self.loss);
    }

    /// Pass 1 of a tiled evaluation: every tile's Gram matrices added up; with `losses`,
    /// Σ (F − C)² over the content layers (`tiled` says how).
    fn forward_tiled(&mut self, losses: bool) -> f64 {
        self.style.clear_grams();
        let mut content = 0.0;
        self.for_each_tile(false, |s, _, targets| {
            s.style.grams(&s.net, &s.loss, true, &mut s.clock);
            if losses {
                content += content_sum(&s.net, &s.loss, targets, &mut s.clock);
            }
        });
        content
    }

    /// Pass 2: each tile's backward against the whole Gram matrices, its crop's input gradient
    /// added into `grad_x`.
    fn backward_tiled(&mut self) {
        self.grad_x.fill(0.0);
        self.for_each_tile(true, |s, t, targets| {
            s.backprop(targets);
            let g0 = &s.grads[1][..3 * k::plane(t.crop.h(), t.crop.w())];
            let image = (&mut s.grad_x[..], (s.h, s.w));
            tiled::add_crop_gradient(g0, t, &s.affine, image, &mut s.tile_scratch.2);
        });
    }

    /// One step with each kernel timed: the per-layer table of `impasto bench --engine cpu`.
    pub fn profiled_step(&mut self) -> Vec<KernelTime> {
        self.clock.start();
        self.forward(false);
        self.backward();
        let len = self.x.len();
        let t = std::time::Instant::now();
        self.adam_step();
        let mut rows = self.clock.stop();
        rows.push(KernelTime {
            name: "adam",
            detail: String::new(),
            ms: t.elapsed().as_secs_f64() * 1e3,
            flops: 0.0,
            bytes: (7 * len * 4) as f64,
        });
        rows
    }

    /// Replaces the image being optimised (tests: evaluate a given image).
    pub fn set_image(&mut self, x: &[f32]) {
        self.x.copy_from_slice(x);
    }

    /// d(total)/dx of the current image, without updating it.
    pub fn gradient(&mut self) -> Vec<f32> {
        self.forward(false);
        self.backward();
        self.grad_x.clone()
    }

    fn adam_step(&mut self) {
        self.steps += 1;
        self.adam_t += 1;
        let c = &self.adam;
        let t = self.adam_t as i32;
        let (b1, b2) = (c.beta1 as f32, c.beta2 as f32);
        let b1t = 1.0 - b1.powi(t);
        let b2t = 1.0 - b2.powi(t);
        let (lr, eps) = (c.lr as f32, c.eps as f32);
        for i in 0..self.x.len() {
            let g = self.grad_x[i];
            let m = b1 * self.m[i] + (1.0 - b1) * g;
            let v = b2 * self.v[i] + (1.0 - b2) * g * g;
            self.m[i] = m;
            self.v[i] = v;
            let step = lr * (m / b1t) / ((v / b2t).sqrt() + eps);
            self.x[i] = (self.x[i] - step).clamp(0.0, 1.0);
        }
        self.fold();
    }

    fn fold(&mut self) {
        if let Some((a, raw)) = &mut self.average {
            let d = a.decay as f32;
            raw.iter_mut()
                .zip(&self.x)
                .for_each(|(r, &x)| *r = d * *r + (1.0 - d) * x);
            a.fold();
        }
    }
}

/// Σ (F − C)² over the content layers of `net`'s last forward (targets `content`, as its maps).
fn content_sum(net: &Net, cfg: &LossConfig, content: &[Vec<f32>], clock: &mut Clock) -> f64 {
    let mut sum = 0.0;
    for (j, &l) in cfg.content_layers.iter().enumerate() {
        let (a, b) = (&net.acts[net.stage_of(l)], &content[j]);
        sum += clock.time("sq_diff_sum", String::new, 0.0, 2 * a.len(), || {
            k::sq_diff_sum(a, b)
        });
    }
    sum
}

/// What the loss terms' gradients are computed from.
struct LossTerms<'a> {
    net: &'a Net,
    cfg: &'a LossConfig,
    content: &'a [Vec<f32>],
    style: &'a mut StyleLoss,
}

impl LossTerms<'_> {
    /// The loss terms' gradients at stage `i`'s output, when it is a loss layer, into `gi`
    /// (added when `accumulate`, else the first overwrites). Whether any was written.
    fn gradients(
        &mut self, i: usize, mut accumulate: bool, gi: &mut [f32], clock: &mut Clock,
    ) -> bool {
        let (cfg, s) = (self.cfg, self.net.stages[i]);
        let StageOp::Conv(l) = s.op else {
            return accumulate;
        };
        let fa = &self.net.acts[i];
        let nc = cfg.content_layers.len() as f64;
        if let Some(j) = cfg.content_layers.iter().position(|&c| c == l) {
            let coef = (cfg.content_weight / nc) as f32;
            let target = &self.content[j];
            clock.time("content_grad", String::new, 0.0, 3 * gi.len(), || {
                k::content_grad(fa, target, coef, accumulate, gi)
            });
            accumulate = true;
        }
        if let Some(j) = cfg.style_layers.iter().position(|&c| c == l) {
            self.style
                .gradient(self.net, cfg, (i, j), accumulate, gi, clock);
            accumulate = true;
        }
        accumulate
    }
}

impl EngineSession for CpuSession {
    fn step(&mut self, losses: bool) -> Result<Option<LossValues>> {
        let v = self.forward(losses);
        self.backward();
        self.adam_step();
        Ok(v)
    }

    fn evaluate(&mut self) -> Result<LossValues> {
        Ok(self.forward(true).expect("losses asked for"))
    }

    fn image(&self) -> Result<Image> {
        Ok(Image {
            h: self.h,
            w: self.w,
            data: self.x.clone(),
        })
    }

    fn evaluated_image(&self) -> Result<Image> {
        Ok(Image {
            h: self.h,
            w: self.w,
            data: self.evaluated.clone(),
        })
    }

    fn steps_done(&self) -> usize {
        self.steps
    }

    fn set_image(&mut self, x: &[f32]) -> Result<()> {
        CpuSession::set_image(self, x);
        Ok(())
    }

    fn loss_and_gradient(&mut self) -> Result<(LossValues, Vec<f32>)> {
        let v = self.forward(true).expect("losses asked for");
        self.backward();
        Ok((v, self.grad_x.clone()))
    }

    fn adam_state(&self) -> Result<AdamState> {
        Ok(AdamState {
            m: self.m.clone(),
            v: self.v.clone(),
            t: self.adam_t,
        })
    }

    fn set_adam_state(&mut self, state: &AdamState) -> Result<()> {
        if state.m.len() != self.m.len() || state.v.len() != self.v.len() {
            bail!("Adam's state is for another image size");
        }
        self.m.copy_from_slice(&state.m);
        self.v.copy_from_slice(&state.v);
        self.adam_t = state.t;
        Ok(())
    }

    fn fold_average(&mut self) -> Result<()> {
        self.fold();
        Ok(())
    }

    fn style_targets(&self) -> Vec<StyleMoments> {
        self.style_grams.clone()
    }

    fn averaged_image(&self) -> Result<Option<Image>> {
        Ok(self.average.as_ref().map(|(a, raw)| {
            let c = a.correction() as f32;
            Image {
                h: self.h,
                w: self.w,
                data: raw.iter().map(|&r| (r * c).clamp(0.0, 1.0)).collect(),
            }
        }))
    }
}
