//! The untied ("standard") SAE of the field, with ReLU, TopK or JumpReLU codes.
//!
//! Parameters, in SAELens' layout (all row-major):
//! `W_enc` `d×h`, `b_enc` `h`, `W_dec` `h×d` (row `i` is feature `i`'s direction),
//! `b_dec` `d`. For each input row `x` (width `d`):
//!
//! ```text
//! x̄   = x − b_dec   if apply_b_dec_to_input, else x
//! pre = x̄·W_enc + b_enc                     (h)
//! f   = act(pre)                            (h; see [`Activation`])
//! x̂   = f·W_dec + b_dec                     (d)
//! L   = (1/n)·Σ_rows( ‖x − x̂‖² + α·P(f) )
//! ```
//!
//! with the sparsity penalty `P` one of [`Penalty::L1`] (`Σ_i |f_i|`) or
//! [`Penalty::DecoderNormL1`] (`Σ_i |f_i|·‖W_dec,i‖`, SAELens v6's `standard` training
//! loss with `lp_norm = 1`). The squared error is summed over the `d` coordinates and
//! averaged over rows, as in the tied model and SAELens (`mse.sum(-1).mean()`).
//!
//! ## Gradients
//! With `G = (2/n)(X̂ − X)`, `w_i = ‖W_dec,i‖` (or 1 for plain L1), `mask = [f > 0]`:
//!
//! ```text
//! dPre   = (G·W_decᵀ + (α/n)·w) ⊙ mask                       (n×h)
//! dW_dec = Fᵀ·G  + (α/n)·(Σ_rows f_i)·W_dec,i / w_i per row i   (h×d; 2nd term for DecoderNormL1)
//! db_dec = Σ_rows G  − W_enc·(Σ_rows dPre)                       (2nd term iff b_dec is subtracted)
//! dW_enc = X̄ᵀ·dPre                                              (d×h)
//! db_enc = Σ_rows dPre                                           (h)
//! ```
//!
//! For TopK the mask is the kept set (gradients flow through the kept, positive
//! entries only); for JumpReLU it is `pre > max(θ, 0)`. The threshold θ itself gets
//! no gradient (the loss is piecewise constant in θ); straight-through JumpReLU
//! training is not implemented. At a row of `W_dec` with norm 0 the decoder-norm
//! penalty's subgradient 0 is used.
//!
//! [`untied_loss_and_grad_auxk`] adds the AuxK dead-latent loss ([`AuxK`]) for TopK
//! training.
//!
//! ## The tied model as an untied one
//! The tied SAE (`c = relu(x·Mᵀ + b)`, `x̂ = c·M`) is the untied model with
//! `W_enc = Mᵀ`, `W_dec = M`, `b_enc = b`, `b_dec = 0`, `apply_b_dec_to_input = false`,
//! ReLU and plain L1 ([`tied_to_untied`]). Its gradient maps back as
//! `dM = dW_dec + dW_encᵀ`, `db = db_enc`.
//!
//! ## Memory
//! As for the tied model, rows are processed in blocks whose size is set by the
//! scratch length; each `*_scratch_len(dims, block_rows)` function gives the length
//! for a block size, and any length `≥ *_scratch_len(dims, 1)` works.

use super::activation::{Activation, apply_rows, topk_among};
use super::forward::{ForwardOutputs, LossParts, Sums, block_stats, check_batch, decode_with};
use super::params::{Dims, TiedParams};
use super::workspace::{MAX_BLOCK_ROWS, block_rows_for};
use crate::error::{Error, Result, check_finite, check_len, check_nonzero, mul};
use crate::kernels::gemm::{Epilogue, MatMut, MatRef, gemm, pack_len};
use crate::kernels::vector;

/// Read-only view of an untied SAE's parameters over caller memory (SAELens layout).
#[derive(Clone, Copy, Debug)]
pub struct UntiedParams<'a> {
    pub(crate) w_enc: &'a [f32],
    pub(crate) b_enc: &'a [f32],
    pub(crate) w_dec: &'a [f32],
    pub(crate) b_dec: &'a [f32],
    pub(crate) dims: Dims,
}

fn check_untied_lens(
    dims: Dims,
    w_enc: usize,
    b_enc: usize,
    w_dec: usize,
    b_dec: usize,
) -> Result<()> {
    check_len("w_enc", w_enc, dims.m_len())?;
    check_len("b_enc", b_enc, dims.h)?;
    check_len("w_dec", w_dec, dims.m_len())?;
    check_len("b_dec", b_dec, dims.d)
}

impl<'a> UntiedParams<'a> {
    /// A view over `w_enc` (`d×h`), `b_enc` (`h`), `w_dec` (`h×d`) and `b_dec` (`d`).
    ///
    /// # Errors
    /// [`Error::Length`] naming the first buffer whose length does not match `dims`.
    pub fn new(
        dims: Dims,
        w_enc: &'a [f32],
        b_enc: &'a [f32],
        w_dec: &'a [f32],
        b_dec: &'a [f32],
    ) -> Result<Self> {
        check_untied_lens(dims, w_enc.len(), b_enc.len(), w_dec.len(), b_dec.len())?;
        Ok(Self {
            w_enc,
            b_enc,
            w_dec,
            b_dec,
            dims,
        })
    }

    /// The dimensions (`d` = SAELens `d_in`, `h` = `d_sae`).
    #[must_use]
    pub fn dims(&self) -> Dims {
        self.dims
    }
    /// The encoder, `d×h` row-major.
    #[must_use]
    pub fn w_enc(&self) -> &'a [f32] {
        self.w_enc
    }
    /// The encoder bias, `h`.
    #[must_use]
    pub fn b_enc(&self) -> &'a [f32] {
        self.b_enc
    }
    /// The decoder, `h×d` row-major (row `i` = feature `i`'s direction).
    #[must_use]
    pub fn w_dec(&self) -> &'a [f32] {
        self.w_dec
    }
    /// The decoder bias, `d`.
    #[must_use]
    pub fn b_dec(&self) -> &'a [f32] {
        self.b_dec
    }
}

/// Mutable view of untied-SAE-shaped buffers: parameters, or their gradients (same
/// shapes: `w_enc` `d×h`, `b_enc` `h`, `w_dec` `h×d`, `b_dec` `d`).
#[derive(Debug)]
pub struct UntiedParamsMut<'a> {
    /// Encoder (or its gradient), `d×h` row-major.
    pub w_enc: &'a mut [f32],
    /// Encoder bias (or its gradient), `h`.
    pub b_enc: &'a mut [f32],
    /// Decoder (or its gradient), `h×d` row-major.
    pub w_dec: &'a mut [f32],
    /// Decoder bias (or its gradient), `d`.
    pub b_dec: &'a mut [f32],
    dims: Dims,
}

impl<'a> UntiedParamsMut<'a> {
    /// A mutable view; lengths as in [`UntiedParams::new`].
    ///
    /// # Errors
    /// [`Error::Length`] naming the first buffer whose length does not match `dims`.
    pub fn new(
        dims: Dims,
        w_enc: &'a mut [f32],
        b_enc: &'a mut [f32],
        w_dec: &'a mut [f32],
        b_dec: &'a mut [f32],
    ) -> Result<Self> {
        check_untied_lens(dims, w_enc.len(), b_enc.len(), w_dec.len(), b_dec.len())?;
        Ok(Self {
            w_enc,
            b_enc,
            w_dec,
            b_dec,
            dims,
        })
    }

    /// The dimensions.
    #[must_use]
    pub fn dims(&self) -> Dims {
        self.dims
    }

    /// Reborrow as a read-only view.
    #[must_use]
    pub fn as_ref(&self) -> UntiedParams<'_> {
        UntiedParams {
            w_enc: self.w_enc,
            b_enc: self.b_enc,
            w_dec: self.w_dec,
            b_dec: self.b_dec,
            dims: self.dims,
        }
    }
}

/// How an untied SAE turns inputs into codes: the activation and whether `b_dec` is
/// subtracted from the input (SAELens `apply_b_dec_to_input`, default `true`; `false`
/// for Gemma Scope and for the tied model).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct UntiedConfig<'a> {
    /// The activation.
    pub activation: Activation<'a>,
    /// Encode `x − b_dec` instead of `x`.
    pub apply_b_dec_to_input: bool,
}

impl<'a> UntiedConfig<'a> {
    /// ReLU codes with `b_dec` subtracted from the input (SAELens `standard` defaults).
    #[must_use]
    pub fn standard() -> Self {
        Self {
            activation: Activation::Relu,
            apply_b_dec_to_input: true,
        }
    }
}

/// The sparsity penalty `α·P(f)` of the training loss (per row; averaged over rows).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Penalty {
    /// `α·Σ_i |f_i|` (the tied seed's penalty; use `alpha = 0` for TopK training).
    L1 {
        /// The coefficient α.
        alpha: f32,
    },
    /// `α·Σ_i |f_i|·‖W_dec,i‖₂` (Anthropic's April-2024 update; SAELens v6 `standard`).
    DecoderNormL1 {
        /// The coefficient α.
        alpha: f32,
    },
}

impl Penalty {
    fn alpha(self) -> f32 {
        match self {
            Penalty::L1 { alpha } | Penalty::DecoderNormL1 { alpha } => alpha,
        }
    }
    fn weighted(self) -> bool {
        matches!(self, Penalty::DecoderNormL1 { .. })
    }
}

fn sat(terms: &[(usize, usize)]) -> usize {
    terms.iter().fold(0usize, |acc, &(a, b)| {
        acc.saturating_add(a.saturating_mul(b))
    })
}

/// Scratch `f32` for [`untied_encode`] with blocks of `block_rows` rows:
/// `block_rows·d` (centred input) + `h` (TopK selection) + `pack_len(block_rows, h, d)`.
#[must_use]
pub fn untied_encode_scratch_len(dims: Dims, block_rows: usize) -> usize {
    let rows = block_rows.clamp(1, MAX_BLOCK_ROWS);
    sat(&[
        (rows, dims.d),
        (1, dims.h),
        (1, pack_len(rows, dims.h, dims.d)),
    ])
}

/// Scratch `f32` for [`untied_decode`] (the GEMM's pack buffer).
#[must_use]
pub fn untied_decode_scratch_len(dims: Dims) -> usize {
    pack_len(usize::MAX, dims.d, dims.h)
}

fn pack_fwd(dims: Dims, rows: usize) -> usize {
    pack_len(rows, dims.h, dims.d).max(pack_len(rows, dims.d, dims.h))
}

/// Scratch `f32` for [`untied_forward`] with blocks of `block_rows` rows:
/// `block_rows·(h + 2d) + 2h` plus the encoder/decoder pack buffer.
#[must_use]
pub fn untied_forward_scratch_len(dims: Dims, block_rows: usize) -> usize {
    let rows = block_rows.clamp(1, MAX_BLOCK_ROWS);
    sat(&[
        (rows, dims.h),
        (rows, dims.d),
        (rows, dims.d),
        (2, dims.h),
        (1, pack_fwd(dims, rows)),
    ])
}

/// Scratch `f32` for [`untied_loss_and_grad`] with blocks of `block_rows` rows:
/// `block_rows·(2h + 2d) + 3h` plus the largest pack buffer of its products.
#[must_use]
pub fn untied_grad_scratch_len(dims: Dims, block_rows: usize) -> usize {
    let rows = block_rows.clamp(1, MAX_BLOCK_ROWS);
    let pack = pack_fwd(dims, rows)
        .max(pack_len(dims.h, dims.d, rows))
        .max(pack_len(dims.d, dims.h, rows))
        .max(pack_len(1, dims.d, dims.h));
    sat(&[
        (rows, dims.h),
        (rows, dims.h),
        (rows, dims.d),
        (rows, dims.d),
        (3, dims.h),
        (1, pack),
    ])
}

/// `xc ← x − b_dec` (row by row) or a copy of `x`.
fn centre(xb: &[f32], b_dec: &[f32], apply: bool, xc: &mut [f32]) {
    let d = b_dec.len();
    if apply {
        for (o, r) in xc.chunks_exact_mut(d).zip(xb.chunks_exact(d)) {
            for ((o, &a), &b) in o.iter_mut().zip(r).zip(b_dec) {
                *o = a - b;
            }
        }
    } else {
        xc.copy_from_slice(xb);
    }
}

/// `codes ← act(xc·W_enc + b_enc)` for one block (`xc` `rows×d`, `codes` `rows×h`);
/// with `pre_out`, the pre-activations are copied there too.
#[allow(clippy::too_many_arguments)]
fn encode_rows(
    p: &UntiedParams<'_>,
    act: Activation<'_>,
    xc: &[f32],
    rows: usize,
    codes: &mut [f32],
    sel: &mut [f32],
    pack: &mut [f32],
    pre_out: Option<&mut [f32]>,
) {
    let Dims { d, h } = p.dims;
    let relu = matches!(act, Activation::Relu) && pre_out.is_none();
    let res = (|| {
        gemm(
            1.0,
            MatRef::row_major("x", xc, rows, d)?,
            MatRef::row_major("w_enc", p.w_enc, d, h)?,
            0.0,
            MatMut::row_major("codes", codes, rows, h)?,
            if relu {
                Epilogue::BiasRelu(p.b_enc)
            } else {
                Epilogue::None
            },
            pack,
        )
    })();
    debug_assert!(res.is_ok(), "shapes are validated by the caller: {res:?}");
    if !relu {
        for row in codes.chunks_exact_mut(h) {
            vector::axpy(1.0, p.b_enc, row);
        }
        if let Some(pre) = pre_out {
            pre.copy_from_slice(codes);
        }
        apply_rows(act, codes, h, sel);
    }
}

/// `recon ← codes·W_dec + b_dec` for one block.
fn decode_rows(
    p: &UntiedParams<'_>,
    codes: &[f32],
    rows: usize,
    recon: &mut [f32],
    pack: &mut [f32],
) {
    let d = p.dims.d;
    decode_with(p.w_dec, p.dims, codes, rows, recon, pack);
    for row in recon.chunks_exact_mut(d) {
        vector::axpy(1.0, p.b_dec, row);
    }
}

fn check_cfg(dims: Dims, cfg: &UntiedConfig<'_>) -> Result<()> {
    cfg.activation.check(dims.h)
}

/// Codes of a batch: `codes ← act((x − b_dec?)·W_enc + b_enc)`.
///
/// - `x`: `n×d` row-major; `codes`: `n×h` row-major (written, never read).
/// - `scratch`: at least [`untied_encode_scratch_len`]`(dims, 1)` `f32`.
///
/// # Errors
/// [`Error::Dimension`] if `n == 0`; [`Error::Length`] naming `x`, `codes` or
/// `threshold`; [`Error::OutOfRange`] naming `k` if `k == 0`;
/// [`Error::WorkspaceTooSmall`] for `scratch`. Nothing is written on error.
pub fn untied_encode(
    p: UntiedParams<'_>,
    cfg: UntiedConfig<'_>,
    x: &[f32],
    n: usize,
    codes: &mut [f32],
    scratch: &mut [f32],
) -> Result<()> {
    let dims = p.dims;
    let Dims { d, h } = dims;
    check_batch(dims, x, n)?;
    check_len("codes", codes.len(), mul("codes", n, h)?)?;
    check_cfg(dims, &cfg)?;
    let rb = block_rows_for(scratch.len(), |r| untied_encode_scratch_len(dims, r))?;
    let (xc, rest) = scratch.split_at_mut(rb * d);
    let (sel, pack) = rest.split_at_mut(h);
    for r0 in (0..n).step_by(rb) {
        let rows = rb.min(n - r0);
        let xcb = &mut xc[..rows * d];
        centre(
            &x[r0 * d..(r0 + rows) * d],
            p.b_dec,
            cfg.apply_b_dec_to_input,
            xcb,
        );
        encode_rows(
            &p,
            cfg.activation,
            xcb,
            rows,
            &mut codes[r0 * h..(r0 + rows) * h],
            sel,
            pack,
            None,
        );
    }
    Ok(())
}

/// Reconstruction from codes: `recon ← codes·W_dec + b_dec`.
///
/// - `codes`: `n×h` row-major; `recon`: `n×d` row-major (written, never read).
/// - `scratch`: at least [`untied_decode_scratch_len`]`(dims)` `f32`.
///
/// # Errors
/// [`Error::Dimension`] if `n == 0`; [`Error::Length`] naming `codes` or `recon`;
/// [`Error::WorkspaceTooSmall`] for `scratch`. Nothing is written on error.
pub fn untied_decode(
    p: UntiedParams<'_>,
    codes: &[f32],
    n: usize,
    recon: &mut [f32],
    scratch: &mut [f32],
) -> Result<()> {
    check_nonzero("n", n)?;
    check_len("codes", codes.len(), mul("codes", n, p.dims.h)?)?;
    check_len("recon", recon.len(), mul("recon", n, p.dims.d)?)?;
    let need = untied_decode_scratch_len(p.dims);
    crate::error::check_scratch(scratch.len(), need)?;
    decode_rows(&p, codes, n, recon, scratch);
    Ok(())
}

fn check_penalty(pen: Penalty) -> Result<()> {
    check_finite("alpha", pen.alpha())
}

/// `norms[i] ← ‖W_dec,i‖₂` (or 1 for plain L1).
fn penalty_weights(p: &UntiedParams<'_>, pen: Penalty, w: &mut [f32]) {
    let d = p.dims.d;
    if pen.weighted() {
        for (wi, row) in w.iter_mut().zip(p.w_dec.chunks_exact(d)) {
            *wi = crate::math::sqrtf(vector::sum_sq(row));
        }
    } else {
        w.fill(1.0);
    }
}

/// The forward pass and loss of a batch (see the [module docs](self)), with
/// whichever per-batch outputs are wanted.
///
/// - `x`: `n×d` row-major; `pen`: the sparsity penalty (finite α).
/// - `out`: optional codes (`n×h`), reconstruction (`n×d`), per-row squared error and
///   per-row penalty `P(f)` (`row_l1`, weighted by decoder norms for
///   [`Penalty::DecoderNormL1`]), `n` each.
/// - `scratch`: at least [`untied_forward_scratch_len`]`(dims, 1)` `f32`.
///
/// Returns the loss and its parts; `l1` is the mean of `P(f)` (weighted for
/// [`Penalty::DecoderNormL1`]), `l0` the mean number of non-zero codes.
///
/// # Errors
/// As [`untied_encode`], plus [`Error::NonFinite`] naming `alpha` and
/// [`Error::Length`] naming an output. Nothing is written on error.
pub fn untied_forward(
    p: UntiedParams<'_>,
    cfg: UntiedConfig<'_>,
    x: &[f32],
    n: usize,
    pen: Penalty,
    out: ForwardOutputs<'_>,
    scratch: &mut [f32],
) -> Result<LossParts> {
    let dims = p.dims;
    let Dims { d, h } = dims;
    check_batch(dims, x, n)?;
    check_penalty(pen)?;
    check_cfg(dims, &cfg)?;
    out.check(dims, n)?;
    let ForwardOutputs {
        mut codes,
        mut recon,
        mut row_sq_err,
        mut row_l1,
    } = out;
    let rb = block_rows_for(scratch.len(), |r| untied_forward_scratch_len(dims, r))?;
    let (codes_s, rest) = scratch.split_at_mut(rb * h);
    let (recon_s, rest) = rest.split_at_mut(rb * d);
    let (xc, rest) = rest.split_at_mut(rb * d);
    let (sel, rest) = rest.split_at_mut(h);
    let (w, pack) = rest.split_at_mut(h);
    penalty_weights(&p, pen, w);

    let mut sums = Sums::default();
    for r0 in (0..n).step_by(rb) {
        let rows = rb.min(n - r0);
        let xb = &x[r0 * d..(r0 + rows) * d];
        let xcb = &mut xc[..rows * d];
        centre(xb, p.b_dec, cfg.apply_b_dec_to_input, xcb);
        let cb: &mut [f32] = match codes.as_deref_mut() {
            Some(c) => &mut c[r0 * h..(r0 + rows) * h],
            None => &mut codes_s[..rows * h],
        };
        encode_rows(&p, cfg.activation, xcb, rows, cb, sel, pack, None);
        let rcb: &mut [f32] = match recon.as_deref_mut() {
            Some(r) => &mut r[r0 * d..(r0 + rows) * d],
            None => &mut recon_s[..rows * d],
        };
        decode_rows(&p, cb, rows, rcb, pack);
        let mut row_pen = row_l1.as_deref_mut().map(|o| &mut o[r0..r0 + rows]);
        block_stats(
            dims,
            xb,
            cb,
            rcb,
            &mut sums,
            row_sq_err.as_deref_mut().map(|o| &mut o[r0..r0 + rows]),
            row_pen.as_deref_mut(),
        );
        if pen.weighted() {
            weighted_penalty_rows(cb, w, h, &mut sums, row_pen);
        }
    }
    Ok(sums.finish(n, pen.alpha()))
}

/// Replace the block's unweighted L1 contribution by `Σ_i f_i·w_i` (codes are ≥ 0).
fn weighted_penalty_rows(
    codes: &[f32],
    w: &[f32],
    h: usize,
    sums: &mut Sums,
    mut row_pen: Option<&mut [f32]>,
) {
    for (r, c) in codes.chunks_exact(h).enumerate() {
        sums.l1 -= f64::from(vector::l1(c));
        let v = vector::dot(c, w);
        sums.l1 += f64::from(v);
        if let Some(o) = row_pen.as_deref_mut() {
            o[r] = v;
        }
    }
}

/// Loss and exact gradients of all four tensors for a batch (formulas in the
/// [module docs](self)).
///
/// - `x`: `n×d` row-major; `pen`: the sparsity penalty (finite α).
/// - `grads`: receives `dL/dW_enc` (`d×h`), `dL/db_enc` (`h`), `dL/dW_dec` (`h×d`),
///   `dL/db_dec` (`d`); overwritten, never read.
/// - `scratch`: at least [`untied_grad_scratch_len`]`(dims, 1)` `f32`.
///
/// # Errors
/// As [`untied_forward`], plus [`Error::Dimension`] naming `grads.d` / `grads.h` if the
/// gradient buffers have other dimensions. Nothing is written on error.
pub fn untied_loss_and_grad(
    p: UntiedParams<'_>,
    cfg: UntiedConfig<'_>,
    x: &[f32],
    n: usize,
    pen: Penalty,
    grads: UntiedParamsMut<'_>,
    scratch: &mut [f32],
) -> Result<LossParts> {
    grad_impl(p, cfg, x, n, pen, None, grads, scratch).map(|(parts, _)| parts)
}

/// The AuxK dead-latent loss of Gao et al. (2024), as in SAELens v6 and OpenAI's code:
///
/// ```text
/// m     = number of dead latents,  k' = min(k_aux, m),  s = min(m / k_aux, 1)
/// A     = the k' largest pre-activations among the dead latents of each row, raw
///         (no ReLU), 0 elsewhere (ties: lowest index, as for TopK)
/// L_aux = coefficient · s · (1/n)·Σ_rows ‖A·W_dec − (x − x̂)‖²
/// ```
///
/// The residual `x − x̂` is a constant (detached), and the auxiliary reconstruction has
/// no `b_dec` (it is already in the residual; SAELens ≥ 6 and OpenAI agree, older
/// SAELens and EleutherAI added it twice). Gradients reach `W_dec` (rows of the
/// selected latents), and through the selected pre-activations `W_enc`, `b_enc` and,
/// with input centring, `b_dec`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AuxK<'a> {
    /// Which latents are dead (`h` entries), e.g. not fired for some number of tokens.
    pub dead: &'a [bool],
    /// `k_aux ≥ 1`; SAELens and EleutherAI use `d / 2`, OpenAI 256.
    pub k_aux: usize,
    /// The loss coefficient (finite): 1 in SAELens, 1/32 in OpenAI's code.
    pub coefficient: f32,
}

impl AuxK<'_> {
    fn check(&self, h: usize) -> Result<()> {
        check_len("dead", self.dead.len(), h)?;
        if self.k_aux == 0 {
            return Err(Error::OutOfRange {
                arg: "k_aux",
                allowed: "k_aux must be at least 1",
            });
        }
        check_finite("coefficient", self.coefficient)
    }
}

/// Scratch `f32` for [`untied_loss_and_grad_auxk`] with blocks of `block_rows` rows:
/// [`untied_grad_scratch_len`] plus `block_rows·(2h + d)`.
#[must_use]
pub fn untied_grad_auxk_scratch_len(dims: Dims, block_rows: usize) -> usize {
    let rows = block_rows.clamp(1, MAX_BLOCK_ROWS);
    sat(&[
        (1, untied_grad_scratch_len(dims, rows)),
        (rows, dims.h),
        (rows, dims.h),
        (rows, dims.d),
    ])
}

/// [`untied_loss_and_grad`] with the [`AuxK`] loss added: returns the loss parts (with
/// `loss` including the auxiliary term) and the auxiliary term alone. With no dead
/// latents the auxiliary term is 0 and the result is that of
/// [`untied_loss_and_grad`].
///
/// - `scratch`: at least [`untied_grad_auxk_scratch_len`]`(dims, 1)` `f32`.
///
/// # Errors
/// As [`untied_loss_and_grad`], plus [`Error::Length`] naming `dead`,
/// [`Error::OutOfRange`] naming `k_aux` and [`Error::NonFinite`] naming `coefficient`.
#[allow(clippy::too_many_arguments)]
pub fn untied_loss_and_grad_auxk(
    p: UntiedParams<'_>,
    cfg: UntiedConfig<'_>,
    x: &[f32],
    n: usize,
    pen: Penalty,
    aux: AuxK<'_>,
    grads: UntiedParamsMut<'_>,
    scratch: &mut [f32],
) -> Result<(LossParts, f32)> {
    grad_impl(p, cfg, x, n, pen, Some(aux), grads, scratch)
}

#[allow(clippy::too_many_arguments)]
fn grad_impl(
    p: UntiedParams<'_>,
    cfg: UntiedConfig<'_>,
    x: &[f32],
    n: usize,
    pen: Penalty,
    aux: Option<AuxK<'_>>,
    grads: UntiedParamsMut<'_>,
    scratch: &mut [f32],
) -> Result<(LossParts, f32)> {
    let dims = p.dims;
    let Dims { d, h } = dims;
    check_batch(dims, x, n)?;
    check_penalty(pen)?;
    check_cfg(dims, &cfg)?;
    super::params::check_grad_dims(dims, grads.dims)?;
    if let Some(a) = aux {
        a.check(h)?;
    }
    let rb = if aux.is_some() {
        block_rows_for(scratch.len(), |r| untied_grad_auxk_scratch_len(dims, r))?
    } else {
        block_rows_for(scratch.len(), |r| untied_grad_scratch_len(dims, r))?
    };
    let (codes, rest) = scratch.split_at_mut(rb * h);
    let (dpre, rest) = rest.split_at_mut(rb * h);
    let (xc, rest) = rest.split_at_mut(rb * d);
    let (resid, rest) = rest.split_at_mut(rb * d);
    let (sel, rest) = rest.split_at_mut(h);
    let (w, rest) = rest.split_at_mut(h);
    let (fsum, rest) = rest.split_at_mut(h);
    let ah = if aux.is_some() { rb * h } else { 0 };
    let (abuf, rest) = rest.split_at_mut(ah);
    let (dabuf, rest) = rest.split_at_mut(ah);
    let (rbuf, pack) = rest.split_at_mut(if aux.is_some() { rb * d } else { 0 });
    // AuxK: active only with at least one dead latent.
    let aux = aux.and_then(|a| {
        let m = a.dead.iter().filter(|&&v| v).count();
        (m > 0).then(|| {
            let s = (m as f32 / a.k_aux as f32).min(1.0);
            (
                a.dead,
                a.k_aux.min(m),
                2.0 * a.coefficient * s / n as f32,
                a.coefficient * s,
            )
        })
    });
    let mut aux_sum = 0.0f64;
    penalty_weights(&p, pen, w);
    fsum.fill(0.0);
    let UntiedParamsMut {
        w_enc: dw_enc,
        b_enc: db_enc,
        w_dec: dw_dec,
        b_dec: db_dec,
        ..
    } = grads;

    let alpha = pen.alpha();
    let scale = 2.0 / n as f32;
    let an = alpha / n as f32;
    let mut sums = Sums::default();
    for r0 in (0..n).step_by(rb) {
        let rows = rb.min(n - r0);
        let first = r0 == 0;
        let beta = if first { 0.0 } else { 1.0 };
        let xb = &x[r0 * d..(r0 + rows) * d];
        let xcb = &mut xc[..rows * d];
        let cb = &mut codes[..rows * h];
        let gb = &mut resid[..rows * d];
        let pb = &mut dpre[..rows * h];

        let ab = &mut abuf[..if aux.is_some() { rows * h } else { 0 }];
        let dab = &mut dabuf[..ab.len()];
        let rbb = &mut rbuf[..if aux.is_some() { rows * d } else { 0 }];

        centre(xb, p.b_dec, cfg.apply_b_dec_to_input, xcb);
        let pre_out = if aux.is_some() { Some(&mut *ab) } else { None };
        encode_rows(&p, cfg.activation, xcb, rows, cb, sel, pack, pre_out);
        decode_rows(&p, cb, rows, gb, pack);
        block_stats(dims, xb, cb, gb, &mut sums, None, None);
        if pen.weighted() {
            weighted_penalty_rows(cb, w, h, &mut sums, None);
        }
        if let Some((dead, k_eff, gscale, _)) = aux {
            // A: the k' largest dead pre-activations per row; R = A·W_dec − (x − x̂).
            for row in ab.chunks_exact_mut(h) {
                topk_among(row, dead, k_eff, sel);
            }
            decode_with(p.w_dec, dims, ab, rows, rbb, pack);
            for ((r, &xv), &xh) in rbb.iter_mut().zip(xb).zip(gb.iter()) {
                *r -= xv - xh;
                aux_sum += f64::from(*r) * f64::from(*r);
                *r *= gscale;
            }
        }
        // G = (2/n)(X̂ − X), in place of X̂.
        for (g, xr) in gb.chunks_exact_mut(d).zip(xb.chunks_exact(d)) {
            vector::sub_scale_inplace(scale, g, xr);
        }
        let res = (|| {
            let c_t = MatRef::row_major("codes", cb, rows, h)?.t();
            let g = MatRef::row_major("resid", gb, rows, d)?;
            // dW_dec (+)= Fᵀ·G
            gemm(
                1.0,
                c_t,
                g,
                beta,
                MatMut::row_major("dw_dec", dw_dec, h, d)?,
                Epilogue::None,
                pack,
            )?;
            // dPre = G·W_decᵀ, then + (α/n)·w and masked by f > 0.
            gemm(
                1.0,
                g,
                MatRef::row_major("w_dec", p.w_dec, h, d)?.t(),
                0.0,
                MatMut::row_major("dpre", pb, rows, h)?,
                Epilogue::None,
                pack,
            )
        })();
        debug_assert!(res.is_ok(), "shapes are validated above: {res:?}");
        for (prow, crow) in pb.chunks_exact_mut(h).zip(cb.chunks_exact(h)) {
            for ((g, &c), &wi) in prow.iter_mut().zip(crow).zip(w.iter()) {
                *g = if c > 0.0 { *g + an * wi } else { 0.0 };
            }
        }
        if aux.is_some() {
            // dW_dec += Aᵀ·R;  dPre += (R·W_decᵀ) on the selected entries.
            let res = (|| {
                gemm(
                    1.0,
                    MatRef::row_major("aux", ab, rows, h)?.t(),
                    MatRef::row_major("aux_resid", rbb, rows, d)?,
                    1.0,
                    MatMut::row_major("dw_dec", dw_dec, h, d)?,
                    Epilogue::None,
                    pack,
                )?;
                gemm(
                    1.0,
                    MatRef::row_major("aux_resid", rbb, rows, d)?,
                    MatRef::row_major("w_dec", p.w_dec, h, d)?.t(),
                    0.0,
                    MatMut::row_major("aux_dpre", dab, rows, h)?,
                    Epilogue::None,
                    pack,
                )
            })();
            debug_assert!(res.is_ok(), "shapes are validated above: {res:?}");
            // Selected entries have non-zero bits (a selected 0 is stored as −0.0).
            for ((g, &a), &da) in pb.iter_mut().zip(ab.iter()).zip(dab.iter()) {
                if a.to_bits() != 0 {
                    *g += da;
                }
            }
        }
        let res = (|| {
            // dW_enc (+)= X̄ᵀ·dPre
            gemm(
                1.0,
                MatRef::row_major("x", xcb, rows, d)?.t(),
                MatRef::row_major("dpre", pb, rows, h)?,
                beta,
                MatMut::row_major("dw_enc", dw_enc, d, h)?,
                Epilogue::None,
                pack,
            )
        })();
        debug_assert!(res.is_ok(), "shapes are validated above: {res:?}");
        // Bias gradients and feature sums (row sums of G, dPre, F).
        for (r, ((prow, grow), crow)) in pb
            .chunks_exact(h)
            .zip(gb.chunks_exact(d))
            .zip(cb.chunks_exact(h))
            .enumerate()
        {
            if first && r == 0 {
                db_enc.copy_from_slice(prow);
                db_dec.copy_from_slice(grow);
            } else {
                vector::axpy(1.0, prow, db_enc);
                vector::axpy(1.0, grow, db_dec);
            }
            if pen.weighted() {
                vector::axpy(1.0, crow, fsum);
            }
        }
    }
    if cfg.apply_b_dec_to_input {
        // db_dec −= (Σ_rows dPre)·W_encᵀ   (x̄ = x − b_dec)
        let res = (|| {
            gemm(
                -1.0,
                MatRef::row_major("db_enc", db_enc, 1, h)?,
                MatRef::row_major("w_enc", p.w_enc, d, h)?.t(),
                1.0,
                MatMut::row_major("db_dec", db_dec, 1, d)?,
                Epilogue::None,
                pack,
            )
        })();
        debug_assert!(res.is_ok(), "shapes are validated above: {res:?}");
    }
    if pen.weighted() {
        // d(α/n Σ f_i ‖W_dec,i‖)/dW_dec,i = (α/n)·(Σ_rows f_i)·W_dec,i/‖W_dec,i‖
        for (((grow, row), &fs), &wi) in dw_dec
            .chunks_exact_mut(d)
            .zip(p.w_dec.chunks_exact(d))
            .zip(fsum.iter())
            .zip(w.iter())
        {
            if wi > 0.0 && fs != 0.0 {
                vector::axpy(an * fs / wi, row, grow);
            }
        }
    }
    let mut parts = sums.finish(n, alpha);
    let aux_loss = match aux {
        Some((_, _, _, cs)) => (f64::from(cs) * aux_sum / n as f64) as f32,
        None => 0.0,
    };
    parts.loss += aux_loss;
    Ok((parts, aux_loss))
}

/// Rescale every decoder row to unit L2 norm, in place (`w_dec`: `h×d` row-major).
/// Rows of norm 0 are left as they are.
///
/// # Errors
/// [`Error::Length`] naming `w_dec` if its length is not `h·d`.
pub fn normalize_decoder_rows(dims: Dims, w_dec: &mut [f32]) -> Result<()> {
    check_len("w_dec", w_dec.len(), dims.m_len())?;
    for row in w_dec.chunks_exact_mut(dims.d) {
        let nrm = crate::math::sqrtf(vector::sum_sq(row));
        if nrm > 0.0 {
            let inv = 1.0 / nrm;
            for v in row.iter_mut() {
                *v *= inv;
            }
        }
    }
    Ok(())
}

/// Remove from each decoder-row gradient its component parallel to that row:
/// `g_i ← g_i − (g_i·ŵ_i)·ŵ_i` with `ŵ_i = W_dec,i/‖W_dec,i‖` (OpenAI / EleutherAI /
/// Towards-Monosemanticity recipe, used with unit-norm decoder rows). Rows of norm 0
/// leave their gradient unchanged. Both buffers are `h×d` row-major.
///
/// # Errors
/// [`Error::Length`] naming `w_dec` or `grad_w_dec` if a length is not `h·d`.
pub fn remove_parallel_decoder_grad(
    dims: Dims,
    w_dec: &[f32],
    grad_w_dec: &mut [f32],
) -> Result<()> {
    check_len("w_dec", w_dec.len(), dims.m_len())?;
    check_len("grad_w_dec", grad_w_dec.len(), dims.m_len())?;
    for (g, w) in grad_w_dec
        .chunks_exact_mut(dims.d)
        .zip(w_dec.chunks_exact(dims.d))
    {
        let nn = vector::sum_sq(w);
        if nn > 0.0 {
            vector::axpy(-vector::dot(g, w) / nn, w, g);
        }
    }
    Ok(())
}

/// Write the tied model `(M, b)` as the equivalent untied parameters:
/// `W_enc = Mᵀ` (`d×h`), `W_dec = M` (`h×d`), `b_enc = b`, `b_dec = 0`. Use it with
/// `UntiedConfig { activation: Activation::Relu, apply_b_dec_to_input: false }` and
/// [`Penalty::L1`] to get the tied model's codes, reconstruction and loss.
///
/// # Errors
/// [`Error::Dimension`] naming `out.d` / `out.h` if `out`'s dimensions differ from
/// the tied model's.
pub fn tied_to_untied(tied: TiedParams<'_>, out: UntiedParamsMut<'_>) -> Result<()> {
    let Dims { d, h } = tied.dims;
    if out.dims.d != d {
        return Err(Error::Dimension {
            arg: "out.d",
            expected: d,
            got: out.dims.d,
        });
    }
    if out.dims.h != h {
        return Err(Error::Dimension {
            arg: "out.h",
            expected: h,
            got: out.dims.h,
        });
    }
    for (i, row) in tied.m.chunks_exact(d).enumerate() {
        for (j, &v) in row.iter().enumerate() {
            out.w_enc[j * h + i] = v;
        }
    }
    out.w_dec.copy_from_slice(tied.m);
    out.b_enc.copy_from_slice(tied.b);
    out.b_dec.fill(0.0);
    Ok(())
}

/// SAELens v6's initialisation of an untied SAE (same distribution, not the same
/// random numbers): decoder rows drawn uniformly from `[−√(6/d), √(6/d)]`
/// (PyTorch's `kaiming_uniform_`) and rescaled to L2 norm `decoder_norm` (SAELens'
/// `decoder_init_norm`, default 0.1, after Anthropic's April 2024 update),
/// `W_enc = W_decᵀ`, `b_enc = 0`, `b_dec = 0`.
///
/// Samples are drawn in `f64` from PCG-64 seeded with `seed` ([`super::init::InitRng`]),
/// row by row of `W_dec`; the same seed gives the same parameters on every target.
///
/// # Errors
/// [`Error::NonFinite`] naming `decoder_norm` if it is not finite (nothing is written).
pub fn init_untied(params: UntiedParamsMut<'_>, seed: u64, decoder_norm: f32) -> Result<()> {
    use rand_core::SeedableRng;
    use rand_distr::{Distribution, Uniform};
    check_finite("decoder_norm", decoder_norm)?;
    let Dims { d, h } = params.dims;
    let bound = libm::sqrt(6.0 / d as f64);
    let mut rng = super::init::InitRng::seed_from_u64(seed);
    // `bound > 0` and finite, so the range is valid.
    if let Ok(u) = Uniform::new_inclusive(-bound, bound) {
        for row in params.w_dec.chunks_exact_mut(d) {
            for v in row.iter_mut() {
                *v = u.sample(&mut rng) as f32;
            }
            let nrm = crate::math::sqrtf(vector::sum_sq(row));
            if nrm > 0.0 {
                let s = decoder_norm / nrm;
                for v in row.iter_mut() {
                    *v *= s;
                }
            }
        }
    }
    for (i, row) in params.w_dec.chunks_exact(d).enumerate() {
        for (j, &v) in row.iter().enumerate() {
            params.w_enc[j * h + i] = v;
        }
    }
    params.b_enc.fill(0.0);
    params.b_dec.fill(0.0);
    Ok(())
}
