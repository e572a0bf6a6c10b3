pub mod atomic;
pub mod image;
pub mod same_file;
