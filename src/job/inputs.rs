//! One job: a content image, its style images with their blend weights, where it starts,
//! and its settings; and the images each scale is run on, made from them.

use std::borrow::Cow;
use std::path::Path;

use rand::{Rng, SeedableRng};

use super::error::{Error, Result};
use super::masks::StyleMask;
use super::settings::{Init, PreserveColors, Settings};
use crate::io::image::{self as image_io, Original};
use crate::model::colour::{keep_luminance, match_histogram};
use crate::model::temporal::Temporal;
use crate::model::Image;

/// A content image to stylise: its style images (with blend weights, normalised to sum to 1),
/// the starting image and the settings. The images are kept as decoded and resized for each
/// scale.
#[derive(Clone)]
pub struct Job {
    pub content: Original,
    pub styles: Vec<(Original, f64)>,
    /// One mask per style (where it applies), or None: every style everywhere, blended.
    pub style_masks: Option<Vec<StyleMask>>,
    /// A video frame's temporal term (the previous result warped into this frame, per-pixel
    /// weights, λ), at the output's size: such a job runs one scale.
    pub temporal: Option<Temporal>,
    pub init: Init,
    pub settings: Settings,
}

/// The images of one scale: content, styles (colour-matched when asked) and the start.
pub struct ScaleImages {
    pub content: Image,
    pub styles: Vec<(Image, f64)>,
    /// The style masks at the content's size.
    pub masks: Option<Vec<Vec<f32>>>,
    pub init: Image,
}

/// Reads an image file whole (PNG or JPEG, with its colour profile); a file that cannot be
/// read or decoded is an [`Error::BadFile`] naming it.
pub fn open_image(path: &Path) -> Result<Original> {
    image_io::load_original(path).map_err(Error::BadFile)
}

impl Job {
    /// A job with the default settings, starting from the content image.
    pub fn new(content: Original, styles: Vec<(Original, f64)>) -> Job {
        Job {
            content,
            styles,
            style_masks: None,
            temporal: None,
            init: Init::Content,
            settings: Settings::default(),
        }
    }

    /// Reads the content image and the style images (each with weight 1) from files.
    pub fn open(content: &Path, styles: &[&Path]) -> Result<Job> {
        let styles = styles
            .iter()
            .map(|p| Ok((open_image(p)?, 1.0)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Job::new(open_image(content)?, styles))
    }

    /// The output's size, (height, width): the content at the last scale's size.
    pub fn output_size(&self) -> (usize, usize) {
        let c = self.content.at(self.settings.size);
        (c.h, c.w)
    }

    /// The images at longest side `size`; `previous` (the last scale's result) upsampled as
    /// the start.
    pub fn at(&self, size: usize, previous: Option<&Image>) -> ScaleImages {
        let content = self.content.at(size);
        let style_side = ((size as f64 * self.settings.style_scale).round() as usize).max(1);
        let styles = self
            .styles
            .iter()
            .map(|(s, w)| {
                let img = s.at(style_side);
                let img = match self.settings.preserve_colors {
                    Some(PreserveColors::Histogram) => match_histogram(&img, &content),
                    _ => img,
                };
                (img, *w)
            })
            .collect();
        let (h, w) = (content.h, content.w);
        let init = match (previous, &self.init) {
            (Some(p), _) => upsample(p, (h, w)),
            (None, Init::Content) => content.clone(),
            (None, Init::Noise(seed)) => {
                let mut r = rand::rngs::StdRng::seed_from_u64(*seed);
                Image {
                    h,
                    w,
                    data: (0..3 * h * w).map(|_| r.random::<f32>()).collect(),
                }
            }
            (None, Init::Image(o)) => o.exactly(w, h),
            (None, Init::Given(img)) => upsample(img, (h, w)),
        };
        ScaleImages {
            masks: self.masks_at((h, w)),
            content,
            styles,
            init,
        }
    }

    /// The style masks resized to h x w.
    pub fn masks_at(&self, (h, w): (usize, usize)) -> Option<Vec<Vec<f32>>> {
        let masks = self.style_masks.as_ref()?;
        Some(masks.iter().map(|m| m.at((h, w))).collect())
    }

    /// A result as it is written: with `PreserveColors::Luminance`, the result's luminance
    /// with the content's colours (the content at the result's size).
    /// (Borrowed as it is otherwise: at print size a copy is hundreds of megabytes.)
    pub fn presentable<'a>(&self, img: &'a Image) -> Cow<'a, Image> {
        match self.settings.preserve_colors {
            Some(PreserveColors::Luminance) => {
                Cow::Owned(keep_luminance(img, &self.content.exactly(img.w, img.h)))
            }
            _ => Cow::Borrowed(img),
        }
    }

    /// Writes a result ([`Job::presentable`]) to `path` (PNG, TIFF or JPEG by the extension;
    /// 16 bits a channel for PNG and TIFF with `bit_depth` 16) with the content image's colour
    /// profile, through a temporary file renamed into place.
    pub fn save(&self, img: &Image, path: &Path, bit_depth: u8) -> anyhow::Result<()> {
        let enc = image_io::Encoding {
            bit_depth,
            icc: self.content.icc.clone(),
        };
        image_io::save(&self.presentable(img), path, &enc)
    }
}

/// An image resized to h x w in f32 (Lanczos3), clamped to [0, 1].
pub fn upsample(img: &Image, (h, w): (usize, usize)) -> Image {
    if (img.h, img.w) == (h, w) {
        return img.clone();
    }
    let mut data = image_io::resize_planes(&img.data, (img.h, img.w), (h, w));
    data.iter_mut().for_each(|v| *v = v.clamp(0.0, 1.0));
    Image { h, w, data }
}
