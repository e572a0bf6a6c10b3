//! What `impasto video` needs besides the job: frames in and out (directories, or video files
//! through ffmpeg), dense optical flow, and the warping and consistency weights of the
//! temporal term (Ruder, Dosovitskiy & Brox, "Artistic style transfer for videos").

pub mod ffmpeg;
pub mod flow;
pub mod frames;
pub mod motion;
pub mod temporal;
pub mod warp;
