use crate::error::{Result, check_len};
use crate::format::alloc::try_zeroed_f32;
use crate::model::{Dims, TiedParams, TiedParamsMut, init_tied};
use std::{vec, vec::Vec};

/// A tied SAE that owns its parameters (`M`: `h×d` row-major, `b`: `h`).
///
/// ```
/// use sae_kernels::{Dims, TiedSae};
/// let sae = TiedSae::new(Dims::new(16, 64)?, 7);
/// assert_eq!(sae.m().len(), 64 * 16);
/// assert!(sae.b().iter().all(|&v| v == 0.0));
/// # Ok::<(), sae_kernels::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct TiedSae {
    dims: Dims,
    m: Vec<f32>,
    b: Vec<f32>,
}

impl TiedSae {
    /// A freshly initialised model (see [`init_tied`]).
    #[must_use]
    pub fn new(dims: Dims, seed: u64) -> Self {
        let mut m = vec![0.0; dims.m_len()];
        let mut b = vec![0.0; dims.h];
        // Lengths come from `dims`, so the view cannot fail.
        let view = TiedParamsMut {
            m: &mut m,
            b: &mut b,
            dims,
        };
        init_tied(view, seed);
        Self { dims, m, b }
    }

    /// As [`TiedSae::new`], but a model too large for the memory available is an
    /// error instead of an abort.
    ///
    /// # Errors
    /// [`crate::Error::Alloc`] naming `m` or `b` if its memory cannot be allocated.
    pub fn try_new(dims: Dims, seed: u64) -> Result<Self> {
        let mut m = try_zeroed_f32(dims.m_len(), "m")?;
        let mut b = try_zeroed_f32(dims.h, "b")?;
        init_tied(
            TiedParamsMut {
                m: &mut m,
                b: &mut b,
                dims,
            },
            seed,
        );
        Ok(Self { dims, m, b })
    }

    /// A model from existing parameters.
    ///
    /// # Errors
    /// [`crate::Error::Length`] naming `m` or `b` if a length does not match `dims`.
    pub fn from_parts(dims: Dims, m: Vec<f32>, b: Vec<f32>) -> Result<Self> {
        check_len("m", m.len(), dims.m_len())?;
        check_len("b", b.len(), dims.h)?;
        Ok(Self { dims, m, b })
    }

    /// The dimensions.
    #[must_use]
    pub fn dims(&self) -> Dims {
        self.dims
    }

    /// The dictionary, `h×d` row-major.
    #[must_use]
    pub fn m(&self) -> &[f32] {
        &self.m
    }

    /// The encoder bias, `h`.
    #[must_use]
    pub fn b(&self) -> &[f32] {
        &self.b
    }

    /// A read-only parameter view for the no_std entry points.
    #[must_use]
    pub fn params(&self) -> TiedParams<'_> {
        TiedParams {
            m: &self.m,
            b: &self.b,
            dims: self.dims,
        }
    }

    /// A mutable parameter view for the no_std entry points.
    #[must_use]
    pub fn params_mut(&mut self) -> TiedParamsMut<'_> {
        TiedParamsMut {
            m: &mut self.m,
            b: &mut self.b,
            dims: self.dims,
        }
    }
}
