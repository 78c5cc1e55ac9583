//! Activation functions of the untied SAE family: ReLU, TopK and JumpReLU.
//!
//! Each maps a row of `h` pre-activations `pre = W_encᵀ·x̄ + b_enc` to `h` codes:
//!
//! - [`Activation::Relu`]: `f_i = relu(pre_i)` (SAELens `standard`).
//! - [`Activation::TopK`]: keep the `k` largest pre-activations, apply ReLU to the kept
//!   ones and set every other code to 0, so at most `k` codes are non-zero (fewer when
//!   some of the `k` largest are `≤ 0`). This is SAELens' `topk` (`x.topk(k)` then ReLU
//!   on the values) and OpenAI's `TopK(k, postact_fn=ReLU)`.
//!   **Ties** are broken deterministically: values are ordered by
//!   [`f32::total_cmp`] (so `+0.0 > −0.0` and a positive NaN is larger than any number),
//!   and among values equal to the `k`-th largest the ones with the **lowest index**
//!   are kept. PyTorch's `topk` leaves tie order unspecified, so on exact ties the two
//!   may keep different (equal-valued) features; the codes differ only in which index
//!   carries the value.
//! - [`Activation::JumpRelu`]: `f_i = relu(pre_i)·1[pre_i > θ_i]` with a per-feature
//!   threshold and a **strict** `>`; the kept value is the raw pre-activation, not
//!   `pre − θ`. With `θ_i ≥ 0` (every published SAE) this is `pre_i·1[pre_i > θ_i]`;
//!   the outer ReLU is SAELens' and only matters for negative thresholds.
//!
//! In every case a code is non-zero exactly where its derivative with respect to the
//! pre-activation is 1 (and 0 elsewhere, including at the kink: relu'(0) = 0), so the
//! backward pass reads its mask from the codes (`f_i > 0`).
//!
//! ## Training JumpReLU thresholds (SAELens v6)
//! The loss is piecewise constant in `θ`, so the thresholds are trained with SAELens'
//! straight-through estimator (Rajamanoharan et al. 2024): with the
//! rectangle kernel `K(u) = 1[−½ < u < ½]` of bandwidth `ε` (SAELens
//! `jumprelu_bandwidth`, default 0.05) and, per row `b` and feature `i`,
//! `u_bi = (pre_bi − θ_i)/ε`, `g_bi = ∂L/∂f_bi` (the code gradient before the mask:
//! `(2/n)(x̂_b − x_b)·W_dec,i` plus the penalty's `(α/n)·w_i` for an L1-type penalty):
//!
//! ```text
//! ∂L/∂θ_i = −Σ_b K(u_bi)·( (θ_i/ε)·g_bi + α/(n·ε)·[Penalty::L0] )
//! ```
//!
//! The first term is SAELens' `JumpReLU.backward` (the jump of `f = pre·1[pre > θ]`),
//! the second its `Step.backward` for the L0 penalty `α·(1/n)Σ_b Σ_i step(pre_bi − θ_i)`
//! ([`super::Penalty::L0`]). The pre-activations get the ordinary derivative
//! `1[pre > θ]·g` only (SAELens' default `jumprelu_ste_to_input = False`, DeepMind's
//! JumpReLU), so `W_enc`, `b_enc` and `b_dec` see the mask exactly as for the other
//! activations. SAELens trains `θ` itself (not `log θ`, since 6.x) and projects it to
//! `θ ≥ 0` before every training step; [`crate::train::train_step`] does the same
//! after every update.

use super::params::Activation;
use crate::kernels::vector;
use core::cmp::Ordering;
use wide::f32x8;

/// Apply `act` in place to a block of rows of pre-activations (`rows×h` row-major,
/// bias already added). `threshold` holds the JumpReLU thresholds (`h`; ignored
/// otherwise); `sel` must hold at least `h` entries when `act` is TopK.
pub(crate) fn apply_rows(
    act: Activation,
    pre: &mut [f32],
    h: usize,
    threshold: &[f32],
    sel: &mut [f32],
) {
    match act {
        Activation::Relu => vector::relu_inplace(pre),
        Activation::TopK { k } => {
            for row in pre.chunks_exact_mut(h) {
                topk_relu_row(row, k, &mut sel[..h]);
            }
        }
        Activation::JumpRelu => {
            for row in pre.chunks_exact_mut(h) {
                jumprelu_row(row, threshold);
            }
        }
    }
}

/// `row_i ← relu(row_i)·1[row_i > threshold_i]` over the common length.
pub fn jumprelu_row(row: &mut [f32], threshold: &[f32]) {
    for (v, &t) in row.iter_mut().zip(threshold) {
        // `!(v > t)` also zeroes NaN pre-activations against a finite threshold;
        // a NaN threshold zeroes the feature.
        *v = if *v > t { vector::relu(*v) } else { 0.0 };
    }
}

/// SAELens' straight-through estimate of the JumpReLU threshold gradient (formula in
/// the [module docs](self)), accumulated row by row.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ThresholdGrad<'a> {
    /// The thresholds `θ` (`h`).
    theta: &'a [f32],
    /// The bandwidth `ε > 0`.
    bandwidth: f32,
    /// `α/(n·ε)` with the L0 penalty, else 0.
    l0: f32,
}

impl<'a> ThresholdGrad<'a> {
    /// The estimator for thresholds `theta`, bandwidth `bandwidth` (`> 0`, finite) and
    /// the L0 coefficient per row `l0_per_row = α/n` (0 without the L0 penalty).
    pub(crate) fn new(theta: &'a [f32], bandwidth: f32, l0_per_row: f32) -> Self {
        Self {
            theta,
            bandwidth,
            l0: l0_per_row / bandwidth,
        }
    }

    /// Add one row's contribution to `dtheta` (`h`): `pre` is the row's pre-activations
    /// (`h`), `g(i)` its code gradient `∂L/∂f_i` before the mask. `g` is called only for
    /// the features in the kernel's band, in ascending order.
    #[inline]
    pub(crate) fn add_row(&self, pre: &[f32], mut g: impl FnMut(usize) -> f32, dtheta: &mut [f32]) {
        let eps = self.bandwidth;
        for (i, ((&p, &t), dt)) in pre
            .iter()
            .zip(self.theta)
            .zip(dtheta.iter_mut())
            .enumerate()
        {
            // SAELens: rectangle((x − θ)/ε), strict on both sides; NaN is outside.
            let u = (p - t) / eps;
            if u > -0.5 && u < 0.5 {
                *dt -= (t / eps) * g(i) + self.l0;
            }
        }
    }
}

/// `θ_i ← max(θ_i, 0)` (NaN stays NaN): SAELens' projection of JumpReLU thresholds
/// before each training step.
pub fn clamp_thresholds(theta: &mut [f32]) {
    for t in theta {
        if *t < 0.0 {
            *t = 0.0;
        }
    }
}

/// TopK then ReLU on one row, in place: the `k` largest entries (ties: lowest index
/// first, order by [`f32::total_cmp`]) become `relu(v)`, all others `0`.
///
/// `sel` is scratch of at least `row.len()` entries (its contents are overwritten).
/// `k == 0` zeroes the row; `k ≥ row.len()` is a plain ReLU. Cost: one copy and one
/// linear-time selection (`select_nth_unstable_by`, no allocation) per row.
pub fn topk_relu_row(row: &mut [f32], k: usize, sel: &mut [f32]) {
    let h = row.len();
    if k >= h {
        vector::relu_inplace(row);
        return;
    }
    if k == 0 {
        row.fill(0.0);
        return;
    }
    if k <= HEAP_MAX_K && h >= 8 * k {
        topk_relu_small(row, k, sel);
        return;
    }
    let sel = &mut sel[..h];
    sel.copy_from_slice(row);
    // Descending order: after this, sel[k-1] is the k-th largest and sel[..k-1] are
    // all ≥ it.
    let (above, kth, _) = sel.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
    let t = *kth;
    let greater = above
        .iter()
        .filter(|v| v.total_cmp(&t) == Ordering::Greater)
        .count();
    let mut equal_left = k - greater;
    for v in row.iter_mut() {
        *v = match v.total_cmp(&t) {
            Ordering::Greater => vector::relu(*v),
            Ordering::Equal if equal_left > 0 => {
                equal_left -= 1;
                vector::relu(*v)
            }
            _ => 0.0,
        };
    }
}

/// The largest `k` for which [`topk_relu_row`] preselects candidates (when `h ≥ 8k`)
/// instead of running `select_nth_unstable_by` on the whole row.
const HEAP_MAX_K: usize = 64;

/// The total-order key of `v` ([`f32::total_cmp`] compares these as `i32`).
#[inline(always)]
fn key(v: f32) -> i32 {
    let b = v.to_bits() as i32;
    b ^ (((b >> 31) as u32) >> 1) as i32
}

/// [`topk_relu_row`] for `k ≤ HEAP_MAX_K` and `h ≥ 8k`, in three passes:
/// 1. the largest key of each of `k` contiguous groups; their minimum `t` has at least
///    `k` entries at or above it (one per group), so the kept set lies in `{v ≥ t}`;
/// 2. the candidates `v ≥ t` (a SIMD test on a superset: `v ≥ t` as floats, or NaN),
///    typically a few times `k` for unordered data;
/// 3. an exact selection among the candidates by (value by `total_cmp` descending,
///    index ascending): the same kept set as the definition.
///
/// `sel` (at least `h` slots) holds the candidates' indices.
fn topk_relu_small(row: &mut [f32], k: usize, sel: &mut [f32]) {
    let h = row.len();
    let g = h / k;
    let mut t = i32::MAX;
    for gi in 0..k {
        let end = if gi + 1 == k { h } else { (gi + 1) * g };
        let m = row[gi * g..end].iter().map(|&v| key(v)).max();
        t = t.min(m.unwrap_or(i32::MIN));
    }
    // The float with key t (the key map is its own inverse); a NaN bound (a group of
    // NaNs) filters nothing, as float comparisons with NaN are false.
    let tf = f32::from_bits(key(f32::from_bits(t as u32)) as u32);
    let tf = if tf.is_nan() { f32::NEG_INFINITY } else { tf };
    let idx: &mut [u32] = bytemuck::cast_slice_mut(&mut sel[..h]);
    let mut c = 0usize;
    let chunks = row.chunks_exact(8);
    let tail = chunks.remainder().len();
    let tv = f32x8::splat(tf);
    for (ci, ch) in chunks.enumerate() {
        let v = f32x8::new(ch.try_into().unwrap_or([0.0; 8]));
        let mut on = (v.simd_ge(tv) | v.simd_ne(v)).to_bitmask() & 0xFF;
        while on != 0 {
            let i = on.trailing_zeros() as usize;
            let j = ci * 8 + i;
            if key(row[j]) >= t {
                idx[c] = j as u32;
                c += 1;
            }
            on &= on - 1;
        }
    }
    for (j, &v) in row.iter().enumerate().skip(h - tail) {
        if key(v) >= t {
            idx[c] = j as u32;
            c += 1;
        }
    }
    if c < k {
        // Cannot happen (each group holds an entry at or above the bound); kept so that
        // no input can index past the candidates: select among every entry.
        for (j, v) in idx.iter_mut().enumerate() {
            *v = j as u32;
        }
        c = h;
    }
    let cand = &mut idx[..c];
    let order = |a: &u32, b: &u32| {
        key(row[*b as usize])
            .cmp(&key(row[*a as usize]))
            .then(a.cmp(b))
    };
    if c > k {
        cand.select_nth_unstable_by(k - 1, order);
    }
    let mut vals = [0.0f32; HEAP_MAX_K];
    for (v, &j) in vals.iter_mut().zip(&cand[..k]) {
        *v = row[j as usize];
    }
    row.fill(0.0);
    for (&v, &j) in vals.iter().zip(&cand[..k]) {
        row[j as usize] = vector::relu(v);
    }
}

/// Keep, in place, the `k` largest entries of `row` among those with `cand[i]` true
/// (ties: lowest index), **without** ReLU; every other entry becomes `+0.0`, and a kept
/// value of zero is stored as `−0.0`, so that "kept" is exactly "bits ≠ 0". `sel` is
/// scratch of at least `row.len()` entries. Used by the AuxK loss.
pub(crate) fn topk_among(row: &mut [f32], cand: &[bool], k: usize, sel: &mut [f32]) {
    let mut m = 0;
    for (&v, &c) in row.iter().zip(cand) {
        if c {
            sel[m] = v;
            m += 1;
        }
    }
    let k = k.min(m);
    if k == 0 {
        row.fill(0.0);
        return;
    }
    let (above, kth, _) = sel[..m].select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
    let t = *kth;
    let greater = above
        .iter()
        .filter(|v| v.total_cmp(&t) == Ordering::Greater)
        .count();
    let mut equal_left = k - greater;
    for (v, &c) in row.iter_mut().zip(cand) {
        let keep = c
            && match v.total_cmp(&t) {
                Ordering::Greater => true,
                Ordering::Equal if equal_left > 0 => {
                    equal_left -= 1;
                    true
                }
                _ => false,
            };
        *v = match (keep, *v == 0.0) {
            (false, _) => 0.0,
            (true, true) => -0.0,
            (true, false) => *v,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The candidate route keeps exactly the defined set (ties, NaN, ±0).
    #[test]
    fn candidate_selection_keeps_the_defined_set() {
        let mut state = 7u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as u32
        };
        let trials = if cfg!(miri) { 8 } else { 200 };
        for trial in 0..trials {
            let h = 64 + (next() % 300) as usize;
            let k = 1 + (next() % 8) as usize;
            let row: [f32; 400] = core::array::from_fn(|_| match next() % 16 {
                0 => 0.0,
                1 => -0.0,
                2 if trial % 3 == 0 => f32::NAN,
                4 if trial % 5 == 0 => -f32::NAN,
                3 => 0.5,
                _ => (next() % 2000) as f32 / 1000.0 - 1.0,
            });
            let (mut a, mut b) = ([0.0f32; 400], [0.0f32; 400]);
            a[..h].copy_from_slice(&row[..h]);
            b[..h].copy_from_slice(&row[..h]);
            let mut sel = [0.0f32; 400];
            topk_relu_small(&mut a[..h], k, &mut sel);
            // The definition: sort by total order, ties to the lowest index.
            let mut idx: [usize; 400] = core::array::from_fn(|i| i);
            idx[..h].sort_by(|&x, &y| row[y].total_cmp(&row[x]).then(x.cmp(&y)));
            b[..h].fill(0.0);
            for &i in &idx[..k] {
                b[i] = vector::relu(row[i]);
            }
            for i in 0..h {
                assert_eq!(a[i].to_bits(), b[i].to_bits(), "trial {trial}, index {i}");
            }
        }
    }

    /// A group made only of negative NaNs (the smallest values in the total order)
    /// gives a NaN bound; every larger entry must still be a candidate (fuzz finding).
    #[test]
    fn negative_nan_group_bound() {
        let mut row = [0.0f32; 64];
        for (j, v) in row.iter_mut().enumerate() {
            *v = if j < 16 {
                -f32::NAN
            } else {
                (j % 7) as f32 - 2.5
            };
        }
        let mut sel = [0.0f32; 64];
        let mut got = row;
        topk_relu_small(&mut got, 4, &mut sel);
        let kept: usize = got.iter().filter(|&&v| v != 0.0).count();
        assert_eq!(kept, 4);
        assert!(got.iter().all(|&v| v == 0.0 || v == 3.5), "{got:?}");
    }
}
