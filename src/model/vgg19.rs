//! VGG19's layer structure and names. The convolutions are named as Keras names them
//! (`block1_conv1` .. `block5_conv4`); Caffe-style `conv1_1` / `relu1_1` name the same
//! post-ReLU activations.

use anyhow::{bail, Result};

use super::image::Image;

/// Pooling flavour; VGG19 uses max, average is a common alternative for style transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    Max,
    Avg,
}

/// One convolution of the architecture.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvSpec {
    pub name: String,
    pub cin: usize,
    pub cout: usize,
    /// A 2x2 pooling follows this convolution.
    pub pool_after: bool,
}

/// A stack of 3x3 conv + ReLU layers with 2x2 pooling between blocks.
#[derive(Clone, Debug, PartialEq)]
pub struct Arch {
    pub convs: Vec<ConvSpec>,
}

/// The 16 convolutions of VGG19 as (block, convs in block, channels).
const VGG19_BLOCKS: [(usize, usize, usize); 5] = [
    (1, 2, 64),
    (2, 2, 128),
    (3, 4, 256),
    (4, 4, 512),
    (5, 4, 512),
];

impl Arch {
    pub fn vgg19() -> Arch {
        let mut convs = Vec::new();
        let mut cin = 3;
        for (block, n, channels) in VGG19_BLOCKS {
            for i in 1..=n {
                convs.push(ConvSpec {
                    name: format!("block{block}_conv{i}"),
                    cin,
                    cout: channels,
                    pool_after: i == n,
                });
                cin = channels;
            }
        }
        Arch { convs }
    }

    /// The index of a layer by Keras name, or by Caffe name (`conv3_1`, `relu3_1`).
    pub fn layer_index(&self, name: &str) -> Result<usize> {
        let keras = caffe_to_keras(name).unwrap_or_else(|| name.to_string());
        if let Some(i) = self.convs.iter().position(|c| c.name == keras) {
            return Ok(i);
        }
        let known: Vec<&str> = self.convs.iter().map(|c| c.name.as_str()).collect();
        bail!(
            "unknown layer {name:?}; layers are {} (or Caffe names such as conv1_1 / relu1_1)",
            known.join(", ")
        )
    }

    /// The stages needed to compute conv layers 0..=deepest, with their input shapes.
    /// No pooling is added after the deepest conv: nothing would read it.
    pub fn stages(&self, deepest: usize, h: usize, w: usize, pooling: Pooling) -> Vec<Stage> {
        let mut stages = Vec::new();
        let (mut c, mut h, mut w) = (3, h, w);
        for (i, conv) in self.convs.iter().enumerate().take(deepest + 1) {
            stages.push(Stage {
                op: StageOp::Conv(i),
                cin: c,
                cout: conv.cout,
                h,
                w,
            });
            c = conv.cout;
            if conv.pool_after && i < deepest {
                stages.push(Stage {
                    op: StageOp::Pool(pooling),
                    cin: c,
                    cout: c,
                    h,
                    w,
                });
                h /= 2;
                w /= 2;
            }
        }
        stages
    }
}

fn caffe_to_keras(name: &str) -> Option<String> {
    let rest = name
        .strip_prefix("conv")
        .or_else(|| name.strip_prefix("relu"))?;
    let (b, i) = rest.split_once('_')?;
    let (b, i): (usize, usize) = (b.parse().ok()?, i.parse().ok()?);
    Some(format!("block{b}_conv{i}"))
}

/// The index of the stage that outputs conv layer `layer`, if the stages reach it.
pub fn conv_stage(stages: &[Stage], layer: usize) -> Option<usize> {
    stages.iter().position(|s| s.op == StageOp::Conv(layer))
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum StageOp {
    /// Conv layer index into [`Arch::convs`], with its ReLU.
    Conv(usize),
    Pool(Pooling),
}

/// One step of the forward pass with its input shape (cin x h x w).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stage {
    pub op: StageOp,
    pub cin: usize,
    pub cout: usize,
    pub h: usize,
    pub w: usize,
}

impl Stage {
    pub fn out_hw(&self) -> (usize, usize) {
        match self.op {
            StageOp::Conv(_) => (self.h, self.w),
            StageOp::Pool(_) => (self.h / 2, self.w / 2),
        }
    }
    pub fn out_len(&self) -> usize {
        let (h, w) = self.out_hw();
        self.cout * h * w
    }
}

/// Where the forward pass leaves a stage's output, so that the backward has what it needs and
/// no more (both engines follow this).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Held {
    /// A buffer of its own, kept through the backward: loss layers (their values), and
    /// convolutions whose output the next convolution's backward reads as its ReLU mask
    /// when no signs are kept.
    Own,
    /// One of the two gradient buffers, idle until the backward (`lent`, 0 or 1, never the
    /// one holding the stage's input): pooling outputs (dead once the next convolution has
    /// read them), convolutions feeding a pool (the backward reads the pool's routes), and,
    /// with `signs`, convolutions feeding a convolution, whose backward needs only the
    /// signs, kept as bits.
    Lent { lent: usize, signs: bool },
}

/// How the forward pass holds each of `stages`' outputs when it may borrow the gradient
/// buffers; `loss_layers` are kept whole. The deepest stage is always a loss layer.
pub fn held(stages: &[Stage], loss_layers: &[usize]) -> Vec<Held> {
    let mut out: Vec<Held> = Vec::with_capacity(stages.len());
    for (i, s) in stages.iter().enumerate() {
        let next = stages.get(i + 1).map(|n| n.op);
        let signs = match (s.op, next) {
            (StageOp::Conv(l), _) if loss_layers.contains(&l) => None,
            (_, None) => None,
            (StageOp::Pool(_), _) => Some(false),
            (StageOp::Conv(_), Some(StageOp::Pool(_))) => Some(false),
            (StageOp::Conv(_), Some(StageOp::Conv(_))) => Some(true),
        };
        out.push(match signs {
            None => Held::Own,
            Some(signs) => {
                // Not the buffer this stage reads from.
                let lent = match out.last() {
                    Some(Held::Lent { lent, .. }) => 1 - lent,
                    _ => matches!(s.op, StageOp::Conv(_)) as usize,
                };
                Held::Lent { lent, signs }
            }
        });
    }
    out
}

/// Fails when an image is too small for the layers it feeds: the image being optimised
/// (content-sized) feeds every loss layer, a style image only the style layers.
pub fn check_sizes(
    arch: &Arch, loss: &super::loss::LossConfig, pooling: Pooling, content: &Image,
    styles: &[(Image, f64)],
) -> Result<()> {
    check_size(arch, &loss.layers(), pooling, "content", content)?;
    for (img, _) in styles {
        check_size(arch, &loss.style_layers, pooling, "style", img)?;
    }
    Ok(())
}

/// Fails when the feature map of `img` at one of `layers` would be empty (pooling halves it
/// per block), naming the image and the layer.
fn check_size(
    arch: &Arch, layers: &[usize], pooling: Pooling, what: &str, img: &Image,
) -> Result<()> {
    let deepest = layers.iter().copied().max().unwrap_or(0);
    let stages = arch.stages(deepest, img.h, img.w, pooling);
    for &l in layers {
        if let Some(st) = stages.iter().find(|st| st.op == StageOp::Conv(l)) {
            if st.h == 0 || st.w == 0 {
                bail!(
                    "--size: the {what} image ({}x{}) is too small for layer {}: its feature map would be empty; use a larger --size (or --style-scale)",
                    img.w,
                    img.h,
                    arch.convs[l].name
                );
            }
        }
    }
    Ok(())
}

/// HWIO weights `[3][3][cin][cout]` → `[3][3][cout][cin padded to a multiple of pad]`: each tap's
/// matrix with the output channels as rows (the GPU's input-gradient layout; the CPU engine's
/// forward GEMM operand, unpadded).
pub fn taps_by_output(hwio: &[f32], cin: usize, cout: usize, pad: usize) -> Vec<f32> {
    let cp = cin.next_multiple_of(pad);
    let mut out = vec![0.0; 9 * cout * cp];
    for tap in 0..9 {
        for ci in 0..cin {
            for co in 0..cout {
                out[(tap * cout + co) * cp + ci] = hwio[(tap * cin + ci) * cout + co];
            }
        }
    }
    out
}
