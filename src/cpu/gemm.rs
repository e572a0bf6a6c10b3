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
