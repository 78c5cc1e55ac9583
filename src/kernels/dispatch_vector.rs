//! Row kernels (`dot`, `axpy`, and the fused `axpy2`) with an
//! x86-64 AVX2 + FMA version chosen at run time (used by the sparse path).
//!
//! The portable versions are [`crate::kernels::vector`]'s, built on `wide`, whose SIMD
//! width is fixed at compile time: a default x86-64 build gets SSE2 without FMA. The
//! sparse path spends most of its time in these few row operations, so on x86-64 it
//! follows the GEMM's kernel choice ([`crate::kernels::gemm::selected`]): when that is
//! the AVX2 or AVX-512 kernel (the CPU has AVX2 and FMA), the functions below run
//! 256-bit FMA code; otherwise (including `SAE_KERNEL=portable` and the
//! `force-portable` feature) the portable code. Like the GEMM's, results may differ in
//! the last bits between the two; each has a fixed summation order.

use crate::kernels::vector;

/// Whether the AVX2 + FMA versions are in use.
#[cfg(target_arch = "x86_64")]
#[inline]
fn fast() -> bool {
    use crate::kernels::gemm::{Kernel, selected};
    matches!(selected(), Kernel::Avx2 | Kernel::Avx512)
}

/// Σ aᵢ bᵢ over the common length.
#[inline]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if fast() {
        // SAFETY: `fast()` is true only when the GEMM selected a kernel that needs
        // AVX2 and FMA, i.e. the CPU was detected (or built) with both.
        return unsafe { x86::dot(a, b) };
    }
    vector::dot(a, b)
}

/// y ← a·x + y over the common length.
#[inline]
pub(crate) fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if fast() {
        // SAFETY: as in `dot`.
        return unsafe { x86::axpy2(a, x, 0.0, x, y, false) };
    }
    vector::axpy(a, x, y)
}

/// z ← z + a·x + b·y over the common length, one pass over `z`.
#[inline]
pub(crate) fn axpy2(a: f32, x: &[f32], b: f32, y: &[f32], z: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if fast() {
        // SAFETY: as in `dot`.
        return unsafe { x86::axpy2(a, x, b, y, z, true) };
    }
    portable_axpy2(a, x, b, y, z)
}

fn portable_axpy2(a: f32, x: &[f32], b: f32, y: &[f32], z: &mut [f32]) {
    use wide::f32x8;
    let load = |c: &[f32]| f32x8::new(c.try_into().unwrap_or([0.0; 8]));
    let n = x.len().min(y.len()).min(z.len());
    let (x, y, z) = (&x[..n], &y[..n], &mut z[..n]);
    let (av, bv) = (f32x8::splat(a), f32x8::splat(b));
    let mut cz = z.chunks_exact_mut(8);
    let mut cx = x.chunks_exact(8);
    let mut cy = y.chunks_exact(8);
    for ((zc, xc), yc) in (&mut cz).zip(&mut cx).zip(&mut cy) {
        let r = bv.mul_add(load(yc), av.mul_add(load(xc), load(zc)));
        zc.copy_from_slice(&r.to_array());
    }
    let tails = cx.remainder().iter().zip(cy.remainder());
    for (zv, (xv, yv)) in cz.into_remainder().iter_mut().zip(tails) {
        *zv = (*zv + a * xv) + b * yv;
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use core::arch::x86_64::{
        __m256, _mm_add_ps, _mm_add_ss, _mm_cvtss_f32, _mm_movehl_ps, _mm_shuffle_ps,
        _mm256_add_ps, _mm256_castps256_ps128, _mm256_extractf128_ps, _mm256_fmadd_ps,
        _mm256_loadu_ps, _mm256_set1_ps, _mm256_setzero_ps, _mm256_storeu_ps,
    };

    /// Sum of the 8 lanes in a fixed order.
    #[target_feature(enable = "avx2,fma")]
    fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps::<1>(s, s)))
    }

    /// Σ aᵢ bᵢ: two 8-lane accumulators over 16-element steps, then 8, then a scalar tail.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (a, b) = (&a[..n], &b[..n]);
        let (mut s0, mut s1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let mut i = 0;
        while i + 16 <= n {
            // SAFETY: i + 16 ≤ n = a.len() = b.len(): both 8-wide loads at i and i + 8
            // are in bounds; `loadu` has no alignment requirement.
            unsafe {
                let pa = a.as_ptr().add(i);
                let pb = b.as_ptr().add(i);
                s0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa), _mm256_loadu_ps(pb), s0);
                s1 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(8)), _mm256_loadu_ps(pb.add(8)), s1);
            }
            i += 16;
        }
        if i + 8 <= n {
            // SAFETY: i + 8 ≤ n, as above.
            unsafe {
                let (pa, pb) = (a.as_ptr().add(i), b.as_ptr().add(i));
                s0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa), _mm256_loadu_ps(pb), s0);
            }
            i += 8;
        }
        let mut s = hsum(_mm256_add_ps(s0, s1));
        for (x, y) in a[i..].iter().zip(&b[i..]) {
            s += x * y;
        }
        s
    }

    /// z ← z + a·x (+ b·y if `two`), 8 lanes at a time, then a scalar tail.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn axpy2(a: f32, x: &[f32], b: f32, y: &[f32], z: &mut [f32], two: bool) {
        let n = x.len().min(y.len()).min(z.len());
        let (x, y, z) = (&x[..n], &y[..n], &mut z[..n]);
        let (av, bv) = (_mm256_set1_ps(a), _mm256_set1_ps(b));
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: i + 8 ≤ n ≤ the length of x, y and z; `z` is a unique borrow, so
            // the store cannot alias `x` or `y`; `loadu`/`storeu` need no alignment.
            unsafe {
                let pz = z.as_mut_ptr().add(i);
                let mut r =
                    _mm256_fmadd_ps(av, _mm256_loadu_ps(x.as_ptr().add(i)), _mm256_loadu_ps(pz));
                if two {
                    r = _mm256_fmadd_ps(bv, _mm256_loadu_ps(y.as_ptr().add(i)), r);
                }
                _mm256_storeu_ps(pz, r);
            }
            i += 8;
        }
        for ((zv, xv), yv) in z[i..].iter_mut().zip(&x[i..]).zip(&y[i..]) {
            *zv += a * xv;
            if two {
                *zv += b * yv;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_match_scalar() {
        for n in [0usize, 1, 7, 8, 9, 15, 16, 17, 33, 100] {
            let x: [f32; 100] = core::array::from_fn(|i| (i % 7) as f32 * 0.25 - 0.5);
            let y: [f32; 100] = core::array::from_fn(|i| (i % 5) as f32 * 0.5 - 1.0);
            let (x, y) = (&x[..n], &y[..n]);
            let want: f32 = x.iter().zip(y).map(|(a, b)| a * b).sum();
            assert!((dot(x, y) - want).abs() < 1e-4, "dot n={n}");
            let mut z = [1.0f32; 100];
            axpy2(2.0, x, -0.5, y, &mut z[..n]);
            for i in 0..n {
                assert_eq!(z[i], 1.0 + 2.0 * x[i] - 0.5 * y[i], "axpy2 n={n} i={i}");
            }
            let mut w = [3.0f32; 100];
            axpy(0.5, x, &mut w[..n]);
            for i in 0..n {
                assert_eq!(w[i], 3.0 + 0.5 * x[i], "axpy n={n} i={i}");
            }
            assert!(w[n..].iter().all(|&v| v == 3.0), "nothing past the end");
        }
    }
}
