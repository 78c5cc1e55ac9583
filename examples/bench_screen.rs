//! The encoder's bf16 screen against the plain encoder:
//! `cargo run --release --example bench_screen [-- --quick]`.
//!
//! For random models (`W_enc ~ N(0, 1/d)`, untied with input centring, or tied) and
//! batches of 1024 rows of N(0, 1), it times `model::encode` with the screen allowed
//! and forbidden (`set_bf16_screen`), the two alternating in one process (per-thread
//! CPU time, best of several rounds), checks that their codes are the same bits, and
//! prints plain time over screened time. Models:
//! - TopK: SAELens-like, `b_enc ~ −0.1 ± 0.05`;
//! - ReLU (`standard`) and JumpReLU, *sparse*: `b_enc ~ −2.2 ± 0.05` (JumpReLU:
//!   `−1.9`, thresholds `0.3 ± 0.05`), so that about 1.4 % of the codes are non-zero,
//!   as in trained SAEs (L0 ≈ 45 of 3072);
//! - ReLU *dense*: `b_enc ~ −0.1 ± 0.05`, about 46 % non-zero, as in an untrained
//!   SAE: the screen's probe turns it down, and the row shows what the probe costs.
//!
//! Shapes the screen does not take (see `model::screen`'s gate, or a CPU without fast
//! AVX512_BF16) show about 1.00×.
//!
//! `--trained DIR --inputs NPY` adds a row for a trained SAELens folder on real
//! activations (the file's first 1024 rows), e.g. one written by `cargo run --release
//! --example train -- --arch standard --input train.npy --out /tmp/std` (its `sae/`).

#[cfg(not(target_family = "wasm"))]
mod common;

#[cfg(not(target_family = "wasm"))]
mod imp {
    use super::common::*;
    use sae_kernels::format::npy::read_npy;
    use sae_kernels::format::saelens::load;
    use sae_kernels::model::{
        Activation, Arch, Dims, Params, Weights, encode, encode_scratch_len, set_bf16_screen,
    };
    use std::path::Path;

    #[derive(Clone, Copy)]
    enum Model {
        TopK(usize),
        /// ReLU, sparse (`true`) or dense.
        Relu(bool),
        Jump,
    }
    use Model::*;

    /// (d, h, model, tied)
    const CASES: [(usize, usize, Model, bool); 16] = [
        (384, 3072, TopK(32), false),
        (384, 3072, TopK(32), true),
        (384, 2560, TopK(32), false),
        (768, 4096, TopK(32), false),
        (128, 8192, TopK(32), false),
        (768, 16384, TopK(32), false),
        (768, 16384, TopK(32), true),
        (256, 2048, TopK(32), false),
        (384, 3072, TopK(64), false),
        (384, 3072, Relu(true), false),
        (384, 3072, Relu(true), true),
        (384, 3072, Jump, false),
        (384, 3072, Relu(false), false),
        (768, 16384, Relu(true), false),
        (768, 16384, Jump, false),
        (128, 2048, Relu(true), false),
    ];

    pub fn main() {
        cli(
            "bench_screen",
            "The encoder's bf16 screen against the plain encoder (see the source's header)",
            &[&[
                ("quick", Values::None, "fewer rounds"),
                (
                    "trained",
                    Values::One("DIR"),
                    "also a trained SAELens folder, on --inputs",
                ),
                (
                    "inputs",
                    Values::One("NPY"),
                    "activations for --trained (its first 1024 rows)",
                ),
            ]],
        );
        let quick = std::env::args().any(|a| a == "--quick");
        let reps = if quick { 3 } else { 8 };
        let n = 1024;
        println!("Encode, batch {n}, one thread, CPU time, best of {reps} alternating rounds");
        println!();
        println!("| (d, h) | model | weights | L0 | plain ms | screened ms | plain / screened |");
        println!("|---|---|---|---|---|---|---|");
        for (ci, &(d, h, model, tied)) in CASES.iter().enumerate() {
            let seed = 100 * ci as u64;
            let s = 1.0 / (d as f32).sqrt();
            let w: Vec<f32> = normal(d * h, seed).iter().map(|v| v * s).collect();
            let b_mean = match model {
                Relu(true) => -2.2,
                Jump => -1.9,
                _ => -0.1,
            };
            let b: Vec<f32> = normal(h, seed + 1)
                .iter()
                .map(|v| v * 0.05 + b_mean)
                .collect();
            let th: Vec<f32> = normal(h, seed + 4).iter().map(|v| v * 0.05 + 0.3).collect();
            let mut wt = vec![0.0f32; h * d];
            for (i, row) in w.chunks_exact(h).enumerate() {
                for (j, &v) in row.iter().enumerate() {
                    wt[j * d + i] = v;
                }
            }
            let bd: Vec<f32> = normal(d, seed + 2).iter().map(|v| v * 0.05).collect();
            let x = normal(n * d, seed + 3);
            let dims = Dims::new(d, h).expect("nonzero dims");
            let mut arch = match model {
                TopK(k) => Arch::topk(k),
                Relu(_) => Arch::standard(),
                Jump => Arch::jumprelu(),
            };
            if tied {
                arch.weights = Weights::Tied;
            }
            let jump = arch.activation == Activation::JumpRelu;
            let p = match (tied, jump) {
                (true, false) => Params::new(arch, dims, [&wt[..], &b[..]]),
                (true, true) => Params::new(arch, dims, [&wt[..], &b[..], &th[..]]),
                (false, false) => Params::new(arch, dims, [&w[..], &b, &wt, &bd]),
                (false, true) => Params::new(arch, dims, [&w[..], &b, &wt, &bd, &th]),
            };
            let p = p.expect("consistent tensors");
            let name = match model {
                TopK(k) => format!("TopK k={k}"),
                Relu(true) => "ReLU, sparse".into(),
                Relu(false) => "ReLU, dense".into(),
                Jump => "JumpReLU, sparse".into(),
            };
            let weights = if tied { "tied" } else { "untied" };
            row(p, &x, n, reps, &name, weights);
        }
        if let (Some(dir), Some(inputs)) = (arg("--trained"), arg("--inputs")) {
            let (_, sae) = load(Path::new(&dir)).expect("a SAELens folder");
            let acts = read_npy(Path::new(&inputs)).expect("an .npy of activations");
            assert_eq!(acts.d, sae.dims().d, "--inputs: rows of d_in values");
            let n = n.min(acts.rows);
            let name = format!("{:?}, trained ({dir})", sae.arch().activation);
            row(
                sae.params(),
                &acts.data[..n * acts.d],
                n,
                reps,
                &name,
                "untied",
            );
        }
    }

    /// Times plain against screened `encode` of the `n` rows `x`, checks that their
    /// codes are the same bits, and prints the table row.
    fn row(p: Params<'_>, x: &[f32], n: usize, reps: usize, name: &str, weights: &str) {
        let (arch, dims) = (p.arch(), p.dims());
        let Dims { d, h } = dims;
        let mut scratch = vec![0.0f32; encode_scratch_len(arch, dims, n)];
        let (mut plain, mut screened) = (vec![0.0f32; n * h], vec![0.0f32; n * h]);
        let t = {
            let mut run_plain = || {
                set_bf16_screen(false);
                encode(p, x, n, &mut plain, &mut scratch).expect("encode");
            };
            let mut scratch2 = vec![0.0f32; encode_scratch_len(arch, dims, n)];
            let mut run_screened = || {
                set_bf16_screen(true);
                encode(p, x, n, &mut screened, &mut scratch2).expect("encode");
            };
            best_interleaved(reps, &mut [&mut run_plain, &mut run_screened])
        };
        set_bf16_screen(true);
        let same = plain
            .iter()
            .zip(&screened)
            .all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(
            same,
            "({d}, {h}) {name}: the screened codes differ from the plain ones"
        );
        let l0 = plain.iter().filter(|&&v| v != 0.0).count() as f64 / n as f64;
        println!(
            "| ({d}, {h}) | {name} | {weights} | {l0:.1} | {:.2} | {:.2} | {:.2}x |",
            t[0] * 1e3,
            t[1] * 1e3,
            t[0] / t[1]
        );
    }
}

#[cfg(not(target_family = "wasm"))]
fn main() {
    imp::main();
}

#[cfg(target_family = "wasm")]
fn main() {}
