//! Winograd convolutions F(m x m, 3 x 3) for the CPU engine (Lavin & Gray, "Fast Algorithms
//! for Convolutional Neural Networks", 2016): each m x m block of outputs comes from an
//! (m + 2)² block of input by `Y = Aᵀ [(G g Gᵀ) ∘ (Bᵀ d B)] A`, so a layer is (m + 2)²
//! GEMMs over the blocks, one per transformed position ξ, instead of nine over the pixels:
//! 2.25x fewer multiplications for F(2x2), 4x for F(4x4). The weights are transformed once
//! per session (in f64); the input and output transforms run on chunks of blocks small
//! enough to stay in cache, each phase on rayon's threads with every value written by one
//! thread in a fixed order (reruns are bit-identical whatever the threads).
//!
//! The maps are the CPU engine's padded planes (kernels.rs): a block's input starts at the
//! padded row and column of its first output, so the border — zeros, or the opposite edge
//! under `--seamless` — is the padding; rows and columns past the plane read as zero (they
//! feed only outputs past the map's edge, which are not written).

use rayon::prelude::*;

use super::gemm::{gemm_here, Operand, Shared};
use super::phases;
use super::simd;

/// How the CPU engine computes a 3x3 convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// Nine GEMMs, one per tap, over shifted views of the padded input.
    Direct,
    /// Winograd with m x m output blocks: F(2x2, 3x3) or F(4x4, 3x3).
    Winograd(usize),
}

impl Scheme {
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Direct => "direct",
            Scheme::Winograd(2) => "winograd2",
            Scheme::Winograd(_) => "winograd4",
        }
    }

    pub fn parse(s: &str) -> Option<Scheme> {
        match s {
            "direct" => Some(Scheme::Direct),
            "winograd2" => Some(Scheme::Winograd(2)),
            "winograd4" => Some(Scheme::Winograd(4)),
            _ => None,
        }
    }
}

/// Each direction's scheme for a layer of `ci` → `co` channels on h x w maps: [forward,
/// input gradient]. `IMPASTO_CPU_CONV=direct|winograd2|winograd4` forces one everywhere
/// (for measuring; the choice is otherwise fixed by the shape, so reruns are identical).
pub fn choose((ci, co, h, w): (usize, usize, usize, usize)) -> [Scheme; 2] {
    if let Some(s) = forced() {
        return [s; 2];
    }
    // (The map's size did not change the choice in the measurements: 32 to 512 px.)
    let _ = (h, w);
    [pick(ci, co), pick(co, ci)]
}

/// The scheme measured fastest for a convolution of `ci` → `co` channels (docs/performance.md).
fn pick(ci: usize, co: usize) -> Scheme {
    if ci >= 16 && co >= 16 {
        Scheme::Winograd(4)
    } else {
        Scheme::Direct
    }
}

fn forced() -> Option<Scheme> {
    static FORCED: std::sync::OnceLock<Option<Scheme>> = std::sync::OnceLock::new();
    *FORCED.get_or_init(|| {
        let v = std::env::var("IMPASTO_CPU_CONV").ok()?;
        let s = Scheme::parse(&v);
        if s.is_none() {
            log::warn!("IMPASTO_CPU_CONV={v} is not direct, winograd2 or winograd4: ignored");
        }
        s
    })
}

/// One F(m x m, 3 x 3): `bt` is Bᵀ (α x α), `g` is G (α x 3), `at` is Aᵀ (m x α), α = m + 2.
struct Transform {
    m: usize,
    bt: &'static [f32],
    g: &'static [f64],
    at: &'static [f32],
}

impl Transform {
    fn alpha(&self) -> usize {
        self.m + 2
    }
}

/// F(2x2, 3x3) with the points 0, 1, −1, ∞.
const F2: Transform = Transform {
    m: 2,
    #[rustfmt::skip]
    bt: &[
        1.0, 0.0, -1.0, 0.0,
        0.0, 1.0, 1.0, 0.0,
        0.0, -1.0, 1.0, 0.0,
        0.0, 1.0, 0.0, -1.0,
    ],
    #[rustfmt::skip]
    g: &[
        1.0, 0.0, 0.0,
        0.5, 0.5, 0.5,
        0.5, -0.5, 0.5,
        0.0, 0.0, 1.0,
    ],
    #[rustfmt::skip]
    at: &[
        1.0, 1.0, 1.0, 0.0,
        0.0, 1.0, -1.0, -1.0,
    ],
};

/// F(4x4, 3x3) with the points 0, ±1, ±2, ∞ (Lavin & Gray's).
const F4: Transform = Transform {
    m: 4,
    #[rustfmt::skip]
    bt: &[
        4.0, 0.0, -5.0, 0.0, 1.0, 0.0,
        0.0, -4.0, -4.0, 1.0, 1.0, 0.0,
        0.0, 4.0, -4.0, -1.0, 1.0, 0.0,
        0.0, -2.0, -1.0, 2.0, 1.0, 0.0,
        0.0, 2.0, -1.0, -2.0, 1.0, 0.0,
        0.0, 4.0, 0.0, -5.0, 0.0, 1.0,
    ],
    #[rustfmt::skip]
    g: &[
        1.0 / 4.0, 0.0, 0.0,
        -1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0,
        -1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0,
        1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0,
        1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0,
        0.0, 0.0, 1.0,
    ],
    #[rustfmt::skip]
    at: &[
        1.0, 1.0, 1.0, 1.0, 1.0, 0.0,
        0.0, 1.0, -1.0, 2.0, -2.0, 0.0,
        0.0, 1.0, 1.0, 4.0, 4.0, 0.0,
        0.0, 1.0, -1.0, 8.0, -8.0, 1.0,
    ],
};

fn transform(m: usize) -> &'static Transform {
    match m {
        2 => &F2,
        4 => &F4,
        _ => panic!("no Winograd transform F({m}x{m}, 3x3)"),
    }
}

/// Blocks in one chunk's row segment at most (the transforms' stack scratch).
const SEGMENT: usize = 64;
/// About this many f32 of transformed input and output a chunk (4 MiB).
const CHUNK_FLOATS: usize = 1 << 20;
/// Blocks a chunk at the least, whatever its channels (below this the GEMMs starve).
const MIN_BLOCKS: usize = 64;

/// A layer's weights transformed: `u[ξ][co][ci] = (G g[co][ci] Gᵀ)[ξ]`.
pub struct Taps {
    pub m: usize,
    co: usize,
    ci: usize,
    u: Vec<f32>,
}

impl Taps {
    /// From the layer's taps in correlation order: `tap(t, o, i)` is the weight that output
    /// channel o gives input channel i at padded offset (t / 3, t % 3) from its output.
    pub fn new(
        m: usize, (ci, co): (usize, usize), tap: impl Fn(usize, usize, usize) -> f32,
    ) -> Taps {
        let tr = transform(m);
        let a = tr.alpha();
        let mut u = vec![0.0f32; a * a * co * ci];
        for o in 0..co {
            for i in 0..ci {
                let g: [f64; 9] = std::array::from_fn(|t| tap(t, o, i) as f64);
                for (xr, xc) in (0..a).flat_map(|r| (0..a).map(move |c| (r, c))) {
                    let mut v = 0.0;
                    for (ky, kx) in (0..3).flat_map(|y| (0..3).map(move |x| (y, x))) {
                        v += tr.g[xr * 3 + ky] * tr.g[xc * 3 + kx] * g[ky * 3 + kx];
                    }
                    u[((xr * a + xc) * co + o) * ci + i] = v as f32;
                }
            }
        }
        Taps { m, co, ci, u }
    }

    /// f32 values held.
    pub fn len(&self) -> usize {
        self.u.len()
    }

    pub fn is_empty(&self) -> bool {
        self.u.is_empty()
    }
}

/// A chunk of blocks: block rows `ty0..ty0 + rows`, block columns `x0..x0 + n` of each.
#[derive(Clone, Copy)]
struct Chunk {
    ty0: usize,
    rows: usize,
    x0: usize,
    n: usize,
}

impl Chunk {
    fn blocks(&self) -> usize {
        self.rows * self.n
    }
}

/// The chunks of an (h, w) map's blocks for `ci` → `co` channels, in a fixed order: row
/// segments of at most SEGMENT blocks, as many block rows a chunk as CHUNK_FLOATS allows.
fn chunks(m: usize, (ci, co, h, w): (usize, usize, usize, usize)) -> impl Iterator<Item = Chunk> {
    let (th, tw) = (h.div_ceil(m), w.div_ceil(m));
    let a2 = (m + 2) * (m + 2);
    let want = (CHUNK_FLOATS / (a2 * (ci + co))).max(MIN_BLOCKS);
    let n = tw.min(SEGMENT);
    let rows = (want / n).max(1);
    (0..th).step_by(rows).flat_map(move |ty0| {
        (0..tw).step_by(n).map(move |x0| Chunk {
            ty0,
            rows: rows.min(th - ty0),
            x0,
            n: n.min(tw - x0),
        })
    })
}

/// Blocks in a layer's largest chunk.
fn most_blocks(m: usize, shape: (usize, usize, usize, usize)) -> usize {
    chunks(m, shape).map(|c| c.blocks()).max().unwrap_or(0)
}

/// f32 values of the scratch a layer's convolution takes on the calling thread (its largest
/// chunk's transformed input and output; kept for the next call).
pub fn scratch_len(m: usize, shape: (usize, usize, usize, usize)) -> usize {
    (m + 2).pow(2) * (shape.0 + shape.1) * most_blocks(m, shape)
}

thread_local! {
    /// The transformed input and output of the chunk in flight (on the calling thread).
    static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `dst[o] = Σ_i Σ_t tap(t, o, i) · src[i] at offset t` on padded planes (the interior of
/// dst written, its border left as it was), then `epilogue` on each output.
pub fn conv(
    src: &[f32], taps: &Taps, (h, w): (usize, usize), dst: &mut [f32], epilogue: Epilogue<'_>,
) {
    let (ci, co, m) = (taps.ci, taps.co, taps.m);
    let pl = (h + 2) * (w + 2);
    assert!(src.len() >= ci * pl && dst.len() >= co * pl);
    if ci == 0 || co == 0 || h == 0 || w == 0 {
        return;
    }
    let a2 = (m + 2) * (m + 2);
    // (The chunks an iterator, not a list: a step allocates nothing here.)
    let most = most_blocks(m, (ci, co, h, w));
    SCRATCH.with_borrow_mut(|scratch| {
        scratch.resize(scratch.len().max(a2 * (ci + co) * most), 0.0);
        let (v, mm) = scratch.split_at_mut(a2 * ci * most);
        for c in chunks(m, (ci, co, h, w)) {
            let t = c.blocks();
            input_transform(src, transform(m), (ci, h, w), c, &mut v[..a2 * ci * t]);
            let out = Shared(mm.as_mut_ptr());
            let out = &out;
            let v = &v[..];
            let level = simd::level();
            (0..a2).into_par_iter().for_each(|x| {
                let (u, v) = (taps.u[x * co * ci..].as_ptr(), v[x * ci * t..].as_ptr());
                // SAFETY: u holds a2 [co][ci] matrices, v a2 [ci][t] ones and mm room for a2
                // [co][t] ones (resized above); each ξ writes its own matrix of mm.
                unsafe {
                    let dst = out.0.add(x * co * t);
                    #[cfg(target_arch = "x86_64")]
                    match level {
                        simd::Level::Avx512 => {
                            return super::gemm::gemm_avx512((co, t, ci), u, v, dst)
                        }
                        simd::Level::Avx2 => return super::gemm::gemm_avx2((co, t, ci), u, v, dst),
                        simd::Level::Plain => {}
                    }
                    #[cfg(not(target_arch = "x86_64"))]
                    let _ = level;
                    let (lhs, rhs) = (Operand(u, ci, 1), Operand(v, t, 1));
                    gemm_here((co, t, ci), dst, t, false, lhs, rhs, 1.0)
                }
            });
            output_transform(
                &mm[..a2 * co * t],
                transform(m),
                (co, h, w),
                c,
                dst,
                epilogue,
            );
        }
    });
}

/// `v[ξ][i][block] = (Bᵀ d B)[ξ]` for every input channel i and block of chunk `c`.
fn input_transform(
    src: &[f32], tr: &Transform, (ci, h, w): (usize, usize, usize), c: Chunk, v: &mut [f32],
) {
    let (pl, t) = ((h + 2) * (w + 2), c.blocks());
    assert!(v.len() >= (tr.alpha().pow(2) - 1) * ci * t + ci * t);
    let out = Shared(v.as_mut_ptr());
    let out = &out;
    (0..ci).into_par_iter().for_each(|i| {
        let plane = &src[i * pl..(i + 1) * pl];
        for r in 0..c.rows {
            // SAFETY: row ξ of channel i, columns r·n..(r + 1)·n of t (inside v, asserted
            // above): this channel's own.
            let dst = unsafe { out.0.add(i * t + r * c.n) };
            let block_row = (c.ty0 + r, c.x0, c.n);
            match tr.m {
                2 => input_row_simd::<2>(plane, (h, w), block_row, (dst, ci * t)),
                _ => input_row_simd::<4>(plane, (h, w), block_row, (dst, ci * t)),
            }
        }
    });
}

/// One block row's segment `(ty, x0, n)` of one channel: `dst[ξ · stride + j]` for its n
/// blocks. The strip's rows are split into their M phases (block j's column p of the first
/// M at phase p's j, the last two at phase p's j + 1), transformed along the rows, then down.
/// M is a constant so that the transform's coefficients are too (its zeros skipped, its
/// loops unrolled) and the loops over the blocks vectorise.
// (The loops index several arrays by the same transformed position.)
#[allow(clippy::needless_range_loop)]
#[inline(always)]
fn input_row<const M: usize>(
    plane: &[f32], (h, w): (usize, usize), (ty, x0, n): (usize, usize, usize),
    (dst, stride): (*mut f32, usize),
) {
    let tr = transform(M);
    let (a, pw) = (M + 2, w + 2);
    assert!(n <= SEGMENT);
    let mut phase = [[0.0f32; SEGMENT + 1]; 4];
    // rowt[strip row][ξc][block]
    let mut rowt = [[[0.0f32; SEGMENT]; 6]; 6];
    for (sr, rowt) in rowt.iter_mut().enumerate().take(a) {
        let pr = ty * M + sr;
        if pr >= h + 2 {
            rowt.iter_mut().for_each(|r| r[..n].fill(0.0));
            continue;
        }
        phases::split::<M, { SEGMENT + 1 }>(&plane[pr * pw..(pr + 1) * pw], x0, n + 1, &mut phase);
        for j in 0..n {
            let d: [f32; 6] = std::array::from_fn(|col| match col < a {
                true => phase[col % M][j + col / M],
                false => 0.0,
            });
            for (xc, rowt) in rowt.iter_mut().enumerate().take(a) {
                rowt[j] = combine(&tr.bt[xc * a..xc * a + a], &d, 0.0);
            }
        }
    }
    // Down the columns into a stack array (which the compiler vectorises; six slices of the
    // destination it would not), then out row by row.
    let mut down = [[0.0f32; SEGMENT]; 6];
    for xc in 0..a {
        for j in 0..n {
            let d: [f32; 6] = std::array::from_fn(|sr| rowt[sr][xc][j]);
            for (xr, down) in down.iter_mut().enumerate().take(a) {
                down[j] = combine(&tr.bt[xr * a..xr * a + a], &d, 0.0);
            }
        }
        for (xr, down) in down.iter().enumerate().take(a) {
            // SAFETY: as input_transform asserts, ξ's n values are the caller's own.
            unsafe {
                std::ptr::copy_nonoverlapping(down.as_ptr(), dst.add((xr * a + xc) * stride), n)
            };
        }
    }
}

/// `start + Σ k[i] · d[i]` over the nonzero coefficients, in order.
#[inline(always)]
fn combine(k: &[f32], d: &[f32; 6], start: f32) -> f32 {
    let mut acc = start;
    for (i, &k) in k.iter().enumerate() {
        if k != 0.0 {
            acc += k * d[i];
        }
    }
    acc
}

/// What the output transform does to each value: add the channel's bias and apply the ReLU
/// (the forward), or zero it where the layer's input is not positive (an input gradient under
/// the ReLU below: that input's values, or its signs as bits, `kernels::relu_signs`), or
/// nothing. The masks are padded maps of the output's shape.
#[derive(Clone, Copy)]
pub enum Epilogue<'a> {
    BiasRelu(&'a [f32]),
    MaskValues(&'a [f32]),
    MaskSigns(&'a [u32]),
    None,
}

/// The epilogue for one output channel: bias, ReLU, and the gate of its padded plane.
#[derive(Clone, Copy)]
struct Finish<'a> {
    bias: f32,
    relu: bool,
    gate: Gate<'a>,
}

#[derive(Clone, Copy)]
enum Gate<'a> {
    Open,
    /// The channel's padded plane of values.
    Values(&'a [f32]),
    /// All the signs, and the channel's first element's index.
    Signs(&'a [u32], usize),
}

impl Finish<'_> {
    /// Zero in `row` (padded positions p0..) where the gate is closed.
    #[inline(always)]
    fn gate(&self, row: &mut [f32], p0: usize) {
        match self.gate {
            Gate::Open => {}
            Gate::Values(plane) => {
                let n = row.len();
                for (v, &f) in row.iter_mut().zip(&plane[p0..p0 + n]) {
                    *v = if f > 0.0 { *v } else { 0.0 };
                }
            }
            Gate::Signs(bits, base) => {
                for (i, v) in row.iter_mut().enumerate() {
                    let e = base + p0 + i;
                    *v = if bits[e / 32] >> (e % 32) & 1 != 0 {
                        *v
                    } else {
                        0.0
                    };
                }
            }
        }
    }
}

/// `dst[o]`'s blocks of chunk `c` = `epilogue(Aᵀ M A)` from `mm[ξ][o][block]`.
fn output_transform(
    mm: &[f32], tr: &Transform, (co, h, w): (usize, usize, usize), c: Chunk, dst: &mut [f32],
    epilogue: Epilogue<'_>,
) {
    let (pl, t) = ((h + 2) * (w + 2), c.blocks());
    dst[..co * pl]
        .par_chunks_mut(pl)
        .enumerate()
        .for_each(|(o, plane)| {
            let (bias, relu, gate) = match epilogue {
                Epilogue::BiasRelu(b) => (b[o], true, Gate::Open),
                Epilogue::MaskValues(v) => (0.0, false, Gate::Values(&v[o * pl..(o + 1) * pl])),
                Epilogue::MaskSigns(bits) => (0.0, false, Gate::Signs(bits, o * pl)),
                Epilogue::None => (0.0, false, Gate::Open),
            };
            let finish = Finish { bias, relu, gate };
            for r in 0..c.rows {
                let src = &mm[o * t + r * c.n..];
                let block_row = (c.ty0 + r, c.x0, c.n);
                let args = ((src, co * t), (h, w), block_row);
                match tr.m {
                    2 => output_row_simd::<2>(args.0, args.1, args.2, plane, finish),
                    _ => output_row_simd::<4>(args.0, args.1, args.2, plane, finish),
                }
            }
        });
}

/// One block row's segment `(ty, x0, n)` of one output channel's plane from `src[ξ · stride
/// + j]`: down the columns, then along the rows into the plane's row, M values a block.
#[allow(clippy::needless_range_loop)]
#[inline(always)]
fn output_row<const M: usize>(
    (src, stride): (&[f32], usize), (h, w): (usize, usize), (ty, x0, n): (usize, usize, usize),
    plane: &mut [f32], finish: Finish<'_>,
) {
    let tr = transform(M);
    let (a, pw) = (M + 2, w + 2);
    assert!(n <= SEGMENT);
    // cols[output row][ξc][block]; q[output column][block]
    let mut cols = [[[0.0f32; SEGMENT]; 6]; 4];
    let mut q = [[0.0f32; SEGMENT]; 4];
    for xc in 0..a {
        // (Rows past α repeat the first: read, never used; all n long, so the loop over the
        // blocks has no bounds to check and vectorises.)
        let s: [&[f32]; 6] =
            std::array::from_fn(|xr| &src[(xr.min(a - 1) * a + xc) * stride..][..n]);
        for j in 0..n {
            let d: [f32; 6] = std::array::from_fn(|xr| s[xr][j]);
            for (yr, cols) in cols.iter_mut().enumerate().take(M) {
                cols[xc][j] = combine(&tr.at[yr * a..yr * a + a], &d, 0.0);
            }
        }
    }
    for (yr, cols) in cols.iter().enumerate().take(M) {
        let y = ty * M + yr;
        if y >= h {
            break;
        }
        for j in 0..n {
            let d: [f32; 6] = std::array::from_fn(|xc| cols[xc][j]);
            for (xo, q) in q.iter_mut().enumerate().take(M) {
                let v = combine(&tr.at[xo * a..xo * a + a], &d, finish.bias);
                q[j] = if finish.relu { v.max(0.0) } else { v };
            }
        }
        let p0 = (y + 1) * pw + 1;
        let row = &mut plane[p0..p0 + w];
        phases::merge::<M, SEGMENT>(&q, x0, n, row);
        let written = x0 * M..((x0 + n) * M).min(w);
        finish.gate(&mut row[written.clone()], p0 + written.start);
    }
}

/// Defines `$name`, which runs `$body` compiled for the widest SIMD this CPU has (the
/// transforms' loops are written for the compiler to vectorise; the values do not depend on
/// the width: no fused multiply-adds, each element's sum in one order).
macro_rules! widest_simd {
    ($name:ident => $body:ident($($arg:ident: $ty:ty),*)) => {
        fn $name<const M: usize>($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx2")]
                unsafe fn avx512<const M: usize>($($arg: $ty),*) {
                    $body::<M>($($arg),*)
                }
                #[target_feature(enable = "avx2")]
                unsafe fn avx2<const M: usize>($($arg: $ty),*) {
                    $body::<M>($($arg),*)
                }
                if simd::level() == simd::Level::Avx512 {
                    // SAFETY: the CPU has AVX-512F.
                    return unsafe { avx512::<M>($($arg),*) };
                }
                if simd::level() >= simd::Level::Avx2 {
                    // SAFETY: the CPU has AVX2.
                    return unsafe { avx2::<M>($($arg),*) };
                }
            }
            $body::<M>($($arg),*)
        }
    };
}

widest_simd!(input_row_simd => input_row(
    plane: &[f32], hw: (usize, usize), seg: (usize, usize, usize), dst: (*mut f32, usize)
));
widest_simd!(output_row_simd => output_row(
    src: (&[f32], usize), hw: (usize, usize), seg: (usize, usize, usize), plane: &mut [f32],
    finish: Finish<'_>
));
