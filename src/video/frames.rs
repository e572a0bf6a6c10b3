//! Where a video's frames come from (a directory of images, sorted by name, or a video file)
//! and where the results go (a directory of PNGs with the same names, or a video file encoded
//! at the end from a directory of numbered PNGs beside it, which a rerun resumes from).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::ffmpeg::{self, Decoder, VideoInfo};
use crate::io::image::Original;

/// Image files a frame directory may hold.
const FRAME_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// Video containers an output file may have (by extension): ffmpeg picks the codec.
pub const VIDEO_EXTENSIONS: [&str; 5] = ["mp4", "mkv", "webm", "mov", "avi"];

/// The input frames.
pub enum Source {
    /// Image files, sorted by name.
    Files(Vec<PathBuf>),
    Video(Decoder),
}

/// One input frame: its name (what the result is called) and its pixels.
pub struct Frame {
    pub name: String,
    pub image: Original,
}

fn has_extension(p: &Path, exts: &[&str]) -> bool {
    let ext = p
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_lowercase);
    ext.is_some_and(|e| exts.contains(&e.as_str()))
}

/// Whether `p` names a video file by its extension.
pub fn is_video(p: &Path) -> bool {
    has_extension(p, &VIDEO_EXTENSIONS)
}

impl Source {
    /// The frames of the directory or video `path`; an empty directory or an unreadable video
    /// is an error naming it.
    pub fn open(path: &Path) -> Result<Source> {
        if path.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("--content {}", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && has_extension(p, &FRAME_EXTENSIONS))
                .collect();
            if files.is_empty() {
                bail!(
                    "--content {}: the directory has no frames (PNG or JPEG files)",
                    path.display()
                );
            }
            files.sort();
            check_sizes(&files)?;
            return Ok(Source::Files(files));
        }
        if !path.exists() {
            bail!("--content {}: no such file or directory", path.display());
        }
        Ok(Source::Video(Decoder::open(path).with_context(|| {
            format!("--content {}", path.display())
        })?))
    }

    /// The frame count when known beforehand (a directory).
    pub fn count(&self) -> Option<usize> {
        match self {
            Source::Files(f) => Some(f.len()),
            Source::Video(_) => None,
        }
    }

    /// The video's size and rate (None for a directory).
    pub fn info(&self) -> Option<&VideoInfo> {
        match self {
            Source::Video(d) => Some(&d.info),
            Source::Files(_) => None,
        }
    }

    /// Frame `index` (frames are read in order, once each), or None past the last.
    pub fn next(&mut self, index: usize) -> Result<Option<Frame>> {
        match self {
            Source::Files(files) => {
                let Some(path) = files.get(index) else {
                    return Ok(None);
                };
                let image = crate::io::image::load_original(path)
                    .with_context(|| format!("frame {}", path.display()))?;
                let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("frame");
                Ok(Some(Frame {
                    name: format!("{stem}.png"),
                    image,
                }))
            }
            Source::Video(d) => Ok(d.next_frame()?.map(|rgb| Frame {
                name: frame_name(index),
                image: Original { rgb, icc: None },
            })),
        }
    }
}

/// Fails, naming the frame, when a frame file cannot be read as an image or has another size
/// than the first (read from the headers: before any frame is stylized).
fn check_sizes(files: &[PathBuf]) -> Result<()> {
    let mut first = None;
    for f in files {
        let size = image::image_dimensions(f).with_context(|| format!("frame {}", f.display()))?;
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or("?");
        match first {
            None => first = Some(size),
            Some(s) if s != size => bail!(
                "frame {name} is {}x{}, the first frame {}x{}: every frame must have one size",
                size.0,
                size.1,
                s.0,
                s.1
            ),
            _ => {}
        }
    }
    Ok(())
}

/// The numbered name of frame `index` in a video's work directory (ffmpeg's pattern).
pub fn frame_name(index: usize) -> String {
    format!("frame_{:06}.png", index + 1)
}

/// Where the results go.
pub struct Sink {
    /// The directory the frames' PNGs are written to.
    pub dir: PathBuf,
    /// A video file encoded from `dir` at the end.
    pub video: Option<PathBuf>,
}

impl Sink {
    /// A directory output, or a video file (by its extension) with its frames in
    /// `OUTPUT.frames/` beside it. The directory is made when missing.
    pub fn new(output: &Path) -> Result<Sink> {
        let (dir, video) = if is_video(output) {
            let mut d = output.as_os_str().to_owned();
            d.push(".frames");
            (PathBuf::from(d), Some(output.to_path_buf()))
        } else if output.extension().is_some() && !output.is_dir() {
            bail!(
                "--output {}: give a directory (one PNG per frame) or a video file ({})",
                output.display(),
                VIDEO_EXTENSIONS.join(", ")
            );
        } else {
            (output.to_path_buf(), None)
        };
        std::fs::create_dir_all(&dir).with_context(|| format!("--output {}", dir.display()))?;
        Ok(Sink { dir, video })
    }

    /// Where the result of frame `index`, named `name` in its source, is written.
    pub fn path(&self, index: usize, name: &str) -> PathBuf {
        match self.video {
            Some(_) => self.dir.join(frame_name(index)),
            None => self.dir.join(name),
        }
    }

    /// Where pass `pass` (0-based) of a multi-pass run, before the last, keeps frame
    /// `index`: `OUTPUT.passes/pass{pass + 1}/` (made when missing).
    pub fn pass_path(&self, pass: usize, index: usize) -> Result<PathBuf> {
        let dir = self.passes_dir().join(format!("pass{}", pass + 1));
        std::fs::create_dir_all(&dir).with_context(|| format!("{}", dir.display()))?;
        Ok(dir.join(frame_name(index)))
    }

    /// The passes' frames removed once the last pass is written.
    pub fn remove_passes(&self) -> Result<()> {
        let dir = self.passes_dir();
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("removing {}", dir.display()))
            }
            _ => Ok(()),
        }
    }

    fn passes_dir(&self) -> PathBuf {
        let base = self.video.as_deref().unwrap_or(&self.dir);
        let mut d = base.as_os_str().to_owned();
        d.push(".passes");
        PathBuf::from(d)
    }

    /// Encodes the video at the end (when the output is one), scaled to `size`.
    pub fn finish(&self, rate: &str, size: (usize, usize)) -> Result<()> {
        if let Some(v) = &self.video {
            ffmpeg::encode(&self.dir, rate, size, v)?;
        }
        Ok(())
    }
}
