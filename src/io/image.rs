//! Image files in and out: size limits checked from the header before decoding, high-quality
//! resizing, and atomic writes (a temporary file beside the output, then a rename).

use std::path::Path;

use anyhow::{bail, Context, Result};
use image::{imageops::FilterType, ImageReader, RgbImage};

use crate::model::Image;

/// Largest accepted input side, in pixels; checked from the header before any decoding.
pub const MAX_SIDE: u32 = 16_384;
/// Largest accepted input area, in pixels (a 256 MiB RGBA decode).
pub const MAX_PIXELS: u64 = 64 * 1024 * 1024;

/// Loads an RGB image; with `longest`, resizes (Lanczos3) so its longest side is that many
/// pixels. An image already that size is used as it is, bit for bit.
pub fn load(path: &Path, longest: Option<usize>) -> Result<Image> {
    let rgb = read_rgb(path)?;
    let rgb = match longest {
        Some(n) => resize_longest(rgb, n),
        None => rgb,
    };
    Ok(from_rgb(&rgb))
}

/// Loads an image resized to exactly w x h (unchanged when it already is that size).
pub fn load_exact(path: &Path, w: usize, h: usize) -> Result<Image> {
    let rgb = read_rgb(path)?;
    if rgb.dimensions() == (w as u32, h as u32) {
        return Ok(from_rgb(&rgb));
    }
    Ok(from_rgb(&image::imageops::resize(
        &rgb,
        w as u32,
        h as u32,
        FilterType::Lanczos3,
    )))
}

fn read_rgb(path: &Path) -> Result<RgbImage> {
    let shown = path.display();
    let meta = std::fs::metadata(path).with_context(|| format!("cannot read image {shown}"))?;
    if meta.is_dir() {
        bail!("image {shown} is a directory");
    }
    if meta.len() == 0 {
        bail!("image {shown} is empty");
    }
    let reader = || -> Result<ImageReader<std::io::BufReader<std::fs::File>>> {
        ImageReader::open(path)
            .with_context(|| format!("cannot read image {shown}"))?
            .with_guessed_format()
            .with_context(|| format!("cannot read image {shown}"))
    };
    let (w, h) = reader()?
        .into_dimensions()
        .with_context(|| format!("{shown} is not a readable image (PNG or JPEG)"))?;
    if w == 0 || h == 0 {
        bail!("image {shown} has no pixels ({w}x{h})");
    }
    if w > MAX_SIDE || h > MAX_SIDE || w as u64 * h as u64 > MAX_PIXELS {
        bail!(
            "image {shown} declares {w}x{h} pixels; impasto accepts at most {MAX_SIDE} px a side and {} megapixels",
            MAX_PIXELS >> 20
        );
    }
    let img = reader()?
        .decode()
        .with_context(|| format!("image {shown} could not be decoded (truncated or corrupt?)"))?;
    Ok(img.to_rgb8())
}

fn resize_longest(img: RgbImage, n: usize) -> RgbImage {
    let (w, h) = img.dimensions();
    if w.max(h) as usize == n {
        return img;
    }
    let s = n as f64 / w.max(h) as f64;
    let nw = ((w as f64 * s).round() as u32).max(1);
    let nh = ((h as f64 * s).round() as u32).max(1);
    image::imageops::resize(&img, nw, nh, FilterType::Lanczos3)
}

fn from_rgb(img: &RgbImage) -> Image {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let mut data = vec![0.0; 3 * h * w];
    for (x, y, p) in img.enumerate_pixels() {
        for c in 0..3 {
            data[(c * h + y as usize) * w + x as usize] = p[c] as f32 / 255.0;
        }
    }
    Image { h, w, data }
}

pub fn to_rgb(img: &Image) -> RgbImage {
    let (h, w) = (img.h, img.w);
    RgbImage::from_fn(w as u32, h as u32, |x, y| {
        let px = |c: usize| {
            let v = img.data[(c * h + y as usize) * w + x as usize];
            (v.clamp(0.0, 1.0) * 255.0).round() as u8
        };
        image::Rgb([px(0), px(1), px(2)])
    })
}

/// The output format for a path, from its extension.
pub fn output_format(path: &Path) -> Result<image::ImageFormat> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_lowercase)
        .unwrap_or_default();
    match ext.as_str() {
        "png" => Ok(image::ImageFormat::Png),
        "jpg" | "jpeg" => Ok(image::ImageFormat::Jpeg),
        _ => bail!(
            "--output {}: unsupported extension {ext:?}; use .png, .jpg or .jpeg",
            path.display()
        ),
    }
}

/// Checks that `path` can be written later: a known extension and an existing directory.
pub fn check_output(path: &Path) -> Result<()> {
    output_format(path)?;
    crate::io::atomic::check_parent_dir(path, "--output")
}

/// Writes `img` to `path` atomically: a partial file never stands at `path`.
pub fn save(img: &Image, path: &Path) -> Result<()> {
    let format = output_format(path)?;
    let rgb = to_rgb(img);
    crate::io::atomic::write_atomic(path, |f| {
        rgb.write_to(&mut std::io::BufWriter::new(f), format)?;
        Ok(())
    })
}

/// Luminance-only transfer: the result's luma (Y of YIQ) with the content's chroma (I, Q).
pub fn preserve_colors(result: &Image, content: &Image) -> Image {
    let hw = result.h * result.w;
    let mut data = vec![0.0; 3 * hw];
    for p in 0..hw {
        let rgb = |img: &Image| [img.data[p], img.data[hw + p], img.data[2 * hw + p]];
        let [r, g, b] = rgb(result);
        let y = 0.299 * r + 0.587 * g + 0.114 * b;
        let [cr, cg, cb] = rgb(content);
        let i = 0.595_716 * cr - 0.274_453 * cg - 0.321_263 * cb;
        let q = 0.211_456 * cr - 0.522_591 * cg + 0.311_135 * cb;
        data[p] = (y + 0.956_3 * i + 0.621_0 * q).clamp(0.0, 1.0);
        data[hw + p] = (y - 0.272_1 * i - 0.647_4 * q).clamp(0.0, 1.0);
        data[2 * hw + p] = (y - 1.106_9 * i + 1.704_6 * q).clamp(0.0, 1.0);
    }
    Image {
        h: result.h,
        w: result.w,
        data,
    }
}
