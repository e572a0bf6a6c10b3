//! The CPU engine's forward pass for one image size: the padded input and every stage's
//! padded output.

use super::clock::{conv_flops, Clock};
use anyhow::Result;

use super::kernels as k;
use super::winograd::{self, Scheme};
use crate::model::vgg19::{held, Arch};
use crate::model::{Affine, Held, Stage, StageOp};
use crate::weights::{ConvWeights, Weights};

/// A conv layer's weights in the layouts the CPU kernels read, each direction in its scheme.
pub struct Conv {
    pub forward: k::ConvTaps,
    pub backward: k::ConvTaps,
    pub bias: Vec<f32>,
    pub schemes: [Scheme; 2],
    /// f32 values of Winograd scratch its larger direction takes on the calling thread.
    pub scratch: usize,
}

impl Conv {
    /// Layer `cw` on h x w maps, each direction in its scheme.
    pub fn new(cw: &ConvWeights, (h, w): (usize, usize), [fwd, bwd]: [Scheme; 2]) -> Conv {
        let scratch = |s: Scheme, shape| match s {
            Scheme::Direct => 0,
            Scheme::Winograd(m) => winograd::scratch_len(m, shape),
        };
        Conv {
            forward: k::forward_taps(&cw.hwio, cw.cin, cw.cout, fwd),
            backward: k::backward_taps(&cw.hwio, cw.cin, cw.cout, bwd),
            bias: cw.bias.clone(),
            schemes: [fwd, bwd],
            scratch: scratch(fwd, (cw.cin, cw.cout, h, w))
                .max(scratch(bwd, (cw.cout, cw.cin, h, w))),
        }
    }
}

/// The conv layers of `stages`, each direction's scheme chosen for its map
/// ([`winograd::choose`]).
pub fn convs(weights: &Weights, arch: &Arch, stages: &[Stage]) -> Result<Vec<Conv>> {
    let deepest = stages
        .iter()
        .filter(|s| matches!(s.op, StageOp::Conv(_)))
        .count();
    let layers = weights.layers_up_to(arch, deepest.saturating_sub(1))?;
    let sizes = stages.iter().filter(|s| matches!(s.op, StageOp::Conv(_)));
    Ok((layers.into_iter().zip(sizes))
        .map(|(cw, s)| Conv::new(cw, (s.h, s.w), winograd::choose((s.cin, s.cout, s.h, s.w))))
        .collect())
}

/// The forward pass for one image size: padded input, every stage's padded output (those it
/// keeps), each pooling stage's routes (`kernels::pool_forward`), and the signs of the
/// convolutions kept only as the next one's ReLU mask (`kernels::relu_signs`).
pub struct Net {
    pub stages: Vec<Stage>,
    pub input: Vec<f32>,
    pub acts: Vec<Vec<f32>>,
    pub routes: Vec<Vec<u32>>,
    pub signs: Vec<Vec<u32>>,
    held: Vec<Held>,
    /// Circular padding in every convolution (`--seamless`).
    pub seamless: bool,
}

/// Values in a stage's output as the CPU kernels store it (padded planes).
pub fn padded_len(s: &Stage) -> usize {
    let (h, w) = s.out_hw();
    s.cout * k::plane(h, w)
}

impl Net {
    /// With `loss_layers`, the outputs the backward does not read whole get no buffer of
    /// their own: the forward pass writes them into the two buffers it is lent (the session's
    /// gradient buffers, idle until the backward), as [`Held`] says.
    pub fn new(stages: Vec<Stage>, loss_layers: Option<&[usize]>, seamless: bool) -> Net {
        let s0 = stages[0];
        let held = match loss_layers {
            Some(keep) => held(&stages, keep),
            None => vec![Held::Own; stages.len()],
        };
        let acts = stages
            .iter()
            .zip(&held)
            .map(|(s, &p)| match p {
                Held::Own => vec![0.0; padded_len(s)],
                Held::Lent { .. } => Vec::new(),
            })
            .collect();
        let signs = stages
            .iter()
            .zip(&held)
            .map(|(s, &p)| match p {
                Held::Lent { signs: true, .. } => vec![0; padded_len(s).div_ceil(32)],
                _ => Vec::new(),
            })
            .collect();
        let routes = stages
            .iter()
            .map(|s| match s.op {
                StageOp::Pool(_) => vec![0; k::routes_len((s.cin, s.h, s.w))],
                StageOp::Conv(_) => Vec::new(),
            })
            .collect();
        Net {
            input: vec![0.0; 3 * k::plane(s0.h, s0.w)],
            stages,
            acts,
            routes,
            signs,
            held,
            seamless,
        }
    }

    /// The same network for another image size, in the buffers it has (a tiled evaluation's
    /// crops: made for the largest, reused for each). Not zeroed: the forward pass writes
    /// every value of every buffer (borders included) before anything reads it.
    pub fn reshape(&mut self, stages: Vec<Stage>) {
        fn sized<T: Copy + Default>(v: &mut Vec<T>, len: usize) {
            match v.len() > len {
                true => v.truncate(len),
                false => v.resize(len, T::default()),
            }
        }
        let s0 = stages[0];
        sized(&mut self.input, 3 * k::plane(s0.h, s0.w));
        for (i, s) in stages.iter().enumerate() {
            if let Held::Own = self.held[i] {
                sized(&mut self.acts[i], padded_len(s));
            }
            if let StageOp::Pool(_) = s.op {
                sized(&mut self.routes[i], k::routes_len((s.cin, s.h, s.w)));
            }
            if let Held::Lent { signs: true, .. } = self.held[i] {
                sized(&mut self.signs[i], padded_len(s).div_ceil(32));
            }
        }
        self.stages = stages;
    }

    /// Values held: the input, the outputs kept, the routes and signs (4-byte words all).
    pub fn held(&self) -> usize {
        let acts: usize = self.acts.iter().map(Vec::len).sum();
        let bits = self
            .routes
            .iter()
            .chain(&self.signs)
            .map(Vec::len)
            .sum::<usize>();
        self.input.len() + acts + bits
    }

    /// The forward pass from image `x`; a net made with loss layers needs `lent`.
    pub fn forward(
        &mut self, convs: &[Conv], affine: &Affine, x: &[f32], clock: &mut Clock,
        mut lent: Option<&mut [Vec<f32>; 2]>,
    ) {
        let s0 = self.stages[0];
        let input = &mut self.input;
        clock.time("preprocess", String::new, 0.0, 2 * x.len(), || {
            k::preprocess(x, (s0.h, s0.w), affine, input)
        });
        for i in 0..self.stages.len() {
            let s = self.stages[i];
            let (before, rest) = self.acts.split_at_mut(i);
            let (cin, cout, h, w) = (s.cin, s.cout, s.h, s.w);
            let [mut l0, mut l1] = match lent.as_deref_mut() {
                Some([a, b]) => [Some(a), Some(b)],
                None => [None, None],
            };
            let mut take = |p: usize| {
                let lent = if p == 0 { l0.take() } else { l1.take() };
                lent.expect("a net with loss layers is lent two buffers")
            };
            let dst: &mut [f32] = match self.held[i] {
                Held::Own => &mut rest[0],
                Held::Lent { lent, .. } => &mut take(lent)[..padded_len(&s)],
            };
            // (Mutable for the convolution's circular padding, k::with_padding.)
            let src: &mut [f32] = match i.checked_sub(1).map(|b| self.held[b]) {
                None => &mut self.input,
                Some(Held::Own) => &mut before[i - 1],
                Some(Held::Lent { lent, .. }) => &mut take(lent)[..cin * k::plane(h, w)],
            };
            match s.op {
                StageOp::Conv(l) => {
                    let c = &convs[l];
                    clock.time(
                        "conv_forward",
                        || format!("{cin}->{cout} {h}x{w} {}", c.schemes[0].name()),
                        conv_flops(cin, cout, h, w),
                        (cin + cout) * h * w + (9 * cin + 1) * cout,
                        || {
                            k::with_padding(src, (h, w), self.seamless, |src| {
                                k::conv_forward(src, &c.forward, &c.bias, (cin, cout, h, w), dst)
                            })
                        },
                    );
                    let signs = &mut self.signs[i];
                    if !signs.is_empty() {
                        let dst = &*dst;
                        let bytes = dst.len() + signs.len();
                        clock.time("relu_signs", String::new, 0.0, bytes, || {
                            k::relu_signs(dst, signs)
                        });
                    }
                }
                StageOp::Pool(mode) => {
                    let after_relu = i > 0 && matches!(self.stages[i - 1].op, StageOp::Conv(_));
                    let routes = &mut self.routes[i];
                    clock.time(
                        "pool_forward",
                        || format!("{cin}x{h}x{w}"),
                        (cin * h * w) as f64,
                        cin * (h * w + (h / 2) * (w / 2)) + routes.len(),
                        || k::pool_forward(src, (cin, h, w), mode, after_relu, dst, routes),
                    )
                }
            }
        }
    }

    pub fn stage_of(&self, layer: usize) -> usize {
        crate::model::vgg19::conv_stage(&self.stages, layer).expect("loss layer within the stages")
    }
}

/// Values in the largest of `stages`' padded outputs, or their padded input.
pub fn largest_map(stages: &[Stage]) -> usize {
    let s0 = stages[0];
    stages
        .iter()
        .map(padded_len)
        .chain([3 * k::plane(s0.h, s0.w)])
        .max()
        .unwrap()
}

/// Stage `i`'s backward: the gradient of its output, `gi`, taken down to its input's, `below`
/// (masked by the ReLU of the stage below, from its output or its kept signs).
pub fn stage_backward(
    net: &Net, convs: &[Conv], i: usize, gi: &mut [f32], below: &mut [f32], clock: &mut Clock,
) {
    let s = net.stages[i];
    let src: &[f32] = if i == 0 { &net.input } else { &net.acts[i - 1] };
    let below_relu = i > 0 && matches!(net.stages[i - 1].op, StageOp::Conv(_));
    // The stage below may have kept only its output's signs.
    let below_signs = i.checked_sub(1).map(|b| &net.signs[b][..]);
    let (cin, cout, h, w) = (s.cin, s.cout, s.h, s.w);
    match s.op {
        StageOp::Conv(l) => {
            let c = &convs[l];
            let mask = match below_signs {
                Some(bits) if below_relu && !bits.is_empty() => Some(k::InputRelu::Signs(bits)),
                _ => below_relu.then_some(k::InputRelu::Values(src)),
            };
            let name = if below_relu {
                "conv_backward_input_masked"
            } else {
                "conv_backward_input"
            };
            clock.time(
                name,
                || format!("{cout}->{cin} {h}x{w} {}", c.schemes[1].name()),
                conv_flops(cin, cout, h, w),
                (cout + cin * (1 + below_relu as usize)) * h * w + 9 * cin * cout,
                // Circular padding: the input gradient reads the output's gradient wrapped.
                || {
                    k::with_padding(gi, (h, w), net.seamless, |gi| {
                        k::conv_backward_input(gi, &c.backward, mask, (cin, cout, h, w), below)
                    })
                },
            )
        }
        StageOp::Pool(mode) => {
            let routes = &net.routes[i];
            clock.time(
                "pool_backward",
                || format!("{cin}x{h}x{w}"),
                (cin * h * w) as f64,
                cin * h * w + cin * (h / 2) * (w / 2) + routes.len(),
                || k::pool_backward(routes, gi, (cin, h, w), mode, below),
            )
        }
    }
}
