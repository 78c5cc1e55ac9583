//! The TopK encoder's bf16 screen against the plain encoder:
//! `cargo run --release --example bench_screen [-- --quick]`.
//!
//! For SAELens-like random models (`W_enc ~ N(0, 1/d)`, `b_enc ~ −0.1 ± 0.05`,
//! untied with input centring, or tied) and batches of 1024 rows of N(0, 1), it times
//! `model::encode` with the screen allowed and forbidden (`set_topk_screen`), the two
//! alternating in one process (per-thread CPU time, best of several rounds), checks
//! that their codes are the same bits, and prints plain time over screened time.
//! Shapes the screen does not take (see `model::screen`'s gate, or a CPU without fast
//! AVX512_BF16) show about 1.00×.

#[cfg(not(target_family = "wasm"))]
mod common;

#[cfg(not(target_family = "wasm"))]
mod imp {
    use super::common::*;
    use sae_kernels::model::{
        Arch, Dims, Params, Weights, encode, encode_scratch_len, set_topk_screen,
    };

    /// (d, h, k, tied)
    const CASES: [(usize, usize, usize, bool); 9] = [
        (384, 3072, 32, false),
        (384, 3072, 32, true),
        (384, 2560, 32, false),
        (768, 4096, 32, false),
        (128, 8192, 32, false),
        (768, 16384, 32, false),
        (768, 16384, 32, true),
        (256, 2048, 32, false),
        (384, 3072, 64, false),
    ];

    pub fn main() {
        cli(
            "bench_screen",
            "The TopK encoder's bf16 screen against the plain encoder (see the source's header)",
            &[&[("quick", Values::None, "fewer rounds")]],
        );
        let quick = std::env::args().any(|a| a == "--quick");
        let reps = if quick { 3 } else { 8 };
        let n = 1024;
        println!("TopK encode, batch {n}, one thread, CPU time, best of {reps} alternating rounds");
        println!();
        println!("| (d, h) | k | weights | plain ms | screened ms | plain / screened |");
        println!("|---|---|---|---|---|---|");
        for (ci, &(d, h, k, tied)) in CASES.iter().enumerate() {
            let seed = 100 * ci as u64;
            let s = 1.0 / (d as f32).sqrt();
            let w: Vec<f32> = normal(d * h, seed).iter().map(|v| v * s).collect();
            let b: Vec<f32> = normal(h, seed + 1).iter().map(|v| v * 0.05 - 0.1).collect();
            let mut wt = vec![0.0f32; h * d];
            for (i, row) in w.chunks_exact(h).enumerate() {
                for (j, &v) in row.iter().enumerate() {
                    wt[j * d + i] = v;
                }
            }
            let bd: Vec<f32> = normal(d, seed + 2).iter().map(|v| v * 0.05).collect();
            let x = normal(n * d, seed + 3);
            let dims = Dims::new(d, h).expect("nonzero dims");
            let (arch, p) = if tied {
                let arch = Arch {
                    weights: Weights::Tied,
                    ..Arch::topk(k)
                };
                (arch, Params::new(arch, dims, [&wt[..], &b[..]]))
            } else {
                let arch = Arch::topk(k);
                (
                    arch,
                    Params::new(arch, dims, [&w[..], &b[..], &wt[..], &bd[..]]),
                )
            };
            let p = p.expect("consistent tensors");
            let mut scratch = vec![0.0f32; encode_scratch_len(arch, dims, n)];
            let (mut plain, mut screened) = (vec![0.0f32; n * h], vec![0.0f32; n * h]);
            let t = {
                let mut run_plain = || {
                    set_topk_screen(false);
                    encode(p, &x, n, &mut plain, &mut scratch).expect("encode");
                };
                let mut scratch2 = vec![0.0f32; encode_scratch_len(arch, dims, n)];
                let mut run_screened = || {
                    set_topk_screen(true);
                    encode(p, &x, n, &mut screened, &mut scratch2).expect("encode");
                };
                best_interleaved(reps, &mut [&mut run_plain, &mut run_screened])
            };
            set_topk_screen(true);
            let same = plain
                .iter()
                .zip(&screened)
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(
                same,
                "({d}, {h}) k={k}: the screened codes differ from the plain ones"
            );
            println!(
                "| ({d}, {h}) | {k} | {} | {:.2} | {:.2} | {:.2}x |",
                if tied { "tied" } else { "untied" },
                t[0] * 1e3,
                t[1] * 1e3,
                t[0] / t[1]
            );
        }
    }
}

#[cfg(not(target_family = "wasm"))]
fn main() {
    imp::main();
}

#[cfg(target_family = "wasm")]
fn main() {}
