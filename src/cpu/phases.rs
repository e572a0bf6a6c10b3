//! A map row split into its M phases and merged back (M = 2 or 4: the Winograd blocks'
//! widths): `phase[p][j] = row[(x0 + j)·M + p]`. Strided loads and stores that the compiler
//! leaves scalar; with AVX-512, sixteen blocks at a time by two rounds of two-source permutes.

/// `phase[p][j] = row[(x0 + j)·M + p]` for j in 0..n, zero past the row's end.
#[inline(always)]
pub fn split<const M: usize, const P: usize>(
    row: &[f32], x0: usize, n: usize, phase: &mut [[f32; P]; 4],
) {
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if super::simd::level() == super::simd::Level::Avx512 {
        let whole = (row.len() / M).saturating_sub(x0).min(n) / 16;
        for g in 0..whole {
            // SAFETY: blocks x0 + 16g.. + 16 lie inside the row (whole above); the CPU has
            // AVX-512F.
            unsafe { split16::<M, P>(row.as_ptr().add((x0 + 16 * g) * M), phase, 16 * g) };
        }
        done = 16 * whole;
    }
    for (p, ph) in phase.iter_mut().enumerate().take(M) {
        for (j, v) in ph[..n].iter_mut().enumerate().skip(done) {
            *v = row.get((x0 + j) * M + p).copied().unwrap_or(0.0);
        }
    }
}

/// `row[(x0 + j)·M + p] = q[p][j]` for j in 0..n, where inside the row.
#[inline(always)]
pub fn merge<const M: usize, const P: usize>(
    q: &[[f32; P]; 4], x0: usize, n: usize, row: &mut [f32],
) {
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if super::simd::level() == super::simd::Level::Avx512 {
        let whole = (row.len() / M).saturating_sub(x0).min(n) / 16;
        for g in 0..whole {
            // SAFETY: as in split.
            unsafe { merge16::<M, P>(q, 16 * g, row.as_mut_ptr().add((x0 + 16 * g) * M)) };
        }
        done = 16 * whole;
    }
    for j in done..n {
        for (p, q) in q.iter().enumerate().take(M) {
            if let Some(v) = row.get_mut((x0 + j) * M + p) {
                *v = q[j];
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    /// Lanes 0..8 of `a` then 0..8 of `b`; 8..16 of each.
    pub const LOW_HALVES: [i32; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23];
    pub const HIGH_HALVES: [i32; 16] =
        [8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31];

    #[target_feature(enable = "avx512f")]
    #[inline]
    pub fn perm(a: __m512, idx: &[i32; 16], b: __m512) -> __m512 {
        // SAFETY: idx is 16 i32.
        let idx = unsafe { _mm512_loadu_si512(idx.as_ptr().cast()) };
        _mm512_permutex2var_ps(a, idx, b)
    }

    /// Every `step`-th lane of the 32 in (a, b), from `first`.
    pub const fn strided(first: i32, step: i32) -> [i32; 16] {
        let mut out = [0; 16];
        let mut i = 0;
        while i < 16 {
            out[i] = first + step * i as i32;
            i += 1;
        }
        out
    }

    /// Lanes taken alternately from a and b, `width` at a time, from lane `from` of each.
    pub const fn zip(from: i32, width: i32) -> [i32; 16] {
        let mut out = [0; 16];
        let mut i = 0;
        while i < 16 {
            let (pair, k) = (i as i32 / (2 * width), i as i32 % (2 * width));
            let lane = from + pair * width + k % width;
            out[i] = if k < width { lane } else { 16 + lane };
            i += 1;
        }
        out
    }
}

/// Sixteen blocks: `phase[p][j0 + j] = src[j·M + p]`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn split16<const M: usize, const P: usize>(
    src: *const f32, phase: &mut [[f32; P]; 4], j0: usize,
) {
    use avx512::*;
    use std::arch::x86_64::*;
    // SAFETY: src holds 16·M values (the caller's promise); phase rows hold j0 + 16.
    unsafe {
        let v: [__m512; 4] = std::array::from_fn(|i| match i < M {
            true => _mm512_loadu_ps(src.add(16 * i)),
            false => _mm512_setzero_ps(),
        });
        let out: [__m512; 4] = if M == 2 {
            // Even lanes, odd lanes.
            let even = perm(v[0], &strided(0, 2), v[1]);
            [even, perm(v[0], &strided(1, 2), v[1]), even, even]
        } else {
            // Phases 0|1 and 2|3 of blocks 0..8 and 8..16, then their halves joined.
            let (p01, p23) = (zip4(0, 1), zip4(2, 3));
            let (lo01, lo23) = (perm(v[0], &p01, v[1]), perm(v[0], &p23, v[1]));
            let (hi01, hi23) = (perm(v[2], &p01, v[3]), perm(v[2], &p23, v[3]));
            [
                perm(lo01, &LOW_HALVES, hi01),
                perm(lo01, &HIGH_HALVES, hi01),
                perm(lo23, &LOW_HALVES, hi23),
                perm(lo23, &HIGH_HALVES, hi23),
            ]
        };
        for (p, out) in out.iter().enumerate().take(M) {
            _mm512_storeu_ps(phase[p][j0..j0 + 16].as_mut_ptr(), *out);
        }
    }
}

/// Lanes p, p + 4, p + 8, ... of (a, b) (8 of them), then those of q.
#[cfg(target_arch = "x86_64")]
const fn zip4(p: i32, q: i32) -> [i32; 16] {
    let (a, b) = (avx512::strided(p, 4), avx512::strided(q, 4));
    let mut out = [0; 16];
    let mut i = 0;
    while i < 8 {
        (out[i], out[8 + i]) = (a[i], b[i]);
        i += 1;
    }
    out
}

/// Sixteen blocks: `dst[j·M + p] = q[p][j0 + j]`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn merge16<const M: usize, const P: usize>(q: &[[f32; P]; 4], j0: usize, dst: *mut f32) {
    use avx512::*;
    use std::arch::x86_64::*;
    // SAFETY: q rows hold j0 + 16 values; dst room for 16·M (the caller's promise).
    unsafe {
        let v: [__m512; 4] = std::array::from_fn(|p| match p < M {
            true => _mm512_loadu_ps(q[p][j0..j0 + 16].as_ptr()),
            false => _mm512_setzero_ps(),
        });
        let out: [__m512; 4] = if M == 2 {
            let lo = perm(v[0], &zip(0, 1), v[1]);
            [lo, perm(v[0], &zip(8, 1), v[1]), lo, lo]
        } else {
            // Phases 0 and 1, 2 and 3 paired block by block, then the pairs joined.
            let (lo01, hi01) = (perm(v[0], &zip(0, 1), v[1]), perm(v[0], &zip(8, 1), v[1]));
            let (lo23, hi23) = (perm(v[2], &zip(0, 1), v[3]), perm(v[2], &zip(8, 1), v[3]));
            [
                perm(lo01, &zip(0, 2), lo23),
                perm(lo01, &zip(8, 2), lo23),
                perm(hi01, &zip(0, 2), hi23),
                perm(hi01, &zip(8, 2), hi23),
            ]
        };
        for (i, out) in out.iter().enumerate().take(M) {
            _mm512_storeu_ps(dst.add(16 * i), *out);
        }
    }
}
