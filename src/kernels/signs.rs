//! A ReLU output's signs packed as bits, the mask a convolution's backward needs of its input:
//! `shaders/signs.wgsl`.

use bytemuck::{Pod, Zeroable};

use super::setup::{groups_1d, Builder, Setup, F32};
use crate::gpu::{Bound, Dispatch, Gpu, Kernel};

pub const WGSL: &str = include_str!("../../shaders/signs.wgsl");

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct SignParams {
    len: u32,
    src_base: u32,
    word0: u32,
    words: u32,
}

/// u32 words of the signs of a map of `len` elements.
pub fn words(len: usize) -> usize {
    len.div_ceil(32)
}

pub struct SignKernels {
    pub(super) setup: Setup,
    relu_signs: Kernel,
}

impl SignKernels {
    pub(super) fn build(b: &Builder<'_>) -> SignKernels {
        SignKernels {
            setup: b.setup,
            relu_signs: b.kernel("relu_signs", WGSL, &["Src"], &["src", "bits"]),
        }
    }

    /// `bits` ([`words`]) = where the map `src` of `len` elements is positive: one dispatch,
    /// or one per range of words when the map is too large to bind whole.
    pub fn relu_signs(
        &self, gpu: &Gpu, len: usize, src: &wgpu::Buffer, bits: &wgpu::Buffer,
    ) -> Vec<Dispatch> {
        let sb = self.setup.storage.bytes();
        self.setup
            .pieces(words(len), &[(32, sb)])
            .into_iter()
            .map(|r| {
                // The last word's elements stop at the map's end.
                let elements = r.start * 32..(r.end * 32).min(len);
                let piece = self.setup.piece(src, &elements, (1, sb));
                let params = SignParams {
                    len: len as u32,
                    src_base: piece.base,
                    word0: r.start as u32,
                    words: r.len() as u32,
                };
                let bound = [piece.bound, Bound::whole(bits)];
                self.relu_signs
                    .dispatch_bound(gpu, &params, &bound, groups_1d(r.len()))
                    .info(String::new(), 0.0, elements.len() * sb + r.len() * F32)
            })
            .collect()
    }
}
