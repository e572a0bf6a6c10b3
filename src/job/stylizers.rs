//! One engine for many jobs whose weights or losses may differ (`impasto batch`'s manifest
//! rows, Python's `Stylizer` calls): the stylizer of the last weights and losses is kept, so
//! its weights and style targets serve every job that shares them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::engine::Engine;
use super::error::{Error, Result};
use super::stylizer::{Losses, Stylizer};
use crate::weights::{self, Weights};

/// The weights of `path`, or of the default source (fetched into the user cache when
/// missing); a file that cannot be used is an [`Error::BadFile`].
pub fn load_weights(path: Option<&Path>) -> Result<Weights> {
    let loaded = match path {
        Some(path) => Weights::load(path),
        None => weights::cache::fetch_default(),
    };
    // A typed error raised inside keeps its kind; any other is the file's.
    loaded.map_err(|e| match Error::from(e) {
        Error::Failed(e) => Error::BadFile(e),
        typed => typed,
    })
}

/// An engine made once and the stylizer of the jobs being run, remade only when a job's
/// weights file or losses differ from the last one's (the weights reread only when the file
/// differs).
pub struct Stylizers {
    engine: Arc<Engine>,
    current: Option<(Option<PathBuf>, Losses, Stylizer)>,
}

impl Stylizers {
    pub fn new(engine: impl Into<Arc<Engine>>) -> Stylizers {
        Stylizers {
            engine: engine.into(),
            current: None,
        }
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The stylizer for the weights file `weights` (None: `$IMPASTO_WEIGHTS`, then the user
    /// cache, fetched when missing) and `losses`.
    pub fn get(&mut self, weights: Option<PathBuf>, losses: &Losses) -> Result<&mut Stylizer> {
        let weights = weights::cache::resolve_path(weights.as_deref()).map_err(Error::BadFile)?;
        let same = matches!(&self.current, Some((w, l, _)) if *w == weights && l == losses);
        if !same {
            let w = match self.current.take() {
                Some((w, _, s)) if w == weights => s.weights().clone(),
                _ => load_weights(weights.as_deref())?,
            };
            let stylizer = Stylizer::new(self.engine.clone(), w, losses)?;
            self.current = Some((weights, losses.clone(), stylizer));
        }
        Ok(&mut self.current.as_mut().expect("made above").2)
    }
}
