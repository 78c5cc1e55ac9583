//! `sae_kernels._native`: the Python extension (PyO3 + numpy). The public module is
//! `sae_kernels` (python/sae_kernels/__init__.py re-exports [`Sae`] as `SAE`).
//!
//! Every compute call reads its numpy inputs in place (float32, C-contiguous: no
//! copy), writes into a new numpy array (or, for `encode`, the caller's `out`), and
//! releases the GIL while it computes, so Python threads can encode in parallel with
//! one shared model. The scratch memory is kept per thread and reused across calls. Bad input raises `ValueError` (or
//! `FileNotFoundError` for a missing folder); nothing crashes.

use numpy::{
    PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyFileNotFoundError, PyValueError};
use pyo3::prelude::*;
use sae_kernels_c::model::{self, Arch, Error, Kind, Owned, View};
use std::cell::RefCell;

fn py_err(e: Error) -> PyErr {
    match model::kind(&e) {
        Kind::NotFound => PyFileNotFoundError::new_err(e.to_string()),
        _ => PyValueError::new_err(e.to_string()),
    }
}

fn value_error(msg: impl Into<String>) -> PyErr {
    PyValueError::new_err(msg.into())
}

/// CSR arrays `(indptr, indices, values)` as numpy arrays.
type Csr<'py> = (
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray1<i32>>,
    Bound<'py, PyArray1<f32>>,
);

thread_local! {
    /// Scratch reused by every call on this thread (grows to the largest need).
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Run `f` with at least `len` f32 of this thread's scratch.
fn with_scratch<T>(len: usize, f: impl FnOnce(&mut [f32]) -> T) -> T {
    SCRATCH.with(|s| match s.try_borrow_mut() {
        Ok(mut s) => {
            if s.len() < len {
                s.resize(len, 0.0);
            }
            f(&mut s[..len])
        }
        // Re-entrant use (not expected): a fresh buffer.
        Err(_) => f(&mut vec![0.0; len]),
    })
}

/// Rows per block for a batch of `n`: as large as the core takes (the encoder product
/// packs all of `W_enc` once per block), no more than needed.
fn block_rows(n: usize) -> usize {
    n.clamp(1, model::MAX_BLOCK_ROWS)
}

/// Rows per block of a dense encode: the whole batch up to [`ENCODE_BLOCK_ROWS`] rows
/// (fewer for wide inputs: the centred block, `rows·d_in` floats, stays within
/// [`ENCODE_CENTRED_FLOATS`] unless that is under [`model::MAX_BLOCK_ROWS`] rows), so
/// that `W_enc` is packed once per call for all usual batch sizes.
fn encode_block_rows(n: usize, d_in: usize) -> usize {
    let cap = (ENCODE_CENTRED_FLOATS / d_in.max(1)).clamp(model::MAX_BLOCK_ROWS, ENCODE_BLOCK_ROWS);
    n.clamp(1, cap)
}

/// The largest block of a dense encode (see [`encode_block_rows`]).
const ENCODE_BLOCK_ROWS: usize = 4096;
/// The scratch a dense encode may use for its centred block: 16 MiB of `f32`.
const ENCODE_CENTRED_FLOATS: usize = 1 << 22;

/// Describe an object for an error message: type, dtype, shape.
fn describe(obj: &Bound<'_, PyAny>) -> String {
    let ty = obj
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into());
    match (obj.getattr("dtype"), obj.getattr("shape")) {
        (Ok(dt), Ok(sh)) => format!("{ty} of dtype {dt} and shape {sh}"),
        _ => ty,
    }
}

/// A float32 2-D C-contiguous array, borrowed without copying.
fn f32_2d<'py>(obj: &Bound<'py, PyAny>, name: &str) -> PyResult<PyReadonlyArray2<'py, f32>> {
    let arr = obj.extract::<PyReadonlyArray2<'py, f32>>().map_err(|_| {
        value_error(format!(
            "`{name}` must be a 2-D numpy array of float32, got {} \
             (np.ascontiguousarray({name}, dtype=np.float32) converts it)",
            describe(obj)
        ))
    })?;
    if !arr.is_c_contiguous() {
        return Err(value_error(format!(
            "`{name}` must be C-contiguous (np.ascontiguousarray({name}) makes a copy that is)"
        )));
    }
    Ok(arr)
}

/// A float32 1-D C-contiguous array, borrowed without copying.
fn f32_1d<'py>(obj: &Bound<'py, PyAny>, name: &str) -> PyResult<PyReadonlyArray1<'py, f32>> {
    let arr = obj.extract::<PyReadonlyArray1<'py, f32>>().map_err(|_| {
        value_error(format!(
            "`{name}` must be a 1-D numpy array of float32, got {}",
            describe(obj)
        ))
    })?;
    if !arr.is_c_contiguous() {
        return Err(value_error(format!("`{name}` must be contiguous")));
    }
    Ok(arr)
}

/// A 1-D array of any integer dtype as `Vec<T>` (range-checked), for CSR inputs.
fn int_1d<T: TryFrom<i64> + TryFrom<u64>>(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<Vec<T>> {
    let bad = |what: &str| value_error(format!("`{name}`: {what}"));
    macro_rules! try_dtype {
        ($t:ty, $wide:ty) => {
            if let Ok(a) = obj.extract::<PyReadonlyArray1<'_, $t>>() {
                return a
                    .as_array()
                    .iter()
                    .map(|&v| {
                        T::try_from(v as $wide).map_err(|_| bad(&format!("value {v} out of range")))
                    })
                    .collect();
            }
        };
    }
    try_dtype!(i64, i64);
    try_dtype!(i32, i64);
    try_dtype!(u32, u64);
    try_dtype!(u64, u64);
    try_dtype!(i16, i64);
    try_dtype!(u16, u64);
    try_dtype!(i8, i64);
    try_dtype!(u8, u64);
    Err(bad(&format!(
        "must be a 1-D numpy array of integers, got {}",
        describe(obj)
    )))
}

/// The caller's `out` array of an encode: float32, shape `(n, h)`, C-contiguous,
/// not overlapping `x` (checked here), writeable (checked when it is borrowed,
/// [`out_borrow_error`]).
fn out_array<'py>(
    out: &Bound<'py, PyAny>,
    n: usize,
    h: usize,
    x: &[f32],
) -> PyResult<Bound<'py, PyArray2<f32>>> {
    let arr = out.cast::<PyArray2<f32>>().map_err(|_| {
        value_error(format!(
            "`out` must be a 2-D numpy array of float32, got {}",
            describe(out)
        ))
    })?;
    if arr.shape() != [n, h] {
        let s = arr.shape();
        let got = match s {
            [a, b] => format!("({a}, {b})"),
            _ => format!("{s:?}"),
        };
        return Err(value_error(format!(
            "`out` has shape {got}, expected ({n}, {h}) (x's rows, d_sae)"
        )));
    }
    if !arr.is_c_contiguous() {
        return Err(value_error("`out` must be C-contiguous"));
    }
    // Both are C-contiguous: each occupies exactly this byte range.
    let range = |p: *const f32, len: usize| {
        let a = p as usize;
        a..a + len * size_of::<f32>()
    };
    let (o, i) = (range(arr.data(), n * h), range(x.as_ptr(), x.len()));
    if !o.is_empty() && !i.is_empty() && o.start < i.end && i.start < o.end {
        return Err(value_error(
            "`out` overlaps `x` in memory: the codes need a buffer of their own",
        ));
    }
    Ok(arr.clone())
}

/// The error for an `out` array that cannot be borrowed for writing.
fn out_borrow_error(e: &numpy::BorrowError) -> PyErr {
    match e {
        numpy::BorrowError::NotWriteable => {
            value_error("`out` is read-only (out.flags.writeable is False)")
        }
        _ => value_error(
            "`out` is in use by another call (or shares memory with `x`): \
             it must not be used elsewhere while the codes are written",
        ),
    }
}

fn parse_arch(architecture: &str, k: Option<usize>) -> PyResult<Arch> {
    match (architecture, k) {
        ("standard", None) => Ok(Arch::Standard),
        ("jumprelu", None) => Ok(Arch::JumpRelu),
        ("topk", Some(k)) => Ok(Arch::TopK(k)),
        ("topk", None) => Err(value_error("`k` is required for architecture \"topk\"")),
        ("standard" | "jumprelu", Some(_)) => Err(value_error(format!(
            "`k` is only for architecture \"topk\", not \"{architecture}\""
        ))),
        (other, _) => Err(value_error(format!(
            "`architecture` must be \"standard\", \"topk\" or \"jumprelu\", got {other:?}"
        ))),
    }
}

/// A sparse autoencoder (SAELens' layout and semantics) that encodes numpy arrays.
///
/// Make one with ``SAE.load(dir)`` (a SAELens folder: ``cfg.json`` +
/// ``sae_weights.safetensors``; architectures ``standard``, ``topk``, ``jumprelu``) or
/// ``SAE.from_arrays(...)``. One model may be shared by many threads: every method
/// releases the GIL while it computes.
#[pyclass(name = "SAE", module = "sae_kernels", frozen)]
struct Sae {
    owned: Owned,
}

impl Sae {
    fn view(&self) -> View<'_> {
        self.owned.view()
    }

    fn check_width(&self, got: usize, want: usize, name: &str, what: &str) -> PyResult<()> {
        if got != want {
            return Err(value_error(format!(
                "`{name}` has {got} columns, the model needs {want} ({what})"
            )));
        }
        Ok(())
    }

    /// CSR decode over Rust vectors; `n` rows.
    fn decode_csr_impl<'py>(
        &self,
        py: Python<'py>,
        row_ptr: Vec<usize>,
        indices: Vec<u32>,
        values: PyReadonlyArray1<'py, f32>,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let v = self.view();
        let n = row_ptr
            .len()
            .checked_sub(1)
            .ok_or_else(|| value_error("`indptr` must have at least one entry"))?;
        let d = v.d_in();
        let out = PyArray2::<f32>::zeros(py, [n, d], false);
        if n == 0 {
            return Ok(out);
        }
        let vals = values.as_slice().map_err(|e| value_error(e.to_string()))?;
        if vals.len() != indices.len() {
            return Err(value_error(format!(
                "`indices` has {} entries but `values` has {}",
                indices.len(),
                vals.len()
            )));
        }
        {
            let mut rw = out.readwrite();
            let recon = rw.as_slice_mut().map_err(|e| value_error(e.to_string()))?;
            py.detach(|| model::decode_csr(&v, n, &row_ptr, &indices, vals, recon))
                .map_err(py_err)?;
        }
        Ok(out)
    }
}

#[pymethods]
impl Sae {
    /// Load a SAELens folder (``cfg.json`` + ``sae_weights.safetensors``).
    ///
    /// Raises ``FileNotFoundError`` if the folder or a file is missing, ``ValueError``
    /// if a file is malformed or describes a model this library cannot run exactly
    /// (the message names the file and field).
    #[staticmethod]
    fn load(py: Python<'_>, dir: std::path::PathBuf) -> PyResult<Self> {
        let owned = py
            .detach(|| Owned::load(&dir))
            .map_err(|e| match model::kind(&e) {
                Kind::NotFound => PyFileNotFoundError::new_err(format!("{}: {e}", dir.display())),
                _ => PyValueError::new_err(format!("{}: {e}", dir.display())),
            })?;
        Ok(Self { owned })
    }

    /// An SAE from float32 arrays in SAELens' layout (copied):
    /// ``W_enc`` (d_in, d_sae), ``b_enc`` (d_sae,), ``W_dec`` (d_sae, d_in),
    /// ``b_dec`` (d_in,); ``architecture`` is ``"standard"``, ``"topk"`` (needs ``k``)
    /// or ``"jumprelu"`` (needs ``threshold``, (d_sae,)).
    #[staticmethod]
    #[pyo3(signature = (W_enc, b_enc, W_dec, b_dec, *, architecture = "standard", k = None, threshold = None, apply_b_dec_to_input = true))]
    #[allow(non_snake_case, clippy::too_many_arguments)]
    fn from_arrays(
        W_enc: &Bound<'_, PyAny>,
        b_enc: &Bound<'_, PyAny>,
        W_dec: &Bound<'_, PyAny>,
        b_dec: &Bound<'_, PyAny>,
        architecture: &str,
        k: Option<usize>,
        threshold: Option<&Bound<'_, PyAny>>,
        apply_b_dec_to_input: bool,
    ) -> PyResult<Self> {
        let arch = parse_arch(architecture, k)?;
        let we = f32_2d(W_enc, "W_enc")?;
        let (d, h) = (we.shape()[0], we.shape()[1]);
        let wd = f32_2d(W_dec, "W_dec")?;
        if wd.shape() != [h, d] {
            return Err(value_error(format!(
                "`W_dec` has shape {:?}, expected ({h}, {d}) from W_enc's ({d}, {h})",
                wd.shape()
            )));
        }
        let be = f32_1d(b_enc, "b_enc")?;
        let bd = f32_1d(b_dec, "b_dec")?;
        let thr = match (arch, threshold) {
            (Arch::JumpRelu, Some(t)) => f32_1d(t, "threshold")?.as_slice()?.to_vec(),
            (Arch::JumpRelu, None) => {
                return Err(value_error(
                    "`threshold` is required for architecture \"jumprelu\"",
                ));
            }
            (_, Some(_)) => {
                return Err(value_error(
                    "`threshold` is only for architecture \"jumprelu\"",
                ));
            }
            (_, None) => Vec::new(),
        };
        let owned = Owned::from_parts(
            d,
            h,
            arch,
            apply_b_dec_to_input,
            we.as_slice()?.to_vec(),
            be.as_slice()?.to_vec(),
            wd.as_slice()?.to_vec(),
            bd.as_slice()?.to_vec(),
            thr,
        )
        .map_err(py_err)?;
        Ok(Self { owned })
    }

    /// Input width (SAELens ``d_in``).
    #[getter]
    fn d_in(&self) -> usize {
        self.view().d_in()
    }

    /// Number of features (SAELens ``d_sae``).
    #[getter]
    fn d_sae(&self) -> usize {
        self.view().d_sae()
    }

    /// ``"standard"``, ``"topk"`` or ``"jumprelu"``.
    #[getter]
    fn architecture(&self) -> &'static str {
        self.view().arch().name()
    }

    /// TopK's ``k`` (``None`` for the other architectures).
    #[getter]
    fn k(&self) -> Option<usize> {
        match self.view().arch() {
            Arch::TopK(k) => Some(k),
            _ => None,
        }
    }

    /// Whether ``b_dec`` is subtracted from inputs before encoding.
    #[getter]
    fn apply_b_dec_to_input(&self) -> bool {
        self.view().apply_b_dec_to_input()
    }

    fn __repr__(&self) -> String {
        let v = self.view();
        let k = match v.arch() {
            Arch::TopK(k) => format!(", k={k}"),
            _ => String::new(),
        };
        format!(
            "SAE(d_in={}, d_sae={}, architecture={:?}{k})",
            v.d_in(),
            v.d_sae(),
            v.arch().name()
        )
    }

    /// Dense codes of a batch: ``x`` float32 (n, d_in), C-contiguous (read in place,
    /// not copied) → float32 (n, d_sae). The GIL is released while encoding.
    ///
    /// With ``out`` (float32 (n, d_sae), C-contiguous, writeable, not overlapping
    /// ``x``) the codes are written there and ``out`` itself is returned: a caller
    /// that encodes batch after batch reuses one buffer instead of a fresh array per
    /// call (whose pages a large array faults in anew each time). ``ValueError`` if
    /// ``out`` does not fit; it is then left untouched. Nothing else may use ``out``
    /// while the call runs (another call given the same ``out`` at the same time
    /// raises ``ValueError``).
    #[pyo3(signature = (x, out = None))]
    fn encode<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        out: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let v = self.view();
        let x = f32_2d(x, "x")?;
        let (n, d, h) = (x.shape()[0], v.d_in(), v.d_sae());
        self.check_width(x.shape()[1], d, "x", "d_in")?;
        let xs = x.as_slice()?;
        let out = match out {
            Some(o) => out_array(o, n, h, xs)?,
            // SAFETY: `PyArray2::new` leaves the elements uninitialised, which its
            // contract allows for `f32` (trivially copyable, no drop) as long as no
            // element is read before it is written. The only access below is
            // `model::encode`, which writes every element of `codes` (`n·h`,
            // checked by its length test) and never reads it; on an error it writes
            // nothing and the array is dropped unread. For `n == 0` there is no
            // element. (An uninitialised array lets the allocator hand back recently
            // freed memory without clearing it: `zeros` cleared 12.6 MB per call at
            // (384, 3072), batch 1024.)
            None => unsafe { PyArray2::<f32>::new(py, [n, h], false) },
        };
        if n == 0 {
            return Ok(out);
        }
        {
            let mut rw = out.try_readwrite().map_err(|e| out_borrow_error(&e))?;
            let codes = rw.as_slice_mut()?;
            let len = model::encode_scratch_len(&v, encode_block_rows(n, d));
            py.detach(|| with_scratch(len, |s| model::encode(&v, xs, n, codes, s)))
                .map_err(py_err)?;
        }
        Ok(out)
    }

    /// Sparse codes of a batch in CSR form: ``(indptr, indices, values)`` (int64,
    /// int32, float32), row ``i``'s features being ``indices[indptr[i]:indptr[i+1]]``
    /// (ascending) with codes ``values[...]``; only codes > 0 are kept. With ``k``,
    /// only the ``k`` largest codes of each row (ties: the lower feature).
    /// ``scipy.sparse.csr_matrix((values, indices, indptr), shape=(n, d_sae))`` takes
    /// them as they are. Memory while encoding is bounded by a block of rows.
    #[pyo3(signature = (x, k = None))]
    fn encode_sparse<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        k: Option<usize>,
    ) -> PyResult<Csr<'py>> {
        let v = self.view();
        let x = f32_2d(x, "x")?;
        let (n, d, h) = (x.shape()[0], v.d_in(), v.d_sae());
        self.check_width(x.shape()[1], d, "x", "d_in")?;
        if k == Some(0) {
            return Err(value_error(
                "`k` must be at least 1 (or None for every active feature)",
            ));
        }
        if i32::try_from(h).is_err() {
            return Err(value_error("d_sae does not fit int32 indices"));
        }
        let xs = x.as_slice()?;
        let (mut indptr, mut indices, mut values) = (
            Vec::<i64>::with_capacity(n + 1),
            Vec::<i32>::new(),
            Vec::<f32>::new(),
        );
        indptr.push(0);
        if n > 0 {
            let len = model::csr_scratch_len(&v, block_rows(n));
            py.detach(|| {
                with_scratch(len, |s| match k {
                    // Every active feature: the size is not known in advance, so the
                    // arrays grow as the row blocks are gathered.
                    None => model::encode_blocks(&v, xs, n, s, |_, block| {
                        for row in block.chunks_exact(h) {
                            for (j, &c) in row.iter().enumerate() {
                                if c.is_nan() {
                                    return Err(Error::NonFinite { arg: "x" });
                                }
                                if c > 0.0 {
                                    indices.push(j as i32);
                                    values.push(c);
                                }
                            }
                            indptr.push(indices.len() as i64);
                        }
                        Ok(())
                    }),
                    // Top k per row: at most n·k entries, the core's CSR encoder.
                    Some(k) => {
                        let cap = n.saturating_mul(k);
                        let mut rp = vec![0usize; n + 1];
                        let mut ix = vec![0u32; cap];
                        let mut vs = vec![0f32; cap];
                        let nnz = model::encode_csr(&v, xs, n, k, &mut rp, &mut ix, &mut vs, s)?;
                        indptr.clear();
                        indptr.extend(rp.iter().map(|&p| p as i64));
                        indices.extend(ix[..nnz].iter().map(|&j| j as i32));
                        values.extend_from_slice(&vs[..nnz]);
                        Ok(())
                    }
                })
            })
            .map_err(py_err)?;
        }
        Ok((
            PyArray1::from_vec(py, indptr),
            PyArray1::from_vec(py, indices),
            PyArray1::from_vec(py, values),
        ))
    }

    /// Reconstruction from dense codes: float32 (n, d_sae), C-contiguous → float32
    /// (n, d_in). A ``scipy.sparse`` CSR matrix (anything with ``indptr``,
    /// ``indices`` and ``data``) is decoded as by :meth:`decode_sparse`.
    fn decode<'py>(
        &self,
        py: Python<'py>,
        codes: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        if codes.hasattr("indptr")? && codes.hasattr("indices")? && codes.hasattr("data")? {
            if let Ok(shape) = codes.getattr("shape")?.extract::<(usize, usize)>() {
                self.check_width(shape.1, self.view().d_sae(), "codes", "d_sae")?;
            }
            return self.decode_sparse(
                py,
                &codes.getattr("indptr")?,
                &codes.getattr("indices")?,
                &codes.getattr("data")?,
            );
        }
        let v = self.view();
        let c = f32_2d(codes, "codes")?;
        let (n, d, h) = (c.shape()[0], v.d_in(), v.d_sae());
        self.check_width(c.shape()[1], h, "codes", "d_sae")?;
        let out = PyArray2::<f32>::zeros(py, [n, d], false);
        if n == 0 {
            return Ok(out);
        }
        let cs = c.as_slice()?;
        {
            let mut rw = out.readwrite();
            let recon = rw.as_slice_mut()?;
            let len = model::decode_scratch_len(&v, block_rows(n));
            py.detach(|| with_scratch(len, |s| model::decode(&v, cs, n, recon, s)))
                .map_err(py_err)?;
        }
        Ok(out)
    }

    /// Reconstruction from CSR arrays (as returned by :meth:`encode_sparse`):
    /// ``indptr`` (n + 1,) and ``indices`` (nnz,) of any integer dtype, ``values``
    /// float32 (nnz,) → float32 (n, d_in), row ``i`` being
    /// ``b_dec + Σ values[e]·W_dec[indices[e]]``.
    fn decode_sparse<'py>(
        &self,
        py: Python<'py>,
        indptr: &Bound<'py, PyAny>,
        indices: &Bound<'py, PyAny>,
        values: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let rp: Vec<usize> = int_1d(indptr, "indptr")?;
        let ix: Vec<u32> = int_1d(indices, "indices")?;
        let vs = f32_1d(values, "values")?;
        self.decode_csr_impl(py, rp, ix, vs)
    }
}

/// Sparse autoencoder kernels (Rust) for numpy.
/// Allow (``True``, the default) or forbid the encoder's bf16 screen for the
/// whole process. Where the CPU has fast AVX512_BF16 and ``d_in >= 128``, ``encode``
/// computes the pre-activations in bf16, bounds their error, and recomputes exactly in
/// float32 only the features that could be non-zero: TopK when ``d_sae >= 80·k``;
/// standard and JumpReLU when ``d_sae >= 2048`` and a probe of the first rows finds few
/// pre-activations near or above their thresholds (trained SAEs). The codes are the
/// same bits either way, so this switch is for timing comparisons.
#[pyfunction]
fn set_bf16_screen(on: bool) {
    model::set_bf16_screen(on);
}

/// Whether the encoder's bf16 screen is allowed (see ``set_bf16_screen``).
#[pyfunction]
fn bf16_screen() -> bool {
    model::bf16_screen()
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Sae>()?;
    m.add_function(wrap_pyfunction!(set_bf16_screen, m)?)?;
    m.add_function(wrap_pyfunction!(bf16_screen, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
