//! How much scratch memory each operation needs, and how a scratch slice is cut up.
//!
//! Batches are processed in blocks of at most `block_rows` rows, so scratch memory
//! depends on the model's dimensions and the chosen block size, never on the batch
//! size `n`: a 1,000,000-row batch runs in the same scratch as a 64-row one.
//!
//! Each entry point accepts any scratch slice at least as long as its
//! `*_scratch_len(dims, 1)` and uses the largest block (up to [`MAX_BLOCK_ROWS`]) that
//! fits. Bigger blocks mean bigger, faster matrix products; for a given scratch length
//! the block size, and hence every result bit, is fixed.

use super::params::Dims;
use crate::error::{Error, Result};
use crate::kernels::gemm::pack_len;

/// The block size the `*_scratch_len` functions are usually called with: large
/// enough for the GEMM to reach full speed.
pub const DEFAULT_BLOCK_ROWS: usize = 64;

/// The largest block an entry point will use, however much scratch it is given.
pub const MAX_BLOCK_ROWS: usize = 256;

/// Saturating arithmetic so that absurd dimensions give `usize::MAX`, never a wrap.
fn sat(terms: &[(usize, usize)]) -> usize {
    terms.iter().fold(0usize, |acc, &(a, b)| {
        acc.saturating_add(a.saturating_mul(b))
    })
}

/// Pack buffer for the encoder (`rows×d · d×h`) and decoder (`rows×h · h×d`) products.
fn pack_forward(dims: Dims, rows: usize) -> usize {
    pack_len(rows, dims.h, dims.d).max(pack_len(rows, dims.d, dims.h))
}

/// Scratch `f32` for [`super::forward::encode`] (just the GEMM's pack buffer).
#[must_use]
pub fn encode_scratch_len(dims: Dims) -> usize {
    pack_len(usize::MAX, dims.h, dims.d)
}

/// Scratch `f32` for [`super::forward::forward`] with blocks of `block_rows` rows:
/// `block_rows·(h + d)` for codes and reconstruction, `h` for one row's list of
/// active features (the sparse path), plus the GEMM pack buffer
/// `max(pack_len(rows, h, d), pack_len(rows, d, h))`.
#[must_use]
pub fn forward_scratch_len(dims: Dims, block_rows: usize) -> usize {
    let rows = block_rows.clamp(1, MAX_BLOCK_ROWS);
    sat(&[
        (rows, dims.h),
        (rows, dims.d),
        (1, dims.h),
        (1, pack_forward(dims, rows)),
    ])
}

/// Scratch `f32` for [`super::backward::loss_and_grad`] with blocks of `block_rows` rows:
/// `block_rows·(2h + d)` (codes, code gradient, reconstruction/residual gradient) plus
/// the largest pack buffer of its five products, `max(pack_len(rows, h, d),
/// pack_len(rows, d, h), pack_len(h, d, rows))`. The sparse path keeps one row's list
/// of active features in the code-gradient slots, so it needs no more.
#[must_use]
pub fn grad_scratch_len(dims: Dims, block_rows: usize) -> usize {
    let rows = block_rows.clamp(1, MAX_BLOCK_ROWS);
    let pack = pack_forward(dims, rows).max(pack_len(dims.h, dims.d, rows));
    sat(&[(rows, dims.h), (rows, dims.h), (rows, dims.d), (1, pack)])
}

/// The largest block size whose scratch fits in `have`, given a size function.
pub(crate) fn block_rows_for(have: usize, len: impl Fn(usize) -> usize) -> Result<usize> {
    let need = len(1);
    if have < need {
        return Err(Error::WorkspaceTooSmall {
            arg: "scratch",
            needed: need,
            got: have,
        });
    }
    // len is monotone in the block size: binary search the largest that fits.
    let (mut lo, mut hi) = (1usize, MAX_BLOCK_ROWS);
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if len(mid) <= have {
            lo = mid
        } else {
            hi = mid - 1
        }
    }
    Ok(lo)
}
