//! What a run leaves: each logged evaluation, each scale, how it ended and the image.

use crate::model::{Image, LossValues};

/// One logged evaluation, as the report lists it.
#[derive(serde::Serialize, Clone, Debug)]
pub struct LogEntry {
    /// Index of the scale (0: the first, smallest).
    pub scale: usize,
    pub width: usize,
    pub height: usize,
    /// Steps taken at this scale before the evaluation.
    pub step: usize,
    /// Steps taken over every scale before the evaluation.
    pub steps_done: usize,
    /// Seconds since the optimisation started.
    pub seconds: f64,
    /// The loss terms and their total, listed beside the fields above in a report.
    #[serde(flatten)]
    pub losses: LossValues,
}

/// How a run ended.
#[derive(PartialEq, Eq, Clone, Copy, Debug)]
pub enum Ending {
    Completed,
    /// The cancel flag was raised: the image of the last step is kept.
    Interrupted,
    /// The loss became non-finite: the last image with a finite loss is kept.
    NonFinite,
    /// The GPU device was lost: the image of the last logged step is kept.
    DeviceLost,
}

impl Ending {
    /// As the report names it.
    pub fn name(self) -> &'static str {
        match self {
            Ending::Completed => "completed",
            Ending::Interrupted => "interrupted",
            Ending::NonFinite => "non-finite loss",
            Ending::DeviceLost => "device lost",
        }
    }

    /// The process's exit status: 130 after Ctrl-C (as shells report SIGINT), 1 after a
    /// non-finite loss or a lost GPU (the output exists but is not what was asked for).
    pub fn exit_code(self) -> i32 {
        match self {
            Ending::Completed => 0,
            Ending::Interrupted => 130,
            Ending::NonFinite | Ending::DeviceLost => 1,
        }
    }
}

/// One scale as it ran.
#[derive(serde::Serialize, Clone, Debug)]
pub struct ScaleReport {
    pub size: usize,
    pub width: usize,
    pub height: usize,
    pub steps: u64,
    pub steps_done: usize,
    /// Adam steps skipped because their 16-bit gradient overflowed (the scale halved each time).
    pub skipped_steps: usize,
}

/// What a run left: how it ended, the image (at the output's size, before
/// [`super::Job::presentable`]), the log and the timings.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub ending: Ending,
    pub image: Image,
    /// The result's score ([`super::score::Score`], of the picture as written), when the job's
    /// settings asked for it.
    pub score: Option<super::score::Score>,
    pub entries: Vec<LogEntry>,
    pub scales: Vec<ScaleReport>,
    pub steps_done: usize,
    /// Seconds from the start of the run until the first session was ready.
    pub setup_seconds: f64,
    /// Seconds of optimisation, all scales.
    pub optimise_seconds: f64,
    /// "gpu" or "cpu".
    pub engine: &'static str,
    pub adapter: String,
    pub backend: String,
    /// The GPU kernels' variant per family ([`super::Engine::variants`]; empty on the CPU).
    pub tiling: std::collections::BTreeMap<String, String>,
    /// The most GPU memory held at once (wgpu's allocator report; None where there is none).
    pub peak_gpu_memory_bytes: Option<u64>,
}
