//! Video files through the `ffmpeg` and `ffprobe` programs (Debian's `ffmpeg` package): raw
//! RGB frames through pipes, nothing linked.

use std::io::Read;
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};

use anyhow::{bail, Context, Result};

/// What the video's first stream is.
#[derive(Clone, Debug, PartialEq)]
pub struct VideoInfo {
    pub width: usize,
    pub height: usize,
    /// The frame rate as ffprobe gives it (e.g. "30000/1001").
    pub rate: String,
}

/// Fails, saying how to install it, when `program` does not run.
pub fn check_program(program: &str) -> Result<()> {
    match Command::new(program).arg("-version").output() {
        Ok(o) if o.status.success() => Ok(()),
        _ => bail!(
            "{program} is needed for video files and was not found on PATH: install it (Debian/Ubuntu: apt-get install ffmpeg), or give a directory of frames"
        ),
    }
}

/// The size and frame rate of the video at `path`.
pub fn probe(path: &Path) -> Result<VideoInfo> {
    check_program("ffprobe")?;
    let o = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries"])
        .args(["stream=width,height,r_frame_rate", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .with_context(|| format!("running ffprobe on {}", path.display()))?;
    let text = String::from_utf8_lossy(&o.stdout);
    let fields: Vec<&str> = text.trim().split(',').collect();
    match (o.status.success(), fields.as_slice()) {
        (true, [w, h, rate]) => Ok(VideoInfo {
            width: w.parse().context("ffprobe's width")?,
            height: h.parse().context("ffprobe's height")?,
            rate: rate.to_string(),
        }),
        _ => bail!(
            "{}: not a video ffprobe can read: {}",
            path.display(),
            String::from_utf8_lossy(&o.stderr).trim()
        ),
    }
}

/// The frames of a video, decoded by ffmpeg, one RGB image at a time.
pub struct Decoder {
    child: Child,
    out: ChildStdout,
    pub info: VideoInfo,
}

impl Decoder {
    pub fn open(path: &Path) -> Result<Decoder> {
        check_program("ffmpeg")?;
        let info = probe(path)?;
        let mut child = Command::new("ffmpeg")
            .args(["-v", "error", "-nostdin", "-i"])
            .arg(path)
            .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting ffmpeg")?;
        let out = child.stdout.take().expect("a piped stdout");
        Ok(Decoder { child, out, info })
    }

    /// The next frame, or None at the end; a failed decode names ffmpeg's message.
    pub fn next_frame(&mut self) -> Result<Option<image::RgbImage>> {
        let (w, h) = (self.info.width, self.info.height);
        let mut buf = vec![0u8; 3 * w * h];
        let mut got = 0;
        while got < buf.len() {
            match self.out.read(&mut buf[got..])? {
                0 => break,
                n => got += n,
            }
        }
        if got == buf.len() {
            return Ok(image::RgbImage::from_raw(w as u32, h as u32, buf));
        }
        let status = self.child.wait()?;
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        if !status.success() || got > 0 {
            bail!("ffmpeg failed decoding the video: {}", err.trim());
        }
        Ok(None)
    }
}

impl Drop for Decoder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Encodes the PNG frames `dir/frame_%06d.png` at `rate` into `out` (the container by its
/// extension), scaled to width x height (rounded down to even sizes, as players need), through a temporary file renamed into place.
pub fn encode(dir: &Path, rate: &str, (width, height): (usize, usize), out: &Path) -> Result<()> {
    check_program("ffmpeg")?;
    let ext = out.extension().and_then(|e| e.to_str()).unwrap_or("mp4");
    let tmp = out.with_extension(format!("partial.{ext}"));
    let o = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-y", "-framerate", rate, "-i"])
        .arg(dir.join("frame_%06d.png"))
        .args([
            "-vf",
            &format!("scale={}:{}:flags=lanczos", width / 2 * 2, height / 2 * 2),
        ])
        // Even sizes and yuv420p: what players take.
        .args(["-pix_fmt", "yuv420p"])
        .arg(&tmp)
        .output()
        .context("starting ffmpeg")?;
    if !o.status.success() {
        let _ = std::fs::remove_file(&tmp);
        bail!(
            "ffmpeg failed encoding {}: {}",
            out.display(),
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    std::fs::rename(&tmp, out).with_context(|| format!("renaming into {}", out.display()))
}
