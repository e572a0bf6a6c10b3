//! The CPU engine's forward pass for one image size: the padded input and every stage's
//! padded output.

use super::clock::{conv_flops, Clock};
use super::kernels as k;
use crate::model::{Affine, Stage, StageOp};

/// A conv layer's weights in the layouts the CPU kernels read.
pub struct Conv {
    pub forward: Vec<f32>,
    pub backward: Vec<f32>,
    pub bias: Vec<f32>,
}

/// The forward pass for one image size: padded input and every stage's padded output.
pub struct Net {
    pub stages: Vec<Stage>,
    pub input: Vec<f32>,
    pub acts: Vec<Vec<f32>>,
}

/// Values in a stage's output as the CPU kernels store it (padded planes).
pub fn padded_len(s: &Stage) -> usize {
    let (h, w) = s.out_hw();
    s.cout * k::plane(h, w)
}

impl Net {
    /// With `external_pools`, the pooling stages get no buffer of their own: the forward pass
    /// writes them into the buffer it is given (see [`Net::forward`]).
    pub fn new(stages: Vec<Stage>, external_pools: bool) -> Net {
        let s0 = stages[0];
        let acts = stages
            .iter()
            .map(|s| match s.op {
                StageOp::Pool(_) if external_pools => Vec::new(),
                _ => vec![0.0; padded_len(s)],
            })
            .collect();
        Net {
            input: vec![0.0; 3 * k::plane(s0.h, s0.w)],
            stages,
            acts,
        }
    }

    /// The forward pass from image `x`. With `pooled` (a net made with `external_pools`), the
    /// pooling outputs go there: the backward never reads them, and each is dead once the
    /// next convolution has read it, so the session lends its first gradient buffer.
    pub fn forward(
        &mut self, convs: &[Conv], affine: &Affine, x: &[f32], clock: &mut Clock,
        mut pooled: Option<&mut [f32]>,
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
            let below_is_pool = i > 0 && matches!(self.stages[i - 1].op, StageOp::Pool(_));
            match s.op {
                StageOp::Conv(l) => {
                    let src: &[f32] = match (&pooled, i) {
                        (_, 0) => &self.input,
                        (Some(p), _) if below_is_pool => &p[..cin * k::plane(h, w)],
                        _ => &before[i - 1],
                    };
                    let c = &convs[l];
                    clock.time(
                        "conv_forward",
                        || format!("{cin}->{cout} {h}x{w}"),
                        conv_flops(cin, cout, h, w),
                        (cin + cout) * h * w + (9 * cin + 1) * cout,
                        || {
                            k::conv_forward(
                                src,
                                &c.forward,
                                &c.bias,
                                (cin, cout, h, w),
                                &mut rest[0],
                            )
                        },
                    )
                }
                StageOp::Pool(mode) => {
                    // A pooling stage follows a convolution (or the input), never another pool.
                    let src = before.last().unwrap_or(&self.input);
                    let dst: &mut [f32] = match pooled.as_deref_mut() {
                        Some(p) => &mut p[..padded_len(&s)],
                        None => &mut rest[0],
                    };
                    clock.time(
                        "pool_forward",
                        || format!("{cin}x{h}x{w}"),
                        (cin * h * w) as f64,
                        cin * (h * w + (h / 2) * (w / 2)),
                        || k::pool_forward(src, (cin, h, w), mode, dst),
                    )
                }
            }
        }
    }

    pub fn stage_of(&self, layer: usize) -> usize {
        crate::model::vgg19::conv_stage(&self.stages, layer).expect("loss layer within the stages")
    }
}
