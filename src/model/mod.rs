//! What impasto computes, independent of where: images, VGG19's layers and names, input
//! conventions, the loss configuration and the optimiser's settings. No wgpu here.

pub mod colour;
pub mod convention;
pub mod engine;
pub mod image;
pub mod lbfgs;
pub mod loss;
pub mod optim;
pub mod scales;
pub mod style;
pub mod temporal;
pub mod tiles;
pub mod vgg19;
pub mod wasserstein;

pub use convention::{Affine, Convention};
pub use engine::EngineSession;
pub use image::Image;
pub use loss::{LossConfig, LossValues, StyleLossKind};
pub use optim::{AdamConfig, AdamState, Average};
pub use vgg19::{Arch, Held, Pooling, Stage, StageOp};
