//! The image being optimised, and every image in between files and the network.

/// An RGB image in [0, 1], CHW.
#[derive(Clone, Debug, PartialEq)]
pub struct Image {
    pub h: usize,
    pub w: usize,
    pub data: Vec<f32>,
}
