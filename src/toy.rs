//! The toy superposition benchmark of Sharkey, Braun & Millidge (2022), without an
//! allocator.
//!
//! `g` ground-truth features are random unit directions in `d` dimensions (Gaussian,
//! normalised; rows of a `g×d` matrix). Feature `i` is active in a sample with
//! probability `pᵢ = min(1, s·decayⁱ)`, where `s` is chosen so that
//! `Σ pᵢ = mean_active` (their setup: `decay = 0.99`, 5 active on average); an active
//! feature gets the coefficient `U(0,1)·U(0,1)`, and a sample is
//! `x = Σ_active coefᵢ·featureᵢ`. Features are independent.
//!
//! A learned dictionary is scored with [`crate::metrics::mmcs`] against the
//! ground-truth rows.

use crate::error::{Error, Result, check_finite, check_len, check_nonzero, mul};
use crate::kernels::vector;
use rand_core::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};

/// The generator's random number generator (PCG-64).
pub type ToyRng = rand_pcg::Pcg64;

/// A toy benchmark's shape and sparsity.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ToyConfig {
    /// Input width.
    pub d: usize,
    /// Number of ground-truth features.
    pub g: usize,
    /// Per-index decay of the firing probability, in `(0, 1]`.
    pub decay: f32,
    /// Mean number of active features per sample, `> 0`.
    pub mean_active: f32,
}

impl ToyConfig {
    /// The original setup: 512 features in 256 dimensions, decay 0.99, 5 active.
    #[must_use]
    pub fn sharkey() -> Self {
        Self::new(256, 512)
    }

    /// `g` features in `d` dimensions with the original decay (0.99) and mean
    /// number active (5).
    #[must_use]
    pub fn new(d: usize, g: usize) -> Self {
        Self {
            d,
            g,
            decay: 0.99,
            mean_active: 5.0,
        }
    }

    fn validate(&self) -> Result<()> {
        check_nonzero("d", self.d)?;
        check_nonzero("g", self.g)?;
        check_finite("decay", self.decay)?;
        check_finite("mean_active", self.mean_active)?;
        if !(self.decay > 0.0 && self.decay <= 1.0) {
            return Err(Error::OutOfRange {
                arg: "decay",
                allowed: "must be in (0, 1]",
            });
        }
        if self.mean_active <= 0.0 {
            return Err(Error::OutOfRange {
                arg: "mean_active",
                allowed: "must be > 0",
            });
        }
        Ok(())
    }
}

/// Draw the ground truth: `features` (`g×d`, unit rows) and the firing probabilities
/// `probs` (`g`), deterministically from `seed`.
///
/// # Errors
/// [`Error::Dimension`], [`Error::NonFinite`] or [`Error::OutOfRange`] for a bad
/// config field; [`Error::Length`] naming `features` or `probs`.
pub fn toy_init(cfg: &ToyConfig, seed: u64, features: &mut [f32], probs: &mut [f32]) -> Result<()> {
    cfg.validate()?;
    check_len("features", features.len(), mul("features", cfg.g, cfg.d)?)?;
    check_len("probs", probs.len(), cfg.g)?;
    let mut rng = ToyRng::seed_from_u64(seed);
    for row in features.chunks_exact_mut(cfg.d) {
        loop {
            for v in row.iter_mut() {
                let z: f64 = StandardNormal.sample(&mut rng);
                *v = z as f32;
            }
            let norm = crate::math::sqrtf(vector::sum_sq(row));
            if norm > 1e-6 {
                row.iter_mut().for_each(|v| *v /= norm);
                break;
            }
        }
    }
    let decay = f64::from(cfg.decay);
    let mut total = 0.0f64;
    let mut w = 1.0f64;
    for _ in 0..cfg.g {
        total += w;
        w *= decay;
    }
    let s = f64::from(cfg.mean_active) / total;
    let mut w = 1.0f64;
    for p in probs.iter_mut() {
        *p = (s * w).min(1.0) as f32;
        w *= decay;
    }
    Ok(())
}

/// A uniform `f32` in `[0, 1)` with 24 random bits.
fn unif(rng: &mut ToyRng) -> f32 {
    (rng.next_u32() >> 8) as f32 * (1.0 / (1u32 << 24) as f32)
}

/// Draw `n` samples into `x` (`n×d`, overwritten). If `coefs` is given (`n×g`), it
/// receives each sample's true coefficients (0 for inactive features).
///
/// # Errors
/// As [`toy_init`] for `cfg`, `features` and `probs`; [`Error::Length`] naming `x` or
/// `coefs`.
pub fn toy_sample(
    cfg: &ToyConfig,
    features: &[f32],
    probs: &[f32],
    rng: &mut ToyRng,
    x: &mut [f32],
    n: usize,
    mut coefs: Option<&mut [f32]>,
) -> Result<()> {
    cfg.validate()?;
    let (d, g) = (cfg.d, cfg.g);
    check_len("features", features.len(), mul("features", g, d)?)?;
    check_len("probs", probs.len(), g)?;
    check_len("x", x.len(), mul("x", n, d)?)?;
    if let Some(c) = coefs.as_deref() {
        check_len("coefs", c.len(), mul("coefs", n, g)?)?;
    }
    for r in 0..n {
        let xr = &mut x[r * d..(r + 1) * d];
        xr.fill(0.0);
        for (i, (&p, f)) in probs.iter().zip(features.chunks_exact(d)).enumerate() {
            let on = unif(rng) < p;
            let c = if on { unif(rng) * unif(rng) } else { 0.0 };
            if on {
                vector::axpy(c, f, xr);
            }
            if let Some(cs) = coefs.as_deref_mut() {
                cs[r * g + i] = c;
            }
        }
    }
    Ok(())
}

/// A seeded [`ToyRng`].
#[must_use]
pub fn toy_rng(seed: u64) -> ToyRng {
    ToyRng::seed_from_u64(seed)
}
