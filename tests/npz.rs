//! The sparse-codes `.npz` (SciPy CSR layout): written by `CsrCodes::write_npz`, read
//! back both by the library's reader and, independently, entry by entry with the `zip`
//! and `npyz` crates as NumPy would see them (names, dtypes, shapes, values).

use npyz::{DType, NpyFile, TypeChar};
use sae_kernels::Error;
use sae_kernels::format::npz::CsrCodes;
use std::io::Read;
use std::path::PathBuf;

fn tmp(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name)
}

/// A `rows×cols` matrix with about one entry in five non-zero, some rows empty, and
/// negative values and a NaN among the entries.
fn dense(rows: usize, cols: usize) -> Vec<f32> {
    (0..rows * cols)
        .map(|i| {
            let (r, c) = (i / cols, i % cols);
            if r % 4 == 3 || (i * 7919) % 5 != 0 {
                0.0
            } else if i == 25 {
                f32::NAN
            } else {
                (c as f32 - 3.5) * 0.25 + r as f32
            }
        })
        .collect()
}

/// `(dtype descr, shape, raw values as f64)` of one entry, read with zip + npyz.
fn entry(path: &PathBuf, name: &str) -> (String, Vec<u64>, Vec<f64>) {
    let mut zip = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    let mut f = zip.by_name(&format!("{name}.npy")).unwrap();
    assert_eq!(f.compression(), zip::CompressionMethod::Stored, "{name}");
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes).unwrap();
    let npy = NpyFile::new(&bytes[..]).unwrap();
    let shape = npy.shape().to_vec();
    let DType::Plain(t) = npy.dtype() else {
        panic!("{name}: not a plain dtype")
    };
    let descr = t.to_string();
    let values = match (t.type_char(), t.size_field()) {
        (TypeChar::Int, 8) => npy
            .into_vec::<i64>()
            .unwrap()
            .into_iter()
            .map(|v| v as f64)
            .collect(),
        (TypeChar::Int, 4) => npy
            .into_vec::<i32>()
            .unwrap()
            .into_iter()
            .map(f64::from)
            .collect(),
        (TypeChar::Float, 4) => npy
            .into_vec::<f32>()
            .unwrap()
            .into_iter()
            .map(f64::from)
            .collect(),
        (TypeChar::ByteStr, _) => npy
            .into_vec::<Vec<u8>>()
            .unwrap()
            .concat()
            .into_iter()
            .map(f64::from)
            .collect(),
        other => panic!("{name}: unexpected dtype {other:?}"),
    };
    (descr, shape, values)
}

#[test]
fn csr_npz_reads_back_with_scipy_layout() {
    let (rows, cols) = (13, 11);
    let x = dense(rows, cols);
    let mut c = CsrCodes::new(cols).unwrap();
    // In two chunks, as the encode example writes it.
    c.push_rows(&x[..5 * cols]).unwrap();
    c.push_rows(&x[5 * cols..]).unwrap();
    let path = tmp("codes_roundtrip.npz");
    c.write_npz(&path).unwrap();

    // Entry by entry, as NumPy sees the file.
    let (t, s, indptr) = entry(&path, "indptr");
    assert_eq!((t.as_str(), s), ("<i8", vec![rows as u64 + 1]));
    let (t, s, indices) = entry(&path, "indices");
    let nnz = indices.len();
    assert_eq!((t.as_str(), s), ("<i4", vec![nnz as u64]));
    let (t, s, data) = entry(&path, "data");
    assert_eq!((t.as_str(), s), ("<f4", vec![nnz as u64]));
    let (t, s, shape) = entry(&path, "shape");
    assert_eq!((t.as_str(), s, shape), ("<i8", vec![2], vec![13.0, 11.0]));
    let (t, s, format) = entry(&path, "format");
    assert_eq!((t.as_str(), s), ("|S3", vec![]));
    assert_eq!(format, b"csr".map(f64::from));

    // Rebuild the dense matrix from the raw arrays (scipy's CSR definition) and compare
    // bit for bit with the input, NaN included.
    let mut rebuilt = vec![0.0f32; rows * cols];
    assert_eq!(indptr[0], 0.0);
    assert_eq!(indptr[rows] as usize, nnz);
    for r in 0..rows {
        let (a, b) = (indptr[r] as usize, indptr[r + 1] as usize);
        for k in a..b {
            rebuilt[r * cols + indices[k] as usize] = data[k] as f32;
        }
    }
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&rebuilt), bits(&x));
    assert_eq!(nnz, x.iter().filter(|&&v| v != 0.0).count());
    assert!(nnz > 10 && nnz < rows * cols / 2, "nnz {nnz}");
    assert!(data.iter().any(|v| v.is_nan()), "the NaN entry is stored");
    assert!(
        indptr.windows(2).any(|w| w[0] == w[1]),
        "some rows are empty"
    );

    // The library's reader gives back the same matrix.
    let back = CsrCodes::read_npz(&path).unwrap();
    assert_eq!(back.indptr, c.indptr);
    assert_eq!(back.indices, c.indices);
    assert_eq!(bits(&back.data), bits(&c.data));
    assert_eq!(bits(&back.to_dense().unwrap()), bits(&x));
}

#[test]
fn all_zero_codes_give_an_empty_but_valid_matrix() {
    let mut c = CsrCodes::new(4).unwrap();
    c.push_rows(&[0.0; 12]).unwrap();
    let path = tmp("codes_all_zero.npz");
    c.write_npz(&path).unwrap();
    let (_, s, indptr) = entry(&path, "indptr");
    assert_eq!((s, indptr), (vec![4], vec![0.0; 4]));
    let (_, s, _) = entry(&path, "data");
    assert_eq!(s, vec![0]);
    let back = CsrCodes::read_npz(&path).unwrap();
    assert_eq!((back.rows(), back.nnz(), back.cols), (3, 0, 4));
    assert_eq!(back.to_dense().unwrap(), vec![0.0; 12]);
}

#[test]
fn bad_matrices_and_files_are_errors() {
    assert!(matches!(
        CsrCodes::new(0),
        Err(Error::Dimension { arg: "cols", .. })
    ));
    let mut c = CsrCodes::new(3).unwrap();
    assert!(matches!(
        c.push_rows(&[1.0; 4]),
        Err(Error::Length { arg: "codes", .. })
    ));
    assert_eq!(c.rows(), 0, "a rejected push appends nothing");
    c.push_rows(&[1.0, 0.0, 2.0]).unwrap();

    // Broken invariants are refused before anything is written.
    let path = tmp("codes_bad.npz");
    let mut b = c.clone();
    b.indices[1] = 3;
    assert!(matches!(
        b.write_npz(&path),
        Err(Error::OutOfRange { arg: "indices", .. })
    ));
    let mut b = c.clone();
    b.indptr[1] = 1;
    assert!(matches!(
        b.write_npz(&path),
        Err(Error::OutOfRange { arg: "indptr", .. })
    ));

    // A zip without the CSR entries.
    {
        use std::io::Write;
        let mut z = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
        z.start_file("data.npy", zip::write::SimpleFileOptions::default())
            .unwrap();
        z.write_all(b"not an array").unwrap();
        z.finish().unwrap();
    }
    let e = CsrCodes::read_npz(&path).unwrap_err();
    assert!(e.to_string().contains("is missing"), "{e}");

    // Not a zip; a missing file.
    std::fs::write(&path, b"not a zip archive at all").unwrap();
    assert!(matches!(
        CsrCodes::read_npz(&path),
        Err(Error::File { arg: "path", .. })
    ));
    assert!(matches!(
        CsrCodes::read_npz(&tmp("codes_no_such_file.npz")),
        Err(Error::File { arg: "path", .. })
    ));
}

/// An `indptr` whose middle offset lies beyond `nnz` (then falls back to it) is an
/// error, not an out-of-bounds slice: `validate` used to check `indptr` window by window
/// while slicing `indices` with it (found by the `formats` fuzz target through
/// `read_npz`; reproducer in fuzz/regressions/formats/npz_indptr_offset_above_nnz).
/// The well-formed file below takes the reproducer's place here: it is not part of the
/// package, and its `indptr.npy` fails its CRC-32 check first.
#[test]
fn indptr_offset_beyond_nnz_is_an_error() {
    let c = CsrCodes {
        indptr: vec![0, 1025, 3],
        indices: vec![0, 1, 2],
        data: vec![1.0; 3],
        cols: 4,
    };
    assert!(matches!(
        c.validate(),
        Err(Error::OutOfRange { arg: "indptr", .. })
    ));
    let path = tmp("codes_indptr_beyond_nnz.npz");
    assert!(matches!(
        c.write_npz(&path),
        Err(Error::OutOfRange { arg: "indptr", .. })
    ));
    // The same arrays in a well-formed file reach `validate` through `read_npz`.
    write_raw_npz(&path, &c.indptr, &c.indices, &c.data, [2, 4]);
    assert!(matches!(
        CsrCodes::read_npz(&path),
        Err(Error::OutOfRange { arg: "indptr", .. })
    ));
    // (The fuzzer's file, replayed by the fuzz stage, also fails its CRC-32 check,
    // which `read_npz` now finds first.)
}

/// An uncompressed `.npz` with the four CSR arrays as given, written with the `zip` and
/// `npyz` crates directly (so that it may break the CSR invariants).
fn write_raw_npz(path: &PathBuf, indptr: &[i64], indices: &[i32], data: &[f32], shape: [i64; 2]) {
    use npyz::WriterBuilder;
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    macro_rules! put {
        ($name:expr, $t:ty, $v:expr) => {{
            zip.start_file($name, opts).unwrap();
            let v: &[$t] = $v;
            let mut a = npyz::WriteOptions::<$t>::new()
                .default_dtype()
                .shape(&[v.len() as u64])
                .writer(&mut zip)
                .begin_nd()
                .unwrap();
            a.extend(v.iter().copied()).unwrap();
            a.finish().unwrap();
        }};
    }
    put!("indptr.npy", i64, indptr);
    put!("indices.npy", i32, indices);
    put!("data.npy", f32, data);
    put!("shape.npy", i64, &shape);
    zip.finish().unwrap();
}

/// A file whose array bytes were changed after writing (its entries' CRC-32 no longer
/// match) is an error, not silently different codes: the zip reader checks an entry's
/// CRC only at its end, so `read_npz` reads every entry to the end.
#[test]
fn corrupted_entry_fails_its_checksum() {
    let mut c = CsrCodes::new(4).unwrap();
    c.push_rows(&[0.0, 12345.678, 0.0, 2.0]).unwrap();
    let path = tmp("codes_crc.npz");
    c.write_npz(&path).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(CsrCodes::read_npz(&path).is_ok());
    // Change one code inside `data.npy` (stored uncompressed) to another valid float.
    let pat = 12345.678f32.to_le_bytes();
    let at = bytes
        .windows(4)
        .position(|w| w == pat)
        .expect("the code's bytes are in the file");
    bytes[at..at + 4].copy_from_slice(&54321.0f32.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let e = CsrCodes::read_npz(&path).unwrap_err();
    assert!(
        matches!(e, Error::File { arg: "path", .. }) && e.to_string().contains("CRC-32"),
        "{e}"
    );
}
