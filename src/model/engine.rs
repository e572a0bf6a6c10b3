//! What the optimisation loop needs from an engine (the GPU pipeline or the CPU engine): one
//! step at a time, the losses now and then, and the image.

use anyhow::{bail, Result};

use super::image::Image;
use super::loss::{LossConfig, LossValues};
use super::optim::{AdamConfig, AdamState};
use super::style::{StyleMoments, StyleTerm};
use super::temporal::Temporal;
use super::vgg19::{Arch, Pooling};

pub trait EngineSession {
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
    /// Replaces the current image (L-BFGS's iterates; a scale's starting image).
    fn set_image(&mut self, x: &[f32]) -> Result<()>;
    /// The losses of the current image, which becomes the evaluated one, and d(total)/dx
    /// (read back: L-BFGS runs on the host).
    fn loss_and_gradient(&mut self) -> Result<(LossValues, Vec<f32>)>;
    /// Adam's moments and step count.
    fn adam_state(&self) -> Result<AdamState>;
    /// Replaces Adam's moments and step count (carried over from the previous scale).
    fn set_adam_state(&mut self, state: &AdamState) -> Result<()>;
    /// Folds the current image into the moving average ([`Setup::average`]); Adam's steps
    /// fold by themselves.
    fn fold_average(&mut self) -> Result<()>;
    /// The bias-corrected moving average of the iterates; None when averaging is off.
    fn averaged_image(&self) -> Result<Option<Image>>;
    /// Each style image's Gram matrices per position, as the session computed or was given
    /// them (for [`Setup::style_targets`] of a later session).
    fn style_targets(&self) -> Vec<StyleMoments>;
    /// Steps skipped because their 16-bit gradient overflowed (the GPU's f16 gradients).
    fn skipped_steps(&self) -> Result<usize> {
        Ok(0)
    }
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
    /// Decay of the moving average of the iterates (0: off); it starts from `init`.
    pub average: f64,
    /// Each style image's Gram matrices per position, when an earlier session with the same
    /// style images, layers and pooling computed them ([`EngineSession::style_targets`]): the
    /// style images' networks are then not run again.
    pub style_targets: Option<&'a [StyleMoments]>,
    /// One mask per style image, content-sized (h x w values in [0, 1]): where each style
    /// applies ([`super::style`]); None: every style everywhere, blended.
    pub style_masks: Option<&'a [Vec<f32>]>,
    /// A video frame's temporal term ([`super::temporal`]), content-sized.
    pub temporal: Option<&'a Temporal>,
    /// Evaluate the objective in tiles of this side ([`super::tiles`]; `--tile`), exactly,
    /// in the memory of one tile's network.
    pub tile: Option<usize>,
}

impl<'a, W> Setup<'a, W> {
    /// The plainest session of `content` in the style of `styles`: max pooling, Adam's
    /// defaults, starting from the content, no average, masks, temporal term or tiles, the
    /// style targets computed (`Setup { tile: Some(t), ..Setup::plain(..) }` for the rest).
    pub fn plain(
        (arch, weights, loss): (&'a Arch, &'a W, &'a LossConfig), content: &'a Image,
        styles: &'a [(Image, f64)],
    ) -> Setup<'a, W> {
        Setup {
            arch,
            weights,
            loss,
            pooling: Pooling::Max,
            adam: AdamConfig::default(),
            content,
            styles,
            init: content,
            average: 0.0,
            style_targets: None,
            style_masks: None,
            temporal: None,
            tile: None,
        }
    }

    /// Each style image's share of the blended target (its weight over the sum).
    pub fn style_shares(&self) -> Result<Vec<f64>> {
        let total: f64 = self.styles.iter().map(|(_, wt)| wt).sum();
        if self.styles.is_empty() || total.is_nan() || total <= 0.0 {
            bail!("at least one style image with a positive weight is needed");
        }
        Ok(self.styles.iter().map(|(_, wt)| wt / total).collect())
    }

    /// The style loss's terms for the content-sized network `stages`, from each style
    /// image's Gram matrices per position ([`super::style::style_terms`]).
    pub fn style_terms(
        &self, stages: &[super::vgg19::Stage], grams: &[StyleMoments],
    ) -> Result<Vec<StyleTerm>> {
        if let Some(m) = self.style_masks {
            if m.len() != self.styles.len() {
                bail!(
                    "{} style masks for {} style images",
                    m.len(),
                    self.styles.len()
                );
            }
            let hw = self.content.h * self.content.w;
            if let Some(k) = m.iter().position(|m| m.len() != hw) {
                bail!("style mask {} is not the content image's size", k + 1);
            }
        }
        if let Some(t) = self.temporal {
            let (h, w) = (self.content.h, self.content.w);
            if (t.target.h, t.target.w) != (h, w) || t.weights.len() != h * w {
                bail!(
                    "the temporal term's target is {}x{}, the content image {w}x{h}",
                    t.target.w,
                    t.target.h
                );
            }
        }
        let shares = self.style_shares()?;
        super::style::style_terms(
            self.arch,
            stages,
            self.loss,
            grams,
            &shares,
            self.style_masks,
        )
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

/// What a session holds, by kind (`--dry-run`'s plan), and what its setup held only briefly.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct MemoryPlan {
    /// Bytes held through the optimisation, by kind, largest first.
    pub kinds: Vec<(String, u64)>,
    /// Bytes held only while the style targets are made (the style images' networks),
    /// freed before the optimisation's own buffers are made.
    pub setup_only: u64,
    /// Bytes held all along from the setup on (the weights), counted in `kinds` too.
    pub from_setup: u64,
    /// Of those, bytes held to the very end, after the session is freed (host memory plans:
    /// the pictures, the weights as read).
    pub throughout: u64,
    /// Bytes held only at the end, once the session is freed (host memory plans: the result
    /// as it is written and its encoding).
    pub finish_only: u64,
}

impl MemoryPlan {
    /// Bytes held through the optimisation.
    pub fn held(&self) -> u64 {
        self.kinds.iter().map(|k| k.1).sum()
    }

    /// The session's own peak, without the host's share (`throughout`): on a GPU, its buffers.
    pub fn session_peak(&self) -> u64 {
        (self.held() - self.throughout).max(self.from_setup - self.throughout + self.setup_only)
    }

    /// The most held at once: the optimisation's buffers, the setup's, or the end's.
    pub fn peak(&self) -> u64 {
        (self.held())
            .max(self.from_setup + self.setup_only)
            .max(self.throughout + self.finish_only)
    }

    /// Sums `(kind, bytes)` items by kind, largest first.
    pub fn by_kind(items: impl IntoIterator<Item = (&'static str, u64)>) -> Vec<(String, u64)> {
        let mut kinds: Vec<(String, u64)> = Vec::new();
        for (k, b) in items {
            match kinds.iter_mut().find(|e| e.0 == k) {
                Some(e) => e.1 += b,
                None => kinds.push((k.to_string(), b)),
            }
        }
        kinds.sort_by_key(|k| std::cmp::Reverse(k.1));
        kinds
    }
}
