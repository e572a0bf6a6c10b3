//! `impasto batch MANIFEST`: the manifest's jobs (`manifest.rs`) of this shard, one after
//! another in one process on one engine, the weights loaded once and the style targets reused
//! by the jobs that share them (the library's `Stylizer`). Idempotent: a job whose output
//! exists is skipped (outputs are written whole or not at all), so rerunning the same command
//! after a crash or a pre-empted node finishes only what is missing. One failing job is
//! reported and the others go on.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;

use super::flags::{BatchArgs, FlagError, StylizeArgs};
use super::inputs::{check_paths, load_job, losses};
use super::manifest::{self, Row};
use super::observers::{CommandObservers, Outputs};
use crate::io::same_file::FileKeys;
use crate::job::{Ending, Outcome, Stylizers};

/// Which jobs this process runs: job i when i mod n == k.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shard {
    pub k: usize,
    pub n: usize,
    /// Where k and n came from, for the run to say.
    pub source: String,
}

/// The shard from `--shard K/N`; else Slurm's array variables (K = SLURM_ARRAY_TASK_ID −
/// SLURM_ARRAY_TASK_MIN, over SLURM_ARRAY_TASK_STEP when set; N = SLURM_ARRAY_TASK_COUNT);
/// else a Kubernetes Indexed Job's JOB_COMPLETION_INDEX with N from `--shards` or
/// IMPASTO_SHARDS; else the whole manifest. `env` reads a variable (the process's in use).
pub fn shard(
    flag: Option<&str>, shards: Option<usize>, env: impl Fn(&str) -> Option<String>,
) -> Result<Shard, FlagError> {
    let number = |name: &str, text: &str| {
        (text.trim().parse::<usize>())
            .map_err(|_| FlagError(format!("{name}={text:?} is not a whole number")))
    };
    let var = |name: &str| env(name).map(|v| number(name, &v)).transpose();
    let (k, n, source) = if let Some(f) = flag {
        let (k, n) = f
            .split_once('/')
            .ok_or_else(|| FlagError(format!("--shard {f}: use K/N, e.g. 0/4")))?;
        (
            number("--shard", k)?,
            number("--shard", n)?,
            format!("--shard {f}"),
        )
    } else if let Some(id) = var("SLURM_ARRAY_TASK_ID")? {
        let min = var("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
        let step = var("SLURM_ARRAY_TASK_STEP")?.unwrap_or(1).max(1);
        let count = var("SLURM_ARRAY_TASK_COUNT")?.ok_or_else(|| {
            FlagError("SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not".into())
        })?;
        let k = id.checked_sub(min).map(|d| d / step).unwrap_or(usize::MAX);
        (k, count, format!("Slurm array task {id}"))
    } else if let Some(index) = var("JOB_COMPLETION_INDEX")? {
        let n = match shards {
            Some(n) => n,
            None => var("IMPASTO_SHARDS")?.ok_or_else(|| {
                FlagError("JOB_COMPLETION_INDEX is set: give the number of shards with --shards N or IMPASTO_SHARDS (the Job's completions)".into())
            })?,
        };
        (index, n, format!("Kubernetes JOB_COMPLETION_INDEX {index}"))
    } else {
        (0, 1, "no shard: every job".into())
    };
    if n == 0 || k >= n {
        return Err(FlagError(format!(
            "shard {k} of {n} ({source}): K must be below N"
        )));
    }
    Ok(Shard { k, n, source })
}

/// Refuses, before any work, a manifest where two jobs write the same file or a job writes
/// over an input (its own or another job's).
fn check_outputs(rows: &[Row], manifest: &Path) -> Result<(), FlagError> {
    let mut keys = FileKeys::default();
    let mut inputs: HashMap<String, String> = HashMap::new();
    for r in rows {
        for p in std::iter::once(&r.content).chain(&r.styles) {
            let what = format!("line {}'s input {}", r.line, p.display());
            inputs.entry(keys.key(p)).or_insert(what);
        }
    }
    let mut outputs: HashMap<String, usize> = HashMap::new();
    for r in rows {
        let key = keys.key(&r.output);
        let clash = match (inputs.get(&key), outputs.get(&key)) {
            (Some(input), _) => format!("is {input}"),
            (None, Some(line)) => format!("is line {line}'s output too"),
            (None, None) => {
                outputs.insert(key, r.line);
                continue;
            }
        };
        return Err(FlagError(format!(
            "manifest {} line {}: output {} {clash}: refusing to overwrite it",
            manifest.display(),
            r.line,
            r.output.display()
        )));
    }
    Ok(())
}

/// How one job ended, as the results file lists it.
#[derive(serde::Serialize)]
struct JobResult<'a> {
    line: usize,
    output: &'a Path,
    status: &'static str,
    seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    losses: Option<crate::model::LossValues>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// `--results`: one JSON line per job as it ends, flushed at once (a crash loses nothing
/// written before it).
struct Results(Option<std::fs::File>);

impl Results {
    fn open(path: Option<&Path>, shard: &Shard) -> Result<Results> {
        let Some(path) = path else {
            return Ok(Results(None));
        };
        let path = PathBuf::from(
            path.to_string_lossy()
                .replace("{shard}", &shard.k.to_string()),
        );
        crate::io::atomic::check_parent_dir(&path, "--results")?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| anyhow::anyhow!("--results {}: {e}", path.display()))?;
        Ok(Results(Some(file)))
    }

    fn add(&mut self, r: &JobResult<'_>) -> Result<()> {
        if let Some(f) = &mut self.0 {
            let mut line = serde_json::to_string(r)?;
            line.push('\n');
            f.write_all(line.as_bytes())?;
            f.flush()?;
        }
        Ok(())
    }
}

/// Runs `impasto batch`. The exit status: 0 when every job of the shard is done or skipped,
/// 1 when any failed, 130 when interrupted (the job under way is not written).
pub fn run(args: &BatchArgs, adapter: Option<&str>) -> Result<i32> {
    let defaults = &args.options;
    for (set, flag) in [
        (defaults.report.is_some(), "--report"),
        (defaults.plot.is_some(), "--plot"),
        (defaults.preview.is_some(), "--preview"),
        (defaults.dry_run, "--dry-run"),
    ] {
        if set {
            return Err(FlagError(format!("{flag} is per job in a batch: give it as a manifest column (--preview and --dry-run: run impasto stylize)")).into());
        }
    }
    let rows = manifest::read(&args.manifest)?;
    check_outputs(&rows, &args.manifest)?;
    let shard = shard(args.shard.as_deref(), args.shards, |v| {
        std::env::var(v).ok()
    })?;
    let mine: Vec<&Row> = (rows.iter().enumerate())
        .filter(|(i, _)| i % shard.n == shard.k)
        .map(|(_, r)| r)
        .collect();
    crate::say!(
        "batch: {} of the manifest's {} jobs (shard {}/{}: {})",
        mine.len(),
        rows.len(),
        shard.k,
        shard.n,
        shard.source
    );
    let mut results = Results::open(args.results.as_deref(), &shard)?;
    let (engine, why) = super::tune::engine(defaults, adapter)?;
    if !why.is_empty() {
        crate::say!("{why}");
    }
    let mut stylizers = Stylizers::new(engine);
    let cancel = Arc::new(AtomicBool::new(false));
    super::stylize::handle_ctrl_c(&cancel);
    let (mut failed, mut ran, started) = (0, 0, Instant::now());
    for (i, row) in mine.iter().enumerate() {
        let (status, said) = one_job(row, args, &mut stylizers, &cancel, &mut results)?;
        failed += (status == "failed") as usize;
        ran += (status != "skipped") as usize;
        // The time left, from the jobs run so far (skipped ones cost nothing).
        let left = mine.len() - i - 1;
        let eta = match ran {
            0 => String::new(),
            _ => {
                let each = started.elapsed().as_secs_f64() / ran as f64;
                format!(", about {:.0} s left", each * left as f64)
            }
        };
        crate::say!(
            "[{}/{}] {said}{}",
            i + 1,
            mine.len(),
            if left > 0 { eta } else { String::new() }
        );
        if cancel.load(Ordering::SeqCst) {
            crate::say!("batch: interrupted; rerun the same command to finish the rest");
            return Ok(130);
        }
    }
    crate::say!("batch: {} jobs, {failed} failed", mine.len());
    Ok(if failed > 0 { 1 } else { 0 })
}

/// Runs (or skips) one job and adds its line to the results; its status, and a line saying
/// how it went.
fn one_job(
    row: &Row, args: &BatchArgs, stylizers: &mut Stylizers, cancel: &Arc<AtomicBool>,
    results: &mut Results,
) -> Result<(&'static str, String)> {
    let t0 = Instant::now();
    let (status, outcome, error) = if row.output.exists() && !args.overwrite {
        ("skipped", None, None)
    } else {
        match run_job(row, &args.options, stylizers, cancel) {
            Ok(o) if o.ending == Ending::Completed => ("done", Some(o), None),
            Ok(o) => (
                "failed",
                None,
                Some(format!("{}: not written", o.ending.name())),
            ),
            Err(e) => ("failed", None, Some(format!("{e:#}"))),
        }
    };
    let seconds = t0.elapsed().as_secs_f64();
    let losses = (outcome.as_ref().and_then(|o| o.entries.last())).map(|e| e.losses);
    let said = format!(
        "line {} {}: {status} ({seconds:.1} s){}",
        row.line,
        row.output.display(),
        (error.as_deref().map(|e| format!(": {e}"))).unwrap_or_default()
    );
    results.add(&JobResult {
        line: row.line,
        output: &row.output,
        status,
        seconds,
        losses,
        error,
    })?;
    Ok((status, said))
}

/// One job: its options, checks and images, then the run; its outputs are written only when
/// it completes (an interrupted or failed job leaves nothing, so a rerun does it again).
fn run_job(
    row: &Row, defaults: &super::flags::JobOptions, stylizers: &mut Stylizers,
    cancel: &Arc<AtomicBool>,
) -> Result<Outcome> {
    let options = manifest::options_for(defaults, row).map_err(FlagError)?;
    let args = StylizeArgs {
        content: row.content.clone(),
        style: row.styles.clone(),
        style_mask: Vec::new(),
        regions: None,
        output: row.output.clone(),
        options,
    };
    // A job's folders are made for it.
    for p in [
        Some(&args.output),
        args.options.report.as_ref(),
        args.options.plot.as_ref(),
    ] {
        if let Some(dir) = p.map(|p| crate::io::atomic::parent_dir(p)) {
            std::fs::create_dir_all(&dir)
                .map_err(|e| anyhow::anyhow!("making {}: {e}", dir.display()))?;
        }
    }
    let weights = check_paths(&args)?;
    let stylizer = stylizers.get(weights, &losses(&args))?;
    stylizer.set_max_memory(args.options.max_memory);
    stylizer.set_cancel_flag(cancel.clone());
    let mut job = load_job(&args)?;
    let mut settings = super::stylize::settings_json(&args, stylizer.weights());
    super::stylize::merge(
        &mut settings,
        crate::options::take_tiles(stylizer, &mut job)?,
    );
    let outputs = Outputs {
        job: &job,
        output: &args.output,
        bit_depth: args.options.bit_depth,
        report: args.options.report.as_deref(),
        preview: None,
        plot: args.options.plot.as_deref(),
        settings,
        loading_seconds: 0.0,
        only_completed: true,
    };
    let mut observers = CommandObservers::new(&job, &args, outputs);
    Ok(stylizer.run(&job, &mut observers.all())?)
}

#[cfg(test)]
mod tests {
    use crate::cli::batch::{shard, Shard};

    fn from<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| vars.iter().find(|v| v.0 == name).map(|v| v.1.to_string())
    }

    #[test]
    fn shards_follow_the_flag_then_slurm_then_kubernetes() {
        let at = |s: Shard| (s.k, s.n);
        assert_eq!(at(shard(Some("2/5"), None, from(&[])).unwrap()), (2, 5));
        assert_eq!(at(shard(None, None, from(&[])).unwrap()), (0, 1));
        let slurm = [
            ("SLURM_ARRAY_TASK_ID", "7"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
            ("SLURM_ARRAY_TASK_STEP", "2"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
            ("JOB_COMPLETION_INDEX", "0"),
        ];
        // --array=1-7:2 is tasks 1, 3, 5, 7: task 7 is shard 3 of 4; the flag comes first.
        assert_eq!(at(shard(None, None, from(&slurm)).unwrap()), (3, 4));
        assert_eq!(at(shard(Some("0/2"), None, from(&slurm)).unwrap()), (0, 2));
        let k8s = [("JOB_COMPLETION_INDEX", "2"), ("IMPASTO_SHARDS", "3")];
        assert_eq!(at(shard(None, None, from(&k8s)).unwrap()), (2, 3));
        assert_eq!(at(shard(None, Some(5), from(&k8s)).unwrap()), (2, 5));
        for bad in [
            shard(Some("3/3"), None, from(&[])),
            shard(Some("1-3"), None, from(&[])),
            shard(None, None, from(&[("SLURM_ARRAY_TASK_ID", "1")])),
            shard(
                None,
                None,
                from(&[("JOB_COMPLETION_INDEX", "x"), ("IMPASTO_SHARDS", "2")]),
            ),
            shard(None, None, from(&[("JOB_COMPLETION_INDEX", "1")])),
        ] {
            assert!(bad.is_err());
        }
    }
}
