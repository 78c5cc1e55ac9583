//! What the training layer adds to a model ([`crate::model::Params`], any
//! [`Arch`]): the training-only options ([`TrainOptions`]: SAELens'
//! `rescale_acts_by_decoder_norm` and the AuxK loss), and one loss + gradient call whose
//! gradients come back as one flat buffer in canonical order
//! ([`crate::model::tensors`]), optionally reporting which latents fired.
//!
//! ## `rescale_acts_by_decoder_norm` (SAELens TopK training)
//! With [`TrainOptions::rescale_acts_by_decoder_norm`], the model trained is SAELens
//! v6's TopK training model: with `n_i = ‖W_dec,i‖`,
//! `pre_i = (x̄·W_enc + b_enc)_i · n_i`, `f = TopK(pre)`, `x̂ = Σ_i f_i·W_dec,i/n_i + b_dec`.
//! It is the plain untied model at the *effective* parameters
//! `W_enc' = W_enc·diag(n)`, `b_enc' = b_enc⊙n`, `W_dec' = diag(1/n)·W_dec` (SAELens'
//! fold on save), so the step evaluates the model's loss and gradient there and maps
//! the gradient back by the chain rule (`ŵ_i = W_dec,i/n_i`, `g'` the effective
//! gradients):
//!
//! ```text
//! dW_enc[:, i] = n_i · g'W_enc[:, i]        db_enc_i = n_i · g'b_enc_i        db_dec = g'b_dec
//! s_i          = Σ_j g'W_enc[j, i]·W_enc[j, i] + g'b_enc_i·b_enc_i
//! dW_dec,i     = (g'W_dec,i − (g'W_dec,i·ŵ_i)·ŵ_i) / n_i + s_i·ŵ_i
//! ```
//!
//! A row with `n_i = 0` contributes nothing (its effective row is 0, its gradient 0).
//! The AuxK loss then uses the effective (rescaled) pre-activations, as SAELens does.

use crate::error::{Error, Result, check_len};
use crate::kernels::isa;
use crate::kernels::vector;
use crate::model::tensors::{Tensors, TensorsMut};
use crate::model::{
    Activation, Arch, AuxK, Dims, LossOptions, LossParts, MAX_BLOCK_ROWS, Params, ParamsMut,
    grad_scratch_len,
};

/// The AuxK dead-latent loss of TopK training (see [`AuxK`] for the formula).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AuxKConfig {
    /// `k_aux ≥ 1`: SAELens and EleutherAI use `d / 2`.
    pub k_aux: usize,
    /// The loss coefficient: 1 in SAELens.
    pub coefficient: f32,
}

/// Training-only options of a model (beside its [`Arch`]).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct TrainOptions {
    /// SAELens' TopK training option (see the [`crate::train`] docs on rescaling);
    /// untied architectures without JumpReLU only.
    pub rescale_acts_by_decoder_norm: bool,
    /// The AuxK loss (TopK only; needs dead-latent tracking, [`super::DeadLatents`]).
    pub aux: Option<AuxKConfig>,
    /// JumpReLU only: the bandwidth of the thresholds' straight-through estimator
    /// ([`LossOptions::jumprelu_bandwidth`]; SAELens `jumprelu_bandwidth`, 0.05). 0
    /// (the default) keeps the thresholds frozen. 0 or a positive normal float.
    pub jumprelu_bandwidth: f32,
}

impl TrainOptions {
    /// SAELens v6 `topk` training defaults for input width `d`:
    /// `rescale_acts_by_decoder_norm`, AuxK with `k_aux = d/2` (at least 1) and
    /// coefficient 1.
    #[must_use]
    pub const fn saelens_topk(d: usize) -> Self {
        Self {
            rescale_acts_by_decoder_norm: true,
            aux: Some(AuxKConfig {
                k_aux: if d / 2 == 0 { 1 } else { d / 2 },
                coefficient: 1.0,
            }),
            jumprelu_bandwidth: 0.0,
        }
    }

    /// SAELens v6 `jumprelu` training defaults: thresholds trained with bandwidth
    /// 0.05 (`jumprelu_bandwidth`). The rest of SAELens' defaults live elsewhere: the
    /// L0 penalty in [`Arch::jumprelu`] with its coefficient (`l0_coefficient`, 1) as
    /// α, the initial thresholds (`jumprelu_init_threshold`, 0.01) in the caller's
    /// initialisation, the projection `θ ≥ 0` in [`super::train_step`].
    #[must_use]
    pub const fn saelens_jumprelu() -> Self {
        Self {
            rescale_acts_by_decoder_norm: false,
            aux: None,
            jumprelu_bandwidth: 0.05,
        }
    }

    /// Check the options against the architecture.
    ///
    /// # Errors
    /// [`Error::OutOfRange`] naming `rescale_acts_by_decoder_norm` for tied or JumpReLU
    /// models, `aux` without TopK, `k_aux` if 0, `jumprelu_bandwidth` if negative or
    /// subnormal; [`Error::NonFinite`] naming `coefficient` or `jumprelu_bandwidth`.
    pub fn validate(&self, arch: Arch) -> Result<()> {
        arch.validate()?;
        if self.rescale_acts_by_decoder_norm && arch.tensor_count() != 4 {
            return Err(Error::OutOfRange {
                arg: "rescale_acts_by_decoder_norm",
                allowed: "only for untied models without JumpReLU",
            });
        }
        if let Some(a) = self.aux {
            if !matches!(arch.activation, Activation::TopK { .. }) {
                return Err(Error::OutOfRange {
                    arg: "aux",
                    allowed: "AuxK needs a TopK activation",
                });
            }
            if a.k_aux == 0 {
                return Err(Error::OutOfRange {
                    arg: "k_aux",
                    allowed: "k_aux must be at least 1",
                });
            }
            crate::error::check_finite("coefficient", a.coefficient)?;
        }
        crate::model::core::check_bandwidth(self.jumprelu_bandwidth)
    }

    /// `f32` for the effective parameters, norms and chain-rule sums of
    /// rescaling (`2hd + 3h`), else 0.
    pub(crate) const fn effective_len(&self, dims: Dims) -> usize {
        if self.rescale_acts_by_decoder_norm {
            dims.m_len()
                .saturating_mul(2)
                .saturating_add(dims.h.saturating_mul(3))
        } else {
            0
        }
    }

    /// Scratch `f32` of [`loss_and_grad`] for `arch` with blocks of `block_rows`,
    /// excluding the gradient buffer: the effective parameters (rescaling) plus the
    /// model's [`grad_scratch_len`]. Reporting which latents fired (`track_dead`) needs
    /// nothing more: it is read from the codes the gradient pass computes.
    #[must_use]
    pub fn grad_scratch_len(
        &self,
        arch: Arch,
        dims: Dims,
        block_rows: usize,
        track_dead: bool,
    ) -> usize {
        let _ = track_dead;
        let rows = block_rows.clamp(1, MAX_BLOCK_ROWS);
        self.effective_len(dims)
            .saturating_add(grad_scratch_len(arch, dims, rows))
    }
}

/// A model being trained: a mutable view (any architecture) plus its training options.
/// A `ParamsMut` converts into one with `.into()` (no options).
#[derive(Debug)]
pub struct ModelMut<'a> {
    /// The parameters.
    pub params: ParamsMut<'a>,
    /// The training options.
    pub options: TrainOptions,
}

impl<'a> From<ParamsMut<'a>> for ModelMut<'a> {
    fn from(params: ParamsMut<'a>) -> Self {
        Self {
            params,
            options: TrainOptions::default(),
        }
    }
}

/// A read-only model plus its training options (the options matter for evaluation:
/// a model trained with rescaling is evaluated rescaled).
#[derive(Clone, Copy, Debug)]
pub struct ModelRef<'a> {
    /// The parameters.
    pub params: Params<'a>,
    /// The training options.
    pub options: TrainOptions,
}

impl<'a> From<Params<'a>> for ModelRef<'a> {
    fn from(params: Params<'a>) -> Self {
        Self {
            params,
            options: TrainOptions::default(),
        }
    }
}

impl<'a> ModelMut<'a> {
    /// The dimensions.
    #[must_use]
    pub fn dims(&self) -> Dims {
        self.params.dims()
    }

    /// The architecture.
    #[must_use]
    pub fn arch(&self) -> Arch {
        self.params.arch()
    }

    /// Reborrow read-only.
    #[must_use]
    pub fn as_ref(&self) -> ModelRef<'_> {
        ModelRef {
            params: self.params.as_ref(),
            options: self.options,
        }
    }

    /// Reborrow mutably.
    pub fn reborrow(&mut self) -> ModelMut<'_> {
        ModelMut {
            params: self.params.reborrow(),
            options: self.options,
        }
    }

    /// The parameters as named tensors, in canonical order.
    pub fn tensors_mut(&mut self) -> TensorsMut<'_> {
        self.params.tensors_mut()
    }
}

impl<'a> ModelRef<'a> {
    /// The dimensions.
    #[must_use]
    pub fn dims(&self) -> Dims {
        self.params.dims()
    }

    /// The architecture.
    #[must_use]
    pub fn arch(&self) -> Arch {
        self.params.arch()
    }

    /// The parameters as named tensors, in canonical order.
    #[must_use]
    pub fn tensors(&self) -> Tensors<'a> {
        self.params.tensors()
    }
}

/// A flat gradient buffer (`arch.param_len(dims)` `f32`) listed as named tensors in
/// the canonical order of `arch`.
///
/// # Errors
/// [`Error::Length`] naming `grads` if its length is not `arch.param_len(dims)`.
pub fn grad_tensors(arch: Arch, dims: Dims, grads: &[f32]) -> Result<Tensors<'_>> {
    check_len("grads", grads.len(), arch.param_len(dims))?;
    Ok(Params::from_flat(arch, dims, grads)?.tensors())
}

/// Fill the effective parameters of rescaling: `eff` = `[W_enc' | b_enc' | W_dec']`
/// (`2hd + h`), `norms` (`h`). One sweep per matrix: each decoder row is scaled while
/// it is still in cache from its norm; each encoder row is scaled by the norms.
#[inline(always)]
fn effective_params_impl(
    w_enc: &[f32],
    b_enc: &[f32],
    w_dec: &[f32],
    d: usize,
    h: usize,
    eff: &mut [f32],
    norms: &mut [f32],
) {
    let (we, rest) = eff.split_at_mut(d * h);
    let (be, wd) = rest.split_at_mut(h);
    for ((n, row), out) in norms
        .iter_mut()
        .zip(w_dec.chunks_exact(d))
        .zip(wd.chunks_exact_mut(d))
    {
        *n = crate::math::sqrtf(vector::sum_sq(row));
        let inv = if *n > 0.0 { 1.0 / *n } else { 0.0 };
        for (o, &v) in out.iter_mut().zip(row) {
            *o = v * inv;
        }
    }
    for (orow, irow) in we.chunks_exact_mut(h).zip(w_enc.chunks_exact(h)) {
        for ((o, &v), &n) in orow.iter_mut().zip(irow).zip(norms.iter()) {
            *o = v * n;
        }
    }
    for ((o, &v), &n) in be.iter_mut().zip(b_enc).zip(norms.iter()) {
        *o = v * n;
    }
}

/// Fill the effective parameters of rescaling: `eff` = `[W_enc' | b_enc' | W_dec']`
/// (`2hd + h`), `norms` (`h`), on the selected instruction set (products and the
/// norm's `sum_sq` are the same operations on each, so the same bits).
fn effective_params(p: &Params<'_>, eff: &mut [f32], norms: &mut [f32]) {
    let Dims { d, h } = p.dims();
    let t = p.tensors();
    let (w_enc, b_enc, w_dec) = (t[0].data, t[1].data, t[2].data);
    isa::vectorized(
        #[inline(always)]
        |_| effective_params_impl(w_enc, b_enc, w_dec, d, h, eff, norms),
    );
}

/// The effective model of rescaling in `eff` (`2hd + 3h`; the last `h` are left free
/// for the chain-rule sums), or `p` itself without rescaling.
pub(crate) fn effective<'e>(
    p: Params<'e>,
    options: TrainOptions,
    eff: &'e mut [f32],
) -> Result<(Params<'e>, &'e mut [f32])> {
    if !options.rescale_acts_by_decoder_norm {
        return Ok((p, eff));
    }
    let dims = p.dims();
    let (e, nr) = eff.split_at_mut(2 * dims.m_len() + dims.h);
    let (norms, _) = nr.split_at_mut(dims.h);
    effective_params(&p, e, norms);
    let (we, r) = e.split_at(dims.m_len());
    let (be, wd) = r.split_at(dims.h);
    let b_dec = p.tensors()[3].data;
    Ok((Params::new(p.arch(), dims, [we, be, wd, b_dec])?, nr))
}

/// Map effective-parameter gradients (flat, untied layout) back to the raw parameters,
/// in place (module docs). `nr`: the norms (`h`) then room for the sums (`h`).
///
/// One sweep per matrix: each row of `g'W_enc` adds its products with `W_enc` to the
/// sums `s` and is scaled by the norms in the same visit; each decoder row is then
/// mapped with its `s_i`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn unscale_grads_impl(
    w_enc: &[f32],
    b_enc: &[f32],
    w_dec: &[f32],
    d: usize,
    h: usize,
    nr: &mut [f32],
    g: &mut [f32],
) {
    let (norms, s) = nr.split_at_mut(h);
    let (gwe, rest) = g.split_at_mut(d * h);
    let (gbe, rest) = rest.split_at_mut(h);
    let gwd = &mut rest[..d * h];
    for (((si, gb), &b), &n) in s
        .iter_mut()
        .zip(gbe.iter_mut())
        .zip(b_enc)
        .zip(norms.iter())
    {
        *si = *gb * b;
        *gb *= n;
    }
    for (grow, wrow) in gwe.chunks_exact_mut(h).zip(w_enc.chunks_exact(h)) {
        for (((si, gv), &wv), &n) in s
            .iter_mut()
            .zip(grow.iter_mut())
            .zip(wrow)
            .zip(norms.iter())
        {
            *si += *gv * wv;
            *gv *= n;
        }
    }
    for (((grow, wrow), &n), &si) in gwd
        .chunks_exact_mut(d)
        .zip(w_dec.chunks_exact(d))
        .zip(norms.iter())
        .zip(s.iter())
    {
        if n > 0.0 {
            let inv = 1.0 / n;
            // ŵ = w/n;  g ← (g − (g·ŵ)ŵ)/n + s·ŵ
            let gw = vector::dot(grow, wrow) * inv;
            for (gv, &wv) in grow.iter_mut().zip(wrow) {
                let what = wv * inv;
                *gv = (*gv - gw * what) * inv + si * what;
            }
        } else {
            grow.fill(0.0);
        }
    }
}

/// [`unscale_grads_impl`] on the selected instruction set (the same operations in the
/// same order on each; `vector::dot` is the crate's one fixed-order dot).
fn unscale_grads(p: &Params<'_>, nr: &mut [f32], g: &mut [f32]) {
    let Dims { d, h } = p.dims();
    let t = p.tensors();
    let (w_enc, b_enc, w_dec) = (t[0].data, t[1].data, t[2].data);
    isa::vectorized(
        #[inline(always)]
        |_| unscale_grads_impl(w_enc, b_enc, w_dec, d, h, nr, g),
    );
}

/// The loss and gradients of `model` on `x` (`n×d`) with sparsity coefficient
/// `alpha`, the gradients written to `grads` (`arch.param_len(dims)` `f32`, canonical
/// order; see [`grad_tensors`]). `dead` (`h` entries) switches on the AuxK loss if the
/// options have one. With `fired` (`h` entries), each is set to whether that latent was
/// active in any row of the batch (for dead-latent tracking).
///
/// `scratch`: at least [`TrainOptions::grad_scratch_len`]`(arch, dims, 1,
/// fired.is_some())`.
///
/// # Errors
/// As [`crate::model::loss_and_grad`]; as [`TrainOptions::validate`];
/// [`Error::Length`] naming `grads`, `dead` or `fired`; [`Error::WorkspaceTooSmall`]
/// naming `scratch`.
#[allow(clippy::too_many_arguments)]
pub fn loss_and_grad(
    model: ModelRef<'_>,
    x: &[f32],
    n: usize,
    alpha: f32,
    dead: Option<&[bool]>,
    grads: &mut [f32],
    fired: Option<&mut [bool]>,
    scratch: &mut [f32],
) -> Result<LossParts> {
    let dims = model.dims();
    let arch = model.arch();
    let opts = model.options;
    opts.validate(arch)?;
    check_len("grads", grads.len(), arch.param_len(dims))?;
    if let Some(f) = fired.as_deref() {
        check_len("fired", f.len(), dims.h)?;
    }
    if let Some(dd) = dead {
        check_len("dead", dd.len(), dims.h)?;
    }
    let need = opts.grad_scratch_len(arch, dims, 1, fired.is_some());
    crate::error::check_scratch(scratch.len(), need)?;
    let (eff, rest) = scratch.split_at_mut(opts.effective_len(dims));
    let (p, nr) = effective(model.params, opts, eff)?;
    let aux = match (opts.aux, dead) {
        (Some(a), Some(dd)) => Some(AuxK {
            dead: dd,
            k_aux: a.k_aux,
            coefficient: a.coefficient,
        }),
        _ => None,
    };
    let lo = LossOptions {
        aux,
        jumprelu_bandwidth: opts.jumprelu_bandwidth,
        ..LossOptions::alpha(alpha)
    };
    let g = ParamsMut::from_flat(arch, dims, grads)?;
    let parts = crate::model::core::loss_and_grad_fired(p, x, n, &lo, g, rest, fired)?;
    if opts.rescale_acts_by_decoder_norm {
        unscale_grads(&model.params, nr, grads);
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rescaling sweeps compiled for each x86 instruction set the CPU has give the
    /// portable build's bits (runs every set the CPU has, whatever `SAE_KERNEL` says).
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    #[test]
    fn rescaling_sweeps_agree_across_instruction_sets() {
        use crate::kernels::isa::Kernel;
        let (d, h) = (13usize, 37usize);
        let mut state = 1u64;
        let mut next = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) % 2001) as f32 / 1000.0 - 1.0
        };
        let w_enc: [f32; 13 * 37] = core::array::from_fn(|_| next());
        let b_enc: [f32; 37] = core::array::from_fn(|_| next());
        let mut w_dec: [f32; 13 * 37] = core::array::from_fn(|_| next());
        w_dec[5 * d..6 * d].fill(0.0); // a zero row
        let g0: [f32; 2 * 13 * 37 + 37] = core::array::from_fn(|_| next());
        type Eff = ([f32; 2 * 13 * 37 + 37], [f32; 74], [f32; 2 * 13 * 37 + 37]);
        // Both sweeps compiled for `kern` (`None`: this CPU lacks it).
        let run = |kern: Kernel| -> Option<Eff> {
            let (mut eff, mut nr, mut g) = ([0.0f32; 2 * 13 * 37 + 37], [0.0f32; 74], g0);
            isa::vectorized_on(
                kern,
                #[inline(always)]
                |_| {
                    let (norms, _) = nr.split_at_mut(h);
                    effective_params_impl(&w_enc, &b_enc, &w_dec, d, h, &mut eff, norms);
                    unscale_grads_impl(&w_enc, &b_enc, &w_dec, d, h, &mut nr, &mut g);
                },
            )?;
            Some((eff, nr, g))
        };
        let bits = |e: &Eff| {
            let mut v = [0u32; 2 * (2 * 13 * 37 + 37) + 74];
            for (o, x) in v.iter_mut().zip(e.0.iter().chain(&e.1).chain(&e.2)) {
                *o = x.to_bits();
            }
            v
        };
        let want = run(Kernel::Portable).expect("the baseline build always runs");
        // The zero decoder row: norm 0, its gradient row 0.
        assert_eq!(want.1[5], 0.0);
        assert!(want.2[d * h + h + 5 * d..][..d].iter().all(|&v| v == 0.0));
        for kern in [Kernel::Avx2, Kernel::Avx512] {
            if let Some(got) = run(kern) {
                assert_eq!(bits(&got), bits(&want), "{kern:?}");
            }
        }
    }
}
