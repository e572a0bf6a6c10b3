pub mod adam;
pub mod objective;
pub mod session;
