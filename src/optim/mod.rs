//! Parameter updates, in place, with no allocation: SGD (with optional momentum) and
//! Adam over caller-provided state, plus learning-rate and L1-coefficient schedules.
//!
//! ## State layout
//! An optimizer's state is one `f32` slice of [`Optimizer::state_len`] entries, laid
//! out per parameter buffer in the order `M` (`h·d`), then `b` (`h`):
//! - SGD with momentum: the velocity `[vel_M | vel_b]`;
//! - Adam: the first moments `[m_M | m_b]`, then the second moments `[v_M | v_b]`.
//!
//! A zeroed slice is a fresh optimizer. The step counter `t` (needed by Adam's bias
//! correction) is kept next to it by [`Optim`].
//!
//! ## Transactional updates
//! Every update first computes all new values without writing anything and checks that
//! they are finite; only then does a second pass write them. So on `Err` the parameters
//! and the optimizer state are bit-for-bit unchanged.

pub mod schedule;

pub use schedule::{Decay, L1Warmup, LrSchedule};

use crate::error::{Error, Result, check_finite};
use crate::kernels::vector;
use crate::model::{Dims, TiedParams, TiedParamsMut};

/// One plain SGD step: `params ← params − lr·grads`.
///
/// Transactional: every check runs before the first write, so on `Err` the
/// parameters are bit-for-bit unchanged.
///
/// # Errors
/// [`Error::NonFinite`] if `lr` is not finite or a gradient holds NaN/±∞ (naming
/// `grads.m` or `grads.b`); [`Error::Dimension`] if the gradients' dimensions differ
/// from the parameters'.
pub fn sgd_step(params: TiedParamsMut<'_>, grads: TiedParams<'_>, lr: f32) -> Result<()> {
    check_finite("lr", lr)?;
    crate::model::params::check_grad_dims(params.dims, grads.dims)?;
    if !vector::all_finite(grads.m) {
        return Err(Error::NonFinite { arg: "grads.m" });
    }
    if !vector::all_finite(grads.b) {
        return Err(Error::NonFinite { arg: "grads.b" });
    }
    vector::axpy(-lr, grads.m, params.m);
    vector::axpy(-lr, grads.b, params.b);
    Ok(())
}

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
///   `μ = 0` there is no state and this is [`sgd_step`]);
/// - `Adam`: `m ← β1·m + (1−β1)·g`, `v ← β2·v + (1−β2)·g²`,
///   `p ← p − (lr / (1−β1ᵗ)) · m / (√v / √(1−β2ᵗ) + ε)` (PyTorch's form).
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
    /// The number of `f32` of state this optimizer needs for a model of `dims`:
    /// `0` for plain SGD, `P` for SGD with momentum and `2P` for Adam, where
    /// `P = h·d + h` is the number of parameters (saturating on overflow).
    #[must_use]
    pub fn state_len(&self, dims: Dims) -> usize {
        let p = dims.m_len().saturating_add(dims.h);
        match *self {
            Optimizer::Sgd { momentum: 0.0 } => 0,
            Optimizer::Sgd { .. } => p,
            Optimizer::Adam(_) => p.saturating_mul(2),
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

/// An optimizer bound to its state: the rule, the caller's state slice and the
/// number of steps taken so far.
///
/// Create it over a zeroed slice for a fresh optimizer, or over saved state (with the
/// saved step count) to resume.
#[derive(Debug)]
pub struct Optim<'a> {
    config: Optimizer,
    dims: Dims,
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
    kind: u8,
}

const PLAIN: u8 = 0;
const MOMENTUM: u8 = 1;
const ADAM: u8 = 2;

impl<'a> Optim<'a> {
    /// Bind `config` to `state` (exactly `config.state_len(dims)` `f32`) after `steps`
    /// completed steps.
    ///
    /// # Errors
    /// As [`Optimizer::validate`]; [`Error::Length`] naming `state`.
    pub fn new(config: Optimizer, dims: Dims, state: &'a mut [f32], steps: u64) -> Result<Self> {
        config.validate()?;
        crate::error::check_len("state", state.len(), config.state_len(dims))?;
        Ok(Self {
            config,
            dims,
            state,
            steps,
        })
    }

    /// The update rule.
    #[must_use]
    pub fn config(&self) -> Optimizer {
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
        match self.config {
            Optimizer::Sgd { momentum: 0.0 } => Coef {
                lr,
                a: 0.0,
                b: 0.0,
                c: 0.0,
                kind: PLAIN,
            },
            Optimizer::Sgd { momentum } => Coef {
                lr,
                a: momentum,
                b: 0.0,
                c: 0.0,
                kind: MOMENTUM,
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
                    kind: ADAM,
                }
            }
        }
    }

    /// Apply one update with learning rate `lr` (finite, `≥ 0`) and increment the step
    /// count.
    ///
    /// Transactional: all new values are computed and checked before any is written;
    /// on `Err` the parameters and the state are bit-for-bit unchanged.
    ///
    /// # Errors
    /// [`Error::NonFinite`] or [`Error::OutOfRange`] for `lr`; [`Error::Dimension`] if
    /// the parameters, gradients or this optimizer have different dimensions;
    /// [`Error::NonFinite`] naming `grads.m` / `grads.b` for a NaN/±∞ gradient;
    /// [`Error::NonFiniteStep`] naming `params` or `state` if the update itself would
    /// overflow to a non-finite value.
    pub fn step(
        &mut self,
        params: TiedParamsMut<'_>,
        grads: TiedParams<'_>,
        lr: f32,
    ) -> Result<()> {
        check_finite("lr", lr)?;
        if lr < 0.0 {
            return Err(Error::OutOfRange {
                arg: "lr",
                allowed: "must be >= 0",
            });
        }
        crate::model::params::check_grad_dims(self.dims, params.dims)?;
        crate::model::params::check_grad_dims(params.dims, grads.dims)?;
        if !vector::all_finite(grads.m) {
            return Err(Error::NonFinite { arg: "grads.m" });
        }
        if !vector::all_finite(grads.b) {
            return Err(Error::NonFinite { arg: "grads.b" });
        }
        let coef = self.coef(lr);
        let eps = match self.config {
            Optimizer::Adam(a) => a.eps,
            Optimizer::Sgd { .. } => 0.0,
        };
        let ml = self.dims.m_len();
        let p_len = ml + self.dims.h;
        let (s1, s2) = match coef.kind {
            PLAIN => (&mut [][..], &mut [][..]),
            MOMENTUM => (&mut self.state[..], &mut [][..]),
            _ => self.state.split_at_mut(p_len),
        };
        let (s1m, s1b) = if s1.is_empty() {
            (&mut [][..], &mut [][..])
        } else {
            s1.split_at_mut(ml)
        };
        let (s2m, s2b) = if s2.is_empty() {
            (&mut [][..], &mut [][..])
        } else {
            s2.split_at_mut(ml)
        };
        // Pass 1: compute, check, write nothing.
        let ok = |p: &[f32], g: &[f32], s1: &[f32], s2: &[f32]| -> Result<()> {
            let mut p_ok = true;
            let mut s_ok = true;
            for i in 0..p.len() {
                let (np, n1, n2) = update(coef, eps, p[i], g[i], get(s1, i), get(s2, i));
                p_ok &= np.is_finite();
                s_ok &= n1.is_finite() & n2.is_finite();
            }
            if !p_ok {
                return Err(Error::NonFiniteStep { arg: "params" });
            }
            if !s_ok {
                return Err(Error::NonFiniteStep { arg: "state" });
            }
            Ok(())
        };
        ok(params.m, grads.m, s1m, s2m)?;
        ok(params.b, grads.b, s1b, s2b)?;
        // Pass 2: the same arithmetic, written.
        apply(coef, eps, params.m, grads.m, s1m, s2m);
        apply(coef, eps, params.b, grads.b, s1b, s2b);
        self.steps = self.steps.saturating_add(1);
        Ok(())
    }
}

#[inline(always)]
fn get(s: &[f32], i: usize) -> f32 {
    s.get(i).copied().unwrap_or(0.0)
}

/// New (param, state1, state2) for one element.
#[inline(always)]
fn update(c: Coef, eps: f32, p: f32, g: f32, s1: f32, s2: f32) -> (f32, f32, f32) {
    match c.kind {
        PLAIN => (p - c.lr * g, 0.0, 0.0),
        MOMENTUM => {
            let v = c.a * s1 + g;
            (p - c.lr * v, v, 0.0)
        }
        _ => {
            let m = c.a * s1 + (1.0 - c.a) * g;
            let v = c.b * s2 + (1.0 - c.b) * (g * g);
            let denom = crate::math::sqrtf(v) / c.c + eps;
            (p - c.lr * (m / denom), m, v)
        }
    }
}

fn apply(c: Coef, eps: f32, p: &mut [f32], g: &[f32], s1: &mut [f32], s2: &mut [f32]) {
    for i in 0..p.len() {
        let (np, n1, n2) = update(c, eps, p[i], g[i], get(s1, i), get(s2, i));
        p[i] = np;
        if let Some(s) = s1.get_mut(i) {
            *s = n1;
        }
        if let Some(s) = s2.get_mut(i) {
            *s = n2;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A gradient whose square overflows would make Adam's second moment infinite:
    /// refused as a whole, nothing written.
    #[test]
    fn adam_refuses_overflowing_second_moment() {
        let dims = Dims::new(2, 1).unwrap();
        let (mut m, mut b) = ([1.0f32, 2.0], [3.0f32]);
        let mut state = [0.0f32; 6];
        let mut o = Optim::new(Optimizer::default(), dims, &mut state, 0).unwrap();
        let r = o.step(
            TiedParamsMut::new(dims, &mut m, &mut b).unwrap(),
            TiedParams::new(dims, &[0.1, 1e30], &[0.1]).unwrap(),
            1e-3,
        );
        assert_eq!(r, Err(Error::NonFiniteStep { arg: "state" }));
        assert_eq!(o.steps(), 0);
        assert_eq!((m, b), ([1.0, 2.0], [3.0]));
        assert_eq!(state, [0.0; 6]);
    }

    #[test]
    fn bad_lr_and_state_length_are_named() {
        let dims = Dims::new(2, 1).unwrap();
        let mut state = [0.0f32; 5];
        assert_eq!(
            Optim::new(Optimizer::default(), dims, &mut state, 0).unwrap_err(),
            Error::Length {
                arg: "state",
                expected: 6,
                got: 5
            }
        );
        let mut none: [f32; 0] = [];
        let mut o = Optim::new(Optimizer::Sgd { momentum: 0.0 }, dims, &mut none, 0).unwrap();
        let (mut m, mut b) = ([0.0f32; 2], [0.0f32]);
        for (lr, want) in [
            (f32::NAN, Error::NonFinite { arg: "lr" }),
            (
                -1.0,
                Error::OutOfRange {
                    arg: "lr",
                    allowed: "must be >= 0",
                },
            ),
        ] {
            let r = o.step(
                TiedParamsMut::new(dims, &mut m, &mut b).unwrap(),
                TiedParams::new(dims, &[1.0, 1.0], &[1.0]).unwrap(),
                lr,
            );
            assert_eq!(r, Err(want));
        }
    }
}
