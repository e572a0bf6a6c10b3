//! What the optimisation minimises: which layers the losses read, their weights, and the
//! loss values of one evaluation.
//!
//! content = Σ_{l∈C} (1/|C|) · ½ Σ (F^l − C^l)²
//! style   = Σ_{l∈S} w_l · E_l, w_l the layer's share (`--style-layer-weights` normalised;
//!           1/|S| each by default), E_l the Gram loss 1/(4 N_l² M_l²) · Σ (G^l − A^l)² or
//!           the Wasserstein-2 distance of [`super::wasserstein`]
//! tv      = `Σ_c [Σ (x[i+1,j] − x[i,j])² + Σ (x[i,j+1] − x[i,j])²]` (seamless: rows and
//!           columns modulo the image's, so the last row and column meet the first)
//! total   = α·content + β·style + γ·tv (+ λ·temporal for a video frame: [`super::temporal`])

#[derive(Clone, Debug)]
pub struct LossConfig {
    /// Conv layer indices.
    pub content_layers: Vec<usize>,
    pub style_layers: Vec<usize>,
    pub content_weight: f64,
    pub style_weight: f64,
    pub tv_weight: f64,
    /// A periodic picture (`--seamless`): circular padding in every convolution and the TV
    /// across the wrap, so the output tiles as a texture.
    pub seamless: bool,
    /// Each style layer's weight, in `style_layers`' order (any positive numbers, used
    /// normalised); empty: equal weights, the seed's 1/|S|.
    pub style_layer_weights: Vec<f64>,
    /// What each style layer's term measures.
    pub style_loss: StyleLossKind,
}

/// What a style layer's term measures (`--style-loss`).
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum StyleLossKind {
    /// The squared distance of the Gram matrices (Gatys et al.; the seed's).
    #[default]
    Gram,
    /// The Wasserstein-2 distance of the features as Gaussians (mean and covariance).
    W2,
}

impl Default for LossConfig {
    /// No layers; the seed's weights, equal layer weights and the Gram loss.
    fn default() -> LossConfig {
        LossConfig {
            content_layers: Vec::new(),
            style_layers: Vec::new(),
            content_weight: DEFAULT_CONTENT_WEIGHT,
            style_weight: DEFAULT_STYLE_WEIGHT,
            tv_weight: DEFAULT_TV_WEIGHT,
            seamless: false,
            style_layer_weights: Vec::new(),
            style_loss: StyleLossKind::Gram,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct LossValues {
    pub content: f64,
    pub style: f64,
    pub tv: f64,
    /// The temporal term of a video frame (0 otherwise; not in reports then).
    #[serde(skip_serializing_if = "is_zero")]
    pub temporal: f64,
    pub total: f64,
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

impl LossValues {
    /// With the temporal term `value`, weighted by `weight` in the total.
    pub fn with_temporal(self, value: f64, weight: f64) -> LossValues {
        LossValues {
            temporal: value,
            total: self.total + weight * value,
            ..self
        }
    }
}

impl LossConfig {
    pub fn combine(&self, content: f64, style: f64, tv: f64) -> LossValues {
        LossValues {
            content,
            style,
            tv,
            temporal: 0.0,
            total: self.content_weight * content + self.style_weight * style + self.tv_weight * tv,
        }
    }

    /// Style layer `j`'s share of the style loss: its weight over the weights' sum (1/|S|
    /// when no weights are given).
    pub fn layer_share(&self, j: usize) -> f64 {
        match self.style_layer_weights.is_empty() {
            true => 1.0 / self.style_layers.len() as f64,
            false => self.style_layer_weights[j] / self.style_layer_weights.iter().sum::<f64>(),
        }
    }

    /// Every conv layer a loss reads: the content layers, then the style layers.
    pub fn layers(&self) -> Vec<usize> {
        self.content_layers
            .iter()
            .chain(&self.style_layers)
            .copied()
            .collect()
    }

    /// The deepest conv layer any loss reads.
    pub fn deepest(&self) -> usize {
        self.layers().into_iter().max().unwrap_or(0)
    }
}

// The defaults, each with the reason for it (docs/algorithm.md has the measurements).

/// Content layer: the seed algorithm's; deep enough that it fixes the layout, not the
/// pixels (Gatys et al. use conv4_2, one block earlier, for a more literal content).
pub const DEFAULT_CONTENT_LAYERS: &str = "block5_conv2";
/// Style layers: the first conv of blocks 1-4, Gatys et al.'s conv1_1..conv4_1 (their conv5_1
/// adds little at 512 px, where its map is 32x32, and costs the deepest block).
pub const DEFAULT_STYLE_LAYERS: &str = "block1_conv1,block2_conv1,block3_conv1,block4_conv1";
/// α: the content term as it is; the balance is set by β alone.
pub const DEFAULT_CONTENT_WEIGHT: f64 = 1.0;
/// β: the seed's; α/β = 1e-5 is the most stylised ratio Gatys et al. show (their Fig. 3 spans
/// 1e-5 .. 1e-2), fitting a tool whose users ask for the style.
pub const DEFAULT_STYLE_WEIGHT: f64 = 1e5;
/// β for the W2 loss, whose terms are in units of feature variance rather than its square
/// (docs/quality.md has the sweep that chose it).
pub const DEFAULT_W2_STYLE_WEIGHT: f64 = 1e7;
/// γ: removes the pixel-level noise Adam leaves at 512 px without blurring brush strokes;
/// tv is an unnormalised sum that grows with the pixel count (sweep at 96 px in docs/algorithm.md).
pub const DEFAULT_TV_WEIGHT: f64 = 1e7;
