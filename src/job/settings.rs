//! What one job asks for besides its images: sizes and scales, the optimiser, the colours.
//! The defaults are the seed algorithm's (`model::optim`, `model::loss` give the reasons).

use crate::model::optim::DEFAULT_STEPS;
use crate::model::scales::{schedule, Scale};
use crate::model::AdamConfig;

/// Output size: the seed's; at 512 px the default step needs about 600 MiB of GPU memory
/// (docs/memory.md), which every GPU has.
pub const DEFAULT_SIZE: usize = 512;

/// Which optimiser moves the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Optimizer {
    /// The seed's: Adam on the GPU (or CPU engine), no readback in the loop.
    Adam,
    /// L-BFGS on the host, projected to keep the image in [0, 1]; reads the gradient back
    /// every step.
    Lbfgs,
}

/// How the content image's colours are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PreserveColors {
    /// The result's luminance with the content's chroma (YIQ), applied to the output.
    Luminance,
    /// The style images' colours matched to the content's mean and covariance first.
    Histogram,
}

/// Where the first scale starts.
#[derive(Clone)]
pub enum Init {
    /// The content image (the default).
    Content,
    /// Uniform noise from this seed.
    Noise(u64),
    /// An image, resized to the content's size.
    Image(crate::io::image::Original),
    /// An image as it is, in f32 (a video frame starts from the previous result warped),
    /// resized to the content's size if it is not that size.
    Given(crate::model::Image),
}

/// A job's settings (`impasto stylize --help` explains each flag of the same name).
#[derive(Clone, Debug)]
pub struct Settings {
    /// The output's longest side.
    pub size: usize,
    /// Score the result at the end ([`super::Outcome::score`]): a few forward passes on the
    /// CPU.
    pub score: bool,
    /// Coarse to fine: the first scale's longest side (None: one scale at `size`).
    pub min_size: Option<usize>,
    /// Steps at the first scale (None: `steps`).
    pub initial_steps: Option<u64>,
    /// Steps per scale (objective and gradient evaluations, for either optimiser).
    pub steps: u64,
    /// Style images get a longest side of `style_scale · size`.
    pub style_scale: f64,
    pub optimizer: Optimizer,
    /// L-BFGS's history length.
    pub history: usize,
    /// Decay of the moving average of the iterates (0: off).
    pub average: f64,
    pub adam: AdamConfig,
    pub preserve_colors: Option<PreserveColors>,
    /// Losses are logged (and observers told) every `log_every` steps.
    pub log_every: usize,
    /// Evaluate in tiles of this side (`--tile`; CPU engine): the same result in the memory of
    /// one tile's network.
    pub tile: Option<usize>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            size: DEFAULT_SIZE,
            score: false,
            min_size: None,
            initial_steps: None,
            steps: DEFAULT_STEPS,
            style_scale: 1.0,
            optimizer: Optimizer::Adam,
            history: 100,
            average: 0.0,
            adam: AdamConfig::default(),
            preserve_colors: None,
            log_every: 10,
            tile: None,
        }
    }
}

impl Settings {
    /// The scales of the run, smallest first (`min_size`, `size`, `initial_steps`, `steps`).
    ///
    /// ```
    /// use impasto::job::Settings;
    ///
    /// let s = Settings { size: 256, min_size: Some(128), initial_steps: Some(300), steps: 100, ..Settings::default() };
    /// let scales: Vec<_> = s.scales().iter().map(|s| (s.size, s.steps)).collect();
    /// assert_eq!(scales, [(128, 300), (181, 100), (256, 100)]);
    /// ```
    pub fn scales(&self) -> Vec<Scale> {
        schedule(
            self.min_size.unwrap_or(self.size),
            self.size,
            self.initial_steps.unwrap_or(self.steps),
            self.steps,
        )
    }
}
