//! Encode timing at the Python benchmark's shapes: `cargo run --release --example bench_encode`.
//!
//! Splits the cost of `sae_kernels.SAE.encode` (python/bench/bench_vs_saelens.py) into
//! the core's part and the rest: for `(d, h)` = (384, 3072) and (768, 16384), batches of
//! 1024 and 1 rows, one thread, it prints side by side in one run
//! - the f32 FMA peak of this core (AVX-512 FMA chains, where available);
//! - the bare encoder GEMM `X·W_enc` with bias + ReLU fused, `W_enc` `d×h` (SAELens'
//!   layout) and `W_encᵀ` `h×d` (the transposed layout), one call over the batch;
//! - the core's `model::encode` (untied, `b_dec` centring), standard and TopK k = 32,
//!   with the scratch for `MAX_BLOCK_ROWS` rows (one encoder pack per 256 rows) and
//!   for the whole batch (one pack);
//! - the owned `Sae::encode` (allocates codes and scratch per call);
//! - the TopK selection alone (`topk_relu_row` on 1024 rows of ReLU codes).
//!
//! Times are per-thread CPU time, best of several runs (the machine is shared).
//! `--quick`: fewer runs.

#[cfg(not(target_family = "wasm"))]
mod common;

#[cfg(not(target_family = "wasm"))]
mod imp {
    use super::common::*;
    use sae_kernels::kernels::gemm::{Epilogue, MatMut, MatRef, gemm, pack_len};
    use sae_kernels::model::activation::topk_relu_row;
    use sae_kernels::model::{Arch, Dims, MAX_BLOCK_ROWS, Params, encode, encode_scratch_len};
    use sae_kernels::owned::Sae;
    use std::hint::black_box;

    fn data(len: usize, seed: u64, scale: f32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0) * scale
            })
            .collect()
    }

    /// f32 FMA peak of one core in GFLOP/s (AVX-512 when available, else AVX2; 0 if
    /// neither).
    fn peak() -> f64 {
        #[cfg(target_arch = "x86_64")]
        {
            use core::arch::x86_64::*;
            #[target_feature(enable = "avx512f")]
            fn fma512(iters: u64) -> f32 {
                let a = _mm512_set1_ps(0.999_999);
                let b = _mm512_set1_ps(1e-7);
                let mut acc = [_mm512_set1_ps(1.0); 12];
                for _ in 0..iters {
                    for x in acc.iter_mut() {
                        *x = _mm512_fmadd_ps(*x, a, b);
                    }
                }
                let mut s = _mm512_setzero_ps();
                for x in acc {
                    s = _mm512_add_ps(s, x);
                }
                _mm512_reduce_add_ps(s)
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                let iters = 20_000_000u64;
                let t = best_of(3, || {
                    // SAFETY: avx512f was detected just above.
                    black_box(unsafe { fma512(black_box(iters)) });
                });
                return (iters * 12 * 16 * 2) as f64 / t * 1e-9;
            }
        }
        0.0
    }

    pub fn main() {
        cli(
            "bench_encode",
            "Encode timing at the Python benchmark's shapes: the core's part and the rest \
             (see the source's header)",
            &[&[("quick", Values::None, "fewer runs")]],
        );
        let reps = if std::env::args().any(|a| a == "--quick") {
            3
        } else {
            7
        };
        let pk = peak();
        println!("f32 FMA peak (AVX-512, one core): {pk:.1} GFLOP/s");
        println!();
        println!("| (d, h) | batch | what | ms | GFLOP/s | % of peak | vs GEMM(W_enc) |");
        println!("|---|---|---|---|---|---|---|");
        for (d, h) in [(384usize, 3072usize), (768, 16384)] {
            let w_enc = data(d * h, 1, 1.0 / (d as f32).sqrt());
            let b_enc = data(h, 2, 0.1);
            let w_dec = data(h * d, 3, 0.1);
            let b_dec = data(d, 4, 0.05);
            let dims = Dims::new(d, h).unwrap();
            let mut w_t = vec![0.0; d * h];
            for i in 0..d {
                for j in 0..h {
                    w_t[j * d + i] = w_enc[i * h + j];
                }
            }
            for n in [1024usize, 1] {
                let x = data(n * d, 5 + n as u64, 1.0);
                let mut c = vec![0.0; n * h];
                let flop = 2.0 * (n * d * h) as f64;
                let reps = if n == 1 { reps * 20 } else { reps };
                let mut rows: Vec<(String, f64)> = Vec::new();
                let mut pack = vec![0.0; pack_len(n, h, d)];
                let t_gemm = best_of(reps, || {
                    gemm(
                        1.0,
                        MatRef::row_major("x", &x, n, d).unwrap(),
                        MatRef::row_major("w_enc", &w_enc, d, h).unwrap(),
                        0.0,
                        MatMut::row_major("c", &mut c, n, h).unwrap(),
                        Epilogue::BiasRelu(&b_enc),
                        &mut pack,
                    )
                    .unwrap();
                });
                rows.push(("GEMM X·W_enc (d×h) + bias, ReLU".into(), t_gemm));
                let t = best_of(reps, || {
                    gemm(
                        1.0,
                        MatRef::row_major("x", &x, n, d).unwrap(),
                        MatRef::row_major("w_t", &w_t, h, d).unwrap().t(),
                        0.0,
                        MatMut::row_major("c", &mut c, n, h).unwrap(),
                        Epilogue::BiasRelu(&b_enc),
                        &mut pack,
                    )
                    .unwrap();
                });
                rows.push(("GEMM X·(W_encᵀ)ᵀ (h×d) + bias, ReLU".into(), t));
                for (name, arch) in [("topk 32", Arch::topk(32)), ("standard", Arch::standard())] {
                    let p = Params::new(arch, dims, [&w_enc, &b_enc, &w_dec, &b_dec]).unwrap();
                    for rb in [MAX_BLOCK_ROWS, n] {
                        let mut s = vec![0.0; encode_scratch_len(arch, dims, rb)];
                        let t = best_of(reps, || {
                            encode(p, &x, n, &mut c, &mut s).unwrap();
                        });
                        rows.push((format!("model::encode {name}, scratch for {rb} rows"), t));
                    }
                    let sae = Sae::from_params(p);
                    let t = best_of(reps, || {
                        black_box(sae.encode(&x, n).unwrap());
                    });
                    rows.push((format!("Sae::encode {name}"), t));
                }
                // The TopK selection alone, on rows of ReLU codes (copied in each run).
                let relu_codes = c.clone();
                let mut sel = vec![0.0; h];
                let t_copy = best_of(reps, || c.copy_from_slice(black_box(&relu_codes)));
                rows.push(("copy of the codes".into(), t_copy));
                let t = best_of(reps, || {
                    c.copy_from_slice(black_box(&relu_codes));
                    for row in c.chunks_exact_mut(h) {
                        topk_relu_row(row, 32, &mut sel);
                    }
                });
                rows.push(("copy + topk_relu_row k=32 per row".into(), t));
                for (what, t) in rows {
                    let g = flop / t * 1e-9;
                    println!(
                        "| ({d}, {h}) | {n} | {what} | {:.3} | {g:.1} | {:.0} % | {:.2}x |",
                        t * 1e3,
                        if pk > 0.0 { g / pk * 100.0 } else { 0.0 },
                        t / t_gemm
                    );
                }
            }
        }
    }
}

#[cfg(not(target_family = "wasm"))]
fn main() {
    imp::main();
}

#[cfg(target_family = "wasm")]
fn main() {}
