//! What the training layer needs from a model, for every architecture: its tensors in
//! canonical order ([`crate::model::tensors`]), its parameter count, and one loss +
//! gradient call whose gradients come back as one flat buffer in the same order.
//!
//! This is an adapter over today's two model entry points (the tied
//! [`crate::model::loss_and_grad`] and the untied
//! [`crate::model::untied_loss_and_grad`] / [`crate::model::untied_loss_and_grad_auxk`]),
//! so that the optimizer, [`super::train_step`], the streaming trainer and the metrics
//! are written once for all architectures.
//!
//! ## `rescale_acts_by_decoder_norm` (SAELens TopK training)
//! With [`UntiedArch::rescale_acts_by_decoder_norm`], the model trained is SAELens v6's
//! TopK training model: with `n_i = ‖W_dec,i‖`,
//! `pre_i = (x̄·W_enc + b_enc)_i · n_i`, `f = TopK(pre)`, `x̂ = Σ_i f_i·W_dec,i/n_i + b_dec`.
//! It is the plain untied model at the *effective* parameters
//! `W_enc' = W_enc·diag(n)`, `b_enc' = b_enc⊙n`, `W_dec' = diag(1/n)·W_dec` (SAELens'
//! fold on save), so the step evaluates the untied loss and gradient there and maps
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

use crate::error::{Error, Result, check_len};
use crate::kernels::vector;
use crate::model::tensors::{Role, TensorMut, TensorRef, Tensors, TensorsMut};
use crate::model::{
    Activation, AuxK, Dims, LossParts, MAX_BLOCK_ROWS, Penalty, TiedParams, TiedParamsMut,
    UntiedConfig, UntiedParams, UntiedParamsMut, encode_scratch_len, grad_scratch_len,
    untied_encode_scratch_len, untied_grad_auxk_scratch_len, untied_grad_scratch_len,
};

/// The activation of an untied SAE being trained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrainActivation {
    /// ReLU (SAELens `standard`).
    Relu,
    /// TopK then ReLU with this `k ≥ 1` (SAELens `topk`).
    TopK(usize),
}

/// The sparsity penalty of an untied SAE's training loss; its coefficient is the
/// step's `alpha` ([`super::StepHyper`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrainPenalty {
    /// No penalty (TopK).
    None,
    /// `α·Σ_i f_i`.
    L1,
    /// `α·Σ_i f_i·‖W_dec,i‖` (SAELens v6 `standard`).
    DecoderNormL1,
}

/// The AuxK dead-latent loss of TopK training (see [`AuxK`] for the formula).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AuxKConfig {
    /// `k_aux ≥ 1`: SAELens and EleutherAI use `d / 2`.
    pub k_aux: usize,
    /// The loss coefficient: 1 in SAELens.
    pub coefficient: f32,
}

/// An untied architecture and its fixed training hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct UntiedArch {
    /// The activation.
    pub activation: TrainActivation,
    /// The sparsity penalty.
    pub penalty: TrainPenalty,
    /// Encode `x − b_dec` (SAELens' default).
    pub apply_b_dec_to_input: bool,
    /// SAELens' TopK training option (see [`crate::train::loss_and_grad`]'s module).
    pub rescale_acts_by_decoder_norm: bool,
    /// The AuxK loss (needs dead-latent tracking, [`super::DeadLatents`]).
    pub aux: Option<AuxKConfig>,
}

impl UntiedArch {
    /// SAELens v6 `standard`: ReLU, decoder-norm-weighted L1, `b_dec` subtracted.
    #[must_use]
    pub const fn standard() -> Self {
        Self {
            activation: TrainActivation::Relu,
            penalty: TrainPenalty::DecoderNormL1,
            apply_b_dec_to_input: true,
            rescale_acts_by_decoder_norm: false,
            aux: None,
        }
    }

    /// SAELens v6 `topk` training defaults for input width `d`: TopK `k`,
    /// `rescale_acts_by_decoder_norm`, AuxK with `k_aux = d/2` (at least 1) and
    /// coefficient 1.
    #[must_use]
    pub const fn topk(k: usize, d: usize) -> Self {
        Self {
            activation: TrainActivation::TopK(k),
            penalty: TrainPenalty::None,
            apply_b_dec_to_input: true,
            rescale_acts_by_decoder_norm: true,
            aux: Some(AuxKConfig {
                k_aux: if d / 2 == 0 { 1 } else { d / 2 },
                coefficient: 1.0,
            }),
        }
    }

    pub(crate) fn config(&self) -> UntiedConfig<'static> {
        UntiedConfig {
            activation: match self.activation {
                TrainActivation::Relu => Activation::Relu,
                TrainActivation::TopK(k) => Activation::TopK { k },
            },
            apply_b_dec_to_input: self.apply_b_dec_to_input,
        }
    }

    fn penalty(&self, alpha: f32) -> Penalty {
        match self.penalty {
            TrainPenalty::None => Penalty::L1 { alpha: 0.0 },
            TrainPenalty::L1 => Penalty::L1 { alpha },
            TrainPenalty::DecoderNormL1 => Penalty::DecoderNormL1 { alpha },
        }
    }

    fn check(&self) -> Result<()> {
        if self.activation == TrainActivation::TopK(0) {
            return Err(Error::OutOfRange {
                arg: "k",
                allowed: "k must be at least 1",
            });
        }
        if let Some(a) = self.aux {
            if a.k_aux == 0 {
                return Err(Error::OutOfRange {
                    arg: "k_aux",
                    allowed: "k_aux must be at least 1",
                });
            }
            crate::error::check_finite("coefficient", a.coefficient)?;
        }
        Ok(())
    }
}

/// Which SAE is trained.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Arch {
    /// The seed's tied SAE: tensors `M` (`h×d`), `b` (`h`); L1 penalty `α·Σ c`.
    Tied,
    /// An untied SAE in SAELens' layout: `W_enc`, `b_enc`, `W_dec`, `b_dec`.
    Untied(UntiedArch),
}

impl Arch {
    /// The total number of parameters (the sum of the tensor lengths, saturating):
    /// `h·d + h` tied, `2·h·d + h + d` untied. Size optimizer state with it
    /// ([`crate::optim::Optimizer::state_len`]).
    #[must_use]
    pub const fn param_count(&self, dims: Dims) -> usize {
        let hd = dims.h.saturating_mul(dims.d);
        match self {
            Arch::Tied => hd.saturating_add(dims.h),
            Arch::Untied(_) => hd
                .saturating_mul(2)
                .saturating_add(dims.h)
                .saturating_add(dims.d),
        }
    }

    /// The AuxK configuration, if any.
    #[must_use]
    pub const fn aux(&self) -> Option<AuxKConfig> {
        match self {
            Arch::Tied => None,
            Arch::Untied(u) => u.aux,
        }
    }

    /// Extra `f32` the untied step needs beside the gradients: the effective
    /// parameters of `rescale_acts_by_decoder_norm`, the norms and the chain-rule sums
    /// (`2hd + 3h`).
    pub(crate) const fn effective_len(&self, dims: Dims) -> usize {
        match self {
            Arch::Untied(u) if u.rescale_acts_by_decoder_norm => dims
                .h
                .saturating_mul(dims.d)
                .saturating_mul(2)
                .saturating_add(dims.h.saturating_mul(3)),
            _ => 0,
        }
    }

    /// Scratch `f32` of the model's loss and gradient with blocks of `block_rows`,
    /// excluding the gradient buffer: the effective parameters (rescaling), plus the
    /// larger of the model's gradient scratch and (when dead latents are tracked) one
    /// block of codes with its encoder scratch.
    #[must_use]
    pub fn grad_scratch_len(&self, dims: Dims, block_rows: usize, track_dead: bool) -> usize {
        let rows = block_rows.clamp(1, MAX_BLOCK_ROWS);
        let (grad, enc) = match self {
            Arch::Tied => (grad_scratch_len(dims, rows), encode_scratch_len(dims)),
            Arch::Untied(u) => (
                if u.aux.is_some() {
                    untied_grad_auxk_scratch_len(dims, rows)
                } else {
                    untied_grad_scratch_len(dims, rows)
                },
                untied_encode_scratch_len(dims, rows),
            ),
        };
        let fired = if track_dead {
            rows.saturating_mul(dims.h).saturating_add(enc)
        } else {
            0
        };
        self.effective_len(dims).saturating_add(grad.max(fired))
    }

    /// Check the architecture's own parameters.
    ///
    /// # Errors
    /// [`Error::OutOfRange`] naming `k` or `k_aux` if 0; [`Error::NonFinite`] naming
    /// `coefficient`.
    pub fn validate(&self) -> Result<()> {
        match self {
            Arch::Tied => Ok(()),
            Arch::Untied(u) => u.check(),
        }
    }
}

/// A model's parameters being trained: a mutable view plus its architecture.
#[derive(Debug)]
pub enum ModelMut<'a> {
    /// The tied SAE.
    Tied(TiedParamsMut<'a>),
    /// An untied SAE.
    Untied(UntiedParamsMut<'a>, UntiedArch),
}

impl<'a> From<TiedParamsMut<'a>> for ModelMut<'a> {
    fn from(p: TiedParamsMut<'a>) -> Self {
        ModelMut::Tied(p)
    }
}

/// A read-only model: a view plus its architecture.
#[derive(Clone, Copy, Debug)]
pub enum ModelRef<'a> {
    /// The tied SAE.
    Tied(TiedParams<'a>),
    /// An untied SAE.
    Untied(UntiedParams<'a>, UntiedArch),
}

impl<'a> From<TiedParams<'a>> for ModelRef<'a> {
    fn from(p: TiedParams<'a>) -> Self {
        ModelRef::Tied(p)
    }
}

fn t<'a>(name: &'static str, role: Role, data: &'a [f32]) -> TensorRef<'a> {
    TensorRef { name, role, data }
}

fn tm<'a>(name: &'static str, role: Role, data: &'a mut [f32]) -> TensorMut<'a> {
    TensorMut { name, role, data }
}

impl<'a> ModelMut<'a> {
    /// The dimensions.
    #[must_use]
    pub fn dims(&self) -> Dims {
        match self {
            ModelMut::Tied(p) => p.dims(),
            ModelMut::Untied(p, _) => p.dims(),
        }
    }

    /// The architecture.
    #[must_use]
    pub fn arch(&self) -> Arch {
        match self {
            ModelMut::Tied(_) => Arch::Tied,
            ModelMut::Untied(_, a) => Arch::Untied(*a),
        }
    }

    /// Reborrow read-only.
    #[must_use]
    pub fn as_ref(&self) -> ModelRef<'_> {
        match self {
            ModelMut::Tied(p) => ModelRef::Tied(p.as_ref()),
            ModelMut::Untied(p, a) => ModelRef::Untied(p.as_ref(), *a),
        }
    }

    /// Reborrow mutably (a shorter-lived copy of the view).
    ///
    /// # Errors
    /// [`Error::Length`] if an untied view's public buffers were swapped for ones of
    /// the wrong length.
    pub fn reborrow(&mut self) -> Result<ModelMut<'_>> {
        Ok(match self {
            ModelMut::Tied(p) => ModelMut::Tied(TiedParamsMut {
                m: &mut *p.m,
                b: &mut *p.b,
                dims: p.dims,
            }),
            ModelMut::Untied(p, a) => {
                let dims = p.dims();
                ModelMut::Untied(
                    UntiedParamsMut::new(
                        dims,
                        &mut *p.w_enc,
                        &mut *p.b_enc,
                        &mut *p.w_dec,
                        &mut *p.b_dec,
                    )?,
                    *a,
                )
            }
        })
    }

    /// The parameters as named tensors, in canonical order.
    pub fn tensors_mut(&mut self) -> TensorsMut<'_> {
        let mut v = TensorsMut::new();
        // At most 4 tensors here, below MAX_TENSORS: the pushes cannot fail.
        match self {
            ModelMut::Tied(p) => {
                let _ = v.push(tm("M", Role::Dictionary, &mut *p.m));
                let _ = v.push(tm("b", Role::EncoderBias, &mut *p.b));
            }
            ModelMut::Untied(p, _) => {
                let _ = v.push(tm("W_enc", Role::EncoderWeight, &mut *p.w_enc));
                let _ = v.push(tm("b_enc", Role::EncoderBias, &mut *p.b_enc));
                let _ = v.push(tm("W_dec", Role::DecoderWeight, &mut *p.w_dec));
                let _ = v.push(tm("b_dec", Role::DecoderBias, &mut *p.b_dec));
            }
        }
        v
    }
}

impl<'a> ModelRef<'a> {
    /// The dimensions.
    #[must_use]
    pub fn dims(&self) -> Dims {
        match self {
            ModelRef::Tied(p) => p.dims(),
            ModelRef::Untied(p, _) => p.dims(),
        }
    }

    /// The architecture.
    #[must_use]
    pub fn arch(&self) -> Arch {
        match self {
            ModelRef::Tied(_) => Arch::Tied,
            ModelRef::Untied(_, a) => Arch::Untied(*a),
        }
    }

    /// The parameters as named tensors, in canonical order.
    #[must_use]
    pub fn tensors(&self) -> Tensors<'a> {
        let mut v = Tensors::new();
        match *self {
            ModelRef::Tied(p) => {
                let _ = v.push(t("M", Role::Dictionary, p.m));
                let _ = v.push(t("b", Role::EncoderBias, p.b));
            }
            ModelRef::Untied(p, _) => {
                let _ = v.push(t("W_enc", Role::EncoderWeight, p.w_enc));
                let _ = v.push(t("b_enc", Role::EncoderBias, p.b_enc));
                let _ = v.push(t("W_dec", Role::DecoderWeight, p.w_dec));
                let _ = v.push(t("b_dec", Role::DecoderBias, p.b_dec));
            }
        }
        v
    }
}

/// A flat gradient buffer (`arch.param_count(dims)` `f32`) listed as named tensors in
/// the canonical order of `arch`.
///
/// # Errors
/// [`Error::Length`] naming `grads` if its length is not `arch.param_count(dims)`.
pub fn grad_tensors(arch: Arch, dims: Dims, grads: &[f32]) -> Result<Tensors<'_>> {
    check_len("grads", grads.len(), arch.param_count(dims))?;
    let hd = dims.m_len();
    let mut v = Tensors::new();
    match arch {
        Arch::Tied => {
            let (m, b) = grads.split_at(hd);
            let _ = v.push(t("M", Role::Dictionary, m));
            let _ = v.push(t("b", Role::EncoderBias, b));
        }
        Arch::Untied(_) => {
            let (we, rest) = grads.split_at(hd);
            let (be, rest) = rest.split_at(dims.h);
            let (wd, bd) = rest.split_at(hd);
            let _ = v.push(t("W_enc", Role::EncoderWeight, we));
            let _ = v.push(t("b_enc", Role::EncoderBias, be));
            let _ = v.push(t("W_dec", Role::DecoderWeight, wd));
            let _ = v.push(t("b_dec", Role::DecoderBias, bd));
        }
    }
    Ok(v)
}

/// Split an untied flat buffer into its four tensors.
fn untied_split(dims: Dims, buf: &mut [f32]) -> Result<UntiedParamsMut<'_>> {
    let hd = dims.m_len();
    let (we, rest) = buf.split_at_mut(hd);
    let (be, rest) = rest.split_at_mut(dims.h);
    let (wd, bd) = rest.split_at_mut(hd);
    UntiedParamsMut::new(dims, we, be, wd, bd)
}

/// Fill the effective parameters of `rescale_acts_by_decoder_norm` (module docs):
/// `eff` = `[W_enc' | b_enc' | W_dec']` (`2hd + h`), `norms` (`h`).
pub(crate) fn effective_params(p: &UntiedParams<'_>, eff: &mut [f32], norms: &mut [f32]) {
    let Dims { d, h } = p.dims;
    let hd = d * h;
    let (we, rest) = eff.split_at_mut(hd);
    let (be, wd) = rest.split_at_mut(h);
    for ((n, row), out) in norms
        .iter_mut()
        .zip(p.w_dec.chunks_exact(d))
        .zip(wd.chunks_exact_mut(d))
    {
        *n = crate::math::sqrtf(vector::sum_sq(row));
        let inv = if *n > 0.0 { 1.0 / *n } else { 0.0 };
        for (o, &v) in out.iter_mut().zip(row) {
            *o = v * inv;
        }
    }
    for (orow, irow) in we.chunks_exact_mut(h).zip(p.w_enc.chunks_exact(h)) {
        for ((o, &v), &n) in orow.iter_mut().zip(irow).zip(norms.iter()) {
            *o = v * n;
        }
    }
    for ((o, &v), &n) in be.iter_mut().zip(p.b_enc).zip(norms.iter()) {
        *o = v * n;
    }
}

/// Map effective-parameter gradients (in `g`, untied layout) back to the raw
/// parameters, in place (module docs).
fn unscale_grads(p: &UntiedParams<'_>, norms: &[f32], g: &mut [f32], s: &mut [f32]) {
    let Dims { d, h } = p.dims;
    let hd = d * h;
    let (gwe, rest) = g.split_at_mut(hd);
    let (gbe, rest) = rest.split_at_mut(h);
    let gwd = &mut rest[..hd];
    // s_i = Σ_j g'W_enc[j,i]·W_enc[j,i] + g'b_enc_i·b_enc_i, then scale by n_i.
    for ((si, &gb), &b) in s.iter_mut().zip(gbe.iter()).zip(p.b_enc) {
        *si = gb * b;
    }
    for (grow, wrow) in gwe.chunks_exact(h).zip(p.w_enc.chunks_exact(h)) {
        for ((si, &gv), &wv) in s.iter_mut().zip(grow).zip(wrow) {
            *si += gv * wv;
        }
    }
    for grow in gwe.chunks_exact_mut(h) {
        for (gv, &n) in grow.iter_mut().zip(norms) {
            *gv *= n;
        }
    }
    for (gv, &n) in gbe.iter_mut().zip(norms) {
        *gv *= n;
    }
    for (((grow, wrow), &n), &si) in gwd
        .chunks_exact_mut(d)
        .zip(p.w_dec.chunks_exact(d))
        .zip(norms)
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

/// The loss and gradients of `model` on `x` (`n×d`) with sparsity coefficient
/// `alpha`, the gradients written to `grads` (`arch.param_count(dims)` `f32`, canonical
/// order; see [`grad_tensors`]). `dead` (`h` entries) switches on the AuxK loss of
/// architectures that have one. With `fired` (`h` entries), each is set to whether
/// that latent was active in any row of the batch (for dead-latent tracking).
///
/// Returns the loss parts and the AuxK term (0 without AuxK).
///
/// `scratch`: at least [`Arch::grad_scratch_len`]`(dims, 1, fired.is_some())`.
///
/// # Errors
/// As the model's loss-and-gradient entry point; [`Error::Length`] naming `grads`,
/// `dead` or `fired`; [`Error::WorkspaceTooSmall`] naming `scratch`.
#[allow(clippy::too_many_arguments)]
pub fn loss_and_grad(
    model: ModelRef<'_>,
    x: &[f32],
    n: usize,
    alpha: f32,
    dead: Option<&[bool]>,
    grads: &mut [f32],
    mut fired: Option<&mut [bool]>,
    scratch: &mut [f32],
) -> Result<(LossParts, f32)> {
    let dims = model.dims();
    let arch = model.arch();
    arch.validate()?;
    check_len("grads", grads.len(), arch.param_count(dims))?;
    if let Some(f) = fired.as_deref() {
        check_len("fired", f.len(), dims.h)?;
    }
    if let Some(dd) = dead {
        check_len("dead", dd.len(), dims.h)?;
    }
    let need = arch.grad_scratch_len(dims, 1, fired.is_some());
    crate::error::check_scratch(scratch.len(), need)?;
    crate::model::forward::check_batch(dims, x, n)?;
    let (eff, rest) = scratch.split_at_mut(arch.effective_len(dims));
    match model {
        ModelRef::Tied(p) => {
            if let Some(f) = fired.as_deref_mut() {
                mark_fired(model, x, n, f, rest)?;
            }
            let (gm, gb) = grads.split_at_mut(dims.m_len());
            let parts = crate::model::loss_and_grad(
                p,
                x,
                n,
                alpha,
                TiedParamsMut::new(dims, gm, gb)?,
                rest,
            )?;
            Ok((parts, 0.0))
        }
        ModelRef::Untied(p, u) => {
            let (eff_p, norms) = if u.rescale_acts_by_decoder_norm {
                let (e, nr) = eff.split_at_mut(2 * dims.m_len() + dims.h);
                effective_params(&p, e, &mut nr[..dims.h]);
                let hd = dims.m_len();
                let (we, r) = e.split_at(hd);
                let (be, wd) = r.split_at(dims.h);
                (
                    UntiedParams::new(dims, we, be, wd, p.b_dec)?,
                    Some(&mut nr[..]),
                )
            } else {
                (p, None)
            };
            if let Some(f) = fired {
                mark_fired(ModelRef::Untied(eff_p, u), x, n, f, rest)?;
            }
            let cfg = u.config();
            let pen = u.penalty(alpha);
            let g = untied_split(dims, grads)?;
            let out = match (u.aux, dead) {
                (Some(a), Some(dd)) => crate::model::untied_loss_and_grad_auxk(
                    eff_p,
                    cfg,
                    x,
                    n,
                    pen,
                    AuxK {
                        dead: dd,
                        k_aux: a.k_aux,
                        coefficient: a.coefficient,
                    },
                    g,
                    rest,
                )?,
                _ => (
                    crate::model::untied_loss_and_grad(eff_p, cfg, x, n, pen, g, rest)?,
                    0.0,
                ),
            };
            if let Some(nr) = norms {
                let (nrm, s) = nr.split_at_mut(dims.h);
                unscale_grads(&p, nrm, grads, s);
            }
            Ok(out)
        }
    }
}

/// `fired[i] ← latent i is active (> 0) in some row of x`, encoding in row blocks.
fn mark_fired(
    model: ModelRef<'_>,
    x: &[f32],
    n: usize,
    fired: &mut [bool],
    scratch: &mut [f32],
) -> Result<()> {
    let dims = model.dims();
    let Dims { d, h } = dims;
    let enc = |rows: usize| -> usize {
        rows * h
            + match model {
                ModelRef::Tied(_) => encode_scratch_len(dims),
                ModelRef::Untied(..) => untied_encode_scratch_len(dims, rows),
            }
    };
    let mut rb = MAX_BLOCK_ROWS.min(n);
    while rb > 1 && enc(rb) > scratch.len() {
        rb -= 1;
    }
    crate::error::check_scratch(scratch.len(), enc(rb))?;
    fired.fill(false);
    let (codes, rest) = scratch.split_at_mut(rb * h);
    for r0 in (0..n).step_by(rb) {
        let rows = rb.min(n - r0);
        let xb = &x[r0 * d..(r0 + rows) * d];
        let cb = &mut codes[..rows * h];
        match model {
            ModelRef::Tied(p) => crate::model::encode(p, xb, rows, cb, rest)?,
            ModelRef::Untied(p, u) => {
                crate::model::untied_encode(p, u.config(), xb, rows, cb, rest)?;
            }
        }
        for row in cb.chunks_exact(h) {
            for (f, &c) in fired.iter_mut().zip(row) {
                *f |= c > 0.0;
            }
        }
    }
    Ok(())
}
