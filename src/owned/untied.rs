//! An untied SAE that owns its parameters (feature `std`), as loaded from or saved to
//! a SAELens folder by [`crate::format::saelens`].

use crate::error::{Result, check_len, mul};
use crate::format::alloc::try_zeroed_f32;
use crate::model::activation::Activation;
use crate::model::params::{Dims, TiedParams};
use crate::model::untied::{
    UntiedConfig, UntiedParams, UntiedParamsMut, tied_to_untied, untied_decode,
    untied_decode_scratch_len, untied_encode, untied_encode_scratch_len,
};
use crate::model::workspace::DEFAULT_BLOCK_ROWS;
use std::{vec, vec::Vec};

/// Which activation an owned untied SAE uses (the JumpReLU thresholds live in
/// [`UntiedSae::threshold`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActivationKind {
    /// ReLU (SAELens `standard`).
    Relu,
    /// TopK then ReLU with this `k ≥ 1` (SAELens `topk`).
    TopK(usize),
    /// JumpReLU with per-feature thresholds (SAELens `jumprelu`).
    JumpRelu,
}

/// An untied SAE with owned parameters in SAELens' layout (row-major):
/// `w_enc` `d×h`, `b_enc` `h`, `w_dec` `h×d`, `b_dec` `d`, and `threshold` (`h`
/// entries for JumpReLU, empty otherwise). See [`crate::model::untied`] for the math.
#[derive(Clone, Debug, PartialEq)]
pub struct UntiedSae {
    dims: Dims,
    /// Encoder, `d×h` row-major.
    pub w_enc: Vec<f32>,
    /// Encoder bias, `h`.
    pub b_enc: Vec<f32>,
    /// Decoder, `h×d` row-major.
    pub w_dec: Vec<f32>,
    /// Decoder bias, `d`.
    pub b_dec: Vec<f32>,
    /// JumpReLU thresholds, `h` (empty for other activations).
    pub threshold: Vec<f32>,
    /// The activation.
    pub kind: ActivationKind,
    /// Subtract `b_dec` from the input before encoding.
    pub apply_b_dec_to_input: bool,
}

impl UntiedSae {
    /// A model from its parts.
    ///
    /// # Errors
    /// [`crate::Error::Length`] naming the first buffer whose length does not match
    /// `dims` (`threshold` must have `h` entries for JumpReLU and be empty otherwise);
    /// [`crate::Error::OutOfRange`] naming `k` if TopK has `k == 0`.
    #[allow(clippy::too_many_arguments)]
    pub fn from_parts(
        dims: Dims,
        w_enc: Vec<f32>,
        b_enc: Vec<f32>,
        w_dec: Vec<f32>,
        b_dec: Vec<f32>,
        threshold: Vec<f32>,
        kind: ActivationKind,
        apply_b_dec_to_input: bool,
    ) -> Result<Self> {
        UntiedParams::new(dims, &w_enc, &b_enc, &w_dec, &b_dec)?;
        let want = if kind == ActivationKind::JumpRelu {
            dims.h
        } else {
            0
        };
        check_len("threshold", threshold.len(), want)?;
        let s = Self {
            dims,
            w_enc,
            b_enc,
            w_dec,
            b_dec,
            threshold,
            kind,
            apply_b_dec_to_input,
        };
        s.config().activation.check(dims.h)?;
        Ok(s)
    }

    /// The untied equivalent of a tied model: `W_enc = Mᵀ`, `W_dec = M`, `b_enc = b`,
    /// `b_dec = 0`, ReLU, no input subtraction (see [`tied_to_untied`]).
    #[must_use]
    pub fn from_tied(tied: TiedParams<'_>) -> Self {
        let dims = tied.dims();
        let n = dims.m_len();
        let (mut w_enc, mut b_enc, mut w_dec, mut b_dec) = (
            vec![0.0; n],
            vec![0.0; dims.h],
            vec![0.0; n],
            vec![0.0; dims.d],
        );
        let out = UntiedParamsMut::new(dims, &mut w_enc, &mut b_enc, &mut w_dec, &mut b_dec);
        // Lengths come from `dims`, so neither call can fail.
        if let Ok(out) = out {
            let _ = tied_to_untied(tied, out);
        }
        Self {
            dims,
            w_enc,
            b_enc,
            w_dec,
            b_dec,
            threshold: Vec::new(),
            kind: ActivationKind::Relu,
            apply_b_dec_to_input: false,
        }
    }

    /// The dimensions (`d` = `d_in`, `h` = `d_sae`).
    #[must_use]
    pub fn dims(&self) -> Dims {
        self.dims
    }

    /// A read-only parameter view for the no_std entry points.
    #[must_use]
    pub fn params(&self) -> UntiedParams<'_> {
        UntiedParams {
            w_enc: &self.w_enc,
            b_enc: &self.b_enc,
            w_dec: &self.w_dec,
            b_dec: &self.b_dec,
            dims: self.dims,
        }
    }

    /// A mutable parameter view (for optimisers).
    ///
    /// # Errors
    /// [`crate::Error::Length`] if a public field was resized to a wrong length.
    pub fn params_mut(&mut self) -> Result<UntiedParamsMut<'_>> {
        UntiedParamsMut::new(
            self.dims,
            &mut self.w_enc,
            &mut self.b_enc,
            &mut self.w_dec,
            &mut self.b_dec,
        )
    }

    /// The activation and input-centring flag, for the no_std entry points.
    #[must_use]
    pub fn config(&self) -> UntiedConfig<'_> {
        UntiedConfig {
            activation: match self.kind {
                ActivationKind::Relu => Activation::Relu,
                ActivationKind::TopK(k) => Activation::TopK { k },
                ActivationKind::JumpRelu => Activation::JumpRelu {
                    threshold: &self.threshold,
                },
            },
            apply_b_dec_to_input: self.apply_b_dec_to_input,
        }
    }

    /// Codes of `n` rows (`x`: `n×d` row-major) as a new `n×h` row-major vector.
    ///
    /// # Errors
    /// As [`untied_encode`] (e.g. [`crate::Error::Length`] naming `x`).
    pub fn encode(&self, x: &[f32], n: usize) -> Result<Vec<f32>> {
        let p = UntiedParams::new(
            self.dims,
            &self.w_enc,
            &self.b_enc,
            &self.w_dec,
            &self.b_dec,
        )?;
        check_len("x", x.len(), mul("x", n, self.dims.d)?)?;
        let mut codes = try_zeroed_f32(mul("codes", n, self.dims.h)?, "codes")?;
        let mut scratch = vec![0.0; untied_encode_scratch_len(self.dims, DEFAULT_BLOCK_ROWS)];
        untied_encode(p, self.config(), x, n, &mut codes, &mut scratch)?;
        Ok(codes)
    }

    /// Reconstruction of `n` rows of codes (`codes`: `n×h`) as a new `n×d` vector.
    ///
    /// # Errors
    /// As [`untied_decode`].
    pub fn decode(&self, codes: &[f32], n: usize) -> Result<Vec<f32>> {
        let p = UntiedParams::new(
            self.dims,
            &self.w_enc,
            &self.b_enc,
            &self.w_dec,
            &self.b_dec,
        )?;
        check_len("codes", codes.len(), mul("codes", n, self.dims.h)?)?;
        let mut recon = try_zeroed_f32(mul("recon", n, self.dims.d)?, "recon")?;
        let mut scratch = vec![0.0; untied_decode_scratch_len(self.dims)];
        untied_decode(p, codes, n, &mut recon, &mut scratch)?;
        Ok(recon)
    }
}
