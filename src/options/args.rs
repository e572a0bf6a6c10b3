//! The options a job takes, declared once as clap flags with their checks and help
//! (`JobOptions`), and the value parsers the commands' other flags share.

use std::path::PathBuf;

use clap::Args;

use crate::job::{EngineChoice, Optimizer, PreserveColors, DEFAULT_SIZE};
use crate::model::loss::{
    StyleLossKind, DEFAULT_CONTENT_LAYERS, DEFAULT_CONTENT_WEIGHT, DEFAULT_STYLE_LAYERS,
    DEFAULT_STYLE_WEIGHT, DEFAULT_TV_WEIGHT, DEFAULT_W2_STYLE_WEIGHT,
};
use crate::model::optim::{DEFAULT_BETA1, DEFAULT_BETA2, DEFAULT_EPS, DEFAULT_LR, DEFAULT_STEPS};
use crate::model::Pooling;

/// Which VGG19 layers the losses read.
#[derive(Args, Debug, Clone, serde::Serialize)]
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

/// A named set of settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// 256 px, 100 L-BFGS steps, the W2 style loss: a quick look
    Draft,
    /// 512 px from 256 (coarse to fine), L-BFGS, W2
    Balanced,
    /// 2048 px from 256: a print of about 7 inches at 300 dpi
    Print,
}

/// A key as a long option's name: `style_weight`, `Style-Weight` → `style-weight`.
pub fn flag_name(key: &str) -> String {
    key.trim().to_lowercase().replace('_', "-")
}

impl JobOptions {
    /// β: `--style-weight`, else the default of the `--style-loss`.
    pub fn style_weight(&self) -> f64 {
        self.style_weight.unwrap_or(match self.style_loss {
            StyleLossKind::Gram => DEFAULT_STYLE_WEIGHT,
            StyleLossKind::W2 => DEFAULT_W2_STYLE_WEIGHT,
        })
    }
}

/// Everything `stylize` takes besides its images and output: `batch` takes them as the
/// defaults of its jobs, and a manifest column of the same name overrides them for a job.
#[derive(Args, Debug, Clone, serde::Serialize)]
pub struct JobOptions {
    /// A set of settings for what you want (explicit flags override its settings): draft (a
    /// quick look), balanced (a good picture), print (docs/quality.md shows each with its
    /// time and score)
    #[arg(long, value_enum, value_name = "NAME")]
    pub preset: Option<Preset>,
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
    #[serde(flatten)]
    pub layers: LayerArgs,
    /// Content loss weight (alpha)
    #[arg(long, default_value_t = DEFAULT_CONTENT_WEIGHT, value_parser = non_negative_f64)]
    pub content_weight: f64,
    /// Style loss weight (beta) [default: 1e5 with --style-loss gram, 1e7 with w2]
    #[arg(long, value_parser = positive_f64)]
    pub style_weight: Option<f64>,
    /// What the style loss matches at each style layer: gram (the Gram matrices: Gatys et
    /// al., the seed's) or w2 (the features' mean and covariance, by the Wasserstein-2
    /// distance: crowsonkb's default; CPU engine, no style masks)
    #[arg(long, value_enum, default_value_t = StyleLossKind::Gram)]
    pub style_loss: StyleLossKind,
    /// One weight per --style-layers entry (any positive numbers, used normalised), e.g.
    /// 256,64,16,4 for crowsonkb's [default: equal]
    #[arg(long, value_name = "W1,W2,...", value_delimiter = ',', value_parser = positive_f64)]
    pub style_layer_weights: Option<Vec<f64>>,
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
    /// Arithmetic of the GPU's convolutions and Gram matrices: f32, or mixed (tensor cores
    /// through cooperative matrices: f16 operands, f32 sums, ~1e-4 relative error; where the
    /// adapter offers them and they pass a check against f32, else f32 with a note)
    #[arg(long, value_enum, default_value_t = crate::kernels::Precision::F32)]
    pub precision: crate::kernels::Precision,
    /// Engine: auto (a hardware GPU if there is one, else the CPU engine), gpu (any adapter,
    /// software drivers included) or cpu (SIMD and threads on the CPU)
    #[arg(long, value_enum, env = "IMPASTO_ENGINE", default_value_t = EngineChoice::Auto)]
    pub engine: EngineChoice,
    /// GPU kernel variants: auto (time every variant on the adapter at this run's size, once,
    /// as `impasto tune` does, and keep the fastest) or one variant for every family (regs4,
    /// regs8, regs16, gemm64, gemm64x64k8, gemm64x64k16, gemm128x64k8, gemm128x64k16; with
    /// --precision mixed, coop16-64x64, coop16, coop8-32x32 or coop8);
    /// default: what `impasto tune` kept for the adapter, else the adapter's default
    #[arg(long, value_name = "auto|VARIANT")]
    #[serde(skip)]
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

pub fn parse_f64(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number"))?;
    if !v.is_finite() {
        return Err(format!("{s} is not finite"));
    }
    Ok(v)
}

pub fn positive_f64(s: &str) -> Result<f64, String> {
    let v = parse_f64(s)?;
    if v <= 0.0 {
        return Err(format!("{s} must be positive"));
    }
    Ok(v)
}

pub fn non_negative_f64(s: &str) -> Result<f64, String> {
    let v = parse_f64(s)?;
    if v < 0.0 {
        return Err(format!("{s} must not be negative"));
    }
    Ok(v)
}

pub fn unit_f64(s: &str) -> Result<f64, String> {
    let v = parse_f64(s)?;
    if !(0.0..1.0).contains(&v) {
        return Err(format!("{s} must be in [0, 1)"));
    }
    Ok(v)
}

pub fn positive_usize(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(v) => Ok(v),
        Err(_) => Err(format!("{s:?} is not a positive whole number")),
    }
}

pub fn bit_depth(s: &str) -> Result<u8, String> {
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
    use crate::options::args::parse_bytes;

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
