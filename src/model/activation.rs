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
use crate::kernels::isa;
use crate::kernels::vector;
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
            // Each row's candidate pass prefetches the next row (see `prefetch`).
            let mut rest = pre;
            while rest.len() >= h {
                let (row, tail) = rest.split_at_mut(h);
                let next = tail.get(..h).unwrap_or(&[]);
                topk_relu_row_prefetch(row, k, &mut sel[..h], next);
                rest = tail;
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
        *v = jumprelu(*v, t);
    }
}

/// `relu(v)·1[v > t]`: `!(v > t)` also zeroes a NaN pre-activation against a finite
/// threshold; a NaN threshold zeroes the feature.
#[inline(always)]
pub(crate) fn jumprelu(v: f32, t: f32) -> f32 {
    if v > t { vector::relu(v) } else { 0.0 }
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
/// `k == 0` zeroes the row; `k ≥ row.len()` is a plain ReLU. Cost, with no allocation:
/// for `k ≤ 64` and `h ≥ 8k` a SIMD bound and a selection among about `1.4·k`
/// candidates, else one linear-time selection over the row's keys.
pub fn topk_relu_row(row: &mut [f32], k: usize, sel: &mut [f32]) {
    topk_relu_row_prefetch(row, k, sel, &[]);
}

/// [`topk_relu_row`], asking the cache for `next` (the row to be processed next, or
/// empty) while the candidates of this one are collected.
fn topk_relu_row_prefetch(row: &mut [f32], k: usize, sel: &mut [f32], next: &[f32]) {
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
        topk_relu_small(row, k, sel, next);
        return;
    }
    topk_relu_whole(row, k, sel);
}

/// [`topk_relu_row`] by one selection over the keys of the whole row (`1 ≤ k < h`).
fn topk_relu_whole(row: &mut [f32], k: usize, sel: &mut [f32]) {
    let keys: &mut [u32] = bytemuck::cast_slice_mut(&mut sel[..row.len()]);
    for (u, &v) in keys.iter_mut().zip(row.iter()) {
        *u = ukey(v);
    }
    let mut keep = Keep::largest(keys, k);
    for v in row.iter_mut() {
        *v = if keep.next(ukey(*v)) {
            vector::relu(*v)
        } else {
            0.0
        };
    }
}

/// The largest `k` for which [`topk_relu_row`] preselects candidates (when `h ≥ 8k`)
/// instead of running `select_nth_unstable_by` on the whole row.
const HEAP_MAX_K: usize = 64;

/// The most candidates [`topk_relu_small`] selects among with keys on the stack; more
/// (heavy ties) use the whole-row selection.
const CAND_MAX: usize = 256;

/// The total-order key of `v` ([`f32::total_cmp`] compares these as `i32`).
#[inline(always)]
fn key(v: f32) -> i32 {
    let b = v.to_bits() as i32;
    b ^ (((b >> 31) as u32) >> 1) as i32
}

/// The float whose [`key`] is `t` (the key map is its own inverse).
#[inline(always)]
fn from_key(t: i32) -> f32 {
    f32::from_bits(key(f32::from_bits(t as u32)) as u32)
}

/// The unsigned total-order key of `v`: `ukey(a) < ukey(b)` exactly when
/// `a.total_cmp(&b)` is `Less` ([`key`] with its sign bit flipped).
#[inline(always)]
pub(crate) fn ukey(v: f32) -> u32 {
    (key(v) as u32) ^ (1 << 31)
}

/// The `k` largest of a list of keys, ties to the lowest position: built by one
/// selection over a copy of the keys ([`Keep::largest`]), then asked entry by entry,
/// in position order, whether each is kept ([`Keep::next`]). Every top-k selection
/// in the crate (TopK, AuxK, the candidates' bound) goes through it, so firmware links
/// a single instance of `select_nth_unstable`.
pub(crate) struct Keep {
    /// The `k`-th largest key.
    t: u32,
    /// How many more entries equal to `t` are kept (the first ones by position).
    equal_left: usize,
}

impl Keep {
    /// From `keys` (reordered in place), for `1 ≤ k ≤ keys.len()`.
    pub(crate) fn largest(keys: &mut [u32], k: usize) -> Self {
        let m = keys.len();
        // Ascending: keys[m − k] is the k-th largest key, the k − 1 after it are ≥ it.
        let (_, t, above) = keys.select_nth_unstable(m - k);
        let t = *t;
        let greater = above.iter().filter(|&&u| u > t).count();
        Keep {
            t,
            equal_left: k - greater,
        }
    }

    /// The `k`-th largest key.
    pub(crate) fn threshold(&self) -> u32 {
        self.t
    }

    /// Whether the next entry in position order, with key `u`, is kept.
    #[inline(always)]
    pub(crate) fn next(&mut self, u: u32) -> bool {
        if u > self.t {
            true
        } else if u == self.t && self.equal_left > 0 {
            self.equal_left -= 1;
            true
        } else {
            false
        }
    }
}

/// A lower bound `t` (a [`key`]) with at least `k` entries of `row` at or above it,
/// from the maxima of `G` strided groups (`row[j]`, `row[j + G]`, … over the first
/// `⌊h/G⌋·G` entries; `k ≤ G ≤ h`): `t` is the `k`-th largest group maximum, and the
/// `k` groups whose maxima are at or above it hold `k` distinct such entries.
///
/// The running maximum is the select `if v > m { v } else { m }` (a SIMD `max` after
/// vectorization), which always returns one of its operands' bits, so each group's
/// result is an entry of that group (with NaNs or `±0` not necessarily the largest by
/// [`key`]: the bound may be lower than the true `k`-th largest, never higher).
#[inline(always)]
fn group_bound<const G: usize>(row: &[f32], k: usize) -> i32 {
    let mut acc = [0.0f32; G];
    let mut blocks = row.chunks_exact(G);
    if let Some(first) = blocks.next() {
        acc.copy_from_slice(first);
    }
    for blk in blocks {
        for (m, &v) in acc.iter_mut().zip(blk) {
            *m = if v > *m { v } else { *m };
        }
    }
    let mut keys = [0u32; G];
    for (t, &m) in keys.iter_mut().zip(acc.iter()) {
        *t = ukey(m);
    }
    let t = Keep::largest(&mut keys, k).threshold();
    (t ^ (1 << 31)) as i32
}

/// Pass 2 of [`topk_relu_small`]: the indices of the entries with `key(v) ≥ t` into
/// `idx` (at least `h` slots), in ascending order; returns their number. Tests chunks
/// of `W` entries at once on a superset (`!(v < tf)` as floats: `v ≥ tf` or
/// unordered, so NaN entries and a NaN bound pass), then each set bit exactly.
#[inline(always)]
fn candidates<const W: usize>(row: &[f32], t: i32, idx: &mut [u32], next: &[f32]) -> usize {
    // With a NaN bound every entry passes the float test and the key test decides.
    let tf = from_key(t);
    let mut c = 0usize;
    let chunks = row.chunks_exact(W);
    let tail = chunks.remainder().len();
    let tv = f32x8::splat(tf);
    // Chunks of 16 run in the AVX-512 build, where one mask compare tests them.
    #[cfg(target_arch = "x86_64")]
    let avx512 = if W == 16 { isa::x86::avx512() } else { None };
    for (ci, ch) in chunks.enumerate() {
        prefetch(next, ci * W);
        let mut on = 0u32;
        #[cfg(target_arch = "x86_64")]
        if let (Some(t), Ok(c16)) = (avx512, <&[f32; 16]>::try_from(ch)) {
            on = t.not_below16(c16, tf);
        }
        #[cfg(target_arch = "x86_64")]
        let wide_chunks = if avx512.is_some() { 0 } else { W / 8 };
        #[cfg(not(target_arch = "x86_64"))]
        let wide_chunks = W / 8;
        for (i, c8) in ch.chunks_exact(8).take(wide_chunks).enumerate() {
            let v = f32x8::new(c8.try_into().unwrap_or([0.0; 8]));
            on |= (!v.simd_lt(tv).to_bitmask() & 0xFF) << (8 * i);
        }
        while on != 0 {
            let j = ci * W + on.trailing_zeros() as usize;
            if key(row[j]) >= t {
                idx[c] = j as u32;
                c += 1;
            }
            on &= on - 1;
        }
    }
    let h = row.len();
    for (j, &v) in row.iter().enumerate().skip(h - tail) {
        if key(v) >= t {
            idx[c] = j as u32;
            c += 1;
        }
    }
    c
}

/// Passes 1 and 2 of [`topk_relu_small`] with about `2k` groups (at most `GMAX`) and
/// chunks of `W`: the candidates' count. Needs `k ≥ 1`, `h ≥ 8k`.
#[inline(always)]
fn bound_and_candidates<const GMAX: usize, const W: usize>(
    row: &[f32],
    k: usize,
    idx: &mut [u32],
    next: &[f32],
) -> usize {
    candidates::<W>(row, group_bound_for::<GMAX>(row, k), idx, next)
}

/// [`group_bound`] with about `2k` groups (at most `GMAX`): the k-th largest of 2k
/// group maxima leaves about 1.4·k candidates on unordered data (the minimum of k
/// maxima: about 3.5·k). Every choice has `k ≤ G ≤ 4k ≤ h` for `h ≥ 8k`.
#[inline(always)]
fn group_bound_for<const GMAX: usize>(row: &[f32], k: usize) -> i32 {
    match k {
        0..=4 => group_bound::<8>(row, k),
        5..=8 => group_bound::<16>(row, k),
        9..=16 => group_bound::<32>(row, k),
        17..=32 => group_bound::<64>(row, k),
        _ if GMAX >= 128 => group_bound::<128>(row, k),
        _ => group_bound::<64>(row, k),
    }
}

/// [`bound_and_candidates`] with the group count and chunk width for `lanes` `f32`
/// per vector (AVX-512: 16, AVX2: 8, else the baseline build's 8-wide `wide` chunks).
#[inline(always)]
fn bound_and_candidates_for(
    lanes: usize,
    row: &[f32],
    k: usize,
    idx: &mut [u32],
    next: &[f32],
) -> usize {
    match lanes {
        16 => bound_and_candidates::<128, 16>(row, k, idx, next),
        8 => bound_and_candidates::<128, 8>(row, k, idx, next),
        _ => bound_and_candidates::<64, 8>(row, k, idx, next),
    }
}

/// Passes 1 and 2 compiled for the selected instruction set (the arithmetic is the
/// same on each, so the candidates are too).
fn bound_and_candidates_selected(row: &[f32], k: usize, idx: &mut [u32], next: &[f32]) -> usize {
    isa::vectorized(
        #[inline(always)]
        |lanes| bound_and_candidates_for(lanes, row, k, idx, next),
    )
}

/// For a row without NaN: its `k`-th largest entry `S` by [`f32::total_cmp`] and the
/// ascending indices (into `idx`, at least `h` slots) of the entries greater than
/// `below(S)`; `below` must be non-decreasing with `below(v) ≤ v`. `None` if more than
/// `keys.len()` entries reach the first pass's bound (heavy ties, or a `below` far
/// beneath `S`). Needs `1 ≤ k ≤` [`HEAP_MAX_K`], `h ≥ 8k`.
///
/// Two passes over the row, as [`topk_relu_row`]'s: a lower bound `t₀ ≤ S` from
/// strided group maxima, then every entry greater than `below(t₀)` (which includes all
/// those above `below(S)` and all those at or above `S`); `S` is selected among
/// those, and the list filtered to `> below(S)`. The second pass fetches `next` (the
/// next row, or empty) into the cache.
#[cfg(target_arch = "x86_64")]
pub(crate) fn kth_and_above(
    (row, next): (&[f32], &[f32]),
    k: usize,
    below: impl Fn(f32) -> f32,
    idx: &mut [u32],
    keys: &mut [u32],
) -> Option<(f32, usize)> {
    // The group counts of `bound_and_candidates_for`.
    let t0 = isa::vectorized(
        #[inline(always)]
        |lanes| match lanes {
            8 | 16 => group_bound_for::<128>(row, k),
            _ => group_bound_for::<64>(row, k),
        },
    );
    let c = greater_than((row, next), below(from_key(t0)), idx);
    if c > keys.len() || c < k {
        return None;
    }
    for (u, &j) in keys.iter_mut().zip(&idx[..c]) {
        *u = ukey(row[j as usize]);
    }
    let s = Keep::largest(&mut keys[..c], k).threshold();
    let s = from_key((s ^ (1 << 31)) as i32);
    let t = key(below(s));
    let mut n = 0;
    for q in 0..c {
        let j = idx[q];
        if key(row[j as usize]) > t {
            idx[n] = j;
            n += 1;
        }
    }
    Some((s, n))
}

/// The indices (ascending) of the entries of `row` greater than `t` by
/// [`f32::total_cmp`] into `idx` (at least `row.len()` slots); returns their number.
/// Fetches `next` (the next row, or empty) into the cache meanwhile.
#[cfg(target_arch = "x86_64")]
pub(crate) fn greater_than((row, next): (&[f32], &[f32]), t: f32, idx: &mut [u32]) -> usize {
    // `candidates` keeps keys at or above its bound: one key above `t`'s.
    let above = key(t).saturating_add(1);
    isa::vectorized(
        #[inline(always)]
        |lanes| match lanes {
            16 => candidates::<16>(row, above, idx, next),
            _ => candidates::<8>(row, above, idx, next),
        },
    )
}

/// Ask the cache for the line holding `x[i]` (nothing if `i` is out of range, or on
/// targets without a prefetch instruction here). Rows of pre-activations leave the
/// encoder GEMM in blocks larger than the L2 cache; fetching row `r + 1` while row `r`
/// is in its (compute-bound) candidate pass hides most of the next row's miss latency.
#[inline(always)]
fn prefetch(x: &[f32], i: usize) {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse"))]
    if let Some(v) = x.get(i) {
        use core::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // SAFETY: SSE is enabled for the whole build (the cfg above), so the
        // instruction exists; a prefetch never faults and reads nothing into the
        // program, and the address is that of a live element.
        unsafe { _mm_prefetch::<_MM_HINT_T0>((v as *const f32).cast()) };
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse")))]
    let _ = (x, i);
}

/// [`topk_relu_row`] for `k ≤ HEAP_MAX_K` and `h ≥ 8k`, in three passes:
/// 1. a lower bound `t` on the `k`-th largest key ([`group_bound`]: SIMD maxima of
///    about `2k` strided groups, then the `k`-th largest of those), so the kept set
///    lies in `{v : key(v) ≥ t}`;
/// 2. the candidates `key(v) ≥ t` ([`candidates`]), typically about `1.4·k` for
///    unordered data;
/// 3. an exact selection among the candidates by (value by `total_cmp` descending,
///    index ascending) with [`Keep`]: the same kept set as the definition.
///
/// Passes 1 and 2 run on the selected instruction set (AVX-512F or AVX2 code
/// generation on x86_64; the same arithmetic, so the same candidates).
/// `sel` (at least `h` slots) holds the candidates' indices.
fn topk_relu_small(row: &mut [f32], k: usize, sel: &mut [f32], next: &[f32]) {
    let h = row.len();
    let idx: &mut [u32] = bytemuck::cast_slice_mut(&mut sel[..h]);
    let c = bound_and_candidates_selected(row, k, idx, next);
    if c < k || c > CAND_MAX {
        // Fewer than k cannot happen (the bound has k entries at or above it); many
        // more happen only with heavy ties: select over the whole row.
        topk_relu_whole(row, k, sel);
        return;
    }
    let mut keys = [0u32; CAND_MAX];
    for (u, &j) in keys.iter_mut().zip(idx[..c].iter()) {
        *u = ukey(row[j as usize]);
    }
    let mut keep = Keep::largest(&mut keys[..c], k);
    // The candidates are in ascending position order.
    let mut vals = [0.0f32; HEAP_MAX_K];
    let mut kept = [0u32; HEAP_MAX_K];
    let mut n = 0;
    for &j in &idx[..c] {
        let v = row[j as usize];
        if n < k && keep.next(ukey(v)) {
            (vals[n], kept[n]) = (v, j);
            n += 1;
        }
    }
    row.fill(0.0);
    for (&v, &j) in vals[..n].iter().zip(&kept[..n]) {
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
    let keys: &mut [u32] = bytemuck::cast_slice_mut(&mut sel[..m]);
    for u in keys.iter_mut() {
        *u = ukey(f32::from_bits(*u));
    }
    let mut keep = Keep::largest(keys, k);
    for (v, &c) in row.iter_mut().zip(cand) {
        let keep = c && keep.next(ukey(*v));
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

    /// A seeded 64-bit LCG: the high 31 bits of each state.
    fn lcg(seed: u64) -> impl FnMut() -> u32 {
        let mut state = seed;
        move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as u32
        }
    }

    /// The candidate route keeps exactly the defined set (ties, NaN, ±0).
    #[test]
    fn candidate_selection_keeps_the_defined_set() {
        let mut next = lcg(7);
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
            topk_relu_small(&mut a[..h], k, &mut sel, &[]);
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

    /// The definition of TopK + ReLU (sort by total order descending, ties to the
    /// lowest index), for the tests.
    fn reference(row: &[f32], k: usize, out: &mut [f32]) {
        let h = row.len();
        let mut idx: [usize; 1024] = core::array::from_fn(|i| i);
        idx[..h].sort_by(|&x, &y| row[y].total_cmp(&row[x]).then(x.cmp(&y)));
        out[..h].fill(0.0);
        for &i in &idx[..k.min(h)] {
            out[i] = vector::relu(row[i]);
        }
    }

    /// `topk_relu_row` against [`reference`] on one row, bit for bit.
    fn check_row(row: &[f32], k: usize, what: &str) {
        let h = row.len();
        let (mut got, mut want, mut sel) = ([0.0f32; 1024], [0.0f32; 1024], [7.0f32; 1024]);
        got[..h].copy_from_slice(row);
        topk_relu_row(&mut got[..h], k, &mut sel);
        reference(row, k, &mut want);
        for i in 0..h {
            assert_eq!(
                got[i].to_bits(),
                want[i].to_bits(),
                "{what}: h {h}, k {k}, index {i}"
            );
        }
    }

    /// Adversarial rows through every route (k = 1 … 64 with h ≥ 8k, larger k, k = h−1,
    /// k ≥ h): all equal, many ties at the threshold, NaNs of both signs, ±0, ±∞,
    /// sorted and reverse-sorted rows, lengths that are not multiples of the groups.
    #[test]
    #[allow(clippy::needless_range_loop)] // j indexes twelve rows at once
    fn adversarial_rows_keep_the_defined_set() {
        let hs: &[usize] = if cfg!(miri) {
            &[9, 70]
        } else {
            &[1, 2, 7, 8, 9, 64, 65, 100, 263, 512, 777, 1024]
        };
        let mut next = lcg(11);
        for &h in hs {
            let mut ks: heapless::Vec<usize, 32> = heapless::Vec::new();
            for k in [0, 1, 2, 3, 4, 5, 8, 9, 16, 17, 31, 32, 33, 63, 64, 65, 100] {
                if k <= h + 1 {
                    ks.push(k).ok();
                }
            }
            ks.push(h.saturating_sub(1)).ok();
            ks.push(h).ok();
            let mut rows: [[f32; 1024]; 12] = [[0.0; 1024]; 12];
            for j in 0..h {
                let r = (next() % 1000) as f32 / 100.0 - 5.0;
                rows[0][j] = 1.25; // all equal
                rows[1][j] = if j % 3 == 0 { 2.0 } else { r.min(1.0) }; // ties at the top
                rows[2][j] = (next() % 4) as f32; // few distinct values
                rows[3][j] = if next().is_multiple_of(2) { 0.0 } else { -0.0 };
                rows[4][j] = match next() % 6 {
                    0 => f32::NAN,
                    1 => -f32::NAN,
                    2 => f32::INFINITY,
                    3 => f32::NEG_INFINITY,
                    _ => r,
                };
                rows[5][j] = f32::NEG_INFINITY;
                rows[6][j] = j as f32; // ascending: the largest at the end
                rows[7][j] = -(j as f32); // descending
                rows[8][j] = if j % 2 == 0 { -f32::NAN } else { f32::NAN };
                rows[9][j] = if j < h / 2 { -f32::NAN } else { r };
                rows[10][j] = r;
                rows[11][j] = if next().is_multiple_of(8) {
                    r.abs()
                } else {
                    -0.0
                };
            }
            for (ri, row) in rows.iter().enumerate() {
                for &k in ks.iter() {
                    check_row(&row[..h], k, alloc_free_name(ri));
                }
            }
        }
    }

    fn alloc_free_name(ri: usize) -> &'static str {
        [
            "all equal",
            "ties at the top",
            "few distinct",
            "signed zeros",
            "nan/inf mix",
            "all -inf",
            "ascending",
            "descending",
            "all nan",
            "negative nan half",
            "random",
            "mostly -0",
        ][ri]
    }

    /// Passes 1–2 compiled for each x86 instruction set the CPU has give the portable
    /// build's candidates (runs every set the CPU has, whatever `SAE_KERNEL` says).
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    #[test]
    fn candidates_agree_across_instruction_sets() {
        use crate::kernels::isa::Kernel;
        let mut next = lcg(3);
        for trial in 0..300 {
            let h = 8 + (next() % 1000) as usize;
            let k = 1 + (next() as usize % (h / 8).clamp(1, HEAP_MAX_K));
            let row: [f32; 1024] = core::array::from_fn(|_| match next() % 20 {
                0 if trial % 4 == 0 => f32::NAN,
                1 if trial % 7 == 0 => -f32::NAN,
                2 => -0.0,
                3 => 0.0,
                4 => 1.0,
                _ => (next() % 4000) as f32 / 1000.0 - 2.0,
            });
            let row = &row[..h];
            let mut want = [0u32; 1024];
            let c = bound_and_candidates::<64, 8>(row, k, &mut want, &[]);
            assert!(c >= k, "trial {trial}: {c} candidates for k = {k}");
            let mut got = [0u32; 1024];
            for kern in [Kernel::Avx2, Kernel::Avx512] {
                let c2 = isa::vectorized_on(
                    kern,
                    #[inline(always)]
                    |l| bound_and_candidates_for(l, row, k, &mut got, row),
                );
                if let Some(c2) = c2 {
                    // A different group count may give a different (valid) bound: the
                    // candidates are a superset of the kept set either way; compare
                    // the kept sets through the packed selection.
                    assert_eq!(
                        top(row, &got[..c2], k),
                        top(row, &want[..c], k),
                        "{kern:?} {trial}"
                    );
                }
            }
        }
    }

    /// One `u64` per entry `j` ordering as the kept set does: larger key first, then
    /// lower index.
    fn packed(v: f32, j: usize) -> u64 {
        (u64::from(ukey(v)) << 32) | u64::from(!(j as u32))
    }

    /// The kept set among candidates `cand`, as sorted packed keys.
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    fn top(row: &[f32], cand: &[u32], k: usize) -> [u64; HEAP_MAX_K] {
        let mut p = [0u64; 1024];
        for (q, &j) in p.iter_mut().zip(cand) {
            *q = packed(row[j as usize], j as usize);
        }
        let p = &mut p[..cand.len()];
        p.sort_unstable_by(|a, b| b.cmp(a));
        let mut out = [0u64; HEAP_MAX_K];
        out[..k].copy_from_slice(&p[..k]);
        out
    }

    /// `apply_rows` on a block (each row's pass prefetching the next) keeps the same
    /// sets as `topk_relu_row` row by row.
    #[test]
    fn block_of_rows_matches_row_by_row() {
        let (h, k) = (96usize, 5usize);
        let mut block = [0.0f32; 3 * 96];
        for (j, v) in block.iter_mut().enumerate() {
            *v = ((j * 37) % 101) as f32 / 10.0 - 4.0;
        }
        let mut want = block;
        let mut sel = [0.0f32; 96];
        for row in want.chunks_exact_mut(h) {
            topk_relu_row(row, k, &mut sel);
        }
        apply_rows(Activation::TopK { k }, &mut block, h, &[], &mut sel);
        for (a, b) in block.iter().zip(&want) {
            assert_eq!(a.to_bits(), b.to_bits());
        }
        assert_eq!(block.iter().filter(|&&v| v != 0.0).count(), 3 * k);
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
        topk_relu_small(&mut got, 4, &mut sel, &[]);
        let kept: usize = got.iter().filter(|&&v| v != 0.0).count();
        assert_eq!(kept, 4);
        assert!(got.iter().all(|&v| v == 0.0 || v == 3.5), "{got:?}");
    }
}
