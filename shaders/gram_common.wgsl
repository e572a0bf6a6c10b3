// The parameters and bindings of the Gram kernels, shared by gram.wgsl (register-blocked:
// the software driver's tiling) and gram_gemm.wgsl (workgroup-memory GEMM tiles: real GPUs).
// The host joins this prelude in front of either (kernels/gram.rs), and the tests validate
// the joined text. F is an N x M feature map (N channels, M = H·W positions, row-major).
//
//   gram:        chunk_grams[c] = F Fᵀ over chunk c of the positions (N x N each; with one
//                chunk, that is G itself)
//   gram_reduce: gram_sum = Σ_c chunk_grams[c], in a fixed order (gram.wgsl only)
//   style_grad:  grad_feat (+)= coef · ((G − A) F) · [F > 0], coef = weight / (N² M²): F is
//                post-ReLU, so the ReLU mask of the backward is fused here. G and A must be
//                symmetric (as every Gram matrix is).
//
// A map too large for one binding is bound a range of channels at a time (kernels::setup):
// F's rows a0 .. a0 + na as `feat` and rows b0 .. b0 + nb as `feat_b`. gram then computes
// G's block [a][b] (and its transpose; only the upper triangle of tiles when a = b), and
// style_grad rows a of dF from rows b of F (the host adds the pieces b in order).

struct GramParams {
    n: u32,
    m: u32,
    coef: f32,       // style_grad
    accumulate: u32, // style_grad: 0 overwrites grad_feat, 1 adds to it
    chunks: u32,     // gram, gram_reduce: positions are split into this many chunks of chunk_len
    chunk_len: u32,
    na: u32,         // rows of F in feat, from row a0 (with feat_b: nb from b0)
    nb: u32,
    a0: u32,
    b0: u32,
    a_base: u32,     // where row a0 starts in feat (and in grad_feat: a_grad_base)
    b_base: u32,
    grad_base: u32,
    diagonal: u32,   // gram: 1 when feat and feat_b are the same rows (a = b)
    _pad0: u32,
    _pad1: u32,
}

// Element types of the bindings that can hold feature maps: the host rewrites these to f16
// for 16-bit storage (gpu::specialise); arithmetic stays f32.
alias Feat = f32;
// dL/dF, f16 too with 16-bit storage.
alias Grad = f32;

// Stores a gradient (saturating to infinity past f16's range: gpu::specialise).
fn to_grad(v: f32) -> Grad { return Grad(v); }

@group(0) @binding(0) var<uniform> p: GramParams;
// F, [N][M]: rows a (gram: G's rows; style_grad: the rows of dF computed, and their mask).
@group(0) @binding(1) var<storage, read> feat: array<Feat>;
// style_grad: [gradient scale, its inverse, ...] (kernels::preprocess): the loss gradients are
// scaled by it so that 16-bit gradients neither overflow nor lose their small values.
@group(0) @binding(8) var<storage, read> grad_scale: array<f32>;
// F again: rows b (gram: G's columns; style_grad: the rows summed over).
@group(0) @binding(7) var<storage, read> feat_b: array<Feat>;
// style_grad: G, [N][N].
@group(0) @binding(2) var<storage, read> gram_matrix: array<f32>;
// style_grad: the target A, [N][N].
@group(0) @binding(3) var<storage, read> target_gram: array<f32>;
// style_grad: dL/dF, [N][M].
@group(0) @binding(4) var<storage, read_write> grad_feat: array<Grad>;
// gram writes, gram_reduce reads: one Gram per chunk of positions, [chunks][N][N].
@group(0) @binding(5) var<storage, read_write> chunk_grams: array<f32>;
// gram_reduce: G, [N][N].
@group(0) @binding(6) var<storage, read_write> gram_sum: array<f32>;

// The Gram kernels' operands at position m: F's row ra (of the rows a) and row rb (of the rows
// b), 0 past the rows bound or past m_end (the chunk's end).
fn gram_operands(ra: u32, rb: u32, m: u32, m_end: u32) -> vec2<f32> {
    var v = vec2<f32>(0.0);
    if (m < m_end) {
        if (ra < p.na) {
            v.x = f32(feat[p.a_base + ra * p.m + m]);
        }
        if (rb < p.nb) {
            v.y = f32(feat_b[p.b_base + rb * p.m + m]);
        }
    }
    return v;
}
