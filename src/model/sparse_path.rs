//! The sparse path of the tied SAE: decoder and backward products over active features
//! only, exact and in fixed memory.
//!
//! After the encoder (a dense GEMM with the bias-ReLU epilogue) most codes of a row are
//! exactly zero. A zero code contributes nothing to `X̂ = C·M` nor to `Cᵀ·G`, and its
//! code gradient is masked to zero, so it contributes nothing to `dPreᵀ·X` or `db`
//! either. The sparse path therefore works on the active features
//! `A(r) = { j : c[r, j] > 0 }` of each row only (NaN codes are kept so that they
//! propagate as on the dense path):
//!
//! ```text
//! x̂_r      = Σ_{j∈A(r)} c[r,j]·M[j]                      (gather rows of M, SIMD axpy)
//! g_r      = (2/n)·(x̂_r − x_r)
//! dpre[r,j] = g_r·M[j] + α/n    for j ∈ A(r) with c > 0   (SIMD dot), else 0
//! dM[j]   += c[r,j]·g_r + dpre[r,j]·x_r                   (one fused SIMD pass)
//! db[j]   += dpre[r,j]
//! ```
//!
//! ## Memory and order
//! In the backward pass, consecutive sparse row blocks form a *super-block*: after each
//! block's encoder GEMM its active codes are appended as `(row, feature, code)`
//! triples; when the area is full (or a dense block or the batch's end comes), the
//! entries are grouped by feature with a counting sort and the formulas above run
//! feature by feature, so each touched row of `M` and `dM` is loaded once per
//! super-block however many rows use it. The area is the scratch the dense path uses
//! for `dPre` and the residuals (`rows·(h + d)`): a super-block of `R` rows with `z`
//! active codes needs `5z + h + R·d`. A single block too dense for that falls back to
//! grouping within the block (`build_columns`) or to row by row (`decode_row`,
//! `grad_row`). The forward pass decodes row by row (`h` extra scratch slots for one
//! row's index list). Every row's reconstruction sums its features in ascending order
//! with the same `axpy` on every route, so `forward` and `loss_and_grad` report the
//! same loss bits. Indices are stored in `f32` slots as exact integers, which limits
//! the sparse path to `h ≤` [`SPARSE_MAX_H`].
//!
//! [`Path`] selects the implementation; [`Path::Auto`] measures each row block's
//! density after the encoder and goes sparse at or below [`SPARSE_CROSSOVER`].

use super::params::Dims;
use crate::error::{Error, Result};
use crate::kernels::dispatch_vector::{axpy, axpy2, dot};
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
/// Measured with `cargo run --release --example bench_sparse` (training step, one
/// x86-64 core with AVX-512; see the README's "Sparse path" section): the sparse step
/// is as fast as the dense one at about 14–15 % density at both (n, d, h) =
/// (4096, 512, 4096) and (1024, 768, 16384) (1.3–1.4× faster at 10 %, 0.8× at 20 %).
/// `Auto` switches a little earlier because a sparse block's cost grows with its
/// density while a dense block's does not. The same threshold decides the decoder in
/// [`super::forward::forward`].
pub const SPARSE_CROSSOVER: f32 = 0.12;

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

/// Call `f(j)` for each active code `row[j]` (`> 0` or NaN), `j` ascending.
#[inline(always)]
fn each_active(row: &[f32], mut f: impl FnMut(usize)) {
    let chunks = row.chunks_exact(LANES);
    let tail = chunks.remainder();
    for (ci, c) in chunks.enumerate() {
        let mut on = !load(c).simd_le(f32x8::ZERO).to_bitmask() & 0xFF;
        let base = ci * LANES;
        while on != 0 {
            f(base + on.trailing_zeros() as usize);
            on &= on - 1;
        }
    }
    let base = row.len() - tail.len();
    for (t, &v) in tail.iter().enumerate() {
        if is_active(v) {
            f(base + t);
        }
    }
}

/// Write the indices of the active codes of one row (ascending, as exact `f32`
/// integers) to the front of `idx` (`idx.len() ≥ row.len()`); return their number.
pub(crate) fn collect_row(row: &[f32], idx: &mut [f32]) -> usize {
    let mut k = 0usize;
    each_active(row, |j| {
        idx[k] = j as f32;
        k += 1;
    });
    k
}

/// `recon ← Σ_{j ∈ idx} codes[j]·M[j]` for one row (`recon.len() == d`).
pub(crate) fn decode_row(m: &[f32], d: usize, codes: &[f32], idx: &[f32], recon: &mut [f32]) {
    recon.fill(0.0);
    for &jf in idx {
        let j = jf as usize;
        axpy(codes[j], &m[j * d..(j + 1) * d], recon);
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
            dot(g, &m[row.clone()]) + add
        } else {
            0.0
        };
        axpy2(c, g, dpre, x, &mut dm[row]);
        db[j] += dpre;
    }
}

/// The active codes of a row block, grouped by feature (CSC), built in `work` by a
/// counting sort: `work = [end: h][tmp: h][rows: nnz][codes: nnz]`, where column `j`'s
/// entries are `end[j−1]..end[j]` (row index and code), rows ascending. Every integer
/// is stored exactly in an `f32` slot.
///
/// Grouping by feature loads each active row of `M` (and `dM`) once per block instead
/// of once per active code. `nnz` is [`count_active`] of the block. Returns `nnz`, or
/// `None` (nothing usable written) if the entries do not fit in `work` or their count
/// is not exact in `f32`.
pub(crate) fn build_columns(
    codes: &[f32],
    rows: usize,
    h: usize,
    nnz: usize,
    work: &mut [f32],
) -> Option<usize> {
    let need = nnz.checked_mul(2)?.checked_add(2 * h)?;
    if need > work.len() || nnz >= SPARSE_MAX_H || h > SPARSE_MAX_H {
        return None;
    }
    let (end, rest) = work.split_at_mut(h);
    let (tmp, rest) = rest.split_at_mut(h);
    let (ent_r, rest) = rest.split_at_mut(nnz);
    let ent_c = &mut rest[..nnz];
    end.fill(0.0);
    for row in codes.chunks_exact(h).take(rows) {
        let k = collect_row(row, tmp);
        for &jf in &tmp[..k] {
            end[jf as usize] += 1.0;
        }
    }
    // Exclusive prefix sums: end[j] becomes the start of column j.
    let mut acc = 0.0f32;
    for e in end.iter_mut() {
        let c = *e;
        *e = acc;
        acc += c;
    }
    for (r, row) in codes.chunks_exact(h).take(rows).enumerate() {
        let k = collect_row(row, tmp);
        for &jf in &tmp[..k] {
            let j = jf as usize;
            let e = end[j] as usize;
            ent_r[e] = r as f32;
            ent_c[e] = row[j];
            end[j] += 1.0;
        }
    }
    Some(nnz)
}

/// Active codes grouped by feature: column `j`'s entries (row index, code) are
/// `r[end[j−1]..end[j]]`, `c[..]` (with `end[−1] = 0`), rows ascending.
pub(crate) struct Cols<'a> {
    end: &'a [f32],
    r: &'a [f32],
    c: &'a [f32],
}

impl<'a> Cols<'a> {
    /// The CSC that [`build_columns`] wrote to `work`.
    pub(crate) fn of_block(work: &'a [f32], h: usize, nnz: usize) -> Self {
        Self {
            end: &work[..h],
            r: &work[2 * h..2 * h + nnz],
            c: &work[2 * h + nnz..2 * h + 2 * nnz],
        }
    }

    /// Call `f(j, rows, codes)` for each feature `j` with entries.
    fn each(&self, mut f: impl FnMut(usize, &[f32], &[f32])) {
        let mut start = 0usize;
        for (j, &e) in self.end.iter().enumerate() {
            let e = e as usize;
            if e > start {
                f(j, &self.r[start..e], &self.c[start..e]);
            }
            start = e;
        }
    }

    /// `recon ← codes·M` (`recon` is `rows×d`). Each row's sum runs over ascending
    /// features with the same `axpy` as [`decode_row`], so both give the same bits.
    pub(crate) fn decode(&self, m: &[f32], d: usize, recon: &mut [f32]) {
        recon.fill(0.0);
        self.each(|j, rs, cs| {
            let mj = &m[j * d..(j + 1) * d];
            for (&r, &c) in rs.iter().zip(cs) {
                let r = r as usize;
                axpy(c, mj, &mut recon[r * d..(r + 1) * d]);
            }
        });
    }

    /// The gradient contributions, feature by feature: for each entry `(r, c)` of
    /// column `j`, `dpre = g_r·M[j] + add` (0 unless `c > 0`), `dM[j] += c·g_r +
    /// dpre·x_r`, `db[j] += dpre`. `g` and `x` are `rows×d`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn grad(
        &self,
        m: &[f32],
        d: usize,
        g: &[f32],
        x: &[f32],
        add: f32,
        dm: &mut [f32],
        db: &mut [f32],
    ) {
        self.each(|j, rs, cs| {
            let row = j * d..(j + 1) * d;
            let (mj, dmj) = (&m[row.clone()], &mut dm[row]);
            let mut dbj = db[j];
            for (&r, &c) in rs.iter().zip(cs) {
                let r = r as usize;
                let (gr, xr) = (&g[r * d..(r + 1) * d], &x[r * d..(r + 1) * d]);
                let dpre = if c > 0.0 { dot(gr, mj) + add } else { 0.0 };
                axpy2(c, gr, dpre, xr, dmj);
                dbj += dpre;
            }
            db[j] = dbj;
        });
    }
}

/// [`Cols::decode`] of the CSC that [`build_columns`] wrote to `work`.
pub(crate) fn decode_columns(
    m: &[f32],
    d: usize,
    h: usize,
    work: &[f32],
    nnz: usize,
    recon: &mut [f32],
) {
    Cols::of_block(work, h, nnz).decode(m, d, recon);
}

/// [`Cols::grad`] of the CSC that [`build_columns`] wrote to `work`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn grad_columns(
    m: &[f32],
    d: usize,
    h: usize,
    work: &[f32],
    nnz: usize,
    g: &[f32],
    x: &[f32],
    add: f32,
    dm: &mut [f32],
    db: &mut [f32],
) {
    Cols::of_block(work, h, nnz).grad(m, d, g, x, add, dm, db);
}

/// `f32` a super-block of `rows` rows with `nnz` active codes needs in the work area
/// of [`super_append`] and [`super_flush`]: `5·nnz + h + rows·d`, or `None` if that
/// overflows or an index would not be exact in `f32`.
#[must_use]
pub(crate) fn super_need(rows: usize, nnz: usize, d: usize, h: usize) -> Option<usize> {
    if nnz >= SPARSE_MAX_H || rows >= SPARSE_MAX_H || h > SPARSE_MAX_H {
        return None;
    }
    nnz.checked_mul(5)?
        .checked_add(h)?
        .checked_add(rows.checked_mul(d)?)
}

/// Append the active codes of a block (`rows×h`) to a super-block's entry list, as
/// `(row, feature, code)` triples at `work[3·nnz..]`, rows numbered from `row0`, in row
/// order and ascending features. Returns the new number of entries. The caller has
/// checked [`super_need`] against `work.len()`.
pub(crate) fn super_append(
    codes: &[f32],
    h: usize,
    row0: usize,
    nnz: usize,
    work: &mut [f32],
) -> usize {
    let mut e = 3 * nnz;
    for (r, row) in codes.chunks_exact(h).enumerate() {
        let rf = (row0 + r) as f32;
        each_active(row, |j| {
            work[e] = rf;
            work[e + 1] = j as f32;
            work[e + 2] = row[j];
            e += 3;
        });
    }
    e / 3
}

/// Finish a super-block of `rows` rows (inputs `x`, `rows×d`) whose `nnz` entries
/// [`super_append`] wrote to `work`: group them by feature (counting sort), decode,
/// add each row's `‖x − x̂‖²` to `sq_sum` in row order, form `G = scale·(x̂ − x)` and
/// accumulate `dM` and `db` feature by feature (see [`grad_columns`]).
#[allow(clippy::too_many_arguments)]
pub(crate) fn super_flush(
    m: &[f32],
    d: usize,
    h: usize,
    x: &[f32],
    rows: usize,
    nnz: usize,
    work: &mut [f32],
    scale: f32,
    add: f32,
    sq_sum: &mut f64,
    dm: &mut [f32],
    db: &mut [f32],
) {
    let (coo, rest) = work.split_at_mut(3 * nnz);
    let (end, rest) = rest.split_at_mut(h);
    let (ent_r, rest) = rest.split_at_mut(nnz);
    let (ent_c, rest) = rest.split_at_mut(nnz);
    let g = &mut rest[..rows * d];
    end.fill(0.0);
    for t in coo.chunks_exact(3) {
        end[t[1] as usize] += 1.0;
    }
    let mut acc = 0.0f32;
    for e in end.iter_mut() {
        let c = *e;
        *e = acc;
        acc += c;
    }
    for t in coo.chunks_exact(3) {
        let j = t[1] as usize;
        let e = end[j] as usize;
        ent_r[e] = t[0];
        ent_c[e] = t[2];
        end[j] += 1.0;
    }
    let cols = Cols {
        end,
        r: ent_r,
        c: ent_c,
    };
    cols.decode(m, d, g);
    for (gr, xr) in g.chunks_exact_mut(d).zip(x.chunks_exact(d)) {
        *sq_sum += f64::from(vector::sum_sq_diff(xr, gr));
        vector::sub_scale_inplace(scale, gr, xr);
    }
    cols.grad(m, d, g, x, add, dm, db);
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
    fn columns_agree_with_rows() {
        // A 5×11 block (d = 6) with ~30 % active codes, a NaN, and a -0.
        const R: usize = 5;
        const H: usize = 11;
        const D: usize = 6;
        let v = |i: usize| ((i * 37 + 11) % 23) as f32 / 23.0 - 0.5;
        let codes: [f32; R * H] = core::array::from_fn(|i| match i {
            7 => f32::NAN,
            8 => -0.0,
            _ if v(i) > 0.2 => v(i),
            _ => 0.0,
        });
        let m: [f32; H * D] = core::array::from_fn(|i| v(i + 100));
        let x: [f32; R * D] = core::array::from_fn(|i| v(i + 300));
        let mut work = [f32::NAN; R * H];
        let nnz = build_columns(&codes, R, H, count_active(&codes), &mut work).expect("fits");
        assert_eq!(nnz, count_active(&codes));
        let mut rec_c = [f32::NAN; R * D];
        decode_columns(&m, D, H, &work, nnz, &mut rec_c);
        let mut rec_r = [f32::NAN; R * D];
        let mut idx = [0.0; H];
        for r in 0..R {
            let c = &codes[r * H..(r + 1) * H];
            let k = collect_row(c, &mut idx);
            decode_row(&m, D, c, &idx[..k], &mut rec_r[r * D..(r + 1) * D]);
        }
        for (a, b) in rec_c.iter().zip(&rec_r) {
            assert_eq!(a.to_bits(), b.to_bits(), "same order, same bits");
        }
        // Gradients with a finite g (the NaN code poisons its own dM row on both).
        let g: [f32; R * D] = core::array::from_fn(|i| v(i + 500));
        let (mut dm_c, mut db_c) = ([0.0f32; H * D], [0.0f32; H]);
        grad_columns(&m, D, H, &work, nnz, &g, &x, 0.25, &mut dm_c, &mut db_c);
        let (mut dm_r, mut db_r) = ([0.0f32; H * D], [0.0f32; H]);
        for r in 0..R {
            let c = &codes[r * H..(r + 1) * H];
            let k = collect_row(c, &mut idx);
            let (gr, xr) = (&g[r * D..(r + 1) * D], &x[r * D..(r + 1) * D]);
            grad_row(&m, D, c, &idx[..k], gr, xr, 0.25, &mut dm_r, &mut db_r);
        }
        for (a, b) in dm_c.iter().chain(&db_c).zip(dm_r.iter().chain(&db_r)) {
            assert!(a.is_nan() == b.is_nan() && (a.is_nan() || (a - b).abs() <= 1e-6));
        }
        let nan_row = &dm_c[7 * D..8 * D];
        assert!(
            nan_row.iter().all(|v| v.is_nan()),
            "code (0, 7) is NaN: so is dM row 7"
        );
        // Too little room: None.
        let nnz = count_active(&codes);
        assert_eq!(build_columns(&codes, R, H, nnz, &mut work[..2 * H]), None);
    }

    #[test]
    fn auto_uses_the_crossover() {
        assert!(use_sparse(Path::Auto, 0, 4, 100));
        assert!(!use_sparse(Path::Auto, 400, 4, 100));
        assert!(!use_sparse(Path::Dense, 0, 4, 100));
        assert!(use_sparse(Path::Sparse, 400, 4, 100));
    }
}
