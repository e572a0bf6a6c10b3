//! The library's errors by kind, so that a caller (the CLI: exit statuses 1 and 2) can tell
//! them apart without reading their messages.

use std::fmt;

/// Why a job could not run, or could not keep anything.
///
/// ```
/// use impasto::job::{Engine, Error, Losses, Stylizer};
/// use impasto::weights::Weights;
///
/// let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
/// let weights = Weights::load(&repo.join("weights/vgg19-keras-block1-3.safetensors"))?;
/// let losses = Losses { style_layers: vec!["block9_conv9".into()], ..Losses::shallow() };
/// match Stylizer::new(Engine::cpu(), weights, &losses) {
///     Err(e @ Error::BadSetting(_)) => {
///         assert!(e.to_string().starts_with("--style-layers: unknown layer \"block9_conv9\""));
///         assert_eq!(e.exit_status(), 2);
///     }
///     _ => panic!("an unknown layer is a bad setting"),
/// }
/// # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
/// ```
#[derive(Debug)]
pub enum Error {
    /// A file that cannot be read or used: a missing, truncated or hostile image, weights
    /// that lack a layer (exit status 1).
    BadFile(anyhow::Error),
    /// A setting that cannot work: a value out of range, an unknown layer, an output that
    /// would replace an input, a first scale too small for the layers (exit status 2).
    BadSetting(String),
    /// The run's memory plan does not fit; `largest_size` is the largest `size` that does.
    DoesNotFit {
        message: String,
        largest_size: Option<usize>,
    },
    /// The GPU device was lost before any image could be kept.
    DeviceLost(String),
    /// The initial image's loss is non-finite: nothing could be kept.
    NonFinite(String),
    /// Anything else that stopped the run (a write that failed, a GPU error).
    Failed(anyhow::Error),
}

/// A [`std::result::Result`] with this module's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The process exit status a command reports for it: 2 for a bad setting (as for a bad
    /// flag), 1 otherwise.
    pub fn exit_status(&self) -> i32 {
        match self {
            Error::BadSetting(_) => 2,
            _ => 1,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::BadFile(e) | Error::Failed(e) => write!(f, "{e:#}"),
            Error::BadSetting(m) | Error::DeviceLost(m) | Error::NonFinite(m) => f.write_str(m),
            Error::DoesNotFit { message, .. } => f.write_str(message),
        }
    }
}

impl std::error::Error for Error {}

/// Inside the library errors travel as `anyhow::Error`; a typed one raised deep down comes
/// back out as its kind (with any context added on the way in its message), anything else as
/// `Failed`.
impl From<anyhow::Error> for Error {
    fn from(e: anyhow::Error) -> Error {
        let e = match e.downcast::<Error>() {
            Ok(typed) => return typed,
            Err(e) => e,
        };
        let message = format!("{e:#}");
        match e.chain().find_map(|c| c.downcast_ref::<Error>()) {
            Some(Error::BadSetting(_)) => Error::BadSetting(message),
            Some(Error::DoesNotFit { largest_size, .. }) => Error::DoesNotFit {
                message,
                largest_size: *largest_size,
            },
            Some(Error::DeviceLost(_)) => Error::DeviceLost(message),
            Some(Error::NonFinite(_)) => Error::NonFinite(message),
            Some(Error::BadFile(_)) => Error::BadFile(e),
            _ => Error::Failed(e),
        }
    }
}

/// A bad setting as an `anyhow::Error`, for code that returns anyhow's results.
pub(super) fn bad_setting(message: impl Into<String>) -> anyhow::Error {
    Error::BadSetting(message.into()).into()
}
