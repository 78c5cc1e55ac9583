//! Sparse feature outputs for engines: active features as `(index, value)` pairs.
//!
//! An engine that reads features out of a model (or splices them back in) wants the
//! few active features of each row, not `h` mostly-zero codes. This module encodes
//! with the crate's encoder ([`crate::model::encode`], any architecture) and then scans the
//! codes once:
//!
//! - [`encode_sparse`]: one vector into a `heapless::Vec<(u32, f32), K>`;
//! - [`encode_csr`]: a batch into caller CSR buffers (row offsets, indices, values);
//! - [`top_k`]: the `K` largest codes of a code row in one pass (a bounded min-heap);
//! - [`decode_sparse`] and [`decode_csr`]: the reconstruction
//!   `x̂ = Σ value·W_dec[index] (+ b_dec)` (tied: the rows of `M`).
//!
//! Running out of room is never silent: it is [`Error::Capacity`] unless the caller
//! asked for [`Overflow::KeepLargest`] (or [`RowLimit::TopK`]), and even then the
//! number of active features is returned, so the caller sees how many were dropped.
//!
//! Every list is sorted by feature index, ascending. Among equal values the
//! "largest" selections prefer the lower index, so results are deterministic.
//!
//! A NaN code (from a NaN or infinite input) is an [`Error::NonFinite`] naming `x`.

use crate::error::{Error, Result, check_len, check_nonzero, mul};
use crate::kernels::dispatch_vector::axpy;
use crate::model::core::{block_rows_for, check_batch};
use crate::model::{Arch, Dims, Encoder, Params, encode, encode_scratch_len};

/// What [`encode_sparse`] does when more features are active than `out` can hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overflow {
    /// Return [`Error::Capacity`] (and leave `out` empty).
    Error,
    /// Keep the `K` largest codes (ties: the lower index) and drop the rest.
    KeepLargest,
}

/// How many features per row [`encode_csr`] stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowLimit {
    /// Every active feature; running out of CSR capacity is [`Error::Capacity`].
    All,
    /// The `k` largest active codes of each row (fewer if fewer are active); the CSR
    /// buffers must hold [`csr_top_k_len`]`(n, k)` entries.
    TopK(usize),
}

/// Is `(ja, va)` a better (larger) entry than `(jb, vb)`? Larger value, then lower index.
#[inline(always)]
fn better(ja: u32, va: f32, jb: u32, vb: f32) -> bool {
    va > vb || (va == vb && ja < jb)
}

/// Storage for a bounded min-heap of `(index, value)` entries (the root is the worst).
trait Slots {
    fn get(&self, i: usize) -> (u32, f32);
    fn set(&mut self, i: usize, e: (u32, f32));
}

impl Slots for [(u32, f32)] {
    fn get(&self, i: usize) -> (u32, f32) {
        self[i]
    }
    fn set(&mut self, i: usize, e: (u32, f32)) {
        self[i] = e;
    }
}

/// Parallel index and value arrays (a CSR row segment).
struct Split<'a> {
    idx: &'a mut [u32],
    val: &'a mut [f32],
}

impl Slots for Split<'_> {
    fn get(&self, i: usize) -> (u32, f32) {
        (self.idx[i], self.val[i])
    }
    fn set(&mut self, i: usize, e: (u32, f32)) {
        self.idx[i] = e.0;
        self.val[i] = e.1;
    }
}

/// Restore the heap property from the root down, for a heap of `len` entries.
fn sift_down<S: Slots + ?Sized>(s: &mut S, len: usize, e: (u32, f32)) {
    let mut i = 0;
    loop {
        let l = 2 * i + 1;
        if l >= len {
            break;
        }
        // The worse child (the smaller entry) moves up.
        let mut c = l;
        let (lj, lv) = s.get(l);
        if l + 1 < len {
            let (rj, rv) = s.get(l + 1);
            if better(lj, lv, rj, rv) {
                c = l + 1;
            }
        }
        let (cj, cv) = s.get(c);
        if better(e.0, e.1, cj, cv) {
            s.set(i, (cj, cv));
            i = c;
        } else {
            break;
        }
    }
    s.set(i, e);
}

/// Add `e` to a heap of `len` entries with room for one more.
fn sift_up<S: Slots + ?Sized>(s: &mut S, len: usize, e: (u32, f32)) {
    let mut i = len;
    while i > 0 {
        let p = (i - 1) / 2;
        let (pj, pv) = s.get(p);
        if better(pj, pv, e.0, e.1) {
            s.set(i, (pj, pv));
            i = p;
        } else {
            break;
        }
    }
    s.set(i, e);
}

/// One pass over a code row calling `f(index, value)` for each active code (`> 0`).
/// Returns `Err(NonFinite("x"))` at the first NaN code.
fn for_active(codes: &[f32], mut f: impl FnMut(u32, f32)) -> Result<()> {
    for (j, &v) in codes.iter().enumerate() {
        if v > 0.0 {
            f(j as u32, v);
        } else if v.is_nan() {
            return Err(Error::NonFinite { arg: "x" });
        }
    }
    Ok(())
}

/// Bounded selection of the `cap` largest active codes into `s`; returns
/// `(kept, active)`. The kept entries are in heap order.
fn select<S: Slots + ?Sized>(codes: &[f32], s: &mut S, cap: usize) -> Result<(usize, usize)> {
    let (mut len, mut active) = (0usize, 0usize);
    for_active(codes, |j, v| {
        active += 1;
        if len < cap {
            sift_up(s, len, (j, v));
            len += 1;
        } else if cap > 0 {
            let (rj, rv) = s.get(0);
            if better(j, v, rj, rv) {
                sift_down(s, len, (j, v));
            }
        }
    })?;
    Ok((len, active))
}

/// The `K` largest active codes (`> 0`) of one code row, sorted by index, in one pass
/// with a bounded min-heap (`O(h + a·log K)` for `a` active codes).
///
/// `out` is cleared first. Returns the number of active codes in the row (which may
/// exceed `K`: the rest were not kept).
///
/// # Errors
/// [`Error::NonFinite`] naming `x` if a code is NaN; `out` is then left empty.
pub fn top_k<const K: usize>(
    codes: &[f32],
    out: &mut heapless::Vec<(u32, f32), K>,
) -> Result<usize> {
    out.clear();
    let mut active = 0usize;
    let res = for_active(codes, |j, v| {
        active += 1;
        let len = out.len();
        if len < K {
            // Room for one more: grow, then sift the new entry up from the end.
            let _ = out.push((j, v));
            sift_up(&mut out[..], len, (j, v));
        } else if K > 0 {
            let (rj, rv) = out[0];
            if better(j, v, rj, rv) {
                sift_down(&mut out[..], K, (j, v));
            }
        }
    });
    if let Err(e) = res {
        out.clear();
        return Err(e);
    }
    out.sort_unstable_by_key(|e| e.0);
    Ok(active)
}

/// Scratch `f32` for [`encode_sparse`]: one code row (`h`) plus
/// [`encode_scratch_len`]`(arch, dims, 1)`.
#[must_use]
pub const fn encode_sparse_scratch_len(arch: Arch, dims: Dims) -> usize {
    dims.h.saturating_add(encode_scratch_len(arch, dims, 1))
}

/// Encode one vector into its active features: `out ← {(j, c_j) : c_j > 0}` with `c`
/// the model's codes ([`crate::model::encode`]), sorted by index.
///
/// - `x`: `d` values; `out`: cleared, then filled;
/// - `overflow`: what to do when more than `K` features are active;
/// - `scratch`: at least [`encode_sparse_scratch_len`]`(dims)` `f32`.
///
/// Returns the number of active features (`> K` means [`Overflow::KeepLargest`]
/// dropped some).
///
/// # Errors
/// [`Error::Length`] naming `x`; [`Error::WorkspaceTooSmall`] naming `scratch`;
/// [`Error::Capacity`] naming `out` (with `needed` = the number of active features)
/// when more than `K` are active under [`Overflow::Error`]; [`Error::NonFinite`]
/// naming `x` if a code is NaN. On error `out` is empty.
///
/// # Example
/// ```
/// use sae_kernels::model::{Dims, Params};
/// use sae_kernels::sparse::{Overflow, encode_sparse, encode_sparse_scratch_len};
/// let dims = Dims::new(2, 3)?;
/// let (m, b) = ([1.0, 0.0, 0.0, 1.0, 1.0, 1.0], [0.0, 0.0, -1.5]);
/// let p = Params::tied(dims, &m, &b)?;
/// let mut scratch = vec![0.0; encode_sparse_scratch_len(p.arch(), dims)];
/// let mut out = heapless::Vec::<(u32, f32), 4>::new();
/// encode_sparse(p, &[2.0, 0.0], &mut out, Overflow::Error, &mut scratch)?;
/// assert_eq!(&out[..], &[(0, 2.0), (2, 0.5)]);
/// # Ok::<(), sae_kernels::Error>(())
/// ```
pub fn encode_sparse<const K: usize>(
    p: Params<'_>,
    x: &[f32],
    out: &mut heapless::Vec<(u32, f32), K>,
    overflow: Overflow,
    scratch: &mut [f32],
) -> Result<usize> {
    let Dims { d, h } = p.dims();
    out.clear();
    check_len("x", x.len(), d)?;
    let need = encode_sparse_scratch_len(p.arch(), p.dims());
    crate::error::check_scratch(scratch.len(), need)?;
    let (codes, rest) = scratch.split_at_mut(h);
    encode(p, x, 1, codes, rest)?;
    match overflow {
        Overflow::KeepLargest => top_k(codes, out),
        Overflow::Error => {
            let mut active = 0usize;
            let res = for_active(codes, |j, v| {
                active += 1;
                // Past capacity only the count goes on, for the error's `needed`.
                let _ = out.push((j, v));
            });
            if let Err(e) = res {
                out.clear();
                return Err(e);
            }
            if active > K {
                out.clear();
                return Err(Error::Capacity {
                    arg: "out",
                    capacity: K,
                    needed: active,
                });
            }
            Ok(active)
        }
    }
}

/// CSR entries [`encode_csr`] needs with [`RowLimit::TopK`]`(k)`: `n·k` (saturating).
#[must_use]
pub const fn csr_top_k_len(n: usize, k: usize) -> usize {
    n.saturating_mul(k)
}

/// Scratch `f32` for [`encode_csr`] and blocks of `block_rows` rows (at most
/// [`crate::model::MAX_BLOCK_ROWS`]): `block_rows·h` codes plus
/// [`encode_scratch_len`]`(arch, dims, block_rows)`.
#[must_use]
pub const fn encode_csr_scratch_len(arch: Arch, dims: Dims, block_rows: usize) -> usize {
    let max = crate::model::MAX_BLOCK_ROWS;
    let rows = if block_rows < 1 {
        1
    } else if block_rows > max {
        max
    } else {
        block_rows
    };
    rows.saturating_mul(dims.h)
        .saturating_add(encode_scratch_len(arch, dims, rows))
}

/// Encode a batch into CSR buffers: row `i`'s active features are
/// `indices[row_ptr[i]..row_ptr[i+1]]` (ascending) with codes
/// `values[row_ptr[i]..row_ptr[i+1]]`.
///
/// - `x`: `n×d` row-major; `row_ptr`: `n + 1` entries, `row_ptr[0] = 0`;
/// - `indices`, `values`: the CSR capacity is the shorter of the two; entries past
///   `row_ptr[n]` are left as they were;
/// - `limit`: every active feature, or the `k` largest per row;
/// - `scratch`: at least [`encode_csr_scratch_len`]`(dims, 1)` `f32`; more gives
///   larger row blocks (faster encoder products).
///
/// Returns the number of stored entries, `row_ptr[n]`.
///
/// # Errors
/// [`Error::Dimension`] if `n == 0`; [`Error::Length`] naming `x` or `row_ptr`;
/// [`Error::WorkspaceTooSmall`] naming `scratch`; [`Error::Capacity`] naming `indices`
/// when the buffers are too short: with [`RowLimit::All`] `needed` is the batch's total
/// number of active features (the whole batch is still encoded to count them), with
/// [`RowLimit::TopK`] it is [`csr_top_k_len`] and is checked before any work;
/// [`Error::NonFinite`] naming `x` if a code is NaN. On error the CSR buffers' contents
/// are unspecified.
#[allow(clippy::too_many_arguments)]
pub fn encode_csr(
    p: Params<'_>,
    x: &[f32],
    n: usize,
    limit: RowLimit,
    row_ptr: &mut [usize],
    indices: &mut [u32],
    values: &mut [f32],
    scratch: &mut [f32],
) -> Result<usize> {
    let (arch, dims) = (p.arch(), p.dims());
    let Dims { d, h } = dims;
    check_batch(dims, x, n)?;
    check_len(
        "row_ptr",
        row_ptr.len(),
        n.checked_add(1).ok_or(Error::Overflow { arg: "row_ptr" })?,
    )?;
    let cap = indices.len().min(values.len());
    if let RowLimit::TopK(k) = limit {
        let need = mul("indices", n, k)?;
        if cap < need {
            return Err(Error::Capacity {
                arg: "indices",
                capacity: cap,
                needed: need,
            });
        }
    }
    let rb = block_rows_for(scratch.len(), |r| encode_csr_scratch_len(arch, dims, r))?;
    let (codes, rest) = scratch.split_at_mut(rb * h);
    let mut enc = Encoder::new(p, rb, rest)?;
    row_ptr[0] = 0;
    let mut nnz = 0usize;
    let mut needed = 0usize; // with RowLimit::All: the running total of active features
    for r0 in (0..n).step_by(rb) {
        let rows = rb.min(n - r0);
        let cb = &mut codes[..rows * h];
        enc.encode(&x[r0 * d..(r0 + rows) * d], rows, cb)?;
        for (r, row) in cb.chunks_exact(h).enumerate() {
            match limit {
                RowLimit::All => {
                    for_active(row, |j, v| {
                        if needed < cap {
                            indices[needed] = j;
                            values[needed] = v;
                        }
                        needed += 1;
                    })?;
                    nnz = needed.min(cap);
                }
                RowLimit::TopK(k) => {
                    let mut seg = Split {
                        idx: &mut indices[nnz..nnz + k],
                        val: &mut values[nnz..nnz + k],
                    };
                    let (kept, _) = select(row, &mut seg, k)?;
                    sort_pairs(&mut indices[nnz..nnz + kept], &mut values[nnz..nnz + kept]);
                    nnz += kept;
                }
            }
            row_ptr[r0 + r + 1] = nnz;
        }
    }
    if needed > cap {
        return Err(Error::Capacity {
            arg: "indices",
            capacity: cap,
            needed,
        });
    }
    Ok(nnz)
}

/// Sort parallel `(index, value)` arrays by index (insertion sort: `k` is small and
/// this allocates nothing).
fn sort_pairs(idx: &mut [u32], val: &mut [f32]) {
    for i in 1..idx.len() {
        let (j, v) = (idx[i], val[i]);
        let mut k = i;
        while k > 0 && idx[k - 1] > j {
            idx[k] = idx[k - 1];
            val[k] = val[k - 1];
            k -= 1;
        }
        idx[k] = j;
        val[k] = v;
    }
}

fn check_index(arg: &'static str, j: u32, h: usize) -> Result<()> {
    if (j as usize) < h {
        Ok(())
    } else {
        Err(Error::OutOfRange {
            arg,
            allowed: "feature indices must be < h",
        })
    }
}

/// Reconstruction from active features: `recon ← Σ_(j, v) v·W_dec[j] (+ b_dec)` (`d`
/// values; tied: the rows of `M`), summed in the order given; repeated indices add up.
///
/// # Errors
/// [`Error::Length`] naming `recon`; [`Error::OutOfRange`] naming `pairs` if an index
/// is `≥ h`. Nothing is written on error.
pub fn decode_sparse(p: Params<'_>, pairs: &[(u32, f32)], recon: &mut [f32]) -> Result<()> {
    let Dims { d, h } = p.dims();
    check_len("recon", recon.len(), d)?;
    for &(j, _) in pairs {
        check_index("pairs", j, h)?;
    }
    let dec = p.decoder();
    recon.fill(0.0);
    for &(j, v) in pairs {
        let j = j as usize;
        axpy(v, &dec[j * d..(j + 1) * d], recon);
    }
    if let Some(b) = p.b_dec() {
        crate::kernels::vector::axpy(1.0, b, recon);
    }
    Ok(())
}

/// Reconstruction of a CSR batch (as written by [`encode_csr`]): row `i` of `recon`
/// (`n×d` row-major) is `Σ values[e]·W_dec[indices[e]] (+ b_dec)` over
/// `e ∈ row_ptr[i]..row_ptr[i+1]`.
///
/// # Errors
/// [`Error::Dimension`] if `n == 0`; [`Error::Length`] naming `row_ptr` (not `n + 1`
/// entries), `values` (not as long as `indices`) or `recon`; [`Error::OutOfRange`]
/// naming `row_ptr` if it decreases or points past `indices`, or `indices` if one is
/// `≥ h`. Nothing is written on error.
pub fn decode_csr(
    p: Params<'_>,
    n: usize,
    row_ptr: &[usize],
    indices: &[u32],
    values: &[f32],
    recon: &mut [f32],
) -> Result<()> {
    let Dims { d, h } = p.dims();
    check_nonzero("n", n)?;
    check_len(
        "row_ptr",
        row_ptr.len(),
        n.checked_add(1).ok_or(Error::Overflow { arg: "row_ptr" })?,
    )?;
    check_len("values", values.len(), indices.len())?;
    check_len("recon", recon.len(), mul("recon", n, d)?)?;
    let bad_ptr = Error::OutOfRange {
        arg: "row_ptr",
        allowed: "non-decreasing and at most indices.len()",
    };
    for w in row_ptr.windows(2) {
        if w[0] > w[1] {
            return Err(bad_ptr);
        }
    }
    if row_ptr[n] > indices.len() {
        return Err(bad_ptr);
    }
    for &j in &indices[row_ptr[0]..row_ptr[n]] {
        check_index("indices", j, h)?;
    }
    let dec = p.decoder();
    for (i, r) in recon.chunks_exact_mut(d).enumerate() {
        r.fill(0.0);
        let e = row_ptr[i]..row_ptr[i + 1];
        for (&j, &v) in indices[e.clone()].iter().zip(&values[e]) {
            let j = j as usize;
            axpy(v, &dec[j * d..(j + 1) * d], r);
        }
        if let Some(b) = p.b_dec() {
            crate::kernels::vector::axpy(1.0, b, r);
        }
    }
    Ok(())
}
