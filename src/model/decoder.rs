//! Decoder-row utilities for unit-norm decoders, and SAELens' initialisation of an
//! untied SAE.

use super::params::{Dims, ParamsMut};
use crate::error::{Error, Result, check_finite, check_len};
use crate::kernels::vector;

/// Rescale every decoder row to unit L2 norm, in place (`w_dec`: `h×d` row-major).
/// Rows of norm 0 are left as they are.
///
/// # Errors
/// [`Error::Length`] naming `w_dec` if its length is not `h·d`.
pub fn normalize_decoder_rows(dims: Dims, w_dec: &mut [f32]) -> Result<()> {
    check_len("w_dec", w_dec.len(), dims.m_len())?;
    for row in w_dec.chunks_exact_mut(dims.d) {
        let nrm = crate::math::sqrtf(vector::sum_sq(row));
        if nrm > 0.0 {
            let inv = 1.0 / nrm;
            for v in row.iter_mut() {
                *v *= inv;
            }
        }
    }
    Ok(())
}

/// Remove from each decoder-row gradient its component parallel to that row:
/// `g_i ← g_i − (g_i·ŵ_i)·ŵ_i` with `ŵ_i = W_dec,i/‖W_dec,i‖` (OpenAI / EleutherAI /
/// Towards-Monosemanticity recipe, used with unit-norm decoder rows). Rows of norm 0
/// leave their gradient unchanged. Both buffers are `h×d` row-major.
///
/// # Errors
/// [`Error::Length`] naming `w_dec` or `grad_w_dec` if a length is not `h·d`.
pub fn remove_parallel_decoder_grad(
    dims: Dims,
    w_dec: &[f32],
    grad_w_dec: &mut [f32],
) -> Result<()> {
    check_len("w_dec", w_dec.len(), dims.m_len())?;
    check_len("grad_w_dec", grad_w_dec.len(), dims.m_len())?;
    for (g, w) in grad_w_dec
        .chunks_exact_mut(dims.d)
        .zip(w_dec.chunks_exact(dims.d))
    {
        let nn = vector::sum_sq(w);
        if nn > 0.0 {
            vector::axpy(-vector::dot(g, w) / nn, w, g);
        }
    }
    Ok(())
}

/// SAELens v6's initialisation of an untied SAE (same distribution, not the same
/// random numbers): decoder rows drawn uniformly from `[−√(6/d), √(6/d)]`
/// (PyTorch's `kaiming_uniform_`) and rescaled to L2 norm `decoder_norm` (SAELens'
/// `decoder_init_norm`, default 0.1, after Anthropic's April 2024 update),
/// `W_enc = W_decᵀ`, `b_enc = 0`, `b_dec = 0`.
///
/// Samples are drawn in `f64` from PCG-64 seeded with `seed` ([`super::init::InitRng`]),
/// row by row of `W_dec`; the same seed gives the same parameters on every target.
///
/// A JumpReLU threshold tensor is left as it is.
///
/// # Errors
/// [`Error::NonFinite`] naming `decoder_norm` if it is not finite;
/// [`Error::OutOfRange`] naming `params` for tied weights (see [`super::init_tied`]).
/// Nothing is written on error.
pub fn init_untied(params: ParamsMut<'_>, seed: u64, decoder_norm: f32) -> Result<()> {
    use rand_core::SeedableRng;
    use rand_distr::{Distribution, Uniform};
    check_finite("decoder_norm", decoder_norm)?;
    if params.arch().is_tied() {
        return Err(Error::OutOfRange {
            arg: "params",
            allowed: "untied weights",
        });
    }
    let Dims { d, h } = params.dims();
    let p = params.parts();
    let (w_enc, b_enc, b_dec) = (p.enc, p.b_enc, p.b_dec);
    let Some(w_dec) = p.dec else {
        return Ok(());
    };
    let bound = libm::sqrt(6.0 / d as f64);
    let mut rng = super::init::InitRng::seed_from_u64(seed);
    // `bound > 0` and finite, so the range is valid.
    if let Ok(u) = Uniform::new_inclusive(-bound, bound) {
        for row in w_dec.chunks_exact_mut(d) {
            for v in row.iter_mut() {
                *v = u.sample(&mut rng) as f32;
            }
            let nrm = crate::math::sqrtf(vector::sum_sq(row));
            if nrm > 0.0 {
                let s = decoder_norm / nrm;
                for v in row.iter_mut() {
                    *v *= s;
                }
            }
        }
    }
    for (i, row) in w_dec.chunks_exact(d).enumerate() {
        for (j, &v) in row.iter().enumerate() {
            w_enc[j * h + i] = v;
        }
    }
    b_enc.fill(0.0);
    b_dec.fill(0.0);
    Ok(())
}
