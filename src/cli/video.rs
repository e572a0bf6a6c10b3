//! `impasto video`: each frame a job of the library, started from the previous result warped
//! into it by the optical flow, with the temporal term where the flow is reliable; frames in
//! and out through `crate::video`. The style targets are computed once (the stylizer keeps
//! them across the frames' jobs).

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
use crate::model::temporal::Temporal;
use crate::model::Image;
use crate::options::{losses_of, settings_of};
use crate::preview::Preview;
use crate::video::flow::{flow, FlowSettings, Plane};
use crate::video::frames::{is_video, Frame, Sink, Source};
use crate::video::warp::{consistency, warp};

/// One frame, as the report lists it.
#[derive(serde::Serialize)]
struct FrameReport {
    frame: usize,
    name: String,
    /// "stylized", or "kept" (found in the output: a resumed run).
    status: &'static str,
    steps: usize,
    content: f64,
    style: f64,
    tv: f64,
    temporal: f64,
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
    /// The previous frame's content and result, at the output's size.
    previous: Option<(Image, Image)>,
    /// The first frame's size as read (width, height): every frame must have it.
    input_size: Option<(usize, usize)>,
    started: Instant,
    /// `--preview`: the page shows the frame being optimised and its losses.
    preview: Option<Preview>,
    /// The tile side the frames take when they do not fit whole (decided at the first frame).
    tile: Option<Option<usize>>,
}

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
    let bar = std::io::stderr().is_terminal().then(|| {
        let b = ProgressBar::new(source.count().unwrap_or(0) as u64);
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
        previous: None,
        input_size: None,
        started: Instant::now(),
        preview,
        tile: None,
    };
    if let Some(p) = &video.preview {
        crate::say!("preview: {}", p.url);
        let e = video.stylizer.engine();
        let head = serde_json::json!({ "engine": e.name(), "adapter": e.adapter(), "settings": settings_json(args) });
        p.set_head(head);
    }
    let mut i = 0;
    while let Some(frame) = source.next(i)? {
        video.frame(i, frame, source.count())?;
        i += 1;
        if stop.load(Ordering::SeqCst) {
            crate::say!("stopped after frame {i} (Ctrl-C): the same command resumes from there");
            return Ok(130);
        }
    }
    video.finish(&source, i)?;
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

impl VideoRun<'_> {
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
        if let (Some(p), Some((_, last))) = (&self.preview, &self.previous) {
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

    /// Stylizes frame `i` (or keeps its result from an earlier run), writes it and the report.
    fn frame(&mut self, i: usize, frame: Frame, count: Option<usize>) -> Result<()> {
        let t0 = Instant::now();
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
        let mut job = Job::new(frame.image, self.styles.clone());
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
        let (h, w) = job.output_size();
        let content = job.content.at(job.settings.size);
        let out = self.sink.path(i, &frame.name);
        if out.exists() {
            let kept = crate::io::image::load_original(&out)
                .with_context(|| format!("the result of frame {} in the output", frame.name))?;
            self.previous = Some((content, kept.exactly(w, h)));
            return self.done(i, count, Self::entry(i, frame.name, "kept", 0.0), t0);
        }
        let mut flow_seconds = 0.0;
        let mut consistent = 0.0;
        if let Some((prev_content, prev_result)) = &self.previous {
            let t = Instant::now();
            let (a, b) = (Plane::luma(&content), Plane::luma(prev_content));
            let backward = flow(&a, &b, FlowSettings::default());
            let forward = flow(&b, &a, FlowSettings::default());
            let warped = warp(prev_result, &backward);
            let weights = consistency(&backward, &forward);
            consistent = weights.iter().map(|&c| c as f64).sum::<f64>() / weights.len() as f64;
            flow_seconds = t.elapsed().as_secs_f64();
            job.init = Init::Given(warped.clone());
            if self.args.temporal_weight > 0.0 {
                let weight = self.args.temporal_weight;
                job.temporal = Some(Temporal {
                    target: warped,
                    weights,
                    weight,
                });
            }
            job.settings.steps = (self.args.frame_steps).unwrap_or(job.settings.steps.div_ceil(2));
        }
        let outcome = match &self.preview {
            Some(p) => self.stylizer.run(&job, &mut PreviewFeed(p))?,
            None => self.stylizer.run(&job, &mut Quiet)?,
        };
        if outcome.ending != Ending::Completed {
            bail!(
                "frame {}: the run ended {}",
                frame.name,
                outcome.ending.name()
            );
        }
        job.save(&outcome.image, &out, self.args.options.bit_depth)?;
        let last = outcome.entries.last().expect("a logged step");
        let mut entry = Self::entry(i, frame.name, "stylized", consistent);
        (entry.steps, entry.flow_seconds) = (outcome.steps_done, flow_seconds);
        let l = last.losses;
        (entry.content, entry.style, entry.tv) = (l.content, l.style, l.tv);
        (entry.temporal, entry.total) = (l.temporal, l.total);
        self.previous = Some((content, outcome.image));
        self.done(i, count, entry, t0)
    }

    fn entry(frame: usize, name: String, status: &'static str, consistent: f64) -> FrameReport {
        FrameReport {
            frame,
            name,
            status,
            steps: 0,
            content: 0.0,
            style: 0.0,
            tv: 0.0,
            temporal: 0.0,
            total: 0.0,
            consistent,
            flow_seconds: 0.0,
            seconds: 0.0,
        }
    }

    /// Records a frame: the report (rewritten whole, atomically), the progress bar or a line.
    fn done(
        &mut self, i: usize, count: Option<usize>, mut e: FrameReport, t0: Instant,
    ) -> Result<()> {
        e.seconds = t0.elapsed().as_secs_f64();
        let of = count.map(|n| format!("/{n}")).unwrap_or_default();
        let msg = format!(
            "frame {}{of} {} {}: style {:.3e} temporal {:.3e} total {:.3e}, {:.0} % consistent, {:.1} s",
            i + 1, e.name, e.status, e.style, e.temporal, e.total, 100.0 * e.consistent, e.seconds
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
        "temporal_weight": args.temporal_weight, "style_weight": o.style_weight(),
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
