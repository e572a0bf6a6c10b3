//! The optimiser's settings (the GPU pipeline and the CPU reference both follow them).

/// Adam's hyper-parameters, as the CLI names them.
#[derive(Clone, Copy, Debug)]
pub struct AdamConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
}

// The defaults are the seed algorithm's (kept so that runs compare with it), with what each does.

/// Learning rate: Adam moves a pixel by at most about lr a step; the image is in [0, 1], so
/// 0.02 is ~5 grey levels.
pub const DEFAULT_LR: f64 = 0.02;
/// β1: above Adam's usual 0.9, a longer average of the gradient, so steps follow its trend
/// over ~100 steps rather than the last few.
pub const DEFAULT_BETA1: f64 = 0.99;
/// β2: Adam's usual second-moment decay.
pub const DEFAULT_BETA2: f64 = 0.999;
/// ε: large next to Adam's usual 1e-8, so a pixel whose gradient is tiny takes a small step
/// instead of a full lr-sized one.
pub const DEFAULT_EPS: f64 = 0.1;
/// Steps: the seed's budget for one 512-px picture.
pub const DEFAULT_STEPS: u64 = 1000;

impl Default for AdamConfig {
    fn default() -> AdamConfig {
        AdamConfig {
            lr: DEFAULT_LR,
            beta1: DEFAULT_BETA1,
            beta2: DEFAULT_BETA2,
            eps: DEFAULT_EPS,
        }
    }
}
