//! Learning-rate and L1-coefficient schedules: plain functions of the step number.
//!
//! `step` is always 0-based: the number of optimizer steps completed before the one
//! whose value is asked for.

/// How the learning rate decays after warm-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decay {
    /// Stay at the peak.
    Constant,
    /// Straight line from the peak down to `peak·final_scale`.
    Linear,
    /// Half a cosine from the peak down to `peak·final_scale`.
    Cosine,
}

/// Linear warm-up to `peak`, then constant, linear or cosine decay.
///
/// - steps `0 .. warmup_steps`: `peak·(step+1)/warmup_steps` (so the first step is
///   already non-zero and step `warmup_steps − 1` uses the peak);
/// - then `peak` until `decay_start` (at least `warmup_steps`);
/// - then decay over `decay_start .. total_steps` to `peak·final_scale`, which holds
///   from `total_steps` on.
///
/// ```
/// use sae_kernels::optim::{Decay, LrSchedule};
/// let s = LrSchedule { peak: 1.0, warmup_steps: 10, decay: Decay::Linear,
///                      decay_start: 80, total_steps: 100, final_scale: 0.0 };
/// assert_eq!(s.lr(0), 0.1);
/// assert_eq!(s.lr(50), 1.0);
/// assert_eq!(s.lr(90), 0.5);
/// assert_eq!(s.lr(100), 0.0);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LrSchedule {
    /// The peak learning rate.
    pub peak: f32,
    /// Length of the linear warm-up (0 = none).
    pub warmup_steps: u64,
    /// The decay shape.
    pub decay: Decay,
    /// First step of the decay (raised to `warmup_steps` if smaller).
    pub decay_start: u64,
    /// The step at which the decay ends.
    pub total_steps: u64,
    /// The final learning rate as a fraction of the peak.
    pub final_scale: f32,
}

impl LrSchedule {
    /// A constant learning rate with no warm-up.
    #[must_use]
    pub fn constant(lr: f32) -> Self {
        Self {
            peak: lr,
            warmup_steps: 0,
            decay: Decay::Constant,
            decay_start: 0,
            total_steps: 0,
            final_scale: 1.0,
        }
    }

    /// The learning rate of step `step`.
    #[must_use]
    pub fn lr(&self, step: u64) -> f32 {
        if step < self.warmup_steps {
            return (f64::from(self.peak) * (step + 1) as f64 / self.warmup_steps as f64) as f32;
        }
        let start = self.decay_start.max(self.warmup_steps);
        if self.decay == Decay::Constant || step < start {
            return self.peak;
        }
        let len = self.total_steps.saturating_sub(start);
        let p = if len == 0 {
            1.0
        } else {
            ((step - start) as f64 / len as f64).min(1.0)
        };
        let f = f64::from(self.final_scale);
        let frac = match self.decay {
            Decay::Linear => 1.0 - (1.0 - f) * p,
            _ => f + (1.0 - f) * 0.5 * (1.0 + libm::cos(core::f64::consts::PI * p)),
        };
        (f64::from(self.peak) * frac) as f32
    }
}

/// Linear warm-up of the L1 coefficient: `alpha·min(1, (step+1)/warmup_steps)`
/// (`alpha` from the first step if `warmup_steps == 0`).
///
/// ```
/// use sae_kernels::optim::L1Warmup;
/// let w = L1Warmup { alpha: 2.0, warmup_steps: 4 };
/// assert_eq!([w.alpha(0), w.alpha(1), w.alpha(3), w.alpha(99)], [0.5, 1.0, 2.0, 2.0]);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct L1Warmup {
    /// The final L1 coefficient α.
    pub alpha: f32,
    /// Length of the warm-up (0 = none).
    pub warmup_steps: u64,
}

impl L1Warmup {
    /// A constant coefficient.
    #[must_use]
    pub fn constant(alpha: f32) -> Self {
        Self {
            alpha,
            warmup_steps: 0,
        }
    }

    /// The L1 coefficient of step `step`.
    #[must_use]
    pub fn alpha(&self, step: u64) -> f32 {
        if step >= self.warmup_steps {
            self.alpha
        } else {
            (f64::from(self.alpha) * (step + 1) as f64 / self.warmup_steps as f64) as f32
        }
    }
}
