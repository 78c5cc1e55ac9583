//! The micro-kernel interface and the choice of kernel for this build and machine.

use super::{Epilogue, MatMut, MatRef};

/// The largest `MR·NR` of any micro-kernel (the tile scratch lives on the stack).
pub(crate) const TILE_MAX: usize = 256;

/// One register-blocked micro-kernel: multiplies an `MR×kc` packed A panel by a
/// `kc×NR` packed B panel.
pub(crate) trait MicroKernel {
    /// Rows of the output tile.
    const MR: usize;
    /// Columns of the output tile.
    const NR: usize;
    /// Name shown by [`crate::kernels::active_kernel`].
    const NAME: &'static str;
    /// `tile[i·NR + j] = Σ_p a[p·MR + i] · b[p·NR + j]` for `p < kc`;
    /// `a.len() == kc·MR`, `b.len() == kc·NR`.
    fn compute(kc: usize, a: &[f32], b: &[f32], tile: &mut [f32; TILE_MAX]);
}

/// The largest `(MR, NR)` of the kernels this build may select, for [`super::pack_len`].
pub(crate) fn max_tile() -> (usize, usize) {
    (super::portable::Portable::MR, super::portable::Portable::NR)
}

/// The name of the kernel [`dispatch`] uses.
pub(crate) fn active_name() -> &'static str {
    super::portable::Portable::NAME
}

/// Run the loop nest with the best kernel available.
pub(crate) fn dispatch(
    alpha: f32,
    a: MatRef<'_>,
    b: MatRef<'_>,
    beta: f32,
    c: MatMut<'_>,
    epi: Epilogue<'_>,
    pack: &mut [f32],
) {
    super::gemm_loop::<super::portable::Portable>(alpha, a, b, beta, c, epi, pack);
}
