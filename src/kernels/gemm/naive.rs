//! Naive reference products, for tests and fuzzing oracles (not for speed).
//!
//! [`gemm_f64`] accumulates in `f64`; it is the reference the fast kernels are checked
//! against. It also returns the error scale `Σ_p |α·a_ip·b_pj|` per element, against
//! which the bound on an `f32` product is stated.

use super::{Epilogue, MatMut, MatRef};

/// `C ← epilogue(α·A·B + β·C)` with `f64` accumulation, one element at a time.
/// Shapes must already agree (as [`super::gemm`] checks); `mag`, if given, receives
/// `Σ_p |α·a_ip·b_pj| + |β·c_ij|` per element, row-major `m×n`.
pub fn gemm_f64(
    alpha: f32,
    a: MatRef<'_>,
    b: MatRef<'_>,
    beta: f32,
    c: &mut MatMut<'_>,
    epi: Epilogue<'_>,
    mut mag: Option<&mut [f64]>,
) {
    let (m, k, n) = (a.rows(), a.cols(), b.cols());
    for i in 0..m {
        for j in 0..n {
            let mut s = 0.0f64;
            let mut sm = 0.0f64;
            for p in 0..k {
                let t = f64::from(a.at(i, p)) * f64::from(b.at(p, j));
                s += t;
                sm += t.abs();
            }
            let idx = i * c.rs + j * c.cs;
            let mut v = f64::from(alpha) * s;
            sm *= f64::from(alpha).abs();
            if beta != 0.0 {
                let cv = f64::from(beta) * f64::from(c.data[idx]);
                v += cv;
                sm += cv.abs();
            }
            if let (Some(bias), relu) = epi.parts() {
                v += f64::from(bias[j]);
                sm += f64::from(bias[j]).abs();
                if relu {
                    v = if v <= 0.0 { 0.0 } else { v };
                }
            }
            c.data[idx] = v as f32;
            if let Some(mg) = mag.as_deref_mut() {
                mg[i * n + j] = sm;
            }
        }
    }
}
