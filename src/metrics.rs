//! Streaming evaluation metrics over batches, in caller memory, and MMCS.
//!
//! [`Metrics`] accumulates, over every row it is shown:
//! - **MSE per row**: `Σ‖x − x̂‖² / rows` (summed over the `d` coordinates, averaged
//!   over rows — the training loss's reconstruction term);
//! - **FVU** (fraction of variance unexplained): `Σ‖x − x̂‖² / Σ‖x − x̄‖²`, where `x̄`
//!   is the **per-coordinate mean over all rows evaluated so far** (pooled, like
//!   sparsify's FVU and `1 −` SAELens' `explained_variance`). It is computed in one
//!   streaming pass with Welford's update per coordinate in `f64`, so it equals the
//!   two-pass value over the whole evaluated set, not a per-batch mean;
//! - **L0**: mean number of active features (`c > 0`) per row; **L1**: mean `‖c‖₁`;
//! - per-feature **activation counts** (rows in which the feature was active) and the
//!   **dead fraction** over a window: the fraction of features that did not fire in
//!   the last `min(window, rows)` rows.
//!
//! All state lives in one `f64` slice of [`metrics_state_len`] entries; an all-zero
//! slice is an empty accumulator.

use crate::error::{Error, Result, check_len, check_nonzero, mul};
use crate::kernels::vector;
use crate::model::{
    Arch, Dims, ForwardOutputs, LossOptions, MAX_BLOCK_ROWS, forward, forward_scratch_len,
};
use crate::train::{ModelRef, TrainOptions};

const HEAD: usize = 4; // rows, Σ sq_err, Σ l1, Σ l0

/// `f64` entries of a [`Metrics`] state: `4 + 2d + 2h` (saturating).
#[must_use]
pub const fn metrics_state_len(dims: Dims) -> usize {
    HEAD.saturating_add(dims.d.saturating_mul(2))
        .saturating_add(dims.h.saturating_mul(2))
}

/// Scratch `f32` for [`evaluate`] on a model of `arch` with `options`, row blocks of
/// `block_rows`: `block_rows·(h + d)` for the block's codes and reconstruction,
/// [`forward_scratch_len`], and with `rescale_acts_by_decoder_norm` the effective
/// parameters (`2hd + 3h`).
#[must_use]
pub fn eval_scratch_len(arch: Arch, options: TrainOptions, dims: Dims, block_rows: usize) -> usize {
    let rows = block_rows.clamp(1, MAX_BLOCK_ROWS);
    rows.saturating_mul(dims.h.saturating_add(dims.d))
        .saturating_add(forward_scratch_len(arch, dims, rows))
        .saturating_add(options.effective_len(dims))
}

/// The metrics so far (see the module docs for the definitions).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    /// Rows seen.
    pub rows: u64,
    /// Mean over rows of `‖x − x̂‖²`.
    pub mse: f64,
    /// `Σ‖x − x̂‖² / Σ‖x − x̄‖²` (NaN when the inputs have zero variance).
    pub fvu: f64,
    /// Mean number of active features per row.
    pub l0: f64,
    /// Mean `‖c‖₁` per row.
    pub l1: f64,
    /// Fraction of features that did not fire in the last `min(window, rows)` rows.
    pub dead_fraction: f64,
}

/// A streaming metrics accumulator over caller memory.
#[derive(Debug)]
pub struct Metrics<'a> {
    dims: Dims,
    state: &'a mut [f64],
}

impl<'a> Metrics<'a> {
    /// View `state` (exactly [`metrics_state_len`] entries) as an accumulator. The
    /// contents are kept: zeroed means empty, or continue a previous accumulator.
    ///
    /// # Errors
    /// [`Error::Length`] naming `state`.
    pub fn new(dims: Dims, state: &'a mut [f64]) -> Result<Self> {
        check_len("state", state.len(), metrics_state_len(dims))?;
        Ok(Self { dims, state })
    }

    /// Forget everything.
    pub fn reset(&mut self) {
        self.state.fill(0.0);
    }

    /// Add `n` rows: inputs `x` (`n×d`), their codes (`n×h`) and reconstructions
    /// (`n×d`).
    ///
    /// # Errors
    /// [`Error::Length`] naming `x`, `codes` or `recon`. Nothing is added on error.
    pub fn observe(&mut self, x: &[f32], codes: &[f32], recon: &[f32], n: usize) -> Result<()> {
        let Dims { d, h } = self.dims;
        check_len("x", x.len(), mul("x", n, d)?)?;
        check_len("codes", codes.len(), mul("codes", n, h)?)?;
        check_len("recon", recon.len(), mul("recon", n, d)?)?;
        let (head, rest) = self.state.split_at_mut(HEAD);
        let (mean, rest) = rest.split_at_mut(d);
        let (m2, rest) = rest.split_at_mut(d);
        let (counts, last) = rest.split_at_mut(h);
        for r in 0..n {
            let xr = &x[r * d..(r + 1) * d];
            let cr = &codes[r * h..(r + 1) * h];
            let rr = &recon[r * d..(r + 1) * d];
            head[0] += 1.0;
            let rows = head[0];
            head[1] += f64::from(vector::sum_sq_diff(xr, rr));
            head[2] += f64::from(vector::l1(cr));
            let mut active = 0u32;
            for (i, &c) in cr.iter().enumerate() {
                if c > 0.0 {
                    active += 1;
                    counts[i] += 1.0;
                    last[i] = rows;
                }
            }
            head[3] += f64::from(active);
            for ((&v, mu), s) in xr.iter().zip(mean.iter_mut()).zip(m2.iter_mut()) {
                let v = f64::from(v);
                let delta = v - *mu;
                *mu += delta / rows;
                *s += delta * (v - *mu);
            }
        }
        Ok(())
    }

    /// The metrics so far; `window` (rows, `≥ 1`) sets the dead-feature window.
    /// With no rows seen, every mean is NaN and the dead fraction is 0.
    #[must_use]
    pub fn summary(&self, window: u64) -> Summary {
        let Dims { d, h } = self.dims;
        let head = &self.state[..HEAD];
        let rows = head[0];
        let m2 = &self.state[HEAD + d..HEAD + 2 * d];
        let last = &self.state[HEAD + 2 * d + h..];
        let var: f64 = m2.iter().sum();
        let w = (window.max(1) as f64).min(rows);
        // Dead: the last firing row index (1-based, 0 = never) is at or before rows − w.
        let dead = if rows == 0.0 {
            0
        } else {
            last.iter().filter(|&&l| l <= rows - w).count()
        };
        Summary {
            rows: rows as u64,
            mse: head[1] / rows,
            fvu: if var > 0.0 { head[1] / var } else { f64::NAN },
            l0: head[3] / rows,
            l1: head[2] / rows,
            dead_fraction: dead as f64 / h as f64,
        }
    }

    /// Per-feature activation counts (rows in which each feature was `> 0`), `h`.
    #[must_use]
    pub fn feature_counts(&self) -> &[f64] {
        let Dims { d, h } = self.dims;
        &self.state[HEAD + 2 * d..HEAD + 2 * d + h]
    }
}

/// Run the model (any architecture; a `Params` converts with `.into()`) on `n` rows
/// of `x` (`n×d`) and add them to `metrics`, in row blocks
/// inside `scratch` (at least [`eval_scratch_len`]`(arch, options, dims, 1)` `f32`).
///
/// # Errors
/// [`Error::Dimension`] if `n == 0` or `metrics` is for other dimensions;
/// [`Error::Length`] naming `x`; [`Error::WorkspaceTooSmall`] naming `scratch`.
pub fn evaluate<'m>(
    model: impl Into<ModelRef<'m>>,
    x: &[f32],
    n: usize,
    metrics: &mut Metrics<'_>,
    scratch: &mut [f32],
) -> Result<()> {
    let model = model.into();
    let dims = model.dims();
    let arch = model.arch();
    let Dims { d, h } = dims;
    check_nonzero("n", n)?;
    if metrics.dims != dims {
        return Err(Error::Dimension {
            arg: "metrics.h",
            expected: h,
            got: metrics.dims.h,
        });
    }
    check_len("x", x.len(), mul("x", n, d)?)?;
    let opts = model.options;
    opts.validate(arch)?;
    let need = eval_scratch_len(arch, opts, dims, 1);
    crate::error::check_scratch(scratch.len(), need)?;
    let mut rb = MAX_BLOCK_ROWS;
    while eval_scratch_len(arch, opts, dims, rb) > scratch.len() {
        rb -= 1;
    }
    let (eff, scratch) = scratch.split_at_mut(opts.effective_len(dims));
    let (p, _) = crate::train::effective(model.params, opts, eff)?;
    let (codes, rest) = scratch.split_at_mut(rb * h);
    let (recon, fwd) = rest.split_at_mut(rb * d);
    for r0 in (0..n).step_by(rb) {
        let rows = rb.min(n - r0);
        let xb = &x[r0 * d..(r0 + rows) * d];
        let (cb, rcb) = (&mut codes[..rows * h], &mut recon[..rows * d]);
        let out = ForwardOutputs {
            codes: Some(&mut *cb),
            recon: Some(&mut *rcb),
            ..Default::default()
        };
        forward(p, xb, rows, &LossOptions::alpha(0.0), out, fwd)?;
        metrics.observe(xb, cb, rcb, rows)?;
    }
    Ok(())
}

/// Mean max cosine similarity (Sharkey et al. 2022): for each of the `g` ground-truth
/// directions (rows of `truth`, `g×d`), the largest cosine similarity with any of the
/// `h` dictionary rows (`dict`, `h×d`), averaged over the ground truth. 1 means every
/// true feature is matched exactly by some learned feature. Zero rows have cosine 0.
///
/// # Errors
/// [`Error::Dimension`] if `d`, `g` or `h` is 0; [`Error::Length`] naming `truth` or
/// `dict`.
pub fn mmcs(truth: &[f32], g: usize, dict: &[f32], h: usize, d: usize) -> Result<f64> {
    check_nonzero("d", d)?;
    check_nonzero("g", g)?;
    check_nonzero("h", h)?;
    check_len("truth", truth.len(), mul("truth", g, d)?)?;
    check_len("dict", dict.len(), mul("dict", h, d)?)?;
    let mut total = 0.0f64;
    for t in truth.chunks_exact(d) {
        let tn = libm::sqrt(f64::from(vector::sum_sq(t)));
        let mut best = if tn > 0.0 { -1.0f64 } else { 0.0 };
        if tn > 0.0 {
            for m in dict.chunks_exact(d) {
                let mn = libm::sqrt(f64::from(vector::sum_sq(m)));
                let cos = if mn > 0.0 {
                    f64::from(vector::dot(t, m)) / (tn * mn)
                } else {
                    0.0
                };
                best = best.max(cos);
            }
        }
        total += best;
    }
    Ok(total / g as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_summary_and_zero_variance() {
        let dims = Dims::new(2, 2).unwrap();
        let mut st = [0.0f64; 12];
        let mut m = Metrics::new(dims, &mut st).unwrap();
        let s = m.summary(10);
        assert!(s.mse.is_nan() && s.fvu.is_nan());
        assert_eq!((s.rows, s.dead_fraction), (0, 0.0));
        // Identical rows: zero variance, FVU undefined (NaN), not a division panic.
        let x = [1.0, 2.0, 1.0, 2.0];
        m.observe(&x, &[1.0, 0.0, 1.0, 0.0], &x, 2).unwrap();
        let s = m.summary(10);
        assert!(s.fvu.is_nan());
        assert_eq!((s.mse, s.l0, s.dead_fraction), (0.0, 1.0, 0.5));
        assert!(Metrics::new(dims, &mut [0.0; 11]).is_err());
    }
}
