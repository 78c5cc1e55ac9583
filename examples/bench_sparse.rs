//! Dense vs sparse path, side by side in one run:
//! `cargo run --release --example bench_sparse [-- --quick]`.
//!
//! Prints, on one thread, using per-thread CPU time (`CLOCK_THREAD_CPUTIME_ID`), best of
//! several interleaved repetitions (the machine is shared; ratios are what matter):
//! - the TopK (k = 32) training step of an untied SAELens-layout model (`loss_and_grad`
//!   and an SGD update of every tensor) forced dense vs sparse, at (n, d, h) =
//!   (1024, 384, 3072) and (4096, 512, 4096), with the encoder GEMM alone as the floor;
//! - the tied training step (`loss_and_grad` + a plain SGD step) on the dense and the sparse
//!   path at (n, d, h) = (4096, 512, 4096) and (1024, 768, 16384), with the bias set so
//!   that L0/h ≈ 0.5 %, 1 % and 5 % (and 10 %, 20 % to locate the crossover), and the
//!   floor: the dense encoder GEMM `ReLU(X·Mᵀ + b)` alone, which both paths run;
//! - encode throughput with sparse output (`encode_csr`, rows/s) and the single-vector
//!   `encode_sparse`;
//! - decode at L0 = 64 of h = 16384: `decode_csr` vs the dense `decode` GEMM.
//!
//! `--selection` prints only the TopK selection (`topk_relu_row`) per row; `--adam` only
//! the optimizer step (Adam with clipping, 2.36 M parameters) beside a fused
//! read-4/write-3 pass over the same arrays (its memory floor); `--rescale` only the
//! cost of `rescale_acts_by_decoder_norm` (TopK loss + gradient with and without it).
//!
//! `--quick` uses a quarter of the rows, fewer repetitions and skips the crossover
//! densities; `--topk-only` stops after the TopK table.
//!
//! `--breakdown` prints instead the training step phase by phase (encoder GEMM,
//! activation/selection, decode + residual/loss, backward products, the training
//! layer's rescaling/AuxK/fired latents, the optimizer sweep) with the GEMM phases as %
//! of the FMA peak measured in the same run: the tied model on the dense path at
//! (4096, 512, 4096), the standard SAE (near initialisation and at a trained density)
//! and TopK k = 32 with AuxK at (1024, 384, 3072).
//!
//! `--breakdown --model DIR --input FILE.npy` prints the same table for a trained
//! SAELens folder (`train --arch standard --steps 400 --out DIR`, standard or TopK) on
//! `--n` (1024) rows of a real activation file drawn with seed 0 (`--batches B`: B
//! batches, seeds 0..B), then how the batch's active codes spread over the features.
//! `--reps N`: best of N rounds (default 3). `--grad-only`: only the model core's
//! `loss_and_grad` on that batch, best and median of `--reps` runs. `--path
//! dense|sparse|auto` forces the decoder/backward path (default auto).

mod common;
use common::breakdown::{Setup, StepCase, TRAINER_BLOCK_ROWS, breakdown, print_header};
use common::*;
use sae_kernels::model::MAX_BLOCK_ROWS;
use sae_kernels::model::{
    Arch, Dims, LossOptions, Params, ParamsMut, Path, decode, decode_scratch_len, encode,
    encode_scratch_len, grad_scratch_len, loss_and_grad,
};
use sae_kernels::optim::OptimConfig;
use sae_kernels::optim::{Optim, Optimizer};
use sae_kernels::sparse::{
    Overflow, RowLimit, decode_csr, encode_csr, encode_csr_scratch_len, encode_sparse,
    encode_sparse_scratch_len,
};
use sae_kernels::train::{ModelRef, TrainOptions, loss_and_grad as train_loss_and_grad};
use std::hint::black_box;

/// The optimizer step alone (Adam with clipping at 1, as SAELens) over the TopK
/// model's 2hd + h + d parameters at (d, h) = (384, 3072), against the memory traffic it
/// cannot avoid: one read of p, g, m, v and one write of p, m, v (28 B per parameter),
/// timed as a plain fused loop doing that traffic with trivial arithmetic.
fn adam_sweep(reps: usize) {
    let (d, h) = (384usize, 3072usize);
    let dims = Dims::new(d, h).unwrap();
    let arch = Arch::topk(32);
    let n = arch.param_len(dims);
    let mut params = normal(n, 1);
    let grads: Vec<f32> = normal(n, 2).iter().map(|v| v * 1e-3).collect();
    let config = OptimConfig {
        rule: Optimizer::default(),
        max_grad_norm: Some(1.0),
        unit_norm_decoder: false,
    };
    let mut state = vec![0.0f32; config.state_len(n)];
    let (mut a, mut b, mut c2) = (normal(n, 3), normal(n, 4), normal(n, 5));
    let g2 = grads.clone();
    let t = best_interleaved(
        reps,
        &mut [
            &mut || {
                let mut o = Optim::new(config, dims, n, &mut state, 0).unwrap();
                let mut pm = ParamsMut::from_flat(arch, dims, &mut params).unwrap();
                let g = Params::from_flat(arch, dims, &grads).unwrap().tensors();
                o.step(&mut pm.tensors_mut(), &g, 1e-9).unwrap();
            },
            &mut || {
                for (((p, &g), m), v) in a.iter_mut().zip(&g2).zip(b.iter_mut()).zip(c2.iter_mut())
                {
                    let (nm, nv) = (*m + g, *v + g);
                    *p += nm * nv;
                    (*m, *v) = (nm, nv);
                }
                black_box(&a[0]);
            },
        ],
    );
    let gb = |secs: f64| 28.0 * n as f64 / secs * 1e-9;
    println!("optimizer step alone, {n} parameters, best CPU time of {reps}, one thread");
    println!(
        "  Optim::step (Adam, clip 1.0)          {:>7.2} ms  ({:.1} GB/s at 28 B/param)",
        t[0] * 1e3,
        gb(t[0])
    );
    println!(
        "  one fused read-4/write-3 pass (floor) {:>7.2} ms  ({:.1} GB/s)",
        t[1] * 1e3,
        gb(t[1])
    );
}

/// The cost of SAELens' `rescale_acts_by_decoder_norm` in the training layer: the TopK
/// k = 32 loss + gradient at (1024, 384, 3072) with and without it (no AuxK), best CPU
/// times of interleaved rounds; the difference is the effective parameters plus the
/// chain rule back.
fn rescale_cost(reps: usize) {
    let c = StepCase::untied("topk", Arch::topk(32), 1024, 384, 3072, 0.5);
    let (arch, dims, n) = (c.arch, c.dims, c.n);
    let p_len = arch.param_len(dims);
    let on = TrainOptions {
        aux: None,
        ..TrainOptions::saelens_topk(dims.d)
    };
    let off = TrainOptions::default();
    let rows = MAX_BLOCK_ROWS;
    let mut s_on = vec![0.0f32; on.grad_scratch_len(arch, dims, rows, false)];
    let mut s_off = vec![0.0f32; off.grad_scratch_len(arch, dims, rows, false)];
    let (mut g_on, mut g_off) = (vec![0.0f32; p_len], vec![0.0f32; p_len]);
    let p = || Params::from_flat(arch, dims, &c.params).unwrap();
    let t = best_interleaved(
        reps,
        &mut [
            &mut || {
                let m = ModelRef {
                    params: p(),
                    options: off,
                };
                black_box(
                    train_loss_and_grad(m, &c.x, n, 0.0, None, &mut g_off, None, &mut s_off)
                        .unwrap(),
                );
            },
            &mut || {
                let m = ModelRef {
                    params: p(),
                    options: on,
                };
                black_box(
                    train_loss_and_grad(m, &c.x, n, 0.0, None, &mut g_on, None, &mut s_on).unwrap(),
                );
            },
        ],
    );
    println!(
        "TopK k = 32 loss + gradient at (1024, 384, 3072), best CPU time of {reps}, one thread"
    );
    println!("  without rescaling {:>7.2} ms", t[0] * 1e3);
    println!(
        "  with rescaling    {:>7.2} ms  (rescaling: {:.2} ms)",
        t[1] * 1e3,
        (t[1] - t[0]) * 1e3
    );
}

/// The TopK selection alone (`topk_relu_row`, k = 32 and 64) on 1024 rows of
/// N(0, 1) pre-activations of width 3072 and 16384 (copied back before each run; the
/// copy is timed separately and subtracted), in µs per row.
fn selection(reps: usize) {
    use sae_kernels::model::activation::topk_relu_row;
    println!("TopK selection alone (topk_relu_row), best CPU time of {reps}, one thread");
    let n = 1024;
    for h in [3072usize, 16384] {
        let src = normal(n * h, 5);
        let (mut copy, mut rows) = (src.clone(), src.clone());
        let mut sel = vec![0.0f32; h];
        for k in [32usize, 64] {
            let t = best_interleaved(
                reps,
                &mut [&mut || copy.copy_from_slice(black_box(&src)), &mut || {
                    rows.copy_from_slice(black_box(&src));
                    for row in rows.chunks_exact_mut(h) {
                        topk_relu_row(row, k, &mut sel);
                    }
                    black_box(&rows[0]);
                }],
            );
            // The same on 4 rows that stay in cache (the arithmetic alone).
            let (hot_src, mut hot) = (&src[..4 * h], src[..4 * h].to_vec());
            let mut hot_copy = hot.clone();
            let th = best_interleaved(
                reps,
                &mut [
                    &mut || {
                        for _ in 0..256 {
                            hot_copy.copy_from_slice(black_box(hot_src));
                        }
                    },
                    &mut || {
                        for _ in 0..256 {
                            hot.copy_from_slice(black_box(hot_src));
                            for row in hot.chunks_exact_mut(h) {
                                topk_relu_row(row, k, &mut sel);
                            }
                        }
                        black_box(&hot[0]);
                    },
                ],
            );
            println!(
                "  h = {h:>5}, k = {k:>2}: {:>6.2} us/row (1024 rows), {:>6.2} us/row (4 rows in cache)",
                (t[1] - t[0]) / n as f64 * 1e6,
                (th[1] - th[0]) / 1024.0 * 1e6
            );
        }
    }
}

struct StepRow {
    l0: f32,
    dense: f64,
    sparse: f64,
    floor: f64,
}

/// CPU time of one call of `f`.
fn timed(f: impl FnOnce()) -> f64 {
    let t0 = cpu_now();
    f();
    cpu_now() - t0
}

fn train_steps(st: &Setup, densities: &[f64], reps: usize) -> Vec<StepRow> {
    let Dims { d, h } = st.dims;
    let n = st.n;
    let scratch_len = grad_scratch_len(Arch::tied(), st.dims, MAX_BLOCK_ROWS)
        .max(encode_scratch_len(Arch::tied(), st.dims, MAX_BLOCK_ROWS) + n * h);
    let mut s = vec![0.0; scratch_len];
    let (mut gm, mut gb) = (vec![0.0; h * d], vec![0.0; h]);
    // One training step: loss and gradients on `path`, then a (tiny) SGD update, which
    // keeps the density where it was set.
    let mut step = |m: &mut [f32], b: &mut [f32], s: &mut [f32], path: Path| -> f32 {
        let p = Params::tied(st.dims, m, b).unwrap();
        let g = ParamsMut::tied(st.dims, &mut gm, &mut gb).unwrap();
        let l = loss_and_grad(
            p,
            &st.x,
            n,
            &LossOptions {
                path,
                ..LossOptions::alpha(1e-3)
            },
            g,
            s,
        )
        .unwrap();
        let g = Params::tied(st.dims, &gm, &gb).unwrap();
        let pc = Arch::tied().param_len(st.dims);
        let rule = Optimizer::Sgd { momentum: 0.0 };
        let mut sgd = Optim::new(rule, st.dims, pc, &mut [], 0).unwrap();
        let mut pm = ParamsMut::tied(st.dims, m, b).unwrap();
        sgd.step(&mut pm.tensors_mut(), &g.tensors(), 1e-6).unwrap();
        l.l0
    };
    let mut out = Vec::new();
    for &density in densities {
        let b = st.bias(density);
        let (mut md, mut bd) = (st.m.clone(), b.clone());
        let (mut ms, mut bs) = (st.m.clone(), b.clone());
        let p0 = Params::tied(st.dims, &st.m, &b).unwrap();
        let mut best = [f64::INFINITY; 3];
        let mut l0 = 0.0;
        // Round 0 is a warm-up; the three measurements alternate.
        for round in 0..=reps {
            let t = [
                timed(|| {
                    black_box(step(&mut md, &mut bd, &mut s, Path::Dense));
                }),
                timed(|| l0 = step(&mut ms, &mut bs, &mut s, Path::Sparse)),
                timed(|| {
                    let (codes, pack) = s.split_at_mut(n * h);
                    encode(p0, &st.x, n, codes, pack).unwrap();
                    black_box(&codes[0]);
                }),
            ];
            if round > 0 {
                for (b, t) in best.iter_mut().zip(t) {
                    *b = b.min(t);
                }
            }
        }
        out.push(StepRow {
            l0,
            dense: best[0],
            sparse: best[1],
            floor: best[2],
        });
    }
    out
}

/// The TopK training step, dense vs sparse: `(L0, dense s, sparse s, encoder floor s)`.
fn topk_step(st: &Setup, k: usize, reps: usize) -> (f32, f64, f64, f64) {
    let Dims { d, h } = st.dims;
    let n = st.n;
    let arch = Arch::topk(k);
    // W_enc = W_decᵀ with unit decoder rows (SAELens' initialisation up to the scale).
    let mut flat = vec![0.0f32; arch.param_len(st.dims)];
    {
        let (we, rest) = flat.split_at_mut(d * h);
        let wd = &mut rest[h..h + h * d];
        wd.copy_from_slice(&st.m);
        for i in 0..h {
            for j in 0..d {
                we[j * h + i] = st.m[i * d + j];
            }
        }
    }
    let mut grads = vec![0.0f32; flat.len()];
    let mut s = vec![0.0; grad_scratch_len(arch, st.dims, MAX_BLOCK_ROWS)];
    let mut es = vec![0.0; encode_scratch_len(arch, st.dims, MAX_BLOCK_ROWS)];
    let mut codes = vec![0.0; n * h];
    let mut step = |flat: &mut [f32], path: Path| -> f32 {
        let p = Params::from_flat(arch, st.dims, flat).unwrap();
        let g = ParamsMut::from_flat(arch, st.dims, &mut grads).unwrap();
        let o = LossOptions {
            path,
            ..LossOptions::alpha(0.0)
        };
        let l = loss_and_grad(p, &st.x, n, &o, g, &mut s).unwrap();
        for (w, g) in flat.iter_mut().zip(&grads) {
            *w -= 1e-6 * g;
        }
        l.l0
    };
    let (mut fd, mut fs) = (flat.clone(), flat.clone());
    let mut best = [f64::INFINITY; 3];
    let mut l0 = 0.0;
    for round in 0..=reps {
        let t = [
            timed(|| {
                black_box(step(&mut fd, Path::Dense));
            }),
            timed(|| l0 = step(&mut fs, Path::Sparse)),
            timed(|| {
                let p = Params::from_flat(arch, st.dims, &flat).unwrap();
                encode(p, &st.x, n, &mut codes, &mut es).unwrap();
                black_box(&codes[0]);
            }),
        ];
        if round > 0 {
            for (b, t) in best.iter_mut().zip(t) {
                *b = b.min(t);
            }
        }
    }
    (l0, best[0], best[1], best[2])
}

fn main() {
    cli(
        "bench_sparse",
        "Dense vs sparse path side by side in one run; --breakdown: the training step \
         phase by phase (see the source's header)",
        &[
            &[
                (
                    "quick",
                    Values::None,
                    "a quarter of the rows, fewer repetitions",
                ),
                ("topk-only", Values::None, "stop after the TopK table"),
                ("selection", Values::None, "only the TopK selection per row"),
                (
                    "adam",
                    Values::None,
                    "only the optimizer step beside its memory floor",
                ),
                (
                    "rescale",
                    Values::None,
                    "only the cost of rescale_acts_by_decoder_norm",
                ),
                (
                    "breakdown",
                    Values::None,
                    "the training step phase by phase",
                ),
                (
                    "model",
                    Values::One("DIR"),
                    "the breakdown on a trained SAELens folder (needs --input)",
                ),
                (
                    "input",
                    Values::One("FILE.npy"),
                    "real activations for --model",
                ),
                (
                    "n",
                    Values::One("ROWS"),
                    "rows of the --model batch (default 1024)",
                ),
                (
                    "batches",
                    Values::One("B"),
                    "--model batches, seeds 0..B (default 1)",
                ),
                ("reps", Values::One("N"), "best of N rounds (default 3)"),
                (
                    "grad-only",
                    Values::None,
                    "--model: only loss_and_grad, best and median",
                ),
                (
                    "path",
                    Values::One("dense|sparse|auto"),
                    "--model: force the path",
                ),
                ("rows", Values::One("N"), "--breakdown: the row block"),
            ],
            &PEAK_AND_ONLY,
        ],
    );
    let quick = std::env::args().any(|a| a == "--quick");
    let reps = if quick { 1 } else { 3 };
    if std::env::args().any(|a| a == "--breakdown" || a == "--model") {
        run_breakdown(arg_value("--reps").unwrap_or(reps).max(3));
        return;
    }
    if std::env::args().any(|a| a == "--adam") {
        adam_sweep(reps.max(7));
        return;
    }
    if std::env::args().any(|a| a == "--rescale") {
        rescale_cost(reps.max(7));
        return;
    }
    if std::env::args().any(|a| a == "--selection") {
        selection(reps.max(5));
        return;
    }
    let div = if quick { 4 } else { 1 };
    println!(
        "sparse vs dense, one thread, CPU time, best of {reps}{}",
        if quick { " (--quick: n/4)" } else { "" }
    );
    println!("\nTopK k = 32 training step (untied, SAELens layout): forced dense vs sparse");
    println!(
        "{:>20} {:>7} {:>10} {:>10} {:>10} {:>8} {:>9}",
        "(n, d, h)", "L0", "dense s", "sparse s", "encoder s", "speedup", "% floor"
    );
    for &(n, d, h) in &[(1024usize, 384usize, 3072usize), (4096, 512, 4096)] {
        let st = Setup::new(n / div, d, h);
        let (l0, dense, sparse, floor) = topk_step(&st, 32, reps);
        println!(
            "{:>20} {:>7.1} {:>10.4} {:>10.4} {:>10.4} {:>7.2}x {:>8.0}%",
            format!("({}, {d}, {h})", n / div),
            l0,
            dense,
            sparse,
            floor,
            dense / sparse,
            100.0 * floor / sparse,
        );
    }
    if std::env::args().any(|a| a == "--topk-only") {
        return;
    }
    println!("\ntied SAE training step (ReLU, bias set for the density)");
    println!(
        "\n{:>20} {:>7} {:>7} {:>10} {:>10} {:>10} {:>8} {:>9}",
        "(n, d, h)", "L0/h", "L0", "dense s", "sparse s", "floor s", "speedup", "% floor"
    );
    let mut densities = vec![0.005, 0.01, 0.05];
    if !quick {
        densities.extend([0.1, 0.2]);
    }
    for &(n, d, h) in &[(4096usize, 512usize, 4096usize), (1024, 768, 16384)] {
        let st = Setup::new(n / div, d, h);
        for r in train_steps(&st, &densities, reps) {
            println!(
                "{:>20} {:>6.2}% {:>7.1} {:>10.3} {:>10.3} {:>10.3} {:>7.2}x {:>8.0}%",
                format!("({}, {d}, {h})", n / div),
                100.0 * f64::from(r.l0) / h as f64,
                r.l0,
                r.dense,
                r.sparse,
                r.floor,
                r.dense / r.sparse,
                100.0 * r.floor / r.sparse,
            );
        }
    }

    // Encode throughput with sparse output.
    println!("\nencode with sparse output (rows/s)");
    let (n, d, h) = (1024 / div, 768, 16384);
    let st = Setup::new(n, d, h);
    for density in [0.005, 0.01, 0.05] {
        let b = st.bias(density);
        let p = Params::tied(st.dims, &st.m, &b).unwrap();
        let cap = (n * h).div_ceil(8);
        let (mut ptr, mut idx, mut val) = (vec![0; n + 1], vec![0u32; cap], vec![0.0; cap]);
        let mut s = vec![0.0; encode_csr_scratch_len(Arch::tied(), st.dims, MAX_BLOCK_ROWS)];
        let mut s1 = vec![0.0; encode_sparse_scratch_len(Arch::tied(), st.dims)];
        let mut one = heapless::Vec::<(u32, f32), 4096>::new();
        let singles = 64.min(n);
        let mut nnz = 0;
        let t = best_interleaved(
            reps,
            &mut [
                &mut || {
                    nnz = encode_csr(
                        p,
                        &st.x,
                        n,
                        RowLimit::All,
                        &mut ptr,
                        &mut idx,
                        &mut val,
                        &mut s,
                    )
                    .unwrap();
                },
                &mut || {
                    for i in 0..singles {
                        let x = &st.x[i * d..(i + 1) * d];
                        encode_sparse(p, x, &mut one, Overflow::Error, &mut s1).unwrap();
                    }
                },
            ],
        );
        println!(
            "  ({n}, {d}, {h}) L0/h {:>5.2}%: encode_csr {:>8.0} rows/s, encode_sparse (one vector) {:>8.0} rows/s",
            100.0 * nnz as f64 / (n * h) as f64,
            n as f64 / t[0],
            singles as f64 / t[1],
        );
    }

    // Decode at L0 = 64 of 16384, random features (uniform, so a batch of many rows
    // touches most of M: the worst case for the sparse decoder).
    println!(
        "\ndecode at L0 = 64 of h = {h} (d = {d}), random features: `decode` (automatic path) vs `decode_csr`"
    );
    let l0 = 64;
    let zero = vec![0.0; h];
    let p = Params::tied(st.dims, &st.m, &zero).unwrap();
    for rows in [1, 16, 256 / div] {
        let mut codes = vec![0.0; rows * h];
        let (mut ptr, mut idx, mut val) = (vec![0usize; rows + 1], Vec::new(), Vec::new());
        let pick = normal(rows * l0, 3 + rows as u64);
        for r in 0..rows {
            let mut js: Vec<u32> = (0..l0)
                .map(|k| ((pick[r * l0 + k].abs() * 1e6) as usize % h) as u32)
                .collect();
            js.sort_unstable();
            js.dedup();
            for &j in &js {
                codes[r * h + j as usize] = 1.0;
                idx.push(j);
                val.push(1.0);
            }
            ptr[r + 1] = idx.len();
        }
        let (mut recon, mut recon2) = (vec![0.0; rows * d], vec![0.0; rows * d]);
        let mut s = vec![0.0; decode_scratch_len(st.dims, 1)];
        let inner = 256 / rows; // repeat small batches so each timing is long enough
        let t = best_interleaved(
            reps.max(3),
            &mut [
                &mut || {
                    for _ in 0..inner {
                        decode(p, &codes, rows, &mut recon, &mut s).unwrap();
                    }
                },
                &mut || {
                    for _ in 0..inner {
                        decode_csr(p, rows, &ptr, &idx, &val, &mut recon2).unwrap();
                    }
                },
            ],
        );
        println!(
            "  {rows:>4} rows: decode {:>10.1} us/row, decode_csr {:>8.2} us/row, {:>5.1}x",
            1e6 * t[0] / (inner * rows) as f64,
            1e6 * t[1] / (inner * rows) as f64,
            t[0] / t[1]
        );
    }
}

// ----------------------------------------------------------------------------------
// Per-phase breakdown of the training step (`--breakdown`): the cases and the table
// are in `common/breakdown.rs`; here the command line, `--grad-only` and the spread
// of the active codes.

/// How the active codes of `c`'s batch spread over the features (the sparse path's
/// entries): row L0 quantiles, and the share of the entries in the most frequent
/// features.
fn entry_stats(c: &StepCase) {
    let Dims { d: _, h } = c.dims;
    let p = Params::from_flat(c.arch, c.dims, &c.params).unwrap();
    let mut codes = vec![0.0f32; c.n * h];
    let mut s = vec![0.0f32; encode_scratch_len(c.arch, c.dims, TRAINER_BLOCK_ROWS)];
    encode(p, &c.x, c.n, &mut codes, &mut s).unwrap();
    let mut per_row: Vec<usize> = codes
        .chunks_exact(h)
        .map(|r| r.iter().filter(|&&v| v > 0.0).count())
        .collect();
    let mut per_feat = vec![0usize; h];
    for r in codes.chunks_exact(h) {
        for (f, &v) in per_feat.iter_mut().zip(r) {
            *f += usize::from(v > 0.0);
        }
    }
    let total: usize = per_row.iter().sum();
    per_row.sort_unstable();
    per_feat.sort_unstable_by(|a, b| b.cmp(a));
    let q = |f: f64| per_row[((per_row.len() - 1) as f64 * f) as usize];
    let share =
        |k: usize| 100.0 * per_feat[..k.min(h)].iter().sum::<usize>() as f64 / total.max(1) as f64;
    let over = |frac: f64| {
        per_feat
            .iter()
            .filter(|&&v| v as f64 > frac * c.n as f64)
            .count()
    };
    println!(
        "  entries: {total} (L0 per row: min {}, median {}, 90 % {}, max {}); features with entries: {}; \
         the 10 / 30 / 100 most frequent hold {:.1} / {:.1} / {:.1} % of them; \
         features in > 50 % / > 20 % / > 5 % of rows: {} / {} / {}",
        per_row[0],
        q(0.5),
        q(0.9),
        per_row[per_row.len() - 1],
        per_feat.iter().filter(|&&v| v > 0).count(),
        share(10),
        share(30),
        share(100),
        over(0.5),
        over(0.2),
        over(0.05),
    );
}

/// `--grad-only`: the model core's `loss_and_grad` alone (encoder, sparse or dense
/// decoder and backward products), `reps` times: the best and the median CPU time,
/// for comparing builds on a shared machine where the phase differences are noisy.
fn grad_only(c: &StepCase, reps: usize) {
    let (arch, dims, n) = (c.arch, c.dims, c.n);
    let rows = arg_value("--rows").unwrap_or(TRAINER_BLOCK_ROWS);
    let mut grads = vec![0.0f32; arch.param_len(dims)];
    let mut s_grad = vec![0.0f32; grad_scratch_len(arch, dims, rows)];
    let lo = LossOptions {
        path: c.path,
        ..LossOptions::alpha(c.alpha)
    };
    let mut l0 = 0.0f32;
    let mut times: Vec<f64> = (0..reps)
        .map(|_| {
            timed(|| {
                let p = Params::from_flat(arch, dims, &c.params).unwrap();
                let g = ParamsMut::from_flat(arch, dims, &mut grads).unwrap();
                l0 = loss_and_grad(p, &c.x, n, &lo, g, &mut s_grad).unwrap().l0;
            })
        })
        .collect();
    times.sort_by(f64::total_cmp);
    println!(
        "{}: L0 {l0:.1}, loss_and_grad best {:.2} ms, median {:.2} ms of {reps}",
        c.name,
        times[0] * 1e3,
        times[reps / 2] * 1e3
    );
}

/// The number after `flag` on the command line.
fn arg_value(flag: &str) -> Option<usize> {
    arg(flag)?.parse().ok()
}

fn run_breakdown(reps: usize) {
    let peak = announced_peak();
    print_header(reps);
    // Row blocks as the owned Trainer uses (`--rows N` to try others).
    let rows = arg_value("--rows").unwrap_or(TRAINER_BLOCK_ROWS);
    let args: Vec<String> = std::env::args().collect();
    let arg_str = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1).cloned())
    };
    // `--model DIR --input FILE.npy`: a trained model on real rows (`--n`, `--seed`).
    if let Some(dir) = arg_str("--model") {
        let Some(input) = arg_str("--input") else {
            eprintln!("--model needs --input FILE.npy");
            std::process::exit(2);
        };
        let n = arg_value("--n").unwrap_or(1024);
        let seeds = arg_value("--batches").unwrap_or(1);
        for seed in 0..seeds {
            let path = match arg_str("--path").as_deref() {
                None | Some("auto") => Path::Auto,
                Some("dense") => Path::Dense,
                Some("sparse") => Path::Sparse,
                Some(p) => {
                    eprintln!("--path must be auto, dense or sparse, got {p}");
                    std::process::exit(2);
                }
            };
            let case =
                StepCase::from_files(&dir, &input, n, seed as u64).map(|c| StepCase { path, ..c });
            match case {
                Ok(c) if args.iter().any(|a| a == "--grad-only") => grad_only(&c, reps),
                Ok(c) => {
                    breakdown(&c, rows, reps, peak);
                    entry_stats(&c);
                }
                Err(e) => {
                    eprintln!("{e}");
                    std::process::exit(2);
                }
            }
        }
        return;
    }
    let cases: [(&str, &dyn Fn() -> StepCase); 6] = [
        ("tied", &|| StepCase::tied_dense(4096, 512, 4096)),
        ("big topk", &|| {
            let mut c = StepCase::untied("topk k = 32 big", Arch::topk(32), 4096, 512, 4096, 0.5);
            c.dead = Some(vec![false; 4096]);
            c
        }),
        // Standard at the density of a trained model on the real data (L0 ≈ 45 of
        // 3072: the sparse path) and near initialisation (half the codes active: dense).
        ("standard, trained density", &|| {
            StepCase::untied(
                "standard, trained density",
                Arch::standard(),
                1024,
                384,
                3072,
                45.0 / 3072.0,
            )
        }),
        ("standard, at initialisation", &|| {
            StepCase::untied(
                "standard, at initialisation",
                Arch::standard(),
                1024,
                384,
                3072,
                0.5,
            )
        }),
        ("topk, 10 % dead", &|| {
            StepCase::untied("topk k = 32", Arch::topk(32), 1024, 384, 3072, 0.5)
        }),
        // As at the start of training (and in SAELens' own step timing): no dead latent.
        ("topk, no dead latent", &|| {
            let mut c = StepCase::untied(
                "topk k = 32, no dead latent",
                Arch::topk(32),
                1024,
                384,
                3072,
                0.5,
            );
            c.dead = Some(vec![false; 3072]);
            c
        }),
    ];
    for (name, make) in cases {
        if only(name) {
            breakdown(&make(), rows, reps, peak);
        }
    }
}
