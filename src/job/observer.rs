//! What a run tells the code that drives it: each scale as it starts, each step, each logged
//! evaluation with its image, notes, and the end. The progress bar, the report, `--save-every`
//! and the preview server are observers; a library caller may be one too, or use [`Quiet`].

use anyhow::Result;

use super::outcome::{LogEntry, Outcome};
use crate::model::Image;

/// A scale as it starts.
#[derive(Clone, Copy, Debug)]
pub struct ScaleStart {
    pub index: usize,
    /// How many scales the run has.
    pub count: usize,
    pub width: usize,
    pub height: usize,
    /// Steps this scale will take.
    pub steps: u64,
}

/// Where a step left the run.
#[derive(Clone, Copy, Debug)]
pub struct StepDone {
    pub scale: ScaleStart,
    /// Steps taken at this scale, this one included.
    pub step: usize,
    /// Steps taken over every scale, this one included.
    pub steps_done: usize,
}

/// Receives a run's events; every method has a default that does nothing (notes go to
/// stderr). An error returned by an observer stops the run with that error.
pub trait Observer {
    /// A scale starts.
    fn scale_started(&mut self, _scale: &ScaleStart) {}

    /// After every step. `image` reads the current image (a GPU readback): call it only when
    /// the image is wanted.
    fn stepped(&mut self, _at: &StepDone, _image: &dyn Fn() -> Result<Image>) -> Result<()> {
        Ok(())
    }

    /// A logged evaluation and the image it describes.
    fn logged(&mut self, _entry: &LogEntry, _image: &Image) -> Result<()> {
        Ok(())
    }

    /// Something the user should know (a loss turned non-finite, a lost device, steps
    /// skipped by a 16-bit overflow).
    fn note(&mut self, text: &str) {
        crate::say!("{text}");
    }

    /// The run has ended (its outcome is also what [`super::Stylizer::run`] returns).
    fn finished(&mut self, _outcome: &Outcome) -> Result<()> {
        Ok(())
    }
}

/// An observer that wants nothing (notes still go to stderr).
pub struct Quiet;

impl Observer for Quiet {}

/// Several observers, told in order.
impl Observer for Vec<&mut dyn Observer> {
    fn scale_started(&mut self, scale: &ScaleStart) {
        self.iter_mut().for_each(|o| o.scale_started(scale));
    }

    fn stepped(&mut self, at: &StepDone, image: &dyn Fn() -> Result<Image>) -> Result<()> {
        self.iter_mut().try_for_each(|o| o.stepped(at, image))
    }

    fn logged(&mut self, entry: &LogEntry, image: &Image) -> Result<()> {
        self.iter_mut().try_for_each(|o| o.logged(entry, image))
    }

    /// Told to the first observer only: one of them prints it.
    fn note(&mut self, text: &str) {
        if let Some(o) = self.first_mut() {
            o.note(text);
        }
    }

    fn finished(&mut self, outcome: &Outcome) -> Result<()> {
        self.iter_mut().try_for_each(|o| o.finished(outcome))
    }
}
