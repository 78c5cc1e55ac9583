//! The crate's one error type.

use core::fmt;

/// Everything that can go wrong when calling this crate with bad input.
///
/// Every variant names the offending argument (`arg`), so a message such as
/// ``x: expected 96 f32 (n·d = 12·8), got 95`` points at the call site's mistake.
/// When any function returns an `Err`, it has written nothing to the caller's
/// parameter buffers.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum Error {
    /// A buffer's length is not the one its shape requires.
    Length {
        /// The argument's name.
        arg: &'static str,
        /// The required number of elements.
        expected: usize,
        /// The number of elements given.
        got: usize,
    },
    /// A workspace (or other caller-provided scratch buffer) is too short.
    WorkspaceTooSmall {
        /// The argument's name.
        arg: &'static str,
        /// The minimum number of `f32` needed (see the matching `*_len` function).
        needed: usize,
        /// The number given.
        got: usize,
    },
    /// A dimension is zero (or two dimensions that must match do not).
    Dimension {
        /// The dimension's name.
        arg: &'static str,
        /// The required value (`usize::MAX` with `got == 0` means "at least 1").
        expected: usize,
        /// The value given.
        got: usize,
    },
    /// A size computed from the dimensions overflows `usize`.
    Overflow {
        /// The argument whose size overflowed.
        arg: &'static str,
    },
    /// A scalar argument (learning rate, sparsity coefficient, ...) is NaN or infinite,
    /// or a buffer that must be finite holds a NaN or infinity.
    NonFinite {
        /// The argument's name.
        arg: &'static str,
    },
    /// A scalar argument is finite but outside its allowed range.
    OutOfRange {
        /// The argument's name.
        arg: &'static str,
        /// What the range is, in words.
        allowed: &'static str,
    },
    /// A matrix view's strides make two different elements share one memory
    /// location, which is not allowed for an output.
    AliasingStrides {
        /// The argument's name.
        arg: &'static str,
    },
    /// A fixed-capacity output (such as a `heapless::Vec`) is full.
    Capacity {
        /// The argument's name.
        arg: &'static str,
        /// Its capacity.
        capacity: usize,
        /// How many entries were needed.
        needed: usize,
    },
    /// A model file is missing, unreadable or malformed, or describes a model this
    /// crate cannot run exactly (used by the `std` readers in the `format` module).
    Format {
        /// The file, e.g. `cfg.json` or `sae_weights.safetensors`.
        file: &'static str,
        /// The field or tensor at fault (e.g. `architecture`, `W_enc`); empty when the
        /// whole file is at fault.
        field: &'static str,
        /// What is wrong, in words.
        what: &'static str,
    },
    /// A training step computed a NaN or infinite value (the loss, a gradient, or an
    /// updated parameter or optimizer state, as named by `arg`) from finite inputs
    /// and hyper-parameters; the step was refused and nothing was updated.
    NonFiniteStep {
        /// What came out non-finite: `loss`, `grads.m`, `grads.b`, `params` or `state`.
        arg: &'static str,
    },
    /// A file could not be read or written, or its contents are not what is needed.
    File {
        /// The argument (usually the path's name) the file came from.
        arg: &'static str,
        /// What is wrong, in words.
        what: &'static str,
    },
    /// Memory for a buffer could not be allocated (`std` layer only): the model, batch
    /// or array named by `arg` is too large for the memory available. Nothing was
    /// changed; retry with smaller sizes.
    Alloc {
        /// What was being allocated (e.g. `m`, `optimizer state`, `batch`, `input`).
        arg: &'static str,
        /// The bytes requested (`usize::MAX` if that count itself overflows).
        bytes: usize,
    },
    /// An input array holds a NaN or infinity; `row` and `col` (0-based) locate the
    /// first one in row-major order.
    NonFiniteInput {
        /// The array's name (e.g. `input`).
        arg: &'static str,
        /// The row (sample) of the first non-finite value, 0-based.
        row: usize,
        /// Its column (feature), 0-based.
        col: usize,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::Length { arg, expected, got } => {
                write!(f, "`{arg}`: expected length {expected}, got {got}")
            }
            Error::WorkspaceTooSmall { arg, needed, got } => {
                write!(
                    f,
                    "`{arg}`: workspace needs at least {needed} f32, got {got}"
                )
            }
            Error::Dimension { arg, expected, got } if expected == usize::MAX => {
                write!(f, "`{arg}`: dimension must be at least 1, got {got}")
            }
            Error::Dimension { arg, expected, got } => {
                write!(f, "`{arg}`: dimension must be {expected}, got {got}")
            }
            Error::Overflow { arg } => write!(f, "`{arg}`: size overflows usize"),
            Error::NonFinite { arg } => write!(f, "`{arg}`: must be finite (no NaN or infinity)"),
            Error::OutOfRange { arg, allowed } => write!(f, "`{arg}`: out of range, {allowed}"),
            Error::AliasingStrides { arg } => {
                write!(f, "`{arg}`: strides make distinct elements overlap")
            }
            Error::Capacity {
                arg,
                capacity,
                needed,
            } => {
                write!(
                    f,
                    "`{arg}`: capacity {capacity} is too small, {needed} needed"
                )
            }
            Error::Format {
                file,
                field: "",
                what,
            } => write!(f, "`{file}`: {what}"),
            Error::Format { file, field, what } => write!(f, "`{file}` field `{field}`: {what}"),
            Error::NonFiniteStep { arg } => write!(
                f,
                "`{arg}`: came out NaN or infinite in this training step; nothing was updated"
            ),
            Error::File { arg, what } => write!(f, "`{arg}`: {what}"),
            Error::Alloc { arg, bytes } if bytes == usize::MAX => {
                write!(f, "`{arg}`: cannot allocate memory (the size overflows)")
            }
            Error::Alloc { arg, bytes } => write!(
                f,
                "`{arg}`: cannot allocate {bytes} bytes ({} MiB): not enough memory for this size",
                bytes >> 20
            ),
            Error::NonFiniteInput { arg, row, col } => write!(
                f,
                "`{arg}`: row {row}, column {col} (0-based) is NaN or infinite (the first non-finite value)"
            ),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for Error {}

/// Shorthand for `core::result::Result<T, sae_kernels::Error>`.
pub type Result<T> = core::result::Result<T, Error>;

/// `Err(Length)` unless `got == expected`.
pub(crate) fn check_len(arg: &'static str, got: usize, expected: usize) -> Result<()> {
    if got == expected {
        Ok(())
    } else {
        Err(Error::Length { arg, expected, got })
    }
}

/// `Err(WorkspaceTooSmall)` naming `scratch` unless `got ≥ need`.
pub(crate) fn check_scratch(got: usize, need: usize) -> Result<()> {
    if got < need {
        Err(Error::WorkspaceTooSmall {
            arg: "scratch",
            needed: need,
            got,
        })
    } else {
        Ok(())
    }
}

/// `Err(NonFinite)` unless `v` is finite.
pub(crate) fn check_finite(arg: &'static str, v: f32) -> Result<()> {
    if v.is_finite() {
        Ok(())
    } else {
        Err(Error::NonFinite { arg })
    }
}

/// `Err(Dimension)` if `v == 0`.
pub(crate) fn check_nonzero(arg: &'static str, v: usize) -> Result<()> {
    if v == 0 {
        Err(Error::Dimension {
            arg,
            expected: usize::MAX,
            got: 0,
        })
    } else {
        Ok(())
    }
}

/// `a * b` or `Err(Overflow)`.
pub(crate) fn mul(arg: &'static str, a: usize, b: usize) -> Result<usize> {
    a.checked_mul(b).ok_or(Error::Overflow { arg })
}
