//! Parameter updates, in place, with no allocation: SGD (with optional momentum) and
//! Adam over any list of named tensors ([`TensorMut`] / [`TensorRef`], the model's
//! canonical order), with the pieces SAE training relies on — global gradient-norm
//! clipping, unit-norm decoder rows and removal of the gradient component parallel to
//! them — plus learning-rate and L1-coefficient schedules.
//!
//! ## State layout
//! An optimizer's state is one `f32` slice of [`Optimizer::state_len`]`(P)` entries,
//! where `P` is the total number of parameters (the sum of the tensor lengths, e.g.
//! [`crate::model::Arch::param_len`]). It is laid out over the tensors in their
//! canonical order, concatenated:
//! - SGD with momentum: the velocities `[vel_0 | vel_1 | …]` (`P`);
//! - Adam: the first moments `[m_0 | m_1 | …]` (`P`), then the second moments
//!   `[v_0 | v_1 | …]` (`P`).
//!
//! For the tied model (`M`, then `b`) this is `[m_M | m_b | v_M | v_b]`. A zeroed slice
//! is a fresh optimizer. The step counter `t` (needed by Adam's bias correction) is
//! kept next to it by [`Optim`].
//!
//! ## One step, in order (as SAELens / OpenAI / PyTorch do it)
//! 1. with [`OptimConfig::unit_norm_decoder`], each decoder row's gradient `g_i` (tensors
//!    whose [`Role::is_decoder`]) loses its component parallel to the row:
//!    `g_i ← g_i − (g_i·w_i / ‖w_i‖²)·w_i` (rows of norm 0 keep `g_i`);
//! 2. with [`OptimConfig::max_grad_norm`]` = Some(c)`, every gradient is scaled by
//!    `min(1, c / (‖g‖ + 1e-6))` with `‖g‖` the L2 norm over **all** tensors together
//!    (PyTorch's `clip_grad_norm_`, which SAELens calls with `c = 1`);
//! 3. the update rule ([`Optimizer`]);
//! 4. with [`OptimConfig::unit_norm_decoder`], each decoder row is rescaled to unit L2
//!    norm (rows that come out exactly 0 stay 0).
//!
//! The gradients are read-only: steps 1–2 are applied on the fly, never written back.
//!
//! ## Transactional updates
//! Every update first establishes that all new values are finite without writing
//! anything; only then does a second pass write them. So on `Err` the parameters and the
//! optimizer state are bit-for-bit unchanged. For Adam the first pass is one read sweep
//! per tensor (gradient finiteness, the clipping norm, and the maxima of `|p|`, `|g|`,
//! `|m|` and `v`) whose maxima usually prove every new value finite by a bound with room
//! for rounding; when they do not (huge or non-finite values), every new value is
//! computed and checked exactly, as for the other rules. Either way the verdict and the
//! written bits are the same.

mod schedule;

pub use schedule::{Decay, L1Warmup, LrSchedule};

use crate::error::{Error, Result, check_finite};
use crate::kernels::isa;
use crate::kernels::vector;
use crate::model::Dims;
use crate::model::tensors::{MAX_TENSORS, Role, TensorMut, TensorRef};

/// Adam's hyper-parameters (Kingma & Ba 2015, as PyTorch's `torch.optim.Adam`).
///
/// The defaults are the field's: `β1 = 0.9`, `β2 = 0.999`, `ε = 1e-8`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Adam {
    /// Decay of the first moment, in `[0, 1)`.
    pub beta1: f32,
    /// Decay of the second moment, in `[0, 1)`.
    pub beta2: f32,
    /// Added to the denominator, `> 0`.
    pub eps: f32,
}

impl Default for Adam {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }
}

/// Which update rule to use.
///
/// With gradient `g`, learning rate `lr` and step number `t = 1, 2, …`:
/// - `Sgd { momentum: μ }`: `vel ← μ·vel + g`, `p ← p − lr·vel` (PyTorch's form; with
///   `μ = 0` there is no state);
/// - `Adam`: `m ← β1·m + (1−β1)·g`, `v ← β2·v + (1−β2)·g²`,
///   `p ← p − (lr / (1−β1ᵗ)) · m / (√v / √(1−β2ᵗ) + ε)` (PyTorch's form), except
///   that a new `m` or `v` below `f32::MIN_POSITIVE` in magnitude (a subnormal) is
///   stored as `0`, as PyTorch does after `torch.set_flush_denormal(True)`.
///
///   Why: a latent that stops firing gets zero gradients, so its `m` shrinks by β1 per
///   step and is subnormal after about 850 steps. x86 CPUs take a microcode assist
///   (about a hundred cycles) for every vector instruction with a subnormal lane, and
///   dead latents' columns are spread over every vector of `W_enc`: with 10 % of the
///   latents so, the Adam step at (d, h) = (384, 3072) took 38 ms instead of 13 ms.
///   The parameters are unaffected (the dropped term `lr·m/(√v̂ + ε)` is below
///   `lr·2⁻¹²⁶/ε ≈ 10⁻³³·lr`, under the rounding of any parameter above `10⁻²⁶`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Optimizer {
    /// Stochastic gradient descent with momentum `μ ∈ [0, 1)` (0 = plain SGD).
    Sgd {
        /// The momentum coefficient μ.
        momentum: f32,
    },
    /// Adam with bias correction.
    Adam(Adam),
}

impl Default for Optimizer {
    /// Adam with the default hyper-parameters.
    fn default() -> Self {
        Optimizer::Adam(Adam::default())
    }
}

impl Optimizer {
    /// The number of `f32` of state this optimizer needs for `params` parameters in
    /// total (e.g. [`crate::model::Arch::param_len`]): `0` for plain SGD, `params`
    /// for SGD with momentum and `2·params` for Adam (saturating on overflow).
    /// A `const fn`, so firmware can size a `static` buffer with it.
    #[must_use]
    pub const fn state_len(&self, params: usize) -> usize {
        match *self {
            Optimizer::Sgd { momentum } => {
                if momentum == 0.0 {
                    0
                } else {
                    params
                }
            }
            Optimizer::Adam(_) => params.saturating_mul(2),
        }
    }

    /// Check the hyper-parameters.
    ///
    /// # Errors
    /// [`Error::NonFinite`] or [`Error::OutOfRange`] naming `momentum`, `beta1`,
    /// `beta2` or `eps`.
    pub fn validate(&self) -> Result<()> {
        let unit = |arg, v: f32| {
            check_finite(arg, v)?;
            if (0.0..1.0).contains(&v) {
                Ok(())
            } else {
                Err(Error::OutOfRange {
                    arg,
                    allowed: "must be in [0, 1)",
                })
            }
        };
        match *self {
            Optimizer::Sgd { momentum } => unit("momentum", momentum),
            Optimizer::Adam(a) => {
                unit("beta1", a.beta1)?;
                unit("beta2", a.beta2)?;
                check_finite("eps", a.eps)?;
                if a.eps > 0.0 {
                    Ok(())
                } else {
                    Err(Error::OutOfRange {
                        arg: "eps",
                        allowed: "must be > 0",
                    })
                }
            }
        }
    }
}

/// The update rule plus what SAE training does around it (see the
/// [module docs](self) for the order of the steps).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OptimConfig {
    /// The update rule.
    pub rule: Optimizer,
    /// Clip the global gradient norm to this value (`> 0`; SAELens: `Some(1.0)`), or
    /// `None` for no clipping.
    pub max_grad_norm: Option<f32>,
    /// Keep decoder rows at unit norm: remove the gradient component parallel to each
    /// row before the update and renormalise the rows after it (OpenAI's TopK recipe;
    /// Towards Monosemanticity).
    pub unit_norm_decoder: bool,
}

impl Default for OptimConfig {
    /// Adam with the default hyper-parameters, no clipping, free decoder norms.
    fn default() -> Self {
        Optimizer::default().into()
    }
}

impl From<Optimizer> for OptimConfig {
    fn from(rule: Optimizer) -> Self {
        Self {
            rule,
            max_grad_norm: None,
            unit_norm_decoder: false,
        }
    }
}

impl OptimConfig {
    /// The `f32` of state: [`Optimizer::state_len`] of the rule.
    #[must_use]
    pub const fn state_len(&self, params: usize) -> usize {
        self.rule.state_len(params)
    }

    /// Check the hyper-parameters.
    ///
    /// # Errors
    /// As [`Optimizer::validate`]; [`Error::NonFinite`] or [`Error::OutOfRange`] naming
    /// `max_grad_norm` unless it is finite and `> 0`.
    pub fn validate(&self) -> Result<()> {
        self.rule.validate()?;
        if let Some(c) = self.max_grad_norm {
            check_finite("max_grad_norm", c)?;
            if c <= 0.0 {
                return Err(Error::OutOfRange {
                    arg: "max_grad_norm",
                    allowed: "must be > 0",
                });
            }
        }
        Ok(())
    }
}

/// An optimizer bound to its state: the configuration, the caller's state slice and
/// the number of steps taken so far.
///
/// Create it over a zeroed slice for a fresh optimizer, or over saved state (with the
/// saved step count) to resume.
///
/// ```
/// use sae_kernels::{model::Dims, optim::{Optim, Optimizer}};
/// use sae_kernels::model::{Role, TensorMut, TensorRef};
/// let dims = Dims::new(2, 1)?; // one decoder row of width 2, plus a bias
/// let (mut w, mut b) = ([3.0f32, 4.0], [0.0f32]);
/// let mut state = [0.0f32; 6]; // Adam: 2 × 3 parameters
/// let mut opt = Optim::new(Optimizer::default(), dims, 3, &mut state, 0)?;
/// let mut params = [
///     TensorMut { name: "M", role: Role::Dictionary, data: &mut w },
///     TensorMut { name: "b", role: Role::EncoderBias, data: &mut b },
/// ];
/// let grads = [
///     TensorRef { name: "M", role: Role::Dictionary, data: &[1.0, 1.0] },
///     TensorRef { name: "b", role: Role::EncoderBias, data: &[-1.0] },
/// ];
/// opt.step(&mut params, &grads, 0.1)?;
/// assert_eq!(opt.steps(), 1);
/// assert!((b[0] - 0.1).abs() < 1e-6); // Adam's first step moves each entry by ≈ lr
/// # Ok::<(), sae_kernels::Error>(())
/// ```
#[derive(Debug)]
pub struct Optim<'a> {
    config: OptimConfig,
    dims: Dims,
    params: usize,
    state: &'a mut [f32],
    steps: u64,
}

/// Per-element constants of one update.
#[derive(Clone, Copy)]
struct Coef {
    lr: f32,
    a: f32,
    b: f32,
    c: f32,
    eps: f32,
    kind: u8,
}

const PLAIN: u8 = 0;
const MOMENTUM: u8 = 1;
const ADAM: u8 = 2;

/// `grads.<name>` for the argument of a gradient error.
fn grad_arg(name: &str) -> &'static str {
    match name {
        "M" => "grads.m",
        "b" => "grads.b",
        "W_enc" => "grads.W_enc",
        "b_enc" => "grads.b_enc",
        "W_dec" => "grads.W_dec",
        "b_dec" => "grads.b_dec",
        "threshold" => "grads.threshold",
        _ => "grads",
    }
}

impl<'a> Optim<'a> {
    /// Bind `config` to `state` after `steps` completed steps, for a model of `dims`
    /// with `params` parameters in total (the sum of its tensor lengths;
    /// [`crate::model::Arch::param_len`]). `state` must hold exactly
    /// `config.state_len(params)` `f32`.
    ///
    /// # Errors
    /// As [`OptimConfig::validate`]; [`Error::Length`] naming `state`.
    pub fn new(
        config: impl Into<OptimConfig>,
        dims: Dims,
        params: usize,
        state: &'a mut [f32],
        steps: u64,
    ) -> Result<Self> {
        let config = config.into();
        config.validate()?;
        crate::error::check_len("state", state.len(), config.state_len(params))?;
        Ok(Self {
            config,
            dims,
            params,
            state,
            steps,
        })
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> OptimConfig {
        self.config
    }

    /// The number of successful steps taken (Adam's `t` of the last step).
    #[must_use]
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// The state slice (layout in the module docs).
    #[must_use]
    pub fn state(&self) -> &[f32] {
        self.state
    }

    fn coef(&self, lr: f32) -> Coef {
        match self.config.rule {
            Optimizer::Sgd { momentum } => Coef {
                lr,
                a: momentum,
                b: 0.0,
                c: 0.0,
                eps: 0.0,
                kind: if momentum == 0.0 { PLAIN } else { MOMENTUM },
            },
            Optimizer::Adam(a) => {
                // t saturates at i32::MAX; β^t has long underflowed to 0 by then.
                let t = i32::try_from(self.steps.saturating_add(1)).unwrap_or(i32::MAX);
                let bc1 = 1.0 - libm::pow(f64::from(a.beta1), f64::from(t));
                let bc2 = 1.0 - libm::pow(f64::from(a.beta2), f64::from(t));
                Coef {
                    lr: (f64::from(lr) / bc1) as f32,
                    a: a.beta1,
                    b: a.beta2,
                    c: libm::sqrt(bc2) as f32,
                    eps: a.eps,
                    kind: ADAM,
                }
            }
        }
    }

    /// Check the tensor lists' lengths against each other and this optimizer (the
    /// gradients' finiteness is checked by the read sweep of [`Optim::step`]).
    fn check(&self, params: &[TensorMut<'_>], grads: &[TensorRef<'_>]) -> Result<()> {
        if grads.len() != params.len() {
            return Err(Error::Dimension {
                arg: "grads",
                expected: params.len(),
                got: grads.len(),
            });
        }
        let mut total = 0usize;
        for (p, g) in params.iter().zip(grads) {
            crate::error::check_len(grad_arg(p.name), g.data.len(), p.data.len())?;
            if p.role.is_decoder() {
                crate::error::check_len(p.name, p.data.len(), self.dims.m_len())?;
            }
            total = total.saturating_add(p.data.len());
        }
        crate::error::check_len("params", total, self.params)?;
        Ok(())
    }

    /// Does this tensor get the decoder treatment?
    fn constrained(&self, role: Role) -> bool {
        self.config.unit_norm_decoder && role.is_decoder()
    }

    /// The read sweep before an update: checks that every gradient is finite (the first
    /// non-finite one, in tensor order, is the error), computes the clipping factor (1
    /// without clipping or below the limit), and for Adam bounds the new values of the
    /// unconstrained tensors from the maxima of `|p|`, `|g|`, `|m|` and `v` (bit `i` of
    /// the returned mask, for the first [`MAX_TENSORS`] tensors: tensor `i`'s update is
    /// proven finite, so its exact check can be skipped; see [`adam_proven`]). One pass over `p`, `g`, `m`, `v` per Adam tensor.
    fn read_sweep(
        &self,
        coef: Coef,
        params: &[TensorMut<'_>],
        grads: &[TensorRef<'_>],
    ) -> Result<(f32, u64)> {
        let d = self.dims.d;
        let (s1, s2) = if coef.kind == ADAM {
            self.state.split_at(self.params)
        } else {
            (&[][..], &[][..])
        };
        let mut sq = 0.0f64;
        let mut sweeps = [Sweep::default(); MAX_TENSORS];
        let mut off = 0;
        for (i, (p, g)) in params.iter().zip(grads).enumerate() {
            let len = p.data.len();
            if coef.kind == ADAM && !self.constrained(p.role) {
                let sw = sweep_selected(p.data, g.data, sub(s1, off, len), sub(s2, off, len));
                if sw.g >= F32_INF_BITS {
                    return Err(Error::NonFinite {
                        arg: grad_arg(g.name),
                    });
                }
                sq += sw.sq;
                if let Some(slot) = sweeps.get_mut(i) {
                    *slot = sw;
                }
            } else {
                if !vector::all_finite(g.data) {
                    return Err(Error::NonFinite {
                        arg: grad_arg(g.name),
                    });
                }
                if self.config.max_grad_norm.is_some() {
                    if self.constrained(p.role) {
                        for (gr, wr) in g.data.chunks_exact(d).zip(p.data.chunks_exact(d)) {
                            let k = parallel_coef(gr, wr);
                            for (&gv, &wv) in gr.iter().zip(wr) {
                                let e = f64::from(gv - k * wv);
                                sq += e * e;
                            }
                        }
                    } else {
                        sq += sum_sq_f64(g.data);
                    }
                }
            }
            off += len;
        }
        let scale = match self.config.max_grad_norm {
            Some(c) => {
                let f = f64::from(c) / (libm::sqrt(sq) + 1e-6);
                if f < 1.0 { f as f32 } else { 1.0 }
            }
            None => 1.0,
        };
        let mut proven = 0u64;
        if coef.kind == ADAM {
            for ((i, p), &sw) in params.iter().enumerate().zip(&sweeps) {
                if !self.constrained(p.role) && adam_proven(coef, sw) {
                    proven |= 1 << i;
                }
            }
        }
        Ok((scale, proven))
    }

    /// Apply one update with learning rate `lr` (finite, `≥ 0`) to `params`, whose
    /// gradients `grads` list the same tensors in the same order with the same lengths,
    /// and increment the step count. Steps 1–4 of the [module docs](self).
    ///
    /// Transactional: all new values are computed and checked before any is written;
    /// on `Err` the parameters and the state are bit-for-bit unchanged.
    ///
    /// # Errors
    /// [`Error::NonFinite`] or [`Error::OutOfRange`] for `lr`; [`Error::Dimension`]
    /// naming `grads` if the lists differ in length; [`Error::Length`] naming a
    /// gradient (`grads.<name>`) whose length differs from its tensor's, a decoder
    /// tensor that is not `h×d`, or `params` if the total differs from the count given
    /// to [`Optim::new`]; [`Error::NonFinite`] naming `grads.<name>` for a NaN/±∞
    /// gradient; [`Error::NonFiniteStep`] naming `params` or `state` if the update
    /// itself would overflow to a non-finite value.
    pub fn step(
        &mut self,
        params: &mut [TensorMut<'_>],
        grads: &[TensorRef<'_>],
        lr: f32,
    ) -> Result<()> {
        check_finite("lr", lr)?;
        if lr < 0.0 {
            return Err(Error::OutOfRange {
                arg: "lr",
                allowed: "must be >= 0",
            });
        }
        self.check(params, grads)?;
        let coef = self.coef(lr);
        let (scale, proven) = self.read_sweep(coef, params, grads)?;
        let d = self.dims.d;
        let p_len = self.params;
        let (s1, s2) = match coef.kind {
            PLAIN => (&mut [][..], &mut [][..]),
            MOMENTUM => (&mut self.state[..], &mut [][..]),
            _ => self.state.split_at_mut(p_len),
        };
        // Pass 1: compute, check, write nothing.
        let mut off = 0;
        for (ti, (p, g)) in params.iter().zip(grads).enumerate() {
            let len = p.data.len();
            let (t1, t2) = (sub(s1, off, len), sub(s2, off, len));
            if self.config.unit_norm_decoder && p.role.is_decoder() {
                for (r, (gr, wr)) in g
                    .data
                    .chunks_exact(d)
                    .zip(p.data.chunks_exact(d))
                    .enumerate()
                {
                    let k = parallel_coef(gr, wr);
                    let (r1, r2) = (sub(t1, r * d, d), sub(t2, r * d, d));
                    let mut nsq = 0.0f64;
                    for i in 0..d {
                        let ge = (gr[i] - k * wr[i]) * scale;
                        let (np, n1, n2) = update(coef, wr[i], ge, get(r1, i), get(r2, i));
                        check_new(np, n1, n2)?;
                        nsq += f64::from(np) * f64::from(np);
                    }
                    if nsq > 0.0 && !((1.0 / libm::sqrt(nsq)) as f32).is_finite() {
                        return Err(Error::NonFiniteStep { arg: "params" });
                    }
                }
            } else if coef.kind == ADAM
                && (ti >= MAX_TENSORS || proven & (1 << ti) == 0)
                && !adam_finite_selected(coef, scale, p.data, g.data, t1, t2)
            {
                // Name the first offending value as the element-wise check does.
                for i in 0..len {
                    let (np, n1, n2) =
                        update(coef, p.data[i], g.data[i] * scale, get(t1, i), get(t2, i));
                    check_new(np, n1, n2)?;
                }
            } else if coef.kind != ADAM {
                for i in 0..len {
                    let (np, n1, n2) =
                        update(coef, p.data[i], g.data[i] * scale, get(t1, i), get(t2, i));
                    check_new(np, n1, n2)?;
                }
            }
            off += len;
        }
        // Pass 2: the same arithmetic, written.
        let mut off = 0;
        for (p, g) in params.iter_mut().zip(grads) {
            let len = p.data.len();
            let (t1, t2) = (sub_mut(s1, off, len), sub_mut(s2, off, len));
            if self.config.unit_norm_decoder && p.role.is_decoder() {
                for (r, (gr, wr)) in g
                    .data
                    .chunks_exact(d)
                    .zip(p.data.chunks_exact_mut(d))
                    .enumerate()
                {
                    let k = parallel_coef(gr, wr);
                    let (r1, r2) = (sub_mut(t1, r * d, d), sub_mut(t2, r * d, d));
                    let mut nsq = 0.0f64;
                    for i in 0..d {
                        let ge = (gr[i] - k * wr[i]) * scale;
                        let (np, n1, n2) = update(coef, wr[i], ge, get(r1, i), get(r2, i));
                        set(r1, i, n1);
                        set(r2, i, n2);
                        nsq += f64::from(np) * f64::from(np);
                        wr[i] = np;
                    }
                    if nsq > 0.0 {
                        let inv = (1.0 / libm::sqrt(nsq)) as f32;
                        for v in wr.iter_mut() {
                            *v *= inv;
                        }
                    }
                }
            } else if coef.kind == ADAM {
                adam_write_selected(coef, scale, p.data, g.data, t1, t2);
            } else {
                for i in 0..len {
                    let (np, n1, n2) =
                        update(coef, p.data[i], g.data[i] * scale, get(t1, i), get(t2, i));
                    p.data[i] = np;
                    set(t1, i, n1);
                    set(t2, i, n2);
                }
            }
            off += len;
        }
        self.steps = self.steps.saturating_add(1);
        Ok(())
    }
}

/// `Σ xᵢ²` in `f64`, in a fixed order: 8 running sums over the elements `i mod 8`
/// (independent chains, so it vectorizes), combined pairwise, then the tail.
fn sum_sq_f64(x: &[f32]) -> f64 {
    let mut acc = [0.0f64; 8];
    let chunks = x.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += f64::from(v) * f64::from(v);
        }
    }
    let mut s = ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
    for &v in tail {
        s += f64::from(v) * f64::from(v);
    }
    s
}

/// `g·w / ‖w‖²` (0 for a zero row): the coefficient of `g`'s component along `w`.
#[inline]
fn parallel_coef(g: &[f32], w: &[f32]) -> f32 {
    let nn = vector::sum_sq(w);
    if nn > 0.0 {
        vector::dot(g, w) / nn
    } else {
        0.0
    }
}

/// `s[off..off+len]`, or empty when `s` is (no state for this rule).
#[inline]
fn sub(s: &[f32], off: usize, len: usize) -> &[f32] {
    if s.is_empty() { s } else { &s[off..off + len] }
}

#[inline]
fn sub_mut(s: &mut [f32], off: usize, len: usize) -> &mut [f32] {
    if s.is_empty() {
        s
    } else {
        &mut s[off..off + len]
    }
}

#[inline(always)]
fn get(s: &[f32], i: usize) -> f32 {
    s.get(i).copied().unwrap_or(0.0)
}

#[inline(always)]
fn set(s: &mut [f32], i: usize, v: f32) {
    if let Some(x) = s.get_mut(i) {
        *x = v;
    }
}

#[inline(always)]
fn check_new(p: f32, s1: f32, s2: f32) -> Result<()> {
    if !p.is_finite() {
        return Err(Error::NonFiniteStep { arg: "params" });
    }
    if !(s1.is_finite() & s2.is_finite()) {
        return Err(Error::NonFiniteStep { arg: "state" });
    }
    Ok(())
}

/// `x`, or `0` if it is subnormal (NaN and infinities pass unchanged): see
/// [`Optimizer`] on Adam's moments.
#[inline(always)]
fn flush_subnormal(x: f32) -> f32 {
    if x.abs() < f32::MIN_POSITIVE { 0.0 } else { x }
}

/// Adam's update of one element (the `ADAM` arm of [`update`], the same operations in
/// the same order, so the same bits).
#[inline(always)]
fn adam(c: Coef, p: f32, g: f32, s1: f32, s2: f32) -> (f32, f32, f32) {
    let m = flush_subnormal(c.a * s1 + (1.0 - c.a) * g);
    let v = flush_subnormal(c.b * s2 + (1.0 - c.b) * (g * g));
    let denom = crate::math::sqrtf(v) / c.c + c.eps;
    (p - c.lr * (m / denom), m, v)
}

/// Whether Adam's update of a whole tensor (gradients `g·scale`, moments `m`, `v`)
/// keeps every new parameter and moment finite. Branch-free over the elements (an OR
/// of the per-element verdicts, no early exit), so it vectorizes.
#[inline(always)]
fn adam_finite(c: Coef, scale: f32, p: &[f32], g: &[f32], m: &[f32], v: &[f32]) -> bool {
    let mut bad = 0u32;
    for (((&p, &g), &m), &v) in p.iter().zip(g).zip(m).zip(v) {
        let (np, n1, n2) = adam(c, p, g * scale, m, v);
        bad |= u32::from(!(np.is_finite() & n1.is_finite() & n2.is_finite()));
    }
    bad == 0
}

/// Adam's update of a whole tensor, written (after [`adam_finite`] passed).
#[inline(always)]
fn adam_write(c: Coef, scale: f32, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
    for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
        (*p, *m, *v) = adam(c, *p, g * scale, *m, *v);
    }
}

/// The bits of `f32::INFINITY`: an `|x|` bit pattern at or above it is not finite.
const F32_INF_BITS: u32 = 0x7F80_0000;

/// What the read sweep learns about one Adam tensor: its gradient's `Σ g²` (`f64`, the
/// order of [`sum_sq_f64`]) and the largest bit patterns of `|g|`, `|p|`, `|m|` and of
/// `v` itself (the sign bit included, so a negative or `−0.0` second moment reads as
/// huge). For finite non-negative values the bit order is the value order.
#[derive(Clone, Copy, Debug, Default)]
struct Sweep {
    sq: f64,
    g: u32,
    p: u32,
    m: u32,
    v: u32,
}

/// One pass over a tensor's `p`, `g` and Adam moments `m`, `v` (equal lengths):
/// [`Sweep`]. Each array is read by its own branch-free loop (8 lanes for `g`, a
/// plain integer maximum for the others), so each vectorizes.
#[inline(always)]
fn sweep(p: &[f32], g: &[f32], m: &[f32], v: &[f32]) -> Sweep {
    const ABS: u32 = 0x7FFF_FFFF;
    let mut acc = [0.0f64; 8];
    let mut gm = [0u32; 8];
    let chunks = g.chunks_exact(8);
    let tail = chunks.remainder();
    for gc in chunks {
        for l in 0..8 {
            acc[l] += f64::from(gc[l]) * f64::from(gc[l]);
            gm[l] = gm[l].max(gc[l].to_bits() & ABS);
        }
    }
    let mut sq = ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
    let mut gmax = gm.into_iter().max().unwrap_or(0);
    for &x in tail {
        sq += f64::from(x) * f64::from(x);
        gmax = gmax.max(x.to_bits() & ABS);
    }
    let max_bits = |x: &[f32], mask: u32| x.iter().fold(0u32, |a, &b| a.max(b.to_bits() & mask));
    Sweep {
        sq,
        g: gmax,
        p: max_bits(p, ABS),
        m: max_bits(m, ABS),
        v: max_bits(v, u32::MAX),
    }
}

/// Whether the maxima of a [`Sweep`] prove every new value of Adam's update finite
/// (gradients scaled by a clipping factor `≤ 1`), so that the exact check may be
/// skipped. Each step of [`adam`] is bounded with room for its rounding:
/// `|m'| ≤ (M + G)(1 + 2⁻²²)`, `0 ≤ v' ≤ (V + G²)(1 + 2⁻²²)`, `denom ≥ ε` (so
/// `|m'/denom| ≤ Q = 1.001·(M + G)/ε`), `|p'| ≤ 1.001·(P + lr·Q)`; with `G ≤ 10¹⁸`,
/// `M, V ≤ 10³⁷` and `Q, P + lr·Q ≤ 10³⁸` all stay below `f32::MAX`. Anything else
/// (a non-finite or negative input, huge values) is not proven, and the exact check
/// decides.
fn adam_proven(c: Coef, s: Sweep) -> bool {
    if s.g >= F32_INF_BITS || s.p >= F32_INF_BITS || s.m >= F32_INF_BITS {
        return false;
    }
    // Sign bit set (a negative or −0.0 moment) or not finite.
    if s.v >= F32_INF_BITS || !c.lr.is_finite() || c.eps.is_nan() || c.eps <= 0.0 {
        return false;
    }
    let f = |b: u32| f64::from(f32::from_bits(b));
    let (g, p, m, v) = (f(s.g), f(s.p), f(s.m), f(s.v));
    let q = 1.001 * (m + g) / f64::from(c.eps);
    g <= 1e18 && m <= 1e37 && v <= 1e37 && q <= 1e38 && p + f64::from(c.lr) * q * 1.001 <= 1e38
}

/// [`sweep`] compiled for the selected instruction set (the same operations in the
/// same order on each, so the same result).
fn sweep_selected(p: &[f32], g: &[f32], m: &[f32], v: &[f32]) -> Sweep {
    isa::vectorized(
        #[inline(always)]
        |_| sweep(p, g, m, v),
    )
}

/// [`adam_finite`] compiled for the selected instruction set (IEEE operations without
/// contraction: the same values on each).
fn adam_finite_selected(c: Coef, s: f32, p: &[f32], g: &[f32], m: &[f32], v: &[f32]) -> bool {
    isa::vectorized(
        #[inline(always)]
        |_| adam_finite(c, s, p, g, m, v),
    )
}

/// [`adam_write`] compiled for the selected instruction set (IEEE operations without
/// contraction: the same bits on each).
fn adam_write_selected(c: Coef, s: f32, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
    isa::vectorized(
        #[inline(always)]
        |_| adam_write(c, s, p, g, m, v),
    );
}

/// New (param, state1, state2) for one element.
#[inline(always)]
fn update(c: Coef, p: f32, g: f32, s1: f32, s2: f32) -> (f32, f32, f32) {
    match c.kind {
        PLAIN => (p - c.lr * g, 0.0, 0.0),
        MOMENTUM => {
            let v = c.a * s1 + g;
            (p - c.lr * v, v, 0.0)
        }
        _ => adam(c, p, g, s1, s2),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> u32 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 33) as u32
        }
        fn unit(&mut self) -> f32 {
            (self.next() % 20001) as f32 / 10000.0 - 1.0
        }
    }

    /// The step by definition: the clipping factor from the global `f64` norm, then
    /// every element through [`update`], checked, written only if all are finite.
    fn reference(
        c: Coef,
        max_norm: Option<f32>,
        p: &mut [f32],
        g: &[f32],
        m: &mut [f32],
        v: &mut [f32],
    ) -> Result<()> {
        if !g.iter().all(|x| x.is_finite()) {
            return Err(Error::NonFinite { arg: "grads" });
        }
        let scale = match max_norm {
            Some(cn) => {
                let f = f64::from(cn) / (libm::sqrt(sum_sq_f64(g)) + 1e-6);
                if f < 1.0 { f as f32 } else { 1.0 }
            }
            None => 1.0,
        };
        for i in 0..p.len() {
            let (np, n1, n2) = update(c, p[i], g[i] * scale, m[i], v[i]);
            check_new(np, n1, n2)?;
        }
        for i in 0..p.len() {
            (p[i], m[i], v[i]) = update(c, p[i], g[i] * scale, m[i], v[i]);
        }
        Ok(())
    }

    /// Adam's step (one bias tensor, so any length) against [`reference`], bit for bit,
    /// on ordinary values and on states where the read sweep's bound fails (huge or
    /// negative moments, parameters near `f32::MAX`, tiny ε): the exact check then
    /// decides, with the same verdict and, on `Err`, nothing written.
    #[test]
    fn adam_step_matches_the_definition() {
        let mut rng = Lcg(5);
        let trials = if cfg!(miri) { 6 } else { 120 };
        for trial in 0..trials {
            let len = 1 + (rng.next() % 700) as usize;
            let dims = Dims::new(1, len).unwrap();
            let mut p: [f32; 700] = core::array::from_fn(|_| rng.unit());
            let g: [f32; 700] = core::array::from_fn(|_| rng.unit() * 0.1);
            let mut state = [0.0f32; 1400];
            for s in state[..len].iter_mut() {
                *s = rng.unit() * 0.01;
            }
            for s in state[700..700 + len].iter_mut() {
                *s = rng.unit().abs() * 1e-4;
            }
            let adam = Adam {
                eps: if trial % 11 == 3 { 1e-38 } else { 1e-8 },
                ..Adam::default()
            };
            let j = (rng.next() as usize) % len;
            match trial % 7 {
                1 => p[j] = f32::MAX * 0.999_999, // may or may not overflow
                2 => state[j] = 3e38,             // huge first moment
                3 => state[700 + j] = -1e-3,      // negative second moment: NaN
                4 => state[700 + j] = 3e38,       // huge second moment
                5 => p[j] = f32::NAN,             // non-finite parameter
                _ => {}
            }
            let clip = (trial % 2 == 0).then_some(0.5f32);
            let config = OptimConfig {
                rule: Optimizer::Adam(adam),
                max_grad_norm: clip,
                unit_norm_decoder: false,
            };
            let steps = u64::from(rng.next() % 5);
            let lr = if trial % 13 == 0 { 1e30 } else { 1e-3 };
            // The reference on copies.
            let (mut rp, mut rm, mut rv) = (p, [0.0f32; 700], [0.0f32; 700]);
            rm[..len].copy_from_slice(&state[..len]);
            rv[..len].copy_from_slice(&state[700..700 + len]);
            let mut st = [0.0f32; 1400];
            st[..len].copy_from_slice(&state[..len]);
            st[len..2 * len].copy_from_slice(&state[700..700 + len]);
            let mut o = Optim::new(config, dims, len, &mut st[..2 * len], steps).unwrap();
            let c = o.coef(lr);
            let want = reference(
                c,
                clip,
                &mut rp[..len],
                &g[..len],
                &mut rm[..len],
                &mut rv[..len],
            );
            let before = p;
            let mut params = [TensorMut {
                name: "b_enc",
                role: Role::EncoderBias,
                data: &mut p[..len],
            }];
            let grads = [TensorRef {
                name: "b_enc",
                role: Role::EncoderBias,
                data: &g[..len],
            }];
            let got = o.step(&mut params, &grads, lr);
            assert_eq!(
                got.is_ok(),
                want.is_ok(),
                "trial {trial}: {got:?} vs {want:?}"
            );
            if let (Err(a), Err(b)) = (&got, &want) {
                assert_eq!(a, b, "trial {trial}");
            }
            for i in 0..len {
                assert_eq!(p[i].to_bits(), rp[i].to_bits(), "trial {trial} p[{i}]");
                assert_eq!(st[i].to_bits(), rm[i].to_bits(), "trial {trial} m[{i}]");
                assert_eq!(
                    st[len + i].to_bits(),
                    rv[i].to_bits(),
                    "trial {trial} v[{i}]"
                );
                if got.is_err() {
                    assert_eq!(p[i].to_bits(), before[i].to_bits(), "trial {trial}");
                }
            }
        }
    }

    /// A moment that would become subnormal is stored as 0 (one just above the
    /// threshold is kept), and the parameter gets the same bits as with the unflushed
    /// moment.
    #[test]
    fn adam_flushes_subnormal_moments() {
        let dims = Dims::new(1, 3).unwrap();
        let config = OptimConfig {
            rule: Optimizer::default(),
            max_grad_norm: None,
            unit_norm_decoder: false,
        };
        // m: β1·m falls below f32::MIN_POSITIVE (1.18e-38) for 1.2e-38, not for 2e-38;
        // v likewise with β2 = 0.999. Zero gradients, so only decay acts.
        let mut st = [1.2e-38f32, 2e-38, 0.0, 1e-4, 1e-4, 1.17e-38];
        let mut p = [0.5f32, -0.25, 1.0];
        let g = [0.0f32; 3];
        let mut o = Optim::new(config, dims, 3, &mut st, 10).unwrap();
        let c = o.coef(1e-3);
        let mut params = [TensorMut {
            name: "b_enc",
            role: Role::EncoderBias,
            data: &mut p,
        }];
        let grads = [TensorRef {
            name: "b_enc",
            role: Role::EncoderBias,
            data: &g,
        }];
        o.step(&mut params, &grads, 1e-3).unwrap();
        assert_eq!(st[0].to_bits(), 0, "subnormal m stored as +0");
        assert_eq!(st[1], 0.9 * 2e-38, "normal m kept");
        assert_eq!(st[5].to_bits(), 0, "subnormal v stored as +0");
        assert_eq!(st[3], 0.999 * 1e-4, "normal v kept");
        // The parameter as with the unflushed moments (the definition's formula).
        let m0 = 0.9f32 * 1.2e-38;
        assert!(m0 != 0.0 && m0.abs() < f32::MIN_POSITIVE);
        let denom = crate::math::sqrtf(0.999f32 * 1e-4) / c.c + c.eps;
        assert_eq!(p[0].to_bits(), (0.5 - c.lr * (m0 / denom)).to_bits());
    }

    /// The sweeps compiled for each x86 instruction set the CPU has give the portable
    /// build's results, bit for bit (runs every set the CPU has, whatever
    /// `SAE_KERNEL` says).
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    #[test]
    fn sweeps_agree_across_instruction_sets() {
        use crate::kernels::isa::Kernel;
        let mut rng = Lcg(2);
        let len = 203;
        let p: [f32; 203] = core::array::from_fn(|_| rng.unit());
        let g: [f32; 203] = core::array::from_fn(|_| rng.unit() * 0.3);
        let m0: [f32; 203] = core::array::from_fn(|_| rng.unit() * 0.1);
        let v0: [f32; 203] = core::array::from_fn(|_| rng.unit().abs() * 0.01);
        let mut st = [0.0f32; 2];
        let o = Optim::new(
            Optimizer::default(),
            Dims::new(1, 1).unwrap(),
            1,
            &mut st,
            3,
        );
        let c = o.unwrap().coef(1e-2);
        let key = |s: Sweep| (s.sq.to_bits(), s.g, s.p, s.m, s.v);
        let want_sweep = key(sweep(&p, &g, &m0, &v0));
        let want_ok = adam_finite(c, 0.7, &p, &g, &m0, &v0);
        let (mut wp, mut wm, mut wv) = (p, m0, v0);
        adam_write(c, 0.7, &mut wp, &g, &mut wm, &mut wv);
        for kern in [Kernel::Avx2, Kernel::Avx512] {
            let (mut q, mut m, mut v) = (p, m0, v0);
            let got = isa::vectorized_on(
                kern,
                #[inline(always)]
                |_| {
                    let r = (
                        sweep(&p, &g, &m0, &v0),
                        adam_finite(c, 0.7, &p, &g, &m0, &v0),
                    );
                    adam_write(c, 0.7, &mut q, &g, &mut m, &mut v);
                    r
                },
            );
            let Some((sw, ok)) = got else {
                continue;
            };
            assert_eq!(key(sw), want_sweep, "{kern:?}");
            assert_eq!(ok, want_ok, "{kern:?}");
            for i in 0..len {
                assert_eq!(q[i].to_bits(), wp[i].to_bits(), "{kern:?} p[{i}]");
                assert_eq!(m[i].to_bits(), wm[i].to_bits(), "{kern:?} m[{i}]");
                assert_eq!(v[i].to_bits(), wv[i].to_bits(), "{kern:?} v[{i}]");
            }
        }
        assert!(want_ok);
        assert_eq!(want_sweep.0, sum_sq_f64(&g).to_bits());
    }

    /// Whenever [`adam_proven`] accepts a sweep, every update within its maxima is
    /// finite: extreme corners (each input at its maximum, with either sign, the
    /// gradient at ±G) for random maxima spread over the whole exponent range.
    #[test]
    fn adam_bound_is_sound() {
        let mut rng = Lcg(9);
        let trials = if cfg!(miri) { 200 } else { 200_000 };
        let mut accepted = 0;
        for _ in 0..trials {
            let mag = |r: &mut Lcg| f32::from_bits(r.next() % 0x7F80_0000);
            let (p, g, m, v) = (mag(&mut rng), mag(&mut rng), mag(&mut rng), mag(&mut rng));
            let hp = Adam {
                eps: mag(&mut rng).max(f32::MIN_POSITIVE * 0.5),
                ..Adam::default()
            };
            let lr = mag(&mut rng);
            let sweep = Sweep {
                sq: 0.0,
                g: g.to_bits(),
                p: p.to_bits(),
                m: m.to_bits(),
                v: v.to_bits(),
            };
            let mut st = [0.0f32; 2];
            let o = Optim::new(Optimizer::Adam(hp), Dims::new(1, 1).unwrap(), 1, &mut st, 0);
            let c = o.unwrap().coef(lr);
            if !adam_proven(c, sweep) {
                continue;
            }
            accepted += 1;
            for sp in [p, -p] {
                for sg in [g, -g] {
                    for sm in [m, -m] {
                        for sv in [v, 0.0] {
                            let (np, n1, n2) = adam(c, sp, sg, sm, sv);
                            assert!(
                                np.is_finite() && n1.is_finite() && n2.is_finite(),
                                "{sp} {sg} {sm} {sv} {lr} {}",
                                hp.eps
                            );
                        }
                    }
                }
            }
        }
        assert!(accepted > trials / 20, "{accepted} accepted");
    }
}
