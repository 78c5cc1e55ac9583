//! Strided matrix views over caller slices and the GEMM epilogue: the data types the
//! product ([`super::gemm`]) and the ISA kernels ([`super::isa`]) share.

use crate::error::{Error, Result};

/// A read-only strided matrix view: element `(i, j)` is `data[i·row_stride + j·col_stride]`.
///
/// Row-major `rows×cols` data has `row_stride = cols, col_stride = 1`.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    pub(in crate::kernels) data: &'a [f32],
    pub(in crate::kernels) rows: usize,
    pub(in crate::kernels) cols: usize,
    pub(in crate::kernels) rs: usize,
    pub(in crate::kernels) cs: usize,
}

/// A mutable strided matrix view; like [`MatRef`], and no two elements may share memory.
#[derive(Debug)]
pub struct MatMut<'a> {
    pub(in crate::kernels) data: &'a mut [f32],
    pub(in crate::kernels) rows: usize,
    pub(in crate::kernels) cols: usize,
    pub(in crate::kernels) rs: usize,
    pub(in crate::kernels) cs: usize,
}

/// The number of elements a `rows×cols` view with these strides spans (0 if empty).
fn extent(arg: &'static str, rows: usize, cols: usize, rs: usize, cs: usize) -> Result<usize> {
    if rows == 0 || cols == 0 {
        return Ok(0);
    }
    let last = (rows - 1)
        .checked_mul(rs)
        .and_then(|r| (cols - 1).checked_mul(cs).and_then(|c| r.checked_add(c)))
        .ok_or(Error::Overflow { arg })?;
    last.checked_add(1).ok_or(Error::Overflow { arg })
}

impl<'a> MatRef<'a> {
    /// A strided view.
    ///
    /// # Errors
    /// [`Error::Length`] if `data` is shorter than the view's extent
    /// `(rows−1)·row_stride + (cols−1)·col_stride + 1`; [`Error::Overflow`] if that
    /// extent overflows.
    pub fn new(
        arg: &'static str,
        data: &'a [f32],
        rows: usize,
        cols: usize,
        row_stride: usize,
        col_stride: usize,
    ) -> Result<Self> {
        let need = extent(arg, rows, cols, row_stride, col_stride)?;
        if data.len() < need {
            return Err(Error::Length {
                arg,
                expected: need,
                got: data.len(),
            });
        }
        Ok(Self {
            data,
            rows,
            cols,
            rs: row_stride,
            cs: col_stride,
        })
    }

    /// A row-major `rows×cols` view; `data.len()` must be exactly `rows·cols`.
    ///
    /// # Errors
    /// [`Error::Length`] if `data.len() != rows·cols`.
    pub fn row_major(arg: &'static str, data: &'a [f32], rows: usize, cols: usize) -> Result<Self> {
        let need = crate::error::mul(arg, rows, cols)?;
        crate::error::check_len(arg, data.len(), need)?;
        Ok(Self {
            data,
            rows,
            cols,
            rs: cols,
            cs: 1,
        })
    }

    /// The transpose, as a view (no copy).
    #[must_use]
    pub fn t(self) -> Self {
        Self {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
        }
    }

    /// Columns `start..start + len` as a view of the same strides (no copy).
    ///
    /// # Errors
    /// [`Error::OutOfRange`] naming `cols` unless `start + len ≤ self.cols()`.
    ///
    /// ```
    /// # use sae_kernels::kernels::gemm::MatRef;
    /// let m = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]; // 2×3, row-major
    /// let v = MatRef::row_major("m", &m, 2, 3)?.col_range(1, 2)?;
    /// assert_eq!((v.rows(), v.cols(), v.at(1, 0)), (2, 2, 5.0));
    /// // Of the transpose (3×2): its last column, a row of `m`.
    /// let t = MatRef::row_major("m", &m, 2, 3)?.t().col_range(1, 1)?;
    /// assert_eq!((t.rows(), t.at(2, 0)), (3, 6.0));
    /// assert!(MatRef::row_major("m", &m, 2, 3)?.col_range(2, 2).is_err());
    /// assert!(MatRef::row_major("m", &m, 2, 3)?.col_range(usize::MAX, 2).is_err());
    /// # Ok::<(), sae_kernels::Error>(())
    /// ```
    pub fn col_range(self, start: usize, len: usize) -> Result<Self> {
        if start.checked_add(len).is_none_or(|end| end > self.cols) {
            return Err(Error::OutOfRange {
                arg: "cols",
                allowed: "start + len must be at most the view's columns",
            });
        }
        // The view's extent is within `data` (checked when it was made), so every
        // element of the narrower view is too; an empty view keeps no data.
        let data = if len == 0 || self.rows == 0 {
            &self.data[..0]
        } else {
            &self.data[start * self.cs..]
        };
        Ok(Self {
            data,
            rows: self.rows,
            cols: len,
            rs: self.rs,
            cs: self.cs,
        })
    }

    /// Number of rows.
    #[must_use]
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns.
    #[must_use]
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Element `(i, j)`; `i < rows`, `j < cols`.
    #[inline(always)]
    #[must_use]
    pub fn at(&self, i: usize, j: usize) -> f32 {
        self.data[i * self.rs + j * self.cs]
    }

    /// `(max_j ‖B[:, j]‖₂, max_j ‖round(B[:, j]) − B[:, j]‖₂)` of this `k×n` view: the
    /// largest column norm, and the largest norm of a column's change under `round`,
    /// each rounded up, or `None` if an entry, its rounding or a sum of squares is not
    /// finite in `f32` (see [`MatRef::col_norms`]).
    #[cfg(target_arch = "x86_64")]
    pub(crate) fn max_col_norms(&self, round: impl Fn(f32) -> f32 + Copy) -> Option<(f64, f64)> {
        let (mut best, mut best_r) = (0.0f32, 0.0f32);
        let up = crate::kernels::isa::vectorized(
            #[inline(always)]
            |_| {
                self.col_sq_sums(round, |_, s, r| {
                    (best, best_r) = (best.max(s), best_r.max(r));
                })
            },
        )?;
        Some((
            libm::sqrt(f64::from(best) * up),
            libm::sqrt(f64::from(best_r) * up),
        ))
    }

    /// Each column's norm `‖B[:, j]‖₂` into `norm[j]` and the norm of its change
    /// under `round`, `‖round(B[:, j]) − B[:, j]‖₂`, into `change[j]` (each at least
    /// `n` long), each rounded up to an `f32`; the largest of each as
    /// [`MatRef::max_col_norms`] gives them, or `None` (the slices then hold partial
    /// results) if an entry, its rounding or a sum of squares is not finite in `f32`.
    /// The sums of squares run in `f32` (vectorized: one pass over the view, column
    /// chunks row by row when rows are contiguous), so each is enlarged by
    /// `1 + (k + 2)·2⁻²³`, more than their rounding error `γ_k`.
    #[cfg(target_arch = "x86_64")]
    pub(crate) fn col_norms(
        &self,
        round: impl Fn(f32) -> f32 + Copy,
        norm: &mut [f32],
        change: &mut [f32],
    ) -> Option<(f64, f64)> {
        let (norm, change) = (&mut norm[..self.cols], &mut change[..self.cols]);
        let up = crate::kernels::isa::vectorized(
            #[inline(always)]
            |_| {
                self.col_sq_sums(round, |j, s, r| {
                    (norm[j], change[j]) = (s, r);
                })
            },
        )?;
        let sqrt_up = |s: &mut f32| {
            let v = libm::sqrt(f64::from(*s) * up);
            let f = v as f32;
            *s = if f64::from(f) < v { f.next_up() } else { f };
        };
        norm.iter_mut().for_each(sqrt_up);
        change.iter_mut().for_each(sqrt_up);
        let max = |v: &[f32]| v.iter().fold(0.0f32, |m, &x| m.max(x));
        Some((f64::from(max(norm)), f64::from(max(change))))
    }

    /// Each column's `f32` sums of squares `(Σ_p b_pj², Σ_p (round(b_pj) − b_pj)²)`,
    /// handed to `each(j, …)`; returns the factor `1 + (k + 2)·2⁻²³` that bounds
    /// their rounding, or `None` at the first sum that is not finite (infinite or
    /// NaN).
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn col_sq_sums(
        &self,
        round: impl Fn(f32) -> f32,
        mut each: impl FnMut(usize, f32, f32),
    ) -> Option<f64> {
        let (k, n) = (self.rows, self.cols);
        // `!(s < ∞)`: infinite or NaN (which `max` would skip).
        let mut take = |j: usize, s: f32, r: f32| {
            if !(s < f32::INFINITY && r < f32::INFINITY) {
                return false;
            }
            each(j, s, r);
            true
        };
        if self.rs == 1 {
            // Columns contiguous (a tied dictionary: B = Mᵀ): each column summed in
            // 16 lanes, then across them (a serial sum ran at one element per FMA
            // latency: 1.6 ms per call at (384, 3072)). Any order of the `k` additions
            // stays within `γ_k`.
            const L: usize = 16;
            for j in 0..n {
                let col = &self.data[j * self.cs..j * self.cs + k];
                let (mut s, mut r) = ([0.0f32; L], [0.0f32; L]);
                let mut chunks = col.chunks_exact(L);
                for c in &mut chunks {
                    for q in 0..L {
                        let (v, e) = (c[q], round(c[q]) - c[q]);
                        (s[q], r[q]) = (s[q] + v * v, r[q] + e * e);
                    }
                }
                for (q, &v) in chunks.remainder().iter().enumerate() {
                    let e = round(v) - v;
                    (s[q], r[q]) = (s[q] + v * v, r[q] + e * e);
                }
                if !take(j, s.iter().sum(), r.iter().sum()) {
                    return None;
                }
            }
        } else {
            const CH: usize = 256;
            let (mut acc, mut accr) = ([0.0f32; CH], [0.0f32; CH]);
            for j0 in (0..n).step_by(CH) {
                let w = CH.min(n - j0);
                acc[..w].fill(0.0);
                accr[..w].fill(0.0);
                for p in 0..k {
                    let at = p * self.rs + j0 * self.cs;
                    if self.cs == 1 {
                        let row = &self.data[at..at + w];
                        for (a, &v) in acc[..w].iter_mut().zip(row) {
                            *a += v * v;
                        }
                        for (r, &v) in accr[..w].iter_mut().zip(row) {
                            let e = round(v) - v;
                            *r += e * e;
                        }
                    } else {
                        for q in 0..w {
                            let v = self.data[at + q * self.cs];
                            let e = round(v) - v;
                            (acc[q], accr[q]) = (acc[q] + v * v, accr[q] + e * e);
                        }
                    }
                }
                for (q, (&s, &r)) in acc[..w].iter().zip(&accr[..w]).enumerate() {
                    if !take(j0 + q, s, r) {
                        return None;
                    }
                }
            }
        }
        // (k + 2)·2⁻²³
        Some(1.0 + (k as f64 + 2.0) / 8_388_608.0)
    }
}

impl<'a> MatMut<'a> {
    /// A strided mutable view.
    ///
    /// # Errors
    /// [`Error::Length`] if `data` is shorter than the extent; [`Error::Overflow`];
    /// [`Error::AliasingStrides`] if two elements would share memory (for example a
    /// zero stride with more than one row).
    pub fn new(
        arg: &'static str,
        data: &'a mut [f32],
        rows: usize,
        cols: usize,
        row_stride: usize,
        col_stride: usize,
    ) -> Result<Self> {
        let need = extent(arg, rows, cols, row_stride, col_stride)?;
        if data.len() < need {
            return Err(Error::Length {
                arg,
                expected: need,
                got: data.len(),
            });
        }
        if rows > 1 && cols > 1 {
            // Sufficient condition for distinct addresses: one stride steps over the
            // whole extent of the other dimension.
            let row_ext = (cols - 1) * col_stride + 1;
            let col_ext = (rows - 1) * row_stride + 1;
            let ok = (col_stride >= 1 && row_stride >= row_ext)
                || (row_stride >= 1 && col_stride >= col_ext);
            if !ok {
                return Err(Error::AliasingStrides { arg });
            }
        } else if (rows > 1 && row_stride == 0) || (cols > 1 && col_stride == 0) {
            return Err(Error::AliasingStrides { arg });
        }
        Ok(Self {
            data,
            rows,
            cols,
            rs: row_stride,
            cs: col_stride,
        })
    }

    /// A row-major `rows×cols` view; `data.len()` must be exactly `rows·cols`.
    ///
    /// # Errors
    /// [`Error::Length`] if `data.len() != rows·cols`.
    pub fn row_major(
        arg: &'static str,
        data: &'a mut [f32],
        rows: usize,
        cols: usize,
    ) -> Result<Self> {
        let need = crate::error::mul(arg, rows, cols)?;
        crate::error::check_len(arg, data.len(), need)?;
        Ok(Self {
            data,
            rows,
            cols,
            rs: cols,
            cs: 1,
        })
    }

    /// Number of rows.
    #[must_use]
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns.
    #[must_use]
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Reborrow as a read-only view.
    #[must_use]
    pub fn as_ref(&self) -> MatRef<'_> {
        MatRef {
            data: self.data,
            rows: self.rows,
            cols: self.cols,
            rs: self.rs,
            cs: self.cs,
        }
    }
}

/// What to do with each output element after `α·A·B + β·C` is formed.
#[derive(Clone, Copy, Debug)]
pub enum Epilogue<'a> {
    /// Store `α·A·B + β·C` as is.
    None,
    /// Store `relu(α·A·B + β·C + bias[j])`, `bias.len() == C.cols` (the SAE encoder:
    /// one bias per feature column). ReLU as in [`crate::kernels::vector::relu`].
    BiasRelu(&'a [f32]),
    /// Store `α·A·B + β·C + bias[j]`, `bias.len() == C.cols`: pre-activations for an
    /// activation applied afterwards (the TopK encoder's bf16 screen selects on them),
    /// with the bias added while the tile is in registers instead of in another pass.
    Bias(&'a [f32]),
}

impl<'a> Epilogue<'a> {
    /// The bias (if any) and whether ReLU follows it.
    #[inline(always)]
    pub(crate) fn parts(self) -> (Option<&'a [f32]>, bool) {
        match self {
            Epilogue::None => (None, false),
            Epilogue::BiasRelu(b) => (Some(b), true),
            Epilogue::Bias(b) => (Some(b), false),
        }
    }

    /// `v` (one element of column `j`, `α·A·B + β·C` formed) as stored.
    #[inline(always)]
    pub(crate) fn apply(self, v: f32, j: usize) -> f32 {
        match self {
            Epilogue::None => v,
            Epilogue::BiasRelu(b) => crate::kernels::vector::relu(v + b[j]),
            Epilogue::Bias(b) => v + b[j],
        }
    }
}
