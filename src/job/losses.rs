//! The loss settings as the front ends give them (layers by name), made into the model's
//! [`LossConfig`] with every setting checked.

use super::error::{Error, Result};
use crate::model::loss::{
    DEFAULT_CONTENT_LAYERS, DEFAULT_CONTENT_WEIGHT, DEFAULT_STYLE_LAYERS, DEFAULT_STYLE_WEIGHT,
    DEFAULT_TV_WEIGHT,
};
use crate::model::{Arch, LossConfig, Pooling, StyleLossKind};

/// The loss settings by layer name (Keras names such as `block5_conv2`, or Caffe names such
/// as `conv5_2` / `relu5_2`).
#[derive(Clone, Debug, PartialEq)]
pub struct Losses {
    pub content_layers: Vec<String>,
    pub style_layers: Vec<String>,
    pub content_weight: f64,
    pub style_weight: f64,
    pub tv_weight: f64,
    pub pooling: Pooling,
    /// A periodic picture: circular padding in every convolution, TV across the wrap.
    pub seamless: bool,
    /// One weight per style layer (used normalised); empty: equal.
    pub style_layer_weights: Vec<f64>,
    pub style_loss: StyleLossKind,
}

impl Default for Losses {
    /// The seed's layers and weights (`model::loss` gives the reasons).
    fn default() -> Losses {
        let names = |s: &str| s.split(',').map(String::from).collect();
        Losses {
            content_layers: names(DEFAULT_CONTENT_LAYERS),
            style_layers: names(DEFAULT_STYLE_LAYERS),
            content_weight: DEFAULT_CONTENT_WEIGHT,
            style_weight: DEFAULT_STYLE_WEIGHT,
            tv_weight: DEFAULT_TV_WEIGHT,
            pooling: Pooling::Max,
            seamless: false,
            style_layer_weights: Vec::new(),
            style_loss: StyleLossKind::Gram,
        }
    }
}

impl Losses {
    /// The layers the shipped weights (VGG19's blocks 1-3) hold: content `block3_conv2`,
    /// style `block1_conv1`, `block2_conv1`, `block3_conv1`; style weight 1e3.
    pub fn shallow() -> Losses {
        let names = |s: &[&str]| s.iter().map(|n| n.to_string()).collect();
        Losses {
            content_layers: names(&["block3_conv2"]),
            style_layers: names(&["block1_conv1", "block2_conv1", "block3_conv1"]),
            style_weight: 1e3,
            ..Losses::default()
        }
    }

    /// The layer indices and weights; an unknown layer is a bad setting naming its flag.
    pub(super) fn config(&self, arch: &Arch) -> Result<LossConfig> {
        let layers = |names: &[String], flag: &str| -> Result<Vec<usize>> {
            names
                .iter()
                .map(|n| {
                    arch.layer_index(n.trim())
                        .map_err(|e| Error::BadSetting(format!("--{flag}: {e:#}")))
                })
                .collect()
        };
        let style_layers = layers(&self.style_layers, "style-layers")?;
        let weights = &self.style_layer_weights;
        if !weights.is_empty() && weights.len() != style_layers.len() {
            return Err(Error::BadSetting(format!(
                "--style-layer-weights has {} weights for {} --style-layers",
                weights.len(),
                style_layers.len()
            )));
        }
        if weights.iter().any(|w| !(w.is_finite() && *w > 0.0)) {
            return Err(Error::BadSetting(
                "--style-layer-weights: every weight must be a positive number".into(),
            ));
        }
        Ok(LossConfig {
            content_layers: layers(&self.content_layers, "content-layers")?,
            style_layers,
            content_weight: self.content_weight,
            style_weight: self.style_weight,
            tv_weight: self.tv_weight,
            seamless: self.seamless,
            style_layer_weights: weights.clone(),
            style_loss: self.style_loss,
        })
    }
}
