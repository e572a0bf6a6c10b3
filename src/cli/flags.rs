//! The command line: flags, their checks and help text (clap).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::job::{EngineChoice, Optimizer, PreserveColors, DEFAULT_SIZE};
use crate::model::Pooling;

use crate::model::loss::{
    DEFAULT_CONTENT_LAYERS, DEFAULT_CONTENT_WEIGHT, DEFAULT_STYLE_LAYERS, DEFAULT_STYLE_WEIGHT,
    DEFAULT_TV_WEIGHT,
};
use crate::model::optim::{DEFAULT_BETA1, DEFAULT_BETA2, DEFAULT_EPS, DEFAULT_LR, DEFAULT_STEPS};

#[derive(Parser, Debug)]
#[command(
    name = "impasto",
    version,
    about = "Neural style transfer on any GPU, in WGSL compute shaders"
)]
pub struct Cli {
    /// GPU adapter to use: a name substring or an index from `impasto devices` (also IMPASTO_ADAPTER)
    #[arg(long, global = true, value_name = "NAME")]
    pub adapter: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Stylize a content image with one or more style images
    Stylize(Box<StylizeArgs>),
    /// Stylize the jobs of a manifest (CSV or JSON Lines), sharded over Slurm array tasks or
    /// Kubernetes Indexed Jobs; jobs whose output exists are skipped
    ///
    /// The manifest has a header row: content, style (several separated by ;), output, and
    /// optionally any stylize option's long name (size, style_weight or style-weight, ...)
    /// overriding the defaults given here for that job. Relative paths are relative to the
    /// manifest's folder. Jobs run one after another on one engine; the weights are loaded
    /// once and style targets are reused by the jobs that share them.
    Batch(Box<BatchArgs>),
    /// Stylize a video (a file, through ffmpeg, or a directory of frames) without flicker
    ///
    /// Each frame starts from the previous result warped into it by the optical flow, and a
    /// temporal term keeps it close to that where the flow is reliable (Ruder et al.). Frames
    /// already in the output are kept: a rerun resumes; Ctrl-C stops after the current frame.
    Video(Box<VideoArgs>),
    /// List the GPU adapters impasto can use, best first
    Devices,
    /// Time one optimisation step and each kernel in it (random weights of VGG19's shapes)
    ///
    /// Prints a row per kernel launch of the step (milliseconds from GPU timestamps where the
    /// adapter has them, GFLOP/s, GB/s counting the bytes each kernel must read and write at
    /// the least, share of the step), then the full step's time and impasto's GPU memory.
    Bench(BenchArgs),
    /// Time every variant of the conv and Gram kernels on the adapter and keep the fastest of
    /// each family for later GPU runs (in the user cache, keyed by adapter, driver and version)
    Tune(TuneArgs),
    /// Inspect weights files
    Weights {
        #[command(subcommand)]
        command: WeightsCommand,
    },
}

/// Which VGG19 layers the losses read.
#[derive(Args, Debug, Clone)]
pub struct LayerArgs {
    /// Content layers (Keras names like block5_conv2, or Caffe names like conv5_2 / relu5_2)
    #[arg(long, value_delimiter = ',', default_value = DEFAULT_CONTENT_LAYERS)]
    pub content_layers: Vec<String>,
    /// Style layers
    #[arg(
        long,
        value_delimiter = ',',
        default_value = DEFAULT_STYLE_LAYERS
    )]
    pub style_layers: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Side of the square image in pixels
    #[arg(long, default_value_t = 256, value_parser = positive_usize)]
    pub size: usize,
    #[command(flatten)]
    pub layers: LayerArgs,
    /// Timed steps after two warm-up steps
    #[arg(long, default_value_t = 5, value_parser = positive_usize)]
    pub steps: usize,
    /// Conv and Gram kernel tiling: regs4, regs8, regs16 (conv channels per invocation, no
    /// workgroup memory), gemm64 (workgroup-memory GEMM tiles of 4 x 4 outputs an invocation)
    /// or gemm64x64k8, gemm64x64k16, gemm128x64k8, gemm128x64k16 (8 x 8 an invocation; the
    /// Gram kernels run gemm64's); default: what `impasto tune` kept, else the adapter's
    #[arg(long, value_name = "TILE", conflicts_with = "variants")]
    pub tiling: Option<crate::kernels::Tiling>,
    /// Time every variant and print each family's time per variant (what `impasto tune`
    /// measures, without keeping it)
    #[arg(long)]
    pub variants: bool,
    /// How feature maps are stored (f16 needs shader-f16)
    #[arg(long, value_enum, default_value_t = crate::kernels::Storage::F32)]
    pub storage: crate::kernels::Storage,
    /// Engine: gpu (the default here: the per-kernel table) or cpu (whole-step time)
    #[arg(long, value_enum, env = "IMPASTO_ENGINE", default_value_t = EngineChoice::Gpu)]
    pub engine: EngineChoice,
    /// Evaluate in tiles of this side, as `stylize --tile` (either engine): the tiled step's time
    #[arg(long, value_parser = positive_usize)]
    pub tile: Option<usize>,
}

#[derive(Subcommand, Debug)]
pub enum WeightsCommand {
    /// List the layers, shapes and input convention of a weights file
    Info { path: PathBuf },
    /// Download weights, verify their checksum, and store them in canonical form
    Fetch {
        /// A known source from weights/sources.json (see `impasto weights sources`)
        #[arg(long, value_name = "NAME", conflicts_with_all = ["url", "sha256"])]
        source: Option<String>,
        /// Download from this URL instead (safetensors or .pth); repeat for mirrors
        #[arg(
            long,
            value_name = "URL",
            required_unless_present = "source",
            requires = "sha256"
        )]
        url: Vec<String>,
        /// Expected sha256 of the --url download (hex)
        #[arg(long, value_name = "HEX", value_parser = sha256_hex)]
        sha256: Option<String>,
        /// Expected size in bytes
        #[arg(long)]
        size: Option<u64>,
        /// Output file (default: the user cache, where `stylize` looks)
        #[arg(short, long, value_name = "PATH")]
        output: Option<PathBuf>,
        /// Seconds a read may wait before the transfer counts as stalled
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
        timeout: u64,
    },
    /// List the known weights sources
    Sources,
    /// Check a weights file and convert it to impasto's canonical safetensors
    Import {
        /// Keras-named or torchvision-named safetensors
        path: PathBuf,
        /// Output file (default: the user cache, where `stylize` looks)
        #[arg(short, long, value_name = "PATH")]
        output: Option<PathBuf>,
    },
}

#[derive(Args, Debug, Clone)]
#[command(allow_negative_numbers = true)]
pub struct StylizeArgs {
    /// Content image (PNG or JPEG)
    #[arg(long, value_name = "PATH")]
    pub content: PathBuf,
    /// Style image; repeat for a blend of several. With --regions: COLOR=PATH, the style of
    /// the map's pixels of that colour (e.g. '#ff0000=starry.jpg')
    #[arg(long, value_name = "PATH", required = true)]
    pub style: Vec<PathBuf>,
    /// Where the style of the same rank applies: a grayscale image (white: fully, black: not
    /// at all; resized to the output). Repeat, one per --style, in the same order
    #[arg(long, value_name = "PATH", conflicts_with = "regions")]
    pub style_mask: Vec<PathBuf>,
    /// A colour-coded region map: each --style COLOR=PATH applies where the map has that
    /// colour (within a small tolerance, for JPEG noise); other colours get no style
    #[arg(long, value_name = "MAP")]
    pub regions: Option<PathBuf>,
    /// Output image; the format follows the extension (.png, .tif, .tiff, .jpg)
    #[arg(long, short, value_name = "PATH")]
    pub output: PathBuf,
    #[command(flatten)]
    pub options: JobOptions,
}

/// λ of the temporal term: on a 12-frame pan, 1e12 left a third of the frame-by-frame warping
/// error with the style loss unchanged; 1e13 an eighth, the frames sticking to the warped
/// previous one (docs/video.md has the sweep).
pub const DEFAULT_TEMPORAL_WEIGHT: f64 = 1e12;

#[derive(Args, Debug, Clone)]
#[command(allow_negative_numbers = true)]
pub struct VideoArgs {
    /// The video: a file ffmpeg reads, or a directory of frames (PNG or JPEG, in name order)
    #[arg(long, value_name = "INPUT")]
    pub content: PathBuf,
    /// Style image; repeat for a blend of several
    #[arg(long, value_name = "PATH", required = true)]
    pub style: Vec<PathBuf>,
    /// A directory (one PNG per frame, named as the input's frames) or a video file (.mp4,
    /// .mkv, .webm, .mov, .avi; encoded by ffmpeg at the input's size and frame rate, its
    /// frames kept in OUTPUT.frames/ for resuming)
    #[arg(long, short, value_name = "OUTPUT")]
    pub output: PathBuf,
    /// Weight λ of the temporal term (0: each frame only starts from the previous result)
    #[arg(long, value_name = "F", default_value_t = DEFAULT_TEMPORAL_WEIGHT, value_parser = non_negative_f64)]
    pub temporal_weight: f64,
    /// Steps of each frame after the first (which takes --steps), each starting from the last
    /// result warped [default: half of --steps]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(0..=10_000_000))]
    pub frame_steps: Option<u64>,
    /// Frame rate of a video made from a directory of frames
    #[arg(long, value_name = "FPS", default_value = "25")]
    pub fps: String,
    #[command(flatten)]
    pub options: JobOptions,
}

#[derive(Args, Debug, Clone)]
pub struct TuneArgs {
    /// Side of the square image the variants are timed at (the size of your runs)
    #[arg(long, default_value_t = 256, value_parser = positive_usize)]
    pub size: usize,
    #[command(flatten)]
    pub layers: LayerArgs,
    /// Timed steps a variant, after two warm-up steps
    #[arg(long, default_value_t = 3, value_parser = positive_usize)]
    pub steps: usize,
    /// How feature maps are stored (a separate entry for each)
    #[arg(long, value_enum, default_value_t = crate::kernels::Storage::F32)]
    pub storage: crate::kernels::Storage,
}

/// `--tiling`: tune on the adapter (once), or one variant for every family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TilingChoice {
    Auto,
    Fixed(crate::kernels::Tiling),
}

impl std::str::FromStr for TilingChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<TilingChoice, String> {
        match s.trim() {
            "auto" => Ok(TilingChoice::Auto),
            name => name
                .parse()
                .map(TilingChoice::Fixed)
                .map_err(|e| format!("{e}, or auto")),
        }
    }
}

/// A style image's path, with its region colour under --regions.
pub type StyleArg = (PathBuf, Option<[u8; 3]>);

impl StylizeArgs {
    /// The style images' paths, with their region colours under --regions (refused, naming
    /// the flag, when a --style is not COLOR=PATH there or a colour is not one).
    pub fn styles(&self) -> Result<Vec<StyleArg>, FlagError> {
        if self.regions.is_none() {
            return Ok(self.style.iter().map(|p| (p.clone(), None)).collect());
        }
        self.style
            .iter()
            .map(|s| {
                let text = s.to_string_lossy();
                let parsed = text
                    .split_once('=')
                    .and_then(|(c, p)| Some((crate::job::parse_colour(c)?, p)));
                match parsed {
                    Some((colour, path)) if !path.is_empty() => Ok((PathBuf::from(path), Some(colour))),
                    _ => Err(FlagError(format!(
                        "--style {text}: with --regions, each --style is COLOR=PATH, e.g. '#ff0000=starry.jpg'"
                    ))),
                }
            })
            .collect()
    }
}

#[derive(Args, Debug, Clone)]
#[command(allow_negative_numbers = true)]
pub struct BatchArgs {
    /// The manifest: CSV with a header row, or JSON Lines (.jsonl) with the same keys
    #[arg(value_name = "MANIFEST")]
    pub manifest: PathBuf,
    /// Run the jobs i with i mod N = K [default: Slurm's array variables, then a Kubernetes
    /// Indexed Job's JOB_COMPLETION_INDEX, else every job]
    #[arg(long, value_name = "K/N")]
    pub shard: Option<String>,
    /// With JOB_COMPLETION_INDEX: how many shards there are (the Job's completions; also
    /// IMPASTO_SHARDS)
    #[arg(long, value_name = "N", value_parser = positive_usize)]
    pub shards: Option<usize>,
    /// Append a JSON line per job of this shard as it ends (output, status, seconds, losses,
    /// error); `{shard}` in the path becomes the shard's number
    #[arg(long, value_name = "PATH")]
    pub results: Option<PathBuf>,
    /// Run jobs whose output exists too (by default they are skipped)
    #[arg(long)]
    pub overwrite: bool,
    /// The jobs' defaults: any stylize option
    #[command(flatten)]
    pub options: JobOptions,
}

/// Everything `stylize` takes besides its images and output: `batch` takes them as the
/// defaults of its jobs, and a manifest column of the same name overrides them for a job.
#[derive(Args, Debug, Clone)]
pub struct JobOptions {
    /// Blend weights of the style images, one per --style (normalised to sum to 1)
    #[arg(long, value_name = "W1,W2,...", value_delimiter = ',', value_parser = positive_f64)]
    pub style_blend: Option<Vec<f64>>,
    /// VGG19 weights (safetensors); default: $IMPASTO_WEIGHTS, then the user cache
    #[arg(long, value_name = "PATH")]
    pub weights: Option<PathBuf>,
    /// Longest side of the output in pixels
    #[arg(long, default_value_t = DEFAULT_SIZE, value_parser = positive_usize)]
    pub size: usize,
    /// Coarse to fine: optimise first at this longest side, then at sizes growing by √2 up
    /// to --size, each scale starting from the previous result upsampled [default: --size,
    /// one scale]
    #[arg(long, value_name = "N", value_parser = positive_usize)]
    pub min_size: Option<usize>,
    /// Steps at the first scale [default: --steps]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(0..=10_000_000))]
    pub initial_steps: Option<u64>,
    /// Style images are resized to a longest side of style-scale x size
    #[arg(long, default_value_t = 1.0, value_parser = positive_f64)]
    pub style_scale: f64,
    #[command(flatten)]
    pub layers: LayerArgs,
    /// Content loss weight (alpha)
    #[arg(long, default_value_t = DEFAULT_CONTENT_WEIGHT, value_parser = non_negative_f64)]
    pub content_weight: f64,
    /// Style loss weight (beta)
    #[arg(long, default_value_t = DEFAULT_STYLE_WEIGHT, value_parser = positive_f64)]
    pub style_weight: f64,
    /// Total-variation weight (gamma); 0 turns it off
    #[arg(long, default_value_t = DEFAULT_TV_WEIGHT, value_parser = non_negative_f64)]
    pub tv_weight: f64,
    /// Optimisation steps per scale (objective and gradient evaluations, for every
    /// optimizer); 0 evaluates and writes the initial image
    #[arg(long, default_value_t = DEFAULT_STEPS, value_parser = clap::value_parser!(u64).range(0..=10_000_000))]
    pub steps: u64,
    /// Optimizer: adam (the seed's), or lbfgs (further per evaluation; projected to keep
    /// the image in [0, 1]; reads the gradient back every step)
    #[arg(long, value_enum, default_value_t = Optimizer::Adam)]
    pub optimizer: Optimizer,
    /// L-BFGS: the number of past steps that shape its curvature estimate
    #[arg(long, value_name = "M", default_value_t = 100, value_parser = positive_usize)]
    pub history: usize,
    /// Write the exponential moving average of the iterates with this decay (e.g. 0.99),
    /// restarted at each scale; 0 writes the last iterate
    #[arg(long, value_name = "DECAY", default_value_t = 0.0, value_parser = unit_f64)]
    pub average: f64,
    /// Adam learning rate
    #[arg(long, default_value_t = DEFAULT_LR, value_parser = positive_f64)]
    pub lr: f64,
    /// Adam beta1
    #[arg(long, default_value_t = DEFAULT_BETA1, value_parser = unit_f64)]
    pub beta1: f64,
    /// Adam beta2
    #[arg(long, default_value_t = DEFAULT_BETA2, value_parser = unit_f64)]
    pub beta2: f64,
    /// Adam epsilon
    #[arg(long, default_value_t = DEFAULT_EPS, value_parser = positive_f64)]
    pub eps: f64,
    /// Starting image: content, noise, or the path of an image
    #[arg(long, default_value = "content", value_name = "content|noise|PATH")]
    pub init: String,
    /// Seed for --init noise
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Pooling between blocks
    #[arg(long, value_enum, default_value_t = Pooling::Max)]
    pub pooling: Pooling,
    /// Evaluate the objective in tiles of N x N output pixels (a multiple of the pooling
    /// stride of the deepest layer: 16 with the default layers), each with a halo of the
    /// layers' receptive radius: the same result in the memory of one tile's network, for
    /// pictures too large to evaluate whole (CPU engine)
    #[arg(long, value_name = "N", value_parser = positive_usize)]
    pub tile: Option<usize>,
    /// A periodic picture that tiles as a texture: circular (wrap-around) padding in every
    /// convolution and the total variation across the wrap (with --content-weight 0 --init
    /// noise, a texture from the style alone)
    #[arg(long)]
    pub seamless: bool,
    /// Keep the content image's colours: luminance (bare flag: the result's luminance with
    /// the content's colours) or histogram (the style images' colours matched to the
    /// content's mean and covariance before the transfer)
    #[arg(long, value_enum, num_args = 0..=1, default_missing_value = "luminance", value_name = "HOW")]
    pub preserve_colors: Option<PreserveColors>,
    /// Bits per channel of the output: 8, or 16 (.png, .tif)
    #[arg(long, value_name = "8|16", default_value_t = 8, value_parser = bit_depth)]
    pub bit_depth: u8,
    /// How feature maps are stored: f32, or f16 (half their memory and traffic, on adapters
    /// with shader-f16; arithmetic stays f32)
    #[arg(long, value_enum, default_value_t = crate::kernels::Storage::F32)]
    pub storage: crate::kernels::Storage,
    /// Engine: auto (a hardware GPU if there is one, else the CPU engine), gpu (any adapter,
    /// software drivers included) or cpu (SIMD and threads on the CPU)
    #[arg(long, value_enum, env = "IMPASTO_ENGINE", default_value_t = EngineChoice::Auto)]
    pub engine: EngineChoice,
    /// GPU kernel variants: auto (time every variant on the adapter at this run's size, once,
    /// as `impasto tune` does, and keep the fastest) or one variant for every family (regs4,
    /// regs8, regs16, gemm64, gemm64x64k8, gemm64x64k16, gemm128x64k8, gemm128x64k16);
    /// default: what `impasto tune` kept for the adapter, else the adapter's default
    #[arg(long, value_name = "auto|VARIANT")]
    pub tiling: Option<TilingChoice>,
    /// Log (and report) the losses every K steps
    #[arg(long, default_value_t = 10, value_parser = positive_usize)]
    pub log_every: usize,
    /// Write the current image beside the output every K steps
    #[arg(long, value_parser = positive_usize)]
    pub save_every: Option<usize>,
    /// Write a JSON report of the losses, settings and timings
    #[arg(long, value_name = "PATH")]
    pub report: Option<PathBuf>,
    /// Serve a live preview page (image, loss curves, progress) at this address; the bare
    /// flag picks a free port on 127.0.0.1, and the URL is printed before the first step
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:0")]
    pub preview: Option<String>,
    /// With --preview: keep serving the final state after the run, until Ctrl-C
    #[arg(long, requires = "preview")]
    pub preview_hold: bool,
    /// Print the memory plan (what the largest scale holds, by kind, its peak, whether it
    /// fits) from every buffer made on the chosen engine, run no kernel, write no image
    #[arg(long)]
    pub dry_run: bool,
    /// Refuse a run whose memory plan peaks above this (e.g. 6G, 800M, 1.5GiB), before any
    /// work: to leave room for other work, or to respect a GPU's memory, which wgpu does not
    /// report [default: the host memory available, for the CPU engine and software adapters]
    #[arg(long, value_name = "SIZE", value_parser = parse_bytes)]
    pub max_memory: Option<u64>,
    /// Write the loss curves at the end of the run: SVG, or PNG by the extension
    #[arg(long, value_name = "PATH")]
    pub plot: Option<PathBuf>,
}

fn parse_f64(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number"))?;
    if !v.is_finite() {
        return Err(format!("{s} is not finite"));
    }
    Ok(v)
}

fn positive_f64(s: &str) -> Result<f64, String> {
    let v = parse_f64(s)?;
    if v <= 0.0 {
        return Err(format!("{s} must be positive"));
    }
    Ok(v)
}

fn non_negative_f64(s: &str) -> Result<f64, String> {
    let v = parse_f64(s)?;
    if v < 0.0 {
        return Err(format!("{s} must not be negative"));
    }
    Ok(v)
}

fn unit_f64(s: &str) -> Result<f64, String> {
    let v = parse_f64(s)?;
    if !(0.0..1.0).contains(&v) {
        return Err(format!("{s} must be in [0, 1)"));
    }
    Ok(v)
}

fn positive_usize(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(v) => Ok(v),
        Err(_) => Err(format!("{s:?} is not a positive whole number")),
    }
}

fn sha256_hex(s: &str) -> Result<String, String> {
    let s = s.trim().to_lowercase();
    if s.len() != 64 || !s.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err("expected 64 hexadecimal digits".into());
    }
    Ok(s)
}

fn bit_depth(s: &str) -> Result<u8, String> {
    match s.trim() {
        "8" => Ok(8),
        "16" => Ok(16),
        _ => Err(format!("{s:?}: use 8 or 16")),
    }
}

/// A mistake in the command line found after parsing (exit status 2, like clap's own).
#[derive(Debug)]
pub struct FlagError(pub String);

impl std::fmt::Display for FlagError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FlagError {}

/// A size in bytes: a number with an optional K, M, G or T suffix (powers of 1024; "B",
/// "iB" and "iB"-less forms accepted): 6G, 800M, 1.5GiB, 123456.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size like 6G, 800M or 123456"))?;
    let shift = match unit
        .trim()
        .to_ascii_lowercase()
        .trim_end_matches('b')
        .trim_end_matches('i')
    {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => return Err(format!("{s:?}: unknown unit (use K, M, G or T)")),
    };
    let bytes = value * (1u64 << shift) as f64;
    if !(bytes >= 1.0 && bytes < u64::MAX as f64) {
        return Err(format!("{s:?} is not a positive size"));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use crate::cli::flags::parse_bytes;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_bytes("123456"), Ok(123456));
        assert_eq!(parse_bytes("800M"), Ok(800 << 20));
        assert_eq!(parse_bytes("6G"), Ok(6 << 30));
        assert_eq!(parse_bytes("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_bytes("2 kb"), Ok(2048));
        for bad in ["", "G", "6X", "-1G", "0"] {
            assert!(parse_bytes(bad).is_err(), "{bad}");
        }
    }
}
