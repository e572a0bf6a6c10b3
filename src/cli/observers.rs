//! What `impasto stylize` does while a job runs and when it ends, as observers of the run:
//! the progress bar (or a line per logged step), `--save-every`, the live preview, and the
//! outputs (image, `--report`, `--plot`) written at the end.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};

use crate::io::plot::Point;
use crate::job::{Ending, Job, LogEntry, Observer, Outcome, ScaleReport, ScaleStart, StepDone};
use crate::model::Image;
use crate::preview::Preview;

/// A progress bar on a terminal, plain lines on logged steps otherwise.
pub struct Progress {
    bar: Option<ProgressBar>,
    /// "scale 2/4 362x272" when there are several, and the scale's steps.
    scale: (Option<String>, u64),
}

impl Progress {
    pub fn new(steps: usize) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = ProgressBar::new(steps as u64);
            b.set_style(
                ProgressStyle::with_template(
                    "{bar:30} {pos}/{len} {msg} {per_sec} {elapsed} ETA {eta}",
                )
                .expect("valid template"),
            );
            // A tiled step at 8K takes minutes: the clock shows the run is alive between steps.
            b.enable_steady_tick(std::time::Duration::from_secs(1));
            b
        });
        Progress {
            bar,
            scale: (None, 0),
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

impl Observer for Progress {
    fn scale_started(&mut self, s: &ScaleStart) {
        let name = (s.count > 1)
            .then(|| format!("scale {}/{} {}x{}", s.index + 1, s.count, s.width, s.height));
        self.scale = (name, s.steps);
    }

    fn stepped(&mut self, _: &StepDone, _: &dyn Fn() -> Result<Image>) -> Result<()> {
        if let Some(b) = &self.bar {
            b.inc(1);
        }
        Ok(())
    }

    fn logged(&mut self, e: &LogEntry, _: &Image) -> Result<()> {
        let v = &e.losses;
        let msg = format!(
            "content {:.4e} style {:.4e} tv {:.4e} total {:.4e}",
            v.content, v.style, v.tv, v.total
        );
        let scale = (self.scale.0.as_deref())
            .map(|s| format!("{s}  "))
            .unwrap_or_default();
        let rate = e.steps_done as f64 / e.seconds.max(1e-9);
        match &self.bar {
            Some(b) => b.set_message(format!("{scale}{msg}")),
            None => crate::say!(
                "{scale}step {}/{}  {msg}  {rate:.2} steps/s",
                e.step,
                self.scale.1
            ),
        }
        Ok(())
    }

    fn note(&mut self, text: &str) {
        self.finish();
        crate::say!("{text}");
    }

    fn finished(&mut self, _: &Outcome) -> Result<()> {
        self.finish();
        Ok(())
    }
}

/// `--save-every K`: the current image beside the output every K steps of a scale (but its
/// last), as OUT.stepNNNNNN.EXT or OUT.scaleI.stepNNNNNN.EXT.
pub struct SaveEvery<'a> {
    pub job: &'a Job,
    pub output: &'a Path,
    pub every: usize,
    pub bit_depth: u8,
}

impl Observer for SaveEvery<'_> {
    fn stepped(&mut self, at: &StepDone, image: &dyn Fn() -> Result<Image>) -> Result<()> {
        if at.step.is_multiple_of(self.every) && at.step < at.scale.steps as usize {
            let scale = (at.scale.count > 1).then_some(at.scale.index);
            let path = intermediate_path(self.output, scale, at.step);
            self.job.save(&image()?, &path, self.bit_depth)?;
        }
        Ok(())
    }
}

/// The live preview: each logged entry and its image (the final state: [`Outputs`]).
pub struct PreviewFeed<'a>(pub &'a Preview);

impl Observer for PreviewFeed<'_> {
    fn logged(&mut self, entry: &LogEntry, image: &Image) -> Result<()> {
        self.0.log(serde_json::to_value(entry)?, image);
        Ok(())
    }
}

/// The outputs written when the run ends, in this order: the image, the report, the
/// preview's final state, the plot.
pub struct Outputs<'a> {
    pub job: &'a Job,
    pub output: &'a Path,
    pub bit_depth: u8,
    pub report: Option<&'a Path>,
    pub preview: Option<&'a Preview>,
    pub plot: Option<&'a Path>,
    pub settings: serde_json::Value,
    /// Seconds spent before the run started (reading the inputs, choosing the engine).
    pub loading_seconds: f64,
    /// Write nothing unless the run completed (a batch's job: an output that exists is a job
    /// done).
    pub only_completed: bool,
}

impl Observer for Outputs<'_> {
    fn finished(&mut self, o: &Outcome) -> Result<()> {
        if self.only_completed && o.ending != Ending::Completed {
            return Ok(());
        }
        self.job.save(&o.image, self.output, self.bit_depth)?;
        let json = serde_json::to_string_pretty(&Report::of(o, self))?;
        if let Some(path) = self.report {
            crate::io::atomic::write_atomic(path, |f| Ok(f.write_all(json.as_bytes())?))?;
        }
        if let Some(p) = self.preview {
            p.finish(json, o.ending.name(), o.optimise_seconds, &o.image);
        }
        if let Some(path) = self.plot {
            let points: Vec<Point> = (o.entries.iter())
                .map(|e| Point {
                    step: e.steps_done,
                    content: e.losses.content,
                    style: e.losses.style,
                    tv: e.losses.tv,
                    total: e.losses.total,
                })
                .collect();
            let (w, h) = (o.image.w, o.image.h);
            let title = format!("impasto: losses, {w}x{h}, {}", o.ending.name());
            crate::io::plot::write(path, &points, &title)?;
        }
        Ok(())
    }
}

/// Everything a job command tells about a run: the progress, `--save-every`, the preview
/// feed when there is one, and the outputs at the end (in that order).
pub struct CommandObservers<'a> {
    progress: Progress,
    saves: Option<SaveEvery<'a>>,
    feed: Option<PreviewFeed<'a>>,
    outputs: Outputs<'a>,
}

impl<'a> CommandObservers<'a> {
    /// The observers of `job` run from `args`, writing `outputs`.
    pub fn new(
        job: &'a Job, args: &'a super::flags::StylizeArgs, outputs: Outputs<'a>,
    ) -> CommandObservers<'a> {
        let total = job.settings.scales().iter().map(|s| s.steps as usize).sum();
        CommandObservers {
            progress: Progress::new(total),
            saves: args.options.save_every.map(|every| SaveEvery {
                job,
                output: &args.output,
                every,
                bit_depth: args.options.bit_depth,
            }),
            feed: outputs.preview.map(PreviewFeed),
            outputs,
        }
    }

    /// The observers, as one.
    pub fn all(&mut self) -> Vec<&mut dyn Observer> {
        let mut all: Vec<&mut dyn Observer> = vec![&mut self.progress];
        all.extend(self.saves.as_mut().map(|o| o as &mut dyn Observer));
        all.extend(self.feed.as_mut().map(|o| o as &mut dyn Observer));
        all.push(&mut self.outputs);
        all
    }
}

/// The `--report` JSON.
#[derive(serde::Serialize)]
struct Report<'a> {
    steps: &'a [LogEntry],
    outcome: &'a str,
    /// "gpu" or "cpu".
    engine: &'static str,
    adapter: &'a str,
    backend: &'a str,
    /// The GPU kernels' variant per family (empty on the CPU engine).
    tiling: &'a std::collections::BTreeMap<String, String>,
    width: usize,
    height: usize,
    /// Each scale's longest side and steps, smallest first.
    scales: &'a [ScaleReport],
    steps_done: usize,
    setup_seconds: f64,
    optimise_seconds: f64,
    steps_per_second: f64,
    /// The most GPU memory held at once (wgpu's allocator report; null where the backend has none).
    peak_gpu_memory_bytes: Option<u64>,
    /// The process's peak resident memory, the picture written (Linux).
    peak_host_memory_bytes: Option<u64>,
    settings: &'a serde_json::Value,
    /// The result's score (`impasto score`'s measure; null when the job did not ask).
    score: Option<&'a crate::job::Score>,
}

impl<'a> Report<'a> {
    fn of(o: &'a Outcome, out: &'a Outputs<'_>) -> Report<'a> {
        Report {
            steps: &o.entries,
            outcome: o.ending.name(),
            engine: o.engine,
            adapter: &o.adapter,
            backend: &o.backend,
            tiling: &o.tiling,
            width: o.image.w,
            height: o.image.h,
            scales: &o.scales,
            steps_done: o.steps_done,
            setup_seconds: out.loading_seconds + o.setup_seconds,
            optimise_seconds: o.optimise_seconds,
            steps_per_second: o.steps_done as f64 / o.optimise_seconds.max(1e-9),
            peak_gpu_memory_bytes: o.peak_gpu_memory_bytes,
            peak_host_memory_bytes: crate::job::host_peak(),
            settings: &out.settings,
            score: o.score.as_ref(),
        }
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
