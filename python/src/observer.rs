//! A run's events handed to Python: after every step the pending signals are checked (Ctrl-C
//! raises KeyboardInterrupt within a step) and the progress bar moved; at each logged step
//! the callback gets the losses and a [`Snapshot`] that reads the picture only when called.
//! An exception raised there stops the run and goes on up as it is.

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyDict;

use impasto::job::{Image, Job, LogEntry, Observer, StepDone};

use crate::arrays::to_array;

/// The picture of a logged step, converted only when called (as the result is: colours
/// preserved when asked, clamped to [0, 1]).
#[pyclass(frozen, module = "impasto._impasto")]
pub struct Snapshot {
    job: Arc<Job>,
    image: Image,
}

#[pymethods]
impl Snapshot {
    fn __call__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_array(py, &self.job.presentable(&self.image))
    }
}

/// The Python code a run calls, and the exception that stopped it, if one did.
pub struct Calls {
    /// `callback(step, losses: dict, image: Snapshot, scale, seconds)` at each logged step.
    callback: Option<Py<PyAny>>,
    /// `progress(steps_done, steps)` after each step.
    progress: Option<Py<PyAny>>,
    steps: usize,
    job: Arc<Job>,
    pub raised: Option<PyErr>,
}

impl Calls {
    pub fn new(callback: Option<Py<PyAny>>, progress: Option<Py<PyAny>>, job: Arc<Job>) -> Calls {
        let steps = job.settings.scales().iter().map(|s| s.steps as usize).sum();
        Calls {
            callback,
            progress,
            steps,
            job,
            raised: None,
        }
    }

    /// Keeps `raised` for the caller; the run stops with an error that says so.
    fn stop(&mut self, result: PyResult<()>) -> anyhow::Result<()> {
        result.map_err(|e| {
            self.raised = Some(e);
            anyhow::anyhow!("stopped by an exception raised in Python")
        })
    }
}

impl Observer for Calls {
    fn stepped(
        &mut self, at: &StepDone, _image: &dyn Fn() -> anyhow::Result<Image>,
    ) -> anyhow::Result<()> {
        let result = Python::attach(|py| {
            py.check_signals()?;
            if let Some(progress) = &self.progress {
                progress.call1(py, (at.steps_done, self.steps))?;
            }
            Ok(())
        });
        self.stop(result)
    }

    fn logged(&mut self, entry: &LogEntry, image: &Image) -> anyhow::Result<()> {
        let Some(callback) = &self.callback else {
            return Ok(());
        };
        let result = Python::attach(|py| {
            let losses = PyDict::new(py);
            let v = &entry.losses;
            losses.set_item("content", v.content)?;
            losses.set_item("style", v.style)?;
            losses.set_item("tv", v.tv)?;
            if v.temporal != 0.0 {
                losses.set_item("temporal", v.temporal)?;
            }
            losses.set_item("total", v.total)?;
            let snapshot = Snapshot {
                job: self.job.clone(),
                image: image.clone(),
            };
            let args = (
                entry.steps_done,
                losses,
                snapshot,
                entry.scale,
                entry.seconds,
            );
            callback.call1(py, args).map(|_| ())
        });
        self.stop(result)
    }
}
