//! What the optimisation loop needs from an engine (the GPU pipeline or the CPU engine): one
//! step at a time, the losses now and then, and the image.

use anyhow::Result;

use super::image::Image;
use super::loss::LossValues;

pub trait Engine {
    /// One optimiser step on the image. With `losses`, also returns the losses of the image
    /// before the update (and keeps that image as the evaluated one).
    fn step(&mut self, losses: bool) -> Result<Option<LossValues>>;
    /// The losses of the current image, which becomes the evaluated one (no update).
    fn evaluate(&mut self) -> Result<LossValues>;
    /// The current image.
    fn image(&self) -> Result<Image>;
    /// The image of the last loss evaluation.
    fn evaluated_image(&self) -> Result<Image>;
    /// Steps taken so far.
    fn steps_done(&self) -> usize;
}
