//! The sparse path of the tied SAE: decoder and backward products over active features
//! only, exact and in fixed memory.
//!
//! After the encoder (a dense GEMM with the bias-ReLU epilogue) most codes of a row are
//! exactly zero. A zero code contributes nothing to `X̂ = C·M` nor to `Cᵀ·G`, and its
//! code gradient is masked to zero, so it contributes nothing to `dPreᵀ·X` or `db`
//! either. The sparse path therefore works row by row on the list of active features
//! `A(r) = { j : c[r, j] > 0 }` (NaN codes are kept in the list so that they propagate
//! as on the dense path):
//!
//! ```text
//! x̂_r      = Σ_{j∈A(r)} c[r,j]·M[j]                      (gather rows of M, SIMD axpy)
//! g_r      = (2/n)·(x̂_r − x_r)
//! dpre[r,j] = g_r·M[j] + α/n    for j ∈ A(r) with c > 0   (SIMD dot), else 0
//! dM[j]   += c[r,j]·g_r + dpre[r,j]·x_r                   (one fused SIMD pass)
//! db[j]   += dpre[r,j]
//! ```
//!
//! The only memory it needs is one row's index list (`h` slots), which lives in scratch
//! the dense path already has; indices are stored in `f32` slots as exact integers,
//! which limits the sparse path to `h ≤` [`SPARSE_MAX_H`].
//!
//! [`Path`] selects the implementation; [`Path::Auto`] measures each row block's
//! density after the encoder and goes sparse at or below [`SPARSE_CROSSOVER`].

use super::params::Dims;
use crate::error::{Error, Result};
use crate::kernels::vector;
use wide::f32x8;

/// Which implementation computes the decoder and the backward products.
///
/// Both give the same results up to f32 rounding (they sum in different orders); the
/// encoder is the same dense GEMM on both.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Path {
    /// Per row block, measure the fraction of active codes after the encoder and take
    /// the sparse path when it is at most [`SPARSE_CROSSOVER`] (and `h ≤`
    /// [`SPARSE_MAX_H`]), otherwise the dense one.
    #[default]
    Auto,
    /// Always the dense GEMMs.
    Dense,
    /// Always the sparse path (requires `h ≤` [`SPARSE_MAX_H`]).
    Sparse,
}

/// The density (active codes / codes of a row block) at or below which [`Path::Auto`]
/// takes the sparse path.
///
/// Measured with `cargo run --release --example bench_sparse` on an x86-64 core with
/// AVX2 (see the README's "Sparse path" section): at (n, d, h) = (4096, 512, 4096) the
/// sparse step stays faster than the dense one up to about 15–20 % density and at
/// (1024, 768, 16384) up to about 8–12 %; `Auto` switches a little early because a
/// sparse block's cost grows with the density while a dense block's does not.
pub const SPARSE_CROSSOVER: f32 = 0.08;

/// The largest `h` the sparse path supports: feature indices are kept in `f32`
/// scratch slots, which represent every integer up to `2^24` exactly.
pub const SPARSE_MAX_H: usize = 1 << 24;

const LANES: usize = 8;

#[inline(always)]
fn load(chunk: &[f32]) -> f32x8 {
    let arr: [f32; LANES] = chunk.try_into().unwrap_or([0.0; LANES]);
    f32x8::new(arr)
}

/// Reject [`Path::Sparse`] for models too wide for it.
pub(crate) fn check_path(path: Path, dims: Dims) -> Result<()> {
    if path == Path::Sparse && dims.h > SPARSE_MAX_H {
        return Err(Error::OutOfRange {
            arg: "path",
            allowed: "Path::Sparse needs h <= 2^24",
        });
    }
    Ok(())
}

/// Is a code active: `> 0`, or NaN (kept so that it propagates)?
#[inline(always)]
fn is_active(v: f32) -> bool {
    v > 0.0 || v.is_nan()
}

/// The number of active codes (`> 0` or NaN: everything that is not `≤ 0`).
#[must_use]
pub(crate) fn count_active(codes: &[f32]) -> usize {
    let chunks = codes.chunks_exact(LANES);
    let tail = chunks.remainder();
    let mut n = 0usize;
    for c in chunks {
        let off = load(c).simd_le(f32x8::ZERO).to_bitmask() & 0xFF;
        n += LANES - off.count_ones() as usize;
    }
    n + tail.iter().filter(|&&v| is_active(v)).count()
}

/// Whether a block of `rows×h` codes with `active` active codes goes sparse.
#[must_use]
pub(crate) fn use_sparse(path: Path, active: usize, rows: usize, h: usize) -> bool {
    match path {
        Path::Dense => false,
        Path::Sparse => true,
        Path::Auto => {
            h <= SPARSE_MAX_H && (active as f64) <= f64::from(SPARSE_CROSSOVER) * (rows * h) as f64
        }
    }
}

/// Write the indices of the active codes of one row (ascending, as exact `f32`
/// integers) to the front of `idx` (`idx.len() ≥ row.len()`); return their number.
pub(crate) fn collect_row(row: &[f32], idx: &mut [f32]) -> usize {
    let mut k = 0usize;
    let chunks = row.chunks_exact(LANES);
    let tail = chunks.remainder();
    for (ci, c) in chunks.enumerate() {
        let mut on = !load(c).simd_le(f32x8::ZERO).to_bitmask() & 0xFF;
        let base = ci * LANES;
        while on != 0 {
            idx[k] = (base + on.trailing_zeros() as usize) as f32;
            k += 1;
            on &= on - 1;
        }
    }
    let base = row.len() - tail.len();
    for (t, &v) in tail.iter().enumerate() {
        if is_active(v) {
            idx[k] = (base + t) as f32;
            k += 1;
        }
    }
    k
}

/// `recon ← Σ_{j ∈ idx} codes[j]·M[j]` for one row (`recon.len() == d`).
pub(crate) fn decode_row(m: &[f32], d: usize, codes: &[f32], idx: &[f32], recon: &mut [f32]) {
    recon.fill(0.0);
    for &jf in idx {
        let j = jf as usize;
        vector::axpy(codes[j], &m[j * d..(j + 1) * d], recon);
    }
}

/// `z ← z + a·x + b·y` over the common length, one pass over `z`.
fn axpy2(a: f32, x: &[f32], b: f32, y: &[f32], z: &mut [f32]) {
    let n = x.len().min(y.len()).min(z.len());
    let (x, y, z) = (&x[..n], &y[..n], &mut z[..n]);
    let (av, bv) = (f32x8::splat(a), f32x8::splat(b));
    let mut cz = z.chunks_exact_mut(LANES);
    let mut cx = x.chunks_exact(LANES);
    let mut cy = y.chunks_exact(LANES);
    for ((zc, xc), yc) in (&mut cz).zip(&mut cx).zip(&mut cy) {
        let r = bv.mul_add(load(yc), av.mul_add(load(xc), load(zc)));
        zc.copy_from_slice(&r.to_array());
    }
    let tails = cx.remainder().iter().zip(cy.remainder());
    for (zv, (xv, yv)) in cz.into_remainder().iter_mut().zip(tails) {
        *zv = (*zv + a * xv) + b * yv;
    }
}

/// The gradient contributions of one row on the sparse path:
/// for each active `j`, `dpre = g·M[j] + add` (0 unless `codes[j] > 0`),
/// `dM[j] += codes[j]·g + dpre·x`, `db[j] += dpre`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn grad_row(
    m: &[f32],
    d: usize,
    codes: &[f32],
    idx: &[f32],
    g: &[f32],
    x: &[f32],
    add: f32,
    dm: &mut [f32],
    db: &mut [f32],
) {
    for &jf in idx {
        let j = jf as usize;
        let c = codes[j];
        let row = j * d..(j + 1) * d;
        let dpre = if c > 0.0 {
            vector::dot(g, &m[row.clone()]) + add
        } else {
            0.0
        };
        axpy2(c, g, dpre, x, &mut dm[row]);
        db[j] += dpre;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_and_collect_agree_with_scalar() {
        let mut row = [0.0f32; 37];
        for (i, v) in row.iter_mut().enumerate() {
            *v = match i % 5 {
                0 => 1.0 + i as f32,
                1 => -0.0,
                2 => -1.0,
                3 if i == 13 => f32::NAN,
                _ => 0.0,
            };
        }
        let mut idx = [f32::NAN; 37];
        let k = collect_row(&row, &mut idx);
        let mut want = (0..37).filter(|&i| is_active(row[i]));
        for &f in &idx[..k] {
            assert_eq!(Some(f as usize), want.next());
        }
        assert_eq!(want.next(), None);
        assert_eq!(count_active(&row), k);
        let got = &idx[..k];
        assert!(got.contains(&13.0), "NaN codes are kept");
    }

    #[test]
    fn axpy2_matches_scalar() {
        let x: [f32; 19] = core::array::from_fn(|i| i as f32);
        let y: [f32; 19] = core::array::from_fn(|i| 1.0 - i as f32);
        let mut z = [2.0f32; 19];
        axpy2(0.5, &x, 2.0, &y, &mut z);
        for (i, &v) in z.iter().enumerate() {
            assert_eq!(v, 2.0 + 0.5 * i as f32 + 2.0 * (1.0 - i as f32));
        }
    }

    #[test]
    fn auto_uses_the_crossover() {
        assert!(use_sparse(Path::Auto, 0, 4, 100));
        assert!(!use_sparse(Path::Auto, 400, 4, 100));
        assert!(!use_sparse(Path::Dense, 0, 4, 100));
        assert!(use_sparse(Path::Sparse, 400, 4, 100));
    }
}
