//! Gram matrices and the style loss gradient: `shaders/gram_common.wgsl` (parameters and
//! bindings) joined in front of `gram.wgsl` (register-blocked) or `gram_gemm.wgsl`
//! (workgroup GEMM tiles).

use anyhow::Result;
use bytemuck::{Pod, Zeroable};

use super::setup::{fold_tiles, groups_1d, Builder, Setup, Tiling, F32, GEMM_TILE};
use crate::gpu::{Dispatch, Gpu, Kernel};

pub const COMMON_WGSL: &str = include_str!("../../shaders/gram_common.wgsl");
pub const REGISTERS_WGSL: &str = include_str!("../../shaders/gram.wgsl");
pub const GEMM_WGSL: &str = include_str!("../../shaders/gram_gemm.wgsl");

/// The WGSL the host compiles for a tiling: the common prelude, then gram.wgsl or gram_gemm.wgsl.
pub fn source(tiling: Tiling) -> String {
    let body = match tiling {
        Tiling::Registers(_) => REGISTERS_WGSL,
        Tiling::Workgroup => GEMM_WGSL,
    };
    format!("{COMMON_WGSL}\n{body}")
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct GramParams {
    n: u32,
    m: u32,
    coef: f32,
    accumulate: u32,
    chunks: u32,
    chunk_len: u32,
    _pad: [u32; 2],
}

pub struct GramKernels {
    pub(super) setup: Setup,
    gram: Kernel,
    reduce: Kernel,
    style_grad: Kernel,
}

impl GramKernels {
    pub(super) fn build(b: &Builder<'_>) -> GramKernels {
        let src = source(b.setup.tiling);
        GramKernels {
            setup: b.setup,
            gram: b.kernel("gram", &src, &["Feat"], &["feat", "chunk_grams"]),
            // Only gram.wgsl has the reduction; both tilings share it.
            reduce: b.kernel(
                "gram_reduce",
                &source(Tiling::Registers(8)),
                &[],
                &["chunk_grams", "gram_sum"],
            ),
            style_grad: b.kernel(
                "style_grad",
                &src,
                &["Feat"],
                &["feat", "gram_matrix", "target_gram", "grad_feat"],
            ),
        }
    }
}

impl GramKernels {
    /// dst = feat · featᵀ for feat `[n][m]`: one dispatch, or two (partial Grams over chunks of
    /// positions, then their fixed-order sum) when n is small next to m.
    pub fn matrix(
        &self, gpu: &Gpu, (n, m): (usize, usize), feat: &wgpu::Buffer, dst: &wgpu::Buffer,
    ) -> Result<Vec<Dispatch>> {
        // Workgroups over the tiles on or above G's diagonal, and how many chunks of positions
        // fill the device: a few thousand register-blocked invocations (one 8 x 8 tile each,
        // listed in x), or a few hundred workgroups (one 64 x 64 tile each, y <= x), each chunk
        // with at least 1024 positions.
        let ([x, y], chunks) = match self.setup.tiling {
            Tiling::Registers(_) => {
                let tiles = n.div_ceil(8) * (n.div_ceil(8) + 1) / 2;
                ([tiles.div_ceil(64), 1], 4096usize.div_ceil(tiles.max(1)))
            }
            Tiling::Workgroup => {
                let t = n.div_ceil(GEMM_TILE);
                ([t, t], 512usize.div_ceil(t * (t + 1) / 2))
            }
        };
        let chunks = chunks.min(m.div_ceil(1024)).max(1);
        let chunk_len = m.div_ceil(chunks);
        let params = GramParams {
            n: n as u32,
            m: m as u32,
            coef: 0.0,
            accumulate: 0,
            chunks: chunks as u32,
            chunk_len: chunk_len as u32,
            _pad: [0; 2],
        };
        let info = |d: Dispatch| {
            let bytes = n * m * self.setup.storage.bytes() + chunks * n * n * F32;
            d.info(format!("{n}x{m}"), 2.0 * (n * n * m) as f64, bytes)
        };
        let groups = [x as u32, y as u32, chunks as u32];
        if chunks == 1 {
            // One chunk's Gram is G itself.
            let d = self.gram.dispatch(gpu, &params, &[feat, dst], groups);
            return Ok(vec![info(d)]);
        }
        let partial = gpu.storage("partial grams", chunks * n * n)?;
        Ok(vec![
            info(self.gram.dispatch(gpu, &params, &[feat, &partial], groups)),
            self.reduce
                .dispatch(gpu, &params, &[&partial, dst], groups_1d(n * n))
                .info(
                    format!("{chunks} chunks"),
                    (chunks * n * n) as f64,
                    (chunks + 1) * n * n * F32,
                ),
        ])
    }

    /// `dst (+)= coef · ((gram − target) · feat) · [feat > 0]` (feat is post-ReLU).
    #[allow(clippy::too_many_arguments)]
    pub fn style_grad(
        &self, gpu: &Gpu, (n, m): (usize, usize), coef: f32, accumulate: bool, feat: &wgpu::Buffer,
        gram: &wgpu::Buffer, target: &wgpu::Buffer, dst: &wgpu::Buffer,
    ) -> Dispatch {
        let params = GramParams {
            n: n as u32,
            m: m as u32,
            coef,
            accumulate: accumulate as u32,
            chunks: 1,
            chunk_len: m as u32,
            _pad: [0; 2],
        };
        let groups = match self.setup.tiling {
            Tiling::Registers(_) => fold_tiles(
                m.div_ceil(8).div_ceil(64),
                n.div_ceil(8),
                self.setup.fold_limit,
            ),
            Tiling::Workgroup => fold_tiles(
                m.div_ceil(GEMM_TILE),
                n.div_ceil(GEMM_TILE),
                self.setup.fold_limit,
            ),
        };
        self.style_grad
            .dispatch(gpu, &params, &[feat, gram, target, dst], groups)
            .info(
                format!("{n}x{m}"),
                2.0 * (n * n * m) as f64,
                n * m * (self.setup.storage.bytes() + (1 + accumulate as usize) * F32)
                    + 2 * n * n * F32,
            )
    }
}
