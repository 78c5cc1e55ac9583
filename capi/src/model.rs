//! The one file that talks to the `sae-kernels` core. Everything else in this crate
//! (and in the Python package, which uses this crate as an rlib) goes through
//! [`View`], [`Owned`] and the functions below, so a change of the core's API is a
//! change of this file only.
//!
//! What the core gives today: the untied family (`UntiedParams`, `UntiedConfig`,
//! `untied_encode` / `untied_decode` and their scratch sizes), the SAELens loader and
//! the sparse decode over a row-major dictionary (`sparse::decode_csr`). CSR and
//! top-k-per-row *encoding* exist in the core for the tied model only, so
//! [`encode_csr`] here encodes dense codes block by block into the caller's scratch
//! (bounded memory: `block_rows·h` codes, whatever `n` is) and gathers each block's
//! active features.

use core::cmp::Ordering;
use sae_kernels::{
    Activation, Dims, TiedParams, UntiedConfig, UntiedParams, untied_decode,
    untied_decode_scratch_len, untied_encode, untied_encode_scratch_len,
};

pub use sae_kernels::Error;

/// Result of the core's operations.
pub type Result<T> = core::result::Result<T, Error>;

/// The block size used when the caller does not choose one.
pub const DEFAULT_BLOCK_ROWS: usize = sae_kernels::DEFAULT_BLOCK_ROWS;

/// The largest block an encode uses, however much scratch it gets. The encoder
/// product packs all of `W_enc` once per block, so large batches want large blocks.
pub const MAX_BLOCK_ROWS: usize = sae_kernels::model::MAX_BLOCK_ROWS;

/// An SAE architecture, as SAELens names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    /// ReLU codes (`standard`).
    Standard,
    /// TopK then ReLU, with this `k ≥ 1` (`topk`).
    TopK(usize),
    /// JumpReLU with per-feature thresholds (`jumprelu`).
    JumpRelu,
}

impl Arch {
    /// SAELens' name for it.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Arch::Standard => "standard",
            Arch::TopK(_) => "topk",
            Arch::JumpRelu => "jumprelu",
        }
    }
}

/// What kind of failure an [`Error`] is (for status codes and exception types).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A buffer's length does not match its shape.
    Length,
    /// A zero or mismatched dimension (`n == 0`, `d_in == 0`, ...).
    Dimension,
    /// Scratch too short.
    Scratch,
    /// Output capacity too small.
    Capacity,
    /// A size overflows.
    Overflow,
    /// A scalar or index out of its range.
    OutOfRange,
    /// A NaN or infinity where a finite value is needed.
    NonFinite,
    /// A file that does not exist.
    NotFound,
    /// A file that cannot be read, or a malformed or unsupported model file.
    Format,
    /// Anything else.
    Other,
}

/// Classify a core error.
#[must_use]
pub fn kind(e: &Error) -> Kind {
    match *e {
        Error::Length { .. } => Kind::Length,
        Error::Dimension { .. } => Kind::Dimension,
        Error::WorkspaceTooSmall { .. } => Kind::Scratch,
        Error::Capacity { .. } => Kind::Capacity,
        Error::Overflow { .. } => Kind::Overflow,
        Error::OutOfRange { .. } => Kind::OutOfRange,
        Error::NonFinite { .. } => Kind::NonFinite,
        Error::Format {
            what: "not found", ..
        } => Kind::NotFound,
        Error::Format { .. } | Error::File { .. } => Kind::Format,
        _ => Kind::Other,
    }
}

/// The weight buffers of a [`View`] (shapes as in [`View::new`]).
#[derive(Clone, Copy, Debug)]
pub struct Weights<'a> {
    /// `d×h`.
    pub w_enc: &'a [f32],
    /// `h`.
    pub b_enc: &'a [f32],
    /// `h×d`.
    pub w_dec: &'a [f32],
    /// `d`.
    pub b_dec: &'a [f32],
    /// `h` for JumpReLU, else empty.
    pub threshold: &'a [f32],
}

/// A model over borrowed weights (SAELens layout, row-major): `w_enc` `d×h`, `b_enc`
/// `h`, `w_dec` `h×d`, `b_dec` `d`, `threshold` `h` for JumpReLU (empty otherwise).
/// Cheap to copy; never allocates.
#[derive(Clone, Copy, Debug)]
pub struct View<'a> {
    params: UntiedParams<'a>,
    threshold: &'a [f32],
    arch: Arch,
    apply_b_dec_to_input: bool,
    /// `W_encᵀ` (`h×d` row-major) when the model keeps one (owned models): batches of
    /// at most [`SMALL_BATCH`] rows then stream it in the GEMM's small-m path.
    w_enc_t: Option<&'a [f32]>,
}

impl<'a> View<'a> {
    /// Check the shapes and build the view.
    ///
    /// # Errors
    /// [`Error::Dimension`] if `d` or `h` is 0; [`Error::Length`] naming the first
    /// buffer of the wrong length; [`Error::OutOfRange`] naming `k` if TopK has `k == 0`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        d: usize,
        h: usize,
        arch: Arch,
        apply_b_dec_to_input: bool,
        w_enc: &'a [f32],
        b_enc: &'a [f32],
        w_dec: &'a [f32],
        b_dec: &'a [f32],
        threshold: &'a [f32],
    ) -> Result<Self> {
        let dims = Dims::new(d, h)?;
        let params = UntiedParams::new(dims, w_enc, b_enc, w_dec, b_dec)?;
        let want = if arch == Arch::JumpRelu { h } else { 0 };
        if threshold.len() != want {
            return Err(Error::Length {
                arg: "threshold",
                expected: want,
                got: threshold.len(),
            });
        }
        let v = Self {
            params,
            threshold,
            arch,
            apply_b_dec_to_input,
            w_enc_t: None,
        };
        v.config().activation.check(h)?;
        Ok(v)
    }

    /// Input width `d` (SAELens `d_in`).
    #[must_use]
    pub fn d_in(&self) -> usize {
        self.params.dims().d
    }

    /// Number of features `h` (SAELens `d_sae`).
    #[must_use]
    pub fn d_sae(&self) -> usize {
        self.params.dims().h
    }

    /// The architecture.
    #[must_use]
    pub fn arch(&self) -> Arch {
        self.arch
    }

    /// Whether `b_dec` is subtracted from the input before encoding.
    #[must_use]
    pub fn apply_b_dec_to_input(&self) -> bool {
        self.apply_b_dec_to_input
    }

    /// The weight buffers.
    #[must_use]
    pub fn weights(&self) -> Weights<'a> {
        let p = &self.params;
        Weights {
            w_enc: p.w_enc(),
            b_enc: p.b_enc(),
            w_dec: p.w_dec(),
            b_dec: p.b_dec(),
            threshold: self.threshold,
        }
    }

    fn config(&self) -> UntiedConfig<'a> {
        UntiedConfig {
            activation: match self.arch {
                Arch::Standard => Activation::Relu,
                Arch::TopK(k) => Activation::TopK { k },
                Arch::JumpRelu => Activation::JumpRelu {
                    threshold: self.threshold,
                },
            },
            apply_b_dec_to_input: self.apply_b_dec_to_input,
        }
    }
}

/// A model that owns its weights (feature `std`): loaded from a SAELens folder or
/// copied from arrays.
#[cfg(feature = "std")]
#[derive(Clone, Debug)]
pub struct Owned {
    sae: sae_kernels::UntiedSae,
    /// `W_encᵀ` (`h×d`), for the small-batch path of [`encode`].
    w_enc_t: Vec<f32>,
}

#[cfg(feature = "std")]
impl Owned {
    /// Load a SAELens folder (`cfg.json` + `sae_weights.safetensors`): every
    /// architecture the core loads (`standard`, `topk`, `jumprelu`).
    ///
    /// # Errors
    /// [`Error::Format`] (`what: "not found"` when the folder or a file is missing)
    /// or as the core's loader.
    pub fn load(dir: &std::path::Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::Format {
                file: "cfg.json",
                field: "",
                what: "not found",
            });
        }
        let (_, sae) = sae_kernels::format::saelens::load(dir)?;
        Ok(Self::new(sae))
    }

    /// A model from owned arrays (shapes as in [`View::new`]).
    ///
    /// # Errors
    /// As [`View::new`].
    #[allow(clippy::too_many_arguments)]
    pub fn from_parts(
        d: usize,
        h: usize,
        arch: Arch,
        apply_b_dec_to_input: bool,
        w_enc: Vec<f32>,
        b_enc: Vec<f32>,
        w_dec: Vec<f32>,
        b_dec: Vec<f32>,
        threshold: Vec<f32>,
    ) -> Result<Self> {
        View::new(
            d,
            h,
            arch,
            apply_b_dec_to_input,
            &w_enc,
            &b_enc,
            &w_dec,
            &b_dec,
            &threshold,
        )?;
        let kind = match arch {
            Arch::Standard => sae_kernels::ActivationKind::Relu,
            Arch::TopK(k) => sae_kernels::ActivationKind::TopK(k),
            Arch::JumpRelu => sae_kernels::ActivationKind::JumpRelu,
        };
        let sae = sae_kernels::UntiedSae::from_parts(
            Dims::new(d, h)?,
            w_enc,
            b_enc,
            w_dec,
            b_dec,
            threshold,
            kind,
            apply_b_dec_to_input,
        )?;
        Ok(Self::new(sae))
    }

    fn new(sae: sae_kernels::UntiedSae) -> Self {
        let Dims { d, h } = sae.dims();
        let mut w_enc_t = vec![0.0; d * h];
        for (i, row) in sae.w_enc.chunks_exact(h).enumerate() {
            for (j, &w) in row.iter().enumerate() {
                w_enc_t[j * d + i] = w;
            }
        }
        Self { sae, w_enc_t }
    }

    /// A view of the weights.
    #[must_use]
    pub fn view(&self) -> View<'_> {
        let s = &self.sae;
        View {
            params: s.params(),
            threshold: &s.threshold,
            arch: match s.kind {
                sae_kernels::ActivationKind::Relu => Arch::Standard,
                sae_kernels::ActivationKind::TopK(k) => Arch::TopK(k),
                sae_kernels::ActivationKind::JumpRelu => Arch::JumpRelu,
            },
            apply_b_dec_to_input: s.apply_b_dec_to_input,
            w_enc_t: Some(&self.w_enc_t),
        }
    }
}

/// Scratch `f32` for [`encode`] with row blocks of `block_rows` (clamped to
/// `1..=MAX_BLOCK_ROWS`); saturates instead of overflowing.
#[must_use]
pub fn encode_scratch_len(v: &View<'_>, block_rows: usize) -> usize {
    untied_encode_scratch_len(v.params.dims(), block_rows)
}

/// Batches of at most this many rows take the small-batch path when the model keeps
/// `W_encᵀ` (the core's GEMM streams a row-major `h×d` dictionary for `m ≤ 4`).
pub(crate) const SMALL_BATCH: usize = 4;

/// Dense codes: `codes` (`n×h`) ← `act((x − b_dec?)·W_enc + b_enc)` for `x` (`n×d`).
///
/// # Errors
/// As the core's `untied_encode` ([`Error::Dimension`] for `n == 0`,
/// [`Error::Length`] for `x`/`codes`, [`Error::WorkspaceTooSmall`]). Nothing is
/// written on error.
pub fn encode(
    v: &View<'_>,
    x: &[f32],
    n: usize,
    codes: &mut [f32],
    scratch: &mut [f32],
) -> Result<()> {
    match v.w_enc_t {
        Some(wt) if (1..=SMALL_BATCH).contains(&n) => encode_small(v, wt, x, n, codes, scratch),
        _ => untied_encode(v.params, v.config(), x, n, codes, scratch),
    }
}

/// The small-batch encode over `W_encᵀ`. The core's untied encoder reads `W_enc`
/// (`d×h` row-major) through its packed GEMM, which for one row costs several times
/// the read of `W_enc`; its small-m path (no packing, one pass over the dictionary)
/// needs the dictionary as `h×d` rows, which `W_encᵀ` is. Same math as the core:
/// centre, `x̄·W_enc + b_enc`, then the activation (the core's row functions).
fn encode_small(
    v: &View<'_>,
    wt: &[f32],
    x: &[f32],
    n: usize,
    codes: &mut [f32],
    scratch: &mut [f32],
) -> Result<()> {
    use sae_kernels::kernels::gemm::{Epilogue, MatMut, MatRef, gemm};
    use sae_kernels::model::activation::{jumprelu_row, topk_relu_row};
    let (d, h) = (v.d_in(), v.d_sae());
    let dims = v.params.dims();
    for (arg, got, want) in [("x", x.len(), n * d), ("codes", codes.len(), n * h)] {
        if got != want {
            return Err(Error::Length {
                arg,
                expected: want,
                got,
            });
        }
    }
    // Rows per pass: as many (≤ n) as the scratch holds, with the core's own sizes.
    let need = untied_encode_scratch_len(dims, 1);
    if scratch.len() < need {
        return Err(Error::WorkspaceTooSmall {
            arg: "scratch",
            needed: need,
            got: scratch.len(),
        });
    }
    let rb = (1..=n)
        .rev()
        .find(|&r| untied_encode_scratch_len(dims, r) <= scratch.len())
        .unwrap_or(1);
    let (xc, rest) = scratch.split_at_mut(rb * d);
    let (sel, pack) = rest.split_at_mut(h);
    let b_dec = v.params.b_dec();
    let b_enc = v.params.b_enc();
    for r0 in (0..n).step_by(rb) {
        let rows = rb.min(n - r0);
        let xcb = &mut xc[..rows * d];
        for (o, r) in xcb.chunks_exact_mut(d).zip(x[r0 * d..].chunks_exact(d)) {
            if v.apply_b_dec_to_input {
                for ((o, &a), &b) in o.iter_mut().zip(r).zip(b_dec) {
                    *o = a - b;
                }
            } else {
                o.copy_from_slice(r);
            }
        }
        let out = &mut codes[r0 * h..(r0 + rows) * h];
        let relu = v.arch == Arch::Standard;
        gemm(
            1.0,
            MatRef::row_major("x", xcb, rows, d)?,
            MatRef::row_major("w_enc", wt, h, d)?.t(),
            0.0,
            MatMut::row_major("codes", out, rows, h)?,
            if relu {
                Epilogue::BiasRelu(b_enc)
            } else {
                Epilogue::None
            },
            pack,
        )?;
        if !relu {
            for row in out.chunks_exact_mut(h) {
                for (c, &b) in row.iter_mut().zip(b_enc) {
                    *c += b;
                }
                match v.arch {
                    Arch::TopK(k) => topk_relu_row(row, k, sel),
                    Arch::JumpRelu => jumprelu_row(row, v.threshold),
                    Arch::Standard => {}
                }
            }
        }
    }
    Ok(())
}

/// Scratch `f32` for [`decode`].
#[must_use]
pub fn decode_scratch_len(v: &View<'_>) -> usize {
    untied_decode_scratch_len(v.params.dims())
}

/// Reconstruction: `recon` (`n×d`) ← `codes·W_dec + b_dec` for `codes` (`n×h`).
///
/// # Errors
/// As the core's `untied_decode`. Nothing is written on error.
pub fn decode(
    v: &View<'_>,
    codes: &[f32],
    n: usize,
    recon: &mut [f32],
    scratch: &mut [f32],
) -> Result<()> {
    untied_decode(v.params, codes, n, recon, scratch)
}

/// Reconstruction from CSR: row `i` of `recon` (`n×d`) is
/// `b_dec + Σ values[e]·W_dec[indices[e]]` over `e ∈ row_ptr[i]..row_ptr[i+1]`.
///
/// # Errors
/// [`Error::Dimension`] if `n == 0`; [`Error::Length`] naming `row_ptr` (not `n + 1`
/// entries), `values` (not as long as `indices`) or `recon`; [`Error::OutOfRange`]
/// naming `row_ptr` (decreasing, or past the end of `indices`) or `indices` (an
/// index `≥ h`). Nothing is written on error.
pub fn decode_csr(
    v: &View<'_>,
    n: usize,
    row_ptr: &[usize],
    indices: &[u32],
    values: &[f32],
    recon: &mut [f32],
) -> Result<()> {
    let p = &v.params;
    // The core's sparse decode sums rows of a row-major `h×d` dictionary; W_dec is one.
    // (Its bias argument is not used by the decode.)
    let dict = TiedParams::new(p.dims(), p.w_dec(), p.b_enc())?;
    sae_kernels::sparse::decode_csr(dict, n, row_ptr, indices, values, recon)?;
    for row in recon.chunks_exact_mut(p.dims().d) {
        for (r, &b) in row.iter_mut().zip(p.b_dec()) {
            *r += b;
        }
    }
    Ok(())
}

/// Scratch `f32` for [`encode_blocks`] and [`encode_csr`] with blocks of
/// `block_rows` rows: `block_rows·h` codes plus [`encode_scratch_len`]; saturating.
#[must_use]
pub fn csr_scratch_len(v: &View<'_>, block_rows: usize) -> usize {
    let rows = block_rows.clamp(1, MAX_BLOCK_ROWS);
    rows.saturating_mul(v.d_sae())
        .saturating_add(encode_scratch_len(v, rows))
}

/// The largest block size whose [`csr_scratch_len`] fits in `have` `f32`.
fn block_rows_for(v: &View<'_>, have: usize) -> Result<usize> {
    let need = csr_scratch_len(v, 1);
    if have < need {
        return Err(Error::WorkspaceTooSmall {
            arg: "scratch",
            needed: need,
            got: have,
        });
    }
    let (mut lo, mut hi) = (1usize, MAX_BLOCK_ROWS);
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if csr_scratch_len(v, mid) <= have {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    Ok(lo)
}

/// Encode `x` (`n×d`) block by block into the front of `scratch` and call
/// `each(first_row, codes_block)` for every block (`rows×h` dense codes). Memory is
/// bounded by the scratch, whatever `n` is.
///
/// # Errors
/// As [`encode`]; [`Error::WorkspaceTooSmall`] if `scratch` is shorter than
/// [`csr_scratch_len`]`(v, 1)`; whatever `each` returns.
pub fn encode_blocks(
    v: &View<'_>,
    x: &[f32],
    n: usize,
    scratch: &mut [f32],
    mut each: impl FnMut(usize, &[f32]) -> Result<()>,
) -> Result<()> {
    let (d, h) = (v.d_in(), v.d_sae());
    if n == 0 {
        return Err(Error::Dimension {
            arg: "n",
            expected: usize::MAX,
            got: 0,
        });
    }
    let x_len = n.checked_mul(d).ok_or(Error::Overflow { arg: "x" })?;
    if x.len() != x_len {
        return Err(Error::Length {
            arg: "x",
            expected: x_len,
            got: x.len(),
        });
    }
    let rb = block_rows_for(v, scratch.len())?;
    let (codes, rest) = scratch.split_at_mut(rb * h);
    for r0 in (0..n).step_by(rb) {
        let rows = rb.min(n - r0);
        let cb = &mut codes[..rows * h];
        encode(v, &x[r0 * d..(r0 + rows) * d], rows, cb, rest)?;
        each(r0, cb)?;
    }
    Ok(())
}

/// Is `(ja, va)` larger than `(jb, vb)`? Larger value, then lower index.
fn better(ja: u32, va: f32, jb: u32, vb: f32) -> bool {
    va > vb || (va == vb && ja < jb)
}

/// Min-heap order on parallel slots (the root is the worst kept entry).
fn sift_down(idx: &mut [u32], val: &mut [f32], mut i: usize) {
    let len = idx.len();
    loop {
        let (l, r) = (2 * i + 1, 2 * i + 2);
        let mut w = i;
        if l < len && better(idx[w], val[w], idx[l], val[l]) {
            w = l;
        }
        if r < len && better(idx[w], val[w], idx[r], val[r]) {
            w = r;
        }
        if w == i {
            return;
        }
        idx.swap(i, w);
        val.swap(i, w);
        i = w;
    }
}

fn sift_up(idx: &mut [u32], val: &mut [f32], mut i: usize) {
    while i > 0 {
        let p = (i - 1) / 2;
        if better(idx[p], val[p], idx[i], val[i]) {
            idx.swap(i, p);
            val.swap(i, p);
            i = p;
        } else {
            return;
        }
    }
}

/// The `k` largest positive codes of `row` into `idx`/`val` (at least `k` slots
/// each), sorted by index; returns how many were kept (`≤ k`). Ties go to the lower
/// index.
///
/// # Errors
/// [`Error::NonFinite`] naming `x` if a code is NaN.
pub fn top_k_row(row: &[f32], k: usize, idx: &mut [u32], val: &mut [f32]) -> Result<usize> {
    let mut len = 0usize;
    for (j, &c) in row.iter().enumerate() {
        if c.is_nan() {
            return Err(Error::NonFinite { arg: "x" });
        }
        if c > 0.0 {
            let j = j as u32;
            if len < k {
                idx[len] = j;
                val[len] = c;
                sift_up(&mut idx[..len + 1], &mut val[..len + 1], len);
                len += 1;
            } else if better(j, c, idx[0], val[0]) {
                idx[0] = j;
                val[0] = c;
                sift_down(&mut idx[..len], &mut val[..len], 0);
            }
        }
    }
    sort_by_index(&mut idx[..len], &mut val[..len]);
    Ok(len)
}

/// Sort parallel slices by index (insertion sort; `k` is small, no allocation).
fn sort_by_index(idx: &mut [u32], val: &mut [f32]) {
    for i in 1..idx.len() {
        let (j, v) = (idx[i], val[i]);
        let mut p = i;
        while p > 0 && idx[p - 1].cmp(&j) == Ordering::Greater {
            idx[p] = idx[p - 1];
            val[p] = val[p - 1];
            p -= 1;
        }
        idx[p] = j;
        val[p] = v;
    }
}

/// Largest `d_sae` whose feature indices fit `u32` (CSR indices are `u32`).
fn check_u32_features(v: &View<'_>) -> Result<()> {
    if v.d_sae() > u32::MAX as usize {
        return Err(Error::Overflow { arg: "indices" });
    }
    Ok(())
}

/// Encode into CSR buffers. Row `i`'s features are `indices[row_ptr[i]..row_ptr[i+1]]`
/// (ascending) with codes `values[..]` at the same positions.
///
/// - `k == 0`: every active feature (`code > 0`); `k ≥ 1`: the `k` largest active
///   codes of each row (ties: the lower index), and the capacity must be at least
///   `n·k` (checked before any work).
/// - `row_ptr`: `n + 1` entries; `indices`, `values`: the capacity is the shorter.
/// - `scratch`: at least [`csr_scratch_len`]`(v, 1)`; more gives larger blocks.
///
/// Returns the number of entries stored (`row_ptr[n]`).
///
/// # Errors
/// As [`encode_blocks`]; [`Error::Length`] naming `row_ptr`; [`Error::Capacity`]
/// naming `indices` with `needed` = the total number of active features (`k == 0`:
/// the whole batch is encoded to count them) or `n·k`; [`Error::NonFinite`] naming `x`
/// if a code is NaN. On error the CSR buffers' contents are unspecified.
#[allow(clippy::too_many_arguments)]
pub fn encode_csr(
    v: &View<'_>,
    x: &[f32],
    n: usize,
    k: usize,
    row_ptr: &mut [usize],
    indices: &mut [u32],
    values: &mut [f32],
    scratch: &mut [f32],
) -> Result<usize> {
    check_u32_features(v)?;
    let want_ptr = n.checked_add(1).ok_or(Error::Overflow { arg: "row_ptr" })?;
    if row_ptr.len() != want_ptr {
        return Err(Error::Length {
            arg: "row_ptr",
            expected: want_ptr,
            got: row_ptr.len(),
        });
    }
    let cap = indices.len().min(values.len());
    if k > 0 {
        let need = n.checked_mul(k).ok_or(Error::Overflow { arg: "indices" })?;
        if cap < need {
            return Err(Error::Capacity {
                arg: "indices",
                capacity: cap,
                needed: need,
            });
        }
    }
    let h = v.d_sae();
    let mut stored = 0usize; // entries written
    let mut needed = 0usize; // k == 0: active features seen so far
    row_ptr[0] = 0;
    encode_blocks(v, x, n, scratch, |r0, block| {
        for (r, row) in block.chunks_exact(h).enumerate() {
            if k == 0 {
                for (j, &c) in row.iter().enumerate() {
                    if c.is_nan() {
                        return Err(Error::NonFinite { arg: "x" });
                    }
                    if c > 0.0 {
                        if needed < cap {
                            indices[needed] = j as u32;
                            values[needed] = c;
                        }
                        needed += 1;
                    }
                }
                stored = needed.min(cap);
            } else {
                let kept = top_k_row(
                    row,
                    k,
                    &mut indices[stored..stored + k],
                    &mut values[stored..stored + k],
                )?;
                stored += kept;
            }
            row_ptr[r0 + r + 1] = stored;
        }
        Ok(())
    })?;
    if needed > cap {
        return Err(Error::Capacity {
            arg: "indices",
            capacity: cap,
            needed,
        });
    }
    Ok(stored)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> ([f32; 6], [f32; 3], [f32; 6], [f32; 2]) {
        // d = 2, h = 3: pre = [x0, x1, x0 + x1 - 1]
        (
            [1.0, 0.0, 1.0, 0.0, 1.0, 1.0],
            [0.0, 0.0, -1.0],
            [1.0, 0.0, 0.0, 1.0, 0.5, 0.5],
            [0.0, 0.0],
        )
    }

    #[test]
    fn csr_matches_dense_and_top_k_keeps_largest() {
        let (we, be, wd, bd) = tiny();
        let v = View::new(2, 3, Arch::Standard, false, &we, &be, &wd, &bd, &[]).unwrap();
        let x = [2.0, 0.5, -1.0, -1.0, 0.5, 0.5, 3.0, 3.0];
        let mut dense = [0.0; 12];
        let mut s = vec![0.0; encode_scratch_len(&v, 4)];
        encode(&v, &x, 4, &mut dense, &mut s).unwrap();
        assert_eq!(
            dense,
            [2.0, 0.5, 1.5, 0.0, 0.0, 0.0, 0.5, 0.5, 0.0, 3.0, 3.0, 5.0]
        );
        let (mut rp, mut ix, mut vs) = ([0usize; 5], [0u32; 12], [0.0f32; 12]);
        // One row per block: the gather must cross block boundaries.
        let mut s = vec![0.0; csr_scratch_len(&v, 1)];
        let nnz = encode_csr(&v, &x, 4, 0, &mut rp, &mut ix, &mut vs, &mut s).unwrap();
        assert_eq!(nnz, 8);
        assert_eq!(rp, [0, 3, 3, 5, 8]);
        assert_eq!(&ix[..8], &[0, 1, 2, 0, 1, 0, 1, 2]);
        assert_eq!(&vs[..8], &[2.0, 0.5, 1.5, 0.5, 0.5, 3.0, 3.0, 5.0]);
        // Top-2: row 0 keeps {0, 2}; row 3 keeps 2 and, of the tie 0/1, the lower index 0.
        let nnz = encode_csr(&v, &x, 4, 2, &mut rp, &mut ix, &mut vs, &mut s).unwrap();
        assert_eq!(rp, [0, 2, 2, 4, 6]);
        assert_eq!(&ix[..nnz], &[0, 2, 0, 1, 0, 2]);
        assert_eq!(&vs[..nnz], &[2.0, 1.5, 0.5, 0.5, 3.0, 5.0]);
        // Too little room: the error says how much is needed.
        let e = encode_csr(&v, &x, 4, 0, &mut rp, &mut ix[..7], &mut vs, &mut s).unwrap_err();
        assert_eq!(
            e,
            Error::Capacity {
                arg: "indices",
                capacity: 7,
                needed: 8
            }
        );
        let e = encode_csr(&v, &x, 4, 3, &mut rp, &mut ix[..11], &mut vs, &mut s).unwrap_err();
        assert!(matches!(e, Error::Capacity { needed: 12, .. }));
        // CSR decode (with b_dec) equals dense decode.
        let bd2 = [0.25, -0.5];
        let v = View::new(2, 3, Arch::Standard, false, &we, &be, &wd, &bd2, &[]).unwrap();
        let nnz = encode_csr(&v, &x, 4, 0, &mut rp, &mut ix, &mut vs, &mut s).unwrap();
        let mut r1 = [f32::NAN; 8];
        decode_csr(&v, 4, &rp, &ix[..nnz], &vs[..nnz], &mut r1).unwrap();
        let mut dense = [0.0; 12];
        let mut s2 = vec![0.0; encode_scratch_len(&v, 4)];
        encode(&v, &x, 4, &mut dense, &mut s2).unwrap();
        let mut r2 = [f32::NAN; 8];
        let mut s3 = vec![0.0; decode_scratch_len(&v)];
        decode(&v, &dense, 4, &mut r2, &mut s3).unwrap();
        assert_eq!(r1, r2);
    }

    /// The small-batch path (owned models, `n ≤ SMALL_BATCH`) against the core's
    /// encoder on the same weights, for every architecture.
    #[cfg(feature = "std")]
    #[test]
    fn small_batches_match_the_core_encoder() {
        let (d, h) = (24, 80);
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut rnd = |len: usize| -> Vec<f32> {
            (0..len)
                .map(|_| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.8
                })
                .collect()
        };
        let (we, be, wd, bd, thr, x) = (rnd(d * h), rnd(h), rnd(h * d), rnd(d), rnd(h), rnd(7 * d));
        for (arch, t) in [
            (Arch::Standard, vec![]),
            (Arch::TopK(5), vec![]),
            (Arch::JumpRelu, thr.clone()),
        ] {
            let owned = Owned::from_parts(
                d,
                h,
                arch,
                true,
                we.clone(),
                be.clone(),
                wd.clone(),
                bd.clone(),
                t.clone(),
            )
            .unwrap();
            let fast = owned.view();
            let core = View::new(d, h, arch, true, &we, &be, &wd, &bd, &t).unwrap();
            assert!(fast.w_enc_t.is_some() && core.w_enc_t.is_none());
            for n in 1..=SMALL_BATCH {
                for rows in [1, n] {
                    let mut s = vec![0.0; encode_scratch_len(&fast, rows)];
                    let (mut a, mut b) = (vec![f32::NAN; n * h], vec![f32::NAN; n * h]);
                    encode(&fast, &x[..n * d], n, &mut a, &mut s).unwrap();
                    encode(&core, &x[..n * d], n, &mut b, &mut s).unwrap();
                    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
                    assert!(scale > 0.0);
                    for (p, q) in a.iter().zip(&b) {
                        assert!((p - q).abs() <= 1e-5 * scale, "{arch:?} n={n}: {p} vs {q}");
                        assert_eq!(*p != 0.0, *q != 0.0, "{arch:?} n={n}: support");
                    }
                }
            }
            // Errors as the core's: nothing written.
            let mut c = vec![7.0; 2 * h];
            let mut s = vec![0.0; encode_scratch_len(&fast, 1) - 1];
            let e = encode(&fast, &x[..2 * d], 2, &mut c, &mut s).unwrap_err();
            assert!(matches!(e, Error::WorkspaceTooSmall { .. }));
            let e = encode(&fast, &x[..2 * d - 1], 2, &mut c, &mut s).unwrap_err();
            assert!(matches!(e, Error::Length { arg: "x", .. }));
            assert!(c.iter().all(|&v| v == 7.0));
        }
    }

    #[test]
    fn views_check_shapes() {
        let (we, be, wd, bd) = tiny();
        let e = View::new(2, 3, Arch::JumpRelu, false, &we, &be, &wd, &bd, &[]).unwrap_err();
        assert!(matches!(
            e,
            Error::Length {
                arg: "threshold",
                ..
            }
        ));
        let e = View::new(2, 3, Arch::TopK(0), false, &we, &be, &wd, &bd, &[]).unwrap_err();
        assert!(matches!(e, Error::OutOfRange { arg: "k", .. }));
        let e = View::new(2, 3, Arch::Standard, false, &we[..5], &be, &wd, &bd, &[]).unwrap_err();
        assert!(matches!(e, Error::Length { .. }));
        let e = View::new(0, 3, Arch::Standard, false, &[], &be, &[], &[], &[]).unwrap_err();
        assert_eq!(kind(&e), Kind::Dimension);
    }
}
