//! Row kernels (`dot`, `axpy`, and the fused `axpy2`) on the [`selected`] instruction
//! set, for the sparse path: thin wrappers that hand the selected token to the
//! token's own row kernel (AVX-512F or AVX2+FMA intrinsics on x86_64, `wide`
//! elsewhere, plain `f32` for the scalar kernel). Like the GEMM's, results may differ
//! in the last bits between instruction sets; each has a fixed summation order.
//!
//! [`selected`]: crate::kernels::isa::selected

use crate::kernels::isa::{Isa, IsaVisitor, visit_selected};

/// Σ aᵢ bᵢ over the common length.
#[inline]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    struct Dot<'a>(&'a [f32], &'a [f32]);
    impl IsaVisitor for Dot<'_> {
        type Output = f32;
        #[inline(always)]
        fn visit<I: Isa>(self, isa: I) -> f32 {
            isa.dot(self.0, self.1)
        }
    }
    visit_selected(Dot(a, b))
}

/// y ← a·x + y over the common length.
#[inline]
pub(crate) fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    struct Axpy<'a>(f32, &'a [f32], &'a mut [f32]);
    impl IsaVisitor for Axpy<'_> {
        type Output = ();
        #[inline(always)]
        fn visit<I: Isa>(self, isa: I) {
            isa.axpy(self.0, self.1, self.2)
        }
    }
    visit_selected(Axpy(a, x, y))
}

/// z ← z + a·x + b·y over the common length, one pass over `z`.
#[inline]
pub(crate) fn axpy2(a: f32, x: &[f32], b: f32, y: &[f32], z: &mut [f32]) {
    struct Axpy2<'a>(f32, &'a [f32], f32, &'a [f32], &'a mut [f32]);
    impl IsaVisitor for Axpy2<'_> {
        type Output = ();
        #[inline(always)]
        fn visit<I: Isa>(self, isa: I) {
            isa.axpy2(self.0, self.1, self.2, self.3, self.4)
        }
    }
    visit_selected(Axpy2(a, x, b, y, z))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::isa::{IsaVisitor, Kernel, visit};

    /// Every token's row kernels against plain `f32`/`f64` loops.
    struct Check;
    impl IsaVisitor for Check {
        type Output = ();
        fn visit<I: Isa>(self, isa: I) {
            for n in [0usize, 1, 7, 8, 9, 15, 16, 17, 31, 32, 33, 47, 48, 49, 100] {
                let x: [f32; 100] = core::array::from_fn(|i| (i % 7) as f32 * 0.25 - 0.5);
                let y: [f32; 100] = core::array::from_fn(|i| (i % 5) as f32 * 0.5 - 1.0);
                let (x, y) = (&x[..n], &y[..n]);
                let want: f64 = x.iter().zip(y).map(|(a, b)| f64::from(a * b)).sum();
                let name = I::KERNEL.name();
                assert!(
                    (f64::from(isa.dot(x, y)) - want).abs() < 1e-4,
                    "{name} dot n={n}"
                );
                let mut z = [1.0f32; 100];
                isa.axpy2(2.0, x, -0.5, y, &mut z[..n]);
                for i in 0..n {
                    // Exactly representable: fused or not gives the same bits.
                    assert_eq!(
                        z[i],
                        1.0 + 2.0 * x[i] - 0.5 * y[i],
                        "{name} axpy2 n={n} i={i}"
                    );
                }
                assert!(
                    z[n..].iter().all(|&v| v == 1.0),
                    "{name} axpy2 past the end"
                );
                let mut w = [3.0f32; 100];
                isa.axpy(0.5, x, &mut w[..n]);
                for i in 0..n {
                    assert_eq!(w[i], 3.0 + 0.5 * x[i], "{name} axpy n={n} i={i}");
                }
                assert!(
                    w[n..].iter().all(|&v| v == 3.0),
                    "{name} nothing past the end"
                );
            }
        }
    }

    #[test]
    fn every_token_matches_scalar() {
        for k in Kernel::ALL.into_iter().filter(|k| k.is_available()) {
            visit(k, Check);
        }
        // The selected-kernel wrappers.
        let x = [1.0f32, 2.0, 3.0];
        assert_eq!(dot(&x, &x), 14.0);
        let mut y = [0.0f32; 3];
        axpy(2.0, &x, &mut y);
        assert_eq!(y, [2.0, 4.0, 6.0]);
        axpy2(1.0, &x, -1.0, &x, &mut y);
        assert_eq!(y, [2.0, 4.0, 6.0]);
    }
}
