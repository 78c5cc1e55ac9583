//! Parameter updates, in place, with no allocation.

use crate::error::{Error, Result, check_finite};
use crate::kernels::vector;
use crate::model::{TiedParams, TiedParamsMut};

/// One plain SGD step: `params ← params − lr·grads`.
///
/// Transactional: every check runs before the first write, so on `Err` the
/// parameters are bit-for-bit unchanged.
///
/// # Errors
/// [`Error::NonFinite`] if `lr` is not finite or a gradient holds NaN/±∞ (naming
/// `grads.m` or `grads.b`); [`Error::Dimension`] if the gradients' dimensions differ
/// from the parameters'.
pub fn sgd_step(params: TiedParamsMut<'_>, grads: TiedParams<'_>, lr: f32) -> Result<()> {
    check_finite("lr", lr)?;
    if grads.dims != params.dims {
        let (arg, expected, got) = if grads.dims.d != params.dims.d {
            ("grads.d", params.dims.d, grads.dims.d)
        } else {
            ("grads.h", params.dims.h, grads.dims.h)
        };
        return Err(Error::Dimension { arg, expected, got });
    }
    if !vector::all_finite(grads.m) {
        return Err(Error::NonFinite { arg: "grads.m" });
    }
    if !vector::all_finite(grads.b) {
        return Err(Error::NonFinite { arg: "grads.b" });
    }
    vector::axpy(-lr, grads.m, params.m);
    vector::axpy(-lr, grads.b, params.b);
    Ok(())
}
