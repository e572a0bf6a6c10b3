//! The optimiser's settings (the GPU pipeline and the CPU reference both follow them).

/// Adam's hyper-parameters, as the CLI names them.
#[derive(Clone, Copy, Debug)]
pub struct AdamConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
}
