//! The command line: flags, their checks and help text (clap).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::job::EngineChoice;
use crate::options::{non_negative_f64, positive_usize};
// The options every job command takes live with their parser in `options/`.
pub use crate::options::{parse_bytes, FlagError, JobOptions, LayerArgs, TilingChoice};

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
    /// Serve the app in the browser: drop a photo and a painting, watch it paint, keep every
    /// result
    ///
    /// A web server on this machine (loopback unless --listen says otherwise) with a page and
    /// a JSON API (/api, documented at /api/openapi.json). Jobs wait in a queue kept in the data
    /// directory (SQLite) and run one at a time on one engine; a server restarted on the same
    /// data finishes every job it had accepted. The URL to open is printed first.
    Serve(Box<ServeArgs>),
    /// Score a picture: how far it is from its content and from its style, one number each
    /// (lower is closer), printed as JSON
    ///
    /// content: the mean over --content-layers of ‖F(x) − F(c)‖² / ‖F(c)‖²; style: the mean
    /// over --style-layers of the Wasserstein-2 distance between the picture's features and
    /// the style's (their means and covariances), whatever loss made the picture. The
    /// content image is resized to the picture's size, the style images to --style-scale
    /// times it, as stylize does. Runs on the CPU.
    Score(Box<ScoreArgs>),
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
    /// Write the WGSL of every pipeline of every variant as the host builds it (a developer
    /// command: to read, diff, or give to naga, spirv-val or a vendor's compiler)
    ///
    /// One file per pipeline, FAMILY.VARIANT.ENTRY.wgsl: the tiling's constants filled in and
    /// each entry point's feature-map aliases as it is built (f16 storage switches them to
    /// f16). Builds the pipelines on the adapter (any, lavapipe included); variants it cannot
    /// build (f16 without shader-f16) are left out and said.
    Shaders(ShadersArgs),
    /// Inspect weights files
    Weights {
        #[command(subcommand)]
        command: WeightsCommand,
    },
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
    /// The style loss timed: gram or w2 (whose square roots the host takes each step)
    #[arg(long, value_enum, default_value_t = crate::model::StyleLossKind::Gram)]
    pub style_loss: crate::model::StyleLossKind,
    /// Conv and Gram kernel tiling: regs4, regs8, regs16 (conv channels per invocation, no
    /// workgroup memory), gemm64 (workgroup-memory GEMM tiles of 4 x 4 outputs an invocation)
    /// or gemm64x64k8, gemm64x64k16, gemm128x64k8, gemm128x64k16 (8 x 8 an invocation; the
    /// Gram kernels run gemm64's), coop16-64x64, coop16, coop8-32x32 or coop8 (cooperative
    /// matrices: --precision mixed);
    /// default: what `impasto tune` kept, else the adapter's
    #[arg(long, value_name = "TILE", conflicts_with = "variants")]
    pub tiling: Option<crate::kernels::Tiling>,
    /// f32, or mixed: the variants on cooperative matrices (tensor cores) are timed too, after
    /// their check against f32
    #[arg(long, value_enum, default_value_t = crate::kernels::Precision::F32)]
    pub precision: crate::kernels::Precision,
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

#[derive(Args, Debug, Clone)]
pub struct ScoreArgs {
    /// The picture to score (PNG, JPEG or TIFF)
    #[arg(value_name = "IMAGE")]
    pub image: PathBuf,
    /// Its content image
    #[arg(long, value_name = "PATH")]
    pub content: PathBuf,
    /// Its style image; repeat for a blend of several
    #[arg(long, value_name = "PATH", required = true)]
    pub style: Vec<PathBuf>,
    /// Blend weights of the style images, one per --style (normalised to sum to 1)
    #[arg(long, value_name = "W1,W2,...", value_delimiter = ',', value_parser = crate::options::positive_f64)]
    pub style_blend: Option<Vec<f64>>,
    /// VGG19 weights (safetensors); default: $IMPASTO_WEIGHTS, then the user cache
    #[arg(long, value_name = "PATH")]
    pub weights: Option<PathBuf>,
    #[command(flatten)]
    pub layers: LayerArgs,
    /// Style images are resized to a longest side of style-scale x the picture's
    #[arg(long, default_value_t = 1.0, value_parser = crate::options::positive_f64)]
    pub style_scale: f64,
    /// Pooling between blocks
    #[arg(long, value_enum, default_value_t = crate::model::Pooling::Max)]
    pub pooling: crate::model::Pooling,
    /// Measure in tiles of N x N pixels (as `stylize --tile`): the same sums in the memory of
    /// one tile's network, for pictures too large to measure whole
    #[arg(long, value_name = "N", value_parser = crate::options::positive_usize)]
    pub tile: Option<usize>,
}

/// τ, the temporal term's weight relative to a frame's style and content loss at its start
/// (`model::temporal::relative_weight`), chosen on a pan and a rotation with zoom at two
/// style weights and two sets of layers (docs/video.md has the sweep).
pub const DEFAULT_TEMPORAL_WEIGHT: f64 = 0.01;

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
    /// Weight of the temporal term, relative: a change of one 8-bit level at every pixel
    /// the flow follows costs this times the frame's style and content loss at its start
    /// (0: each frame only starts from the previous result)
    #[arg(long, value_name = "F", default_value_t = DEFAULT_TEMPORAL_WEIGHT, value_parser = non_negative_f64)]
    pub temporal_weight: f64,
    /// Long-term consistency: follow the results of the J frames before (each pixel the
    /// nearest that saw it), not only the previous one
    #[arg(long, value_name = "J", default_value_t = 1, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=100))]
    pub long_term: usize,
    /// Passes over the video, alternately forward and backward (Ruder et al.'s multi-pass:
    /// the frames are held in memory; each pass takes --frame-steps a frame)
    #[arg(long, value_name = "P", default_value_t = 1, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=100))]
    pub passes: usize,
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
pub struct ShadersArgs {
    /// The directory to write them to (made when missing)
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
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
    /// f32, or mixed: the variants on cooperative matrices (tensor cores) compete too, where
    /// the adapter offers them and they pass the check against f32 (a separate entry)
    #[arg(long, value_enum, default_value_t = crate::kernels::Precision::F32)]
    pub precision: crate::kernels::Precision,
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
pub struct ServeArgs {
    /// Address and port to listen on; any address but a loopback one needs a token (one is
    /// generated and printed when --token is not given)
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:8787")]
    pub listen: std::net::SocketAddr,
    /// Where the jobs, their uploads and results are kept [default:
    /// $XDG_DATA_HOME/impasto/serve, else ~/.local/share/impasto/serve]
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Every request must carry this token (the printed URL does; also IMPASTO_TOKEN)
    #[arg(
        long,
        value_name = "TOKEN",
        env = "IMPASTO_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// The largest file a client may upload (e.g. 50M)
    #[arg(long, value_name = "SIZE", default_value = "50M", value_parser = parse_bytes)]
    pub max_upload: u64,
    /// How many jobs may wait at once; one more is answered 429
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = positive_usize)]
    pub queue: usize,
    /// The jobs' defaults: any stylize option (a job's settings override them; the engine,
    /// --weights and --max-memory are the server's alone)
    #[command(flatten)]
    pub options: JobOptions,
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

fn sha256_hex(s: &str) -> Result<String, String> {
    let s = s.trim().to_lowercase();
    if s.len() != 64 || !s.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err("expected 64 hexadecimal digits".into());
    }
    Ok(s)
}
