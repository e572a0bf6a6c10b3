//! impasto: neural style transfer (Gatys, Ecker & Bethge) whose numerical core is WGSL
//! compute shaders run through wgpu.

pub mod bench;
pub mod cli;
pub mod cpu;
pub mod fetch;
pub mod files;
pub mod gpu;
pub mod image_io;
pub mod keras_h5;
pub mod loss;
pub mod network;
pub mod ops;
pub mod optim;
pub mod pth;
pub mod session;
pub mod stylize;
pub mod tfjs;
pub mod weights;
