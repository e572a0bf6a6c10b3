//! impasto's Python extension, `impasto._impasto`: paths and numpy arrays in, numpy arrays
//! out. It converts and nothing more: settings are parsed by the command line's own parser and
//! the job made as `impasto stylize` makes it (`impasto::options`), and the library runs it
//! (`impasto::job`). The package around it
//! (`python/impasto/__init__.py`) takes PIL images, wraps the callback and draws a progress
//! bar.

mod arrays;
mod errors;
mod observer;

use std::sync::{Arc, Mutex};

use pyo3::prelude::*;
use pyo3::types::PyDict;

use impasto::cli::tune;
use impasto::job::{self, Ending, Job, Stylizers};
use impasto::options::{self, JobOptions};

use arrays::{mask, picture, to_array};
use errors::{bad_setting, failure, py_error, Failure};
use observer::Calls;

/// Keyword arguments as (name, value) pairs, the values written as on a command line: a bool
/// as true/false, a number in full, a list joined by commas, a path as its text; None left
/// out.
fn pairs(settings: Option<&Bound<'_, PyDict>>) -> PyResult<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (key, value) in settings.into_iter().flat_map(|d| d.iter()) {
        let key: String = key.extract()?;
        if value.is_none() {
            continue;
        }
        let text = arrays::setting_text(&value)
            .map_err(|m| bad_setting(value.py(), format!("{key}: {m}")))?;
        out.push((key, text));
    }
    Ok(out)
}

/// Refuses the settings of `pairs` that `names` holds, saying why.
fn refuse(py: Python<'_>, pairs: &[(String, String)], names: &[&str], why: &str) -> PyResult<()> {
    match pairs
        .iter()
        .find(|(k, _)| names.contains(&options::flag_name(k).as_str()))
    {
        Some((k, _)) => Err(bad_setting(py, format!("{k}: {why}"))),
        None => Ok(()),
    }
}

/// `base` with `settings` applied by the command line's parser; the options that write a
/// command's outputs refused, and the engine's unless `engine` (a Stylizer being made).
fn parsed(
    py: Python<'_>, settings: Option<&Bound<'_, PyDict>>, base: &JobOptions, engine: bool,
) -> PyResult<JobOptions> {
    let pairs = pairs(settings)?;
    if !engine {
        let why = "the engine's setting: give it to impasto.Stylizer()";
        refuse(py, &pairs, options::ENGINE_WIDE, why)?;
    }
    let why = "a command-line output; Python gets the picture itself";
    refuse(py, &pairs, options::COMMAND_OUTPUTS, why)?;
    options::apply(base, &pairs).map_err(|m| bad_setting(py, m))
}

/// The images of one call, made into a job with `options`.
fn job_of(
    py: Python<'_>, o: &JobOptions, content: &Bound<'_, PyAny>, styles: &[Bound<'_, PyAny>],
    style_masks: Option<Vec<Bound<'_, PyAny>>>,
) -> PyResult<Job> {
    let content = picture(content, "content")?;
    let styles = (styles.iter().enumerate())
        .map(|(i, s)| picture(s, &format!("style {i}")))
        .collect::<PyResult<Vec<_>>>()?;
    let masks = style_masks
        .map(|ms| ms.iter().enumerate().map(|(i, m)| mask(m, i)).collect())
        .transpose()?;
    options::assemble(o, content, styles, masks).map_err(|e| failure(py, e))
}

/// An engine, weights and loss settings kept for many calls: the weights are read once and
/// the style targets of a style set reused (see `impasto.Stylizer`).
#[pyclass(module = "impasto._impasto")]
struct Stylizer {
    defaults: JobOptions,
    stylizers: Mutex<Stylizers>,
    /// "gpu" or "cpu" (kept apart from the stylizers, which a running job holds).
    #[pyo3(get)]
    engine: &'static str,
    /// Which engine runs, and why.
    #[pyo3(get)]
    engine_choice: String,
}

impl Stylizer {
    /// The options of one call: the defaults with `settings` applied (engine-wide ones and
    /// those that write command outputs refused).
    fn options(
        &self, py: Python<'_>, settings: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<JobOptions> {
        parsed(py, settings, &self.defaults, false)
    }

    /// Runs `f` on the stylizer of `o`'s weights and losses with `job` made ready (tiles taken
    /// when it does not fit whole), without the GIL.
    fn with_job<T: Send>(
        &self, py: Python<'_>, o: &JobOptions, mut job: Job,
        f: impl FnOnce(&mut job::Stylizer, Arc<Job>) -> Result<T, Failure> + Send,
    ) -> PyResult<T> {
        let losses = options::losses_of(o);
        let (weights, max_memory) = (o.weights.clone(), o.max_memory);
        let result = py.detach(|| {
            let mut all = self.stylizers.lock().unwrap_or_else(|p| p.into_inner());
            let stylizer = all.get(weights, &losses)?;
            stylizer.set_max_memory(max_memory);
            options::take_tiles(stylizer, &mut job).map_err(job::Error::from)?;
            f(stylizer, Arc::new(job))
        });
        result.map_err(|e| e.into_py(py))
    }
}

#[pymethods]
impl Stylizer {
    #[new]
    #[pyo3(signature = (adapter=None, settings=None))]
    fn new(
        py: Python<'_>, adapter: Option<String>, settings: Option<Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let defaults = parsed(py, settings.as_ref(), &options::defaults(), true)?;
        let chosen = py.detach(|| tune::engine(&defaults, adapter.as_deref()));
        let (engine, why) = chosen.map_err(|e| failure(py, e))?;
        // The weights read and the layers checked now: a bad one is refused here.
        let mut stylizers = Stylizers::new(engine);
        let losses = options::losses_of(&defaults);
        let weights = defaults.weights.clone();
        let made = py.detach(|| stylizers.get(weights, &losses).map(|_| ()));
        made.map_err(|e| Failure::from(e).into_py(py))?;
        let engine_choice = match why.is_empty() {
            true => format!("engine: {}", stylizers.engine().describe()),
            false => why,
        };
        Ok(Stylizer {
            defaults,
            engine: stylizers.engine().name(),
            stylizers: Mutex::new(stylizers),
            engine_choice,
        })
    }

    /// "gpu" or "cpu".
    #[getter]
    fn engine(&self) -> &'static str {
        self.stylizers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .engine()
            .name()
    }

    /// Stylizes `content` with `styles`; returns the picture, float32 (H, W, 3) in [0, 1].
    #[pyo3(signature = (content, styles, style_masks=None, callback=None, progress=None, settings=None))]
    #[allow(clippy::too_many_arguments)]
    fn stylize<'py>(
        &self, py: Python<'py>, content: Bound<'py, PyAny>, styles: Vec<Bound<'py, PyAny>>,
        style_masks: Option<Vec<Bound<'py, PyAny>>>, callback: Option<Py<PyAny>>,
        progress: Option<Py<PyAny>>, settings: Option<Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let o = self.options(py, settings.as_ref())?;
        let job = job_of(py, &o, &content, &styles, style_masks)?;
        let (job, outcome) = self.with_job(py, &o, job, |stylizer, job| {
            let mut calls = Calls::new(callback, progress, job.clone());
            let run = stylizer.run(&job, &mut calls);
            match (calls.raised.take(), run) {
                (Some(raised), _) => Err(Failure::Python(raised)),
                (None, run) => Ok((job, run?)),
            }
        })?;
        let image = to_array(py, &job.presentable(&outcome.image))?;
        let kind = match outcome.ending {
            Ending::Completed => return Ok(image),
            Ending::DeviceLost => "DeviceLost",
            Ending::Interrupted | Ending::NonFinite => "Error",
        };
        let message = format!(
            "the run ended early ({}) after {} steps; the exception's .image is the last good picture",
            outcome.ending.name(),
            outcome.steps_done
        );
        let e = py_error(py, kind, &message);
        e.value(py).setattr("image", image)?;
        Err(e)
    }

    /// The score of `picture` against `content` and `styles` at the stylizer's layers (what
    /// `impasto score` prints): a dict with `content`, `style` and each layer's value.
    #[pyo3(signature = (picture, content, styles, settings=None))]
    fn score<'py>(
        &self, py: Python<'py>, picture: Bound<'py, PyAny>, content: Bound<'py, PyAny>,
        styles: Vec<Bound<'py, PyAny>>, settings: Option<Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let o = self.options(py, settings.as_ref())?;
        let job = job_of(py, &o, &content, &styles, None)?;
        let picture = arrays::picture(&picture, "picture")?;
        let (w, h) = (picture.rgb.width() as usize, picture.rgb.height() as usize);
        let image = picture.exactly(w, h);
        let score = self.with_job(py, &o, job, |stylizer, job| {
            Ok(stylizer.score(&image, &job)?)
        })?;
        arrays::from_json(py, &serde_json::to_value(score).expect("plain data"))
    }

    /// The memory plan of the job's largest scale (what `impasto stylize --dry-run` prints).
    #[pyo3(signature = (content, styles, style_masks=None, settings=None))]
    fn plan<'py>(
        &self, py: Python<'py>, content: Bound<'py, PyAny>, styles: Vec<Bound<'py, PyAny>>,
        style_masks: Option<Vec<Bound<'py, PyAny>>>, settings: Option<Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let o = self.options(py, settings.as_ref())?;
        let job = job_of(py, &o, &content, &styles, style_masks)?;
        let json = self.with_job(py, &o, job, |stylizer, job| {
            stylizer.check_scales(&job)?;
            Ok(options::plan_json(stylizer, &job, |_, _| {}))
        })?;
        arrays::from_json(py, &json)
    }
}

/// The CPU engine and the GPU adapters, best first (as `impasto devices` lists them).
#[pyfunction]
fn devices(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    let list = py.detach(job::devices);
    arrays::from_json(py, &serde_json::to_value(list).expect("plain data"))
}

#[pymodule]
fn _impasto(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Stylizer>()?;
    m.add_class::<observer::Snapshot>()?;
    m.add_function(wrap_pyfunction!(devices, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
