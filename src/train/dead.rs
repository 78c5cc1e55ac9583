//! Dead-latent tracking: a streaming count, per latent, of the tokens (input rows)
//! seen since it last fired, in caller memory.
//!
//! After each training batch of `n` rows, latent `i`'s count is reset to 0 if it was
//! active (`f_i > 0`) in any row of the batch, otherwise it grows by `n` (saturating at
//! `u32::MAX`). A latent is **dead** when its count is **greater than** the window.
//!
//! This is SAELens v6's rule with the window in tokens instead of steps: SAELens
//! counts forward passes (`n_forward_passes_since_fired += 1`, reset where the batch
//! fired) and calls a latent dead when the count exceeds `dead_feature_window`
//! (1000 steps by default), so with a fixed batch of `B` rows a window of `1000·B`
//! tokens marks the same latents dead at the same steps. OpenAI and EleutherAI use a
//! window of 10M tokens. As in SAELens, the mask used by a step's AuxK loss is the one
//! from before that step.

use crate::error::{Result, check_len};

/// Dead-latent state over caller memory: `since` (`h` counters) and `flags` (`2h`:
/// the dead mask, then per-step scratch for which latents fired).
#[derive(Debug)]
pub struct DeadLatents<'a> {
    since: &'a mut [u32],
    flags: &'a mut [bool],
    window: u64,
}

impl<'a> DeadLatents<'a> {
    /// Track `since.len()` latents with a dead window of `window_tokens` rows. The
    /// counters are kept (all 0 = every latent just fired, as at the start of
    /// training; or continue a previous tracker); the dead mask is recomputed.
    ///
    /// # Errors
    /// [`crate::Error::Length`] naming `flags` unless it has `2·since.len()` entries.
    pub fn new(since: &'a mut [u32], flags: &'a mut [bool], window_tokens: u64) -> Result<Self> {
        check_len("flags", flags.len(), since.len().saturating_mul(2))?;
        let mut s = Self {
            since,
            flags,
            window: window_tokens,
        };
        s.refresh();
        Ok(s)
    }

    fn refresh(&mut self) {
        let h = self.since.len();
        for (f, &c) in self.flags[..h].iter_mut().zip(self.since.iter()) {
            *f = u64::from(c) > self.window;
        }
    }

    /// Number of latents tracked.
    #[must_use]
    pub fn len(&self) -> usize {
        self.since.len()
    }

    /// True if no latent is tracked.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.since.is_empty()
    }

    /// The window in tokens.
    #[must_use]
    pub fn window(&self) -> u64 {
        self.window
    }

    /// Tokens since each latent last fired (`h`).
    #[must_use]
    pub fn since(&self) -> &[u32] {
        self.since
    }

    /// The dead mask (`h`): `since > window`.
    #[must_use]
    pub fn dead(&self) -> &[bool] {
        &self.flags[..self.since.len()]
    }

    /// Number of dead latents.
    #[must_use]
    pub fn dead_count(&self) -> usize {
        self.dead().iter().filter(|&&v| v).count()
    }

    /// Fraction of latents that are dead (0 with no latents).
    #[must_use]
    pub fn dead_fraction(&self) -> f64 {
        if self.since.is_empty() {
            0.0
        } else {
            self.dead_count() as f64 / self.since.len() as f64
        }
    }

    /// The dead mask and the per-step `fired` scratch, split.
    pub(crate) fn masks(&mut self) -> (&[bool], &mut [bool]) {
        let h = self.since.len();
        let (d, f) = self.flags.split_at_mut(h);
        (d, f)
    }

    /// Record a batch of `tokens` rows in which the latents marked in the `fired`
    /// scratch (see [`DeadLatents::observe`]) fired.
    pub(crate) fn commit(&mut self, tokens: u64) {
        let h = self.since.len();
        let add = u32::try_from(tokens).unwrap_or(u32::MAX);
        for (c, &f) in self.since.iter_mut().zip(self.flags[h..].iter()) {
            *c = if f { 0 } else { c.saturating_add(add) };
        }
        self.refresh();
    }

    /// Record a batch of `tokens` rows in which the latents with `fired[i]` fired.
    ///
    /// # Errors
    /// [`crate::Error::Length`] naming `fired` unless it has `h` entries.
    pub fn observe(&mut self, fired: &[bool], tokens: u64) -> Result<()> {
        let h = self.since.len();
        check_len("fired", fired.len(), h)?;
        self.flags[h..].copy_from_slice(fired);
        self.commit(tokens);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_after_window_like_saelens() {
        // SAELens with window W steps: dead once since > W. Batch of 4 rows, W = 2 steps.
        let (mut since, mut flags) = ([0u32; 3], [false; 6]);
        let mut t = DeadLatents::new(&mut since, &mut flags, 2 * 4).unwrap();
        for step in 0..3 {
            t.observe(&[true, false, step == 1], 4).unwrap();
        }
        // latent 0 fired every step; latent 1 never (12 tokens > 8); latent 2 at step 1.
        assert_eq!(t.since(), &[0, 12, 4]);
        assert_eq!(t.dead(), &[false, true, false]);
        assert!((t.dead_fraction() - 1.0 / 3.0).abs() < 1e-12);
        assert!(t.observe(&[true], 4).is_err());
        assert!(DeadLatents::new(&mut [0u32; 2], &mut [false; 3], 1).is_err());
    }
}
