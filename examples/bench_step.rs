//! The dense training step's `loss_and_grad` (exact loss and gradients), side by side
//! in one run:
//!
//! - `cargo run --release --example bench_step` (build WITHOUT `parallel`): the step by
//!   row-block size (256, 512, 1024 rows, those up to `MAX_BLOCK_ROWS`: today only 256;
//!   raise the constant in src/model/core.rs to compare larger blocks), one thread,
//!   per-thread CPU time, best of interleaved rounds, with % of the FMA peak measured in
//!   the same run (10·n·d·h FLOP per step), for the tied model at (4096, 512, 4096) and
//!   the standard SAE near initialisation (half the codes active) at (1024, 384, 3072).
//! - `cargo run --release --features parallel --example bench_step -- --threads
//!   [--busy N]`: the same steps (and the tied one at (1024, 512, 4096)) in a 1-thread
//!   and a 2-thread rayon pool, alternating, best wall time; with `--busy N`, also with
//!   `N` competing busy-spinning threads (oversubscribed).
//!
//! - `--products [--rows N]`: the dense backward's products alone by block size (see
//!   `products`), A operands as transposed views against stored row-major.
//!
//! `--reps N` sets the rounds (default 4); `--only WORD` keeps the cases whose name
//! contains WORD ("tied", "standard").

#[cfg(not(target_family = "wasm"))]
mod common;

#[cfg(not(target_family = "wasm"))]
mod imp {
    use super::common::*;
    use sae_kernels::model::{
        Arch, Dims, LossOptions, MAX_BLOCK_ROWS, Params, ParamsMut, grad_scratch_len, loss_and_grad,
    };
    use std::hint::black_box;

    /// A model at initialisation (unit-norm decoder rows, `W_enc = W_decᵀ`, zero
    /// biases: about half the codes active, so every block takes the dense path) and a
    /// batch of standard normal rows.
    pub struct Case {
        pub name: &'static str,
        pub arch: Arch,
        pub dims: Dims,
        pub n: usize,
        pub x: Vec<f32>,
        pub params: Vec<f32>,
    }

    impl Case {
        pub fn new(name: &'static str, arch: Arch, n: usize, d: usize, h: usize) -> Self {
            let dims = Dims::new(d, h).unwrap();
            let mut m = normal(h * d, 1);
            for row in m.chunks_exact_mut(d) {
                let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
                row.iter_mut().for_each(|v| *v /= norm);
            }
            let mut params = vec![0.0f32; arch.param_len(dims)];
            if arch.is_tied() {
                params[..h * d].copy_from_slice(&m);
            } else {
                // [W_enc (d×h), b_enc, W_dec (h×d), b_dec]
                let (we, rest) = params.split_at_mut(d * h);
                rest[h..h + h * d].copy_from_slice(&m);
                for i in 0..h {
                    for j in 0..d {
                        we[j * h + i] = m[i * d + j];
                    }
                }
            }
            Self {
                name,
                arch,
                dims,
                n,
                x: normal(n * d, 2),
                params,
            }
        }

        fn flop(&self) -> f64 {
            10.0 * (self.n * self.dims.d * self.dims.h) as f64
        }

        /// One `loss_and_grad` of the batch with `scratch` (α = 1e-3, automatic path).
        pub fn step(&self, grads: &mut [f32], scratch: &mut [f32]) {
            let p = Params::from_flat(self.arch, self.dims, &self.params).unwrap();
            let g = ParamsMut::from_flat(self.arch, self.dims, grads).unwrap();
            let l = loss_and_grad(p, &self.x, self.n, &LossOptions::alpha(1e-3), g, scratch);
            black_box(l.unwrap());
        }
    }

    /// The number after `flag` on the command line.
    pub fn arg_value(flag: &str) -> Option<usize> {
        arg(flag)?.parse().ok()
    }

    /// The FMA peak measured now, or `None` with `--no-peak` (for runs under
    /// valgrind, which also hides AVX-512).
    /// `loss_and_grad` of each case with scratch for 256, 512 and 1024-row blocks.
    pub fn by_block_rows(reps: usize) {
        let peak = announced_peak();
        println!(
            "loss_and_grad by row-block size (one thread, CPU time, best of {reps} interleaved rounds; MAX_BLOCK_ROWS = {MAX_BLOCK_ROWS})"
        );
        let cases = [
            Case::new("tied", Arch::tied(), 4096, 512, 4096),
            Case::new("standard, at init", Arch::standard(), 1024, 384, 3072),
        ];
        for c in cases.iter().filter(|c| only(c.name)) {
            let rows: Vec<usize> = [256usize, 512, 1024]
                .into_iter()
                .filter(|&r| r <= MAX_BLOCK_ROWS && r <= c.n)
                .collect();
            let mut grads: Vec<Vec<f32>> = rows
                .iter()
                .map(|_| vec![0.0; c.arch.param_len(c.dims)])
                .collect();
            let mut scratch: Vec<Vec<f32>> = rows
                .iter()
                .map(|&r| vec![0.0; grad_scratch_len(c.arch, c.dims, r)])
                .collect();
            let mut fs: Vec<_> = grads
                .iter_mut()
                .zip(scratch.iter_mut())
                .map(|(g, s)| move || c.step(g, s))
                .collect();
            let mut refs: Vec<&mut dyn FnMut()> =
                fs.iter_mut().map(|f| f as &mut dyn FnMut()).collect();
            let t = best_interleaved_by(reps, cpu_now, &mut refs);
            let Dims { d, h } = c.dims;
            println!("  {} (n, d, h) = ({}, {d}, {h})", c.name, c.n);
            for (r, &s) in rows.iter().zip(&t) {
                let pct = peak.map_or(String::new(), |p| {
                    format!("  {:>5.1}% of peak", 100.0 * c.flop() / s * 1e-9 / p)
                });
                println!(
                    "    {r:>5}-row blocks {:>9.2} ms{pct}  time / 256-row time {:.3}",
                    s * 1e3,
                    s / t[0]
                );
            }
        }
    }

    /// The dense backward's pieces alone (`--products`), one thread, CPU time, all
    /// interleaved in one set of rounds, each over the whole batch of `n` rows in blocks
    /// of `rows` rows as the step runs them: the encoder product `X·W_enc` (the
    /// control: the GEMM at the step's own block shape), the decoder product `C·W_dec`
    /// (`k = h`), `dW_dec (+)= Cᵀ·G`,
    /// `dPre = G·W_decᵀ`, `dW_enc (+)= X̄ᵀ·dPre` (tied: `dM += dPreᵀ·X`), and the two
    /// weight-gradient products with their A operand stored row-major beforehand (is
    /// a transposed view slow to pack?).
    pub fn products(reps: usize) {
        use sae_kernels::kernels::gemm::{Epilogue, MatMut, MatRef, gemm, pack_len};
        let peak = announced_peak();
        println!(
            "dense backward products alone (one thread, CPU time, best of {reps} interleaved rounds)"
        );
        type Run<'a> = Box<dyn FnMut() + 'a>;
        for (name, tied, n, d, h) in [
            ("standard, at init", false, 1024usize, 384usize, 3072usize),
            ("tied", true, 4096, 512, 4096),
        ]
        .into_iter()
        .filter(|c| only(c.0))
        {
            let x = normal(n * d, 2);
            let c: Vec<f32> = normal(n * h, 3).iter().map(|v| v.max(0.0)).collect();
            let g: Vec<f32> = normal(n * d, 4).iter().map(|v| v * 2e-3).collect();
            let dp: Vec<f32> = normal(n * h, 6).iter().map(|v| v * 1e-3).collect();
            let w = normal(h * d, 5);
            // Column-major copies of each block (block b: `cols×rows`, row-major).
            let blocks_t = |m: &[f32], rows: usize, cols: usize| -> Vec<f32> {
                let mut t = vec![0.0f32; m.len()];
                for (mb, tb) in m
                    .chunks_exact(rows * cols)
                    .zip(t.chunks_exact_mut(rows * cols))
                {
                    for r in 0..rows {
                        for j in 0..cols {
                            tb[j * rows + r] = mb[r * cols + j];
                        }
                    }
                }
                t
            };
            let sizes: Vec<usize> = match arg_value("--rows") {
                Some(r) => vec![r],
                None => vec![256, 512, 768],
            };
            let mut labels = Vec::new();
            let mut runs: Vec<Run<'_>> = Vec::new();
            let e = Epilogue::None;
            let beta = move |b: usize| if b == 0 && !tied { 0.0 } else { 1.0 };
            for rows in sizes {
                let nb = n / rows;
                let (c, g, x, w, dp) = (&c, &g, &x, &w, &dp);
                let plen = pack_len(rows.max(h), h, rows.max(d));
                fn blk(m: &[f32], b: usize, rows: usize, cols: usize) -> &[f32] {
                    &m[b * rows * cols..][..rows * cols]
                }
                let gm =
                    move |b: usize| MatRef::row_major("g", blk(g, b, rows, d), rows, d).unwrap();
                let xm =
                    move |b: usize| MatRef::row_major("x", blk(x, b, rows, d), rows, d).unwrap();
                let cm =
                    move |b: usize| MatRef::row_major("c", blk(c, b, rows, h), rows, h).unwrap();
                let pm =
                    move |b: usize| MatRef::row_major("p", blk(dp, b, rows, h), rows, h).unwrap();
                let wm = MatRef::row_major("w", w, h, d).unwrap();
                // Control: the encoder product at the block shape (B = W_dec^T, a view,
                // as the tied model's encoder).
                let (mut pk, mut out) = (vec![0.0f32; plen], vec![0.0f32; rows * h]);
                labels.push((rows, "X W_enc (control: encoder at block shape)", 2.0));
                runs.push(Box::new(move || {
                    for b in 0..nb {
                        let o = MatMut::row_major("o", &mut out, rows, h).unwrap();
                        gemm(1.0, xm(b), wm.t(), 0.0, o, e, &mut pk).unwrap();
                    }
                }));
                let (mut pk, mut out) = (vec![0.0f32; plen], vec![0.0f32; rows * d]);
                labels.push((rows, "C W_dec (decoder, k = h)", 2.0));
                runs.push(Box::new(move || {
                    for b in 0..nb {
                        let o = MatMut::row_major("o", &mut out, rows, d).unwrap();
                        gemm(1.0, cm(b), wm, 0.0, o, e, &mut pk).unwrap();
                    }
                }));
                let (mut pk, mut gd) = (vec![0.0f32; plen], vec![0.0f32; h * d]);
                labels.push((rows, "dW_dec (+)= C^T G (A a view)", 2.0));
                runs.push(Box::new(move || {
                    for b in 0..nb {
                        let o = MatMut::row_major("gd", &mut gd, h, d).unwrap();
                        gemm(1.0, cm(b).t(), gm(b), beta(b), o, e, &mut pk).unwrap();
                    }
                }));
                let ct = blocks_t(c, rows, h);
                let (mut pk, mut gd) = (vec![0.0f32; plen], vec![0.0f32; h * d]);
                labels.push((rows, "  same, A stored row-major", 2.0));
                runs.push(Box::new(move || {
                    for b in 0..nb {
                        let a = MatRef::row_major("ct", blk(&ct, b, rows, h), h, rows).unwrap();
                        let o = MatMut::row_major("gd", &mut gd, h, d).unwrap();
                        gemm(1.0, a, gm(b), beta(b), o, e, &mut pk).unwrap();
                    }
                }));
                let (mut pk, mut out) = (vec![0.0f32; plen], vec![0.0f32; rows * h]);
                labels.push((rows, "dPre = G W_dec^T", 2.0));
                runs.push(Box::new(move || {
                    for b in 0..nb {
                        let o = MatMut::row_major("o", &mut out, rows, h).unwrap();
                        gemm(1.0, gm(b), wm.t(), 0.0, o, e, &mut pk).unwrap();
                    }
                }));
                let (mut pk, mut ge) = (vec![0.0f32; plen], vec![0.0f32; h * d]);
                labels.push((
                    rows,
                    if tied {
                        "dM += dPre^T X (A a view)"
                    } else {
                        "dW_enc (+)= Xbar^T dPre (A a view)"
                    },
                    2.0,
                ));
                runs.push(Box::new(move || {
                    for b in 0..nb {
                        if tied {
                            let o = MatMut::row_major("ge", &mut ge, h, d).unwrap();
                            gemm(1.0, pm(b).t(), xm(b), 1.0, o, e, &mut pk).unwrap();
                        } else {
                            let o = MatMut::row_major("ge", &mut ge, d, h).unwrap();
                            gemm(1.0, xm(b).t(), pm(b), beta(b), o, e, &mut pk).unwrap();
                        }
                    }
                }));
                let at = if tied {
                    blocks_t(dp, rows, h)
                } else {
                    blocks_t(x, rows, d)
                };
                let (mut pk, mut ge) = (vec![0.0f32; plen], vec![0.0f32; h * d]);
                labels.push((rows, "  same, A stored row-major", 2.0));
                runs.push(Box::new(move || {
                    for b in 0..nb {
                        if tied {
                            let a = MatRef::row_major("pt", blk(&at, b, rows, h), h, rows).unwrap();
                            let o = MatMut::row_major("ge", &mut ge, h, d).unwrap();
                            gemm(1.0, a, xm(b), 1.0, o, e, &mut pk).unwrap();
                        } else {
                            let a = MatRef::row_major("xt", blk(&at, b, rows, d), d, rows).unwrap();
                            let o = MatMut::row_major("ge", &mut ge, d, h).unwrap();
                            gemm(1.0, a, pm(b), beta(b), o, e, &mut pk).unwrap();
                        }
                    }
                }));
            }
            let mut refs: Vec<&mut dyn FnMut()> = runs
                .iter_mut()
                .map(|f| &mut **f as &mut dyn FnMut())
                .collect();
            let t = best_interleaved(reps, &mut refs);
            println!("  {name} (n, d, h) = ({n}, {d}, {h})");
            let nhd = (n * d * h) as f64;
            for (&(rows, what, f), &s) in labels.iter().zip(&t) {
                let pct = peak.map_or(String::new(), |p| {
                    format!("{:>5.1}% of peak", 100.0 * f * nhd / s * 1e-9 / p)
                });
                println!(
                    "    {rows:>4}-row blocks  {what:<44} {:>8.2} ms  {pct}",
                    s * 1e3
                );
            }
        }
    }

    /// `loss_and_grad` in a 1-thread and a 2-thread rayon pool, alternating (so that a
    /// change of the machine's load hits both alike), quiet and with `busy` spinners.
    #[cfg(feature = "parallel")]
    pub fn threads(reps: usize, busy: usize) {
        use std::sync::atomic::{AtomicBool, Ordering};
        fn wall() -> f64 {
            use std::sync::OnceLock;
            static T0: OnceLock<std::time::Instant> = OnceLock::new();
            T0.get_or_init(std::time::Instant::now)
                .elapsed()
                .as_secs_f64()
        }
        let pools = [1usize, 2].map(|t| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(t)
                .build()
                .unwrap()
        });
        println!(
            "loss_and_grad, 1 vs 2 threads (feature `parallel`, dedicated rayon pools, wall time, best of {reps} alternating rounds; 256-row blocks)"
        );
        let cases = [
            Case::new("tied", Arch::tied(), 1024, 512, 4096),
            Case::new("tied", Arch::tied(), 4096, 512, 4096),
            Case::new("standard, at init", Arch::standard(), 1024, 384, 3072),
        ];
        let conditions: &[usize] = if busy > 0 { &[0, busy] } else { &[0] };
        for &spinners in conditions {
            let stop = AtomicBool::new(false);
            std::thread::scope(|s| {
                for _ in 0..spinners {
                    s.spawn(|| {
                        let mut x = 0u64;
                        while !stop.load(Ordering::Relaxed) {
                            x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                        }
                    });
                }
                if spinners == 0 {
                    println!("  machine as is");
                } else {
                    std::thread::sleep(std::time::Duration::from_millis(200));
                    println!("  machine with +{spinners} busy threads");
                }
                for c in &cases {
                    let rows = 256.min(MAX_BLOCK_ROWS);
                    let mut g = [0, 1].map(|_| vec![0.0f32; c.arch.param_len(c.dims)]);
                    let mut sc =
                        [0, 1].map(|_| vec![0.0f32; grad_scratch_len(c.arch, c.dims, rows)]);
                    let [g1, g2] = &mut g;
                    let [s1, s2] = &mut sc;
                    let t = best_interleaved_by(
                        reps,
                        wall,
                        &mut [&mut || pools[0].install(|| c.step(g1, s1)), &mut || {
                            pools[1].install(|| c.step(g2, s2))
                        }],
                    );
                    let same = g1
                        .iter()
                        .zip(g2.iter())
                        .all(|(a, b)| a.to_bits() == b.to_bits());
                    let Dims { d, h } = c.dims;
                    println!(
                        "    {:<18} ({:>4},{d},{h})  1 thread {:>8.2} ms  2 threads {:>8.2} ms  speed-up {:.2}x  gradients bit-identical: {same}",
                        c.name,
                        c.n,
                        t[0] * 1e3,
                        t[1] * 1e3,
                        t[0] / t[1]
                    );
                }
                stop.store(true, Ordering::Relaxed);
            });
        }
    }
}

#[cfg(not(target_family = "wasm"))]
fn main() {
    use common::{PEAK_AND_ONLY, Values, cli};
    cli(
        "bench_step",
        "The dense training step's loss_and_grad by row-block size, side by side in one \
         run (see the source's header)",
        &[
            &[
                (
                    "products",
                    Values::None,
                    "the dense backward's products alone by block size",
                ),
                ("rows", Values::One("N"), "--products: the row block"),
                (
                    "threads",
                    Values::None,
                    "1 vs 2 threads (build with --features parallel)",
                ),
                (
                    "busy",
                    Values::One("N"),
                    "--threads: also with N busy-spinning threads",
                ),
                ("reps", Values::One("N"), "rounds (default 4)"),
            ],
            &PEAK_AND_ONLY,
        ],
    );
    let reps = imp::arg_value("--reps").unwrap_or(4);
    if std::env::args().any(|a| a == "--products") {
        imp::products(reps);
        return;
    }
    if std::env::args().any(|a| a == "--threads") {
        #[cfg(feature = "parallel")]
        imp::threads(reps, imp::arg_value("--busy").unwrap_or(0));
        #[cfg(not(feature = "parallel"))]
        println!("--threads needs `--features parallel`");
        return;
    }
    imp::by_block_rows(reps);
}

#[cfg(target_family = "wasm")]
fn main() {}
