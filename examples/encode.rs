//! Encode activations with a SAELens SAE:
//!
//! ```text
//! cargo run --release --example encode -- --sae DIR --input x.npy --output codes.npy
//! cargo run --release --example encode -- --sae DIR --input x.npy --output codes.npz --sparse
//! ```
//!
//! - `--sae DIR`: a SAELens folder (`cfg.json` + `sae_weights.safetensors`; standard,
//!   topk or jumprelu; see `sae_kernels::format::saelens` for what is refused).
//! - `--input x.npy`: a 2-D `n×d_in` array of float32 or float16. A NaN or infinity in
//!   it is an error naming the file and the first bad row and column, unless
//!   `--allow-non-finite` is given (then NaN propagates into the codes of its row).
//! - `--output`: dense codes, a float32 `n×d_sae` `.npy`; or with `--sparse`, a SciPy
//!   CSR `.npz` of the non-zero codes (`indptr` int64, `indices` int32, `data`
//!   float32, `shape` int64 `[n, d_sae]`, `format` = `csr`; see
//!   `sae_kernels::format::npz`), loaded in Python with
//!   `scipy.sparse.csr_matrix((z["data"], z["indices"], z["indptr"]), shape=z["shape"])`
//!   where `z = numpy.load("codes.npz")`, or with `scipy.sparse.load_npz`.
//!
//! Prints the number of rows, the time spent encoding and rows per second. Any
//! failure (bad path, malformed file, width mismatch, non-finite input, not enough
//! memory) prints one line and exits with status 1; bad arguments exit with status 2.

use clap::Parser;
use sae_kernels::format::npy::{read_npy, write_npy};
use sae_kernels::format::npz::CsrCodes;
use sae_kernels::format::saelens;
use sae_kernels::{
    model::{Activation, encode, encode_scratch_len},
    owned::Sae,
};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

/// How to load the outputs, shown at the end of `--help`.
const AFTER_HELP: &str = "\
Dense output is a float32 n × d_sae .npy. Sparse output (--sparse) is a SciPy CSR .npz:
indptr (int64, n+1), indices (int32, nnz), data (float32, nnz), shape (int64, [n, d_sae])
and format (b\"csr\"). In Python:

    import numpy, scipy.sparse
    z = numpy.load(\"codes.npz\")
    codes = scipy.sparse.csr_matrix((z[\"data\"], z[\"indices\"], z[\"indptr\"]), shape=z[\"shape\"])

or codes = scipy.sparse.load_npz(\"codes.npz\").";

/// Encode an n×d_in .npy of activations with a SAELens SAE.
#[derive(Parser, Debug)]
#[command(after_help = AFTER_HELP)]
struct Args {
    /// SAELens folder with cfg.json and sae_weights.safetensors.
    #[arg(long)]
    sae: PathBuf,
    /// Input activations: 2-D .npy (n × d_in), float32 or float16, all finite (see
    /// --allow-non-finite).
    #[arg(long)]
    input: PathBuf,
    /// Output file: dense n × d_sae float32 .npy, or with --sparse a SciPy CSR .npz.
    #[arg(long)]
    output: PathBuf,
    /// Write only the non-zero codes, as a SciPy CSR .npz: indptr (int64, n+1),
    /// indices (int32, nnz), data (float32, nnz), shape (int64, [n, d_sae]); load with
    /// scipy.sparse.csr_matrix((z["data"], z["indices"], z["indptr"]), shape=z["shape"]).
    #[arg(long)]
    sparse: bool,
    /// Accept NaN or infinite inputs and let them propagate into the codes (by default
    /// the first one is an error naming its row and column).
    #[arg(long)]
    allow_non_finite: bool,
    /// Rows encoded per call (the codes of one chunk are held in memory at a time
    /// when --sparse is given).
    #[arg(long, default_value_t = 4096)]
    chunk: usize,
}

/// The codes: dense `n×h` row-major, or sparse CSR.
enum Codes {
    Dense(Vec<f32>),
    Sparse(CsrCodes),
}

/// A zero-filled buffer, or an error naming it if memory runs out.
fn zeroed(len: usize, what: &str) -> Result<Vec<f32>, String> {
    let mut v = Vec::new();
    v.try_reserve_exact(len)
        .map_err(|_| format!("cannot allocate {len} floats for {what}"))?;
    v.resize(len, 0.0);
    Ok(v)
}

fn encode_all(sae: &Sae, x: &[f32], n: usize, args: &Args) -> Result<Codes, String> {
    let dims = sae.dims();
    let (d, h) = (dims.d, dims.h);
    let chunk = args.chunk.clamp(1, n);
    let mut scratch = zeroed(
        encode_scratch_len(sae.arch(), dims, 256),
        "the scratch space",
    )?;
    let chunk_len = chunk
        .checked_mul(h)
        .ok_or_else(|| format!("--chunk {chunk} × d_sae {h} overflows"))?;
    let mut codes = zeroed(chunk_len, "one chunk of codes; try a smaller --chunk")?;
    let mut out = if args.sparse {
        Codes::Sparse(CsrCodes::new(h).map_err(|e| format!("--sparse: {e}"))?)
    } else {
        let len = n
            .checked_mul(h)
            .ok_or_else(|| format!("{n}×{h} dense codes overflow; try --sparse"))?;
        let mut v = Vec::new();
        v.try_reserve_exact(len)
            .map_err(|_| format!("cannot allocate {n}×{h} dense codes; try --sparse"))?;
        Codes::Dense(v)
    };
    for r0 in (0..n).step_by(chunk) {
        let rows = chunk.min(n - r0);
        let cb = &mut codes[..rows * h];
        encode(
            sae.params(),
            &x[r0 * d..(r0 + rows) * d],
            rows,
            cb,
            &mut scratch,
        )
        .map_err(|e| format!("encode failed: {e}"))?;
        match &mut out {
            Codes::Sparse(c) => c.push_rows(cb).map_err(|e| format!("sparse codes: {e}"))?,
            Codes::Dense(v) => v.extend_from_slice(cb),
        }
    }
    Ok(out)
}

fn run(args: &Args) -> Result<(), String> {
    let (cfg, sae) = saelens::load(&args.sae)
        .map_err(|e| format!("cannot load SAE folder {}: {e}", args.sae.display()))?;
    let acts = read_npy(&args.input)
        .map_err(|e| format!("cannot read input {}: {e}", args.input.display()))?;
    let dims = sae.dims();
    if acts.d != dims.d {
        return Err(format!(
            "input {} has rows of width {}, but the SAE's d_in is {}",
            args.input.display(),
            acts.d,
            dims.d
        ));
    }
    if !args.allow_non_finite
        && let Some((row, col)) = acts.first_non_finite()
    {
        let v = acts.data[row * acts.d + col];
        return Err(format!(
            "input {}: row {row}, column {col} (0-based) is {v}, the first non-finite value; \
             pass --allow-non-finite to let NaN and infinity propagate into the codes",
            args.input.display()
        ));
    }
    let t0 = Instant::now();
    let codes = encode_all(&sae, &acts.data, acts.rows, args)?;
    let secs = t0.elapsed().as_secs_f64();
    let write_err = |e| format!("cannot write output {}: {e}", args.output.display());
    let shape = match &codes {
        Codes::Dense(v) => {
            write_npy(&args.output, v, acts.rows, dims.h).map_err(write_err)?;
            format!("dense {} × {} float32 .npy", acts.rows, dims.h)
        }
        Codes::Sparse(c) => {
            c.write_npz(&args.output).map_err(write_err)?;
            format!(
                "CSR .npz, {} × {}, {} non-zero ({:.2} per row)",
                acts.rows,
                dims.h,
                c.nnz(),
                c.nnz() as f64 / acts.rows as f64
            )
        }
    };
    let arch = match sae.arch().activation {
        Activation::Relu => "standard".to_string(),
        Activation::TopK { k } => format!("topk (k = {k})"),
        Activation::JumpRelu => "jumprelu".to_string(),
    };
    println!(
        "{} SAE {}→{} ({}): encoded {} rows in {:.3} s ({:.0} rows/s); wrote {} ({})",
        arch,
        cfg.d_in,
        cfg.d_sae,
        if cfg.v6 { "v6 cfg" } else { "pre-v6 cfg" },
        acts.rows,
        secs,
        acts.rows as f64 / secs.max(1e-9),
        args.output.display(),
        shape
    );
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}
