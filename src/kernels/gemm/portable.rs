//! Portable micro-kernel on `wide::f32x8`: SSE2 (or AVX/AVX-512 under a matching
//! `target-cpu`), NEON, wasm simd128, and plain scalar code on Cortex-M.

use super::kernel::{MicroKernel, TILE_MAX};
use wide::f32x8;

/// `MR = 8` rows × `NR = 8` columns, one `f32x8` accumulator per row.
pub(crate) struct Portable;

impl MicroKernel for Portable {
    const MR: usize = 8;
    const NR: usize = 8;
    const NAME: &'static str = "portable-wide-8x8";

    #[inline(always)]
    fn compute(kc: usize, a: &[f32], b: &[f32], tile: &mut [f32; TILE_MAX]) {
        let mut acc = [f32x8::ZERO; 8];
        for (ap, bp) in a.chunks_exact(8).zip(b.chunks_exact(8)).take(kc) {
            let bv = f32x8::new(bp.try_into().unwrap_or([0.0; 8]));
            for (acc_i, &ai) in acc.iter_mut().zip(ap) {
                *acc_i = f32x8::splat(ai).mul_add(bv, *acc_i);
            }
        }
        for (i, v) in acc.iter().enumerate() {
            tile[i * 8..i * 8 + 8].copy_from_slice(&v.to_array());
        }
    }
}
