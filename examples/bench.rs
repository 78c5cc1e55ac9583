//! Side-by-side GEMM benchmark: `cargo run --release --example bench`.
//!
//! Prints, measured in one run on one thread:
//! - the f32 FMA peak of this core, from an FMA microbenchmark (AVX-512 and AVX2
//!   variants under runtime detection; the larger is "peak");
//! - the memory read bandwidth of a streaming loop;
//! - GEMM at the SAE shapes `(n, d, h)` (the encoder product `X·Mᵀ`, `n×d · d×h`):
//!   ours vs `matrixmultiply::sgemm`, GFLOP/s, ratio and % of peak, the fused encoder
//!   (bias + ReLU), and the single-vector encode vs the time to stream `M` once;
//! - forward + backward of the tied SAE (`loss_and_grad`, 10·n·d·h FLOP) as % of peak.
//!
//! All rates use per-thread CPU time (`CLOCK_THREAD_CPUTIME_ID`), best of several
//! repetitions, because the machine is shared. Pass `--quick` for fewer repetitions.

#[cfg(not(target_family = "wasm"))]
mod imp {
    use sae_kernels::kernels::gemm::{Epilogue, Kernel, MatMut, MatRef, gemm, gemm_with, pack_len};
    use sae_kernels::{
        Arch, Dims, LossOptions, Params, ParamsMut, grad_scratch_len, loss_and_grad,
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

    /// Best CPU time of `reps` runs of `f` (after one warm-up run).
    fn best_of(reps: usize, mut f: impl FnMut()) -> f64 {
        f();
        let mut best = f64::INFINITY;
        for _ in 0..reps {
            let t0 = cpu_now();
            f();
            best = best.min(cpu_now() - t0);
        }
        best
    }

    /// Deterministic data in [-1, 1).
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

    #[cfg(target_arch = "x86_64")]
    mod peak {
        use core::arch::x86_64::*;

        /// 12 independent FMA chains of 16 lanes; returns a value depending on all.
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

        /// 12 independent FMA chains of 8 lanes.
        #[target_feature(enable = "avx2,fma")]
        fn fma256(iters: u64) -> f32 {
            let a = _mm256_set1_ps(0.999_999);
            let b = _mm256_set1_ps(1e-7);
            let mut acc = [_mm256_set1_ps(1.0); 12];
            for _ in 0..iters {
                for x in acc.iter_mut() {
                    *x = _mm256_fmadd_ps(*x, a, b);
                }
            }
            let mut s = _mm256_setzero_ps();
            for x in acc {
                s = _mm256_add_ps(s, x);
            }
            let mut out = [0.0f32; 8];
            // SAFETY: `out` holds 8 f32.
            unsafe { _mm256_storeu_ps(out.as_mut_ptr(), s) };
            out.iter().sum()
        }

        /// Measured FMA peak in GFLOP/s: `(avx512, avx2)`, `None` if unsupported.
        pub fn measure(reps: usize) -> (Option<f64>, Option<f64>) {
            let iters = 50_000_000u64;
            let z = if std::is_x86_feature_detected!("avx512f") {
                let t = super::best_of(reps, || {
                    // SAFETY: AVX-512F was detected just above.
                    std::hint::black_box(unsafe { fma512(std::hint::black_box(iters)) });
                });
                Some(iters as f64 * 12.0 * 16.0 * 2.0 / t * 1e-9)
            } else {
                None
            };
            let y = if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
            {
                let t = super::best_of(reps, || {
                    // SAFETY: AVX2 and FMA were detected just above.
                    std::hint::black_box(unsafe { fma256(std::hint::black_box(iters)) });
                });
                Some(iters as f64 * 12.0 * 8.0 * 2.0 / t * 1e-9)
            } else {
                None
            };
            (z, y)
        }
    }

    /// A read-only streaming pass (sum of 8 interleaved partial sums); the compiler
    /// vectorizes it, so it runs at the memory system's read bandwidth.
    fn stream_sum(x: &[f32]) -> f32 {
        let mut acc = [0.0f32; 32];
        let mut chunks = x.chunks_exact(32);
        for c in &mut chunks {
            for (a, &v) in acc.iter_mut().zip(c) {
                *a += v;
            }
        }
        acc.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>()
    }

    /// `C ← X·Mᵀ` with matrixmultiply (`X: n×d`, `M: h×d` row-major, `C: n×h`).
    fn mm_encode(n: usize, d: usize, h: usize, x: &[f32], m: &[f32], c: &mut [f32]) {
        assert!(x.len() >= n * d && m.len() >= h * d && c.len() >= n * h);
        // SAFETY: the slices cover the strided extents asserted above; C does not alias.
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
                c.as_mut_ptr(),
                h as isize,
                1,
            );
        }
    }

    /// Ours: `C ← epi(X·Mᵀ)`.
    #[allow(clippy::too_many_arguments)]
    fn our_encode(
        n: usize,
        d: usize,
        h: usize,
        x: &[f32],
        m: &[f32],
        c: &mut [f32],
        epi: Epilogue<'_>,
        pack: &mut [f32],
    ) {
        gemm(
            1.0,
            MatRef::row_major("x", x, n, d).unwrap(),
            MatRef::row_major("m", m, h, d).unwrap().t(),
            0.0,
            MatMut::row_major("c", c, n, h).unwrap(),
            epi,
            pack,
        )
        .unwrap();
    }

    pub fn main() {
        let quick = std::env::args().any(|a| a == "--quick");
        let reps = if quick { 2 } else { 4 };
        println!(
            "sae-kernels GEMM benchmark (single thread, CPU time, best of {reps}); kernel: {}",
            sae_kernels::kernels::active_kernel()
        );

        #[cfg(target_arch = "x86_64")]
        let (p512, p256) = peak::measure(reps);
        #[cfg(not(target_arch = "x86_64"))]
        let (p512, p256): (Option<f64>, Option<f64>) = (None, None);
        let peak = p512.unwrap_or(0.0).max(p256.unwrap_or(0.0));
        println!(
            "FMA peak: {:.1} GFLOP/s (512-bit FMA: {}, 256-bit FMA: {})",
            peak,
            p512.map_or("n/a".into(), |v| format!("{v:.1}")),
            p256.map_or("n/a".into(), |v| format!("{v:.1}")),
        );
        let pct = |g: f64| {
            if peak > 0.0 {
                100.0 * g / peak
            } else {
                f64::NAN
            }
        };

        println!();
        println!(
            "{:<22} {:>10} {:>10} {:>7} {:>9}",
            "shape (n,d,h)", "ours GF/s", "mm GF/s", "ratio", "% peak"
        );
        let shapes = [(4096, 512, 4096), (1024, 768, 16384), (256, 64, 512)];
        for &(n, d, h) in &shapes {
            let x = data(n * d, 1);
            let m = data(h * d, 2);
            let bias = data(h, 3);
            let mut c = vec![0.0f32; n * h];
            let mut pack = vec![0.0f32; pack_len(n, h, d)];
            let flop = 2.0 * (n * d * h) as f64;
            let inner = ((2e9 / flop) as usize).max(1);
            let t_ours = best_of(reps, || {
                for _ in 0..inner {
                    our_encode(n, d, h, &x, &m, &mut c, Epilogue::None, &mut pack);
                }
            }) / inner as f64;
            let t_mm = best_of(reps, || {
                for _ in 0..inner {
                    mm_encode(n, d, h, &x, &m, &mut c);
                }
            }) / inner as f64;
            let t_fused = best_of(reps, || {
                for _ in 0..inner {
                    our_encode(
                        n,
                        d,
                        h,
                        &x,
                        &m,
                        &mut c,
                        Epilogue::BiasRelu(&bias),
                        &mut pack,
                    );
                }
            }) / inner as f64;
            let (go, gm, gf) = (
                flop / t_ours * 1e-9,
                flop / t_mm * 1e-9,
                flop / t_fused * 1e-9,
            );
            let label = format!("({n},{d},{h})");
            println!(
                "{:<22} {:>10.1} {:>10.1} {:>6.2}x {:>8.1}%",
                label,
                go,
                gm,
                t_mm / t_ours,
                pct(go)
            );
            println!(
                "{:<22} {:>10.1} {:>10} {:>7} {:>8.1}%",
                format!("  + bias+ReLU fused"),
                gf,
                "",
                "",
                pct(gf)
            );
            if Kernel::Avx2.is_available() && Kernel::Avx2 != sae_kernels::kernels::gemm::selected()
            {
                let t_avx2 = best_of(reps, || {
                    for _ in 0..inner {
                        gemm_with(
                            Kernel::Avx2,
                            1.0,
                            MatRef::row_major("x", &x, n, d).unwrap(),
                            MatRef::row_major("m", &m, h, d).unwrap().t(),
                            0.0,
                            MatMut::row_major("c", &mut c, n, h).unwrap(),
                            Epilogue::None,
                            &mut pack,
                        )
                        .unwrap();
                    }
                }) / inner as f64;
                let ga = flop / t_avx2 * 1e-9;
                println!(
                    "{:<22} {:>10.1} {:>10} {:>6.2}x {:>8.1}% of the 256-bit FMA peak",
                    "  AVX2 kernel (forced)",
                    ga,
                    "",
                    t_mm / t_avx2,
                    p256.map_or(f64::NAN, |p| 100.0 * ga / p)
                );
            }
            black_box(&c);
        }

        // Single-vector encode vs streaming M once.
        {
            let (n, d, h) = (1usize, 768usize, 16384usize);
            let x = data(n * d, 4);
            let m = data(h * d, 5);
            let bias = data(h, 6);
            let mut c = vec![0.0f32; n * h];
            let mut pack = vec![0.0f32; pack_len(n, h, d)];
            let inner = 20;
            let t_ours = best_of(reps, || {
                for _ in 0..inner {
                    our_encode(
                        n,
                        d,
                        h,
                        &x,
                        &m,
                        &mut c,
                        Epilogue::BiasRelu(&bias),
                        &mut pack,
                    );
                }
            }) / inner as f64;
            let t_mm = best_of(reps, || {
                for _ in 0..inner {
                    mm_encode(n, d, h, &x, &m, &mut c);
                }
            }) / inner as f64;
            let t_stream = best_of(reps, || {
                for _ in 0..inner {
                    black_box(stream_sum(black_box(&m)));
                }
            }) / inner as f64;
            let bytes = (h * d * 4) as f64;
            println!();
            println!(
                "n=1 encode (1,{d},{h}): ours {:.3} ms, matrixmultiply {:.3} ms, stream M once {:.3} ms ({:.1} GB/s); ours / stream = {:.2}x, mm / ours = {:.1}x",
                t_ours * 1e3,
                t_mm * 1e3,
                t_stream * 1e3,
                bytes / t_stream * 1e-9,
                t_ours / t_stream,
                t_mm / t_ours
            );
        }

        // Forward + backward of the tied SAE.
        {
            let (n, d, h) = (4096usize, 512usize, 4096usize);
            let dims = Dims::new(d, h).unwrap();
            let x = data(n * d, 7);
            let m: Vec<f32> = data(h * d, 8).iter().map(|v| v * 0.05).collect();
            let b = vec![-0.01f32; h];
            let (mut gm, mut gb) = (vec![0.0f32; h * d], vec![0.0f32; h]);
            let rows = 256;
            let mut scratch = vec![0.0f32; grad_scratch_len(Arch::tied(), dims, rows)];
            let t = best_of(reps.min(3), || {
                let p = Params::tied(dims, &m, &b).unwrap();
                let g = ParamsMut::tied(dims, &mut gm, &mut gb).unwrap();
                black_box(
                    loss_and_grad(p, &x, n, &LossOptions::alpha(1e-3), g, &mut scratch).unwrap(),
                );
            });
            let flop = 10.0 * (n * d * h) as f64;
            let g = flop / t * 1e-9;
            println!();
            println!(
                "forward+backward ({n},{d},{h}), {rows}-row blocks: {:.1} ms, {:.1} GFLOP/s (10·n·d·h), {:.1}% of peak",
                t * 1e3,
                g,
                pct(g)
            );
        }
    }
}

fn main() {
    #[cfg(not(target_family = "wasm"))]
    imp::main();
}
