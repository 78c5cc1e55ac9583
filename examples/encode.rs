//! Encode activations with a SAELens SAE:
//!
//! ```text
//! cargo run --release --example encode -- --sae DIR --input x.npy --output codes.npy [--sparse]
//! ```
//!
//! - `--sae DIR`: a SAELens folder (`cfg.json` + `sae_weights.safetensors`; standard,
//!   topk or jumprelu; see `sae_kernels::format::saelens` for what is refused).
//! - `--input x.npy`: a 2-D `n×d_in` array of float32 or float16.
//! - `--output codes.npy`: dense codes, a float32 `n×d_sae` array; or with `--sparse`,
//!   the non-zero codes in coordinate form: a float32 `nnz×3` array whose rows are
//!   `(row, feature, value)` in row-major order (row and feature are exact integers;
//!   this needs `n` and `d_sae` below 2^24).
//!
//! Prints the number of rows, the time spent encoding and rows per second. Any
//! failure (bad path, malformed file, width mismatch) prints one line and exits with
//! status 1.

use clap::Parser;
use sae_kernels::format::npy::{read_npy, write_npy};
use sae_kernels::format::saelens;
use sae_kernels::{Activation, Sae, encode, encode_scratch_len};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

/// Encode an n×d_in .npy of activations with a SAELens SAE.
#[derive(Parser, Debug)]
#[command(about)]
struct Args {
    /// SAELens folder with cfg.json and sae_weights.safetensors.
    #[arg(long)]
    sae: PathBuf,
    /// Input activations: 2-D .npy (n × d_in), float32 or float16.
    #[arg(long)]
    input: PathBuf,
    /// Output .npy: dense n × d_sae codes, or nnz × 3 (row, feature, value) with --sparse.
    #[arg(long)]
    output: PathBuf,
    /// Write only the non-zero codes, as (row, feature, value) triples.
    #[arg(long)]
    sparse: bool,
    /// Rows encoded per call (the codes of one chunk are held in memory at a time
    /// when --sparse is given).
    #[arg(long, default_value_t = 4096)]
    chunk: usize,
}

fn encode_all(sae: &Sae, x: &[f32], n: usize, args: &Args) -> Result<(Vec<f32>, usize), String> {
    let dims = sae.dims();
    let (d, h) = (dims.d, dims.h);
    let chunk = args.chunk.clamp(1, n);
    let mut scratch = vec![0.0; encode_scratch_len(sae.arch(), dims, 256)];
    let mut codes = vec![0.0; chunk * h];
    let mut out = Vec::new();
    if !args.sparse {
        let len = n
            .checked_mul(h)
            .ok_or_else(|| format!("{n}×{h} dense codes overflow; try --sparse"))?;
        out.try_reserve_exact(len)
            .map_err(|_| format!("cannot allocate {n}×{h} dense codes; try --sparse"))?;
    }
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
        if args.sparse {
            for (r, row) in cb.chunks_exact(h).enumerate() {
                for (i, &v) in row.iter().enumerate() {
                    if v != 0.0 {
                        out.extend_from_slice(&[(r0 + r) as f32, i as f32, v]);
                    }
                }
            }
        } else {
            out.extend_from_slice(cb);
        }
    }
    let rows_out = if args.sparse { out.len() / 3 } else { n };
    Ok((out, rows_out))
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
    const EXACT: usize = 1 << 24;
    if args.sparse && (acts.rows >= EXACT || dims.h >= EXACT) {
        return Err("--sparse needs n and d_sae below 2^24 (indices are stored as float32)".into());
    }
    let t0 = Instant::now();
    let (out, rows_out) = encode_all(&sae, &acts.data, acts.rows, args)?;
    let secs = t0.elapsed().as_secs_f64();
    let cols = if args.sparse { 3 } else { dims.h };
    write_npy(&args.output, &out, rows_out, cols)
        .map_err(|e| format!("cannot write output {}: {e}", args.output.display()))?;
    let arch = match sae.arch().activation {
        Activation::Relu => "standard".to_string(),
        Activation::TopK { k } => format!("topk (k = {k})"),
        Activation::JumpRelu => "jumprelu".to_string(),
    };
    println!(
        "{} SAE {}→{} ({}): encoded {} rows in {:.3} s ({:.0} rows/s); wrote {} ({} × {})",
        arch,
        cfg.d_in,
        cfg.d_sae,
        if cfg.v6 { "v6 cfg" } else { "pre-v6 cfg" },
        acts.rows,
        secs,
        acts.rows as f64 / secs.max(1e-9),
        args.output.display(),
        rows_out,
        cols
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
