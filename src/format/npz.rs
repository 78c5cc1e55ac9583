//! Sparse codes as a SciPy CSR `.npz` file (the layout `scipy.sparse.save_npz` writes
//! for a `csr_matrix`), readable from Python with NumPy alone:
//!
//! ```python
//! import numpy as np, scipy.sparse
//! z = np.load("codes.npz")
//! codes = scipy.sparse.csr_matrix((z["data"], z["indices"], z["indptr"]), shape=z["shape"])
//! # or: codes = scipy.sparse.load_npz("codes.npz")
//! ```
//!
//! | entry | dtype | shape | meaning |
//! |---|---|---|---|
//! | `indptr` | int64 | `rows + 1` | row `r`'s entries are `indptr[r]..indptr[r+1]` of `indices`/`data` |
//! | `indices` | int32 | `nnz` | the column (feature) of each entry, increasing within a row |
//! | `data` | float32 | `nnz` | the value of each entry |
//! | `shape` | int64 | `2` | `[rows, cols]` |
//! | `format` | `S3` | scalar | `b"csr"` (what `scipy.sparse.load_npz` looks for) |
//!
//! Entries are stored uncompressed (as `numpy.savez` does), through the `zip` and
//! `npyz` crates.

use crate::error::{Error, Result};
use crate::format::alloc::{try_with_capacity, try_zeroed_f32};
use crate::owned::trainer::io_err;
use npyz::{DType, NpyFile, TypeChar, WriterBuilder};
use std::io::{Read, Write};
use std::path::Path;
use std::vec::Vec;

/// A sparse `rows×cols` matrix of `f32` in compressed sparse row (CSR) layout, with
/// SciPy's array names and dtypes (see the [module docs](self)).
///
/// ```
/// use sae_kernels::format::npz::CsrCodes;
/// let mut c = CsrCodes::new(4)?;
/// c.push_rows(&[0.0, 1.5, 0.0, 2.0, /* next row */ 0.0, 0.0, 0.0, 0.0])?;
/// assert_eq!((c.rows(), c.nnz()), (2, 2));
/// assert_eq!(c.indptr, [0, 2, 2]);
/// assert_eq!(c.indices, [1, 3]);
/// assert_eq!(c.data, [1.5, 2.0]);
/// assert_eq!(c.to_dense()?, [0.0, 1.5, 0.0, 2.0, 0.0, 0.0, 0.0, 0.0]);
/// # Ok::<(), sae_kernels::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct CsrCodes {
    /// Row pointers, `rows + 1` entries starting at 0 and never decreasing; the last
    /// is `nnz`.
    pub indptr: Vec<i64>,
    /// Column of each stored entry (`0..cols`), `nnz` entries.
    pub indices: Vec<i32>,
    /// Value of each stored entry, `nnz` entries.
    pub data: Vec<f32>,
    /// Number of columns (features).
    pub cols: usize,
}

fn bad(what: &'static str) -> Error {
    Error::File { arg: "path", what }
}

impl CsrCodes {
    /// An empty matrix (0 rows) with `cols` columns.
    ///
    /// # Errors
    /// [`Error::Dimension`] naming `cols` if it is 0; [`Error::OutOfRange`] naming
    /// `cols` if it exceeds `i32::MAX` (column indices are int32).
    pub fn new(cols: usize) -> Result<Self> {
        crate::error::check_nonzero("cols", cols)?;
        if i32::try_from(cols).is_err() {
            return Err(Error::OutOfRange {
                arg: "cols",
                allowed: "at most 2^31 - 1 columns (int32 indices)",
            });
        }
        Ok(Self {
            indptr: std::vec![0],
            indices: Vec::new(),
            data: Vec::new(),
            cols,
        })
    }

    /// Number of rows.
    #[must_use]
    pub fn rows(&self) -> usize {
        self.indptr.len().saturating_sub(1)
    }

    /// Number of stored entries.
    #[must_use]
    pub fn nnz(&self) -> usize {
        self.data.len()
    }

    /// Append dense rows (`codes`: `k×cols` row-major, any `k`), keeping every entry
    /// that is not `0.0` (a NaN is kept).
    ///
    /// # Errors
    /// [`Error::Length`] naming `codes` if its length is not a multiple of `cols`;
    /// [`Error::Alloc`] naming `indices` or `data` if the entries do not fit in
    /// memory (nothing is appended then).
    pub fn push_rows(&mut self, codes: &[f32]) -> Result<()> {
        if !codes.len().is_multiple_of(self.cols) {
            return Err(Error::Length {
                arg: "codes",
                expected: codes.len() / self.cols * self.cols,
                got: codes.len(),
            });
        }
        let nnz = codes.iter().filter(|&&v| v != 0.0).count();
        let rows = codes.len() / self.cols;
        let alloc = |arg, bytes| Error::Alloc { arg, bytes };
        self.indices
            .try_reserve(nnz)
            .map_err(|_| alloc("indices", nnz.saturating_mul(4)))?;
        self.data
            .try_reserve(nnz)
            .map_err(|_| alloc("data", nnz.saturating_mul(4)))?;
        self.indptr
            .try_reserve(rows)
            .map_err(|_| alloc("indptr", rows.saturating_mul(8)))?;
        for row in codes.chunks_exact(self.cols) {
            for (j, &v) in row.iter().enumerate() {
                if v != 0.0 {
                    // `new` checked cols ≤ i32::MAX.
                    self.indices.push(j as i32);
                    self.data.push(v);
                }
            }
            self.indptr.push(self.data.len() as i64);
        }
        Ok(())
    }

    /// The dense `rows×cols` row-major matrix.
    ///
    /// # Errors
    /// [`Error::Overflow`] or [`Error::Alloc`] naming `dense` if it is too large; as
    /// [`CsrCodes::validate`].
    pub fn to_dense(&self) -> Result<Vec<f32>> {
        self.validate()?;
        let len = crate::error::mul("dense", self.rows(), self.cols)?;
        let mut out = try_zeroed_f32(len, "dense")?;
        for (r, w) in self.indptr.windows(2).enumerate() {
            // `validate` checked 0 ≤ indptr[r] ≤ indptr[r+1] ≤ nnz and 0 ≤ index < cols.
            for k in w[0] as usize..w[1] as usize {
                out[r * self.cols + self.indices[k] as usize] = self.data[k];
            }
        }
        Ok(out)
    }

    /// Check the CSR invariants.
    ///
    /// # Errors
    /// [`Error::Length`] naming `indices` if its length differs from `data`'s;
    /// [`Error::OutOfRange`] naming `indptr` unless it starts at 0, never decreases
    /// and ends at `nnz`, or naming `indices` unless every index is in `0..cols` and
    /// increasing within its row; as [`CsrCodes::new`] for `cols`.
    pub fn validate(&self) -> Result<()> {
        Self::new(self.cols)?;
        crate::error::check_len("indices", self.indices.len(), self.data.len())?;
        let bad_ptr = Error::OutOfRange {
            arg: "indptr",
            allowed: "starts at 0, never decreases, ends at nnz",
        };
        // The whole of `indptr` first: non-decreasing from 0 to nnz puts every offset in
        // `0..=nnz`, so the row slices below are in bounds (checking window by window
        // while slicing would index with an offset above nnz before a later decrease
        // is seen).
        if self.indptr.first() != Some(&0)
            || self.indptr.last() != Some(&(self.nnz() as i64))
            || self.indptr.windows(2).any(|w| w[1] < w[0])
        {
            return Err(bad_ptr);
        }
        for w in self.indptr.windows(2) {
            let row = &self.indices[w[0] as usize..w[1] as usize];
            let in_range = row.iter().all(|&j| j >= 0 && (j as usize) < self.cols);
            if !in_range || row.windows(2).any(|p| p[1] <= p[0]) {
                return Err(Error::OutOfRange {
                    arg: "indices",
                    allowed: "in 0..cols, increasing within each row",
                });
            }
        }
        Ok(())
    }

    /// Write the matrix as a SciPy CSR `.npz` (see the [module docs](self)).
    ///
    /// # Errors
    /// As [`CsrCodes::validate`]; [`Error::File`] naming `path` if the file cannot be
    /// written.
    pub fn write_npz(&self, path: &Path) -> Result<()> {
        use zip::write::SimpleFileOptions;
        self.validate()?;
        let file = std::fs::File::create(path).map_err(|e| io_err("path", &e))?;
        let mut zip = zip::ZipWriter::new(std::io::BufWriter::new(file));
        let zip_err = |_| bad("cannot write the .npz (zip) file");
        let entry = |zip: &mut zip::ZipWriter<_>, name: &str, bytes: u64| {
            let options = SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Stored)
                // Zip64 entries for anything near 4 GiB (header included).
                .large_file(bytes >= u64::from(u32::MAX) - 4096);
            zip.start_file(name, options).map_err(zip_err)
        };
        let w = |e: std::io::Error| io_err("path", &e);
        let (rows, nnz) = (self.rows() as u64, self.nnz() as u64);

        entry(&mut zip, "indptr.npy", (rows + 1) * 8)?;
        let mut a = npyz::WriteOptions::<i64>::new()
            .default_dtype()
            .shape(&[rows + 1])
            .writer(&mut zip)
            .begin_nd()
            .map_err(w)?;
        a.extend(self.indptr.iter().copied()).map_err(w)?;
        a.finish().map_err(w)?;

        entry(&mut zip, "indices.npy", nnz * 4)?;
        let mut a = npyz::WriteOptions::<i32>::new()
            .default_dtype()
            .shape(&[nnz])
            .writer(&mut zip)
            .begin_nd()
            .map_err(w)?;
        a.extend(self.indices.iter().copied()).map_err(w)?;
        a.finish().map_err(w)?;

        entry(&mut zip, "data.npy", nnz * 4)?;
        let mut a = npyz::WriteOptions::<f32>::new()
            .default_dtype()
            .shape(&[nnz])
            .writer(&mut zip)
            .begin_nd()
            .map_err(w)?;
        a.extend(self.data.iter().copied()).map_err(w)?;
        a.finish().map_err(w)?;

        entry(&mut zip, "shape.npy", 16)?;
        let mut a = npyz::WriteOptions::<i64>::new()
            .default_dtype()
            .shape(&[2])
            .writer(&mut zip)
            .begin_nd()
            .map_err(w)?;
        a.extend([rows as i64, self.cols as i64]).map_err(w)?;
        a.finish().map_err(w)?;

        entry(&mut zip, "format.npy", 3)?;
        let s3: DType = DType::Plain("|S3".parse().map_err(|_| bad("internal: dtype"))?);
        let mut a = npyz::WriteOptions::<[u8]>::new()
            .dtype(s3)
            .shape(&[])
            .writer(&mut zip)
            .begin_nd()
            .map_err(w)?;
        a.push(b"csr".as_slice()).map_err(w)?;
        a.finish().map_err(w)?;

        let mut out = zip.finish().map_err(zip_err)?;
        out.flush().map_err(w)
    }

    /// Read a SciPy CSR `.npz` with int64 `indptr`, int32 or int64 `indices`, float32
    /// `data`, and int64 (or int32) `shape`, as [`CsrCodes::write_npz`] writes it.
    ///
    /// # Errors
    /// [`Error::File`] naming `path` if the file cannot be read, is not a zip archive,
    /// lacks an entry, has an entry of another dtype or rank, an entry shorter than
    /// its header says or one that fails its CRC-32 check, or if `format` is present
    /// and not `csr`; [`Error::Alloc`] if
    /// it does not fit in memory; as [`CsrCodes::validate`] for the contents.
    pub fn read_npz(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| io_err("path", &e))?;
        let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file))
            .map_err(|_| bad("not a valid .npz (zip) file"))?;
        if zip.index_for_name("format.npy").is_some() {
            let f = read_entry(&mut zip, "format.npy", 0)?;
            if !matches!(f, Ints::Bytes(ref b) if b == b"csr") {
                return Err(bad("`format` is not \"csr\""));
            }
        }
        let shape = read_entry(&mut zip, "shape.npy", 1)?.into_i64("shape")?;
        let indptr = read_entry(&mut zip, "indptr.npy", 1)?.into_i64("indptr")?;
        let indices = match read_entry(&mut zip, "indices.npy", 1)? {
            Ints::I32(v) => v,
            Ints::I64(v) => {
                let mut out = try_with_capacity(v.len(), "indices")?;
                for x in v {
                    out.push(i32::try_from(x).map_err(|_| bad("`indices` exceed int32"))?);
                }
                out
            }
            _ => return Err(bad("`indices` must be int32 or int64")),
        };
        let Ints::F32(data) = read_entry(&mut zip, "data.npy", 1)? else {
            return Err(bad("`data` must be float32"));
        };
        let [rows, cols] = shape[..] else {
            return Err(bad("`shape` must hold 2 values"));
        };
        let cols = usize::try_from(cols).map_err(|_| bad("`shape` is negative"))?;
        let c = Self {
            indptr,
            indices,
            data,
            cols,
        };
        if i64::try_from(c.rows()) != Ok(rows) {
            return Err(bad("`indptr` length does not match `shape`"));
        }
        c.validate()?;
        Ok(c)
    }
}

/// One entry's values, by dtype.
enum Ints {
    I32(Vec<i32>),
    I64(Vec<i64>),
    F32(Vec<f32>),
    Bytes(Vec<u8>),
}

impl Ints {
    fn into_i64(self, name: &'static str) -> Result<Vec<i64>> {
        match self {
            Ints::I64(v) => Ok(v),
            Ints::I32(v) => {
                let mut out = try_with_capacity(v.len(), name)?;
                out.extend(v.into_iter().map(i64::from));
                Ok(out)
            }
            _ => Err(bad("an index array is not int32 or int64")),
        }
    }
}

/// Read `name` from the archive: a `rank`-D array (rank 1: a vector; rank 0: a
/// byte-string scalar) of int32, int64, float32 or `S*`, little-endian, C order.
fn read_entry<R: Read + std::io::Seek>(
    zip: &mut zip::ZipArchive<R>,
    name: &'static str,
    rank: usize,
) -> Result<Ints> {
    let mut entry = zip.by_name(name).map_err(|e| match e {
        zip::result::ZipError::FileNotFound => {
            bad("an entry (indptr, indices, data or shape) is missing")
        }
        _ => bad(
            "an entry cannot be read (only uncompressed entries are supported, as \
             numpy.savez and scipy.sparse.save_npz(compressed=False) write them)",
        ),
    })?;
    let size = entry.size();
    // Check the header length field before npyz allocates the header text.
    let mut head = [0u8; 12];
    entry
        .read_exact(&mut head)
        .map_err(|_| bad("an entry is not a valid .npy"))?;
    let header = match head[6] {
        1 => 10 + u64::from(u16::from_le_bytes([head[8], head[9]])),
        2 | 3 => 12 + u64::from(u32::from_le_bytes([head[8], head[9], head[10], head[11]])),
        _ => return Err(bad("an entry is not a valid .npy")),
    };
    if &head[..6] != b"\x93NUMPY" || header > size || header > 1 << 16 {
        return Err(bad("an entry is not a valid .npy"));
    }
    let npy = NpyFile::new(std::io::Cursor::new(head).chain(&mut entry))
        .map_err(|_| bad("an entry is not a valid .npy"))?;
    if npy.shape().len() != rank || npy.order() == npyz::Order::Fortran {
        return Err(bad("an entry has the wrong rank or order"));
    }
    let n = npy.shape().iter().product::<u64>();
    let DType::Plain(t) = npy.dtype() else {
        return Err(bad("an entry has an unsupported dtype"));
    };
    let width = t.size_field();
    if n.checked_mul(width).is_none_or(|b| b > size - header) {
        return Err(bad("an entry is shorter than its header says"));
    }
    let n = usize::try_from(n).map_err(|_| Error::Overflow { arg: name })?;
    fn collect<T: npyz::Deserialize, R: Read>(
        npy: NpyFile<R>,
        n: usize,
        name: &'static str,
    ) -> Result<Vec<T>> {
        let mut out = try_with_capacity(n, name)?;
        for v in npy
            .data::<T>()
            .map_err(|_| bad("an entry has an unsupported dtype"))?
        {
            out.push(v.map_err(|_| bad("an entry is truncated or malformed"))?);
        }
        Ok(out)
    }
    let ints = match (t.type_char(), width) {
        (TypeChar::Int, 4) => Ints::I32(collect(npy, n, name)?),
        (TypeChar::Int, 8) => Ints::I64(collect(npy, n, name)?),
        (TypeChar::Float, 4) => Ints::F32(collect(npy, n, name)?),
        (TypeChar::ByteStr, _) if rank == 0 => {
            let mut it = npy
                .data::<Vec<u8>>()
                .map_err(|_| bad("an entry has an unsupported dtype"))?;
            let v = it.next().ok_or_else(|| bad("an entry is empty"))?;
            Ints::Bytes(v.map_err(|_| bad("an entry is truncated or malformed"))?)
        }
        _ => return Err(bad("an entry has an unsupported dtype")),
    };
    // Read the entry to its end: the zip reader checks the entry's CRC-32 only there,
    // so a corrupted array is an error rather than wrong codes. (Memory stays bounded:
    // the rest goes to a sink.)
    std::io::copy(&mut entry, &mut std::io::sink())
        .map_err(|_| bad("an entry fails its CRC-32 check (the file is corrupted)"))?;
    Ok(ints)
}
