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

/// Largest accepted image file, in bytes (a 64-megapixel PNG is well under it).
pub const MAX_FILE_BYTES: u64 = 1 << 30;

fn read_rgb(path: &Path) -> Result<RgbImage> {
    let shown = path.display();
    let meta = std::fs::metadata(path).with_context(|| format!("cannot read image {shown}"))?;
    if meta.is_dir() {
        bail!("image {shown} is a directory");
    }
    if meta.len() == 0 {
        bail!("image {shown} is empty");
    }
    if meta.len() > MAX_FILE_BYTES {
        bail!(
            "image {shown} is {} MiB; impasto accepts at most {} MiB",
            meta.len() >> 20,
            MAX_FILE_BYTES >> 20
        );
    }
    let bytes = std::fs::read(path).with_context(|| format!("cannot read image {shown}"))?;
    decode(&bytes).with_context(|| format!("image {shown}"))
}

/// Decodes PNG or JPEG bytes, refusing what cannot be decoded whole: a header declaring too
/// many pixels (before any decoding), a JPEG whose data ends before its end-of-image marker
/// (the decoder would fill the rest in silently), or anything the decoder rejects.
pub fn decode(bytes: &[u8]) -> Result<RgbImage> {
    let reader = || {
        ImageReader::new(std::io::Cursor::new(bytes))
            .with_guessed_format()
            .expect("reading from memory cannot fail")
    };
    let (w, h) = reader()
        .into_dimensions()
        .context("is not a readable image (PNG or JPEG)")?;
    if w == 0 || h == 0 {
        bail!("has no pixels ({w}x{h})");
    }
    if w > MAX_SIDE || h > MAX_SIDE || w as u64 * h as u64 > MAX_PIXELS {
        bail!(
            "declares {w}x{h} pixels; impasto accepts at most {MAX_SIDE} px a side and {} megapixels",
            MAX_PIXELS >> 20
        );
    }
    if let Err(why) = jpeg_complete(bytes) {
        bail!("is a truncated or corrupt JPEG: {why}");
    }
    let img = reader()
        .decode()
        .context("could not be decoded (truncated or corrupt?)")?;
    Ok(img.to_rgb8())
}

/// For JPEG bytes, whether every segment and the entropy-coded data after each start of scan
/// are whole, up to the end-of-image marker. Other formats pass.
fn jpeg_complete(b: &[u8]) -> Result<(), &'static str> {
    if !b.starts_with(&[0xFF, 0xD8]) {
        return Ok(());
    }
    let mut i = 2;
    loop {
        if b.get(i) != Some(&0xFF) {
            return Err(if i >= b.len() {
                "it ends before its end-of-image marker"
            } else {
                "a marker is missing"
            });
        }
        while b.get(i) == Some(&0xFF) {
            i += 1;
        }
        let Some(&m) = b.get(i) else {
            return Err("it ends inside a marker");
        };
        i += 1;
        match m {
            0xD9 => return Ok(()),
            0x01 | 0xD0..=0xD7 => continue,
            _ => {}
        }
        let Some(len) = b
            .get(i..i + 2)
            .map(|l| u16::from_be_bytes([l[0], l[1]]) as usize)
        else {
            return Err("it ends inside a segment header");
        };
        if len < 2 || i + len > b.len() {
            return Err("it ends inside a segment");
        }
        i += len;
        if m == 0xDA {
            // Entropy-coded data runs to the next marker that is not a stuffed 0xFF00 or a
            // restart marker.
            loop {
                match (b.get(i), b.get(i + 1)) {
                    (Some(0xFF), Some(0x00 | 0xD0..=0xD7)) => i += 2,
                    (Some(0xFF), Some(_)) => break,
                    (Some(_), _) => i += 1,
                    (None, _) => return Err("its image data ends early"),
                }
            }
        }
    }
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
