//! Dimensions and parameter views of the tied SAE.

use crate::error::{Result, check_len, check_nonzero, mul};

/// The dimensions of an SAE: input width `d` and dictionary size `h` (features).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Dims {
    /// Input (activation) width.
    pub d: usize,
    /// Number of dictionary features.
    pub h: usize,
}

impl Dims {
    /// Checked dimensions.
    ///
    /// # Errors
    /// [`crate::Error::Dimension`] if `d` or `h` is 0; [`crate::Error::Overflow`] if
    /// `h·d` overflows `usize`.
    pub fn new(d: usize, h: usize) -> Result<Self> {
        check_nonzero("d", d)?;
        check_nonzero("h", h)?;
        mul("m", h, d)?;
        Ok(Self { d, h })
    }

    /// Length of the dictionary `M` (`h·d`).
    #[must_use]
    pub fn m_len(&self) -> usize {
        self.h * self.d
    }
}

/// Read-only view of the tied SAE's parameters over caller memory.
///
/// - `m`: the dictionary `M`, `h×d` row-major; row `i` is feature `i`'s direction,
///   used both to encode (`X·Mᵀ`) and to decode (`C·M`).
/// - `b`: the encoder bias, `h` entries.
#[derive(Clone, Copy, Debug)]
pub struct TiedParams<'a> {
    pub(crate) m: &'a [f32],
    pub(crate) b: &'a [f32],
    pub(crate) dims: Dims,
}

impl<'a> TiedParams<'a> {
    /// A view over `m` (`h·d`) and `b` (`h`).
    ///
    /// # Errors
    /// [`crate::Error::Length`] naming `m` or `b` if a length does not match `dims`.
    pub fn new(dims: Dims, m: &'a [f32], b: &'a [f32]) -> Result<Self> {
        check_len("m", m.len(), dims.m_len())?;
        check_len("b", b.len(), dims.h)?;
        Ok(Self { m, b, dims })
    }

    /// The dimensions.
    #[must_use]
    pub fn dims(&self) -> Dims {
        self.dims
    }

    /// The dictionary, `h×d` row-major.
    #[must_use]
    pub fn m(&self) -> &'a [f32] {
        self.m
    }

    /// The encoder bias, `h`.
    #[must_use]
    pub fn b(&self) -> &'a [f32] {
        self.b
    }
}

/// Mutable view of tied-SAE-shaped buffers: the parameters themselves, or their
/// gradients (`grad_m` is `h×d` like `M`, `grad_b` has `h` entries like `b`).
#[derive(Debug)]
pub struct TiedParamsMut<'a> {
    pub(crate) m: &'a mut [f32],
    pub(crate) b: &'a mut [f32],
    pub(crate) dims: Dims,
}

impl<'a> TiedParamsMut<'a> {
    /// A mutable view over `m` (`h·d`) and `b` (`h`).
    ///
    /// # Errors
    /// [`crate::Error::Length`] naming `m` or `b` if a length does not match `dims`.
    pub fn new(dims: Dims, m: &'a mut [f32], b: &'a mut [f32]) -> Result<Self> {
        check_len("m", m.len(), dims.m_len())?;
        check_len("b", b.len(), dims.h)?;
        Ok(Self { m, b, dims })
    }

    /// The dimensions.
    #[must_use]
    pub fn dims(&self) -> Dims {
        self.dims
    }

    /// Reborrow as a read-only view.
    #[must_use]
    pub fn as_ref(&self) -> TiedParams<'_> {
        TiedParams {
            m: self.m,
            b: self.b,
            dims: self.dims,
        }
    }

    /// The dictionary (or its gradient), `h×d` row-major.
    #[must_use]
    pub fn m(&mut self) -> &mut [f32] {
        self.m
    }

    /// The bias (or its gradient), `h`.
    #[must_use]
    pub fn b(&mut self) -> &mut [f32] {
        self.b
    }
}

/// `Err(Dimension)` naming `grads.d` or `grads.h` unless gradients of dimensions
/// `grads` fit a model of dimensions `params`.
pub(crate) fn check_grad_dims(params: Dims, grads: Dims) -> Result<()> {
    let (arg, expected, got) = if grads.d != params.d {
        ("grads.d", params.d, grads.d)
    } else if grads.h != params.h {
        ("grads.h", params.h, grads.h)
    } else {
        return Ok(());
    };
    Err(crate::Error::Dimension { arg, expected, got })
}
