//! The temporal term of a video frame (Ruder, Dosovitskiy & Brox, "Artistic style transfer for
//! videos"): the frame's result is kept close to the previous frame's result warped into it by
//! the optical flow, where the flow is reliable:
//!
//! temporal = Σ_p c(p) Σ_channels (x(p) − w(p))² / (3·H·W)
//!
//! with w the warped previous result and c(p) in [0, 1] (0 where the flow is inconsistent or at
//! motion boundaries). It is added to the total with weight λ (`--temporal-weight`).

use super::image::Image;

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
