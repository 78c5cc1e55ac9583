//! Encoding, decoding and the loss of the tied SAE.
//!
//! `C = ReLU(X·Mᵀ + b)` (the bias and ReLU are fused into the encoder product's
//! epilogue) and `X̂ = C·M`. The loss of a batch of `n` rows is
//! `L = (1/n)·Σ_rows(‖x − x̂‖² + α·‖c‖₁)`.
//!
//! ## NaN and infinity in `X`
//! Non-finite inputs are not rejected (checking would cost a pass over `X`); they
//! propagate: the codes of an affected row (and, through `M`, usually its
//! reconstruction) become NaN or ±∞, and so do the reported loss and gradients. No
//! function here panics on them, and none of them modifies the parameters. The
//! parameter update [`crate::optim::sgd_step`] refuses non-finite gradients, so a bad
//! batch cannot corrupt a model through it.

use super::params::{Dims, TiedParams};
use super::sparse_path::{self, Path};
use super::workspace::{block_rows_for, encode_scratch_len, forward_scratch_len};
#[cfg(doc)]
use crate::error::Error;
use crate::error::{Result, check_finite, check_len, check_nonzero, mul};
use crate::kernels::gemm::{Epilogue, MatMut, MatRef, gemm, pack_len};
use crate::kernels::vector;

/// The loss of a batch and its parts, each a mean over the batch's rows.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LossParts {
    /// `sq_err + α·l1`, the quantity whose gradient [`super::backward::loss_and_grad`] returns.
    pub loss: f32,
    /// Mean over rows of `‖x − x̂‖²` (summed over the `d` coordinates, not averaged).
    pub sq_err: f32,
    /// Mean over rows of `‖c‖₁` (not multiplied by α).
    pub l1: f32,
    /// Mean over rows of the number of active features (codes `> 0`).
    pub l0: f32,
}

/// Running sums over rows, in `f64` so that a long batch loses no precision.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Sums {
    pub sq_err: f64,
    pub l1: f64,
    pub l0: f64,
}

impl Sums {
    pub(crate) fn finish(self, n: usize, alpha: f32) -> LossParts {
        let inv = 1.0 / n as f64;
        let sq = self.sq_err * inv;
        let l1 = self.l1 * inv;
        LossParts {
            loss: (sq + f64::from(alpha) * l1) as f32,
            sq_err: sq as f32,
            l1: l1 as f32,
            l0: (self.l0 * inv) as f32,
        }
    }
}

/// Optional outputs of [`forward`], each for the whole batch of `n` rows.
/// `None` means "not wanted"; the values are then computed block by block in scratch.
#[derive(Debug, Default)]
pub struct ForwardOutputs<'a> {
    /// The codes `C`, `n×h` row-major.
    pub codes: Option<&'a mut [f32]>,
    /// The reconstruction `X̂`, `n×d` row-major.
    pub recon: Option<&'a mut [f32]>,
    /// Per-row squared error `‖x − x̂‖²`, `n` entries.
    pub row_sq_err: Option<&'a mut [f32]>,
    /// Per-row `‖c‖₁`, `n` entries.
    pub row_l1: Option<&'a mut [f32]>,
}

impl ForwardOutputs<'_> {
    /// Check every requested output's length against a batch of `n` rows.
    pub(crate) fn check(&self, dims: Dims, n: usize) -> Result<()> {
        let Dims { d, h } = dims;
        if let Some(c) = self.codes.as_deref() {
            check_len("codes", c.len(), mul("codes", n, h)?)?;
        }
        if let Some(r) = self.recon.as_deref() {
            check_len("recon", r.len(), mul("recon", n, d)?)?;
        }
        if let Some(r) = self.row_sq_err.as_deref() {
            check_len("row_sq_err", r.len(), n)?;
        }
        if let Some(r) = self.row_l1.as_deref() {
            check_len("row_l1", r.len(), n)?;
        }
        Ok(())
    }
}

/// Check `x` against `n·d` and `n ≥ 1`.
pub(crate) fn check_batch(dims: Dims, x: &[f32], n: usize) -> Result<()> {
    check_nonzero("n", n)?;
    check_len("x", x.len(), mul("x", n, dims.d)?)
}

/// Encode one block of rows: `codes ← ReLU(xb·Mᵀ + b)`; `codes` is `rows×h`.
pub(crate) fn encode_block(
    p: &TiedParams<'_>,
    xb: &[f32],
    rows: usize,
    codes: &mut [f32],
    pack: &mut [f32],
) {
    let Dims { d, h } = p.dims;
    let res = (|| {
        gemm(
            1.0,
            MatRef::row_major("x", xb, rows, d)?,
            MatRef::row_major("m", p.m, h, d)?.t(),
            0.0,
            MatMut::row_major("codes", codes, rows, h)?,
            Epilogue::BiasRelu(p.b),
            pack,
        )
    })();
    debug_assert!(res.is_ok(), "shapes are validated by the caller: {res:?}");
}

/// Decode one block of rows: `recon ← codes·M`; `codes` is `rows×h`, `recon` `rows×d`.
pub(crate) fn decode_block(
    p: &TiedParams<'_>,
    codes: &[f32],
    rows: usize,
    recon: &mut [f32],
    pack: &mut [f32],
) {
    decode_with(p.m, p.dims, codes, rows, recon, pack);
}

/// `recon ← codes·dict` for a row-major `h×d` dictionary (the tied `M`, the untied
/// `W_dec`); `codes` is `rows×h`, `recon` `rows×d`. Shapes are validated by the caller.
pub(crate) fn decode_with(
    dict: &[f32],
    dims: Dims,
    codes: &[f32],
    rows: usize,
    recon: &mut [f32],
    pack: &mut [f32],
) {
    let Dims { d, h } = dims;
    let res = (|| {
        gemm(
            1.0,
            MatRef::row_major("codes", codes, rows, h)?,
            MatRef::row_major("dict", dict, h, d)?,
            0.0,
            MatMut::row_major("recon", recon, rows, d)?,
            Epilogue::None,
            pack,
        )
    })();
    debug_assert!(res.is_ok(), "shapes are validated by the caller: {res:?}");
}

/// Per-row statistics of one block, added to `sums`; optionally stored per row.
pub(crate) fn block_stats(
    dims: Dims,
    xb: &[f32],
    codes: &[f32],
    recon: &[f32],
    sums: &mut Sums,
    mut row_sq: Option<&mut [f32]>,
    mut row_l1: Option<&mut [f32]>,
) {
    let Dims { d, h } = dims;
    let rows = xb.len() / d;
    for r in 0..rows {
        let sq = vector::sum_sq_diff(&xb[r * d..(r + 1) * d], &recon[r * d..(r + 1) * d]);
        let c = &codes[r * h..(r + 1) * h];
        let l1 = vector::l1(c);
        let l0 = c.iter().filter(|&&v| v > 0.0).count();
        sums.sq_err += f64::from(sq);
        sums.l1 += f64::from(l1);
        sums.l0 += l0 as f64;
        if let Some(o) = row_sq.as_deref_mut() {
            o[r] = sq;
        }
        if let Some(o) = row_l1.as_deref_mut() {
            o[r] = l1;
        }
    }
}

/// Codes of a batch: `codes ← ReLU(X·Mᵀ + b)`.
///
/// - `x`: `n×d` row-major; `codes`: `n×h` row-major (written, never read).
/// - `scratch`: at least [`encode_scratch_len`]`(dims)` `f32`.
///
/// # Errors
/// [`Error::Dimension`] if `n == 0`; [`Error::Length`] naming `x` or `codes`;
/// [`Error::WorkspaceTooSmall`] for `scratch`. Nothing is written on error.
pub fn encode(
    p: TiedParams<'_>,
    x: &[f32],
    n: usize,
    codes: &mut [f32],
    scratch: &mut [f32],
) -> Result<()> {
    check_batch(p.dims, x, n)?;
    check_len("codes", codes.len(), mul("codes", n, p.dims.h)?)?;
    let need = encode_scratch_len(p.dims);
    crate::error::check_scratch(scratch.len(), need)?;
    encode_block(&p, x, n, codes, scratch);
    Ok(())
}

/// Scratch `f32` for [`decode`] (the GEMM's pack buffer).
#[must_use]
pub fn decode_scratch_len(dims: Dims) -> usize {
    pack_len(usize::MAX, dims.d, dims.h)
}

/// Reconstruction from codes: `recon ← codes·M`.
///
/// - `codes`: `n×h` row-major; `recon`: `n×d` row-major (written, never read).
/// - `scratch`: at least [`decode_scratch_len`]`(dims)` `f32`.
///
/// # Errors
/// [`Error::Dimension`] if `n == 0`; [`Error::Length`] naming `codes` or `recon`;
/// [`Error::WorkspaceTooSmall`] for `scratch`. Nothing is written on error.
pub fn decode(
    p: TiedParams<'_>,
    codes: &[f32],
    n: usize,
    recon: &mut [f32],
    scratch: &mut [f32],
) -> Result<()> {
    check_nonzero("n", n)?;
    check_len("codes", codes.len(), mul("codes", n, p.dims.h)?)?;
    check_len("recon", recon.len(), mul("recon", n, p.dims.d)?)?;
    let need = decode_scratch_len(p.dims);
    crate::error::check_scratch(scratch.len(), need)?;
    decode_block(&p, codes, n, recon, scratch);
    Ok(())
}

/// The forward pass and loss of a batch, with whichever per-batch outputs are wanted.
///
/// - `x`: `n×d` row-major; `alpha`: the L1 coefficient α (finite).
/// - `out`: optional codes (`n×h`), reconstruction (`n×d`), per-row squared error and
///   per-row L1 (`n` each).
/// - `scratch`: at least [`forward_scratch_len`]`(dims, 1)` `f32`; see
///   [`crate::model::workspace`] for how its length sets the row-block size.
///
/// Returns the loss and its parts (means over rows).
///
/// # Errors
/// [`Error::Dimension`] if `n == 0`; [`Error::NonFinite`] for `alpha`;
/// [`Error::Length`] naming `x` or an output; [`Error::WorkspaceTooSmall`] for
/// `scratch`. Nothing is written on error.
///
/// The decoder runs on the dense or the sparse path as [`Path::Auto`] chooses; see
/// [`forward_with`] to choose explicitly.
///
/// # Example
/// ```
/// use sae_kernels::{Dims, ForwardOutputs, TiedParams, forward, forward_scratch_len};
/// let dims = Dims::new(2, 3)?;
/// let m = [1.0, 0.0, 0.0, 1.0, 1.0, 1.0]; // 3 features in 2 dims
/// let b = [0.0, 0.0, -1.5];
/// let x = [2.0, 0.0];
/// let mut codes = [0.0; 3];
/// let mut scratch = vec![0.0; forward_scratch_len(dims, 1)];
/// let out = ForwardOutputs { codes: Some(&mut codes), ..Default::default() };
/// let loss = forward(TiedParams::new(dims, &m, &b)?, &x, 1, 0.1, out, &mut scratch)?;
/// assert_eq!(codes, [2.0, 0.0, 0.5]); // ReLU(x·Mᵀ + b)
/// assert_eq!(loss.l0, 2.0);
/// # Ok::<(), sae_kernels::Error>(())
/// ```
pub fn forward(
    p: TiedParams<'_>,
    x: &[f32],
    n: usize,
    alpha: f32,
    out: ForwardOutputs<'_>,
    scratch: &mut [f32],
) -> Result<LossParts> {
    forward_with(p, x, n, alpha, out, scratch, Path::Auto)
}

/// [`forward`] with an explicit choice of the decoder's implementation (`path`; see
/// [`Path`]). Every row block is encoded by the dense GEMM; with the sparse path its
/// reconstruction is then the sum of the active features' rows of `M`.
///
/// # Errors
/// As [`forward`], and [`Error::OutOfRange`] naming `path` for [`Path::Sparse`] with
/// `h > 2^24`.
pub fn forward_with(
    p: TiedParams<'_>,
    x: &[f32],
    n: usize,
    alpha: f32,
    out: ForwardOutputs<'_>,
    scratch: &mut [f32],
    path: Path,
) -> Result<LossParts> {
    let dims = p.dims;
    let Dims { d, h } = dims;
    check_batch(dims, x, n)?;
    check_finite("alpha", alpha)?;
    sparse_path::check_path(path, dims)?;
    out.check(dims, n)?;
    let ForwardOutputs {
        mut codes,
        mut recon,
        mut row_sq_err,
        mut row_l1,
    } = out;
    let rb = block_rows_for(scratch.len(), |r| forward_scratch_len(dims, r))?;
    let (codes_s, rest) = scratch.split_at_mut(rb * h);
    let (recon_s, rest) = rest.split_at_mut(rb * d);
    let (idx_s, pack) = rest.split_at_mut(h);

    let mut sums = Sums::default();
    for r0 in (0..n).step_by(rb) {
        let rows = rb.min(n - r0);
        let xb = &x[r0 * d..(r0 + rows) * d];
        let cb: &mut [f32] = match codes.as_deref_mut() {
            Some(c) => &mut c[r0 * h..(r0 + rows) * h],
            None => &mut codes_s[..rows * h],
        };
        encode_block(&p, xb, rows, cb, pack);
        let rcb: &mut [f32] = match recon.as_deref_mut() {
            Some(r) => &mut r[r0 * d..(r0 + rows) * d],
            None => &mut recon_s[..rows * d],
        };
        if sparse_path::use_sparse(path, sparse_path::count_active(cb), rows, h) {
            for (c, r) in cb.chunks_exact(h).zip(rcb.chunks_exact_mut(d)) {
                let k = sparse_path::collect_row(c, idx_s);
                sparse_path::decode_row(p.m, d, c, &idx_s[..k], r);
            }
        } else {
            decode_block(&p, cb, rows, rcb, pack);
        }
        block_stats(
            dims,
            xb,
            cb,
            rcb,
            &mut sums,
            row_sq_err.as_deref_mut().map(|o| &mut o[r0..r0 + rows]),
            row_l1.as_deref_mut().map(|o| &mut o[r0..r0 + rows]),
        );
    }
    Ok(sums.finish(n, alpha))
}
