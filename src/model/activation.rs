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

use super::params::Activation;
use crate::kernels::vector;
use core::cmp::Ordering;

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
        topk_relu_heap(row, k);
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

/// The largest `k` for which [`topk_relu_row`] selects with a bounded heap instead of
/// `select_nth_unstable_by` (when `h ≥ 8k`): one pass with one comparison per entry.
const HEAP_MAX_K: usize = 64;

/// Is `a` worse than `b` in the TopK order (smaller value by `total_cmp`, then higher
/// index)?
#[inline(always)]
fn worse(a: (f32, u32), b: (f32, u32)) -> bool {
    match a.0.total_cmp(&b.0) {
        Ordering::Less => true,
        Ordering::Equal => a.1 > b.1,
        Ordering::Greater => false,
    }
}

/// Sift `e` down from node `i` of a min-heap (worst at the root).
fn sift_down(heap: &mut [(f32, u32)], mut i: usize, e: (f32, u32)) {
    let len = heap.len();
    loop {
        let l = 2 * i + 1;
        if l >= len {
            break;
        }
        let c = if l + 1 < len && worse(heap[l + 1], heap[l]) {
            l + 1
        } else {
            l
        };
        if worse(heap[c], e) {
            heap[i] = heap[c];
            i = c;
        } else {
            break;
        }
    }
    heap[i] = e;
}

/// [`topk_relu_row`] for `k ≤ HEAP_MAX_K`: the same kept set (scanning in index order,
/// a later entry replaces the worst kept one only if strictly larger, so ties keep the
/// lowest index).
fn topk_relu_heap(row: &mut [f32], k: usize) {
    let mut store = [(0.0f32, 0u32); HEAP_MAX_K];
    let heap = &mut store[..k];
    for (j, e) in heap.iter_mut().enumerate() {
        *e = (row[j], j as u32);
    }
    for i in (0..k / 2).rev() {
        sift_down(heap, i, heap[i]);
    }
    for (j, &v) in row.iter().enumerate().skip(k) {
        if v.total_cmp(&heap[0].0) == Ordering::Greater {
            sift_down(heap, 0, (v, j as u32));
        }
    }
    row.fill(0.0);
    for &(v, j) in heap.iter() {
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
