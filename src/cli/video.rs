//! `impasto video`: each frame a job of the library, started from the previous result warped
//! into it by the optical flow, with the temporal term where the flow is reliable; frames in
//! and out through `crate::video`. The style targets are computed once (the stylizer keeps
//! them across the frames' jobs).

use std::collections::VecDeque;
use std::io::IsTerminal;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};

use super::flags::{FlagError, VideoArgs};
use super::inputs::load_weights;
use super::observers::PreviewFeed;
use super::stylize::handle_ctrl_c;
use crate::io::same_file::{check_distinct, Named};
use crate::job::{open_image, Ending, Init, Job, Quiet, Stylizer};
use crate::model::temporal::relative_weight;
use crate::model::temporal::Temporal;
use crate::model::Image;
use crate::model::LossValues;
use crate::options::{losses_of, settings_of};
use crate::preview::Preview;
use crate::video::frames::{is_video, Frame, Sink, Source};
use crate::video::temporal::{blended_start, temporal_inputs};

/// One frame, as the report lists it.
#[derive(serde::Serialize)]
struct FrameReport {
    frame: usize,
    /// 1, or which of `--passes`.
    pass: usize,
    name: String,
    /// "stylized", or "kept" (found in the output: a resumed run).
    status: &'static str,
    steps: usize,
    content: f64,
    style: f64,
    tv: f64,
    temporal: f64,
    /// λ, the temporal term's weight (`--temporal-weight` times the frame's loss at its
    /// start, without the temporal term, times 255²).
    temporal_lambda: f64,
    total: f64,
    /// The share of pixels whose temporal weight is 1 (the flow is reliable there).
    consistent: f64,
    flow_seconds: f64,
    seconds: f64,
}

/// Options of `stylize` that mean nothing for a video, refused rather than ignored.
fn check_flags(args: &VideoArgs) -> Result<()> {
    let o = &args.options;
    let unsupported = [
        (o.min_size.is_some(), "--min-size (a frame runs one scale)"),
        (o.save_every.is_some(), "--save-every"),
        (o.plot.is_some(), "--plot"),
        (o.dry_run, "--dry-run"),
        (o.preview_hold, "--preview-hold"),
        (
            o.init != "content",
            "--init (the first frame starts from its content, the others from the previous result)",
        ),
    ];
    if let Some((_, flag)) = unsupported.iter().find(|u| u.0) {
        return Err(FlagError(format!("impasto video does not take {flag}")).into());
    }
    if let Some(b) = &o.style_blend {
        if b.len() != args.style.len() {
            let n = (b.len(), args.style.len());
            return Err(FlagError(format!(
                "--style-blend has {} weights for {} --style images",
                n.0, n.1
            ))
            .into());
        }
    }
    let named = |flag: &str, path| Named {
        flag: flag.to_string(),
        path,
    };
    let mut inputs = vec![named("--content", args.content.as_path())];
    inputs.extend(args.style.iter().map(|s| named("--style", s.as_path())));
    let mut outputs = vec![named("--output", args.output.as_path())];
    if let Some(r) = &o.report {
        outputs.push(named("--report", r.as_path()));
    }
    check_distinct(&inputs, &outputs).map_err(FlagError)?;
    if args.content.is_file() || is_video(&args.output) {
        crate::video::ffmpeg::check_program("ffmpeg")?;
    }
    Ok(())
}

/// A run over the frames: what each frame's job needs from the ones before it.
struct VideoRun<'a> {
    args: &'a VideoArgs,
    stylizer: Stylizer,
    styles: Vec<(crate::io::image::Original, f64)>,
    sink: Sink,
    bar: Option<ProgressBar>,
    report: Vec<FrameReport>,
    /// The last result, for the preview's final state (kept only with `--preview`).
    last: Option<Image>,
    /// The first frame's size as read (width, height): every frame must have it.
    input_size: Option<(usize, usize)>,
    started: Instant,
    /// `--preview`: the page shows the frame being optimised and its losses.
    preview: Option<Preview>,
    /// The tile side the frames take when they do not fit whole (decided at the first frame).
    tile: Option<Option<usize>>,
    /// Frames in the input (when known) and passes over them, for the progress.
    count: Option<usize>,
}

/// Which frame of which pass, for the report and the progress.
#[derive(Clone, Copy)]
struct At {
    index: usize,
    pass: usize,
}

/// In a pass after the first, a frame starts this much from the neighbour's result warped
/// into it and the rest from its own result of the pass before, where the flow is consistent
/// (Ruder et al.'s δ = 0.5).
const MULTI_PASS_BLEND: f32 = 0.5;

pub fn run(args: &VideoArgs, adapter: Option<&str>) -> Result<i32> {
    check_flags(args)?;
    // Listening first: a taken port is refused before any work.
    let preview = match &args.options.preview {
        Some(addr) => Some(Preview::start(addr).map_err(|e| FlagError(format!("{e:#}")))?),
        None => None,
    };
    let stylizer = stylizer(args, adapter)?;
    let blend = (args.options.style_blend.clone()).unwrap_or_else(|| vec![1.0; args.style.len()]);
    let styles = (args.style.iter().zip(blend))
        .map(|(p, w)| Ok((open_image(p).context("--style")?, w)))
        .collect::<Result<Vec<_>>>()?;
    let mut source = Source::open(&args.content)?;
    let count = source.count();
    let bar = std::io::stderr().is_terminal().then(|| {
        let b = ProgressBar::new((count.unwrap_or(0) * args.passes) as u64);
        let style = ProgressStyle::with_template("frames {bar:30} {pos}/{len} {msg} ETA {eta}");
        b.set_style(style.expect("valid template"));
        b
    });
    let stop = Arc::new(AtomicBool::new(false));
    handle_ctrl_c(&stop);
    let mut video = VideoRun {
        args,
        stylizer,
        styles,
        sink: Sink::new(&args.output)?,
        bar,
        report: Vec::new(),
        last: None,
        input_size: None,
        started: Instant::now(),
        preview,
        tile: None,
        count,
    };
    if let Some(p) = &video.preview {
        crate::say!("preview: {}", p.url);
        let e = video.stylizer.engine();
        let head = serde_json::json!({ "engine": e.name(), "adapter": e.adapter(), "settings": settings_json(args) });
        p.set_head(head);
    }
    let frames = match args.passes {
        1 => video.single_pass(&mut source, &stop)?,
        _ => video.multi_pass(&mut source, &stop)?,
    };
    let Some(frames) = frames else {
        return Ok(130);
    };
    video.finish(&source, frames)?;
    Ok(0)
}

/// The engine, the weights and the losses of the flags.
fn stylizer(args: &VideoArgs, adapter: Option<&str>) -> Result<Stylizer> {
    let o = &args.options;
    let weights =
        load_weights(crate::weights::cache::resolve_path(o.weights.as_deref())?.as_deref())?;
    let (engine, why) = super::tune::engine(o, adapter)?;
    if !why.is_empty() {
        crate::say!("{why}");
    }
    Ok(Stylizer::new(engine, weights, &losses_of(o))?.with_max_memory(o.max_memory))
}

/// Ctrl-C was pressed: the frame just written is the last (the same command resumes).
fn stopped(stop: &AtomicBool, at: At, passes: usize) -> bool {
    let stopped = stop.load(Ordering::SeqCst);
    if stopped {
        let pass = if passes > 1 {
            format!(" of pass {}", at.pass + 1)
        } else {
            String::new()
        };
        crate::say!(
            "stopped after frame {}{pass} (Ctrl-C): the same command resumes from there",
            at.index + 1
        );
    }
    stopped
}

impl VideoRun<'_> {
    /// One pass, frame after frame as they are read, each following the results of the
    /// `--long-term` frames before it. The number of frames, or None when stopped.
    fn single_pass(&mut self, source: &mut Source, stop: &AtomicBool) -> Result<Option<usize>> {
        // (content, result) of the frames before, nearest first.
        let mut history: VecDeque<(Image, Image)> = VecDeque::new();
        let mut i = 0;
        while let Some(frame) = source.next(i)? {
            let job = self.job(&frame)?;
            let content = job.content.at(job.settings.size);
            let earlier: Vec<(&Image, &Image)> = history.iter().map(|(c, r)| (c, r)).collect();
            let out = self.sink.path(i, &frame.name);
            let at = At { index: i, pass: 0 };
            let result = self.frame(at, &frame.name, job, (&content, &earlier), None, &out)?;
            history.push_front((content, result));
            history.truncate(self.args.long_term);
            i += 1;
            if stopped(stop, at, 1) {
                return Ok(None);
            }
        }
        Ok(Some(i))
    }

    /// Ruder et al.'s multi-pass scheme: the first pass as [`Self::single_pass`], then
    /// passes alternately backward and forward, each frame starting from a blend of its
    /// result of the pass before and its neighbour's of this pass (warped), with the temporal
    /// term towards the neighbours of the pass's direction. Every frame is held in memory
    /// (a later pass goes back over them); the passes before the last are kept in
    /// `OUTPUT.passes/` for resuming, and removed at the end.
    fn multi_pass(&mut self, source: &mut Source, stop: &AtomicBool) -> Result<Option<usize>> {
        let mut frames = Vec::new();
        while let Some(f) = source.next(frames.len())? {
            frames.push(f);
        }
        let mut contents = Vec::with_capacity(frames.len());
        for f in &frames {
            let job = self.job(f)?;
            contents.push(job.content.at(job.settings.size));
        }
        let (n, passes) = (frames.len(), self.args.passes);
        // A finished run again: its last pass is all there is to keep.
        let all_kept = (0..n).all(|t| self.sink.path(t, &frames[t].name).exists());
        let mut results: Vec<Image> = Vec::new();
        for pass in (if all_kept { passes - 1 } else { 0 })..passes {
            let order: Vec<usize> = match pass % 2 {
                0 => (0..n).collect(),
                _ => (0..n).rev().collect(),
            };
            let mut now: Vec<Option<Image>> = vec![None; n];
            for (k, &t) in order.iter().enumerate() {
                let near = order[..k].iter().rev().take(self.args.long_term);
                let earlier: Vec<(&Image, &Image)> = near
                    .map(|&s| (&contents[s], now[s].as_ref().expect("done this pass")))
                    .collect();
                let out = match pass + 1 == passes {
                    true => self.sink.path(t, &frames[t].name),
                    false => self.sink.pass_path(pass, t)?,
                };
                let (job, at) = (self.job(&frames[t])?, At { index: t, pass });
                let inputs = (&contents[t], &earlier[..]);
                let r = self.frame(at, &frames[t].name, job, inputs, results.get(t), &out)?;
                now[t] = Some(r);
                if stopped(stop, at, passes) {
                    return Ok(None);
                }
            }
            results = now.into_iter().map(|r| r.expect("every frame")).collect();
        }
        self.sink.remove_passes()?;
        Ok(Some(n))
    }

    /// After the last of `frames` frames: the video encoded (when the output is one), the
    /// preview's final state.
    fn finish(&self, source: &Source, frames: usize) -> Result<()> {
        if frames == 0 {
            bail!(
                "--content {}: the video has no frames",
                self.args.content.display()
            );
        }
        let (rate, size) = match source.info() {
            Some(info) => (info.rate.clone(), (info.width, info.height)),
            None => (
                self.args.fps.clone(),
                self.input_size.expect("a frame was read"),
            ),
        };
        self.sink.finish(&rate, size)?;
        let seconds = self.started.elapsed().as_secs_f64();
        if let (Some(p), Some(last)) = (&self.preview, &self.last) {
            p.finish(
                serde_json::to_string(&self.report)?,
                "completed",
                seconds,
                last,
            );
        }
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
        let out = self.args.output.display();
        crate::say!("wrote {out} ({frames} frames in {seconds:.1} s)");
        Ok(())
    }

    /// A frame's job with the video's settings (its size checked against the first frame's).
    fn job(&mut self, frame: &Frame) -> Result<Job> {
        let size = (
            frame.image.rgb.width() as usize,
            frame.image.rgb.height() as usize,
        );
        match self.input_size {
            Some(first) if first != size => bail!(
                "--content {}: frame {} is {}x{}, the first frame {}x{}: every frame must have one size",
                self.args.content.display(), frame.name, size.0, size.1, first.0, first.1
            ),
            _ => self.input_size = Some(size),
        }
        let mut job = Job::new(frame.image.clone(), self.styles.clone());
        job.settings = settings_of(&self.args.options);
        // (The video's report is per frame: no score a frame.)
        job.settings.score = false;
        // Frames that do not fit whole take tiles (the first frame decides for all: one size).
        if self.tile.is_none() {
            let tile = self.stylizer.fitting_tile(&job);
            if let Some(t) = tile {
                crate::say!("the frames do not fit whole: in tiles of {t} px instead (--tile {t})");
            }
            self.tile = Some(tile);
        }
        job.settings.tile = job.settings.tile.or(self.tile.flatten());
        Ok(job)
    }

    /// Stylizes one frame (or keeps its result from an earlier run at `out`), writes it and
    /// the report. `earlier`: the (content, result) of the frames before it in this pass,
    /// nearest first; `before`: its result of the pass before.
    fn frame(
        &mut self, at: At, name: &str, mut job: Job,
        (content, earlier): (&Image, &[(&Image, &Image)]), before: Option<&Image>, out: &Path,
    ) -> Result<Image> {
        let t0 = Instant::now();
        let (h, w) = job.output_size();
        if out.exists() {
            let kept = crate::io::image::load_original(out)
                .with_context(|| format!("the result of frame {name} in the output"))?
                .exactly(w, h);
            self.done(Self::entry(at, name, "kept"), t0)?;
            return Ok(kept);
        }
        let mut entry = Self::entry(at, name, "stylized");
        let frame_steps = (self.args.frame_steps).unwrap_or(job.settings.steps.div_ceil(2));
        if !earlier.is_empty() {
            let t = Instant::now();
            let inputs = temporal_inputs(content, earlier);
            (entry.consistent, entry.flow_seconds) = (inputs.consistent, t.elapsed().as_secs_f64());
            let start = match before {
                Some(b) => blended_start(&inputs, b, MULTI_PASS_BLEND),
                None => inputs.target.clone(),
            };
            job.init = Init::Given(start);
            (job.settings.steps, job.settings.initial_steps) = (frame_steps, None);
            if self.args.temporal_weight > 0.0 {
                let lambda =
                    relative_weight(self.args.temporal_weight, &self.start_losses(&mut job)?);
                entry.temporal_lambda = lambda;
                job.temporal = Some(Temporal {
                    target: inputs.target,
                    weights: inputs.weights,
                    weight: lambda,
                });
            }
        } else if let Some(b) = before {
            job.init = Init::Given(b.clone());
            (job.settings.steps, job.settings.initial_steps) = (frame_steps, None);
        }
        let outcome = match &self.preview {
            Some(p) => self.stylizer.run(&job, &mut PreviewFeed(p))?,
            None => self.stylizer.run(&job, &mut Quiet)?,
        };
        if outcome.ending != Ending::Completed {
            bail!("frame {name}: the run ended {}", outcome.ending.name());
        }
        if at.pass + 1 == self.args.passes {
            job.save(&outcome.image, out, self.args.options.bit_depth)?;
        } else {
            // A pass's result as it is, in 16 bits: the next pass starts from it.
            let enc = crate::io::image::Encoding {
                bit_depth: 16,
                icc: None,
            };
            crate::io::image::save(&outcome.image, out, &enc)?;
        }
        let last = outcome.entries.last().expect("a logged step");
        entry.steps = outcome.steps_done;
        let l = last.losses;
        (entry.content, entry.style, entry.tv) = (l.content, l.style, l.tv);
        (entry.temporal, entry.total) = (l.temporal, l.total);
        self.done(entry, t0)?;
        if self.preview.is_some() {
            self.last = Some(outcome.image.clone());
        }
        Ok(outcome.image)
    }

    /// The losses of a frame's starting image (a run of no step): the temporal weight is
    /// relative to its style and content ([`relative_weight`]).
    fn start_losses(&mut self, job: &mut Job) -> Result<LossValues> {
        let steps = std::mem::replace(&mut job.settings.steps, 0);
        let outcome = self.stylizer.run(job, &mut Quiet)?;
        job.settings.steps = steps;
        Ok(outcome.entries.last().expect("the start evaluated").losses)
    }

    fn entry(at: At, name: &str, status: &'static str) -> FrameReport {
        FrameReport {
            frame: at.index,
            pass: at.pass + 1,
            name: name.to_string(),
            status,
            steps: 0,
            content: 0.0,
            style: 0.0,
            tv: 0.0,
            temporal: 0.0,
            temporal_lambda: 0.0,
            total: 0.0,
            consistent: 0.0,
            flow_seconds: 0.0,
            seconds: 0.0,
        }
    }

    /// Records a frame: the report (rewritten whole, atomically), the progress bar or a line.
    fn done(&mut self, mut e: FrameReport, t0: Instant) -> Result<()> {
        e.seconds = t0.elapsed().as_secs_f64();
        let of = self.count.map(|n| format!("/{n}")).unwrap_or_default();
        let pass = match self.args.passes {
            1 => String::new(),
            p => format!(" (pass {}/{p})", e.pass),
        };
        let msg = format!(
            "frame {}{of}{pass} {} {}: style {:.3e} temporal {:.3e} total {:.3e}, {:.0} % consistent, {:.1} s",
            e.frame + 1, e.name, e.status, e.style, e.temporal, e.total, 100.0 * e.consistent, e.seconds
        );
        self.report.push(e);
        match &self.bar {
            Some(b) => {
                b.set_message(msg);
                b.inc(1);
            }
            None => crate::say!("{msg}"),
        }
        if let Some(path) = &self.args.options.report {
            write_report(path, self.args, &self.report, &self.stylizer)?;
        }
        Ok(())
    }
}

/// The settings that matter to a video, for the report and the preview page.
fn settings_json(args: &VideoArgs) -> serde_json::Value {
    let o = &args.options;
    serde_json::json!({
        "content": args.content, "style": args.style, "output": args.output,
        "size": o.size, "steps": o.steps, "frame_steps": args.frame_steps.unwrap_or(o.steps.div_ceil(2)),
        "temporal_weight": args.temporal_weight, "long_term": args.long_term, "passes": args.passes,
        "style_weight": o.style_weight(),
        "content_layers": o.layers.content_layers, "style_layers": o.layers.style_layers,
    })
}

/// The report: the engine, the settings, then each frame.
fn write_report(path: &Path, args: &VideoArgs, frames: &[FrameReport], s: &Stylizer) -> Result<()> {
    use std::io::Write;
    let json = serde_json::json!({
        "engine": s.engine().name(), "adapter": s.engine().adapter(),
        "settings": settings_json(args), "frames": frames,
    });
    let text = serde_json::to_string_pretty(&json)?;
    crate::io::atomic::write_atomic(path, |f| Ok(f.write_all(text.as_bytes())?))
}
