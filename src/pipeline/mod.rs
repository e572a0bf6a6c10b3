//! The GPU engine: VGG19's forward and backward on the GPU, the style-transfer objective,
//! Adam on the image, and the session that sets them up once and runs one submit per step;
//! the objective by tiles (`--tile`) in `tiled` and `tiled_objective`.

pub mod adam;
pub mod network;
pub mod objective;
pub mod session;
pub mod tiled;
pub mod tiled_objective;
