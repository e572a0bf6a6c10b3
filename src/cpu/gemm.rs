//! The GEMM the CPU kernels share: one matrix product on the calling thread (the callers
//! spread their chunks over rayon's threads themselves).

use gemm::{gemm, Parallelism};

/// A strided matrix operand of [`gemm_here`]: its first element, row stride, column stride.
#[derive(Clone, Copy)]
pub struct Operand(pub *const f32, pub usize, pub usize);

/// `dst[m][n] (= or +=) scale · lhs[m][k] · rhs[k][n]` on the calling thread (the callers
/// spread chunks over rayon's threads themselves, so that each output has one writer and the
/// bits do not depend on the threads). `dst` has columns contiguous and row stride `dst_rs`.
///
/// SAFETY: every element each operand's extent and strides reach lies inside its
/// allocation, and no other thread writes the part of `dst` reached.
pub unsafe fn gemm_here(
    (m, n, k): (usize, usize, usize), dst: *mut f32, dst_rs: usize, accumulate: bool, lhs: Operand,
    rhs: Operand, scale: f32,
) {
    // SAFETY: as the caller promises.
    unsafe {
        gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs as isize,
            accumulate,
            lhs.0,
            lhs.2 as isize,
            lhs.1 as isize,
            rhs.0,
            rhs.2 as isize,
            rhs.1 as isize,
            1.0,
            scale,
            false,
            false,
            false,
            Parallelism::None,
        );
    }
}

/// A raw pointer that chunks on other threads write through, each to its own part.
pub struct Shared(pub *mut f32);
// SAFETY: every user writes disjoint parts of the buffer.
unsafe impl Sync for Shared {}

/// `c[m][n] = a[m][k] · b[k][n]`, row-major and contiguous (row strides k, n and n), on the
/// calling thread: the Winograd GEMMs' own AVX-512 kernel. The `gemm` crate dispatches no
/// further than AVX2 on a stable compiler, half of what a core with full 512-bit FMA units
/// does. Blocks of 6 rows x 64 columns: 24 accumulators, each k one row of b's four vectors
/// and six broadcasts of a; masked loads and stores at the right edge. Each output's sum
/// runs over k in order (fused multiply-adds): the same bits on every run.
///
/// SAFETY: the CPU has AVX-512F; a, b and c hold m·k, k·n and m·n values; nothing else
/// writes c.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub unsafe fn gemm_avx512(
    (m, n, k): (usize, usize, usize), a: *const f32, b: *const f32, c: *mut f32,
) {
    use std::arch::x86_64::__mmask16;
    let mut j0 = 0;
    while j0 < n {
        let width = (n - j0).min(64);
        let masks: [__mmask16; 4] = std::array::from_fn(|v| match width.saturating_sub(16 * v) {
            0 => 0,
            w if w >= 16 => 0xffff,
            w => ((1u32 << w) - 1) as __mmask16,
        });
        let mut r0 = 0;
        while r0 < m {
            let rows = (m - r0).min(6);
            // SAFETY: rows r0.. of a and c, columns j0.. of b and c, inside their extents.
            let (a, b, c) = unsafe { (a.add(r0 * k), b.add(j0), c.add(r0 * n + j0)) };
            let p = (a, b, c, (k, n), masks);
            // SAFETY: as above.
            unsafe {
                match rows {
                    6 => block::<6>(p),
                    5 => block::<5>(p),
                    4 => block::<4>(p),
                    3 => block::<3>(p),
                    2 => block::<2>(p),
                    _ => block::<1>(p),
                }
            }
            r0 += rows;
        }
        j0 += width;
    }
}

/// R rows x 64 columns of [`gemm_avx512`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn block<const R: usize>(
    (a, b, c, (k, n), masks): (
        *const f32,
        *const f32,
        *mut f32,
        (usize, usize),
        [std::arch::x86_64::__mmask16; 4],
    ),
) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm512_setzero_ps(); 4]; R];
    for kk in 0..k {
        // SAFETY: row kk of b, its masked columns; a's rows r, column kk.
        unsafe {
            let row = b.add(kk * n);
            let bv: [__m512; 4] =
                std::array::from_fn(|v| _mm512_maskz_loadu_ps(masks[v], row.add(16 * v)));
            for (r, acc) in acc.iter_mut().enumerate() {
                let av = _mm512_set1_ps(*a.add(r * k + kk));
                for v in 0..4 {
                    acc[v] = _mm512_fmadd_ps(av, bv[v], acc[v]);
                }
            }
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        for (v, &acc) in acc.iter().enumerate() {
            // SAFETY: row r of c, its masked columns.
            unsafe { _mm512_mask_storeu_ps(c.add(r * n + 16 * v), masks[v], acc) };
        }
    }
}

/// [`gemm_avx512`]'s AVX2+FMA twin for CPUs without AVX-512: blocks of 6 rows x 16 columns (12
/// ymm accumulators), no packing; the columns past the last whole 16 go to the `gemm` crate.
///
/// SAFETY: the CPU has AVX2 and FMA; as [`gemm_avx512`] otherwise.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
pub unsafe fn gemm_avx2(
    (m, n, k): (usize, usize, usize), a: *const f32, b: *const f32, c: *mut f32,
) {
    let whole = n / 16 * 16;
    let mut j0 = 0;
    while j0 < whole {
        let mut r0 = 0;
        while r0 < m {
            let rows = (m - r0).min(6);
            // SAFETY: rows r0.. of a and c, columns j0..j0 + 16 of b and c, inside their
            // extents.
            let p = unsafe { (a.add(r0 * k), b.add(j0), c.add(r0 * n + j0), (k, n)) };
            // SAFETY: as above.
            unsafe {
                match rows {
                    6 => block_avx2::<6>(p),
                    5 => block_avx2::<5>(p),
                    4 => block_avx2::<4>(p),
                    3 => block_avx2::<3>(p),
                    2 => block_avx2::<2>(p),
                    _ => block_avx2::<1>(p),
                }
            }
            r0 += rows;
        }
        j0 += 16;
    }
    if whole < n {
        let (lhs, rhs) = (Operand(a, k, 1), Operand(unsafe { b.add(whole) }, n, 1));
        // SAFETY: the last n − whole columns of b and c.
        unsafe { gemm_here((m, n - whole, k), c.add(whole), n, false, lhs, rhs, 1.0) };
    }
}

/// R rows x 16 columns of [`gemm_avx2`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn block_avx2<const R: usize>(
    (a, b, c, (k, n)): (*const f32, *const f32, *mut f32, (usize, usize)),
) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm256_setzero_ps(); 2]; R];
    for kk in 0..k {
        // SAFETY: row kk of b, its 16 columns; a's rows r, column kk.
        unsafe {
            let row = b.add(kk * n);
            let bv = [_mm256_loadu_ps(row), _mm256_loadu_ps(row.add(8))];
            for (r, acc) in acc.iter_mut().enumerate() {
                let av = _mm256_set1_ps(*a.add(r * k + kk));
                acc[0] = _mm256_fmadd_ps(av, bv[0], acc[0]);
                acc[1] = _mm256_fmadd_ps(av, bv[1], acc[1]);
            }
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        // SAFETY: row r of c, its 16 columns.
        unsafe {
            _mm256_storeu_ps(c.add(r * n), acc[0]);
            _mm256_storeu_ps(c.add(r * n + 8), acc[1]);
        }
    }
}
