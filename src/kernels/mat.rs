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
}
