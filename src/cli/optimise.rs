//! The optimisation loop, one for both engines and every scale: Adam steps or L-BFGS
//! iterations, progress, logged losses, `--save-every`, Ctrl-C, a loss that turns non-finite
//! or a lost device (the last image with a finite loss is kept), and the moving average.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Result};
use indicatif::{ProgressBar, ProgressStyle};

use super::flags::{Optimizer, PreserveColors, StylizeArgs};
use crate::gpu::Gpu;
use crate::io::image::{self as image_io, Original};
use crate::model::colour::keep_luminance;
use crate::model::lbfgs::{projected, Lbfgs};
use crate::model::scales::Scale;
use crate::model::{AdamState, Engine, Image, LossValues};
use crate::preview::Preview;

/// One logged evaluation, as the report lists it.
#[derive(serde::Serialize, Clone)]
pub struct ReportEntry {
    /// Index of the scale (0: the first, smallest).
    pub scale: usize,
    pub width: usize,
    pub height: usize,
    /// Steps taken at this scale before the evaluation.
    pub step: usize,
    /// Steps taken over every scale before the evaluation.
    pub steps_done: usize,
    /// Seconds since the optimisation started.
    pub seconds: f64,
    pub content: f64,
    pub style: f64,
    pub tv: f64,
    pub total: f64,
}

const NOT_FINITE_AT_START: &str =
    "the loss of the initial image is non-finite (the weights or loss \
weights overflow f32); nothing was written";

/// How the run ended.
#[derive(PartialEq, Eq, Clone, Copy, Debug)]
pub enum Outcome {
    Completed,
    Interrupted,
    NonFinite,
    DeviceLost,
}

impl Outcome {
    /// As the report names it.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::Interrupted => "interrupted",
            Outcome::NonFinite => "non-finite loss",
            Outcome::DeviceLost => "device lost",
        }
    }

    /// The process's exit status: 130 after Ctrl-C (as shells report SIGINT), 1 after a
    /// non-finite loss or a lost GPU (the output exists but is not what was asked for).
    pub fn exit_code(self) -> i32 {
        match self {
            Outcome::Completed => 0,
            Outcome::Interrupted => 130,
            Outcome::NonFinite | Outcome::DeviceLost => 1,
        }
    }
}

/// What one scale left.
pub struct ScaleResult {
    pub outcome: Outcome,
    /// The scale's result: the (averaged) image of its last evaluation, or the last image
    /// with a finite loss.
    pub image: Image,
    /// Adam's state, to carry to the next scale (Adam only, when the scale completed).
    pub adam: Option<AdamState>,
    pub steps: usize,
}

/// The loop's state across scales: the log, the progress bar and the Ctrl-C flag.
pub struct Optimiser<'a> {
    args: &'a StylizeArgs,
    content: &'a Original,
    preview: Option<&'a Preview>,
    scales: &'a [Scale],
    interrupted: Arc<AtomicBool>,
    progress: Progress,
    pub entries: Vec<ReportEntry>,
    started: Instant,
    steps_done: usize,
    /// The scale being run and its size.
    current: (usize, usize, usize),
    /// Kept on the CPU (read back on logged steps, which wait for the GPU anyway), so it
    /// survives a lost device.
    last_good: Option<Image>,
}

impl<'a> Optimiser<'a> {
    pub fn new(
        args: &'a StylizeArgs, scales: &'a [Scale], content: &'a Original,
        preview: Option<&'a Preview>,
    ) -> Optimiser<'a> {
        let interrupted = Arc::new(AtomicBool::new(false));
        let flag = interrupted.clone();
        // A second Ctrl-C exits at once, but not in the middle of writing a file (so no
        // temporary file is left); a failure to install the handler falls back to the default.
        let _ = ctrlc::set_handler(move || {
            if flag.swap(true, Ordering::SeqCst) {
                crate::io::atomic::wait_for_writes(std::time::Duration::from_secs(30));
                std::process::exit(130);
            }
        });
        let total = scales.iter().map(|s| s.steps as usize).sum();
        Optimiser {
            args,
            content,
            preview,
            scales,
            interrupted,
            progress: Progress::new(total),
            entries: Vec::new(),
            started: Instant::now(),
            steps_done: 0,
            current: (0, 0, 0),
            last_good: None,
        }
    }

    /// Waits for Ctrl-C (`--preview-hold`).
    pub fn wait_for_interrupt(&self) {
        while !self.interrupted.load(Ordering::SeqCst) {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// Steps taken over every scale so far.
    pub fn steps_done(&self) -> usize {
        self.steps_done
    }

    pub fn seconds(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Runs scale `index` on `engine` (set up at that scale from its starting image), from
    /// Adam's state `adam` when carried over. Ends with one more evaluation (of the moving
    /// average when there is one), so the scale's last report entry describes its result.
    pub fn scale(
        &mut self, index: usize, gpu: Option<&Gpu>, engine: &mut dyn Engine,
        adam: Option<&AdamState>, (h, w): (usize, usize),
    ) -> Result<ScaleResult> {
        self.current = (index, w, h);
        self.progress.scale = (self.scales.len() > 1)
            .then(|| format!("scale {}/{} {w}x{h}", index + 1, self.scales.len()));
        self.last_good = None;
        if let Some(state) = adam {
            engine.set_adam_state(state)?;
        }
        let (done, mut outcome) = match self.args.optimizer {
            Optimizer::Adam => self.adam_steps(index, gpu, engine)?,
            Optimizer::Lbfgs => self.lbfgs_steps(index, gpu, engine)?,
        };
        if !matches!(outcome, Outcome::NonFinite | Outcome::DeviceLost) {
            if let Some(avg) = engine.averaged_image()? {
                engine.set_image(&avg.data)?;
            }
            let v = engine.evaluate()?;
            if !self.accept(engine, done, v)? {
                outcome = Outcome::NonFinite;
            }
        }
        if index + 1 == self.scales.len() || outcome != Outcome::Completed {
            self.progress.finish();
        }
        let image = match (outcome, self.last_good.take()) {
            (Outcome::NonFinite | Outcome::DeviceLost, Some(good)) => good,
            (Outcome::DeviceLost, None) => {
                bail!("the GPU device was lost before the first step; nothing was written")
            }
            _ => engine.image()?,
        };
        let more = outcome == Outcome::Completed && index + 1 < self.scales.len();
        let adam = (more && self.args.optimizer == Optimizer::Adam)
            .then(|| engine.adam_state())
            .transpose()?;
        Ok(ScaleResult {
            outcome,
            image,
            adam,
            steps: done,
        })
    }

    /// An engine error, or `Outcome::DeviceLost` when the GPU is gone.
    fn lost(&self, gpu: Option<&Gpu>, e: anyhow::Error) -> Result<Outcome> {
        if gpu.is_some_and(|g| g.lost().is_some()) {
            self.progress.finish();
            crate::say!("{e:#}; keeping the image of the last logged step");
            return Ok(Outcome::DeviceLost);
        }
        Err(e)
    }

    fn adam_steps(
        &mut self, index: usize, gpu: Option<&Gpu>, engine: &mut dyn Engine,
    ) -> Result<(usize, Outcome)> {
        let steps = self.scales[index].steps as usize;
        for s in 0..steps {
            if self.interrupted.load(Ordering::SeqCst) {
                return Ok((s, Outcome::Interrupted));
            }
            let losses = match engine.step(s % self.args.log_every == 0) {
                Err(e) => return Ok((s, self.lost(gpu, e)?)),
                Ok(v) => v,
            };
            if let Some(v) = losses {
                if !self.accept(engine, s, v)? {
                    return Ok((s, Outcome::NonFinite));
                }
            }
            self.advance(index, s + 1, engine)?;
        }
        Ok((steps, Outcome::Completed))
    }

    /// L-BFGS on the host: each step evaluates the objective and its gradient (read back) at
    /// the current image and moves to the projected L-BFGS step.
    fn lbfgs_steps(
        &mut self, index: usize, gpu: Option<&Gpu>, engine: &mut dyn Engine,
    ) -> Result<(usize, Outcome)> {
        let steps = self.scales[index].steps as usize;
        let mut lbfgs = Lbfgs::new(self.args.history);
        let mut x = engine.image()?.data;
        let mut last: Option<(Vec<f32>, Vec<f32>)> = None;
        for s in 0..steps {
            if self.interrupted.load(Ordering::SeqCst) {
                return Ok((s, Outcome::Interrupted));
            }
            let (v, g) = match engine.loss_and_gradient() {
                Err(e) => return Ok((s, self.lost(gpu, e)?)),
                Ok(r) => r,
            };
            // Every step reads the loss: a non-finite one stops the run at once.
            if (s % self.args.log_every == 0 || !v.total.is_finite())
                && !self.accept(engine, s, v)?
            {
                return Ok((s, Outcome::NonFinite));
            }
            if let Some((lx, lg)) = last.take() {
                let sub = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(a, b)| a - b).collect();
                lbfgs.push(sub(&x, &lx), sub(&g, &lg));
            }
            let next = projected(&x, &lbfgs.direction(&g));
            engine.set_image(&next)?;
            engine.fold_average()?;
            last = Some((std::mem::replace(&mut x, next), g));
            self.advance(index, s + 1, engine)?;
        }
        Ok((steps, Outcome::Completed))
    }

    /// After a step: progress, and the `--save-every` image.
    fn advance(&mut self, index: usize, step: usize, engine: &dyn Engine) -> Result<()> {
        self.steps_done += 1;
        self.progress.advance();
        if let Some(k) = self.args.save_every {
            if step.is_multiple_of(k) && step < self.scales[index].steps as usize {
                let scale = (self.scales.len() > 1).then_some(index);
                let path = intermediate_path(&self.args.output, scale, step);
                let image = engine.image()?;
                write_image(self.args, self.content, &image, &path)?;
            }
        }
        Ok(())
    }

    /// Records the losses `v` of the image evaluated at `step`, and keeps that image.
    /// Ok(false) when they are non-finite after finite ones (the scale stops, keeping the
    /// last good image); an error when the very first loss is non-finite (nothing to keep).
    fn accept(&mut self, engine: &dyn Engine, step: usize, v: LossValues) -> Result<bool> {
        if !v.total.is_finite() {
            if self.entries.is_empty() {
                bail!(NOT_FINITE_AT_START);
            }
            self.progress.finish();
            crate::say!("the loss became non-finite at step {step}; keeping the image of the last finite loss");
            return Ok(false);
        }
        self.last_good = Some(engine.evaluated_image()?);
        let rate = self.steps_done as f64 / self.seconds().max(1e-9);
        self.progress
            .log(step, self.scales[self.current.0].steps, &v, rate);
        let (scale, width, height) = self.current;
        let entry = ReportEntry {
            scale,
            width,
            height,
            step,
            steps_done: self.steps_done,
            seconds: self.seconds(),
            content: v.content,
            style: v.style,
            tv: v.tv,
            total: v.total,
        };
        if let (Some(p), Some(img)) = (self.preview, &self.last_good) {
            p.log(serde_json::to_value(&entry)?, img);
        }
        self.entries.push(entry);
        Ok(true)
    }
}

/// Writes a result (with `--preserve-colors` luminance applied against the content at its
/// size) as `--bit-depth` and with the content image's colour profile.
pub fn write_image(args: &StylizeArgs, content: &Original, img: &Image, path: &Path) -> Result<()> {
    let img = match args.preserve_colors {
        Some(PreserveColors::Luminance) => keep_luminance(img, &content.exactly(img.w, img.h)),
        _ => img.clone(),
    };
    let enc = image_io::Encoding {
        bit_depth: args.bit_depth,
        icc: content.icc.clone(),
    };
    image_io::save(&img, path, &enc)
}

/// Adam's state resized to the next scale like the image (Lanczos3); the second moments,
/// which Lanczos can ring below zero, are clamped at zero.
pub fn resize_adam(s: &AdamState, from: (usize, usize), to: (usize, usize)) -> AdamState {
    use crate::io::image::resize_planes;
    let mut v = resize_planes(&s.v, from, to);
    v.iter_mut().for_each(|v| *v = v.max(0.0));
    AdamState {
        m: resize_planes(&s.m, from, to),
        v,
        t: s.t,
    }
}

/// Where `--save-every` writes step `step` (of scale `scale` when there are several):
/// OUT.stepNNNNNN.EXT or OUT.scaleK.stepNNNNNN.EXT.
pub fn intermediate_path(output: &Path, scale: Option<usize>, step: usize) -> PathBuf {
    let stem = output.file_stem().and_then(|s| s.to_str()).unwrap_or("out");
    let ext = output.extension().and_then(|s| s.to_str()).unwrap_or("png");
    let scale = scale.map(|k| format!("scale{k}.")).unwrap_or_default();
    output.with_file_name(format!("{stem}.{scale}step{step:06}.{ext}"))
}

/// The scale and step of `path` if its name has the form of an intermediate of `output`
/// (any case).
pub fn save_step(output: &Path, path: &Path) -> Option<(Option<usize>, usize)> {
    let stem = output.file_stem()?.to_str()?.to_lowercase();
    let ext = output
        .extension()
        .and_then(|s| s.to_str())
        .unwrap_or("png")
        .to_lowercase();
    let name = path.file_name()?.to_str()?.to_lowercase();
    let rest = name
        .strip_prefix(&format!("{stem}."))?
        .strip_suffix(&format!(".{ext}"))?;
    let (scale, step) = match rest.strip_prefix("scale") {
        Some(r) => {
            let (k, step) = r.split_once('.')?;
            (Some(k.parse().ok()?), step)
        }
        None => (None, rest),
    };
    Some((scale, step.strip_prefix("step")?.parse().ok()?))
}

/// A progress bar on a terminal, plain lines on logged steps otherwise.
struct Progress {
    bar: Option<ProgressBar>,
    /// "scale 2/4 362x272" when there are several.
    scale: Option<String>,
}

impl Progress {
    fn new(steps: usize) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = ProgressBar::new(steps as u64);
            b.set_style(
                ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} {per_sec} ETA {eta}")
                    .expect("valid template"),
            );
            b
        });
        Progress { bar, scale: None }
    }

    fn log(&self, step: usize, steps: u64, v: &LossValues, rate: f64) {
        let msg = format!(
            "content {:.4e} style {:.4e} tv {:.4e} total {:.4e}",
            v.content, v.style, v.tv, v.total
        );
        let scale = self
            .scale
            .as_deref()
            .map(|s| format!("{s}  "))
            .unwrap_or_default();
        match &self.bar {
            Some(b) => b.set_message(format!("{scale}{msg}")),
            None => crate::say!("{scale}step {step}/{steps}  {msg}  {rate:.2} steps/s"),
        }
    }

    fn advance(&self) {
        if let Some(b) = &self.bar {
            b.inc(1);
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
