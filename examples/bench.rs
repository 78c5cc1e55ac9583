//! Side-by-side GEMM benchmark: `cargo run --release --example bench`.
//!
//! Prints, measured in one run on one thread:
//! - the f32 FMA peak of this core, from an FMA microbenchmark (AVX-512 and AVX2
//!   variants under runtime detection; the larger is "peak");
//! - the memory read bandwidth of a streaming loop;
//! - GEMM at the SAE shapes `(n, d, h)` (the encoder product `X·Mᵀ`, `n×d · d×h`):
//!   ours vs `matrixmultiply::sgemm` vs `gemm` 0.19 (feature `x86-v4`, no threads),
//!   GFLOP/s, ratios and % of peak, and the fused encoder (bias + ReLU);
//! - batch encode with bf16 weights: f32 compute, and bf16 compute (`vdpbf16ps`)
//!   where the CPU has AVX512_BF16;
//! - the single-vector encode `(1, 768, 16384)` with f32, bf16 and f16 weights vs the
//!   time to stream the f32 dictionary once;
//! - with `--features parallel`: 1 vs 2 threads (wall time) for the GEMM and a tied
//!   training step (`loss_and_grad`), beside two independent 1-thread copies of the
//!   same work run at once (what this machine gives two threads that share nothing:
//!   the ceiling for our split, measured in the same rounds), once with the machine as
//!   it is and once with
//!   `--busy N` extra busy-spinning threads (default: one per core; `--busy 0` skips
//!   it). `cargo run --release --features parallel --example bench -- --threads-only`
//!   runs just that section;
//! - forward + backward of the tied SAE (`loss_and_grad`, 10·n·d·h FLOP) at
//!   (4096, 512, 4096) as % of peak;
//! - the tied training step at (4096, 512, 4096) on the dense path, phase by phase (the
//!   table of `bench_sparse --breakdown --only tied`, from `common/breakdown.rs`): each
//!   phase's CPU time, its share of the whole step (`train_step` with Adam) and, for the
//!   GEMM phases, % of the peak measured above; then loss + gradients and the whole step
//!   as % of peak, and the step's five products as whole-batch GEMMs. Best of 2
//!   interleaved rounds (1 with `--quick`). The phases are differences of cumulative
//!   timings, so noise can make a small one come out negative.
//!
//! - the raw instruction rates of `vdpbf16ps` vs `vfmadd231ps` (zmm, register-only,
//!   8/12/24 independent chains), which bound what a bf16 GEMM can gain over the f32
//!   one on this CPU (`--peak-only`: just the peaks and this).
//!
//! All rates use per-thread CPU time (`CLOCK_THREAD_CPUTIME_ID`), best of several
//! repetitions, because the machine is shared. Pass `--quick` for fewer repetitions.

#[cfg(not(target_family = "wasm"))]
mod common;

#[cfg(not(target_family = "wasm"))]
mod imp {
    use super::common::breakdown::{StepCase, TRAINER_BLOCK_ROWS, breakdown, print_header};
    use super::common::*;
    use sae_kernels::kernels::gemm::{
        Epilogue, Half, Kernel, MatMut, MatRef, bf16_dot_available, gemm, gemm_nt_half,
        gemm_nt_half_bf16_dot, gemm_packed, gemm_with, pack_b, pack_len, packed_b_len,
    };
    use sae_kernels::model::{
        Arch, Dims, LossOptions, Params, ParamsMut, grad_scratch_len, loss_and_grad,
    };
    use std::hint::black_box;

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

        /// 12 independent `vdpbf16ps` chains of 16 lanes (4 FLOP per lane each).
        #[target_feature(enable = "avx512f,avx512bf16")]
        fn dpbf16(iters: u64) -> f32 {
            // SAFETY: __m512i and __m512bh are both 64 plain bytes.
            let (a, b) = unsafe {
                (
                    core::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi32(0x3f80_3f80)),
                    core::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi32(0x3380_3380)),
                )
            };
            let mut acc = [_mm512_set1_ps(1.0); 12];
            for _ in 0..iters {
                for x in acc.iter_mut() {
                    *x = _mm512_dpbf16_ps(*x, a, b);
                }
            }
            let mut s = _mm512_setzero_ps();
            for x in acc {
                s = _mm512_add_ps(s, x);
            }
            _mm512_reduce_add_ps(s)
        }

        /// Measured `vdpbf16ps` peak in GFLOP/s (`None` without AVX512_BF16).
        pub fn measure_bf16(reps: usize) -> Option<f64> {
            if !std::is_x86_feature_detected!("avx512bf16") {
                return None;
            }
            let iters = 50_000_000u64;
            let t = super::best_of(reps, || {
                // SAFETY: AVX-512F and AVX512_BF16 were detected just above.
                std::hint::black_box(unsafe { dpbf16(std::hint::black_box(iters)) });
            });
            Some(iters as f64 * 12.0 * 16.0 * 4.0 / t * 1e-9)
        }

        /// `N` independent `vfmadd231ps zmm` chains, register operands only.
        #[target_feature(enable = "avx512f")]
        fn fma_chains<const N: usize>(iters: u64) -> f32 {
            let a = _mm512_set1_ps(0.999_999);
            let b = _mm512_set1_ps(1e-7);
            let mut acc = [_mm512_set1_ps(1.0); N];
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

        /// `N` independent `vdpbf16ps zmm` chains, register operands only.
        #[target_feature(enable = "avx512f,avx512bf16")]
        fn dpbf16_chains<const N: usize>(iters: u64) -> f32 {
            // SAFETY: __m512i and __m512bh are both 64 plain bytes.
            let (a, b) = unsafe {
                (
                    core::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi32(0x3f80_3f80)),
                    core::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi32(0x3380_3380)),
                )
            };
            let mut acc = [_mm512_set1_ps(1.0); N];
            for _ in 0..iters {
                for x in acc.iter_mut() {
                    *x = _mm512_dpbf16_ps(*x, a, b);
                }
            }
            let mut s = _mm512_setzero_ps();
            for x in acc {
                s = _mm512_add_ps(s, x);
            }
            _mm512_reduce_add_ps(s)
        }

        /// Raw instruction throughput, `vdpbf16ps` against `vfmadd231ps` (zmm,
        /// register-only, independent chains; 8, 12 and 24 chains, so that neither is
        /// latency-bound), measured alternately in one run: per chain count,
        /// `(chains, FMA instr/s, dpbf16 instr/s)` in units of 10⁹. `None` without
        /// AVX512_BF16.
        pub fn bf16_vs_fma(reps: usize) -> Option<Vec<(usize, f64, f64)>> {
            if !std::is_x86_feature_detected!("avx512bf16") {
                return None;
            }
            let iters = 20_000_000u64;
            let time = |f: &dyn Fn()| super::best_of(reps, f);
            let mut out = Vec::new();
            macro_rules! pair {
                ($n:literal) => {{
                    // SAFETY: AVX-512F and AVX512_BF16 were detected above.
                    let tf = time(&|| {
                        std::hint::black_box(unsafe {
                            fma_chains::<$n>(std::hint::black_box(iters))
                        });
                    });
                    // SAFETY: as above.
                    let td = time(&|| {
                        std::hint::black_box(unsafe {
                            dpbf16_chains::<$n>(std::hint::black_box(iters))
                        });
                    });
                    let ins = (iters * $n) as f64 * 1e-9;
                    out.push(($n, ins / tf, ins / td));
                }};
            }
            pair!(8);
            pair!(12);
            pair!(24);
            Some(out)
        }

        /// Sum of `x` with four 512-bit accumulators: a read-only pass at the memory
        /// system's read bandwidth (the time to stream a dictionary once).
        #[target_feature(enable = "avx512f")]
        fn stream512(x: &[f32]) -> f32 {
            let mut acc = [_mm512_setzero_ps(); 4];
            let mut chunks = x.chunks_exact(64);
            for c in &mut chunks {
                for (t, a) in acc.iter_mut().enumerate() {
                    // SAFETY: `c` has 64 elements; this reads 16 of them at 16·t.
                    *a = _mm512_add_ps(*a, unsafe { _mm512_loadu_ps(c.as_ptr().add(16 * t)) });
                }
            }
            let s = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
            _mm512_reduce_add_ps(s) + chunks.remainder().iter().sum::<f32>()
        }

        /// [`stream512`] where the CPU has AVX-512F.
        pub fn stream(x: &[f32]) -> Option<f32> {
            // SAFETY: AVX-512F is checked first.
            std::is_x86_feature_detected!("avx512f").then(|| unsafe { stream512(x) })
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
        #[cfg(target_arch = "x86_64")]
        if let Some(s) = peak::stream(x) {
            return s;
        }
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

    /// `C ← X·Mᵀ` with gemm 0.19, single-threaded.
    fn gemm019_encode(n: usize, d: usize, h: usize, x: &[f32], m: &[f32], c: &mut [f32]) {
        assert!(x.len() >= n * d && m.len() >= h * d && c.len() >= n * h);
        // SAFETY: the slices cover the strided extents asserted above; C does not
        // alias; `read_dst = false` with α = 0, β = 1 gives C = X·Mᵀ.
        unsafe {
            gemm::gemm(
                n,
                h,
                d,
                c.as_mut_ptr(),
                1,
                h as isize,
                false,
                x.as_ptr(),
                1,
                d as isize,
                m.as_ptr(),
                d as isize,
                1,
                0.0f32,
                1.0f32,
                false,
                false,
                false,
                gemm::Parallelism::None,
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

    /// `--busy N` (default: one per core): the competing busy threads of the
    /// oversubscribed measurement; `--busy 0` skips it.
    #[cfg(feature = "parallel")]
    fn busy_arg() -> usize {
        let args: Vec<String> = std::env::args().collect();
        args.iter()
            .position(|a| a == "--busy")
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
    }

    /// Load average over the last minute (`/proc/loadavg`), for the record.
    #[cfg(feature = "parallel")]
    fn loadavg() -> String {
        std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|s| s.split_whitespace().next().map(str::to_owned))
            .unwrap_or_else(|| "n/a".into())
    }

    /// 1 vs 2 threads (feature `parallel`, wall time, best of `reps`) for the GEMM at
    /// the two large encoder shapes and for a tied training step's loss and exact
    /// gradients (`loss_and_grad`, public API), first as the machine is, then with
    /// `busy` extra threads spinning on the CPU (oversubscribed: with one per core,
    /// our threads get about half a core each).
    #[cfg(feature = "parallel")]
    fn threads_1v2(reps: usize, busy: usize) {
        use std::sync::atomic::{AtomicBool, Ordering};
        println!();
        println!(
            "1 vs 2 threads (feature `parallel`, wall time, best of {reps}; rayon pool of {} threads)",
            rayon_threads()
        );
        // Inputs, built once for both conditions.
        let gemms: Vec<_> = [(4096usize, 512usize, 4096usize), (1024, 768, 16384)]
            .iter()
            .map(|&(n, d, h)| (n, d, h, data(n * d, 9), data(h * d, 10)))
            .collect();
        let (tn, td, th, rows) = (1024usize, 512usize, 4096usize, 256usize);
        let dims = Dims::new(td, th).unwrap();
        let tx = data(tn * td, 7);
        let tm: Vec<f32> = data(th * td, 8).iter().map(|v| v * 0.05).collect();
        let tb = vec![-0.01f32; th];
        let mut scratch = vec![0.0f32; grad_scratch_len(Arch::tied(), dims, rows)];
        let more = sae_kernels::model::grad_batch_extra_len(Arch::tied(), dims, tn)
            + sae_kernels::model::grad_prepack_len(Arch::tied(), dims);
        let mut scratch_pw = vec![0.0f32; scratch.len() + more];
        let (mut gm, mut gb) = (vec![0.0f32; th * td], vec![0.0f32; th]);
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
                if spinners > 0 {
                    std::thread::sleep(std::time::Duration::from_millis(200));
                }
                let label = if spinners == 0 {
                    "as is".to_string()
                } else {
                    format!("+{spinners} busy threads")
                };
                println!("  machine {label} (load average {} at start)", loadavg());
                for (n, d, h, x, m) in &gemms {
                    let (n, d, h) = (*n, *d, *h);
                    let flop = 2.0 * (n * d * h) as f64;
                    // Own output and pack buffers for each of the two copies.
                    let [(mut c0, mut p0), (mut c1, mut p1)] =
                        [0, 1].map(|_| (vec![0.0f32; n * h], vec![0.0f32; pack_len(n, h, d)]));
                    let r = one_vs_two(
                        reps,
                        || our_encode(n, d, h, x, m, &mut c0, Epilogue::None, &mut p0),
                        || our_encode(n, d, h, x, m, &mut c1, Epilogue::None, &mut p1),
                    );
                    report(&format!("GEMM ({n},{d},{h})"), flop, r, spinners == 0);
                }
                let step = |gm: &mut [f32], gb: &mut [f32], scratch: &mut [f32]| {
                    let p = Params::tied(dims, &tm, &tb).unwrap();
                    let g = ParamsMut::tied(dims, gm, gb).unwrap();
                    black_box(
                        loss_and_grad(p, &tx, tn, &LossOptions::alpha(1e-3), g, scratch).unwrap(),
                    );
                };
                // With the plan's scratch, and with the owned Trainer's (the weights
                // packed once per call).
                for (label, s) in [("step", &mut scratch), ("step, packed W", &mut scratch_pw)] {
                    let (mut gm1, mut gb1, mut s1) = (gm.clone(), gb.clone(), s.clone());
                    let r = one_vs_two(
                        reps,
                        || step(&mut gm, &mut gb, s),
                        || step(&mut gm1, &mut gb1, &mut s1),
                    );
                    report(
                        &format!("{label} ({tn},{td},{th})"),
                        10.0 * (tn * td * th) as f64,
                        r,
                        spinners == 0,
                    );
                }
                stop.store(true, Ordering::Relaxed);
            });
        }
    }

    /// CPU time of the whole process, in seconds.
    #[cfg(feature = "parallel")]
    fn process_cpu() -> f64 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
        assert_eq!(rc, 0, "clock_gettime failed");
        ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
    }

    /// `f` with 1 and with 2 threads, and the machine's own ceiling for two threads:
    /// `f` and `g` (the same work on buffers of its own), each on one thread, run at
    /// the same time. Alternating the three (so that a change of the machine's load
    /// hits them alike), after one warm-up round: the best wall time of each and the
    /// process CPU time of that best run, `[(wall, cpu); 3]` (the third: the wall time
    /// for both copies to finish). Leaves the products capped at one thread, as the
    /// rest of the benchmark runs.
    #[cfg(feature = "parallel")]
    fn one_vs_two(reps: usize, mut f: impl FnMut(), mut g: impl FnMut() + Send) -> [(f64, f64); 3] {
        use sae_kernels::kernels::gemm::set_max_threads;
        let mut best = [(f64::INFINITY, 0.0); 3];
        for rep in 0..=reps {
            for (t, b) in best.iter_mut().enumerate() {
                set_max_threads(if t == 1 { 2 } else { 1 });
                let (w0, c0) = (std::time::Instant::now(), process_cpu());
                if t < 2 {
                    f();
                } else {
                    std::thread::scope(|s| {
                        let other = s.spawn(&mut g);
                        f();
                        other.join().expect("copy panicked");
                    });
                }
                let (w, c) = (w0.elapsed().as_secs_f64(), process_cpu() - c0);
                if rep > 0 && w < b.0 {
                    *b = (w, c);
                }
            }
        }
        // Back to the single thread the rest of the benchmark runs on.
        set_max_threads(1);
        best
    }

    /// One line of the threads table: 1 thread, 2 threads splitting the work, and two
    /// independent 1-thread copies at once (their combined rate: what this machine
    /// gives two threads that share nothing, so `split / copies` is the share of it
    /// our split reaches). With `cpu`, also the process CPU time of the 2-thread run
    /// over the 1-thread one (1.00: no time lost to splitting, waiting or spinning).
    #[cfg(feature = "parallel")]
    fn report(label: &str, flop: f64, r: [(f64, f64); 3], cpu: bool) {
        let extra = if cpu {
            format!("  CPU time 2T/1T {:.2}", r[1].1 / r[0].1)
        } else {
            String::new()
        };
        let (split, copies) = (r[0].0 / r[1].0, 2.0 * r[0].0 / r[2].0);
        println!(
            "    {label:<22} 1 thread {:>7.1} GFLOP/s   2 threads {:>7.1} GFLOP/s   speed-up {split:.2}x   2 copies {copies:.2}x   split/copies {:.2}{extra}",
            flop / r[0].0 * 1e-9,
            flop / r[1].0 * 1e-9,
            split / copies
        );
    }

    /// Threads in rayon's global pool (what the `parallel` GEMM uses).
    #[cfg(feature = "parallel")]
    fn rayon_threads() -> usize {
        std::env::var("RAYON_NUM_THREADS")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|&n: &usize| n > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    /// Best CPU time per call of the five encoder products of one shape `(n, d, h)`:
    /// ours, matrixmultiply, gemm 0.19, ours with bias + ReLU fused, and ours with `Mᵀ`
    /// packed once beforehand (`gemm_packed`, as for constant weights; not packing B
    /// is not a like-for-like comparison with the others, so it is reported apart).
    /// They are timed in
    /// turn within each round (one warm-up round, then the best of `rounds`), so that
    /// load on the shared machine falls on all of them alike: timed one after another,
    /// a burst of load during one library's turn skewed the ratios by up to 25 %.
    /// Short windows (≈ 2 ms of work at the small shape), so that some of them run
    /// without a context switch.
    fn four_products(
        (n, d, h): (usize, usize, usize),
        (x, m, bias): (&[f32], &[f32], &[f32]),
        c: &mut [f32],
        pack: &mut [f32],
        rounds: usize,
    ) -> [f64; 5] {
        let flop = 2.0 * (n * d * h) as f64;
        let inner = ((3e8 / flop) as usize).max(1);
        let mut best = [f64::INFINITY; 5];
        let mut pbuf = vec![0.0f32; packed_b_len(d, h)];
        let mt = MatRef::row_major("m", m, h, d).unwrap().t();
        let packed = pack_b(mt, &mut pbuf).unwrap();
        for round in 0..=rounds {
            for (lib, b) in best.iter_mut().enumerate() {
                let t0 = cpu_now();
                for _ in 0..inner {
                    match lib {
                        0 => our_encode(n, d, h, x, m, c, Epilogue::None, pack),
                        1 => mm_encode(n, d, h, x, m, c),
                        2 => gemm019_encode(n, d, h, x, m, c),
                        3 => our_encode(n, d, h, x, m, c, Epilogue::BiasRelu(bias), pack),
                        _ => {
                            let xm = MatRef::row_major("x", x, n, d).unwrap();
                            let cm = MatMut::row_major("c", c, n, h).unwrap();
                            gemm_packed(1.0, xm, &packed, 0.0, cm, Epilogue::None, pack).unwrap();
                        }
                    }
                }
                if round > 0 {
                    *b = b.min((cpu_now() - t0) / inner as f64);
                }
            }
        }
        best
    }

    /// The encoder shapes, ours / matrixmultiply / gemm 0.19 interleaved (see
    /// `--gemm-only` in `main`), with the 512-bit FMA peak measured before and after.
    fn gemm_interleaved(rounds: usize) {
        #[cfg(target_arch = "x86_64")]
        let peak0 = peak::measure(2).0.unwrap_or(f64::NAN);
        #[cfg(not(target_arch = "x86_64"))]
        let peak0 = f64::NAN;
        println!(
            "GEMM only, {rounds} interleaved rounds (best per library); kernel: {}; {}",
            sae_kernels::kernels::active_kernel(),
            loadavg_line()
        );
        let shapes = [(4096, 512, 4096), (1024, 768, 16384), (256, 64, 512)];
        let mut rows = Vec::new();
        for &(n, d, h) in &shapes {
            let x = data(n * d, 1);
            let m = data(h * d, 2);
            let bias = data(h, 3);
            let mut c = vec![0.0f32; n * h];
            let mut pack = vec![0.0f32; pack_len(n, h, d)];
            let flop = 2.0 * (n * d * h) as f64;
            let best = four_products((n, d, h), (&x, &m, &bias), &mut c, &mut pack, rounds);
            rows.push((n, d, h, best.map(|t| flop / t * 1e-9)));
        }
        #[cfg(target_arch = "x86_64")]
        let peak1 = peak::measure(2).0.unwrap_or(f64::NAN);
        #[cfg(not(target_arch = "x86_64"))]
        let peak1 = f64::NAN;
        let peak = peak0.max(peak1);
        println!("512-bit FMA peak {peak:.1} GFLOP/s (before {peak0:.1}, after {peak1:.1})");
        println!(
            "{:<18} {:>8} {:>8} {:>8} {:>8} {:>9} {:>7} {:>7} {:>7} {:>10} {:>12}",
            "shape (n,d,h)",
            "ours",
            "mm",
            "gemm",
            "ours/mm",
            "ours/gemm",
            "ours%",
            "mm%",
            "gemm%",
            "fused%",
            "B packed%"
        );
        for (n, d, h, [o, mm, g, f, pb]) in rows {
            println!(
                "{:<18} {:>8.1} {:>8.1} {:>8.1} {:>7.2}x {:>8.2}x {:>6.1}% {:>6.1}% {:>6.1}% {:>9.1}% {:>11.1}%",
                format!("({n},{d},{h})"),
                o,
                mm,
                g,
                o / mm,
                o / g,
                100.0 * o / peak,
                100.0 * mm / peak,
                100.0 * g / peak,
                100.0 * f / peak,
                100.0 * pb / peak
            );
        }
        println!("{}", loadavg_line());
    }

    /// `load average: …` from /proc/loadavg (empty where unavailable).
    fn loadavg_line() -> String {
        std::fs::read_to_string("/proc/loadavg")
            .map(|s| {
                format!(
                    "load average {}",
                    s.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
                )
            })
            .unwrap_or_default()
    }

    /// A 16-bit-weight product function (`gemm_nt_half` or `gemm_nt_half_bf16_dot`).
    type HalfFn = fn(
        Half,
        f32,
        MatRef<'_>,
        &[u16],
        usize,
        f32,
        MatMut<'_>,
        Epilogue<'_>,
        &mut [f32],
    ) -> sae_kernels::Result<()>;

    /// The encoder product `X·Wᵀ` with bf16 weights `wb` (`h×d`) by `run`.
    fn half_encode(
        run: HalfFn,
        (n, d, h): (usize, usize, usize),
        x: &[f32],
        wb: &[u16],
        c: &mut [f32],
        pack: &mut [f32],
    ) {
        let xm = MatRef::row_major("x", x, n, d).unwrap();
        let cm = MatMut::row_major("c", c, n, h).unwrap();
        run(Half::Bf16, 1.0, xm, wb, h, 0.0, cm, Epilogue::None, pack).unwrap();
    }

    /// `--bf16-only`: per shape, our f32 encoder product `X·Mᵀ` and the bf16-compute
    /// one (`gemm_nt_half_bf16_dot`: X rounded to bf16 while packing, M stored as
    /// bf16, f32 accumulation), best CPU time of `reps` turns each (alternating), and
    /// the bf16 result's error against the f32 one: the largest `|Δ|` over the largest
    /// `|c|`, and the RMS of `Δ` over the RMS of `c`. One line per shape:
    /// `BF16 n d h f32_gflops bf16_gflops max_rel rms_rel`.
    fn bf16_only(reps: usize) {
        if !bf16_dot_available() {
            println!("BF16 n/a (no AVX512_BF16 on this CPU)");
            return;
        }
        for &(n, d, h) in &[(4096usize, 512usize, 4096usize), (1024, 768, 16384)] {
            let x = data(n * d, 1);
            let m = data(h * d, 2);
            let wb: Vec<u16> = m.iter().map(|&v| Half::Bf16.from_f32(v)).collect();
            let (mut c32, mut c16) = (vec![0.0f32; n * h], vec![0.0f32; n * h]);
            let mut pack = vec![0.0f32; pack_len(n, h, d)];
            let flop = 2.0 * (n * d * h) as f64;
            let (mut t32, mut t16) = (f64::INFINITY, f64::INFINITY);
            for _ in 0..reps {
                t32 = t32.min(best_of(1, || {
                    our_encode(n, d, h, &x, &m, &mut c32, Epilogue::None, &mut pack)
                }));
                t16 = t16.min(best_of(1, || {
                    half_encode(
                        gemm_nt_half_bf16_dot,
                        (n, d, h),
                        &x,
                        &wb,
                        &mut c16,
                        &mut pack,
                    )
                }));
            }
            let (mut dmax, mut cmax, mut d2, mut c2) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
            for (&a, &b) in c32.iter().zip(&c16) {
                let (a, b) = (f64::from(a), f64::from(b));
                dmax = dmax.max((a - b).abs());
                cmax = cmax.max(a.abs());
                d2 += (a - b) * (a - b);
                c2 += a * a;
            }
            println!(
                "BF16 {n} {d} {h} {:.2} {:.2} {:.3e} {:.3e}",
                flop / t32 * 1e-9,
                flop / t16 * 1e-9,
                dmax / cmax,
                (d2 / c2).sqrt()
            );
        }
    }

    pub fn main() {
        cli(
            "bench",
            "GEMM side by side: ours vs matrixmultiply vs gemm 0.19, % of the FMA peak \
             measured in the same run (see the source's header)",
            &[&[
                ("quick", Values::None, "fewer repetitions"),
                (
                    "one",
                    Values::One("N,D,H"),
                    "one encoder product of that shape and nothing else (for profilers)",
                ),
                (
                    "reps",
                    Values::One("R"),
                    "with --one: that many products in a row (for sampling profilers)",
                ),
                (
                    "gemm-only",
                    Values::Optional("ROUNDS"),
                    "only the three encoder shapes, interleaved rounds (default 6)",
                ),
                (
                    "threads-only",
                    Values::None,
                    "only 1 vs 2 threads (build with --features parallel)",
                ),
                (
                    "busy",
                    Values::One("N"),
                    "busy threads for the oversubscribed threads run (default: one per core; 0 skips it)",
                ),
                (
                    "encode-only",
                    Values::None,
                    "only the peak and the single-vector encodes",
                ),
                (
                    "peak-only",
                    Values::None,
                    "only the FMA peaks and the vdpbf16ps vs vfmadd231ps rates",
                ),
                (
                    "bf16-only",
                    Values::None,
                    "only f32 vs bf16-compute batch encodes, one `BF16 …` line per shape (for python/bench/bench_bf16_vs_torch.py)",
                ),
            ]],
        );
        // `--one n,d,h [--reps r]`: one encoder product of that shape (or `r` of them)
        // and nothing else, for profilers: `valgrind --tool=callgrind
        // target/release/examples/bench --one …`, `perf record … --one 256,64,512 --reps 20000`.
        let args: Vec<String> = std::env::args().collect();
        if let Some(i) = args.iter().position(|a| a == "--one") {
            let dims: Vec<usize> = args
                .get(i + 1)
                .map(|v| v.split(',').filter_map(|t| t.parse().ok()).collect())
                .unwrap_or_default();
            let [n, d, h] = dims[..] else {
                eprintln!("usage: bench --one n,d,h");
                std::process::exit(2);
            };
            let (x, m) = (data(n * d, 1), data(h * d, 2));
            let mut c = vec![0.0f32; n * h];
            let mut pack = vec![0.0f32; pack_len(n, h, d)];
            let reps: usize = arg("--reps").and_then(|r| r.parse().ok()).unwrap_or(1);
            for _ in 0..reps {
                our_encode(n, d, h, &x, &m, &mut c, Epilogue::None, &mut pack);
                black_box(&c);
            }
            return;
        }
        let quick = std::env::args().any(|a| a == "--quick");
        // `--gemm-only [rounds]`: just the three encoder shapes, ours / matrixmultiply /
        // gemm 0.19 / ours with bias + ReLU fused, timed in turn within each round (best per library over the rounds),
        // so a noisy shared machine slows the three alike; for A/B runs of two builds.
        if let Some(i) = args.iter().position(|a| a == "--gemm-only") {
            let rounds = args.get(i + 1).and_then(|v| v.parse().ok()).unwrap_or(6);
            gemm_interleaved(rounds);
            return;
        }
        // `--bf16-only`: our f32 GEMM against the bf16-compute one, machine-readable.
        if std::env::args().any(|a| a == "--bf16-only") {
            bf16_only(if quick { 2 } else { 4 });
            return;
        }
        // `--threads-only`: just the 1 vs 2 threads section (feature `parallel`).
        if std::env::args().any(|a| a == "--threads-only") {
            #[cfg(feature = "parallel")]
            threads_1v2(if quick { 2 } else { 4 }, busy_arg());
            #[cfg(not(feature = "parallel"))]
            eprintln!("--threads-only needs `--features parallel`");
            return;
        }
        // Everything below except the threads section is single-threaded and timed by
        // the calling thread's CPU clock, so a `parallel` build must not hand the
        // products to the pool (its workers' time would not be counted).
        #[cfg(feature = "parallel")]
        sae_kernels::kernels::gemm::set_max_threads(1);
        // `--encode-only`: just the peak and the single-vector encodes.
        let encode_only = std::env::args().any(|a| a == "--encode-only");
        let reps = if quick { 2 } else { 4 };
        println!(
            "sae-kernels GEMM benchmark (single thread, CPU time, best of {reps}; the four encoder products per shape timed in turn, best of {} rounds); kernel: {}; {}",
            2 * reps,
            sae_kernels::kernels::active_kernel(),
            loadavg_line()
        );

        #[cfg(target_arch = "x86_64")]
        let (p512, p256) = peak::measure(reps);
        #[cfg(not(target_arch = "x86_64"))]
        let (p512, p256): (Option<f64>, Option<f64>) = (None, None);
        let mut peak = p512.unwrap_or(0.0).max(p256.unwrap_or(0.0));
        #[cfg(target_arch = "x86_64")]
        let pbf16 = peak::measure_bf16(reps);
        #[cfg(not(target_arch = "x86_64"))]
        let pbf16: Option<f64> = None;
        println!(
            "FMA peak: {:.1} GFLOP/s (512-bit FMA: {}, 256-bit FMA: {})",
            peak,
            p512.map_or("n/a".into(), |v| format!("{v:.1}")),
            p256.map_or("n/a".into(), |v| format!("{v:.1}")),
        );
        println!(
            "bf16 dot-product (vdpbf16ps) peak: {} GFLOP/s",
            pbf16.map_or("n/a".into(), |v| format!("{v:.1}"))
        );
        // Can a bf16 GEMM reach 1.6× the f32 one on this CPU? The raw instruction
        // rates decide: vdpbf16ps does 2 multiply-adds per lane, vfmadd231ps 1.
        #[cfg(target_arch = "x86_64")]
        if let Some(rows) = peak::bf16_vs_fma(reps) {
            println!(
                "vdpbf16ps vs vfmadd231ps (zmm, register-only, independent chains, same run):"
            );
            // The peak is the best FMA rate of the run: the chain loops are FMA loops too
            // (on a busy VM one measurement can come out low, and "% of peak" should
            // not then exceed 100).
            let best = rows.iter().map(|r| r.1 * 32.0).fold(0.0f64, f64::max);
            if best > peak {
                println!("  (FMA peak taken as {best:.1} GFLOP/s: the best FMA rate below)");
                peak = best;
            }
            for (chains, f, d) in rows {
                println!(
                    "  {chains:>2} chains: FMA {f:.2} G instr/s = {:.1} GFLOP/s; dpbf16 {d:.2} G instr/s = {:.1} GFLOP/s; bf16/f32 FLOP rate {:.2}x",
                    f * 32.0,
                    d * 64.0,
                    d * 64.0 / (f * 32.0)
                );
            }
        }
        // `--peak-only`: just the peaks and the instruction microbenchmark.
        if std::env::args().any(|a| a == "--peak-only") {
            return;
        }
        let pct = |g: f64| {
            if peak > 0.0 {
                100.0 * g / peak
            } else {
                f64::NAN
            }
        };

        println!();
        println!(
            "{:<22} {:>10} {:>10} {:>10} {:>9} {:>9} {:>8} {:>8} {:>8}",
            "shape (n,d,h)",
            "ours GF/s",
            "mm GF/s",
            "gemm GF/s",
            "ours/mm",
            "ours/gemm",
            "ours %pk",
            "mm %pk",
            "gemm %pk"
        );
        let shapes = [(4096, 512, 4096), (1024, 768, 16384), (256, 64, 512)];
        for &(n, d, h) in shapes.iter().filter(|_| !encode_only) {
            let x = data(n * d, 1);
            let m = data(h * d, 2);
            let bias = data(h, 3);
            let mut c = vec![0.0f32; n * h];
            let mut pack = vec![0.0f32; pack_len(n, h, d)];
            let flop = 2.0 * (n * d * h) as f64;
            let best = four_products((n, d, h), (&x, &m, &bias), &mut c, &mut pack, 2 * reps);
            // The same window length for the 16-bit products below.
            let inner = ((3e8 / flop) as usize).max(1);
            let [t_ours, t_mm, t_g, t_fused, t_packed] = best;
            let (go, gm, gg, gf) = (
                flop / t_ours * 1e-9,
                flop / t_mm * 1e-9,
                flop / t_g * 1e-9,
                flop / t_fused * 1e-9,
            );
            let label = format!("({n},{d},{h})");
            println!(
                "{:<22} {:>10.1} {:>10.1} {:>10.1} {:>8.2}x {:>8.2}x {:>7.1}% {:>7.1}% {:>7.1}%",
                label,
                go,
                gm,
                gg,
                t_mm / t_ours,
                t_g / t_ours,
                pct(go),
                pct(gm),
                pct(gg)
            );
            for (label, g, note) in [
                ("  + bias+ReLU fused", gf, ""),
                (
                    "  B packed once",
                    flop / t_packed * 1e-9,
                    "   (M packed beforehand, gemm_packed)",
                ),
            ] {
                println!(
                    "{label:<22} {g:>10.1} {:>10} {:>7} {:>8.1}%{note}",
                    "",
                    "",
                    pct(g)
                );
            }
            // Batch encode with bf16 weights: f32 compute (widened in the packing), and
            // the bf16 dot-product kernel where the CPU has AVX512_BF16.
            let wb: Vec<u16> = m.iter().map(|&v| Half::Bf16.from_f32(v)).collect();
            let mut c16 = vec![0.0f32; n * h];
            for (label, dot) in [
                ("  bf16 weights, f32 compute", false),
                ("  bf16 dot (vdpbf16ps)", true),
            ] {
                if dot && !bf16_dot_available() {
                    println!("{label:<22} n/a (no AVX512_BF16)");
                    continue;
                }
                let run = if dot {
                    gemm_nt_half_bf16_dot
                } else {
                    gemm_nt_half
                };
                let t16 = best_of(reps, || {
                    for _ in 0..inner {
                        half_encode(run, (n, d, h), &x, &wb, &mut c16, &mut pack);
                    }
                }) / inner as f64;
                let g16 = flop / t16 * 1e-9;
                println!(
                    "{:<22} {:>10.1} {:>10} {:>10} {:>7.2}x of ours f32 {:>14.1}%",
                    label,
                    g16,
                    "",
                    "",
                    t_ours / t16,
                    pct(g16)
                );
            }
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
            // The f32-weight codes to compare the 16-bit results with.
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
            for format in [Half::Bf16, Half::F16] {
                let w: Vec<u16> = m.iter().map(|&v| format.from_f32(v)).collect();
                let mut c16 = vec![0.0f32; n * h];
                let t16 = best_of(reps, || {
                    for _ in 0..inner {
                        gemm_nt_half(
                            format,
                            1.0,
                            MatRef::row_major("x", &x, n, d).unwrap(),
                            &w,
                            h,
                            0.0,
                            MatMut::row_major("c", &mut c16, n, h).unwrap(),
                            Epilogue::BiasRelu(&bias),
                            &mut pack,
                        )
                        .unwrap();
                    }
                }) / inner as f64;
                // Largest deviation from the f32-weight result, relative to its scale.
                let scale = c.iter().fold(0.0f32, |a, v| a.max(v.abs()));
                let dev = c
                    .iter()
                    .zip(&c16)
                    .fold(0.0f32, |a, (p, q)| a.max((p - q).abs()));
                println!(
                    "  {:?} weights: {:.3} ms = {:.2}x the f32 time, {:.2}x the time to stream the f32 M; max |Δ| vs f32 weights {:.1e} (max |code| {:.2})",
                    format,
                    t16 * 1e3,
                    t16 / t_ours,
                    t16 / t_stream,
                    dev,
                    scale
                );
            }
        }

        if encode_only {
            return;
        }
        // 1 vs 2 threads (feature `parallel`), wall time, idle and oversubscribed.
        #[cfg(feature = "parallel")]
        threads_1v2(reps, busy_arg());

        // Forward + backward of the tied SAE.
        {
            let (n, d, h) = (4096usize, 512usize, 4096usize);
            let dims = Dims::new(d, h).unwrap();
            let x = data(n * d, 7);
            let m: Vec<f32> = data(h * d, 8).iter().map(|v| v * 0.05).collect();
            let b = vec![-0.01f32; h];
            let (mut gm, mut gb) = (vec![0.0f32; h * d], vec![0.0f32; h]);
            let rows = 256;
            let plan = grad_scratch_len(Arch::tied(), dims, rows);
            // The plan's scratch, and the owned Trainer's: the weights packed once.
            let more = sae_kernels::model::grad_batch_extra_len(Arch::tied(), dims, n)
                + sae_kernels::model::grad_prepack_len(Arch::tied(), dims);
            let (mut s0, mut s1) = (vec![0.0f32; plan], vec![0.0f32; plan + more]);
            let mut t = [f64::INFINITY; 2];
            for _ in 0..reps.min(3) {
                for (ti, s) in t.iter_mut().zip([&mut s0, &mut s1]) {
                    *ti = ti.min(best_of(1, || {
                        let p = Params::tied(dims, &m, &b).unwrap();
                        let g = ParamsMut::tied(dims, &mut gm, &mut gb).unwrap();
                        black_box(
                            loss_and_grad(p, &x, n, &LossOptions::alpha(1e-3), g, s).unwrap(),
                        );
                    }));
                }
            }
            let flop = 10.0 * (n * d * h) as f64;
            println!();
            for (label, t) in [("", t[0]), (", weights packed once", t[1])] {
                let g = flop / t * 1e-9;
                println!(
                    "forward+backward ({n},{d},{h}), {rows}-row blocks{label}: {:.1} ms, {:.1} GFLOP/s (10·n·d·h), {:.1}% of peak",
                    t * 1e3,
                    g,
                    pct(g)
                );
            }
        }

        // The tied dense step phase by phase, against the peak measured above. One
        // round of its timings does the work of about six steps, so fewer rounds than
        // `bench_sparse --breakdown` (3 by default).
        let step_reps = if quick { 1 } else { 2 };
        println!();
        print_header(step_reps);
        let case = StepCase::tied_dense(4096, 512, 4096);
        let peak = (peak > 0.0).then_some(peak);
        breakdown(&case, TRAINER_BLOCK_ROWS, step_reps, peak);
    }
}

/// On wasm32 (WASI, e.g. `node tools/node-wasi-run.mjs bench.wasm`): the encoder
/// `relu(X·Mᵀ + b)` at `(256, 384, 3072)` and for one vector, wall time, best of 30,
/// to compare builds: scalar wasm, `+simd128`, and `+simd128,+relaxed-simd` with the
/// `relaxed-simd` feature (see `.ci/stages/51-wasm.sh`).
#[cfg(target_family = "wasm")]
mod wasm_imp {
    use sae_kernels::kernels::gemm::{Epilogue, MatMut, MatRef, gemm, pack_len};

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

    pub fn main() {
        let build = if cfg!(all(
            feature = "relaxed-simd",
            target_feature = "relaxed-simd"
        )) {
            "simd128 + relaxed-simd (f32x4.relaxed_madd)"
        } else if cfg!(target_feature = "simd128") {
            "simd128"
        } else {
            "scalar wasm"
        };
        println!("sae-kernels wasm encode benchmark; build: {build}");
        let (d, h) = (384usize, 3072usize);
        let m = data(h * d, 2);
        let bias = data(h, 3);
        for n in [256usize, 1] {
            let x = data(n * d, 1);
            let mut c = vec![0.0f32; n * h];
            let mut pack = vec![0.0f32; pack_len(n, h, d)];
            let flop = 2.0 * (n * d * h) as f64;
            let inner = ((2e8 / flop) as usize).max(1);
            let mut best = f64::INFINITY;
            for _ in 0..30 {
                let t0 = std::time::Instant::now();
                for _ in 0..inner {
                    gemm(
                        1.0,
                        MatRef::row_major("x", &x, n, d).unwrap(),
                        MatRef::row_major("m", &m, h, d).unwrap().t(),
                        0.0,
                        MatMut::row_major("c", &mut c, n, h).unwrap(),
                        Epilogue::BiasRelu(&bias),
                        &mut pack,
                    )
                    .unwrap();
                }
                best = best.min(t0.elapsed().as_secs_f64() / inner as f64);
            }
            let sum: f64 = c.iter().map(|&v| f64::from(v)).sum();
            println!(
                "  encode ({n},{d},{h}): {:.2} ms, {:.1} GFLOP/s (checksum {sum:.6e})",
                best * 1e3,
                flop / best * 1e-9
            );
        }
    }
}

fn main() {
    #[cfg(not(target_family = "wasm"))]
    imp::main();
    #[cfg(target_family = "wasm")]
    wasm_imp::main();
}
