//! Criterion benchmarks of the GEMM: `cargo bench --bench gemm`.
//!
//! The encoder product `X·Mᵀ` (`n×d · d×h`, M row-major `h×d`) at the SAE shapes
//! `(n, d, h)`: ours vs `matrixmultiply::sgemm` vs the naive reference (small shapes
//! only), the fused encoder (bias + ReLU in the epilogue), and one full forward +
//! backward (`loss_and_grad`). Throughput is reported in FLOP (2·n·d·h per product,
//! 10·n·d·h for forward + backward). For a side-by-side table with % of the measured
//! FMA peak, use `cargo run --release --example bench`.

#[cfg(not(target_family = "wasm"))]
mod imp {
    use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
    use sae_kernels::kernels::gemm::{Epilogue, MatMut, MatRef, gemm, naive, pack_len};
    use sae_kernels::model::{Dims, Params, ParamsMut, grad_scratch_len, loss_and_grad};
    use std::hint::black_box;
    use std::time::Duration;

    fn data(len: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    const SHAPES: [(usize, usize, usize); 4] = [
        (4096, 512, 4096),
        (1024, 768, 16384),
        (256, 64, 512),
        (1, 768, 16384),
    ];

    fn encoder(c: &mut Criterion) {
        let mut g = c.benchmark_group("encoder_x_mt");
        g.sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(3));
        for &(n, d, h) in &SHAPES {
            let id = format!("{n}x{d}x{h}");
            let x = data(n * d, 1);
            let m = data(h * d, 2);
            let bias = data(h, 3);
            let mut out = vec![0.0f32; n * h];
            let mut pack = vec![0.0f32; pack_len(n, h, d)];
            g.throughput(Throughput::Elements(2 * (n * d * h) as u64));
            g.bench_function(BenchmarkId::new("ours", &id), |bch| {
                bch.iter(|| {
                    gemm(
                        1.0,
                        MatRef::row_major("x", &x, n, d).unwrap(),
                        MatRef::row_major("m", &m, h, d).unwrap().t(),
                        0.0,
                        MatMut::row_major("c", &mut out, n, h).unwrap(),
                        Epilogue::None,
                        &mut pack,
                    )
                    .unwrap();
                    black_box(&out);
                })
            });
            g.bench_function(BenchmarkId::new("ours_bias_relu", &id), |bch| {
                bch.iter(|| {
                    gemm(
                        1.0,
                        MatRef::row_major("x", &x, n, d).unwrap(),
                        MatRef::row_major("m", &m, h, d).unwrap().t(),
                        0.0,
                        MatMut::row_major("c", &mut out, n, h).unwrap(),
                        Epilogue::BiasRelu(&bias),
                        &mut pack,
                    )
                    .unwrap();
                    black_box(&out);
                })
            });
            g.bench_function(BenchmarkId::new("matrixmultiply", &id), |bch| {
                bch.iter(|| {
                    // SAFETY: x is n×d (strides d, 1), Mᵀ is d×h over m (strides 1, d),
                    // out is n×h (strides h, 1); all slices cover those extents.
                    unsafe {
                        matrixmultiply::sgemm(
                            n,
                            d,
                            h,
                            1.0,
                            x.as_ptr(),
                            d as isize,
                            1,
                            m.as_ptr(),
                            1,
                            d as isize,
                            0.0,
                            out.as_mut_ptr(),
                            h as isize,
                            1,
                        );
                    }
                    black_box(&out);
                })
            });
            if n * d * h <= 256 * 64 * 512 {
                g.bench_function(BenchmarkId::new("naive_f64", &id), |bch| {
                    bch.iter(|| {
                        let mut cv = MatMut::row_major("c", &mut out, n, h).unwrap();
                        naive::gemm_f64(
                            1.0,
                            MatRef::row_major("x", &x, n, d).unwrap(),
                            MatRef::row_major("m", &m, h, d).unwrap().t(),
                            0.0,
                            &mut cv,
                            Epilogue::None,
                            None,
                        );
                        black_box(&out);
                    })
                });
            }
        }
        g.finish();
    }

    fn forward_backward(c: &mut Criterion) {
        let mut g = c.benchmark_group("tied_forward_backward");
        g.sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(5));
        for &(n, d, h) in &[(4096usize, 512usize, 4096usize), (256, 64, 512)] {
            let dims = Dims::new(d, h).unwrap();
            let x = data(n * d, 7);
            let m: Vec<f32> = data(h * d, 8).iter().map(|v| v * 0.05).collect();
            let b = vec![-0.01f32; h];
            let (mut gm, mut gb) = (vec![0.0f32; h * d], vec![0.0f32; h]);
            let mut scratch =
                vec![0.0f32; grad_scratch_len(sae_kernels::model::Arch::tied(), dims, 256)];
            g.throughput(Throughput::Elements(10 * (n * d * h) as u64));
            g.bench_function(
                BenchmarkId::new("loss_and_grad", format!("{n}x{d}x{h}")),
                |bch| {
                    bch.iter(|| {
                        let p = Params::tied(dims, &m, &b).unwrap();
                        let gr = ParamsMut::tied(dims, &mut gm, &mut gb).unwrap();
                        black_box(
                            loss_and_grad(
                                p,
                                &x,
                                n,
                                &sae_kernels::model::LossOptions::alpha(1e-3),
                                gr,
                                &mut scratch,
                            )
                            .unwrap(),
                        )
                    })
                },
            );
        }
        g.finish();
    }

    criterion_group!(benches, encoder, forward_backward);
}

#[cfg(not(target_family = "wasm"))]
criterion::criterion_main!(imp::benches);

/// Criterion does not build for wasm; nothing to run there.
#[cfg(target_family = "wasm")]
fn main() {}
