//! The one file that talks to the `sae-kernels` core. Everything else in this crate
//! (and in the Python package, which uses this crate as an rlib) goes through
//! [`View`], [`Owned`] and the functions below, so a change of the core's API is a
//! change of this file only.
//!
//! It maps the three SAELens architectures onto the core's one model description
//! (`model::{Arch, Params}`), and uses the core's `encode` / `decode` and its CSR
//! encode/decode (`sparse::{encode_csr, decode_csr}`, every architecture). One thing
//! is added here: owned models keep `W_encᵀ` and encode over it (see [`encode`]).

use sae_kernels::model::{self as core_model, Activation, Params, Penalty, Weights as Layout};
use sae_kernels::sparse::{self, RowLimit};

pub use sae_kernels::Error;
/// The encoder's bf16 screen switch (process-wide; results are the same bits).
pub use sae_kernels::model::{bf16_screen, set_bf16_screen};

/// Result of the core's operations.
pub type Result<T> = core::result::Result<T, Error>;

/// The block size used when the caller does not choose one.
pub const DEFAULT_BLOCK_ROWS: usize = core_model::DEFAULT_BLOCK_ROWS;

/// The largest block the CSR encode and the decode use, however much scratch they
/// get. (The dense [`encode`] takes blocks as large as its scratch allows.)
pub const MAX_BLOCK_ROWS: usize = core_model::MAX_BLOCK_ROWS;

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

    fn activation(self) -> Activation {
        match self {
            Arch::Standard => Activation::Relu,
            Arch::TopK(k) => Activation::TopK { k },
            Arch::JumpRelu => Activation::JumpRelu,
        }
    }

    /// The core's description (inference: the penalty does not matter).
    fn core(self, center_input: bool) -> core_model::Arch {
        core_model::Arch {
            weights: Layout::Untied { center_input },
            activation: self.activation(),
            penalty: Penalty::None,
        }
    }

    /// The same activation over one `h×d` dictionary (`W_encᵀ`), no input centring.
    fn core_transposed(self) -> core_model::Arch {
        core_model::Arch {
            weights: Layout::Tied,
            activation: self.activation(),
            penalty: Penalty::None,
        }
    }

    fn of(a: Activation) -> Self {
        match a {
            Activation::Relu => Arch::Standard,
            Activation::TopK { k } => Arch::TopK(k),
            Activation::JumpRelu => Arch::JumpRelu,
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
    params: Params<'a>,
    w: Weights<'a>,
    /// The same model over `W_encᵀ` (`h×d`) when the model keeps one (owned models):
    /// the dense encode then runs over it (see [`encode`]).
    transposed: Option<Params<'a>>,
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
        let dims = core_model::Dims::new(d, h)?;
        let a = arch.core(apply_b_dec_to_input);
        let params = if arch == Arch::JumpRelu {
            Params::new(a, dims, [w_enc, b_enc, w_dec, b_dec, threshold])?
        } else {
            if !threshold.is_empty() {
                return Err(Error::Length {
                    arg: "threshold",
                    expected: 0,
                    got: threshold.len(),
                });
            }
            Params::new(a, dims, [w_enc, b_enc, w_dec, b_dec])?
        };
        Ok(Self {
            params,
            w: Weights {
                w_enc,
                b_enc,
                w_dec,
                b_dec,
                threshold,
            },
            transposed: None,
        })
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
        Arch::of(self.params.arch().activation)
    }

    /// Whether `b_dec` is subtracted from the input before encoding.
    #[must_use]
    pub fn apply_b_dec_to_input(&self) -> bool {
        self.params.arch().centers_input()
    }

    /// The weight buffers.
    #[must_use]
    pub fn weights(&self) -> Weights<'a> {
        self.w
    }

    /// `W_encᵀ` (`h×d` row-major) if this view has it (owned models keep it, see
    /// [`encode`]).
    #[must_use]
    pub fn encoder_transposed(&self) -> Option<&'a [f32]> {
        self.transposed.map(|t| t.tensors()[0].data)
    }

    /// The same view with `W_encᵀ` (`h×d` row-major, the transpose of `w_enc`; not
    /// checked beyond its length), which [`encode`] then runs over.
    ///
    /// # Errors
    /// [`Error::Length`] naming `M` if `w_enc_t.len() != d·h`.
    pub fn with_encoder_transposed(mut self, w_enc_t: &'a [f32]) -> Result<Self> {
        let arch = self.arch();
        let (ta, dims) = (arch.core_transposed(), self.params.dims());
        let w = self.w;
        self.transposed = Some(if arch == Arch::JumpRelu {
            Params::new(ta, dims, [w_enc_t, w.b_enc, w.threshold])?
        } else {
            Params::new(ta, dims, [w_enc_t, w.b_enc])?
        });
        Ok(self)
    }
}

/// A model that owns its weights (feature `std`): loaded from a SAELens folder or
/// copied from arrays. It also keeps `W_encᵀ` (one more `d·h` floats) for the
/// small-batch path of [`encode`].
#[cfg(feature = "std")]
#[derive(Clone, Debug)]
pub struct Owned {
    sae: sae_kernels::owned::Sae,
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
        Ok(Self::new(sae.to_untied()))
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
        let v = View::new(
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
        let sae = sae_kernels::owned::Sae::from_params(v.params);
        Ok(Self::new(sae))
    }

    fn new(sae: sae_kernels::owned::Sae) -> Self {
        let core_model::Dims { d, h } = sae.dims();
        let w_enc = sae.params().tensors()[0].data;
        let mut w_enc_t = vec![0.0; d * h];
        for (i, row) in w_enc.chunks_exact(h).enumerate() {
            for (j, &w) in row.iter().enumerate() {
                w_enc_t[j * d + i] = w;
            }
        }
        Self { sae, w_enc_t }
    }

    /// A view of the weights.
    #[must_use]
    pub fn view(&self) -> View<'_> {
        let p = self.sae.params();
        let t = p.tensors();
        let w = Weights {
            w_enc: t[0].data,
            b_enc: t[1].data,
            w_dec: t[2].data,
            b_dec: t[3].data,
            threshold: p.threshold().unwrap_or(&[]),
        };
        let v = View {
            params: p,
            w,
            transposed: None,
        };
        // `W_encᵀ` has the checked model's `d·h` entries: this cannot fail.
        v.with_encoder_transposed(&self.w_enc_t).unwrap_or(v)
    }
}

/// Scratch `f32` for [`encode`] with row blocks of `block_rows` (at least 1; not
/// capped: one block for the whole batch packs `W_enc` once); saturates instead of
/// overflowing.
#[must_use]
pub fn encode_scratch_len(v: &View<'_>, block_rows: usize) -> usize {
    core_model::encode_scratch_len(v.params.arch(), v.params.dims(), block_rows)
}

/// Dense codes: `codes` (`n×h`) ← `act((x − b_dec?)·W_enc + b_enc)` for `x` (`n×d`).
///
/// Owned models encode over `W_encᵀ` (`h×d`, which they keep), in two cases:
/// - batches of at most 4 rows: unpacked, one contiguous dot product per feature
///   (streaming the dictionary once; the sums are in another order than over
///   `W_enc`);
/// - larger batches whose row blocks (as large as the scratch allows) all have more
///   than 4 rows: the encoder is packed as over `W_enc`, with the same sums (the same
///   bits as a view of the same weights), but packing from `h×d` rows is faster than
///   from `d×h` ones (5–12 % less time measured at (768, 16384), batch 1024:
///   `examples/bench_encode.rs`).
///
/// Otherwise (a larger batch cut into blocks of at most 4 rows somewhere) the core
/// encodes over `W_enc`, so that a view of the same weights gives the same bits. The
/// centred input is made here, the rest is the core's `encode` on the `h×d` view;
/// any scratch that fits [`encode_scratch_len`]`(v, rows)` fits this path with blocks
/// of `rows` rows.
///
/// # Errors
/// As the core's `encode` ([`Error::Dimension`] for `n == 0`, [`Error::Length`] for
/// `x`/`codes`, [`Error::WorkspaceTooSmall`]). Nothing is written on error.
pub fn encode(
    v: &View<'_>,
    x: &[f32],
    n: usize,
    codes: &mut [f32],
    scratch: &mut [f32],
) -> Result<()> {
    match v.transposed {
        Some(t) => encode_transposed(v, t, x, n, codes, scratch),
        None => core_model::encode(v.params, x, n, codes, scratch),
    }
}

fn encode_transposed(
    v: &View<'_>,
    t: Params<'_>,
    x: &[f32],
    n: usize,
    codes: &mut [f32],
    scratch: &mut [f32],
) -> Result<()> {
    let (d, h) = (v.d_in(), v.d_sae());
    if n == 0 {
        return Err(Error::Dimension {
            arg: "n",
            expected: usize::MAX,
            got: 0,
        });
    }
    let sizes = [
        ("x", x.len(), n.checked_mul(d)),
        ("codes", codes.len(), n.checked_mul(h)),
    ];
    for (arg, got, want) in sizes {
        let want = want.ok_or(Error::Overflow { arg })?;
        if got != want {
            return Err(Error::Length {
                arg,
                expected: want,
                got,
            });
        }
    }
    let centre = v.apply_b_dec_to_input();
    // Scratch for blocks of r rows: the centred block, then the core's encode over
    // `W_encᵀ` (no centring there).
    let len = |r: usize| {
        core_model::encode_scratch_len(t.arch(), t.dims(), r).saturating_add(if centre {
            r.saturating_mul(d)
        } else {
            0
        })
    };
    if scratch.len() < len(1) {
        return Err(Error::WorkspaceTooSmall {
            arg: "scratch",
            needed: len(1),
            got: scratch.len(),
        });
    }
    // The largest block that fits (len is monotone in r).
    let (mut rb, mut hi) = (1usize, n);
    while rb < hi {
        let mid = rb + (hi - rb).div_ceil(2);
        if len(mid) <= scratch.len() {
            rb = mid;
        } else {
            hi = mid - 1;
        }
    }
    if n > 4 && !(rb > 4 && (n.is_multiple_of(rb) || n % rb > 4)) {
        // A block of at most 4 rows would run unpacked, in another summation order
        // than over `W_enc`: keep the bits of a view of the same weights.
        return core_model::encode(v.params, x, n, codes, scratch);
    }
    let (xc, rest) = scratch.split_at_mut(if centre { rb * d } else { 0 });
    // One encoder for every block: its set-up (TopK's bf16 screen reads W_enc) once.
    let mut enc = core_model::Encoder::new(t, rb, rest)?;
    for r0 in (0..n).step_by(rb) {
        let rows = rb.min(n - r0);
        let xin = centred(v, &x[r0 * d..(r0 + rows) * d], centre, xc);
        enc.encode(xin, rows, &mut codes[r0 * h..(r0 + rows) * h])?;
    }
    Ok(())
}

/// `x − b_dec` row by row into `xc` (`centre`), else `x` itself.
fn centred<'x>(v: &View<'_>, x: &'x [f32], centre: bool, xc: &'x mut [f32]) -> &'x [f32] {
    if !centre {
        return x;
    }
    let d = v.d_in();
    let xcb = &mut xc[..x.len()];
    for (o, r) in xcb.chunks_exact_mut(d).zip(x.chunks_exact(d)) {
        for ((o, &a), &b) in o.iter_mut().zip(r).zip(v.w.b_dec) {
            *o = a - b;
        }
    }
    xcb
}

/// Scratch `f32` for [`decode`] with blocks of `block_rows` rows.
#[must_use]
pub fn decode_scratch_len(v: &View<'_>, block_rows: usize) -> usize {
    core_model::decode_scratch_len(v.params.dims(), block_rows)
}

/// Reconstruction: `recon` (`n×d`) ← `codes·W_dec + b_dec` for `codes` (`n×h`).
///
/// # Errors
/// As the core's `decode`. Nothing is written on error.
pub fn decode(
    v: &View<'_>,
    codes: &[f32],
    n: usize,
    recon: &mut [f32],
    scratch: &mut [f32],
) -> Result<()> {
    core_model::decode(v.params, codes, n, recon, scratch)
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
    sparse::decode_csr(v.params, n, row_ptr, indices, values, recon)
}

/// Scratch `f32` for [`encode_blocks`] and [`encode_csr`] with blocks of
/// `block_rows` rows: `block_rows·h` codes plus [`encode_scratch_len`]; saturating.
#[must_use]
pub fn csr_scratch_len(v: &View<'_>, block_rows: usize) -> usize {
    sparse::encode_csr_scratch_len(v.params.arch(), v.params.dims(), block_rows)
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
/// bounded by the scratch, whatever `n` is. (For outputs whose size is not known
/// in advance, such as growable CSR arrays.)
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
    // One encoder for every block (as `encode` per block would, over `W_encᵀ` when
    // the view has it): its set-up (TopK's bf16 screen reads W_enc) once. The
    // centred block takes the place of the core's own (`x − b_dec` over `W_enc`), so
    // `rest` (the core's encode scratch for `rb` rows) fits both.
    let (params, centre) = match v.transposed {
        Some(t) => (t, v.apply_b_dec_to_input()),
        None => (v.params, false),
    };
    let (xc, rest) = rest.split_at_mut(if centre { rb * d } else { 0 });
    let mut enc = core_model::Encoder::new(params, rb, rest)?;
    for r0 in (0..n).step_by(rb) {
        let rows = rb.min(n - r0);
        let cb = &mut codes[..rows * h];
        let xin = centred(v, &x[r0 * d..(r0 + rows) * d], centre, xc);
        enc.encode(xin, rows, cb)?;
        each(r0, cb)?;
    }
    Ok(())
}

/// Encode into CSR buffers (the core's `sparse::encode_csr`). Row `i`'s features are
/// `indices[row_ptr[i]..row_ptr[i+1]]` (ascending) with codes `values[..]` at the same
/// positions.
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
/// As [`encode`]; [`Error::Length`] naming `row_ptr`; [`Error::Capacity`] naming
/// `indices` with `needed` = the total number of active features (`k == 0`: the whole
/// batch is encoded to count them) or `n·k`; [`Error::NonFinite`] naming `x` if a code
/// is NaN. On error the CSR buffers' contents are unspecified.
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
    let limit = if k == 0 {
        RowLimit::All
    } else {
        RowLimit::TopK(k)
    };
    sparse::encode_csr(v.params, x, n, limit, row_ptr, indices, values, scratch)
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
        let mut s3 = vec![0.0; decode_scratch_len(&v, 4)];
        decode(&v, &dense, 4, &mut r2, &mut s3).unwrap();
        assert_eq!(r1, r2);
    }

    /// The path over `W_encᵀ` (owned models) against the core's encoder over `W_enc`
    /// on the same weights, for every architecture, batch sizes from 1 to 40 and
    /// blocks of 1, 5 and n rows: the same bits for more than 4 rows, within 1e-5
    /// for at most 4 (unpacked dot products, another summation order).
    #[cfg(feature = "std")]
    #[test]
    fn the_transposed_path_matches_the_core_encoder() {
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
        let (we, be, wd, bd, thr, x) =
            (rnd(d * h), rnd(h), rnd(h * d), rnd(d), rnd(h), rnd(40 * d));
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
            assert!(fast.transposed.is_some() && core.transposed.is_none());
            for n in [1, 2, 3, 4, 7, 40] {
                for rows in [1, 5, n] {
                    let mut s = vec![0.0; encode_scratch_len(&fast, rows)];
                    let (mut a, mut b) = (vec![f32::NAN; n * h], vec![f32::NAN; n * h]);
                    encode(&fast, &x[..n * d], n, &mut a, &mut s).unwrap();
                    encode(&core, &x[..n * d], n, &mut b, &mut s).unwrap();
                    if n > 4 {
                        // Packed blocks, or the core's own path: the same bits.
                        assert!(
                            a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits()),
                            "{arch:?} n={n} rows={rows}: not the same bits"
                        );
                    }
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
