//! The tokens that run everywhere: [`Portable`] (`wide::f32x8`: SSE2, or AVX/AVX-512
//! under a matching `target-cpu`; NEON; wasm simd128; plain code on Cortex-M) and
//! [`Scalar`] (plain `f32`, used by tests to exercise the loop nest without SIMD).

use super::{Isa, Kernel, Out, Store, TILE_MAX, store_direct_from_buf};
use crate::kernels::vector::{self, madd8};
use wide::f32x8;

/// The `wide::f32x8` token: `8×8` tiles, one `f32x8` accumulator per row. Always
/// available (its SIMD width is whatever the build's target features give).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Portable;

/// The plain-`f32` token: `4×4` tiles, `a·b + c` unfused; the reference path of the
/// loop nest, independent of any SIMD library.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Scalar;

#[inline(always)]
fn load8(c: &[f32]) -> f32x8 {
    f32x8::new(c.try_into().unwrap_or([0.0; 8]))
}

impl Isa for Portable {
    const KERNEL: Kernel = Kernel::Portable;
    type Vector = f32x8;

    #[inline(always)]
    fn hsum(self, v: f32x8) -> f32 {
        vector::hsum8(v)
    }

    #[inline(always)]
    fn tile(self, kc: usize, a: &[f32], b: &[f32], out: Out<'_>, st: &Store<'_>) {
        let mut acc = [f32x8::ZERO; 8];
        for (ap, bp) in a.chunks_exact(8).zip(b.chunks_exact(8)).take(kc) {
            let bv = load8(bp);
            for (acc_i, &ai) in acc.iter_mut().zip(ap) {
                *acc_i = madd8(f32x8::splat(ai), bv, *acc_i);
            }
        }
        let fill = |tile: &mut [f32; TILE_MAX]| {
            for (i, v) in acc.iter().enumerate() {
                tile[i * 8..i * 8 + 8].copy_from_slice(&v.to_array());
            }
        };
        match out {
            Out::Buf(t) => fill(t),
            Out::Direct { c, ldc, rows, cols } => {
                let mut buf = [0.0f32; TILE_MAX];
                fill(&mut buf);
                // SAFETY: the fields of this `Out::Direct`.
                unsafe { store_direct_from_buf(&buf, 8, (rows, cols), c, ldc, st) };
            }
        }
    }

    #[inline]
    fn dot(self, a: &[f32], b: &[f32]) -> f32 {
        vector::dot(a, b)
    }

    #[inline]
    fn axpy(self, a: f32, x: &[f32], y: &mut [f32]) {
        vector::axpy(a, x, y)
    }

    fn axpy2(self, a: f32, x: &[f32], b: f32, y: &[f32], z: &mut [f32]) {
        let n = x.len().min(y.len()).min(z.len());
        let (x, y, z) = (&x[..n], &y[..n], &mut z[..n]);
        let (av, bv) = (f32x8::splat(a), f32x8::splat(b));
        let mut cz = z.chunks_exact_mut(8);
        let mut cx = x.chunks_exact(8);
        let mut cy = y.chunks_exact(8);
        for ((zc, xc), yc) in (&mut cz).zip(&mut cx).zip(&mut cy) {
            let r = madd8(bv, load8(yc), madd8(av, load8(xc), load8(zc)));
            zc.copy_from_slice(&r.to_array());
        }
        let tails = cx.remainder().iter().zip(cy.remainder());
        for (zv, (xv, yv)) in cz.into_remainder().iter_mut().zip(tails) {
            *zv = (*zv + a * xv) + b * yv;
        }
    }
}

impl Isa for Scalar {
    const KERNEL: Kernel = Kernel::Scalar;
    type Vector = f32;

    #[inline(always)]
    fn hsum(self, v: f32) -> f32 {
        v
    }

    fn tile(self, kc: usize, a: &[f32], b: &[f32], out: Out<'_>, st: &Store<'_>) {
        let mut acc = [[0.0f32; 4]; 4];
        for (ap, bp) in a.chunks_exact(4).zip(b.chunks_exact(4)).take(kc) {
            for (row, &ai) in acc.iter_mut().zip(ap) {
                for (x, &bj) in row.iter_mut().zip(bp) {
                    *x += ai * bj;
                }
            }
        }
        let fill = |tile: &mut [f32; TILE_MAX]| {
            for (i, row) in acc.iter().enumerate() {
                tile[i * 4..i * 4 + 4].copy_from_slice(row);
            }
        };
        match out {
            Out::Buf(t) => fill(t),
            Out::Direct { c, ldc, rows, cols } => {
                let mut buf = [0.0f32; TILE_MAX];
                fill(&mut buf);
                // SAFETY: the fields of this `Out::Direct`.
                unsafe { store_direct_from_buf(&buf, 4, (rows, cols), c, ldc, st) };
            }
        }
    }

    fn dot(self, a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).fold(0.0, |s, (x, y)| s + x * y)
    }

    fn axpy(self, a: f32, x: &[f32], y: &mut [f32]) {
        for (yv, xv) in y.iter_mut().zip(x) {
            *yv += a * xv;
        }
    }

    fn axpy2(self, a: f32, x: &[f32], b: f32, y: &[f32], z: &mut [f32]) {
        for (zv, (xv, yv)) in z.iter_mut().zip(x.iter().zip(y)) {
            *zv = (*zv + a * xv) + b * yv;
        }
    }
}
