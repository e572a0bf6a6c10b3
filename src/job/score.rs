//! How well a picture keeps its content and matches its style, one number each: what
//! `impasto score` prints and a run's report ends with, so that settings and presets are
//! judged by a measure rather than by eye.
//!
//!   content = mean over the content layers of ‖F(x) − F(c)‖² / ‖F(c)‖²
//!   style   = mean over the style layers of the W2 term E_l (`model::wasserstein`) between
//!             the picture's features and the style images' (their moments blended)
//!
//! Lower is better for both. The style is measured by W2 whatever loss made the picture: it
//! compares the features' means and covariances, so a picture is not judged by the quantity
//! the Gram loss optimised. The content image is resized to the picture's size, each style
//! image to `--style-scale` times its longest side, as `stylize` does for that size (without
//! `--preserve-colors histogram`'s colour matching). The maps come from the CPU engine's
//! network in f32 (whichever engine made the picture), in tiles when the job is tiled (a
//! picture too large for one network: the same sums, `cpu::measures`); the rest is f64.

use super::error::{Error, Result};
use super::inputs::Job;
use crate::model::wasserstein::W2Target;
use crate::model::{Arch, Image, LossConfig, Pooling};
use crate::weights::Weights;

/// One layer's part of a [`Score`].
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct LayerScore {
    pub layer: String,
    pub value: f64,
}

/// A picture's score: lower is closer.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Score {
    /// Mean over the content layers of the relative squared distance.
    pub content: f64,
    /// Mean over the style layers of the W2 distance.
    pub style: f64,
    pub content_layers: Vec<LayerScore>,
    pub style_layers: Vec<LayerScore>,
    /// The picture's width and height.
    pub size: [usize; 2],
}

/// The score of `picture` against `job`'s content and styles, at `loss`'s layers.
pub fn score(
    (weights, arch, pooling): (&Weights, &Arch, Pooling), loss: &LossConfig, picture: &Image,
    job: &Job,
) -> Result<Score> {
    let (h, w) = (picture.h, picture.w);
    let content = job.content.exactly(w, h);
    let side = ((h.max(w) as f64 * job.settings.style_scale).round() as usize).max(1);
    let styles: Vec<(Image, f64)> = job.styles.iter().map(|(s, wt)| (s.at(side), *wt)).collect();
    let total: f64 = styles.iter().map(|s| s.1).sum();
    if styles.is_empty() || total.is_nan() || total <= 0.0 {
        return Err(Error::BadSetting(
            "at least one style image with a positive weight is needed".into(),
        ));
    }
    crate::model::vgg19::check_sizes(arch, loss, pooling, picture, &styles)
        .map_err(|e| Error::BadSetting(format!("{e:#}")))?;
    if let Some(tile) = job.settings.tile {
        let stages = arch.stages(loss.deepest(), h, w, pooling);
        crate::model::tiles::TilePlan::new(&stages, (h, w), tile)
            .map_err(|e| Error::BadSetting(format!("--tile {tile}: {e}")))?;
    }
    let net = (weights, arch, pooling);
    let tile = job.settings.tile;
    let names = |l: usize| arch.convs[l].name.clone();
    let distances =
        crate::cpu::content_distances(net, (picture, &content), &loss.content_layers, tile)
            .map_err(Error::Failed)?;
    let content_layers: Vec<LayerScore> = (loss.content_layers.iter().zip(distances))
        .map(|(&l, (d, n))| LayerScore {
            layer: names(l),
            value: d / n.max(f64::MIN_POSITIVE),
        })
        .collect();
    let moments = |img: &Image| {
        crate::cpu::style_moments(net, img, &loss.style_layers, tile).map_err(Error::Failed)
    };
    let mut blended: Vec<(Vec<f64>, Vec<f64>)> = Vec::new();
    for (img, wt) in &styles {
        let share = wt / total;
        for (j, (mean, second)) in moments(img)?.into_iter().enumerate() {
            if blended.len() <= j {
                blended.push((vec![0.0; mean.len()], vec![0.0; second.len()]));
            }
            let b = &mut blended[j];
            b.0.iter_mut().zip(&mean).for_each(|(b, v)| *b += share * v);
            b.1.iter_mut()
                .zip(&second)
                .for_each(|(b, v)| *b += share * v);
        }
    }
    let x = moments(picture)?;
    let style_layers: Vec<LayerScore> = (loss.style_layers.iter().zip(x).enumerate())
        .map(|(j, (&l, (mean, second)))| {
            let target = W2Target::new(&blended[j].0, &blended[j].1);
            LayerScore {
                layer: names(l),
                value: target.evaluate(&mean, &second).loss,
            }
        })
        .collect();
    let mean = |v: &[LayerScore]| v.iter().map(|s| s.value).sum::<f64>() / v.len().max(1) as f64;
    Ok(Score {
        content: mean(&content_layers),
        style: mean(&style_layers),
        content_layers,
        style_layers,
        size: [w, h],
    })
}
