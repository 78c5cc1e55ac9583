//! Listed entries of a product `A·B`, with the packed kernels' exact arithmetic.
//!
//! The TopK encoder's screen ([`crate::model`]) finds, for each row, a few candidate
//! columns from a bf16 product; their exact values must then be the very bits that
//! [`super::gemm`] would have produced, so that the screened encoder's codes equal the
//! plain one's bit for bit. Every packed FMA micro-kernel computes an entry as one
//! fused multiply-add chain per block of [`KC`] rows of B, `p` ascending from `+0`,
//! each block after the first added to the stored value (`c + s`, β = 1), then the
//! epilogue. [`sampled`] follows that order entry by entry.

use super::{KC, MatRef, pack_panels};
use crate::kernels::isa::Avx512;
use crate::kernels::isa::x86::{SAMPLED_LANES, SAMPLED_PASS};

/// `f32` [`sampled`] needs beside its lists for a `k×n` B with rows contiguous: the
/// `n×SAMPLED_PASS` transposed rows of one pass. (Contiguous columns, `b.rs == 1` as
/// in a tied dictionary's `Mᵀ`, are read in place and need none.)
pub(crate) const fn sampled_scratch(n: usize) -> usize {
    n.saturating_mul(SAMPLED_PASS)
}

/// Pad each row's list (`cols[i·cap..][..counts[i]]`, non-empty rows) to a multiple
/// of [`SAMPLED_LANES`] by repeating its last column, as [`sampled`] needs;
/// `false` if that exceeds `cap`.
pub(crate) fn pad((cols, counts, cap): (&mut [u32], &[u32], usize)) -> bool {
    for (i, &c) in counts.iter().enumerate() {
        let c = c as usize;
        let to = c.next_multiple_of(SAMPLED_LANES);
        if to > cap || c == 0 && to > 0 {
            return false;
        }
        if c > 0 {
            let last = cols[i * cap + c - 1];
            cols[i * cap + c..i * cap + to].fill(last);
        }
    }
    true
}

/// `out[i·cap + q] = Σ_p a[i, p]·b[p, j]` for the listed columns `j = cols[i·cap + q]`
/// (`q < counts[i]`, each list padded with repeats of its columns to a multiple of
/// [`SAMPLED_LANES`], at most `cap`; see [`pad`]) of each row `i` of A, with the
/// rounding of [`super::gemm`]'s packed kernels (α = 1, β = 0, no epilogue): see the
/// module documentation. A is row-major (`a.cs == 1`). `acc` (the size of `out`) is
/// used only when `a.cols > KC`; `bt` holds [`sampled_scratch`]`(n)` (used only when
/// `b.rs != 1`).
///
/// With B's columns contiguous, each listed entry reads its column's run of a `KC`
/// block in place. Otherwise each pass over [`SAMPLED_PASS`] steps of the sums first
/// transposes those rows of B into `bt` (so each listed entry reads one short run),
/// then runs every row's listed entries through them.
///
/// Returns `false` (and computes nothing) if the lists or shapes do not fit.
#[allow(clippy::too_many_arguments)]
pub(crate) fn sampled(
    t: Avx512,
    a: MatRef<'_>,
    b: MatRef<'_>,
    (cols, counts, cap): (&[u32], &[u32], usize),
    out: &mut [f32],
    acc: &mut [f32],
    bt: &mut [f32],
) -> bool {
    let (rows, k, n) = (counts.len(), a.cols, b.cols);
    let fits = a.cs == 1
        && a.rows >= rows
        && b.rows == k
        && cols.len() >= rows * cap
        && out.len() >= rows * cap
        && (k <= KC || acc.len() >= rows * cap)
        && (b.rs == 1 || bt.len() >= sampled_scratch(n))
        && (0..rows).all(|i| {
            let c = (counts[i] as usize).next_multiple_of(SAMPLED_LANES);
            c <= cap && cols[i * cap..i * cap + c].iter().all(|&j| (j as usize) < n)
        });
    if !fits || k == 0 || rows == 0 {
        return false;
    }
    let a_data = &a.data[..(rows - 1) * a.rs + k];
    for pc in (0..k).step_by(KC) {
        let kc = KC.min(k - pc);
        let dst = if pc == 0 { &mut *out } else { &mut *acc };
        if b.rs == 1 {
            // Columns contiguous (B = Mᵀ): each listed entry reads its column's whole
            // run of the block in place, one pass. (Passes of `SAMPLED_PASS` steps
            // over a transposed copy cost a TLB miss per column per pass, M's rows
            // being `d` floats apart: at (1024, 768, 16384) that copy took as long as
            // the FMAs.)
            t.sampled_pass(
                (a_data, a.rs),
                (&b.data[pc..], b.cs),
                (pc, kc),
                true,
                (cols, counts, cap),
                dst,
            );
        }
        for p0 in (pc..pc + kc).step_by(SAMPLED_PASS).filter(|_| b.rs != 1) {
            let np = SAMPLED_PASS.min(pc + kc - p0);
            // `bt[j·SAMPLED_PASS + t] = b[p0 + t, j]`: the GEMM's panel packing of Bᵀ
            // (all `n` of its rows, columns `p0..p0 + np`, one panel `SAMPLED_PASS`
            // wide), which transposes a row-major B with the token's AVX shuffles.
            pack_panels(t, &b.t(), 0, n, p0, np, SAMPLED_PASS, bt);
            t.sampled_pass(
                (a_data, a.rs),
                (bt, SAMPLED_PASS),
                (p0, np),
                p0 == pc,
                (cols, counts, cap),
                dst,
            );
        }
        if pc > 0 {
            for (i, &c) in counts.iter().enumerate() {
                let r = i * cap..i * cap + c as usize;
                for (o, &s) in out[r.clone()].iter_mut().zip(&acc[r]) {
                    *o += s;
                }
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::gemm::{Epilogue, MatMut, gemm_with, pack_len, test_fill};
    use crate::kernels::isa::Kernel;
    use std::vec;
    use std::vec::Vec;

    /// Every listed entry equals the packed product's entry bit for bit, with `k`
    /// below, at and above `KC` (one, one, two blocks), B row-major (SAELens'
    /// `W_enc`) and B = Mᵀ (a tied dictionary), under both FMA kernels.
    #[test]
    fn sampled_entries_are_the_gemm_bits() {
        let Some(t) = crate::kernels::isa::x86::avx512() else {
            std::eprintln!("no AVX-512F: sampled entries not tested");
            return;
        };
        for &(m, k, n) in &[(9, 37, 70), (40, 768, 300), (17, 1000, 129), (5, 1536, 64)] {
            let a = test_fill(m * k, 1);
            let w = test_fill(k * n, 2);
            for transposed in [false, true] {
                let (b, bt);
                let bm = if transposed {
                    // B = Mᵀ for a row-major M (n×k).
                    bt = (0..n * k)
                        .map(|q| w[(q % k) * n + q / k])
                        .collect::<Vec<f32>>();
                    MatRef::row_major("m", &bt, n, k).unwrap().t()
                } else {
                    b = w.clone();
                    MatRef::row_major("b", &b, k, n).unwrap()
                };
                for kern in [Kernel::Avx512, Kernel::Avx2] {
                    let mut c = vec![0.0f32; m * n];
                    let mut pack = vec![0.0f32; pack_len(m, n, k)];
                    gemm_with(
                        kern,
                        1.0,
                        MatRef::row_major("a", &a, m, k).unwrap(),
                        bm,
                        0.0,
                        MatMut::row_major("c", &mut c, m, n).unwrap(),
                        Epilogue::None,
                        &mut pack,
                    )
                    .unwrap();
                    // Each row lists a scattered subset of columns, ascending, and
                    // row 1 none at all.
                    let cap = (n.div_ceil(3) + 1).next_multiple_of(SAMPLED_LANES);
                    let mut cols = vec![0u32; m * cap];
                    let mut counts = vec![0u32; m];
                    for i in 0..m {
                        if i == 1 {
                            continue;
                        }
                        let mut q = 0;
                        for j in (i % 3..n).step_by(3) {
                            cols[i * cap + q] = j as u32;
                            q += 1;
                        }
                        counts[i] = q as u32;
                    }
                    assert!(pad((&mut cols, &counts, cap)));
                    let (mut out, mut acc) = (vec![f32::NAN; m * cap], vec![0.0; m * cap]);
                    let mut bt = vec![0.0; sampled_scratch(n)];
                    let am = MatRef::row_major("a", &a, m, k).unwrap();
                    let lists = (&cols[..], &counts[..], cap);
                    assert!(sampled(t, am, bm, lists, &mut out, &mut acc, &mut bt));
                    for i in 0..m {
                        for q in 0..counts[i] as usize {
                            let j = cols[i * cap + q] as usize;
                            assert_eq!(
                                out[i * cap + q].to_bits(),
                                c[i * n + j].to_bits(),
                                "({m},{k},{n}) {kern:?} transposed={transposed} at ({i},{j})"
                            );
                        }
                    }
                }
            }
        }
    }

    /// Out-of-range columns and counts beyond the capacity are refused, not read.
    #[test]
    fn sampled_refuses_bad_lists() {
        let Some(t) = crate::kernels::isa::x86::avx512() else {
            return;
        };
        let (a, b) = (test_fill(2 * 8, 3), test_fill(8 * 5, 4));
        let am = MatRef::row_major("a", &a, 2, 8).unwrap();
        let bm = MatRef::row_major("b", &b, 8, 5).unwrap();
        const C: usize = SAMPLED_LANES;
        let mut out = vec![7.0f32; 2 * C];
        let (mut acc, mut bt) = (vec![0.0f32; 2 * C], vec![0.0f32; sampled_scratch(5)]);
        let mut cols = vec![0u32; 2 * C];
        (cols[0], cols[1], cols[C], cols[C + 1]) = (0, 4, 1, 4);
        // A count beyond the capacity; unpadded lists (a 0 past row 0's count
        // is not its last column, so `sampled` would compute the wrong entries,
        // which `pad` prevents: tested below by the values).
        assert!(!pad((&mut cols.clone(), &[2, C as u32 + 1], C)));
        assert!(pad((&mut cols, &[2, 2], C)));
        assert_eq!(cols[0], 0);
        assert!(cols[1..C].iter().all(|&j| j == 4), "{cols:?}");
        assert!(cols[C + 2..].iter().all(|&j| j == 4), "{cols:?}");
        // Column 5 of a 5-column B.
        let mut bad = cols.clone();
        bad[C + 1] = 5;
        assert!(!sampled(
            t,
            am,
            bm,
            (&bad, &[2, 2], C),
            &mut out,
            &mut acc,
            &mut bt
        ));
        assert_eq!(out, [7.0; 2 * C]);
        assert!(sampled(
            t,
            am,
            bm,
            (&cols, &[2, 2], C),
            &mut out,
            &mut acc,
            &mut bt
        ));
        let dot =
            |i: usize, j: usize| (0..8).fold(0.0f32, |s, p| a[i * 8 + p].mul_add(b[p * 5 + j], s));
        let got = [out[0], out[1], out[C], out[C + 1]].map(f32::to_bits);
        assert_eq!(
            got,
            [dot(0, 0), dot(0, 4), dot(1, 1), dot(1, 4)].map(f32::to_bits)
        );
    }
}
