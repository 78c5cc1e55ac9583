//! The exact gradient of the tied SAE's loss, in fixed memory.
//!
//! With `G = (2/n)·(X̂ − X)` and `mask = [pre > 0]` (so relu'(0) = 0, as `jax.grad`):
//!
//! ```text
//! dPre = (G·Mᵀ + α/n) ⊙ mask          (n×h)
//! dM   = Cᵀ·G + dPreᵀ·X                (h×d: M is both decoder and encoder)
//! db   = Σ_rows dPre                   (h)
//! ```
//!
//! Rows are processed in blocks; `dM` and `db` accumulate across blocks, so scratch
//! does not grow with `n`. `C > 0` exactly where `pre > 0`, so the mask is read from
//! the codes and the pre-activations are never stored.
//!
//! Each row block runs either the dense GEMMs above or the sparse path of
//! [`super::sparse_path`] (the same formulas restricted to active features), as
//! [`Path`] chooses.

use super::forward::{LossParts, Sums, block_stats, check_batch, decode_block, encode_block};
use super::params::{Dims, TiedParams, TiedParamsMut};
use super::sparse_path::{self, Path};
use super::workspace::{block_rows_for, grad_scratch_len};
#[cfg(doc)]
use crate::error::Error;
use crate::error::{Result, check_finite};
use crate::kernels::gemm::{Epilogue, MatMut, MatRef, gemm};
use crate::kernels::vector;

/// Loss and exact gradients `dL/dM`, `dL/db` of a batch.
///
/// - `x`: `n×d` row-major; `alpha`: the L1 coefficient α (finite).
/// - `grads`: receives `dL/dM` (`h×d`) and `dL/db` (`h`); overwritten, never read,
///   so it need not be zeroed.
/// - `scratch`: at least [`grad_scratch_len`]`(dims, 1)` `f32` (see
///   [`crate::model::workspace`]).
///
/// Each row block takes the dense or the sparse path as [`Path::Auto`] chooses; see
/// [`loss_and_grad_with`] to choose explicitly.
///
/// # Errors
/// [`Error::Dimension`] if `n == 0` or `grads` has other dimensions than the model;
/// [`Error::NonFinite`] for `alpha`; [`Error::Length`] for `x`;
/// [`Error::WorkspaceTooSmall`] for `scratch`. Nothing is written on error.
pub fn loss_and_grad(
    p: TiedParams<'_>,
    x: &[f32],
    n: usize,
    alpha: f32,
    grads: TiedParamsMut<'_>,
    scratch: &mut [f32],
) -> Result<LossParts> {
    loss_and_grad_with(p, x, n, alpha, grads, scratch, Path::Auto)
}

/// [`loss_and_grad`] with an explicit choice of implementation (`path`; see [`Path`]).
///
/// On the sparse path the encoder is still the dense GEMM; decoding, the code gradient,
/// both weight-gradient products and the bias gradient touch only the active features
/// (see [`super::sparse_path`]). Same scratch as [`loss_and_grad`].
///
/// A code that is exactly zero contributes nothing on either path, with one difference
/// for non-finite inputs: on the dense path `0·∞` in `Cᵀ·G` spreads NaN to every row
/// of `dM`, on the sparse path only to the active features' rows. Both are non-finite,
/// which [`crate::train::train_step`] refuses.
///
/// # Errors
/// As [`loss_and_grad`], and [`Error::OutOfRange`] naming `path` for [`Path::Sparse`]
/// with `h > 2^24`.
pub fn loss_and_grad_with(
    p: TiedParams<'_>,
    x: &[f32],
    n: usize,
    alpha: f32,
    grads: TiedParamsMut<'_>,
    scratch: &mut [f32],
    path: Path,
) -> Result<LossParts> {
    let dims = p.dims;
    let Dims { d, h } = dims;
    check_batch(dims, x, n)?;
    check_finite("alpha", alpha)?;
    sparse_path::check_path(path, dims)?;
    super::params::check_grad_dims(dims, grads.dims)?;
    let rb = block_rows_for(scratch.len(), |r| grad_scratch_len(dims, r))?;
    let (codes, rest) = scratch.split_at_mut(rb * h);
    // The dPre and residual slots; the sparse path's super-blocks use them as one area.
    let (area, pack) = rest.split_at_mut(rb * (h + d));
    let TiedParamsMut { m: dm, b: db, .. } = grads;

    let scale = 2.0 / n as f32;
    let add = alpha / n as f32;
    let mut sums = Sums::default();
    // Whether dM and db hold values yet (else the next contribution overwrites them).
    let mut started = false;
    // The pending sparse super-block: first row, rows, active codes.
    let (mut s0, mut s_rows, mut s_nnz) = (0usize, 0usize, 0usize);
    let flush = |s0: usize,
                 s_rows: usize,
                 s_nnz: usize,
                 area: &mut [f32],
                 sums: &mut Sums,
                 started: &mut bool,
                 dm: &mut [f32],
                 db: &mut [f32]| {
        if s_rows == 0 {
            return;
        }
        if !*started {
            dm.fill(0.0);
            db.fill(0.0);
            *started = true;
        }
        let xs = &x[s0 * d..(s0 + s_rows) * d];
        sparse_path::super_flush(
            p.m,
            d,
            h,
            xs,
            s_rows,
            s_nnz,
            area,
            scale,
            add,
            &mut sums.sq_err,
            dm,
            db,
        );
    };
    for r0 in (0..n).step_by(rb) {
        let rows = rb.min(n - r0);
        let xb = &x[r0 * d..(r0 + rows) * d];
        let cb = &mut codes[..rows * h];

        encode_block(&p, xb, rows, cb, pack);
        let active = sparse_path::count_active(cb);
        if sparse_path::use_sparse(path, active, rows, h) {
            // Sparse blocks accumulate into a super-block as long as its entries, the
            // feature counts and its rows' residuals fit in the area: each touched row
            // of M and dM is then loaded once per super-block, not once per block.
            let area_len = area.len();
            let fits = |r, z| sparse_path::super_need(r, z, d, h).is_some_and(|v| v <= area_len);
            if s_rows > 0 && !fits(s_rows + rows, s_nnz + active) {
                flush(s0, s_rows, s_nnz, area, &mut sums, &mut started, dm, db);
                s_rows = 0;
                s_nnz = 0;
            }
            if fits(rows, active) {
                if s_rows == 0 {
                    s0 = r0;
                }
                s_nnz = sparse_path::super_append(cb, h, s_rows, s_nnz, area);
                s_rows += rows;
                // The code statistics now, in row order; the squared errors at the
                // flush, also in row order (as `block_stats` adds them).
                for c in cb.chunks_exact(h) {
                    sums.l1 += f64::from(vector::l1(c));
                    sums.l0 += c.iter().filter(|&&v| v > 0.0).count() as f64;
                }
                continue;
            }
        }
        // Every other block starts after the pending super-block.
        flush(s0, s_rows, s_nnz, area, &mut sums, &mut started, dm, db);
        s_rows = 0;
        s_nnz = 0;
        let first = !started;
        started = true;
        let (dpre, resid) = area.split_at_mut(rb * h);
        let gb = &mut resid[..rows * d];
        let pb = &mut dpre[..rows * h];
        if sparse_path::use_sparse(path, active, rows, h) {
            if first {
                dm.fill(0.0);
                db.fill(0.0);
            }
            // Grouped by feature when the block's CSC fits in the dPre slots ...
            if let Some(nnz) = sparse_path::build_columns(cb, rows, h, active, pb) {
                sparse_path::decode_columns(p.m, d, h, pb, nnz, gb);
                block_stats(dims, xb, cb, gb, &mut sums, None, None);
                for (g, xr) in gb.chunks_exact_mut(d).zip(xb.chunks_exact(d)) {
                    vector::sub_scale_inplace(scale, g, xr);
                }
                sparse_path::grad_columns(p.m, d, h, pb, nnz, gb, xb, add, dm, db);
                continue;
            }
            // ... else one row at a time; the row's active list lives in the dPre slots.
            let rows_iter = cb.chunks_exact(h).zip(gb.chunks_exact_mut(d));
            for ((c, g), xr) in rows_iter.zip(xb.chunks_exact(d)) {
                let k = sparse_path::collect_row(c, pb);
                let idx = &pb[..k];
                sparse_path::decode_row(p.m, d, c, idx, g);
                block_stats(dims, xr, c, g, &mut sums, None, None);
                vector::sub_scale_inplace(scale, g, xr);
                sparse_path::grad_row(p.m, d, c, idx, g, xr, add, dm, db);
            }
            continue;
        }
        decode_block(&p, cb, rows, gb, pack);
        block_stats(dims, xb, cb, gb, &mut sums, None, None);
        // G = (2/n)(X̂ − X), in place of X̂.
        for (g, xr) in gb.chunks_exact_mut(d).zip(xb.chunks_exact(d)) {
            vector::sub_scale_inplace(scale, g, xr);
        }
        let res = (|| {
            let m = MatRef::row_major("m", p.m, h, d)?;
            let c_t = MatRef::row_major("codes", cb, rows, h)?.t();
            let g = MatRef::row_major("resid", gb, rows, d)?;
            // dM (+)= Cᵀ·G   (the decoder's use of M)
            let beta = if first { 0.0 } else { 1.0 };
            gemm(
                1.0,
                c_t,
                g,
                beta,
                MatMut::row_major("dm", dm, h, d)?,
                Epilogue::None,
                pack,
            )?;
            // dPre = G·Mᵀ, then masked and shifted by α/n.
            gemm(
                1.0,
                g,
                m.t(),
                0.0,
                MatMut::row_major("dpre", pb, rows, h)?,
                Epilogue::None,
                pack,
            )?;
            vector::relu_backward_add(cb, add, pb);
            // dM += dPreᵀ·X   (the encoder's use of M)
            let dpre_t = MatRef::row_major("dpre", pb, rows, h)?.t();
            let xm = MatRef::row_major("x", xb, rows, d)?;
            gemm(
                1.0,
                dpre_t,
                xm,
                1.0,
                MatMut::row_major("dm", dm, h, d)?,
                Epilogue::None,
                pack,
            )
        })();
        debug_assert!(res.is_ok(), "shapes are validated above: {res:?}");
        // db (+)= Σ_rows dPre
        for (r, row) in pb.chunks_exact(h).enumerate() {
            if first && r == 0 {
                db.copy_from_slice(row);
            } else {
                vector::axpy(1.0, row, db);
            }
        }
    }
    flush(s0, s_rows, s_nnz, area, &mut sums, &mut started, dm, db);
    Ok(sums.finish(n, alpha))
}
