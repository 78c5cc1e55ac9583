//! `.npy` activation arrays: a 2-D `rows×d` array of `f32` or `f16` (either byte
//! order, C or Fortran order), read into row-major `f32` (f16 converted on load).
//!
//! Parsing is done by the `npyz` crate; the element count from the header is checked
//! against the file's length before anything is allocated.

use crate::error::{Error, Result};
use crate::format::alloc::{try_with_capacity, try_zeroed_f32};
use crate::owned::trainer::io_err;
use npyz::{DType, NpyFile, Order, TypeChar, WriterBuilder};
use std::path::Path;
use std::vec::Vec;

/// A loaded activation array: `rows×d`, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Activations {
    /// The values, `rows·d`.
    pub data: Vec<f32>,
    /// Number of rows (samples).
    pub rows: usize,
    /// Row width.
    pub d: usize,
}

impl Activations {
    /// The first NaN or infinite value in row-major order, as `(row, column)`
    /// (0-based), or `None` if every value is finite.
    ///
    /// ```
    /// use sae_kernels::format::npy::Activations;
    /// let a = Activations { data: vec![0.0, 1.0, 2.0, f32::NAN, 4.0, f32::INFINITY], rows: 3, d: 2 };
    /// assert_eq!(a.first_non_finite(), Some((1, 1)));
    /// ```
    #[must_use]
    pub fn first_non_finite(&self) -> Option<(usize, usize)> {
        let i = self.data.iter().position(|v| !v.is_finite())?;
        let d = self.d.max(1);
        Some((i / d, i % d))
    }

    /// `Ok(())` if every value is finite.
    ///
    /// # Errors
    /// [`Error::NonFiniteInput`] naming `arg` with the row and column of the first NaN
    /// or infinity (callers add the file's path when they report it).
    pub fn check_finite(&self, arg: &'static str) -> Result<()> {
        match self.first_non_finite() {
            None => Ok(()),
            Some((row, col)) => Err(Error::NonFiniteInput { arg, row, col }),
        }
    }
}

fn bad(what: &'static str) -> Error {
    Error::File { arg: "input", what }
}

/// Read a 2-D `f32` or `f16` `.npy` file.
///
/// # Errors
/// [`Error::File`] naming `input` if the file cannot be opened or read, is not a
/// valid `.npy`, is not 2-D with non-zero sizes, has a dtype other than `f32`/`f16`,
/// or is shorter than its header says; [`Error::Alloc`] naming `input` if the array
/// does not fit in memory. NaN and infinities are read as they are: see
/// [`Activations::check_finite`].
pub fn read_npy(path: &Path) -> Result<Activations> {
    let file = std::fs::File::open(path).map_err(|e| io_err("input", &e))?;
    let file_len = file.metadata().map_err(|e| io_err("input", &e))?.len();
    let mut reader = std::io::BufReader::new(file);
    // The header length is read from the file itself: check it against the file's
    // length before npyz allocates a buffer of that size for the header text.
    let header = header_len(&mut reader)?;
    if header > file_len {
        return Err(bad("file is shorter than its header length field says"));
    }
    check_header_text(path, header)?;
    let data_len = file_len - header;
    let npy = NpyFile::new(reader).map_err(|_| bad("not a valid .npy file (bad header)"))?;
    let shape = npy.shape().to_vec();
    if shape.len() != 2 {
        return Err(bad("array must be 2-D (rows × d)"));
    }
    let (rows, d) = (shape[0], shape[1]);
    if rows == 0 || d == 0 {
        return Err(bad("array has a zero dimension"));
    }
    let width = match npy.dtype() {
        DType::Plain(t) if t.type_char() == TypeChar::Float && t.size_field() == 4 => 4u64,
        DType::Plain(t) if t.type_char() == TypeChar::Float && t.size_field() == 2 => 2u64,
        _ => return Err(bad("dtype must be float32 or float16")),
    };
    let n = rows
        .checked_mul(d)
        .filter(|&n| n.checked_mul(width).is_some_and(|b| b <= data_len))
        .ok_or_else(|| bad("file is shorter than its header's shape"))?;
    let (rows, d) = (
        usize::try_from(rows).map_err(|_| Error::Overflow { arg: "input" })?,
        usize::try_from(d).map_err(|_| Error::Overflow { arg: "input" })?,
    );
    let n = usize::try_from(n).map_err(|_| Error::Overflow { arg: "input" })?;
    let order = npy.order();
    // Read straight into one fallibly allocated f32 buffer (f16 converted on the
    // way), so an array too large for memory is an error, not an abort.
    let truncated = |_| bad("file is truncated or malformed");
    let mut flat = try_with_capacity::<f32>(n, "input")?;
    if width == 4 {
        for v in npy
            .data::<f32>()
            .map_err(|_| bad("dtype must be float32 or float16"))?
        {
            flat.push(v.map_err(truncated)?);
        }
    } else {
        for v in npy
            .data::<half::f16>()
            .map_err(|_| bad("dtype must be float32 or float16"))?
        {
            flat.push(v.map_err(truncated)?.to_f32());
        }
    }
    if flat.len() != n {
        return Err(bad("file is truncated or malformed"));
    }
    let data = if order == Order::Fortran {
        // Column-major: element (r, c) is at c·rows + r.
        let mut t = try_zeroed_f32(n, "input")?;
        for c in 0..d {
            for r in 0..rows {
                t[r * d + c] = flat[c * rows + r];
            }
        }
        t
    } else {
        flat
    };
    Ok(Activations { data, rows, d })
}

/// The largest header accepted. Real headers of a 2-D float array are under 200 bytes;
/// the format pads them to a multiple of 64.
const MAX_HEADER: u64 = 1 << 16;

/// Reject headers `npyz` should never see: oversized ones, and any whose dictionary
/// is not the flat form a plain 2-D float array has (one `{`, one `(` for the shape, no
/// `[`). Deeply nested brackets made the header parser run for minutes (fuzz finding).
fn check_header_text(path: &Path, header: u64) -> Result<()> {
    use std::io::Read;
    if header > MAX_HEADER {
        return Err(bad("header is larger than 64 KiB"));
    }
    let mut text = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(header).read_to_end(&mut text))
        .map_err(|e| io_err("input", &e))?;
    let count = |c: u8| text.iter().filter(|&&b| b == c).count();
    if count(b'{') != 1 || count(b'(') > 1 || count(b'[') > 0 {
        return Err(bad("header is not that of a plain float32/float16 array"));
    }
    Ok(())
}

/// The total header length (magic, version, length field and header text) of the
/// `.npy` behind `reader`, which is left at its start.
fn header_len(reader: &mut std::io::BufReader<std::fs::File>) -> Result<u64> {
    use std::io::BufRead;
    let head = reader.fill_buf().map_err(|e| io_err("input", &e))?;
    let mut b = [0u8; 12];
    let n = head.len().min(12);
    b[..n].copy_from_slice(&head[..n]);
    if n < 10 || &b[..6] != b"\x93NUMPY" {
        return Err(bad("not a valid .npy file (bad header)"));
    }
    Ok(match b[6] {
        1 => 10 + u64::from(u16::from_le_bytes([b[8], b[9]])),
        _ if n == 12 => 12 + u64::from(u32::from_le_bytes([b[8], b[9], b[10], b[11]])),
        _ => return Err(bad("not a valid .npy file (bad header)")),
    })
}

/// Write `data` (`rows×d`, row-major) as a little-endian `f32` `.npy` file.
///
/// # Errors
/// [`Error::Length`] naming `data` if its length is not `rows·d`; [`Error::File`]
/// naming `path` if it cannot be written.
pub fn write_npy(path: &Path, data: &[f32], rows: usize, d: usize) -> Result<()> {
    crate::error::check_len("data", data.len(), crate::error::mul("data", rows, d)?)?;
    let file = std::fs::File::create(path).map_err(|e| io_err("path", &e))?;
    let mut w = npyz::WriteOptions::<f32>::new()
        .default_dtype()
        .shape(&[rows as u64, d as u64])
        .writer(std::io::BufWriter::new(file))
        .begin_nd()
        .map_err(|e| io_err("path", &e))?;
    w.extend(data.iter().copied())
        .map_err(|e| io_err("path", &e))?;
    w.finish().map_err(|e| io_err("path", &e))
}
