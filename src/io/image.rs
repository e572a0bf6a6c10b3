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

/// An input image as decoded (8-bit sRGB), to be resized for each scale, with the colour
/// profile it carries.
#[derive(Clone)]
pub struct Original {
    pub rgb: RgbImage,
    pub icc: Option<Vec<u8>>,
}

/// Reads an image whole, with its ICC profile.
pub fn load_original(path: &Path) -> Result<Original> {
    let bytes = read_bytes(path)?;
    let rgb = decode(&bytes).with_context(|| format!("image {}", path.display()))?;
    // The bytes decoded whole above: the profile is read from their header.
    let icc = ImageReader::new(std::io::Cursor::new(&bytes))
        .with_guessed_format()
        .ok()
        .and_then(|r| r.into_decoder().ok())
        .and_then(|mut d| image::ImageDecoder::icc_profile(&mut d).ok().flatten());
    Ok(Original { rgb, icc })
}

impl Original {
    /// A picture from 8-bit RGB values, row by row (None: an empty picture, or a count of
    /// values that is not 3 x width x height).
    pub fn from_pixels(width: usize, height: usize, rgb: Vec<u8>) -> Option<Original> {
        let side = |n: usize| u32::try_from(n).ok().filter(|&n| n > 0);
        let rgb = RgbImage::from_raw(side(width)?, side(height)?, rgb)?;
        Some(Original { rgb, icc: None })
    }

    /// Resized (Lanczos3) to a longest side of `n` px; unchanged, bit for bit, at its own size.
    pub fn at(&self, n: usize) -> Image {
        from_rgb(&resize_longest(self.rgb.clone(), n))
    }

    /// Resized to exactly w x h.
    pub fn exactly(&self, w: usize, h: usize) -> Image {
        if self.rgb.dimensions() == (w as u32, h as u32) {
            return from_rgb(&self.rgb);
        }
        from_rgb(&image::imageops::resize(
            &self.rgb,
            w as u32,
            h as u32,
            FilterType::Lanczos3,
        ))
    }
}

/// Three CHW planes of f32 (an image, or Adam's moments) resized to nw x nh with Lanczos3,
/// in f32 (no 8-bit rounding). Lanczos rings: callers clamp what must stay in a range.
pub fn resize_planes(data: &[f32], (h, w): (usize, usize), (nh, nw): (usize, usize)) -> Vec<f32> {
    let hw = h * w;
    let img = image::Rgb32FImage::from_fn(w as u32, h as u32, |x, y| {
        let p = y as usize * w + x as usize;
        image::Rgb([data[p], data[hw + p], data[2 * hw + p]])
    });
    let r = image::imageops::resize(&img, nw as u32, nh as u32, FilterType::Lanczos3);
    let mut out = vec![0.0; 3 * nh * nw];
    for (x, y, px) in r.enumerate_pixels() {
        let p = y as usize * nw + x as usize;
        for c in 0..3 {
            out[c * nh * nw + p] = px[c];
        }
    }
    out
}

/// Largest accepted image file, in bytes (a 64-megapixel PNG is well under it).
pub const MAX_FILE_BYTES: u64 = 1 << 30;

fn read_rgb(path: &Path) -> Result<RgbImage> {
    let bytes = read_bytes(path)?;
    decode(&bytes).with_context(|| format!("image {}", path.display()))
}

/// An image file's bytes, refusing a directory, an empty file or one over [`MAX_FILE_BYTES`].
fn read_bytes(path: &Path) -> Result<Vec<u8>> {
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
    std::fs::read(path).with_context(|| format!("cannot read image {shown}"))
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
    if !matches!(
        reader().format(),
        Some(image::ImageFormat::Png | image::ImageFormat::Jpeg)
    ) {
        bail!("is not a PNG or JPEG image");
    }
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

/// An image as an 8-bit PNG in memory.
pub fn png_bytes(img: &Image) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    to_rgb(img)
        .write_to(&mut out, image::ImageFormat::Png)
        .expect("encoding into memory cannot fail");
    out.into_inner()
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
        "tif" | "tiff" => Ok(image::ImageFormat::Tiff),
        _ => bail!(
            "--output {}: unsupported extension {ext:?}; use .png, .tif, .tiff, .jpg or .jpeg",
            path.display()
        ),
    }
}

/// Checks that `path` can be written later: a known extension that holds `bit_depth`, and an
/// existing directory.
pub fn check_output(path: &Path, bit_depth: u8) -> Result<()> {
    let format = output_format(path)?;
    if bit_depth == 16 && format == image::ImageFormat::Jpeg {
        bail!(
            "--output {}: JPEG holds 8 bits a channel; use .png or .tif for --bit-depth 16",
            path.display()
        );
    }
    crate::io::atomic::check_parent_dir(path, "--output")
}

/// How an image is written: bits per channel and the colour profile to embed.
#[derive(Clone, Debug, Default)]
pub struct Encoding {
    /// 8 or 16.
    pub bit_depth: u8,
    pub icc: Option<Vec<u8>>,
}

fn to_rgb16(img: &Image) -> image::ImageBuffer<image::Rgb<u16>, Vec<u16>> {
    let (h, w) = (img.h, img.w);
    image::ImageBuffer::from_fn(w as u32, h as u32, |x, y| {
        let px = |c: usize| {
            let v = img.data[(c * h + y as usize) * w + x as usize];
            (v.clamp(0.0, 1.0) * 65535.0).round() as u16
        };
        image::Rgb([px(0), px(1), px(2)])
    })
}

/// Writes `img` to `path` atomically (a partial file never stands at `path`), 8 or 16 bits a
/// channel from the f32 values, with the ICC profile where the format holds one.
pub fn save(img: &Image, path: &Path, enc: &Encoding) -> Result<()> {
    use image::codecs::{jpeg::JpegEncoder, png::PngEncoder, tiff::TiffEncoder};
    use image::{ExtendedColorType, ImageEncoder};
    let format = output_format(path)?;
    let (w, h) = (img.w as u32, img.h as u32);
    let sixteen = enc.bit_depth == 16;
    // The samples as the encoders take them, in native byte order (no second copy).
    let (wide, narrow): (Vec<u16>, Vec<u8>);
    let bytes: &[u8] = if sixteen {
        wide = to_rgb16(img).into_raw();
        bytemuck::cast_slice(&wide)
    } else {
        narrow = to_rgb(img).into_raw();
        &narrow
    };
    let color = if sixteen {
        ExtendedColorType::Rgb16
    } else {
        ExtendedColorType::Rgb8
    };
    crate::io::atomic::write_atomic(path, |f| {
        let mut out = std::io::BufWriter::new(f);
        fn encode(
            mut e: impl ImageEncoder, icc: &Option<Vec<u8>>, b: &[u8], w: u32, h: u32,
            c: ExtendedColorType,
        ) -> Result<()> {
            if let Some(p) = icc {
                // A format that cannot hold a profile writes the image without one.
                let _ = e.set_icc_profile(p.clone());
            }
            e.write_image(b, w, h, c)?;
            Ok(())
        }
        match format {
            image::ImageFormat::Png => {
                encode(PngEncoder::new(&mut out), &enc.icc, bytes, w, h, color)?
            }
            image::ImageFormat::Tiff => {
                let mut seek = std::io::Cursor::new(Vec::new());
                encode(TiffEncoder::new(&mut seek), &enc.icc, bytes, w, h, color)?;
                std::io::Write::write_all(&mut out, &seek.into_inner())?;
            }
            _ => encode(
                JpegEncoder::new_with_quality(&mut out, 95),
                &enc.icc,
                bytes,
                w,
                h,
                color,
            )?,
        }
        std::io::Write::flush(&mut out)?;
        Ok(())
    })
}
