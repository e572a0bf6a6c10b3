pub mod atomic;
pub mod image;
