//! Deterministic initialisation from a seed, without an allocator.

use super::params::TiedParamsMut;
use rand_core::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

/// The random generator used for initialisation (PCG-64 from `rand_pcg`).
pub type InitRng = rand_pcg::Pcg64;

/// The seed's initialisation: `M ~ N(0, 1)·sqrt(2/d)` and `b = 0`.
///
/// Normal samples are drawn in `f64` (ziggurat, `rand_distr`) from PCG-64 seeded with
/// `seed`, scaled, and rounded to `f32`, row by row of `M`. The same seed gives the same
/// parameters on every target (up to `libm` vs platform `exp` in the ziggurat's rare
/// tail branch; bit-identical for a given build).
pub fn init_tied(params: TiedParamsMut<'_>, seed: u64) {
    let d = params.dims.d;
    let scale = libm::sqrt(2.0 / d as f64);
    let mut rng = InitRng::seed_from_u64(seed);
    for v in params.m.iter_mut() {
        let z: f64 = StandardNormal.sample(&mut rng);
        *v = (z * scale) as f32;
    }
    params.b.fill(0.0);
}
