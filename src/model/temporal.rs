//! The temporal term of a video frame (Ruder, Dosovitskiy & Brox, "Artistic style transfer for
//! videos"): the frame's result is kept close to the previous frame's result warped into it by
//! the optical flow, where the flow is reliable:
//!
//! temporal = Σ_p c(p) Σ_channels (x(p) − w(p))² / (3·H·W)
//!
//! with w the warped previous result and c(p) in [0, 1] (0 where the flow is inconsistent or at
//! motion boundaries). It is added to the total with weight λ.
//!
//! λ is relative ([`relative_weight`]): `--temporal-weight τ` sets λ = τ · L₀ · 255², with L₀
//! the frame's total loss at its start without the temporal term (its content, style and TV
//! terms, weighted). A change of one 8-bit level at every consistent pixel then costs τ times
//! L₀, whatever the layers, weights and size make L₀: a fixed λ was a different balance for
//! every setting (1 % of the total with one set of layers, far more with another).

use super::image::Image;
use super::loss::LossValues;

/// The temporal term's target and per-pixel weights for one frame.
#[derive(Clone, Debug)]
pub struct Temporal {
    /// The previous frame's result warped into this frame (content-sized).
    pub target: Image,
    /// c, one value per pixel (h x w, row-major).
    pub weights: Vec<f32>,
    /// λ, its weight in the total.
    pub weight: f64,
}

/// λ for the relative weight `tau`, from the losses of the frame's starting image (without
/// a temporal term).
pub fn relative_weight(tau: f64, start: &LossValues) -> f64 {
    tau * (start.total - start.temporal) * 255.0 * 255.0
}
