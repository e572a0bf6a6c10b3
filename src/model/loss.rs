//! What the optimisation minimises: which layers the losses read, their weights, and the
//! loss values of one evaluation.
//!
//! content = Σ_{l∈C} (1/|C|) · ½ Σ (F^l − C^l)²
//! style   = Σ_{l∈S} (1/|S|) · 1/(4 N_l² M_l²) · Σ (G^l − A^l)²
//! tv      = `Σ_c [Σ (x[i+1,j] − x[i,j])² + Σ (x[i,j+1] − x[i,j])²]`
//! total   = α·content + β·style + γ·tv

#[derive(Clone, Debug)]
pub struct LossConfig {
    /// Conv layer indices.
    pub content_layers: Vec<usize>,
    pub style_layers: Vec<usize>,
    pub content_weight: f64,
    pub style_weight: f64,
    pub tv_weight: f64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct LossValues {
    pub content: f64,
    pub style: f64,
    pub tv: f64,
    pub total: f64,
}

impl LossConfig {
    pub fn combine(&self, content: f64, style: f64, tv: f64) -> LossValues {
        LossValues {
            content,
            style,
            tv,
            total: self.content_weight * content + self.style_weight * style + self.tv_weight * tv,
        }
    }

    /// The deepest conv layer any loss reads.
    pub fn deepest(&self) -> usize {
        self.content_layers
            .iter()
            .chain(&self.style_layers)
            .copied()
            .max()
            .unwrap_or(0)
    }
}
