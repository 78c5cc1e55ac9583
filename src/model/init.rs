//! Deterministic initialisation from a seed, without an allocator.

use super::params::ParamsMut;
use rand_core::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

/// The random generator used for initialisation (PCG-64 from `rand_pcg`).
pub type InitRng = rand_pcg::Pcg64;

/// The seed's initialisation: `M ~ N(0, 1)·sqrt(2/d)` and `b = 0`.
///
/// Takes a [`ParamsMut`] (tied: [`ParamsMut::tied`]). For untied weights the
/// decoder `W_dec` is drawn the same way, `W_enc = W_decᵀ` and both biases are 0 (use
/// [`super::init_untied`] for SAELens' initialisation); a JumpReLU threshold is left
/// as it is.
///
/// Normal samples are drawn in `f64` (ziggurat, `rand_distr`) from PCG-64 seeded with
/// `seed`, scaled, and rounded to `f32`, row by row of `M`. The same seed gives the same
/// parameters on every target (up to `libm` vs platform `exp` in the ziggurat's rare
/// tail branch; bit-identical for a given build).
pub fn init_tied(params: ParamsMut<'_>, seed: u64) {
    let super::Dims { d, h } = params.dims();
    let scale = libm::sqrt(2.0 / d as f64);
    let mut rng = InitRng::seed_from_u64(seed);
    let p = params.parts();
    let mut draw = |dec: &mut [f32]| {
        for v in dec.iter_mut() {
            let z: f64 = StandardNormal.sample(&mut rng);
            *v = (z * scale) as f32;
        }
    };
    match p.dec {
        None => draw(p.enc),
        Some(w_dec) => {
            draw(w_dec);
            for (i, row) in w_dec.chunks_exact(d).enumerate() {
                for (j, &v) in row.iter().enumerate() {
                    p.enc[j * h + i] = v;
                }
            }
        }
    }
    p.b_enc.fill(0.0);
    p.b_dec.fill(0.0);
}
