//! The optimiser's kernels on the image (`shaders/adam.wgsl`): Adam with a clamp to [0, 1], the
//! step count kept on the GPU; and the moving average of the iterates (`--average`).

use bytemuck::{Pod, Zeroable};

use super::setup::{groups_1d, Builder, Setup, F32};
use crate::gpu::{Bound, Dispatch, Gpu, Kernel};
use crate::model::AdamConfig;

pub const WGSL: &str = include_str!("../../shaders/adam.wgsl");

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct AdamParams {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub len: u32,
    /// The moving average's decay (its fold only).
    pub decay: f32,
    pub base: u32,
    pub _pad: u32,
}

impl AdamParams {
    pub fn new(config: &AdamConfig, len: usize) -> AdamParams {
        AdamParams {
            lr: config.lr as f32,
            beta1: config.beta1 as f32,
            beta2: config.beta2 as f32,
            eps: config.eps as f32,
            len: len as u32,
            decay: 0.0,
            base: 0,
            _pad: 0,
        }
    }
}

pub struct AdamKernels {
    pub(super) setup: Setup,
    tick: Kernel,
    update: Kernel,
    fold: Kernel,
}

impl AdamKernels {
    pub(super) fn build(b: &Builder<'_>) -> AdamKernels {
        AdamKernels {
            setup: b.setup,
            tick: b.kernel("adam_tick", WGSL, &[], &["state", "grad_scale"]),
            update: b.kernel(
                "adam_update",
                WGSL,
                &[],
                &["grad", "x", "m", "v", "state", "grad_scale"],
            ),
            fold: b.kernel("average_fold", WGSL, &[], &["x", "avg"]),
        }
    }

    /// `avg = decay·avg + (1 − decay)·x` over `len` values (the other parameters unused).
    pub fn fold(
        &self, gpu: &Gpu, decay: f32, len: usize, x: &wgpu::Buffer, avg: &wgpu::Buffer,
    ) -> Vec<Dispatch> {
        (self.setup.spans(len).into_iter())
            .map(|r| {
                let (px, pa) = (
                    self.setup.piece(x, &r, (1, F32)),
                    self.setup.piece(avg, &r, (1, F32)),
                );
                let params = AdamParams {
                    decay,
                    len: r.len() as u32,
                    base: px.base,
                    ..AdamParams::zeroed()
                };
                debug_assert_eq!(px.base, pa.base);
                self.fold
                    .dispatch_bound(gpu, &params, &[px.bound, pa.bound], groups_1d(r.len()))
                    .info(String::new(), 2.0 * r.len() as f64, 3 * r.len() * F32)
            })
            .collect()
    }
}

pub struct AdamBuffers<'a> {
    pub grad: &'a wgpu::Buffer,
    pub x: &'a wgpu::Buffer,
    pub m: &'a wgpu::Buffer,
    pub v: &'a wgpu::Buffer,
    /// 4 f32s: [t, 1 − β1^t, 1 − β2^t, unused], zero at the start.
    pub state: &'a wgpu::Buffer,
    /// The gradient scale's state (`kernels::preprocess`): a step whose gradient overflowed
    /// is skipped.
    pub grad_scale: &'a wgpu::Buffer,
}

impl AdamKernels {
    /// The two dispatches of one Adam step on x: bump t in `state`, then update and clamp.
    /// Adam's step count, then its update a range of the image at a time.
    pub fn step(&self, gpu: &Gpu, params: AdamParams, b: AdamBuffers<'_>) -> Vec<Dispatch> {
        let len = params.len as usize;
        let mut d = vec![self
            .tick
            .dispatch(gpu, &params, &[b.state, b.grad_scale], [1, 1, 1])
            .info(String::new(), 0.0, 8 * F32)];
        for r in self.setup.spans(len) {
            let piece = |buf| self.setup.piece(buf, &r, (1, F32));
            let (g, x, m, v) = (piece(b.grad), piece(b.x), piece(b.m), piece(b.v));
            let params = AdamParams {
                len: r.len() as u32,
                base: x.base,
                ..params
            };
            let (state, scale) = (Bound::whole(b.state), Bound::whole(b.grad_scale));
            let bound = [g.bound, x.bound, m.bound, v.bound, state, scale];
            // grad read; x, m and v read and written
            d.push(
                self.update
                    .dispatch_bound(gpu, &params, &bound, groups_1d(r.len()))
                    .info(String::new(), 0.0, 7 * r.len() * F32),
            );
        }
        d
    }
}
