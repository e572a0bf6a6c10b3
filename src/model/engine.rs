//! What the optimisation loop needs from an engine (the GPU pipeline or the CPU engine): one
//! step at a time, the losses now and then, and the image.

use anyhow::{bail, Result};

use super::image::Image;
use super::loss::{LossConfig, LossValues};
use super::optim::AdamConfig;
use super::vgg19::{Arch, Pooling};

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

/// What either engine sets a session up from; `W` is the weights (kept generic so that the
/// model does not depend on the files they come from).
pub struct Setup<'a, W> {
    pub arch: &'a Arch,
    pub weights: &'a W,
    pub loss: &'a LossConfig,
    pub pooling: Pooling,
    pub adam: AdamConfig,
    pub content: &'a Image,
    /// Style images with their blend weights (normalised by the session to sum to 1).
    pub styles: &'a [(Image, f64)],
    /// The starting image, content-sized.
    pub init: &'a Image,
}

impl<W> Setup<'_, W> {
    /// Each style image's share of the blended target (its weight over the sum).
    pub fn style_shares(&self) -> Result<Vec<f64>> {
        let total: f64 = self.styles.iter().map(|(_, wt)| wt).sum();
        if self.styles.is_empty() || total.is_nan() || total <= 0.0 {
            bail!("at least one style image with a positive weight is needed");
        }
        Ok(self.styles.iter().map(|(_, wt)| wt / total).collect())
    }
}

/// One kernel of a profiled step, for `impasto bench`'s per-layer table (either engine).
pub struct KernelTime {
    pub name: &'static str,
    /// Shape, e.g. `64->128 128x128`.
    pub detail: String,
    pub ms: f64,
    /// Floating-point operations (multiply-adds count 2).
    pub flops: f64,
    /// Bytes the kernel must read and write at the least.
    pub bytes: f64,
}
