//! The job as a library: what every command drives.
//!
//! An [`Engine`] (the GPU with its kernels, or the CPU engine) is made once; a [`Stylizer`]
//! holds it with the weights and the loss settings and runs [`Job`]s: one content image, its
//! style images (with a mask each, when each style has its region), its scales and optimiser. Style targets are computed once per style set and
//! size and reused by later jobs. A run tells an [`Observer`] what it does (each step, each
//! logged evaluation with its image) and returns an [`Outcome`]; errors are typed ([`Error`]).
//! See the crate's front page for a complete example.

mod devices;
mod engine;
mod error;
mod host_memory;
mod inputs;
mod losses;
mod masks;
mod observer;
mod outcome;
mod run;
mod score;
mod settings;
mod stylizer;
mod stylizers;
pub mod tuning;

pub use crate::io::image::Original;
pub use crate::model::Image;
pub use devices::{devices, Device};
pub use engine::{host_available, host_peak, Engine, EngineChoice, Planned};
pub use error::{Error, Result};
pub use inputs::{open_image, upsample, Job, ScaleImages};
pub use masks::{parse_colour, StyleMask, REGION_TOLERANCE};
pub use observer::{Observer, Quiet, ScaleStart, StepDone};
pub use outcome::{Ending, LogEntry, Outcome, ScaleReport};
pub use score::{LayerScore, Score};
pub use settings::{Init, Optimizer, PreserveColors, Settings, DEFAULT_SIZE};
pub use stylizer::{Losses, Stylizer};
pub use stylizers::{load_weights, Stylizers};
