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
//! `--quick` uses a quarter of the rows, fewer repetitions and skips the crossover
//! densities; `--topk-only` stops after the TopK table.

use sae_kernels::model::MAX_BLOCK_ROWS;
use sae_kernels::model::{
    Arch, Dims, LossOptions, Params, ParamsMut, Path, decode, decode_scratch_len, encode,
    encode_scratch_len, grad_scratch_len, loss_and_grad,
};
use sae_kernels::optim::{Optim, Optimizer};
use sae_kernels::sparse::{
    Overflow, RowLimit, decode_csr, encode_csr, encode_csr_scratch_len, encode_sparse,
    encode_sparse_scratch_len,
};
use std::hint::black_box;

/// CPU time of this thread, in seconds.
fn cpu_now() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime failed");
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// Best CPU times of `reps` interleaved rounds of each closure (after one warm-up).
fn best_interleaved(reps: usize, fs: &mut [&mut dyn FnMut()]) -> Vec<f64> {
    for f in fs.iter_mut() {
        f();
    }
    let mut best = vec![f64::INFINITY; fs.len()];
    for _ in 0..reps {
        for (f, b) in fs.iter_mut().zip(best.iter_mut()) {
            let t0 = cpu_now();
            f();
            *b = b.min(cpu_now() - t0);
        }
    }
    best
}

/// Deterministic standard normal data (SplitMix64 + Box–Muller).
fn normal(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    let mut next = || {
        s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    };
    (0..len)
        .map(|_| {
            let (u, v) = (next().max(1e-300), next());
            ((-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()) as f32
        })
        .collect()
}

/// A model with unit-norm rows and data, so pre-activations `x·m_j` are ≈ N(0, 1).
struct Setup {
    dims: Dims,
    n: usize,
    m: Vec<f32>,
    x: Vec<f32>,
    /// Pre-activations without bias of the first rows, sorted (for setting densities).
    sample: Vec<f32>,
}

impl Setup {
    fn new(n: usize, d: usize, h: usize) -> Self {
        let dims = Dims::new(d, h).unwrap();
        let mut m = normal(h * d, 1);
        for row in m.chunks_exact_mut(d) {
            let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
            row.iter_mut().for_each(|v| *v /= norm);
        }
        let x = normal(n * d, 2);
        let rows = n.min(64);
        let zero = vec![0.0; h];
        let mut sample = vec![0.0; rows * h];
        let mut s = vec![0.0; encode_scratch_len(Arch::tied(), dims, 1)];
        let p = Params::tied(dims, &m, &zero).unwrap();
        // Only the positive half survives the ReLU; the distribution is symmetric.
        encode(p, &x[..rows * d], rows, &mut sample, &mut s).unwrap();
        sample.retain(|&v| v > 0.0);
        sample.sort_by(f32::total_cmp);
        Self {
            dims,
            n,
            m,
            x,
            sample,
        }
    }

    /// A bias giving about `density` active codes: minus the (1 − density) quantile.
    fn bias(&self, density: f64) -> Vec<f32> {
        // `sample` holds the positive half of a symmetric distribution.
        let k = self.sample.len() as f64;
        let q = ((1.0 - 2.0 * density) * k).clamp(0.0, k - 1.0) as usize;
        vec![-self.sample[q]; self.dims.h]
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
    let quick = std::env::args().any(|a| a == "--quick");
    let reps = if quick { 1 } else { 3 };
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
