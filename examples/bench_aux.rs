//! The AuxK term's cost in the TopK training gradient, by number of dead latents.
//!
//! ```sh
//! cargo run --release --example bench_aux -- [--dead 0,100,307,...] [--reps N] [--n N] [--no-peak]
//! ```
//!
//! For each number `m` of dead latents (spread evenly over the `h` latents), the model
//! core's `loss_and_grad` of a TopK k = 32 SAE at (n, d, h) = (1024, 384, 3072) (SAELens'
//! layout, `b_dec` subtracted from the input) is timed with AuxK (`k_aux = d/2 = 192`,
//! coefficient 1, SAELens v6) and without it, interleaved in one run (best CPU time of
//! `reps` rounds, one thread). The difference is what AuxK costs; it is printed next to
//! the time its four necessary products (`A·D`, `R·Dᵀ`, `Aᵀ·R`, `x̄ᵀ·P`, each
//! `2·n·k'·d` FLOP over the selected entries only) would take at the FMA peak measured
//! in the same run, and the route the sparse path takes (`gemm`: GEMMs over the
//! compacted dead latents; `entries`: one super-block entry per selection).

mod common;
use common::*;
use sae_kernels::model::{
    Arch, AuxK, Dims, LossOptions, MAX_BLOCK_ROWS, Params, ParamsMut, grad_scratch_len,
    loss_and_grad,
};
use std::hint::black_box;

fn main() {
    cli(
        "bench_aux",
        "AuxK's cost in the TopK gradient by number of dead latents (see the source's header)",
        &[
            &[
                (
                    "dead",
                    Values::One("M1,M2,..."),
                    "dead-latent counts to measure",
                ),
                ("reps", Values::One("N"), "best of N (default 5)"),
                ("n", Values::One("ROWS"), "rows per batch (default 1024)"),
            ],
            &PEAK_AND_ONLY,
        ],
    );
    let (d, h, k) = (384usize, 3072usize, 32usize);
    let n: usize = arg("--n").map_or(1024, |v| v.parse().expect("--n: a number"));
    let reps: usize = arg("--reps").map_or(5, |v| v.parse().expect("--reps: a number"));
    let deads: Vec<usize> = arg("--dead").map_or_else(
        || vec![31, 100, 192, 307, 500, 768, 1000, 1500],
        |v| {
            v.split(',')
                .map(|s| s.trim().parse().expect("--dead: numbers"))
                .collect()
        },
    );
    let k_aux = d / 2;
    let arch = Arch::topk(k);
    let dims = Dims::new(d, h).unwrap();
    // SAELens' layout and initialisation: unit-norm decoder rows, W_enc = W_decᵀ; small
    // biases so that the pre-activations are not all symmetric around 0.
    let mut dec = normal(h * d, 1);
    for row in dec.chunks_exact_mut(d) {
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        row.iter_mut().for_each(|v| *v /= norm);
    }
    let mut params = vec![0.0f32; arch.param_len(dims)];
    {
        let (we, rest) = params.split_at_mut(d * h);
        let (be, rest) = rest.split_at_mut(h);
        let (wd, bd) = rest.split_at_mut(h * d);
        for i in 0..h {
            for j in 0..d {
                we[j * h + i] = dec[i * d + j];
            }
        }
        be.copy_from_slice(&normal(h, 3).iter().map(|v| 0.1 * v).collect::<Vec<_>>());
        wd.copy_from_slice(&dec);
        bd[..d].copy_from_slice(&normal(d, 4).iter().map(|v| 0.1 * v).collect::<Vec<_>>());
    }
    let x = normal(n * d, 2);
    let p = || Params::from_flat(arch, dims, &params).unwrap();
    let mut scratch = vec![0.0f32; grad_scratch_len(arch, dims, MAX_BLOCK_ROWS)];
    let mut grads = vec![0.0f32; arch.param_len(dims)];
    // `--no-peak` skips the FMA peak measurement (e.g. under callgrind).
    let peak = announced_peak();
    println!(
        "TopK k = {k} loss_and_grad at (n, d, h) = ({n}, {d}, {h}), AuxK k_aux = {k_aux}: \
         best CPU time of {reps} interleaved rounds, one thread"
    );
    println!(
        "{:>7} {:>5} {:>8} {:>10} {:>10} {:>9} {:>14}",
        "n_dead", "k'", "route", "no AuxK", "AuxK", "AuxK cost", "products@peak"
    );
    for &m in &deads {
        let m = m.min(h);
        // m dead latents spread evenly over the h latents.
        let dead: Vec<bool> = (0..h).map(|i| (i * m) % h < m).collect();
        let n_dead = dead.iter().filter(|&&v| v).count();
        let kp = k_aux.min(n_dead);
        let with = LossOptions {
            aux: Some(AuxK {
                dead: &dead,
                k_aux,
                coefficient: 1.0,
            }),
            ..LossOptions::alpha(0.0)
        };
        let without = LossOptions::alpha(0.0);
        let (mut s0, mut g0) = (scratch.clone(), grads.clone());
        let (s1, g1) = (&mut scratch, &mut grads);
        let t = best_interleaved(
            reps,
            &mut [
                &mut || {
                    let g = ParamsMut::from_flat(arch, dims, &mut g0).unwrap();
                    black_box(loss_and_grad(p(), &x, n, &without, g, &mut s0).unwrap());
                },
                &mut || {
                    let g = ParamsMut::from_flat(arch, dims, g1).unwrap();
                    black_box(loss_and_grad(p(), &x, n, &with, g, s1).unwrap());
                },
            ],
        );
        // The four products over the selected entries: 2·n·k'·d FLOP each.
        let flop = 8.0 * (n * kp * d) as f64;
        // The core's rule (sparse_path::aux_by_gemm and the room in its buffers).
        let route = if n_dead <= 5 * kp && 2 * n_dead + d <= h {
            "gemm"
        } else {
            "entries"
        };
        println!(
            "{n_dead:>7} {kp:>5} {route:>8} {:>7.2} ms {:>7.2} ms {:>6.2} ms {:>11}",
            t[0] * 1e3,
            t[1] * 1e3,
            (t[1] - t[0]) * 1e3,
            peak.map_or(String::new(), |pk| format!(
                "{:.2} ms",
                flop / (pk * 1e9) * 1e3
            )),
        );
    }
}
