//! The library's errors as the package's exceptions (`impasto/_errors.py`): `BadSetting` (a
//! `ValueError`), `BadFile` (an `OSError`), `DoesNotFit` (a `MemoryError`, with
//! `largest_size`), `DeviceLost`, and `Error`, their base, for the rest; the messages are the
//! command line's.

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

use impasto::job;
use impasto::options::FlagError;

/// Why a run stopped: the library's error, or an exception raised by Python code it called
/// (the callback, the progress bar, KeyboardInterrupt), which goes on up unchanged.
pub enum Failure {
    Library(job::Error),
    Python(PyErr),
}

impl From<job::Error> for Failure {
    fn from(e: job::Error) -> Failure {
        Failure::Library(e)
    }
}

impl Failure {
    pub fn into_py(self, py: Python<'_>) -> PyErr {
        match self {
            Failure::Python(e) => e,
            Failure::Library(e) => library_error(py, e),
        }
    }
}

/// The exception `impasto.<kind>` with `message`.
pub fn py_error(py: Python<'_>, kind: &str, message: &str) -> PyErr {
    let made = (py.import("impasto._errors"))
        .and_then(|m| m.getattr(kind))
        .and_then(|class| class.call1((message,)));
    match made {
        Ok(value) => PyErr::from_value(value),
        Err(e) => PyRuntimeError::new_err(format!("{message} (impasto._errors: {e})")),
    }
}

pub fn bad_setting(py: Python<'_>, message: impl AsRef<str>) -> PyErr {
    py_error(py, "BadSetting", message.as_ref())
}

/// An error of the command line's helpers: a flag's mistake is a bad setting, a typed one
/// keeps its kind.
pub fn failure(py: Python<'_>, e: anyhow::Error) -> PyErr {
    if e.downcast_ref::<FlagError>().is_some() {
        return bad_setting(py, format!("{e:#}"));
    }
    library_error(py, job::Error::from(e))
}

fn library_error(py: Python<'_>, e: job::Error) -> PyErr {
    let message = e.to_string();
    let kind = match &e {
        job::Error::BadSetting(_) => "BadSetting",
        job::Error::BadFile(_) => "BadFile",
        job::Error::DoesNotFit { .. } => "DoesNotFit",
        job::Error::DeviceLost(_) => "DeviceLost",
        job::Error::NonFinite(_) | job::Error::Failed(_) => "Error",
    };
    let raised = py_error(py, kind, &message);
    if let job::Error::DoesNotFit { largest_size, .. } = e {
        let _ = raised.value(py).setattr("largest_size", largest_size);
    }
    raised
}
