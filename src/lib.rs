//! impasto: neural style transfer (Gatys, Ecker & Bethge) whose numerical core is WGSL
//! compute shaders run through wgpu.

pub mod cli;
pub mod cpu;
pub mod gpu;
pub mod io;
pub mod kernels;
pub mod model;
pub mod pipeline;
pub mod preview;
pub mod reference;
pub mod weights;
