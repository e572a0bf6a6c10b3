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

/// Adam's state on an image: the moments and the step count, read from one scale's session
/// and given, resized, to the next.
#[derive(Clone, Debug)]
pub struct AdamState {
    pub m: Vec<f32>,
    pub v: Vec<f32>,
    pub t: usize,
}

/// An exponential moving average of the iterates with bias correction (as in
/// crowsonkb/style-transfer-pytorch): started from the first image, then
/// `avg ← decay·avg + (1 − decay)·x` after every step, read as `avg / (1 − decay^(n+1))`.
/// The engines keep `avg` where the image is; this holds the decay and the fold count.
#[derive(Clone, Copy, Debug)]
pub struct Average {
    pub decay: f64,
    folds: u32,
}

impl Average {
    /// `avg`'s starting value for a first image `x`: (1 − decay)·x.
    pub fn new(decay: f64) -> Average {
        Average { decay, folds: 0 }
    }

    /// Counts one more fold.
    pub fn fold(&mut self) {
        self.folds += 1;
    }

    /// The factor that turns the raw average into the bias-corrected one.
    pub fn correction(&self) -> f64 {
        1.0 / (1.0 - self.decay.powi(self.folds as i32 + 1))
    }
}
