//! Gram matrices and the style loss gradient: `shaders/gram_common.wgsl` (parameters and
//! bindings) joined in front of `gram.wgsl` (register-blocked) or `gram_gemm.wgsl`
//! (workgroup GEMM tiles).

use anyhow::Result;
use bytemuck::{Pod, Zeroable};

use super::setup::{fold_tiles, groups_1d, Builder, Setup, Tiling, F32, GEMM_TILE};
use std::ops::Range;

use crate::gpu::{Bound, Dispatch, Gpu, Kernel};

pub const COMMON_WGSL: &str = include_str!("../../shaders/gram_common.wgsl");
pub const REGISTERS_WGSL: &str = include_str!("../../shaders/gram.wgsl");
pub const GEMM_WGSL: &str = include_str!("../../shaders/gram_gemm.wgsl");
pub const COOP_WGSL: &str = include_str!("../../shaders/gram_coop.wgsl");

/// The WGSL the host compiles for a tiling: the common prelude, then gram.wgsl or gram_gemm.wgsl.
pub fn source(tiling: Tiling) -> String {
    let body = match tiling {
        Tiling::Registers(_) => REGISTERS_WGSL,
        // (Kernels gives the Gram kernels regs8 or gemm64 only: Tiling::gram.)
        _ => GEMM_WGSL,
    };
    format!("{COMMON_WGSL}\n{body}")
}

/// The cooperative-matrix Gram kernel's WGSL (gram_coop.wgsl): its extensions, the common
/// prelude, the kernel on matrices of side `m` (8 or 16) ([`Tiling::Cooperative`]'s `gram`;
/// its style gradient is gemm64's).
pub fn coop_source(m: usize) -> String {
    assert!(matches!(m, 8 | 16));
    let body = super::setup::rewrite(
        COOP_WGSL,
        &[
            ("const CT: u32 = 16u;", format!("const CT: u32 = {m}u;")),
            ("coop_mat16x16", format!("coop_mat{m}x{m}")),
        ],
    );
    format!("enable f16;\nenable wgpu_cooperative_matrix;\n{COMMON_WGSL}\n{body}")
}

/// The side of a Gram workgroup's tile of G (GEMM tilings).
fn gram_tile(tiling: Tiling) -> usize {
    match tiling {
        Tiling::Cooperative { m, .. } => m,
        _ => GEMM_TILE,
    }
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
    na: u32,
    nb: u32,
    a0: u32,
    b0: u32,
    a_base: u32,
    b_base: u32,
    grad_base: u32,
    diagonal: u32,
    _pad: [u32; 2],
}

impl GramParams {
    /// F's rows `a` (in piece `fa`) against rows `b` (in piece `fb`).
    fn rows(
        (n, m): (usize, usize), a: &Range<usize>, b: &Range<usize>, (fa, fb): (u32, u32),
    ) -> GramParams {
        GramParams {
            n: n as u32,
            m: m as u32,
            coef: 0.0,
            accumulate: 0,
            chunks: 1,
            chunk_len: m as u32,
            na: a.len() as u32,
            nb: b.len() as u32,
            a0: a.start as u32,
            b0: b.start as u32,
            a_base: fa,
            b_base: fb,
            grad_base: 0,
            diagonal: (a == b) as u32,
            _pad: [0; 2],
        }
    }
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
        let gram_src = match b.setup.tiling {
            Tiling::Cooperative { m, .. } => coop_source(m),
            _ => src.clone(),
        };
        GramKernels {
            setup: b.setup,
            gram: b.kernel(
                "gram",
                &gram_src,
                &["Feat"],
                &["feat", "feat_b", "chunk_grams"],
            ),
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
                &["Feat", "Grad"],
                &[
                    "feat",
                    "feat_b",
                    "gram_matrix",
                    "target_gram",
                    "grad_feat",
                    "grad_scale",
                ],
            ),
        }
    }
}

impl GramKernels {
    /// dst = feat · featᵀ for feat `[n][m]`: one dispatch, or two (partial Grams over chunks of
    /// positions, then their fixed-order sum) when n is small next to m; with a map too large
    /// to bind whole, one Gram dispatch per pair of channel pieces (a ≤ b) before the sum.
    pub fn matrix(
        &self, gpu: &Gpu, (n, m): (usize, usize), feat: &wgpu::Buffer, dst: &wgpu::Buffer,
    ) -> Result<Vec<Dispatch>> {
        // How many chunks of positions fill the device: a few thousand register-blocked
        // invocations (one 8 x 8 tile each), or a few hundred workgroups (one 64 x 64 tile
        // each), each chunk with at least 1024 positions.
        let chunks = match self.setup.tiling {
            Tiling::Registers(_) => {
                4096usize.div_ceil((n.div_ceil(8) * (n.div_ceil(8) + 1) / 2).max(1))
            }
            tiling => {
                let t = n.div_ceil(gram_tile(tiling));
                512usize.div_ceil(t * (t + 1) / 2)
            }
        };
        // At most 32768 positions a chunk: the software driver stops loops silently after
        // 65535 iterations.
        let chunks = chunks.min(m.div_ceil(1024)).max(m.div_ceil(32768)).max(1);
        let chunk_len = m.div_ceil(chunks);
        let sb = self.setup.storage.bytes();
        let pieces = self.setup.pieces(n, &[(m, sb)]);
        // One chunk's Gram is G itself.
        let partial = match chunks {
            1 => None,
            _ => Some(gpu.storage("partial grams", chunks * n * n)?),
        };
        let out = partial.as_ref().unwrap_or(dst);
        let mut dispatches = Vec::new();
        for (ka, a) in pieces.iter().enumerate() {
            for b in &pieces[ka..] {
                let (fa, fb) = (
                    self.setup.piece(feat, a, (m, sb)),
                    self.setup.piece(feat, b, (m, sb)),
                );
                let params = GramParams {
                    chunks: chunks as u32,
                    chunk_len: chunk_len as u32,
                    ..GramParams::rows((n, m), a, b, (fa.base, fb.base))
                };
                let (na, nb) = (a.len(), b.len());
                let [x, y] = self.gram_groups(na, nb, a == b);
                let bytes = (na + nb) * m * sb + chunks * na * nb * F32;
                let mut detail = format!("{n}x{m}");
                if pieces.len() > 1 {
                    detail += &format!(" [{a:?} x {b:?}]");
                }
                let bound = [fa.bound, fb.bound, Bound::whole(out)];
                dispatches.push(
                    self.gram
                        .dispatch_bound(gpu, &params, &bound, [x as u32, y as u32, chunks as u32])
                        .info(detail, 2.0 * (na * nb * m) as f64, bytes),
                );
            }
        }
        if let Some(partial) = &partial {
            let params = GramParams {
                chunks: chunks as u32,
                ..GramParams::rows((n, m), &(0..n), &(0..n), (0, 0))
            };
            dispatches.push(
                self.reduce
                    .dispatch(gpu, &params, &[partial, dst], groups_1d(n * n))
                    .info(
                        format!("{chunks} chunks"),
                        (chunks * n * n) as f64,
                        (chunks + 1) * n * n * F32,
                    ),
            );
        }
        Ok(dispatches)
    }

    /// Workgroups along x and y of a Gram dispatch of `na` rows against `nb` (`diagonal`: the
    /// same rows, whose register tiles cover the upper triangle only).
    fn gram_groups(&self, na: usize, nb: usize, diagonal: bool) -> [usize; 2] {
        match (self.setup.tiling, diagonal) {
            (Tiling::Registers(_), true) => {
                [(na.div_ceil(8) * (na.div_ceil(8) + 1) / 2).div_ceil(64), 1]
            }
            (Tiling::Registers(_), false) => [(na.div_ceil(8) * nb.div_ceil(8)).div_ceil(64), 1],
            (tiling, _) => {
                let t = gram_tile(tiling);
                [nb.div_ceil(t), na.div_ceil(t)]
            }
        }
    }

    /// `dst (+)= s · coef · ((gram − target) · feat) · [feat > 0]` (feat is post-ReLU; s the
    /// gradient scale in `scale`); with a map too large to bind whole, by pieces of rows, each
    /// summing over the pieces in order.
    #[allow(clippy::too_many_arguments)]
    pub fn style_grad(
        &self, gpu: &Gpu, (n, m): (usize, usize), coef: f32, accumulate: bool, feat: &wgpu::Buffer,
        gram: &wgpu::Buffer, target: &wgpu::Buffer, (dst, scale): (&wgpu::Buffer, &wgpu::Buffer),
    ) -> Vec<Dispatch> {
        let sb = self.setup.storage.bytes();
        // Gradients are stored as feature maps are.
        let pieces = self.setup.pieces(n, &[(m, sb)]);
        let mut dispatches = Vec::new();
        for a in &pieces {
            let fa = self.setup.piece(feat, a, (m, sb));
            let grad = self.setup.piece(dst, a, (m, sb));
            for (k, b) in pieces.iter().enumerate() {
                let fb = self.setup.piece(feat, b, (m, sb));
                let add = accumulate || k > 0;
                let params = GramParams {
                    coef,
                    accumulate: add as u32,
                    grad_base: grad.base,
                    ..GramParams::rows((n, m), a, b, (fa.base, fb.base))
                };
                let na = a.len();
                let groups = match self.setup.tiling {
                    Tiling::Registers(_) => fold_tiles(
                        m.div_ceil(8).div_ceil(64),
                        na.div_ceil(8),
                        self.setup.fold_limit,
                    ),
                    _ => fold_tiles(
                        m.div_ceil(GEMM_TILE),
                        na.div_ceil(GEMM_TILE),
                        self.setup.fold_limit,
                    ),
                };
                let bound = [
                    fa.bound,
                    fb.bound,
                    Bound::whole(gram),
                    Bound::whole(target),
                    grad.bound,
                    Bound::whole(scale),
                ];
                let mut detail = format!("{n}x{m}");
                if pieces.len() > 1 {
                    detail += &format!(" [{a:?} from {b:?}]");
                }
                let bytes =
                    (na + b.len() + na * (1 + add as usize)) * m * sb + 2 * na * b.len() * F32;
                dispatches.push(
                    self.style_grad
                        .dispatch_bound(gpu, &params, &bound, groups)
                        .info(detail, 2.0 * (na * b.len() * m) as f64, bytes),
                );
            }
        }
        dispatches
    }
}
