//! The SAE core: one row-block loop for the forward pass and one for the backward pass,
//! for every architecture ([`Arch`]).
//!
//! For each input row `x` (width `d`):
//!
//! ```text
//! x̄   = x − b_dec   with input centring, else x
//! pre = x̄·W_enc + b_enc                      (h; tied: W_enc = Mᵀ)
//! f   = act(pre)                             (h; ReLU, TopK or JumpReLU)
//! x̂   = f·W_dec (+ b_dec)                    (d; tied: W_dec = M, no b_dec)
//! L   = (1/n)·Σ_rows( ‖x − x̂‖² + α·P(f) ) (+ AuxK)
//! ```
//!
//! with the penalty `P` of [`Penalty`]. The squared error is summed over the `d`
//! coordinates and averaged over rows (SAELens' `mse.sum(-1).mean()`, the seed's loss).
//!
//! ## Gradients
//! With `G = (2/n)(X̂ − X)`, `w_i` the penalty weight (1 for L1, `‖W_dec,i‖` for the
//! decoder-norm penalty, 0 for none) and `mask = [f > 0]` (so relu'(0) = 0, as
//! `jax.grad`; for TopK the kept entries, for JumpReLU `pre > max(θ, 0)`):
//!
//! ```text
//! dPre   = (G·W_decᵀ + (α/n)·w) ⊙ mask                                  (n×h)
//! dW_dec = Fᵀ·G (+ (α/n)·(Σ_rows f_i)·W_dec,i / w_i per row i, decoder-norm penalty)
//! dW_enc = X̄ᵀ·dPre                                                      (d×h)
//! db_enc = Σ_rows dPre
//! db_dec = Σ_rows G − W_enc·(Σ_rows dPre)       (2nd term with input centring)
//! ```
//!
//! For tied weights both weight gradients are gradients of `M`: `dM = Fᵀ·G + dPreᵀ·X`,
//! summed into one buffer block by block exactly as the seed's model does. The
//! JumpReLU thresholds get SAELens' straight-through estimate when
//! [`LossOptions::jumprelu_bandwidth`] is `> 0`, else 0 (the loss is piecewise
//! constant in θ); see [`super::activation`].
//!
//! Each row block runs the dense GEMMs or the sparse path of [`super::sparse_path`]
//! (the same formulas over the active codes only), as [`Path`] chooses.
//!
//! ## NaN and infinity in `X`
//! Non-finite inputs are not rejected (checking would cost a pass over `X`); they
//! propagate into the codes, the loss and the gradients. Nothing here panics on them
//! or modifies the parameters; [`crate::train::train_step`] refuses non-finite
//! gradients.
//!
//! ## Memory
//! Rows are processed in blocks; each operation's scratch is described once (a list of
//! [`StackReq`] slots) and its `*_scratch_len(arch, dims, block_rows)` is that list's
//! size. Any scratch length `≥ *_scratch_len(arch, dims, 1)` works: the largest block
//! (up to [`MAX_BLOCK_ROWS`]) that fits is used, and for a given length every result
//! bit is fixed.
//!
//! ## Threads (feature `parallel`)
//! [`forward`] and [`loss_and_grad`] run inside rayon's pool (one hand-over per call,
//! for batches with `n·(d + h)` of at least 2¹⁵).
//! Besides the large GEMMs, which split themselves, a dense block's element-wise passes
//! (input centring, active counts, decoder bias, per-row loss terms, residual, masks,
//! bias and feature sums, decoder norms) are split across the pool's threads in
//! `super::split`, cut so that every result bit is the same as on one thread.

use super::activation::{ThresholdGrad, apply_rows, topk_among};
use super::params::{Activation, Arch, Dims, Params, ParamsMut, Penalty, check_grads};
use super::screen;
use super::sparse_path::{self, Acc, Model, Path, TILE};
use super::split;
use super::stack::{MemStack, StackReq};
#[cfg(doc)]
use crate::error::Error;
use crate::error::{Error as E, Result, check_finite, check_len, check_nonzero, mul};
use crate::kernels::gemm::{
    Epilogue, MatMut, MatRef, PackedB, SMALL_M, gemm, gemm_packed, pack_b, pack_len, packed_b_len,
    packs,
};
use crate::kernels::vector;

/// The block size the `*_scratch_len` functions are usually called with: large
/// enough for the GEMM to reach full speed.
pub const DEFAULT_BLOCK_ROWS: usize = 64;

/// The largest block an entry point will use, however much scratch it is given.
pub const MAX_BLOCK_ROWS: usize = 256;

/// The loss of a batch and its parts, each a mean over the batch's rows.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LossParts {
    /// `sq_err + α·l1 (+ aux)`, the quantity whose gradient [`loss_and_grad`] returns
    /// (without `α·l1` for [`Penalty::None`]).
    pub loss: f32,
    /// Mean over rows of `‖x − x̂‖²` (summed over the `d` coordinates, not averaged).
    pub sq_err: f32,
    /// Mean over rows of the penalty `P(f)` (not multiplied by α): `‖f‖₁`, or
    /// `Σ_i f_i‖W_dec,i‖` for [`Penalty::DecoderNormL1`].
    pub l1: f32,
    /// Mean over rows of the number of active features (codes `> 0`).
    pub l0: f32,
    /// The AuxK term included in `loss` (0 without [`AuxK`] or without dead latents).
    pub aux: f32,
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
            aux: 0.0,
        }
    }
}

/// The AuxK dead-latent loss of Gao et al. (2024), with SAELens v6's semantics (TopK
/// models only):
///
/// ```text
/// m     = number of dead latents,  k' = min(k_aux, m),  s = min(m / k_aux, 1)
/// A     = the k' largest pre-activations among the dead latents of each row, raw
///         (no ReLU), 0 elsewhere (ties: lowest index, as for TopK)
/// L_aux = coefficient · s · (1/n)·Σ_rows ‖A·W_dec − (x − x̂)‖²
/// ```
///
/// The residual `x − x̂` is a constant (detached), and the auxiliary reconstruction has
/// no `b_dec` (it is already in the residual; SAELens ≥ 6 and OpenAI agree). Gradients
/// reach `W_dec` (rows of the selected latents) and, through the selected
/// pre-activations, `W_enc`, `b_enc` and (with input centring) `b_dec`. With no dead
/// latent the term is 0. On the sparse path the selections join the active codes as
/// entries of their own (see [`super::Path`]).
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
    fn check(&self, arch: Arch, h: usize) -> Result<()> {
        if !matches!(arch.activation, Activation::TopK { .. }) {
            return Err(E::OutOfRange {
                arg: "aux",
                allowed: "AuxK needs a TopK activation",
            });
        }
        check_len("dead", self.dead.len(), h)?;
        if self.k_aux == 0 {
            return Err(E::OutOfRange {
                arg: "k_aux",
                allowed: "k_aux must be at least 1",
            });
        }
        check_finite("coefficient", self.coefficient)
    }
}

/// The per-call options of [`forward`] and [`loss_and_grad`].
///
/// ```
/// use sae_kernels::model::{LossOptions, Path};
/// let o = LossOptions { path: Path::Dense, ..LossOptions::alpha(1e-3) };
/// assert_eq!((o.alpha, o.aux), (1e-3, None));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LossOptions<'a> {
    /// The penalty coefficient α (finite; ignored for [`Penalty::None`]).
    pub alpha: f32,
    /// Dense, sparse or automatic decoder and backward products.
    pub path: Path,
    /// The AuxK loss (TopK models), or `None`.
    pub aux: Option<AuxK<'a>>,
    /// JumpReLU models: the bandwidth `ε` of the straight-through estimator that gives
    /// the thresholds a gradient (SAELens `jumprelu_bandwidth`, 0.05 by default; see
    /// [`super::activation`]). 0 or a positive normal float (`≥ f32::MIN_POSITIVE`;
    /// `1/ε` of a subnormal `ε` overflows); 0 (the default) leaves the thresholds'
    /// gradient at 0 (frozen thresholds, or evaluation only). Ignored for other
    /// activations. The threshold gradient scales as `θ/ε`, so a tiny normal `ε` can
    /// still give gradients that overflow; the optimizer then refuses the step and
    /// leaves the parameters unchanged.
    pub jumprelu_bandwidth: f32,
}

/// The JumpReLU bandwidth's contract, shared by [`LossOptions`] and the training
/// options: 0 (frozen thresholds) or a positive *normal* float. The estimator divides by
/// `ε`; for a subnormal `ε` the scale `1/ε` already overflows, so every in-band row
/// would give an infinite threshold gradient (a real bandwidth is orders of magnitude
/// above `f32::MIN_POSITIVE`: SAELens uses 0.05, its papers 0.001).
pub(crate) fn check_bandwidth(bandwidth: f32) -> Result<()> {
    check_finite("jumprelu_bandwidth", bandwidth)?;
    if bandwidth == 0.0 || (bandwidth > 0.0 && bandwidth.is_normal()) {
        Ok(())
    } else {
        Err(E::OutOfRange {
            arg: "jumprelu_bandwidth",
            allowed: "must be 0 or a positive normal float (>= f32::MIN_POSITIVE)",
        })
    }
}

impl LossOptions<'_> {
    /// α, with the automatic path and no AuxK.
    #[must_use]
    pub const fn alpha(alpha: f32) -> Self {
        Self {
            alpha,
            path: Path::Auto,
            aux: None,
            jumprelu_bandwidth: 0.0,
        }
    }

    fn check(&self, arch: Arch, h: usize) -> Result<()> {
        check_finite("alpha", self.alpha)?;
        check_bandwidth(self.jumprelu_bandwidth)?;
        if let Some(a) = self.aux {
            a.check(arch, h)?;
        }
        Ok(())
    }

    /// α as applied: 0 for [`Penalty::None`].
    fn effective_alpha(&self, arch: Arch) -> f32 {
        if arch.penalty == Penalty::None {
            0.0
        } else {
            self.alpha
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
    /// Per-row penalty `P(f)` (`‖c‖₁` for L1 and none, the number of active codes
    /// for L0), `n` entries.
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

// ----------------------------------------------------------------------------------
// Scratch plans: one list of slots per operation, used by the size query and the carving.

const fn is_topk(arch: Arch) -> bool {
    matches!(arch.activation, Activation::TopK { .. })
}

const fn rows_of(block_rows: usize) -> usize {
    if block_rows < 1 {
        1
    } else if block_rows > MAX_BLOCK_ROWS {
        MAX_BLOCK_ROWS
    } else {
        block_rows
    }
}

/// Encoder slots: centred input (with centring), TopK selection, encoder pack buffer,
/// the bf16 screen (where it can run, see `screen`). `block_rows` is taken as it is
/// (at least 1): [`encode`]'s blocks are not capped at [`MAX_BLOCK_ROWS`] (the other
/// plans pass blocks that are).
const fn encode_plan(arch: Arch, dims: Dims, block_rows: usize) -> [StackReq; 4] {
    let rows = if block_rows == 0 { 1 } else { block_rows };
    let Dims { d, h } = dims;
    [
        StackReq::mat(rows, if arch.centers_input() { d } else { 0 }),
        StackReq::f32s(if is_topk(arch) { h } else { 0 }),
        StackReq::f32s(pack_len(rows, h, d)),
        screen::scratch(arch, dims, rows),
    ]
}

/// Decoder slots: one row's active-feature list, decoder pack buffer.
const fn decode_plan(dims: Dims, block_rows: usize) -> [StackReq; 2] {
    let rows = rows_of(block_rows);
    [
        StackReq::u32s(dims.h),
        StackReq::f32s(pack_len(rows, dims.d, dims.h)),
    ]
}

/// Forward slots: codes, reconstruction, centred input, TopK selection, penalty
/// weights, a row's active list, AuxK pre-activations and residual, pack buffer.
const fn forward_plan(arch: Arch, dims: Dims, block_rows: usize) -> [StackReq; 9] {
    let rows = rows_of(block_rows);
    let Dims { d, h } = dims;
    let [xc, sel, _, _] = encode_plan(arch, dims, rows);
    let topk = is_topk(arch);
    let weighted = matches!(arch.penalty, Penalty::DecoderNormL1);
    [
        StackReq::mat(rows, h),
        StackReq::mat(rows, d),
        xc,
        sel,
        StackReq::f32s(if weighted { h } else { 0 }),
        StackReq::u32s(h),
        StackReq::mat(if topk { rows } else { 0 }, h),
        StackReq::mat(if topk { rows } else { 0 }, d),
        StackReq::any_of(&[
            StackReq::f32s(pack_len(rows, h, d)),
            StackReq::f32s(pack_len(rows, d, h)),
        ]),
    ]
}

/// Backward slots: codes, the dPre + residual area (the sparse super-block's area too),
/// centred input, TopK selection, penalty weights and per-feature code sums, one
/// encoder column, a row's active list, AuxK buffers (pre-activations, code gradient,
/// residual, the dead latents' compacted decoder rows and gradients), pack buffer.
const fn grad_plan(arch: Arch, dims: Dims, block_rows: usize) -> [StackReq; 13] {
    let rows = rows_of(block_rows);
    let Dims { d, h } = dims;
    let [xc, sel, _, _] = encode_plan(arch, dims, rows);
    let topk = is_topk(arch);
    let weighted = matches!(arch.penalty, Penalty::DecoderNormL1);
    let aux_rows = if topk { rows } else { 0 };
    // Pre-activations: AuxK's selection, or the JumpReLU thresholds' estimator.
    let jump = matches!(arch.activation, Activation::JumpRelu);
    let pre_rows = if topk || jump { rows } else { 0 };
    let mut packs = [
        StackReq::f32s(pack_len(rows, h, d)),
        StackReq::f32s(pack_len(rows, d, h)),
        StackReq::f32s(pack_len(h, d, rows)),
        StackReq::EMPTY,
        StackReq::EMPTY,
    ];
    if !arch.is_tied() {
        packs[3] = StackReq::f32s(pack_len(d, h, rows));
        packs[4] = StackReq::f32s(pack_len(1, d, h));
    }
    [
        StackReq::mat(rows, h),
        StackReq::mat(rows, h.saturating_add(d)),
        xc,
        sel,
        StackReq::f32s(if weighted { h } else { 0 }),
        StackReq::f32s(if weighted { h } else { 0 }),
        StackReq::mat(if arch.is_tied() { 0 } else { 1 + TILE }, d),
        StackReq::u32s(h),
        StackReq::mat(pre_rows, h),
        StackReq::mat(aux_rows, h),
        StackReq::mat(aux_rows, d),
        StackReq::mat(if topk { h } else { 0 }, d),
        StackReq::any_of(&packs),
    ]
}

/// Scratch `f32` for [`encode`] with blocks of `block_rows` rows (at least 1, not
/// capped at [`MAX_BLOCK_ROWS`]): the encoder's pack buffer `pack_len(rows, h, d)`,
/// plus `rows·d` for the centred input (with input centring) and `h` for the TopK
/// selection (TopK); saturating.
///
/// Each row block is one encoder product, which packs all of `W_enc` once, so a block
/// as large as the batch is the fastest for large batches. Without input centring the
/// length stops growing at `block_rows = 128` (the pack buffer's size is capped) and
/// that much scratch encodes any batch in one block; with centring a block of `rows`
/// rows costs `rows·d` more.
#[must_use]
pub const fn encode_scratch_len(arch: Arch, dims: Dims, block_rows: usize) -> usize {
    StackReq::all_of(&encode_plan(arch, dims, block_rows)).len()
}

/// Scratch `f32` for [`decode`] with blocks of `block_rows` rows: `h` for one row's
/// active-feature list and the decoder's pack buffer `pack_len(rows, d, h)`.
#[must_use]
pub const fn decode_scratch_len(dims: Dims, block_rows: usize) -> usize {
    StackReq::all_of(&decode_plan(dims, block_rows)).len()
}

/// Scratch `f32` for [`forward`] with blocks of `block_rows` rows: `rows·(h + d)` for
/// codes and reconstruction, `h` for a row's active list, the encoder/decoder pack
/// buffer, and for some architectures `rows·d` (centred input), `h` (TopK selection,
/// decoder norms) and `rows·(h + d)` (AuxK, TopK).
#[must_use]
pub const fn forward_scratch_len(arch: Arch, dims: Dims, block_rows: usize) -> usize {
    StackReq::all_of(&forward_plan(arch, dims, block_rows)).len()
}

/// Scratch `f32` for [`loss_and_grad`] with blocks of `block_rows` rows:
/// `rows·(2h + d)` (codes, code gradient, residual), `h` for a row's active list, the
/// largest pack buffer of its products, and for some architectures `rows·d` (centred
/// input), `17·d` (untied: encoder-gradient columns), `h` (TopK selection), `2h`
/// (decoder-norm penalty) and
/// `rows·(2h + d) + h·d` (AuxK, TopK: its code gradient and residual, and the dead
/// latents' decoder rows gathered for its GEMMs).
#[must_use]
pub const fn grad_scratch_len(arch: Arch, dims: Dims, block_rows: usize) -> usize {
    StackReq::all_of(&grad_plan(arch, dims, block_rows)).len()
}

/// Scratch `f32` that [`loss_and_grad`] can use beyond
/// [`grad_scratch_len`]`(arch, dims, MAX_BLOCK_ROWS)`: enough for a sparse super-block to
/// hold a whole batch of `n` rows at the crossover density ([`Path`]'s
/// [`SPARSE_CROSSOVER`](super::SPARSE_CROSSOVER)`·h`
/// active codes per row; `k` for TopK when fewer), 0 if the plan's own area already
/// does. Saturating.
///
/// [`loss_and_grad`] takes the largest row block that fits its scratch (up to
/// [`MAX_BLOCK_ROWS`]) and gives every slot beyond that block's plan to the area. The
/// sparse path gathers a super-block's rows once per feature, so a batch cut into
/// several super-blocks streams the decoder and the weight gradients once per
/// super-block: measured at `(n, d, h) = (1024, 384, 3072)`, one thread, `loss_and_grad`
/// alone (best of 10, both scratch lengths interleaved in one process), at L0 305 it
/// took 93.7 ms with the plan's area against 74.6 ms with this much more, at L0 243
/// 75.2 against 69.4, at L0 108 48.4 against 44.1, and at L0 43 (one super-block
/// either way) the same. At that shape this is `1.4·10⁶` more `f32` (5.6 MB) on top
/// of `2.5·10⁶`.
///
/// ```
/// use sae_kernels::model::{Arch, Dims, grad_batch_extra_len, grad_scratch_len};
/// let dims = Dims::new(384, 3072)?;
/// let base = grad_scratch_len(Arch::standard(), dims, 256);
/// let extra = grad_batch_extra_len(Arch::standard(), dims, 1024);
/// assert!(extra > 0 && extra < base);
/// // Small batches fit the plan's area.
/// assert_eq!(grad_batch_extra_len(Arch::standard(), dims, 64), 0);
/// # Ok::<(), sae_kernels::Error>(())
/// ```
#[must_use]
pub const fn grad_batch_extra_len(arch: Arch, dims: Dims, n: usize) -> usize {
    let Dims { d, h } = dims;
    let rows = MAX_BLOCK_ROWS;
    let cross = (sparse_path::SPARSE_CROSSOVER as f64 * h as f64) as usize;
    let per_row = match arch.activation {
        Activation::TopK { k } if k < cross => k,
        _ => cross,
    };
    let need = sparse_path::super_len(n, n.saturating_mul(per_row), d, h, false);
    need.saturating_sub(StackReq::mat(rows, h.saturating_add(d)).len())
}

/// Scratch `f32` for the weights packed once per [`loss_and_grad`] call: `W_enc` (tied:
/// `Mᵀ`), `W_dec` and, untied, `W_decᵀ` in the GEMM's panel layout
/// ([`packed_b_len`]); about `2·h·d` (tied) or `3·h·d`; 0 on targets that never pack.
///
/// [`loss_and_grad`] uses it when its scratch holds this much beyond
/// [`grad_scratch_len`]`(arch, dims, MAX_BLOCK_ROWS)` plus [`grad_batch_extra_len`] for
/// its batch (what is left after that goes to the sparse area as before). Then the
/// first block that takes the dense path packs the weights, and every dense block after
/// it multiplies with them instead of packing the same weights again for its encoder,
/// decoder and `dPre` products (three packings of `h·d` per 256-row block otherwise).
/// Blocks on the sparse path never pack them. The results are the same bits either
/// way.
///
/// ```
/// use sae_kernels::model::{Arch, Dims, grad_prepack_len};
/// let dims = Dims::new(512, 4096)?;
/// assert!(grad_prepack_len(Arch::tied(), dims) >= 2 * 512 * 4096);
/// assert!(grad_prepack_len(Arch::standard(), dims) >= 3 * 512 * 4096);
/// # Ok::<(), sae_kernels::Error>(())
/// ```
#[must_use]
pub const fn grad_prepack_len(arch: Arch, dims: Dims) -> usize {
    let Dims { d, h } = dims;
    let enc = packed_b_len(d, h);
    let dec = packed_b_len(h, d);
    let both = enc.saturating_add(dec);
    if arch.is_tied() {
        both
    } else {
        both.saturating_add(enc)
    }
}

/// Whether this build packs products at all (a constant, so that the packed-weight
/// route compiles out where nothing packs, e.g. on a Cortex-M).
const PREPACK: bool = packs(SMALL_M + 1, 1, 1);

/// The weights packed once for a call's dense blocks ([`grad_prepack_len`]).
struct PackedWeights<'a> {
    /// The encoder's `B` (`d×h`): `W_enc`, or `Mᵀ` tied.
    enc: PackedB<'a>,
    /// The decoder's `B` (`h×d`): `W_dec`.
    dec: PackedB<'a>,
    /// `dPre`'s `B` (`d×h`): `W_decᵀ` (untied; tied, that is `enc`).
    dec_t: Option<PackedB<'a>>,
}

/// The three buffers of [`PackedWeights`], carved from the front of `buf`.
type PrepackBufs<'a> = (&'a mut [f32], &'a mut [f32], &'a mut [f32]);

impl<'a> PackedWeights<'a> {
    fn carve(arch: Arch, dims: Dims, buf: &'a mut [f32]) -> PrepackBufs<'a> {
        let Dims { d, h } = dims;
        let (enc, rest) = buf.split_at_mut(packed_b_len(d, h));
        let (dec, rest) = rest.split_at_mut(packed_b_len(h, d));
        let t = if arch.is_tied() {
            0
        } else {
            packed_b_len(d, h)
        };
        (enc, dec, &mut rest[..t])
    }

    fn new(p: &Params<'a>, (enc, dec, dec_t): PrepackBufs<'a>) -> Result<Self> {
        #[cfg(test)]
        tests::PREPACKS.with(|c| c.set(c.get() + 1));
        let Dims { d, h } = p.dims();
        let w_dec = MatRef::row_major("W_dec", p.decoder(), h, d)?;
        Ok(PackedWeights {
            enc: pack_b(p.encoder(), enc)?,
            dec: pack_b(w_dec, dec)?,
            dec_t: if p.arch().is_tied() {
                None
            } else {
                Some(pack_b(w_dec.t(), dec_t)?)
            },
        })
    }

    fn dec_t(&self) -> &PackedB<'a> {
        self.dec_t.as_ref().unwrap_or(&self.enc)
    }
}

/// The largest block size whose plan fits in `have` slots.
pub(crate) fn block_rows_for(have: usize, len: impl Fn(usize) -> usize) -> Result<usize> {
    let need = len(1);
    if have < need {
        return Err(E::WorkspaceTooSmall {
            arg: "scratch",
            needed: need,
            got: have,
        });
    }
    // len is monotone in the block size: binary search the largest that fits.
    let (mut lo, mut hi) = (1usize, MAX_BLOCK_ROWS);
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if len(mid) <= have {
            lo = mid
        } else {
            hi = mid - 1
        }
    }
    Ok(lo)
}

/// [`encode`]'s block size: the largest `rows ≤ n` whose plan fits in `have` slots
/// (not capped at [`MAX_BLOCK_ROWS`]: every block packs the whole encoder once).
fn encode_block_rows(have: usize, n: usize, len: impl Fn(usize) -> usize) -> Result<usize> {
    let need = len(1);
    if have < need {
        return Err(E::WorkspaceTooSmall {
            arg: "scratch",
            needed: need,
            got: have,
        });
    }
    // len is monotone in the block size: binary search the largest that fits.
    let (mut lo, mut hi) = (1usize, n.max(1));
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if len(mid) <= have {
            lo = mid
        } else {
            hi = mid - 1
        }
    }
    Ok(lo)
}

// ----------------------------------------------------------------------------------
// Block kernels shared by every entry point.

/// `xc ← x − b_dec` row by row.
fn centre(xb: &[f32], b_dec: &[f32], xc: &mut [f32]) {
    let d = b_dec.len();
    split::rows_mut(
        xc,
        d,
        xb,
        d,
        split::parts(),
        &|xc: &mut [f32], xb: &[f32]| {
            for (o, r) in xc.chunks_exact_mut(d).zip(xb.chunks_exact(d)) {
                for ((o, &a), &b) in o.iter_mut().zip(r).zip(b_dec) {
                    *o = a - b;
                }
            }
        },
    );
}

/// The encoder's input for a block: `x − b_dec` (in `xc`) with centring, else `x`.
fn encoder_input<'x>(p: &Params<'_>, xb: &'x [f32], xc: &'x mut [f32]) -> &'x [f32] {
    match p.b_dec() {
        Some(b) if p.arch().centers_input() => {
            let xc = &mut xc[..xb.len()];
            centre(xb, b, xc);
            xc
        }
        _ => xb,
    }
}

/// `codes ← act(xin·W_enc + b_enc)` for one block (`xin` `rows×d`, `codes` `rows×h`);
/// with `pre_out`, the pre-activations are copied there too.
///
/// Without `pre_out` the bias and a ReLU are applied in the GEMM's store (no separate
/// pass over the codes), for every activation: TopK and JumpReLU then run on
/// `relu(pre)`, which gives the same codes bit for bit. TopK keeps the same positive
/// entries (ReLU does not reorder them, ties still go to the lowest index), and when a
/// row has fewer than `k` positive entries the other kept ones are `0` either way
/// (ReLU keeps NaN, of either sign, as NaN, so NaNs are kept in the same cases);
/// JumpReLU's `relu(v)·1[v > θ]` equals `relu(r)·1[r > θ]` for `r = relu(v)` for
/// every `θ` (for `θ < 0` and `v ≤ 0` both are 0).
#[allow(clippy::too_many_arguments)]
fn encode_block(
    p: &Params<'_>,
    xin: &[f32],
    rows: usize,
    codes: &mut [f32],
    sel: &mut [f32],
    pack: &mut [f32],
    pre_out: Option<&mut [f32]>,
    packed: Option<&PackedB<'_>>,
) -> Result<()> {
    let Dims { d, h } = p.dims();
    let fused = pre_out.is_none();
    let epilogue = if fused {
        Epilogue::BiasRelu(p.b_enc())
    } else {
        Epilogue::None
    };
    let xm = MatRef::row_major("x", xin, rows, d)?;
    let cm = MatMut::row_major("codes", codes, rows, h)?;
    match packed.filter(|_| PREPACK) {
        Some(b) => gemm_packed(1.0, xm, b, 0.0, cm, epilogue, pack)?,
        None => gemm(1.0, xm, p.encoder(), 0.0, cm, epilogue, pack)?,
    }
    if let Some(pre) = pre_out {
        for row in codes.chunks_exact_mut(h) {
            vector::axpy(1.0, p.b_enc(), row);
        }
        pre.copy_from_slice(codes);
    }
    if !(fused && p.arch().activation == Activation::Relu) {
        let th = p.threshold().unwrap_or(&[]);
        apply_rows(p.arch().activation, codes, h, th, sel);
    }
    Ok(())
}

/// `recon ← codes·W_dec (+ b_dec)` by the dense GEMM.
fn decode_dense(
    p: &Params<'_>,
    codes: &[f32],
    rows: usize,
    recon: &mut [f32],
    pack: &mut [f32],
    packed: Option<&PackedB<'_>>,
) -> Result<()> {
    let Dims { d, h } = p.dims();
    let cm = MatRef::row_major("codes", codes, rows, h)?;
    let rm = MatMut::row_major("recon", recon, rows, d)?;
    match packed.filter(|_| PREPACK) {
        Some(b) => gemm_packed(1.0, cm, b, 0.0, rm, Epilogue::None, pack)?,
        None => {
            let w = MatRef::row_major("W_dec", p.decoder(), h, d)?;
            gemm(1.0, cm, w, 0.0, rm, Epilogue::None, pack)?;
        }
    }
    if let Some(b) = p.b_dec() {
        split::rows_mut(
            recon,
            d,
            &[],
            0,
            split::parts(),
            &|r: &mut [f32], _: &[f32]| {
                for row in r.chunks_exact_mut(d) {
                    vector::axpy(1.0, b, row);
                }
            },
        );
    }
    Ok(())
}

/// The number of active codes (`> 0`) of a block of rows of `h` codes (split across
/// threads with `parallel`; an integer, the same for any split).
fn count_active(codes: &[f32], h: usize) -> usize {
    let n = core::sync::atomic::AtomicUsize::new(0);
    split::rows_mut(
        &mut [],
        0,
        codes,
        h,
        split::parts(),
        &|_: &mut [f32], c: &[f32]| {
            n.fetch_add(
                sparse_path::count_active(c),
                core::sync::atomic::Ordering::Relaxed,
            );
        },
    );
    n.into_inner()
}

/// The sparse path's view of the model; `w` are the penalty weights (or `None` for
/// weight 1), `add = α/n`.
fn sparse_model<'a>(p: &Params<'a>, w: Option<&'a [f32]>, add: f32) -> Model<'a> {
    let Dims { d, h } = p.dims();
    Model {
        d,
        h,
        dec: p.decoder(),
        b_dec: p.b_dec(),
        center: p.b_dec().filter(|_| p.arch().centers_input()),
        w,
        add,
    }
}

/// `recon ← codes·W_dec (+ b_dec)` on the dense or the sparse path.
#[allow(clippy::too_many_arguments)]
fn decode_block(
    p: &Params<'_>,
    sm: &Model<'_>,
    codes: &[f32],
    rows: usize,
    recon: &mut [f32],
    idx: &mut [u32],
    pack: &mut [f32],
    path: Path,
) -> Result<()> {
    let Dims { d, h } = p.dims();
    if sparse_path::use_sparse(path, count_active(codes, h), rows, h) {
        for (c, r) in codes.chunks_exact(h).zip(recon.chunks_exact_mut(d)) {
            let k = sparse_path::collect_row(c, idx);
            sparse_path::decode_row(sm, c, &idx[..k], r);
        }
        Ok(())
    } else {
        decode_dense(p, codes, rows, recon, pack, None)
    }
}

/// Per-row statistics of one block, added to `sums`; optionally stored per row.
/// With decoder-norm weights `w`, the penalty is `Σ_i f_i·w_i` instead of `‖f‖₁`
/// (with `l0`, the number of active codes).
///
/// The rows' terms are computed (split across threads with `parallel`) into per-row
/// values, then added to `sums` in row order on the calling thread: the same bits for
/// any split.
#[allow(clippy::too_many_arguments)]
fn block_stats(
    dims: Dims,
    xb: &[f32],
    codes: &[f32],
    recon: &[f32],
    w: Pen<'_>,
    sums: &mut Sums,
    mut row_sq: Option<&mut [f32]>,
    mut row_pen: Option<&mut [f32]>,
) {
    let Dims { d, h } = dims;
    let rows = xb.len() / d;
    let mut terms = [RowTerms::default(); STATS_CHUNK];
    for r0 in (0..rows).step_by(STATS_CHUNK) {
        let r = STATS_CHUNK.min(rows - r0);
        let t = &mut terms[..r];
        row_terms(
            dims,
            &xb[r0 * d..(r0 + r) * d],
            &codes[r0 * h..(r0 + r) * h],
            &recon[r0 * d..(r0 + r) * d],
            w,
            t,
            split::parts(),
        );
        for (i, t) in t.iter().enumerate() {
            sums.sq_err += f64::from(t.sq);
            sums.l1 += f64::from(t.pen);
            sums.l0 += t.active as f64;
            if let Some(o) = row_sq.as_deref_mut() {
                o[r0 + i] = t.sq;
            }
            if let Some(o) = row_pen.as_deref_mut() {
                o[r0 + i] = t.pen;
            }
        }
    }
}

/// Rows whose terms [`block_stats`] holds at once (on the stack): a whole block with
/// `parallel` (one split per block), a few rows without.
const STATS_CHUNK: usize = if cfg!(feature = "parallel") {
    MAX_BLOCK_ROWS
} else {
    8
};

/// One row's loss terms: squared error, penalty, number of active codes.
#[derive(Clone, Copy, Default)]
struct RowTerms {
    sq: f32,
    pen: f32,
    active: usize,
}

/// The terms of the rows of `xb`/`codes`/`recon` into `out` (one per row), over up to
/// `parts` threads.
fn row_terms(
    dims: Dims,
    xb: &[f32],
    codes: &[f32],
    recon: &[f32],
    w: Pen<'_>,
    out: &mut [RowTerms],
    parts: usize,
) {
    let Dims { d, h } = dims;
    let rows = out.len();
    let row_len = 2 * d + h;
    let split = parts >= 2 && rows >= 2 && split::worth_splitting(rows * row_len);
    let per = if split {
        (split::PIECE / row_len).clamp(1, rows)
    } else {
        rows.max(1)
    };
    let work = out
        .chunks_mut(per)
        .zip(xb.chunks(per * d))
        .zip(codes.chunks(per * h))
        .zip(recon.chunks(per * d));
    split::for_each_claimed(split, parts, work, &|(((out, xb), codes), recon)| {
        for (((o, xr), c), rr) in out
            .iter_mut()
            .zip(xb.chunks_exact(d))
            .zip(codes.chunks_exact(h))
            .zip(recon.chunks_exact(d))
        {
            *o = RowTerms {
                sq: vector::sum_sq_diff(xr, rr),
                pen: code_penalty(c, w),
                active: c.iter().filter(|&&v| v > 0.0).count(),
            };
        }
    });
}

/// The penalty's weights: `Some(w)` for the decoder-norm L1, `None` for `‖f‖₁`; and
/// whether the penalty is [`Penalty::L0`] instead (the number of codes `> 0`).
type Pen<'a> = (Option<&'a [f32]>, bool);

/// A code row's penalty: the number of codes `> 0` for L0, `Σ_i c_i·w_i` with
/// decoder-norm weights, else `‖c‖₁`.
fn code_penalty(c: &[f32], (w, l0): Pen<'_>) -> f32 {
    let whole = c.len() - c.len() % 8;
    let mut lanes = [0.0f32; 8];
    penalty_lanes(&mut lanes, &c[..whole], w.map(|w| &w[..whole]), l0);
    penalty_finish(lanes, &c[whole..], w.map(|w| &w[whole..]), l0)
}

/// [`code_penalty`]'s running state over consecutive pieces of one row, each a whole
/// number of chunks of 8 (`w`: the same columns' weights): the 8 lane sums of
/// [`vector::dot`] / [`vector::l1`], or for L0 the count of codes `> 0` (lane 0).
#[inline(always)]
fn penalty_lanes(lanes: &mut [f32; 8], c: &[f32], w: Option<&[f32]>, l0: bool) {
    match w {
        _ if l0 => lanes[0] += c.iter().filter(|&&v| v > 0.0).count() as f32,
        Some(w) => vector::dot_lanes(lanes, c, w),
        None => vector::l1_lanes(lanes, c),
    }
}

/// A row's penalty from its [`penalty_lanes`] and its tail (the last `h mod 8` codes,
/// `w` their weights), combined as [`vector::dot`] / [`vector::l1`] combine theirs.
#[inline(always)]
fn penalty_finish(lanes: [f32; 8], tail: &[f32], w: Option<&[f32]>, l0: bool) -> f32 {
    if l0 {
        return lanes[0] + tail.iter().filter(|&&v| v > 0.0).count() as f32;
    }
    let mut s = vector::lanes_sum(lanes);
    match w {
        Some(w) => {
            for (x, y) in tail.iter().zip(w) {
                s += x * y;
            }
        }
        None => {
            for &t in tail {
                s += t.abs();
            }
        }
    }
    s
}

/// `w_i ← ‖W_dec,i‖₂`.
fn decoder_norms(p: &Params<'_>, w: &mut [f32]) {
    let d = p.dims().d;
    let dec = p.decoder();
    split::rows_mut(
        w,
        1,
        dec,
        d,
        split::parts(),
        &|w: &mut [f32], dec: &[f32]| {
            for (wi, row) in w.iter_mut().zip(dec.chunks_exact(d)) {
                *wi = crate::math::sqrtf(vector::sum_sq(row));
            }
        },
    );
}

/// AuxK state for one call: dead mask, `k'`, the gradient scale `2·coef·s/n` and the
/// loss scale `coef·s`; `None` when there is no AuxK or no dead latent.
#[derive(Clone, Copy)]
struct AuxState<'a> {
    dead: &'a [bool],
    k: usize,
    gscale: f32,
    lscale: f32,
}

fn aux_state<'a>(aux: Option<AuxK<'a>>, n: usize) -> Option<AuxState<'a>> {
    let a = aux?;
    let m = a.dead.iter().filter(|&&v| v).count();
    (m > 0).then(|| {
        let s = (m as f32 / a.k_aux as f32).min(1.0);
        AuxState {
            dead: a.dead,
            k: a.k_aux.min(m),
            gscale: 2.0 * a.coefficient * s / n as f32,
            lscale: a.coefficient * s,
        }
    })
}

/// AuxK on one block: `pre` (the block's pre-activations) becomes `A` (the `k'`
/// largest dead pre-activations per row; selected entries have non-zero bits),
/// `r ← A·W_dec − (x − x̂)`; returns `Σ r²`.
#[allow(clippy::too_many_arguments)]
fn aux_block(
    p: &Params<'_>,
    a: &AuxState<'_>,
    pre: &mut [f32],
    xb: &[f32],
    recon: &[f32],
    r: &mut [f32],
    sel: &mut [f32],
    pack: &mut [f32],
) -> Result<f64> {
    let Dims { d, h } = p.dims();
    let rows = xb.len() / d;
    for row in pre.chunks_exact_mut(h) {
        topk_among(row, a.dead, a.k, sel);
    }
    gemm(
        1.0,
        MatRef::row_major("aux", pre, rows, h)?,
        MatRef::row_major("W_dec", p.decoder(), h, d)?,
        0.0,
        MatMut::row_major("aux_resid", r, rows, d)?,
        Epilogue::None,
        pack,
    )?;
    let mut sum = 0.0f64;
    for ((v, &xv), &xh) in r.iter_mut().zip(xb).zip(recon) {
        *v -= xv - xh;
        sum += f64::from(*v) * f64::from(*v);
    }
    Ok(sum)
}

fn check_common(p: &Params<'_>, x: &[f32], n: usize, opts: &LossOptions<'_>) -> Result<()> {
    check_batch(p.dims(), x, n)?;
    opts.check(p.arch(), p.dims().h)
}

// ----------------------------------------------------------------------------------
// Entry points.

/// Codes of a batch: `codes ← act(x̄·W_enc + b_enc)`.
///
/// - `x`: `n×d` row-major; `codes`: `n×h` row-major (written, never read).
/// - `scratch`: at least [`encode_scratch_len`]`(arch, dims, 1)` `f32`.
///
/// # Errors
/// [`Error::Dimension`] if `n == 0`; [`Error::Length`] naming `x` or `codes`;
/// [`Error::WorkspaceTooSmall`] for `scratch`. Nothing is written on error.
///
/// # Example
/// ```
/// use sae_kernels::model::{Arch, Dims, Params, encode, encode_scratch_len};
/// let dims = Dims::new(2, 3)?;
/// let (w_enc, b_enc) = ([1.0, 0.0, 1.0, 0.0, 1.0, 1.0], [0.0, 0.0, -1.0]); // d×h, h
/// let (w_dec, b_dec) = ([1.0, 0.0, 0.0, 1.0, 0.5, 0.5], [0.0, 0.0]); // h×d, d
/// let p = Params::new(Arch::topk(1), dims, [&w_enc, &b_enc, &w_dec, &b_dec])?;
/// let mut codes = [0.0; 3];
/// let mut scratch = vec![0.0; encode_scratch_len(p.arch(), dims, 1)];
/// encode(p, &[2.0, 0.5], 1, &mut codes, &mut scratch)?;
/// assert_eq!(codes, [2.0, 0.0, 0.0]); // pre = [2, 0.5, 1.5]: only the largest is kept
/// # Ok::<(), sae_kernels::Error>(())
/// ```
pub fn encode(
    p: Params<'_>,
    x: &[f32],
    n: usize,
    codes: &mut [f32],
    scratch: &mut [f32],
) -> Result<()> {
    let (arch, dims) = (p.arch(), p.dims());
    let Dims { d, h } = dims;
    check_batch(dims, x, n)?;
    check_len("codes", codes.len(), mul("codes", n, h)?)?;
    let rb = encode_block_rows(scratch.len(), n, |r| encode_scratch_len(arch, dims, r))?;
    let mut enc = Encoder::new(p, rb, scratch)?;
    for r0 in (0..n).step_by(rb) {
        let rows = rb.min(n - r0);
        let cb = &mut codes[r0 * h..(r0 + rows) * h];
        enc.encode(&x[r0 * d..(r0 + rows) * d], rows, cb)?;
    }
    Ok(())
}

/// An encoder for a stream of row blocks: [`encode`] one block at a time, with the
/// per-call set-up done once. For models where the bf16 screen runs, the set-up
/// reads all of `W_enc` (its column norms; for ReLU and JumpReLU after probing the
/// first block), so a caller that encodes a batch in
/// blocks of its own (to turn each block's codes into sparse output, say) should hold
/// one `Encoder` rather than call [`encode`] per block. The codes are those of
/// [`encode`], bit for bit.
///
/// # Example
/// ```
/// use sae_kernels::model::{Arch, Dims, Encoder, Params, encode_scratch_len};
/// let dims = Dims::new(2, 3)?;
/// let (m, b) = ([1.0, 0.0, 0.0, 1.0, 1.0, 1.0], [0.0, 0.0, -1.0]); // tied: h×d, h
/// let p = Params::tied(dims, &m, &b)?;
/// let mut scratch = vec![0.0; encode_scratch_len(p.arch(), dims, 2)];
/// let mut enc = Encoder::new(p, 2, &mut scratch)?;
/// let x = [1.0, 2.0, 3.0, 0.0, 0.5, 0.5]; // three rows, encoded two at a time
/// let mut codes = [0.0; 9];
/// for (xb, cb) in x.chunks(4).zip(codes.chunks_mut(6)) {
///     enc.encode(xb, xb.len() / 2, cb)?;
/// }
/// assert_eq!(codes, [1.0, 2.0, 2.0, 3.0, 0.0, 2.0, 0.5, 0.5, 0.0]);
/// # Ok::<(), sae_kernels::Error>(())
/// ```
pub struct Encoder<'p, 's> {
    p: Params<'p>,
    block_rows: usize,
    xc: &'s mut [f32],
    sel: &'s mut [f32],
    pack: &'s mut [f32],
    #[cfg(target_arch = "x86_64")]
    screen: Option<screen::Screen<'s>>,
}

impl core::fmt::Debug for Encoder<'_, '_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Encoder")
            .field("arch", &self.p.arch())
            .field("dims", &self.p.dims())
            .field("block_rows", &self.block_rows)
            .finish_non_exhaustive()
    }
}

impl<'p, 's> Encoder<'p, 's> {
    /// An encoder for blocks of up to `block_rows` rows over `scratch`, which needs
    /// [`encode_scratch_len`]`(arch, dims, block_rows)` `f32`.
    ///
    /// # Errors
    /// [`Error::Dimension`] if `block_rows == 0`; [`Error::WorkspaceTooSmall`] for
    /// `scratch`.
    pub fn new(p: Params<'p>, block_rows: usize, scratch: &'s mut [f32]) -> Result<Self> {
        check_nonzero("block_rows", block_rows)?;
        let need = encode_scratch_len(p.arch(), p.dims(), block_rows);
        if scratch.len() < need {
            return Err(E::WorkspaceTooSmall {
                arg: "scratch",
                needed: need,
                got: scratch.len(),
            });
        }
        let [xc, sel, pack, _scr] =
            MemStack::new(scratch).split(encode_plan(p.arch(), p.dims(), block_rows));
        Ok(Encoder {
            #[cfg(target_arch = "x86_64")]
            screen: screen::Screen::new(&p, block_rows, _scr),
            p,
            block_rows,
            xc,
            sel,
            pack,
        })
    }

    /// The largest block [`Encoder::encode`] takes.
    #[must_use]
    pub fn block_rows(&self) -> usize {
        self.block_rows
    }

    /// `codes ← act(x̄·W_enc + b_enc)` for one block: `x` `rows×d`, `codes` `rows×h`
    /// (written, never read), `1 ≤ rows ≤ block_rows`.
    ///
    /// # Errors
    /// [`Error::Dimension`] naming `rows` if it is 0 or beyond `block_rows`;
    /// [`Error::Length`] naming `x` or `codes`. Nothing is written on error.
    pub fn encode(&mut self, x: &[f32], rows: usize, codes: &mut [f32]) -> Result<()> {
        let p = self.p;
        let Dims { h, .. } = p.dims();
        if rows > self.block_rows {
            return Err(E::Dimension {
                arg: "rows",
                expected: self.block_rows,
                got: rows,
            });
        }
        check_batch(p.dims(), x, rows)?;
        check_len("codes", codes.len(), mul("codes", rows, h)?)?;
        let xin = encoder_input(&p, x, self.xc);
        #[cfg(target_arch = "x86_64")]
        if let Some(s) = self.screen.as_mut()
            && s.encode_block(&p, xin, rows, codes, self.sel, self.pack)?
        {
            return Ok(());
        }
        encode_block(&p, xin, rows, codes, self.sel, self.pack, None, None)
    }
}

/// Reconstruction from codes: `recon ← codes·W_dec (+ b_dec)`, on the dense or the
/// sparse path as each row block's density decides ([`Path::Auto`]).
///
/// - `codes`: `n×h` row-major; `recon`: `n×d` row-major (written, never read).
/// - `scratch`: at least [`decode_scratch_len`]`(dims, 1)` `f32`.
///
/// # Errors
/// [`Error::Dimension`] if `n == 0`; [`Error::Length`] naming `codes` or `recon`;
/// [`Error::WorkspaceTooSmall`] for `scratch`. Nothing is written on error.
pub fn decode(
    p: Params<'_>,
    codes: &[f32],
    n: usize,
    recon: &mut [f32],
    scratch: &mut [f32],
) -> Result<()> {
    let dims = p.dims();
    let Dims { d, h } = dims;
    check_nonzero("n", n)?;
    check_len("codes", codes.len(), mul("codes", n, h)?)?;
    check_len("recon", recon.len(), mul("recon", n, d)?)?;
    let rb = block_rows_for(scratch.len(), |r| decode_scratch_len(dims, r))?;
    let mut stack = MemStack::new(scratch);
    let [idx, pack] = decode_plan(dims, rb);
    let idx = stack.u32s(idx);
    let pack = stack.f32s(pack);
    let sm = sparse_model(&p, None, 0.0);
    for r0 in (0..n).step_by(rb) {
        let rows = rb.min(n - r0);
        let cb = &codes[r0 * h..(r0 + rows) * h];
        let rcb = &mut recon[r0 * d..(r0 + rows) * d];
        decode_block(&p, &sm, cb, rows, rcb, idx, pack, Path::Auto)?;
    }
    Ok(())
}

/// The forward pass and loss of a batch, with whichever per-batch outputs are wanted.
///
/// - `x`: `n×d` row-major; `opts`: α, the path, AuxK (see [`LossOptions`]).
/// - `out`: optional codes (`n×h`), reconstruction (`n×d`), per-row squared error and
///   per-row penalty (`n` each).
/// - `scratch`: at least [`forward_scratch_len`]`(arch, dims, 1)` `f32`.
///
/// Returns the loss and its parts (means over rows), the same bits as
/// [`loss_and_grad`] reports for the same scratch length and path.
///
/// # Errors
/// [`Error::Dimension`] if `n == 0`; [`Error::NonFinite`] for `alpha`, the AuxK
/// coefficient or `jumprelu_bandwidth`; [`Error::Length`] naming `x`, an output or
/// `dead`; [`Error::OutOfRange`] naming `aux` (AuxK without TopK), `k_aux` or
/// `jumprelu_bandwidth` (negative or subnormal);
/// [`Error::WorkspaceTooSmall`] for `scratch`. Nothing is written on error.
///
/// # Example
/// ```
/// use sae_kernels::model::{Dims, ForwardOutputs, LossOptions, Params, forward, forward_scratch_len};
/// let dims = Dims::new(2, 3)?;
/// let m = [1.0, 0.0, 0.0, 1.0, 1.0, 1.0]; // 3 features in 2 dims
/// let b = [0.0, 0.0, -1.5];
/// let p = Params::tied(dims, &m, &b)?;
/// let mut codes = [0.0; 3];
/// let mut scratch = vec![0.0; forward_scratch_len(p.arch(), dims, 1)];
/// let out = ForwardOutputs { codes: Some(&mut codes), ..Default::default() };
/// let loss = forward(p, &[2.0, 0.0], 1, &LossOptions::alpha(0.1), out, &mut scratch)?;
/// assert_eq!(codes, [2.0, 0.0, 0.5]); // ReLU(x·Mᵀ + b)
/// assert_eq!(loss.l0, 2.0);
/// # Ok::<(), sae_kernels::Error>(())
/// ```
pub fn forward(
    p: Params<'_>,
    x: &[f32],
    n: usize,
    opts: &LossOptions<'_>,
    out: ForwardOutputs<'_>,
    scratch: &mut [f32],
) -> Result<LossParts> {
    let elems = n.saturating_mul(p.dims().d + p.dims().h);
    split::in_pool(elems, || forward_impl(p, x, n, opts, out, scratch))
}

fn forward_impl(
    p: Params<'_>,
    x: &[f32],
    n: usize,
    opts: &LossOptions<'_>,
    out: ForwardOutputs<'_>,
    scratch: &mut [f32],
) -> Result<LossParts> {
    let (arch, dims) = (p.arch(), p.dims());
    let Dims { d, h } = dims;
    check_common(&p, x, n, opts)?;
    out.check(dims, n)?;
    let ForwardOutputs {
        mut codes,
        mut recon,
        mut row_sq_err,
        mut row_l1,
    } = out;
    let rb = block_rows_for(scratch.len(), |r| forward_scratch_len(arch, dims, r))?;
    let mut stack = MemStack::new(scratch);
    let [
        codes_r,
        recon_r,
        xc_r,
        sel_r,
        w_r,
        idx_r,
        pre_r,
        ar_r,
        pack_r,
    ] = forward_plan(arch, dims, rb);
    let [codes_s, recon_s, xc, sel, w] = stack.split([codes_r, recon_r, xc_r, sel_r, w_r]);
    let idx = stack.u32s(idx_r);
    let [pre_s, ar_s, pack] = stack.split([pre_r, ar_r, pack_r]);
    let w: Pen<'_> = if arch.penalty == Penalty::DecoderNormL1 {
        decoder_norms(&p, w);
        (Some(w), false)
    } else {
        (None, arch.penalty == Penalty::L0)
    };
    let sm = sparse_model(&p, None, 0.0);
    let aux = aux_state(opts.aux, n);
    let mut aux_sum = 0.0f64;

    let mut sums = Sums::default();
    for r0 in (0..n).step_by(rb) {
        let rows = rb.min(n - r0);
        let xb = &x[r0 * d..(r0 + rows) * d];
        let xin = encoder_input(&p, xb, xc);
        let cb: &mut [f32] = match codes.as_deref_mut() {
            Some(c) => &mut c[r0 * h..(r0 + rows) * h],
            None => &mut codes_s[..rows * h],
        };
        let pre = aux.map(|_| &mut pre_s[..rows * h]);
        encode_block(&p, xin, rows, cb, sel, pack, pre, None)?;
        let rcb: &mut [f32] = match recon.as_deref_mut() {
            Some(r) => &mut r[r0 * d..(r0 + rows) * d],
            None => &mut recon_s[..rows * d],
        };
        decode_block(&p, &sm, cb, rows, rcb, idx, pack, opts.path)?;
        block_stats(
            dims,
            xb,
            cb,
            rcb,
            w,
            &mut sums,
            row_sq_err.as_deref_mut().map(|o| &mut o[r0..r0 + rows]),
            row_l1.as_deref_mut().map(|o| &mut o[r0..r0 + rows]),
        );
        if let Some(a) = &aux {
            let (pb, arb) = (&mut pre_s[..rows * h], &mut ar_s[..rows * d]);
            aux_sum += aux_block(&p, a, pb, xb, rcb, arb, sel, pack)?;
        }
    }
    let mut parts = sums.finish(n, opts.effective_alpha(arch));
    if let Some(a) = aux {
        parts.aux = (f64::from(a.lscale) * aux_sum / n as f64) as f32;
        parts.loss += parts.aux;
    }
    Ok(parts)
}

/// The loss and the exact gradient of every tensor of a batch (formulas in the
/// [module docs](crate::model)).
///
/// - `x`: `n×d` row-major; `opts`: α, the path, AuxK (see [`LossOptions`]).
/// - `grads`: a view of the model's shape (same architecture's tensors, same `dims`);
///   overwritten, never read, so it need not be zeroed. A JumpReLU threshold's
///   gradient is SAELens' straight-through estimate with
///   [`LossOptions::jumprelu_bandwidth`] `> 0`, else 0.
/// - `scratch`: at least [`grad_scratch_len`]`(arch, dims, 1)` `f32`. More is used:
///   up to [`grad_scratch_len`]`(arch, dims, MAX_BLOCK_ROWS)` for larger row blocks,
///   then [`grad_batch_extra_len`] to widen the sparse area, then
///   [`grad_prepack_len`] to pack the weights once for the dense blocks (which
///   changes no bit of the results).
///
/// On the sparse path a code that is exactly zero contributes nothing, as on the dense
/// path, with one difference for non-finite inputs: on the dense path `0·∞` in `Cᵀ·G`
/// spreads NaN to every decoder-gradient row, on the sparse path only to the active
/// features' rows. Both are non-finite, which [`crate::train::train_step`] refuses.
///
/// # Errors
/// As [`forward`], plus [`Error::Dimension`] naming `grads.d` / `grads.h` or
/// [`Error::OutOfRange`] naming `grads` if the gradient view does not have the model's
/// tensors. Nothing is written on error.
pub fn loss_and_grad(
    p: Params<'_>,
    x: &[f32],
    n: usize,
    opts: &LossOptions<'_>,
    grads: ParamsMut<'_>,
    scratch: &mut [f32],
) -> Result<LossParts> {
    loss_and_grad_fired(p, x, n, opts, grads, scratch, None)
}

/// [`loss_and_grad`], also setting `fired[i]` (`h` entries, overwritten) to whether
/// latent `i` is active (`> 0`) in some row of the batch, from the codes the pass
/// computes anyway (dead-latent tracking needs no second encoder pass).
pub(crate) fn loss_and_grad_fired(
    p: Params<'_>,
    x: &[f32],
    n: usize,
    opts: &LossOptions<'_>,
    grads: ParamsMut<'_>,
    scratch: &mut [f32],
    fired: Option<&mut [bool]>,
) -> Result<LossParts> {
    let elems = n.saturating_mul(p.dims().d + p.dims().h);
    split::in_pool(elems, || {
        loss_and_grad_impl(p, x, n, opts, grads, scratch, fired, true)
    })
}

/// `cols_route: false` keeps the row blocks where the column-block route
/// ([`encode_cols`]) would run (for tests: both give the same bits).
#[allow(clippy::too_many_arguments)]
fn loss_and_grad_impl(
    p: Params<'_>,
    x: &[f32],
    n: usize,
    opts: &LossOptions<'_>,
    grads: ParamsMut<'_>,
    scratch: &mut [f32],
    mut fired: Option<&mut [bool]>,
    cols_route: bool,
) -> Result<LossParts> {
    let (arch, dims) = (p.arch(), p.dims());
    let Dims { d, h } = dims;
    check_common(&p, x, n, opts)?;
    check_grads(&p, &grads)?;
    if let Some(f) = fired.as_deref() {
        check_len("fired", f.len(), h)?;
    }
    let rb = block_rows_for(scratch.len(), |r| grad_scratch_len(arch, dims, r))?;
    let plan = grad_plan(arch, dims, rb);
    // Scratch beyond the plan widens the sparse super-blocks' area
    // ([`grad_batch_extra_len`]).
    let surplus = scratch.len().saturating_sub(StackReq::all_of(&plan).len());
    // Beyond what the area needs for the whole batch, the weights packed once for the
    // dense blocks ([`grad_prepack_len`]).
    let pre_len = grad_prepack_len(arch, dims);
    let pre_len = if PREPACK
        && packs(rb, h, d)
        && pre_len > 0
        && surplus >= grad_batch_extra_len(arch, dims, n).saturating_add(pre_len)
    {
        pre_len
    } else {
        0
    };
    let surplus = surplus - pre_len;
    let mut stack = MemStack::new(scratch);
    let [
        codes_r,
        area_r,
        xc_r,
        sel_r,
        w_r,
        fsum_r,
        col_r,
        idx_r,
        pre_r,
        dpa_r,
        ar_r,
        dead_dec_r,
        pack_r,
    ] = plan;
    let area_r = area_r.and(StackReq::f32s(surplus));
    let [codes, area, xc, sel, w, fsum, col] =
        stack.split([codes_r, area_r, xc_r, sel_r, w_r, fsum_r, col_r]);
    let idx = stack.u32s(idx_r);
    let [pre_s, dpa_s, ar_s, dead_dec, pack] =
        stack.split([pre_r, dpa_r, ar_r, dead_dec_r, pack_r]);
    let pre_buf = stack.f32s(StackReq::f32s(pre_len));
    let mut prepack_bufs = (pre_len > 0).then(|| PackedWeights::carve(arch, dims, pre_buf));
    let mut packed_w: Option<PackedWeights<'_>> = None;
    let (col, tile) = col.split_at_mut(if arch.is_tied() { 0 } else { d });
    let weighted = arch.penalty == Penalty::DecoderNormL1;
    if weighted {
        decoder_norms(&p, w);
        fsum.fill(0.0);
    }
    let wv: Option<&[f32]> = weighted.then_some(&*w);
    let l0_pen = arch.penalty == Penalty::L0;
    let pen: Pen<'_> = (wv, l0_pen);
    let alpha = opts.effective_alpha(arch);
    let scale = 2.0 / n as f32;
    // The L0 penalty reaches only the thresholds (below), never the pre-activations.
    let add = if l0_pen { 0.0 } else { alpha / n as f32 };
    let sm = sparse_model(&p, wv, add);
    let aux = aux_state(opts.aux, n);
    let mut aux_sum = 0.0f64;
    // With AuxK, the front of `idx` lists the dead latents (ascending); the row-by-row
    // route that uses `idx` otherwise runs only without AuxK.
    let mut n_dead = 0usize;
    if let Some(a) = &aux {
        for (j, _) in a.dead.iter().enumerate().filter(|(_, d)| **d) {
            idx[n_dead] = j as u32;
            n_dead += 1;
        }
    }
    let (dead_list, idx) = idx.split_at_mut(n_dead);
    let dead_list: &[u32] = dead_list;
    // On the sparse path, AuxK runs as GEMMs over the compacted dead latents when that
    // is cheaper than one super-block entry per selection (layout below).
    let aux_gemm =
        aux.is_some_and(|a| sparse_path::aux_by_gemm(n_dead, a.k)) && 2 * n_dead + d <= h;
    let tied = arch.is_tied();
    let centre_in = arch.centers_input();
    // JumpReLU thresholds: SAELens' straight-through estimator (bandwidth > 0).
    let ste = match p.threshold() {
        Some(th) if opts.jumprelu_bandwidth > 0.0 => {
            let l0 = if l0_pen { alpha / n as f32 } else { 0.0 };
            Some(ThresholdGrad::new(th, opts.jumprelu_bandwidth, l0))
        }
        _ => None,
    };
    // Sparse TopK blocks with few dead latents take the dead pre-activations from their
    // own product over the encoder's dead columns (gathered once, at the back of
    // `dead_dec`, behind the GEMM route's `n_dead·d` rows), so the encoder keeps its
    // fused bias + ReLU and no block copies all `rows×h` pre-activations.
    let aux_pre_gemm =
        aux.is_some() && ste.is_none() && sparse_path::aux_pre_by_gemm_pays(n_dead, h);
    let (dead_dec, enc_dead) = dead_dec.split_at_mut(if aux_pre_gemm {
        dead_dec.len() - n_dead * d
    } else {
        dead_dec.len()
    });
    if aux_pre_gemm {
        sparse_path::gather_enc_cols(p.encoder(), dead_list, enc_dead);
    }
    let enc_dead: &[f32] = enc_dead;
    // The GEMM route's buffers: `dpa_s` holds the super-block's compacted selections
    // (`aux_cap×n_dead`) and their code gradient (as many); their residuals
    // (`aux_cap×d`) go to `dead_dec` between the gathered decoder rows (`n_dead×d`) and
    // the encoder columns when a block's rows fit there, else to `dpa_s` after the
    // other two (a block's rows fit when `2·n_dead + d ≤ h`). The area then keeps only
    // the main residuals, so AuxK does not shrink the super-blocks.
    let mid_rows = dead_dec.len().saturating_sub(n_dead * d) / d;
    let aux_r_mid = aux_gemm && mid_rows >= rb;
    let aux_cap = match (aux_gemm, aux_r_mid) {
        (false, _) => 0,
        (true, true) => (dpa_s.len() / (2 * n_dead)).min(mid_rows),
        (true, false) => dpa_s.len() / (2 * n_dead + d),
    };
    // The code gradient's penalty part for feature i (before the mask).
    let pen_add = |i: usize| add * wv.map_or(1.0, |w| w[i]);

    let parts = grads.parts();
    let g_th = parts.threshold;
    g_th.fill(0.0);
    let (g_enc, g_benc, g_dec, g_bdec) = (parts.enc, parts.b_enc, parts.dec, parts.b_dec);
    let mut acc = Acc {
        enc: g_enc,
        dec: g_dec,
        b_enc: g_benc,
        b_dec: (!tied).then_some(g_bdec),
        fsum,
        col,
        tile,
    };

    if let Some(f) = fired.as_deref_mut() {
        f.fill(false);
    }
    let mut sums = Sums::default();
    let split_parts = split::parts();
    // Whether the gradients hold values yet (else the next contribution overwrites them).
    let mut started = false;
    // `weights: false` leaves the weight gradients to a super-block that writes them.
    let start = |acc: &mut Acc<'_>, started: &mut bool, weights: bool| {
        if !*started {
            if weights {
                acc.enc.fill(0.0);
                if let Some(g) = acc.dec.as_deref_mut() {
                    g.fill(0.0);
                }
            }
            acc.b_enc.fill(0.0);
            if let Some(g) = acc.b_dec.as_deref_mut() {
                g.fill(0.0);
            }
            *started = true;
        }
    };
    // The pending sparse super-block: first row, rows, active codes.
    let (mut s0, mut s_rows, mut s_nnz) = (0usize, 0usize, 0usize);
    // An untied super-block holding the whole batch (nothing added before it) writes
    // every row of the weight gradients (no zero fill first), and knows each feature's
    // code sum when it reaches the feature: it adds the decoder-norm penalty's gradient
    // to the decoder rows then (they are in L1), instead of the pass over dW_dec at the
    // end (not with AuxK GEMMs, which add to dW_dec after it).
    let whole = |s0: usize, s_rows: usize| !tied && s0 == 0 && s_rows == n;
    let norm_in_flush = |s0: usize, s_rows: usize| weighted && !aux_gemm && whole(s0, s_rows);
    let flush = |s0: usize,
                 s_rows: &mut usize,
                 s_nnz: &mut usize,
                 area: &mut [f32],
                 sums: &mut Sums,
                 acc: &mut Acc<'_>,
                 started: &mut bool,
                 aux_sum: &mut f64,
                 dpa_s: &mut [f32],
                 dead_dec: &mut [f32],
                 pack: &mut [f32]|
     -> Result<()> {
        if *s_rows == 0 {
            return Ok(());
        }
        let (a_s, rest) = dpa_s.split_at_mut(aux_cap * n_dead);
        let (p_s, r_s) = rest.split_at_mut(aux_cap * n_dead);
        let (buf, mid) = dead_dec.split_at_mut(if aux_gemm { n_dead * d } else { 0 });
        let r_s = if aux_r_mid { mid } else { r_s };
        let mut cmp = aux_gemm.then(|| sparse_path::AuxGemm {
            dead: dead_list,
            a: &a_s[..*s_rows * n_dead],
            dpa: &mut p_s[..*s_rows * n_dead],
            ar: &mut r_s[..*s_rows * d],
            buf,
            pack,
        });
        let assign = whole(s0, *s_rows);
        start(acc, started, !assign);
        let xs = &x[s0 * d..(s0 + *s_rows) * d];
        let ax = aux.map(|a| (a.gscale, aux_sum));
        sparse_path::super_flush(
            &sm,
            xs,
            *s_rows,
            *s_nnz,
            area,
            scale,
            &mut sums.sq_err,
            ax,
            cmp.as_mut(),
            norm_in_flush(s0, *s_rows),
            assign,
            acc,
        )?;
        *s_rows = 0;
        *s_nnz = 0;
        Ok(())
    };
    let area_len = area.len();
    let pack_len_have = pack.len();
    let has_aux = aux.is_some();
    // Whether a super-block of `r` rows and `z` entries fits the area (and, with AuxK
    // as GEMMs, the pack buffer and the compacted selections' room).
    let fits = |r: usize, z| {
        sparse_path::super_need(r, z, d, h, has_aux && !aux_gemm).is_some_and(|v| v <= area_len)
            && (!aux_gemm
                || r <= aux_cap && sparse_path::aux_gemm_pack(r, d, n_dead, tied) <= pack_len_have)
    };
    // ReLU blocks after a sparse one count, append and sum their penalty in one pass over
    // the codes (below), bounded by the crossover and by the room in the area.
    let fused_ok = arch.activation == Activation::Relu && aux.is_none() && ste.is_none();
    // The most entries a block of `rows` rows may bring on that route to a super-block
    // holding `nnz`: within the crossover and the room in the area (a row may append
    // `h` after the cap), or `None`.
    let block_cap = |nnz: usize, rows: usize| {
        sparse_path::sparse_cap(opts.path, rows, h)
            .zip((area_len / 3).checked_sub(nnz + h))
            .map(|(cap, room)| cap.min(room))
    };
    let mut prev_sparse = true;
    // Rows below `cols_from` went to the super-block by the column-block route (below);
    // after it once falls back, the rest of the batch takes the row blocks.
    let (mut cols_from, mut cols_off) = (0usize, false);
    let dc = centred_width(arch, dims);
    for r0 in (0..n).step_by(rb) {
        if r0 < cols_from {
            continue;
        }
        // Once a block has gone sparse on the fused route, the following blocks, when
        // the first one's density predicts that they join the same super-block, are
        // encoded as one chunk column block by column block ([`encode_cols`]: each
        // packing of the encoder serves the whole chunk). The chunk is kept only if the
        // row blocks would have made the same super-block (each block within the
        // crossover and the room, each appended block fitting), so the entries, and
        // every result bit, are the same as on the row-block route; else that route
        // runs from here, encoding the chunk's rows again.
        // (Only where the products pack: that packing is what the chunk shares. On
        // targets that never pack, e.g. a Cortex-M, the route compiles out.)
        if fused_ok
            && prev_sparse
            && cols_route
            && packs(rb, h, d)
            && !cols_off
            && s_rows > 0
            && s0 + s_rows == r0
            && let Some((r_cols, nc)) = cols_plan(
                (rb, n - r0),
                (s_rows, s_nnz),
                opts.path,
                dims,
                dc,
                (codes.len(), pack.len()),
                &fits,
            )
        {
            #[cfg(test)]
            tests::COL_TRIES.with(|c| c.set(c.get() + 1));
            let l1_before = sums.l1;
            let mut l0 = 0usize;
            let mut sub = [0usize; COL_MAX_BLOCKS];
            let cap = (area_len / 3).saturating_sub(h);
            let got = encode_cols(
                &p,
                &x[r0 * d..(r0 + r_cols) * d],
                r_cols,
                nc,
                codes,
                pack,
                area,
                (s_rows, s_nnz, cap),
                fired.as_deref_mut(),
                pen,
                &mut l0,
                (&mut sub, rb),
                &mut |v| sums.l1 += f64::from(v),
            )?;
            // The row-block route's decisions, block by block.
            let same = got.is_some_and(|z| {
                let (mut sr, mut sz) = (s_rows, s_nnz);
                for (i, &count) in sub.iter().enumerate().take(r_cols.div_ceil(rb)) {
                    let rows_i = rb.min(r_cols - i * rb);
                    let within = block_cap(sz, rows_i).is_some_and(|cap_i| count <= cap_i);
                    if !(within && fits(sr + rows_i, sz + count)) {
                        return false;
                    }
                    (sr, sz) = (sr + rows_i, sz + count);
                }
                sz == z
            });
            if let (true, Some(z)) = (same, got) {
                #[cfg(test)]
                tests::COL_CHUNKS.with(|c| c.set(c.get() + 1));
                (s_rows, s_nnz) = (s_rows + r_cols, z);
                sums.l0 += l0 as f64;
                cols_from = r0 + r_cols;
                continue;
            }
            sums.l1 = l1_before;
            cols_off = true;
        }
        let rows = rb.min(n - r0);
        let xb = &x[r0 * d..(r0 + rows) * d];
        let cb = &mut codes[..rows * h];
        let xin = encoder_input(&p, xb, xc);
        let weights = packed_w.as_ref();
        // TopK keeps at most k codes per row: when that bound already decides for the
        // sparse path, it stands in for the count (the entries appended are exact).
        let bound = match arch.activation {
            Activation::TopK { k } => Some(rows.saturating_mul(k.min(h))),
            _ => None,
        };
        let pre_gemm =
            aux_pre_gemm && bound.is_some_and(|b| sparse_path::use_sparse(opts.path, b, rows, h));
        let pre = (!pre_gemm && (aux.is_some() || ste.is_some())).then(|| &mut pre_s[..rows * h]);
        encode_block(&p, xin, rows, cb, sel, pack, pre, weights.map(|w| &w.enc))?;
        // Appended at the end of the pending super-block while the triples have room
        // (a row may append `h` more after the cap); a block too dense for the path or
        // for the room left falls back to the count below (a flush, or the dense
        // route), with the penalty sums as they were.
        if fused_ok
            && prev_sparse
            && let Some(cap) = block_cap(s_nnz, rows)
        {
            let (l1_before, mut l0) = (sums.l1, 0usize);
            let z = sparse_path::super_append(
                cb,
                h,
                s_rows,
                s_nnz,
                cap,
                area,
                fired.as_deref_mut(),
                &mut l0,
                &mut |c| sums.l1 += f64::from(code_penalty(c, pen)),
            );
            match z {
                Some(z) if fits(s_rows + rows, z) => {
                    if s_rows == 0 {
                        s0 = r0;
                    }
                    (s_nnz, s_rows) = (z, s_rows + rows);
                    sums.l0 += l0 as f64;
                    continue;
                }
                _ => sums.l1 = l1_before,
            }
        }
        let mut active = match bound {
            Some(b) if sparse_path::use_sparse(opts.path, b, rows, h) => b,
            _ => count_active(cb, h),
        };
        let sparse = sparse_path::use_sparse(opts.path, active, rows, h);
        prev_sparse = sparse;
        if sparse && let Some(a) = &aux {
            // The AuxK selections join the super-block (entries of their own, or the
            // GEMM route's compacted rows): the dead latents' pre-activations, compacted
            // (`rows×n_dead` at the front of `pre_s`), then the k' largest of each row.
            if pre_gemm {
                let pa = &mut pre_s[..rows * n_dead];
                sparse_path::aux_pre_by_gemm(xin, enc_dead, p.b_enc(), dead_list, pa, pack)?;
            } else {
                sparse_path::compact_in_place(&mut pre_s[..rows * h], h, dead_list);
            }
            let keys: &mut [u32] = bytemuck::cast_slice_mut(&mut sel[..n_dead]);
            for row in pre_s[..rows * n_dead].chunks_exact_mut(n_dead) {
                sparse_path::select_compact(row, a.k, keys);
            }
            if !aux_gemm {
                // Every row keeps exactly k' = min(k_aux, dead) selections.
                active += rows * a.k;
            }
        }
        // (JumpReLU thresholds being trained need each row's residual with its
        // pre-activations: those blocks take the row-by-row route below.)
        if sparse && ste.is_none() {
            // Sparse blocks accumulate into a super-block as long as its entries, the
            // feature counts and its rows' residuals fit in the area: each touched row
            // of the weights and gradients is then loaded once per super-block.
            if s_rows > 0 && !fits(s_rows + rows, s_nnz + active) {
                flush(
                    s0,
                    &mut s_rows,
                    &mut s_nnz,
                    area,
                    &mut sums,
                    &mut acc,
                    &mut started,
                    &mut aux_sum,
                    dpa_s,
                    dead_dec,
                    pack,
                )?;
            }
            if fits(rows, active) {
                if s_rows == 0 {
                    s0 = r0;
                }
                // The code statistics in row order as the rows are appended (L0 is an
                // integer, the same sum in any order); the squared errors at the flush,
                // also in row order.
                let mut l0 = 0usize;
                let z = sparse_path::super_append(
                    cb,
                    h,
                    s_rows,
                    s_nnz,
                    active,
                    area,
                    fired.as_deref_mut(),
                    &mut l0,
                    &mut |c| sums.l1 += f64::from(code_penalty(c, pen)),
                );
                // `active` bounds the entries (counted, or TopK's `rows·k`).
                s_nnz = z.ok_or(crate::Error::Capacity {
                    arg: "sparse super-block",
                    capacity: active,
                    needed: active + 1,
                })?;
                let pa = &pre_s[..rows * n_dead];
                if aux.is_some() && !aux_gemm {
                    s_nnz = sparse_path::super_append_aux(pa, dead_list, s_rows, s_nnz, area);
                }
                if aux_gemm {
                    dpa_s[s_rows * n_dead..(s_rows + rows) * n_dead].copy_from_slice(pa);
                }
                s_rows += rows;
                sums.l0 += l0 as f64;
                continue;
            }
        }
        // Every other block marks its fired latents here (a super-block's as it appends).
        if let Some(f) = fired.as_deref_mut() {
            mark_fired(cb, f);
        }
        // Every other block starts after the pending super-block.
        flush(
            s0,
            &mut s_rows,
            &mut s_nnz,
            area,
            &mut sums,
            &mut acc,
            &mut started,
            &mut aux_sum,
            dpa_s,
            dead_dec,
            pack,
        )?;
        let first = !started;
        let (dpre, resid) = area.split_at_mut(rb * h);
        let gb = &mut resid[..rows * d];
        let pb = &mut dpre[..rows * h];
        if sparse && aux.is_some() {
            // A block too dense for the area with AuxK: the dense route below, whose
            // AuxK selection starts again from the pre-activations.
            encode_block(
                &p,
                encoder_input(&p, xb, xc),
                rows,
                cb,
                sel,
                pack,
                Some(&mut pre_s[..rows * h]),
                weights.map(|w| &w.enc),
            )?;
        }
        if sparse && aux.is_none() {
            // A block too dense for the area: one row at a time.
            start(&mut acc, &mut started, true);
            for (r, ((c, g), xr)) in cb
                .chunks_exact(h)
                .zip(gb.chunks_exact_mut(d))
                .zip(xb.chunks_exact(d))
                .enumerate()
            {
                let k = sparse_path::collect_row(c, idx);
                let ix = &idx[..k];
                sparse_path::decode_row(&sm, c, ix, g);
                block_stats(dims, xr, c, g, pen, &mut sums, None, None);
                vector::sub_scale_inplace(scale, g, xr);
                sparse_path::grad_row(&sm, c, ix, g, xr, &mut acc);
                if let Some(st) = &ste {
                    let dec = p.decoder();
                    let code_grad =
                        |i: usize| vector::dot(g, &dec[i * d..(i + 1) * d]) + pen_add(i);
                    st.add_row(&pre_s[r * h..(r + 1) * h], code_grad, g_th);
                }
            }
            continue;
        }
        started = true;
        // The first dense block packs the weights for the rest of the call (when the
        // scratch holds them, see [`grad_prepack_len`]).
        if PREPACK
            && packed_w.is_none()
            && let Some(bufs) = prepack_bufs.take()
        {
            packed_w = Some(PackedWeights::new(&p, bufs)?);
        }
        let weights = packed_w.as_ref();
        decode_dense(&p, cb, rows, gb, pack, weights.map(|w| &w.dec))?;
        block_stats(dims, xb, cb, gb, pen, &mut sums, None, None);
        if let Some(a) = &aux {
            let (pa, arb) = (&mut pre_s[..rows * h], &mut ar_s[..rows * d]);
            aux_sum += aux_block(&p, a, pa, xb, gb, arb, sel, pack)?;
            for v in arb.iter_mut() {
                *v *= a.gscale;
            }
        }
        // G = (2/n)(X̂ − X), in place of X̂.
        split::rows_mut(gb, d, xb, d, split_parts, &|g: &mut [f32], xr: &[f32]| {
            vector::sub_scale_inplace(scale, g, xr)
        });
        let beta = if first { 0.0 } else { 1.0 };
        let c_t = MatRef::row_major("codes", cb, rows, h)?.t();
        let g = MatRef::row_major("resid", gb, rows, d)?;
        let w_dec = MatRef::row_major("W_dec", p.decoder(), h, d)?;
        // dW_dec (+)= Cᵀ·G   (tied: the decoder's use of M)
        let gd: &mut [f32] = match acc.dec.as_deref_mut() {
            Some(g) => g,
            None => acc.enc,
        };
        gemm(
            1.0,
            c_t,
            g,
            beta,
            MatMut::row_major("dW_dec", gd, h, d)?,
            Epilogue::None,
            pack,
        )?;
        // dPre = G·W_decᵀ, then masked and shifted by (α/n)·w.
        let dpre_out = MatMut::row_major("dpre", pb, rows, h)?;
        match weights.filter(|_| PREPACK) {
            Some(w) => gemm_packed(1.0, g, w.dec_t(), 0.0, dpre_out, Epilogue::None, pack)?,
            None => gemm(1.0, g, w_dec.t(), 0.0, dpre_out, Epilogue::None, pack)?,
        }
        if let Some(st) = &ste {
            // From the code gradient before the mask.
            for (prow, pr) in pb.chunks_exact(h).zip(pre_s[..rows * h].chunks_exact(h)) {
                st.add_row(pr, |i| prow[i] + pen_add(i), g_th);
            }
        }
        // The mask, and the bias and feature sums over the masked rows: one sweep over
        // the block when nothing changes dPre after the mask (no AuxK) and the pass is
        // not split across threads, else the mask now and the sums after AuxK.
        let fused = aux.is_none() && !(split_parts >= 2 && split::worth_splitting(rows * h));
        if fused {
            let fs = if weighted { Some(&mut *acc.fsum) } else { None };
            mask_and_sums(pb, cb, add, wv, acc.b_enc, first, fs);
        } else {
            split::rows_mut(pb, h, cb, h, split_parts, &|pr: &mut [f32], cr: &[f32]| {
                mask_rows(pr, cr, add, wv)
            });
        }
        if aux.is_some() {
            let (pa, dpa, arb) = (
                &pre_s[..rows * h],
                &mut dpa_s[..rows * h],
                &ar_s[..rows * d],
            );
            let gd: &mut [f32] = match acc.dec.as_deref_mut() {
                Some(g) => g,
                None => acc.enc,
            };
            let rm = MatRef::row_major("aux_resid", arb, rows, d)?;
            // dW_dec += Aᵀ·R;  dPre += (R·W_decᵀ) on the selected entries.
            let at = MatRef::row_major("aux", pa, rows, h)?.t();
            gemm(
                1.0,
                at,
                rm,
                1.0,
                MatMut::row_major("dW_dec", gd, h, d)?,
                Epilogue::None,
                pack,
            )?;
            gemm(
                1.0,
                rm,
                w_dec.t(),
                0.0,
                MatMut::row_major("aux_dpre", dpa, rows, h)?,
                Epilogue::None,
                pack,
            )?;
            for ((gv, &a), &da) in pb.iter_mut().zip(pa).zip(dpa.iter()) {
                if a.to_bits() != 0 {
                    *gv += da;
                }
            }
        }
        let dpre_m = MatRef::row_major("dpre", pb, rows, h)?;
        if tied {
            // dM += dPreᵀ·X   (the encoder's use of M)
            let xm = MatRef::row_major("x", xb, rows, d)?;
            gemm(
                1.0,
                dpre_m.t(),
                xm,
                1.0,
                MatMut::row_major("dM", acc.enc, h, d)?,
                Epilogue::None,
                pack,
            )?;
        } else {
            // dW_enc (+)= X̄ᵀ·dPre
            let xm = MatRef::row_major("x", xin_again(&p, xb, xc), rows, d)?;
            gemm(
                1.0,
                xm.t(),
                dpre_m,
                beta,
                MatMut::row_major("dW_enc", acc.enc, d, h)?,
                Epilogue::None,
                pack,
            )?;
        }
        // Bias gradients and feature sums (row sums of dPre, G, F; each column in row
        // order, split by columns).
        if !fused {
            split::col_sums(pb, acc.b_enc, first, split_parts);
        }
        if let Some(db) = acc.b_dec.as_deref_mut() {
            split::col_sums(gb, db, first, split_parts);
        }
        if weighted && !fused {
            split::col_sums(cb, acc.fsum, false, split_parts);
        }
    }
    let norm_done = norm_in_flush(s0, s_rows);
    flush(
        s0,
        &mut s_rows,
        &mut s_nnz,
        area,
        &mut sums,
        &mut acc,
        &mut started,
        &mut aux_sum,
        dpa_s,
        dead_dec,
        pack,
    )?;
    if centre_in {
        // db_dec −= (Σ_rows dPre)·W_encᵀ   (x̄ = x − b_dec)
        if let Some(db) = acc.b_dec.as_deref_mut() {
            gemm(
                -1.0,
                MatRef::row_major("db_enc", acc.b_enc, 1, h)?,
                p.encoder().t(),
                1.0,
                MatMut::row_major("db_dec", db, 1, d)?,
                Epilogue::None,
                pack,
            )?;
        }
    }
    if let Some(w) = wv
        && !norm_done
    {
        // d(α/n Σ f_i ‖W_dec,i‖)/dW_dec,i = (α/n)·(Σ_rows f_i)·W_dec,i/‖W_dec,i‖
        let gd: &mut [f32] = match acc.dec.as_deref_mut() {
            Some(g) => g,
            None => acc.enc,
        };
        let fsum: &[f32] = acc.fsum;
        let f = |i0: usize, gd: &mut [f32], dec: &[f32]| {
            for (((grow, row), &fs), &wi) in gd
                .chunks_exact_mut(d)
                .zip(dec.chunks_exact(d))
                .zip(&fsum[i0..])
                .zip(&w[i0..])
            {
                sparse_path::add_norm_grad(add, fs, wi, row, grow);
            }
        };
        split::rows_mut_at(gd, d, p.decoder(), d, split_parts, &f);
    }
    let mut parts = sums.finish(n, alpha);
    if let Some(a) = aux {
        parts.aux = (f64::from(a.lscale) * aux_sum / n as f64) as f32;
        parts.loss += parts.aux;
    }
    Ok(parts)
}

/// The code gradient's mask over rows of a dense block (`pr`, `cr`: whole rows of
/// `dPre` and the codes): `g ← g + add·w_i` where the code is `> 0`, else `0`
/// (`w_i = 1` without decoder-norm weights).
fn mask_rows(pr: &mut [f32], cr: &[f32], add: f32, wv: Option<&[f32]>) {
    match wv {
        None => vector::relu_backward_add(cr, add, pr),
        Some(w) => {
            let h = w.len();
            for (prow, crow) in pr.chunks_exact_mut(h).zip(cr.chunks_exact(h)) {
                vector::relu_backward_add_weighted(crow, add, w, prow);
            }
        }
    }
}

/// [`mask_rows`] over a dense block (`pb`, `cb`: `rows×h`, `h = b_enc.len()`) and, in
/// the same sweep, `b_enc (+)= Σ_rows dPre` (with `first`, the first row copied) and
/// `fsum += Σ_rows codes` (decoder-norm penalty): each row is masked, then added while
/// it is still in L1, instead of a second pass over the block (`rows×h`, beyond L2 at
/// the SAE shapes). Every column adds its rows in order with the same operations as
/// `split::col_sums`, so the bits are those of the separate passes.
fn mask_and_sums(
    pb: &mut [f32],
    cb: &[f32],
    add: f32,
    wv: Option<&[f32]>,
    b_enc: &mut [f32],
    first: bool,
    mut fsum: Option<&mut [f32]>,
) {
    let h = b_enc.len();
    for (r, (prow, crow)) in pb.chunks_exact_mut(h).zip(cb.chunks_exact(h)).enumerate() {
        mask_rows(prow, crow, add, wv);
        if first && r == 0 {
            b_enc.copy_from_slice(prow);
        } else {
            vector::axpy(1.0, prow, b_enc);
        }
        if let Some(f) = fsum.as_deref_mut() {
            vector::axpy(1.0, crow, f);
        }
    }
}

/// Column blocks of the encoder for [`encode_cols`]: a multiple of every kernel's tile
/// width (4, 8, 16, 48), so a block's GEMM uses the same micro-kernels on the same
/// columns as the whole product and gives the same codes bit for bit.
const COL_STEP: usize = 48;
/// The column block [`encode_cols`] aims for (measured at `(1024, 384, 3072)`: 384 to
/// 512 columns ran the chunk's products fastest, 128 clearly slower).
const COL_BLOCK: usize = 384;
/// The most row blocks one column-block chunk covers (its per-block counts are on the
/// stack).
const COL_MAX_BLOCKS: usize = 16;

/// The centred input's slots per row: the encoder plan's slot for one row (`d` with
/// input centring, else 0).
const fn centred_width(arch: Arch, dims: Dims) -> usize {
    encode_plan(arch, dims, 1)[0].len()
}

/// The chunk of the column-block route after a pending super-block of `s_rows` rows
/// and `s_nnz` entries, at row blocks of `rb` rows with `left` rows to go: the most
/// rows (whole blocks, at most [`COL_MAX_BLOCKS`] of them, more than one) whose
/// entries, predicted from the super-block's density with a quarter to spare, still
/// fit it (`fits`) and leave each block within the crossover, with the column width
/// [`col_width`] gives for them in `buf_len` slots and a `pack_have` pack buffer.
fn cols_plan(
    (rb, left): (usize, usize),
    (s_rows, s_nnz): (usize, usize),
    path: Path,
    dims: Dims,
    dc: usize,
    (buf_len, pack_have): (usize, usize),
    fits: &dyn Fn(usize, usize) -> bool,
) -> Option<(usize, usize)> {
    // The super-block's entries per row and a quarter more, over `rows` rows.
    let predict = |rows: usize| {
        s_nnz
            .saturating_mul(5)
            .saturating_mul(rows)
            .div_ceil(4 * s_rows.max(1))
    };
    if sparse_path::sparse_cap(path, rb, dims.h).is_none_or(|c| predict(rb) > c) {
        return None;
    }
    let mut rows = left.min(COL_MAX_BLOCKS * rb);
    while rows > rb {
        let z = s_nnz.saturating_add(predict(rows));
        if fits(s_rows + rows, z)
            && let Some(nc) = col_width(rows, dims, dc, buf_len, pack_have)
        {
            return Some((rows, nc));
        }
        // Whole blocks only (the last may be short).
        rows = (rows - 1) / rb * rb;
    }
    None
}

/// The column width [`encode_cols`] can use for a chunk of `rows` rows in a `buf` of
/// `buf_len` slots and a pack buffer of `pack_have`: the chunk's centred input
/// (`rows·dc`), 8 penalty lanes per row and `rows×nc` codes fit `buf`, `nc` a multiple
/// of [`COL_STEP`] of at least two steps, at most [`COL_BLOCK`] (or `h`).
fn col_width(
    rows: usize,
    dims: Dims,
    dc: usize,
    buf_len: usize,
    pack_have: usize,
) -> Option<usize> {
    let Dims { d, h } = dims;
    let per_row = (buf_len / rows.max(1)).checked_sub(dc + 8)?;
    let nc = (per_row.min(COL_BLOCK) / COL_STEP * COL_STEP).min(h);
    (nc >= (2 * COL_STEP).min(h) && pack_len(rows, nc, d) <= pack_have).then_some(nc)
}

/// The encoder of a chunk of `rows` rows (`xb`, `rows×d`) run column block by column
/// block (`nc` columns, [`col_width`]) instead of row block by row block, appending
/// each block's active codes to the pending super-block ([`sparse_path::append_cols`],
/// rows numbered from `row0`, entries from `nnz`, at most `cap` in all). Each product
/// is `rows×d · d×nc`: one packing of those encoder columns serves every row of the
/// chunk while they are in L2, and its `rows×nc` codes are read back from L2, where
/// row blocks of the whole width pack all of `W_enc` again per block and write codes
/// that leave the cache.
///
/// Calls `row_pen` with each row's penalty in row order, the bits of [`code_penalty`]
/// (its [`penalty_lanes`] carried across the column blocks, then
/// [`penalty_finish`]), adds the codes `> 0` to `l0` and each row's entries to
/// `sub[r / per]`. `buf` holds the
/// centred input, the penalty lanes and the codes. `Ok(None)` when more than `cap`
/// entries came: the chunk is then for the row-block route (what was appended is
/// scratch; `fired` marks only codes `> 0`, which that route marks again).
#[allow(clippy::too_many_arguments)]
fn encode_cols(
    p: &Params<'_>,
    xb: &[f32],
    rows: usize,
    nc: usize,
    buf: &mut [f32],
    pack: &mut [f32],
    area: &mut [f32],
    (row0, nnz, cap): (usize, usize, usize),
    mut fired: Option<&mut [bool]>,
    pen: Pen<'_>,
    l0: &mut usize,
    (sub, per): (&mut [usize], usize),
    row_pen: &mut dyn FnMut(f32),
) -> Result<Option<usize>> {
    let (arch, dims) = (p.arch(), p.dims());
    let Dims { d, h } = dims;
    let (xc, rest) = buf.split_at_mut(rows * centred_width(arch, dims));
    let (lanes, rest) = rest.split_at_mut(rows * 8);
    let cblk = &mut rest[..rows * nc];
    let xin = encoder_input(p, xb, xc);
    lanes.fill(0.0);
    let (w, l0_pen) = pen;
    let whole = h - h % 8;
    let mut e = nnz;
    for j0 in (0..h).step_by(nc) {
        let ncb = nc.min(h - j0);
        let cb = &mut cblk[..rows * ncb];
        gemm(
            1.0,
            MatRef::row_major("x", xin, rows, d)?,
            p.encoder().col_range(j0, ncb)?,
            0.0,
            MatMut::row_major("codes", cb, rows, ncb)?,
            Epilogue::BiasRelu(&p.b_enc()[j0..j0 + ncb]),
            pack,
        )?;
        let Some(z) = sparse_path::append_cols(
            cb,
            ncb,
            j0,
            row0,
            (e, cap),
            area,
            fired.as_deref_mut(),
            l0,
            (&mut *sub, per),
        ) else {
            return Ok(None);
        };
        e = z;
        // Every block but the last ends on a multiple of 8 (`nc` is one), so the tail
        // `whole..h` falls in the last.
        let last = j0 + ncb == h;
        let hi = (j0 + ncb).min(whole);
        let (lanes8, _) = lanes.as_chunks_mut::<8>();
        for (c, ln) in cb.chunks_exact(ncb).zip(lanes8) {
            penalty_lanes(ln, &c[..hi - j0], w.map(|w| &w[j0..hi]), l0_pen);
            if last {
                row_pen(penalty_finish(
                    *ln,
                    &c[hi - j0..],
                    w.map(|w| &w[hi..]),
                    l0_pen,
                ));
            }
        }
    }
    Ok(Some(e))
}

/// `fired[i] |= codes[r, i] > 0` over the rows of a block (`fired.len() == h`).
fn mark_fired(codes: &[f32], fired: &mut [bool]) {
    for row in codes.chunks_exact(fired.len()) {
        for (f, &c) in fired.iter_mut().zip(row) {
            *f |= c > 0.0;
        }
    }
}

/// The encoder input of a block again (the centred rows are still in `xc`).
fn xin_again<'x>(p: &Params<'_>, xb: &'x [f32], xc: &'x [f32]) -> &'x [f32] {
    if p.arch().centers_input() {
        &xc[..xb.len()]
    } else {
        xb
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::gemm::PACKED_HITS;
    use core::sync::atomic::Ordering;
    use std::cell::Cell;
    use std::vec;
    use std::vec::Vec;

    std::thread_local! {
        /// Chunks the column-block route tried, and kept, on this thread.
        pub(super) static COL_TRIES: Cell<usize> = const { Cell::new(0) };
        pub(super) static COL_CHUNKS: Cell<usize> = const { Cell::new(0) };
        /// Calls that packed the weights once ([`PackedWeights::new`]) on this thread.
        pub(super) static PREPACKS: Cell<usize> = const { Cell::new(0) };
    }

    fn rand(len: usize, seed: u64, scale: f32) -> Vec<f32> {
        let mut v = crate::kernels::gemm::test_fill(len, seed);
        v.iter_mut().for_each(|x| *x *= scale);
        v
    }

    /// `loss_and_grad` with and without the column-block route: every bit of the loss
    /// parts, the gradients and the fired latents, for the tied model, the standard
    /// SAE (input centring, decoder-norm penalty) and an untied model with the plain L1
    /// penalty, at widths that leave a ragged last column block and a ragged tail of 8,
    /// with the route counted so that the comparison cannot pass by not running it.
    /// Also with scratch beyond the plan (a wider super-block area), and with a batch
    /// dense enough that the route gives up and the row blocks run again.
    #[test]
    #[cfg_attr(miri, ignore = "minutes under Miri")]
    fn column_route_gives_the_row_blocks_bits() {
        // (arch, d, h, n, b_enc, scale of the rows after the first 256-row block,
        // whether a chunk is kept without / with the extra scratch).
        let l1 = Arch {
            penalty: Penalty::L1,
            ..Arch::standard()
        };
        let std = Arch::standard();
        type Case = (Arch, usize, usize, usize, f32, f32, [bool; 2]);
        let cases: [Case; 5] = [
            (Arch::tied(), 40, 1000, 600, -1.2, 1.0, [true; 2]),
            (std, 24, 517, 600, -0.95, 1.0, [true; 2]),
            (l1, 16, 403, 700, -0.78, 1.0, [true; 2]),
            // Dense after the first block: the chunk passes its cap, the route gives
            // up, and the row blocks run (dense).
            (std, 24, 517, 600, -0.95, 3.0, [false; 2]),
            // Sparse, but denser after the first block than it predicts: the row
            // blocks would cut the batch into two super-blocks in the plan's area, so
            // the chunk is given up there; the wider area holds it.
            (std, 24, 517, 1000, -0.95, 1.4, [false, true]),
        ];
        for (ci, &(arch, d, h, n, bias, later, kept)) in cases.iter().enumerate() {
            let dims = Dims::new(d, h).unwrap();
            let len = arch.param_len(dims);
            let mut flat = rand(len, 7 + ci as u64, 0.3);
            ParamsMut::from_flat(arch, dims, &mut flat)
                .unwrap()
                .parts()
                .b_enc
                .fill(bias);
            let mut x = rand(n * d, 100 + ci as u64, 1.0);
            x[MAX_BLOCK_ROWS * d..].iter_mut().for_each(|v| *v *= later);
            let p = Params::from_flat(arch, dims, &flat).unwrap();
            let opts = LossOptions::alpha(0.01);
            let base = grad_scratch_len(arch, dims, MAX_BLOCK_ROWS);
            for (ei, extra) in [0, grad_batch_extra_len(arch, dims, n)]
                .into_iter()
                .enumerate()
            {
                let run = |cols: bool| {
                    let mut g = vec![f32::NAN; len];
                    let mut s = vec![f32::NAN; base + extra];
                    let mut fired = vec![false; h];
                    let before = (COL_TRIES.with(Cell::get), COL_CHUNKS.with(Cell::get));
                    let gm = ParamsMut::from_flat(arch, dims, &mut g).unwrap();
                    let l = loss_and_grad_impl(p, &x, n, &opts, gm, &mut s, Some(&mut fired), cols)
                        .unwrap();
                    let bits = [l.loss, l.sq_err, l.l1, l.l0, l.aux].map(f32::to_bits);
                    let g: Vec<u32> = g.iter().map(|v| v.to_bits()).collect();
                    let tries = COL_TRIES.with(Cell::get) - before.0;
                    (bits, g, fired, tries, COL_CHUNKS.with(Cell::get) - before.1)
                };
                let (rows, cols) = (run(false), run(true));
                let what = std::format!("case {ci}, extra {extra}");
                assert_eq!((rows.3, rows.4), (0, 0), "{what}");
                assert!(cols.3 > 0, "{what}: the route was not tried");
                assert_eq!(cols.4 > 0, kept[ei], "{what}: chunks kept {}", cols.4);
                assert_eq!(rows.0, cols.0, "{what}: loss parts");
                assert!(rows.1 == cols.1, "{what}: gradients differ");
                assert_eq!(rows.2, cols.2, "{what}: fired latents");
            }
        }
    }

    /// Scratch beyond the plan widens the super-block area: the gradients stay those of
    /// the dense path (to rounding), with and without it.
    #[test]
    #[cfg_attr(miri, ignore = "minutes under Miri")]
    fn wider_area_agrees_with_the_dense_path() {
        let (d, h, n) = (16usize, 300usize, 1000usize);
        let arch = Arch::standard();
        let dims = Dims::new(d, h).unwrap();
        let len = arch.param_len(dims);
        let mut flat = rand(len, 3, 0.3);
        ParamsMut::from_flat(arch, dims, &mut flat)
            .unwrap()
            .parts()
            .b_enc
            .fill(-0.25);
        let x = rand(n * d, 4, 1.0);
        let p = Params::from_flat(arch, dims, &flat).unwrap();
        let base = grad_scratch_len(arch, dims, MAX_BLOCK_ROWS);
        let extra = grad_batch_extra_len(arch, dims, n);
        assert!(extra > 0);
        let run = |path: Path, len_s: usize| {
            let mut g = vec![0.0f32; len];
            let mut s = vec![0.0f32; len_s];
            let opts = LossOptions {
                path,
                ..LossOptions::alpha(0.01)
            };
            let gm = ParamsMut::from_flat(arch, dims, &mut g).unwrap();
            let l = loss_and_grad(p, &x, n, &opts, gm, &mut s).unwrap();
            (l, g)
        };
        let (ld, gd) = run(Path::Dense, base);
        for len_s in [base, base + extra, base + 2 * extra] {
            let (ls, gs) = run(Path::Sparse, len_s);
            assert!((ld.loss - ls.loss).abs() <= 1e-5 * ld.loss.abs());
            let scale = gd.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            for (a, b) in gd.iter().zip(&gs) {
                assert!(
                    (a - b).abs() <= 1e-5 * scale,
                    "{a} vs {b} (scratch {len_s})"
                );
            }
        }
    }

    /// `loss_and_grad` with the weights packed once per call (scratch beyond the plan
    /// and the batch's area) and without: every bit of the loss parts and gradients,
    /// tied, standard (input centring, decoder-norm penalty, `W_decᵀ` packed apart
    /// from `W_enc`) and TopK with AuxK, on the dense path over several row blocks
    /// and on the automatic path (a dense first block, sparse blocks after it); the
    /// packing is counted so that the comparison cannot pass by not running it. Less
    /// scratch than the batch's area plus the packed weights leaves them unpacked.
    #[test]
    #[cfg_attr(miri, ignore = "minutes under Miri")]
    fn packed_weights_give_the_same_bits() {
        let (n, d, h) = (700usize, 40usize, 200usize);
        let dims = Dims::new(d, h).unwrap();
        for (arch, path) in [
            (Arch::tied(), Path::Dense),
            (Arch::standard(), Path::Dense),
            (Arch::standard(), Path::Auto),
            (Arch::topk(12), Path::Dense),
        ] {
            let len = arch.param_len(dims);
            let flat = rand(len, 5, 0.3);
            let mut x = rand(n * d, 6, 1.0);
            if path == Path::Auto {
                // Rows after the first block give few active codes.
                x[MAX_BLOCK_ROWS * d..].iter_mut().for_each(|v| *v *= 0.02);
            }
            let p = Params::from_flat(arch, dims, &flat).unwrap();
            let base = grad_scratch_len(arch, dims, MAX_BLOCK_ROWS);
            let extra = grad_batch_extra_len(arch, dims, n);
            let pre = grad_prepack_len(arch, dims);
            let dead: Vec<bool> = (0..h).map(|i| i % 5 == 0).collect();
            let run = |len_s: usize| {
                let mut g = vec![0.0f32; len];
                let mut s = vec![f32::NAN; len_s];
                let opts = LossOptions {
                    path,
                    aux: is_topk(arch).then_some(AuxK {
                        dead: &dead,
                        k_aux: 16,
                        coefficient: 1.0 / 32.0,
                    }),
                    ..LossOptions::alpha(0.01)
                };
                let gm = ParamsMut::from_flat(arch, dims, &mut g).unwrap();
                let before = PREPACKS.with(Cell::get);
                let hits = PACKED_HITS.load(Ordering::Relaxed);
                // (Not through `loss_and_grad`, which may run this on a pool thread:
                // the counter is the calling thread's.)
                let l = loss_and_grad_impl(p, &x, n, &opts, gm, &mut s, None, true).unwrap();
                let used = PACKED_HITS.load(Ordering::Relaxed) > hits;
                (l, g, PREPACKS.with(Cell::get) - before, used)
            };
            let (l0, g0, k0, _) = run(base + extra);
            let (l1, g1, k1, used) = run(base + extra + pre);
            let (_, _, k2, _) = run(base + extra + pre - 1);
            assert_eq!((k0, k1, k2), (0, 1, 0), "{arch:?} {path:?}");
            // (Other tests may run products with packed B at the same time, so only
            // this direction is checked.)
            assert!(used, "{arch:?} {path:?}: packed weights not used");
            let bits = |l: &LossParts| [l.loss, l.sq_err, l.l1, l.l0, l.aux].map(f32::to_bits);
            assert_eq!(bits(&l0), bits(&l1), "{arch:?} {path:?}");
            assert!(
                g0.iter().zip(&g1).all(|(a, b)| a.to_bits() == b.to_bits()),
                "{arch:?} {path:?}"
            );
        }
    }
}
