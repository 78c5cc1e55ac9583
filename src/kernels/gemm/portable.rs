//! Portable micro-kernels: `wide::f32x8` (SSE2, or AVX/AVX-512 under a matching
//! `target-cpu`; NEON; wasm simd128; plain scalar code on Cortex-M) and a plain
//! scalar kernel used by tests to exercise the loop nest without SIMD.

use super::kernel::{MicroKernel, Out, Store, TILE_MAX, store_direct_from_buf};
use wide::f32x8;

/// `MR = 8` rows × `NR = 8` columns, one `f32x8` accumulator per row.
#[derive(Clone, Copy)]
pub(crate) struct Portable;

impl MicroKernel for Portable {
    const MR: usize = 8;
    const NR: usize = 8;

    #[inline(always)]
    fn tile(self, kc: usize, a: &[f32], b: &[f32], out: Out<'_>, st: &Store<'_>) {
        let mut acc = [f32x8::ZERO; 8];
        for (ap, bp) in a.chunks_exact(8).zip(b.chunks_exact(8)).take(kc) {
            let bv = f32x8::new(bp.try_into().unwrap_or([0.0; 8]));
            for (acc_i, &ai) in acc.iter_mut().zip(ap) {
                *acc_i = f32x8::splat(ai).mul_add(bv, *acc_i);
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
                store_direct_from_buf(&buf, 8, (rows, cols), c, ldc, st);
            }
        }
    }
}

/// `MR = 4` × `NR = 4` in plain `f32` (`a·b + c`, unfused): the reference path of
/// the loop nest, independent of any SIMD library.
#[derive(Clone, Copy)]
pub(crate) struct Scalar;

impl MicroKernel for Scalar {
    const MR: usize = 4;
    const NR: usize = 4;

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
                store_direct_from_buf(&buf, 4, (rows, cols), c, ldc, st);
            }
        }
    }
}
