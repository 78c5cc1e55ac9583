//! Criterion benchmarks of the sparse path: `cargo bench --bench sparse`.
//!
//! - `train_step`: `loss_and_grad` + a plain SGD step on the dense and the sparse path
//!   at (n, d, h) = (4096, 512, 4096) and (1024, 768, 16384), L0/h ≈ 0.5 %, 1 %, 5 %;
//! - `encode_csr`: batch encode with sparse (CSR) output, in rows;
//! - `decode`: L0 = 64 of h = 16384, `decode_csr` vs the dense `decode`.
//!
//! Data: unit-norm dictionary rows and standard normal inputs, so each pre-activation
//! `x·m_j` is ≈ N(0, 1) and the bias `−z` (z the normal quantile) sets the density.
//! For the side-by-side table with % of the encoder floor, run
//! `cargo run --release --example bench_sparse`.

/// The examples' measurement helpers (deterministic normal data).
#[path = "../examples/common/mod.rs"]
mod common;
use common::normal;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sae_kernels::model::MAX_BLOCK_ROWS;
use sae_kernels::model::{
    Arch, Dims, LossOptions, Params, ParamsMut, Path, decode, decode_scratch_len, grad_scratch_len,
    loss_and_grad,
};
use sae_kernels::optim::{Optim, Optimizer};
use sae_kernels::sparse::{RowLimit, decode_csr, encode_csr, encode_csr_scratch_len};
use std::hint::black_box;
use std::time::Duration;

/// (density, z) with P(N(0, 1) > z) = density.
const DENSITIES: [(f64, f32); 3] = [(0.005, 2.576), (0.01, 2.326), (0.05, 1.645)];

fn dictionary(d: usize, h: usize) -> Vec<f32> {
    let mut m = normal(h * d, 1);
    for row in m.chunks_exact_mut(d) {
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        row.iter_mut().for_each(|v| *v /= norm);
    }
    m
}

fn train_step(c: &mut Criterion) {
    let mut g = c.benchmark_group("train_step");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(4));
    for &(n, d, h) in &[(4096usize, 512usize, 4096usize), (1024, 768, 16384)] {
        let dims = Dims::new(d, h).unwrap();
        let (sgd_rule, pc) = (
            Optimizer::Sgd { momentum: 0.0 },
            Arch::tied().param_len(dims),
        );
        let x = normal(n * d, 2);
        let mut scratch = vec![0.0; grad_scratch_len(Arch::tied(), dims, MAX_BLOCK_ROWS)];
        let (mut gm, mut gb) = (vec![0.0; h * d], vec![0.0; h]);
        g.throughput(Throughput::Elements(n as u64));
        for &(density, z) in &DENSITIES {
            for path in [Path::Dense, Path::Sparse] {
                let (mut m, mut b) = (dictionary(d, h), vec![-z; h]);
                let id = BenchmarkId::new(
                    format!("{path:?}"),
                    format!("n{n}_d{d}_h{h}_density{density}"),
                );
                g.bench_function(id, |bench| {
                    bench.iter(|| {
                        let p = Params::tied(dims, &m, &b).unwrap();
                        let gr = ParamsMut::tied(dims, &mut gm, &mut gb).unwrap();
                        let l = loss_and_grad(
                            p,
                            &x,
                            n,
                            &LossOptions {
                                path,
                                ..LossOptions::alpha(1e-3)
                            },
                            gr,
                            &mut scratch,
                        );
                        black_box(l.unwrap());
                        let gr = Params::tied(dims, &gm, &gb).unwrap();
                        let mut pm = ParamsMut::tied(dims, &mut m, &mut b).unwrap();
                        let mut sgd = Optim::new(sgd_rule, dims, pc, &mut [], 0).unwrap();
                        sgd.step(&mut pm.tensors_mut(), &gr.tensors(), 1e-6)
                            .unwrap();
                    })
                });
            }
        }
    }
    g.finish();
}

fn encode_sparse_output(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode_csr");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    let (n, d, h) = (1024usize, 768usize, 16384usize);
    let dims = Dims::new(d, h).unwrap();
    let (m, x) = (dictionary(d, h), normal(n * d, 2));
    let mut s = vec![0.0; encode_csr_scratch_len(Arch::tied(), dims, MAX_BLOCK_ROWS)];
    let cap = n * h / 8;
    let (mut ptr, mut idx, mut val) = (vec![0; n + 1], vec![0u32; cap], vec![0.0; cap]);
    g.throughput(Throughput::Elements(n as u64));
    for &(density, z) in &DENSITIES {
        let b = vec![-z; h];
        let p = Params::tied(dims, &m, &b).unwrap();
        g.bench_function(BenchmarkId::from_parameter(density), |bench| {
            bench.iter(|| {
                let r = encode_csr(
                    p,
                    &x,
                    n,
                    RowLimit::All,
                    &mut ptr,
                    &mut idx,
                    &mut val,
                    &mut s,
                );
                black_box(r.unwrap())
            })
        });
    }
    g.finish();
}

fn decode_l0_64(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode_l0_64_of_16384");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    let (rows, d, h, l0) = (64usize, 768usize, 16384usize, 64usize);
    let dims = Dims::new(d, h).unwrap();
    let (m, zero) = (dictionary(d, h), vec![0.0; h]);
    let p = Params::tied(dims, &m, &zero).unwrap();
    let mut codes = vec![0.0; rows * h];
    let (mut ptr, mut idx, mut val) = (vec![0usize; rows + 1], Vec::new(), Vec::new());
    for r in 0..rows {
        let mut js: Vec<u32> = (0..l0)
            .map(|k| (((r * 7919 + k * 104_729) * 2_654_435_761) % h) as u32)
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
    let mut recon = vec![0.0; rows * d];
    let mut s = vec![0.0; decode_scratch_len(dims, 1)];
    g.throughput(Throughput::Elements(rows as u64));
    g.bench_function("dense", |bench| {
        bench.iter(|| decode(p, &codes, rows, &mut recon, &mut s).unwrap())
    });
    g.bench_function("sparse", |bench| {
        bench.iter(|| decode_csr(p, rows, &ptr, &idx, &val, &mut recon).unwrap())
    });
    g.finish();
}

criterion_group!(benches, train_step, encode_sparse_output, decode_l0_64);
criterion_main!(benches);
