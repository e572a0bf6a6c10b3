//! Style masks: where each style applies, as a grayscale plane (luminance in [0, 1]) kept at
//! its file's size and resized (bilinear) to each scale's content size; or a colour-coded
//! region map cut into one mask per listed colour.

use std::path::Path;

use image::{imageops::FilterType, ImageBuffer, Luma, RgbImage};

use super::error::{Error, Result};
use crate::io::image::{load_original, Original};

/// An image file whole; one that cannot be read or decoded is an [`Error::BadFile`].
fn open_image(path: &Path) -> Result<Original> {
    load_original(path).map_err(Error::BadFile)
}

/// A plane of f32 luminance values.
type Plane = ImageBuffer<Luma<f32>, Vec<f32>>;

/// One style's mask, with where it came from (for messages and the report).
#[derive(Clone, Debug)]
pub struct StyleMask {
    /// The file, or the region map and colour.
    pub source: String,
    plane: Plane,
}

/// Colours within this RGB distance of a listed region colour count as it (JPEG noise).
pub const REGION_TOLERANCE: f64 = 40.0;

impl PartialEq for StyleMask {
    fn eq(&self, other: &StyleMask) -> bool {
        self.source == other.source && self.plane.as_raw() == other.plane.as_raw()
    }
}

impl StyleMask {
    /// The luminance (Rec. 601 weights of the decoded values) of an image.
    pub fn from_rgb(rgb: &RgbImage, source: String) -> StyleMask {
        let plane = Plane::from_fn(rgb.width(), rgb.height(), |x, y| {
            let [r, g, b] = rgb.get_pixel(x, y).0.map(|v| v as f32 / 255.0);
            Luma([(0.299 * r + 0.587 * g + 0.114 * b).clamp(0.0, 1.0)])
        });
        StyleMask { source, plane }
    }

    /// From values in [0, 1], row by row (None: an empty mask, or a count of values that is
    /// not width x height).
    pub fn from_values(
        width: usize, height: usize, values: Vec<f32>, source: String,
    ) -> Option<StyleMask> {
        let side = |n: usize| u32::try_from(n).ok().filter(|&n| n > 0);
        let values = values.into_iter().map(|v| v.clamp(0.0, 1.0)).collect();
        let plane = Plane::from_raw(side(width)?, side(height)?, values)?;
        Some(StyleMask { source, plane })
    }

    /// Reads a mask image (PNG or JPEG; its luminance); a file that is no image is an
    /// [`Error::BadFile`] naming it.
    pub fn open(path: &Path) -> Result<StyleMask> {
        let img = open_image(path)?;
        Ok(StyleMask::from_rgb(&img.rgb, path.display().to_string()))
    }

    /// (width, height) of the mask as given.
    pub fn size(&self) -> (usize, usize) {
        (self.plane.width() as usize, self.plane.height() as usize)
    }

    /// The mask at h x w (row-major): as it is at its own size, else resized bilinearly.
    pub fn at(&self, (h, w): (usize, usize)) -> Vec<f32> {
        if self.size() == (w, h) {
            return self.plane.as_raw().clone();
        }
        let r = image::imageops::resize(&self.plane, w as u32, h as u32, FilterType::Triangle);
        r.into_raw()
            .into_iter()
            .map(|v| v.clamp(0.0, 1.0))
            .collect()
    }

    /// The fraction of the mask's weight (Σ m over its pixels).
    pub fn coverage(&self) -> f64 {
        let s: f64 = self.plane.as_raw().iter().map(|&v| v as f64).sum();
        s / self.plane.as_raw().len().max(1) as f64
    }

    /// One mask per colour of `colours` from the region map at `path`: each pixel belongs to
    /// the nearest listed colour within [`REGION_TOLERANCE`], or to none. A colour that no
    /// pixel has is a [`Error::BadSetting`] naming it and the map.
    pub fn regions(path: &Path, colours: &[[u8; 3]]) -> Result<Vec<StyleMask>> {
        let map = open_image(path)?.rgb;
        let nearest = |px: [u8; 3]| {
            let d = |c: &[u8; 3]| {
                (0..3)
                    .map(|i| (px[i] as f64 - c[i] as f64).powi(2))
                    .sum::<f64>()
                    .sqrt()
            };
            (0..colours.len())
                .map(|k| (k, d(&colours[k])))
                .filter(|&(_, dist)| dist <= REGION_TOLERANCE)
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(k, _)| k)
        };
        let owner: Vec<Option<usize>> = map.pixels().map(|p| nearest(p.0)).collect();
        let (w, h) = map.dimensions();
        colours
            .iter()
            .enumerate()
            .map(|(k, c)| {
                let hex = format!("#{:02x}{:02x}{:02x}", c[0], c[1], c[2]);
                if !owner.contains(&Some(k)) {
                    return Err(Error::BadSetting(format!(
                        "--regions {}: no pixel has the colour {hex} (or one within {REGION_TOLERANCE} of it)",
                        path.display()
                    )));
                }
                let data = owner.iter().map(|&o| (o == Some(k)) as u8 as f32).collect();
                let plane = Plane::from_raw(w, h, data).expect("w x h values");
                let source = format!("{} {hex}", path.display());
                Ok(StyleMask { source, plane })
            })
            .collect()
    }
}

/// `#rrggbb` (or `rrggbb`, or `#rgb`) as RGB.
pub fn parse_colour(s: &str) -> Option<[u8; 3]> {
    let hex = s.strip_prefix('#').unwrap_or(s);
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let digit = |i: usize, n: usize| u8::from_str_radix(&hex[i..i + n], 16).ok();
    match hex.len() {
        6 => Some([digit(0, 2)?, digit(2, 2)?, digit(4, 2)?]),
        3 => Some([0, 1, 2].map(|i| digit(i, 1).unwrap_or(0) * 17)),
        _ => None,
    }
}
