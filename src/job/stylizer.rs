//! The Stylizer: an engine, the weights and the loss settings, made once and run on any number
//! of jobs. Style targets are computed once per style set and size and reused by the jobs
//! that share them; each job runs its scales, smallest first, through the loop (`run.rs`).

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;

use super::engine::{Engine, Planned};
use super::error::{bad_setting, Error, Result};
use super::inputs::{upsample, Job, ScaleImages};
pub use super::losses::Losses;
use super::observer::Observer;
use super::outcome::{Ending, Outcome, ScaleReport};
use super::run::{resize_adam, Loop, ScaleResult};
use crate::model::engine::Setup;
use crate::model::style::{empty_mask, StyleMoments};
use crate::model::{Arch, Image, LossConfig, Pooling, StyleLossKind};
use crate::weights::Weights;

/// Style targets a session computed, with the style images they were computed from.
struct Targets {
    styles: Vec<(Image, f64)>,
    grams: Vec<StyleMoments>,
}

/// How many style sets (a set at one size) the Stylizer keeps the targets of.
const KEPT_TARGETS: usize = 8;

/// An engine, weights and loss settings, ready to run jobs. The engine is shared (several
/// stylizers, e.g. for jobs with other layers, may use one engine, one after another).
pub struct Stylizer {
    engine: Arc<Engine>,
    weights: Weights,
    arch: Arch,
    loss: LossConfig,
    pooling: Pooling,
    max_memory: Option<u64>,
    cancel: Arc<AtomicBool>,
    /// The most recent first.
    targets: Vec<Targets>,
}

impl Stylizer {
    /// Checks that the weights hold every layer the losses need (and those below them).
    pub fn new(
        engine: impl Into<Arc<Engine>>, weights: Weights, losses: &Losses,
    ) -> Result<Stylizer> {
        let arch = Arch::vgg19();
        let loss = losses.config(&arch)?;
        let asked = [
            (&loss.content_layers, "--content-layers"),
            (&loss.style_layers, "--style-layers"),
        ];
        for (layers, flag) in asked {
            for &l in layers {
                for spec in &arch.convs[..=l] {
                    weights
                        .layer(&spec.name)
                        .with_context(|| {
                            format!("{flag} {} needs every layer up to it", arch.convs[l].name)
                        })
                        .map_err(Error::BadFile)?;
                }
            }
        }
        let engine = engine.into();
        Ok(Stylizer {
            engine,
            weights,
            arch,
            loss,
            pooling: losses.pooling,
            max_memory: None,
            cancel: Arc::new(AtomicBool::new(false)),
            targets: Vec::new(),
        })
    }

    /// The [`super::score::Score`] of `picture` against `job`'s content and styles at this
    /// stylizer's layers (the maps through the CPU engine, whichever engine it holds).
    pub fn score(&self, picture: &Image, job: &Job) -> Result<super::score::Score> {
        let net = (&self.weights, &self.arch, self.pooling);
        super::score::score(net, &self.loss, picture, job)
    }

    /// Refuse runs whose memory plan peaks above `bytes` (besides the memory available).
    pub fn with_max_memory(mut self, bytes: Option<u64>) -> Stylizer {
        self.set_max_memory(bytes);
        self
    }

    /// As [`Stylizer::with_max_memory`], for the jobs from now on.
    pub fn set_max_memory(&mut self, bytes: Option<u64>) {
        self.max_memory = bytes;
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn weights(&self) -> &Weights {
        &self.weights
    }

    /// The flag that stops a run after its current step when raised (e.g. by Ctrl-C): the
    /// run ends [`Ending::Interrupted`] with the image it has. It stays raised.
    pub fn cancel_flag(&self) -> Arc<AtomicBool> {
        self.cancel.clone()
    }

    /// Makes `flag` the cancel flag (one flag for several stylizers).
    pub fn set_cancel_flag(&mut self, flag: Arc<AtomicBool>) {
        self.cancel = flag;
    }

    /// A session's setup for the images of one scale.
    fn setup<'a>(
        &'a self, job: &'a Job, images: &'a ScaleImages, targets: Option<&'a [StyleMoments]>,
    ) -> Setup<'a, Weights> {
        Setup {
            arch: &self.arch,
            weights: &self.weights,
            loss: &self.loss,
            pooling: self.pooling,
            adam: job.settings.adam,
            content: &images.content,
            styles: &images.styles,
            init: &images.init,
            average: job.settings.average,
            style_targets: targets,
            style_masks: images.masks.as_deref(),
            temporal: job.temporal.as_ref(),
            tile: job.settings.tile,
        }
    }

    /// The memory plan of `job` at longest side `size` (its dry session: every buffer made,
    /// no kernel run), against the memory available and the `max_memory` cap.
    pub fn plan(&self, job: &Job, size: usize) -> Result<Planned> {
        let images = job.at(size, None);
        self.capped_plan(job, &images, None)
    }

    /// The plan of `job` on `images` (in tiles of `tile`, or as the job says), its memory
    /// capped at `max_memory`. Where the engine's memory is the host's (the CPU engine, a
    /// software adapter), the pictures, the weights as read and the end's encoding count too.
    fn capped_plan(&self, job: &Job, images: &ScaleImages, tile: Option<usize>) -> Result<Planned> {
        let setup = Setup {
            tile: tile.or(job.settings.tile),
            ..self.setup(job, images, None)
        };
        let mut planned = self.engine.plan(&setup)?;
        if planned.available.is_some() {
            super::host_memory::add_host(&mut planned.plan, job, images, &self.weights);
        }
        if let Some(max) = self.max_memory {
            planned.available = Some(planned.available.map_or(max, |a| a.min(max)));
        }
        Ok(planned)
    }

    /// Without `--tile`, when `job`'s plan does not fit whole: the largest tile side (a power
    /// of two, 16 px at the least) whose tiled plan fits, evened out to the smallest side that
    /// cuts the picture into as few tiles (so the edge tiles are not slivers with whole
    /// halos). None: it fits, or no tile helps. (Powers of two, not the largest side that
    /// fits: a side a little larger saves little time, and the halving leaves room for what
    /// no plan counts — the allocator's slack, the OS's page cache.)
    pub fn fitting_tile(&self, job: &Job) -> Option<usize> {
        let whole_fits = self.plan(job, job.settings.size).is_ok_and(|p| p.fits());
        if whole_fits || job.settings.tile.is_some() {
            return None;
        }
        let (h, w) = job.output_size();
        let stages = self.arch.stages(self.loss.deepest(), h, w, self.pooling);
        let stride = crate::model::tiles::pooling_stride(&stages);
        let mut tile = (h.max(w) / 2).next_power_of_two().max(16);
        let images = job.at(job.settings.size, None);
        while tile >= 16 {
            if self
                .capped_plan(job, &images, Some(tile))
                .is_ok_and(|p| p.fits())
            {
                return Some(even_tile(tile, (h, w), stride));
            }
            tile /= 2;
        }
        None
    }

    /// Whether `job`'s images at `size` are large enough for the layers.
    fn large_enough(&self, job: &Job, size: usize) -> anyhow::Result<()> {
        let images = job.at(size, None);
        crate::model::vgg19::check_sizes(
            &self.arch,
            &self.loss,
            self.pooling,
            &images.content,
            &images.styles,
        )
    }

    /// The largest size up to `job`'s whose plan fits (binary search; sizes too small for
    /// the layers count as fitting, so the search stays monotone), or None.
    pub fn largest_fitting(&self, job: &Job) -> Option<usize> {
        let fits = |s: usize| {
            self.large_enough(job, s).is_err() || self.plan(job, s).is_ok_and(|p| p.fits())
        };
        let (mut lo, mut hi) = (1, job.settings.size);
        if !fits(lo) {
            return None;
        }
        while hi - lo > 1 {
            let mid = (lo + hi) / 2;
            if fits(mid) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        // A size too small for the layers is no answer.
        (self.large_enough(job, lo).is_ok() && self.plan(job, lo).is_ok()).then_some(lo)
    }

    /// Refuses a job whose masks do not match its styles, or with a mask that selects no
    /// pixel at a style layer at one of its scales, naming the mask's file and the layer.
    pub fn check_masks(&self, job: &Job) -> Result<()> {
        let Some(masks) = &job.style_masks else {
            return Ok(());
        };
        if self.loss.style_loss == StyleLossKind::W2 {
            return Err(Error::BadSetting(
                "--style-mask and --regions take the Gram style loss only for now (--style-loss gram)".into(),
            ));
        }
        if masks.len() != job.styles.len() {
            return Err(Error::BadSetting(format!(
                "--style-mask: {} masks for {} styles; give one mask per --style, in the same order",
                masks.len(),
                job.styles.len()
            )));
        }
        let deepest = self.loss.style_layers.iter().copied().max().unwrap_or(0);
        for scale in job.settings.scales() {
            let c = job.content.at(scale.size);
            let stages = self.arch.stages(deepest, c.h, c.w, self.pooling);
            let at = job.masks_at((c.h, c.w)).unwrap_or_default();
            if let Some(e) = empty_mask(&stages, &self.loss.style_layers, &at) {
                return Err(Error::BadSetting(format!(
                    "--style-mask {}: at {}x{} {}",
                    masks[e.style].source,
                    c.w,
                    c.h,
                    e.describe(&self.arch)
                )));
            }
        }
        Ok(())
    }

    /// Refuses a job whose first scale (of several) is too small for the layers, a video
    /// frame's job (with a temporal term) of several scales or of another size than its term's,
    /// or a `--tile` off the pooling grid.
    pub fn check_scales(&self, job: &Job) -> Result<()> {
        let scales = job.settings.scales();
        if let Some(t) = &job.temporal {
            let (h, w) = job.output_size();
            if scales.len() > 1 || (t.target.h, t.target.w) != (h, w) || t.weights.len() != h * w {
                return Err(Error::BadSetting(format!(
                    "a video frame runs one scale at its own size ({w}x{h}): no --min-size"
                )));
            }
        }
        if job.settings.tile.is_some() {
            self.tile_plan(job)?;
        }
        if let (Some(first), true) = (scales.first(), scales.len() > 1) {
            self.large_enough(job, first.size).map_err(|e| {
                bad_setting(format!(
                    "--min-size {}: the first scale, {} px, is too small ({e:#})",
                    job.settings.min_size.unwrap_or(job.settings.size),
                    first.size
                ))
            })?;
        }
        Ok(())
    }

    /// The tiles of `job`'s output (`--tile`) at its final scale, or the reason it cannot be
    /// tiled: a tile off the pooling grid of the deepest layer, a periodic picture (`--seamless`,
    /// its halos wrapping around) whose sides are not on that grid.
    pub fn tile_plan(&self, job: &Job) -> Result<Option<crate::model::tiles::TilePlan>> {
        let Some(tile) = job.settings.tile else {
            return Ok(None);
        };
        let refuse = |e: &str| Err(Error::BadSetting(format!("--tile {tile}: {e}")));
        let (c, deepest) = (job.content.at(job.settings.size), self.loss.deepest());
        let stages = self.arch.stages(deepest, c.h, c.w, self.pooling);
        let plan = match self.loss.seamless {
            true => crate::model::tiles::TilePlan::wrapped(&stages, (c.h, c.w), tile),
            false => crate::model::tiles::TilePlan::new(&stages, (c.h, c.w), tile),
        };
        match plan {
            Ok(plan) => Ok(Some(plan)),
            Err(e) => refuse(&e),
        }
    }

    /// Refuses a job whose largest scale's memory plan does not fit, naming the largest size
    /// that does.
    pub fn check_fits(&self, job: &Job) -> Result<()> {
        let (fh, fw) = job.output_size();
        let what = format!("{fw}x{fh}, {}", self.engine.describe());
        let why = match self.plan(job, job.settings.size) {
            Ok(p) if p.fits() => return Ok(()),
            Ok(p) => format!(
                "its peak, {} MiB, is more than the {} MiB available",
                p.plan.peak() >> 20,
                p.available.unwrap_or(0) >> 20
            ),
            Err(e) => format!("{e}"),
        };
        let largest = self.largest_fitting(job);
        Err(Error::DoesNotFit {
            message: format!(
                "this run would not fit ({what}): {why}; the largest --size that fits is {}",
                largest.map_or("none".into(), |s| s.to_string())
            ),
            largest_size: largest,
        })
    }

    /// The style targets of `styles`, if a session computed them.
    fn known_targets(&self, styles: &[(Image, f64)]) -> Option<&[StyleMoments]> {
        let t = self.targets.iter().find(|t| t.styles == styles)?;
        Some(&t.grams)
    }

    /// Keeps targets a session computed (the most recent first, a few sets at most).
    fn keep_targets(&mut self, styles: Vec<(Image, f64)>, grams: Vec<StyleMoments>) {
        if self.known_targets(&styles).is_none() {
            self.targets.insert(0, Targets { styles, grams });
            self.targets.truncate(KEPT_TARGETS);
        }
    }

    /// How many style sets (a set at one size) have their targets kept for later jobs.
    pub fn kept_style_sets(&self) -> usize {
        self.targets.len()
    }

    /// Runs `job`: checks it before any work ([`Stylizer::check_scales`],
    /// [`Stylizer::check_fits`]), then each scale (a session, the optimisation), telling
    /// `observer` as it goes. A run stopped by the cancel flag, a non-finite loss or a lost
    /// device still returns an outcome, with the image it kept.
    ///
    /// An observer that keeps the total loss of each logged step; a second job with the same
    /// style reuses the first one's style targets:
    ///
    /// ```
    /// use std::path::Path;
    /// use impasto::job::{Engine, Job, LogEntry, Losses, Observer, Stylizer};
    /// use impasto::model::Image;
    ///
    /// struct Totals(Vec<f64>);
    /// impl Observer for Totals {
    ///     fn logged(&mut self, e: &LogEntry, _image: &Image) -> anyhow::Result<()> {
    ///         self.0.push(e.losses.total);
    ///         Ok(())
    ///     }
    /// }
    ///
    /// let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    /// let weights = impasto::weights::Weights::load(
    ///     &repo.join("weights/vgg19-keras-block1-3.safetensors"),
    /// )?;
    /// let mut stylizer = Stylizer::new(Engine::cpu(), weights, &Losses::shallow())?;
    /// let style = repo.join("docs/images/the_scream.jpg");
    /// let mut job = Job::open(&repo.join("docs/images/tubingen.jpg"), &[&style])?;
    /// job.settings.size = 40;
    /// job.settings.steps = 20;
    /// job.settings.log_every = 5;
    ///
    /// let mut totals = Totals(Vec::new());
    /// let first = stylizer.run(&job, &mut totals)?;
    /// // Steps 0, 5, 10, 15, and the result: the loss falls.
    /// assert_eq!(totals.0.len(), 5);
    /// assert!(totals.0[4] < totals.0[0]);
    ///
    /// // The same style again: its targets are not computed again, and the run is the same.
    /// let again = stylizer.run(&job, &mut Totals(Vec::new()))?;
    /// assert_eq!(first.image, again.image);
    /// # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
    /// ```
    pub fn run(&mut self, job: &Job, observer: &mut dyn Observer) -> Result<Outcome> {
        let t0 = Instant::now();
        self.check_scales(job)?;
        self.check_masks(job)?;
        self.check_fits(job)?;
        let scales = job.settings.scales();
        let cancel = self.cancel.clone();
        let mut steps = Loop::new(&job.settings, &scales, &self.engine, observer, &cancel);
        let mut setup_seconds = None;
        let mut result: Option<ScaleResult> = None;
        let mut reports = Vec::new();
        let mut computed = Vec::new();
        for (index, scale) in scales.iter().enumerate() {
            let images = job.at(scale.size, result.as_ref().map(|r| &r.image));
            let (h, w) = (images.content.h, images.content.w);
            // The previous scale's state, taken: only its resized copy is held from here on.
            let carried = result
                .as_mut()
                .and_then(|r| Some(resize_adam(&r.adam.take()?, (r.image.h, r.image.w), (h, w))));
            // The previous scale's session is gone before this one allocates.
            let known = self.known_targets(&images.styles);
            let mut session = self.engine.session(&self.setup(job, &images, known))?;
            setup_seconds.get_or_insert(t0.elapsed().as_secs_f64());
            let r = steps.scale(index, session.as_mut(), carried, (h, w))?;
            self.engine.check_errors()?;
            let skipped_steps = session.skipped_steps()?;
            let grams = known.is_none().then(|| session.style_targets());
            drop(session);
            if skipped_steps > 0 {
                steps.observer.note(&format!(
                    "{skipped_steps} steps at {w}x{h} skipped: their 16-bit gradient overflowed (the gradient scale was halved each time)"
                ));
            }
            reports.push(ScaleReport {
                size: scale.size,
                width: w,
                height: h,
                steps: scale.steps,
                steps_done: r.steps,
                skipped_steps,
            });
            let stop = r.ending != Ending::Completed;
            result = Some(r);
            computed.extend(grams.map(|g| (images.styles, g)));
            if stop {
                break;
            }
        }
        let done = result.expect("at least one scale");
        // A run stopped at a coarse scale still gives the size asked for.
        let image = match (done.image.h, done.image.w) == job.output_size() {
            true => done.image,
            false => upsample(&done.image, job.output_size()),
        };
        let score = match job.settings.score {
            true => Some(self.score(&job.presentable(&image), job)?),
            false => None,
        };
        let outcome = Outcome {
            ending: done.ending,
            image,
            score,
            steps_done: steps.steps_done,
            optimise_seconds: steps.seconds(),
            entries: std::mem::take(&mut steps.entries),
            scales: reports,
            setup_seconds: setup_seconds.unwrap_or_default(),
            engine: self.engine.name(),
            adapter: self.engine.adapter(),
            backend: self.engine.backend(),
            tiling: self.engine.variants(),
            peak_gpu_memory_bytes: self.engine.peak_memory(),
        };
        steps.observer.finished(&outcome)?;
        drop(steps);
        for (styles, grams) in computed {
            self.keep_targets(styles, grams);
        }
        Ok(outcome)
    }
}

/// The smallest tile side, a multiple of `stride`, that cuts an `h` x `w` picture into as few
/// tiles as side `tile` does.
pub fn even_tile(tile: usize, (h, w): (usize, usize), stride: usize) -> usize {
    let side = |n: usize| n.div_ceil(n.div_ceil(tile));
    side(h).max(side(w)).next_multiple_of(stride)
}

#[cfg(test)]
mod tests {
    use crate::job::stylizer::even_tile;

    #[test]
    fn even_tiles_keep_the_count_and_shrink_the_slivers() {
        // 2048x1536 in tiles of 896: 3 x 2, a last column 256 wide and a last row 640 high;
        // 768 cuts it 3 x 2 too, rows of 768 and columns of 768, 768, 512.
        assert_eq!(even_tile(896, (1536, 2048), 16), 768);
        // Already even: unchanged.
        assert_eq!(even_tile(512, (1536, 2048), 16), 512);
        // Rounded up to the stride.
        assert_eq!(even_tile(64, (96, 128), 4), 64);
        assert_eq!(even_tile(100, (61, 250), 4), 84);
        for (tile, hw, stride) in [
            (896, (1536, 2048), 16),
            (100, (61, 250), 4),
            (48, (37, 99), 8),
        ] {
            let t = even_tile(tile, hw, stride);
            let count = |s: usize| hw.0.div_ceil(s) * hw.1.div_ceil(s);
            assert!(
                t <= tile && t.is_multiple_of(stride) && count(t) == count(tile),
                "{tile} {hw:?}"
            );
        }
    }
}
