//! Measurement helpers shared by the benchmark examples (and `train`'s step timer):
//! per-thread CPU time, best-of timing, interleaved rounds, deterministic normal data,
//! and the core's f32 FMA peak measured in the same run; [`breakdown`]: the training
//! step phase by phase, for `bench_sparse --breakdown` and `bench`.
//!
//! Included with `mod common;` (Cargo does not build `examples/common/` as an example).
#![allow(dead_code)]

pub mod breakdown;

use std::hint::black_box;

/// CPU time of this thread in seconds (`CLOCK_THREAD_CPUTIME_ID`): unlike wall time it
/// does not count time the machine gives to other processes. NaN if the clock fails.
pub fn cpu_now() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return f64::NAN;
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// Best CPU time of `reps` runs of `f` (after one warm-up run).
pub fn best_of(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut best = f64::INFINITY;
    for _ in 0..reps {
        let t0 = cpu_now();
        f();
        best = best.min(cpu_now() - t0);
    }
    best
}

/// Best times by `clock` of `reps` interleaved rounds of each closure (after one
/// warm-up each): a burst of load hits every closure alike.
pub fn best_interleaved_by(
    reps: usize,
    clock: fn() -> f64,
    fs: &mut [&mut dyn FnMut()],
) -> Vec<f64> {
    for f in fs.iter_mut() {
        f();
    }
    let mut best = vec![f64::INFINITY; fs.len()];
    for _ in 0..reps {
        for (f, b) in fs.iter_mut().zip(best.iter_mut()) {
            let t0 = clock();
            f();
            *b = b.min(clock() - t0);
        }
    }
    best
}

/// [`best_interleaved_by`] in CPU time.
pub fn best_interleaved(reps: usize, fs: &mut [&mut dyn FnMut()]) -> Vec<f64> {
    best_interleaved_by(reps, cpu_now, fs)
}

/// Deterministic standard normal data (SplitMix64 + Box–Muller).
pub fn normal(len: usize, seed: u64) -> Vec<f32> {
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

/// The f32 FMA peak of this core in GFLOP/s, measured now (512-bit FMAs with AVX-512,
/// else 256-bit); `None` on other targets.
#[cfg(target_arch = "x86_64")]
pub fn fma_peak() -> Option<f64> {
    use core::arch::x86_64::*;
    #[target_feature(enable = "avx512f")]
    fn fma512(iters: u64) -> f32 {
        let (a, b) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
        let mut acc = [_mm512_set1_ps(1.0); 12];
        for _ in 0..iters {
            for x in acc.iter_mut() {
                *x = _mm512_fmadd_ps(*x, a, b);
            }
        }
        let s = acc
            .iter()
            .fold(_mm512_setzero_ps(), |s, &x| _mm512_add_ps(s, x));
        _mm512_reduce_add_ps(s)
    }
    #[target_feature(enable = "avx2,fma")]
    fn fma256(iters: u64) -> f32 {
        let (a, b) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
        let mut acc = [_mm256_set1_ps(1.0); 12];
        for _ in 0..iters {
            for x in acc.iter_mut() {
                *x = _mm256_fmadd_ps(*x, a, b);
            }
        }
        let s = acc
            .iter()
            .fold(_mm256_setzero_ps(), |s, &x| _mm256_add_ps(s, x));
        let mut out = [0.0f32; 8];
        // SAFETY: `out` holds 8 f32; storeu has no alignment requirement.
        unsafe { _mm256_storeu_ps(out.as_mut_ptr(), s) };
        out.iter().sum()
    }
    let iters = 20_000_000u64;
    let (lanes, mut f): (f64, Box<dyn FnMut()>) = if std::is_x86_feature_detected!("avx512f") {
        // SAFETY: AVX-512F was detected just above.
        (
            16.0,
            Box::new(|| {
                black_box(unsafe { fma512(black_box(iters)) });
            }),
        )
    } else if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: AVX2 and FMA were detected just above.
        (
            8.0,
            Box::new(|| {
                black_box(unsafe { fma256(black_box(iters)) });
            }),
        )
    } else {
        return None;
    };
    let t = best_interleaved(5, &mut [&mut *f])[0];
    Some(iters as f64 * 12.0 * lanes * 2.0 / t * 1e-9)
}

#[cfg(not(target_arch = "x86_64"))]
pub fn fma_peak() -> Option<f64> {
    None
}

/// [`fma_peak`] unless `--no-peak` is on the command line (e.g. under valgrind, which
/// has no AVX-512), printed as the run's first line.
pub fn announced_peak() -> Option<f64> {
    if std::env::args().any(|a| a == "--no-peak") {
        println!("FMA peak: not measured (--no-peak)");
        return None;
    }
    let peak = fma_peak();
    match peak {
        Some(p) => println!("FMA peak of this core, measured now: {p:.1} GFLOP/s"),
        None => println!("FMA peak: not measured on this target"),
    }
    peak
}

/// The value after `flag` (e.g. `"--n"`) on the command line, if any.
pub fn arg(flag: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    let i = args.iter().position(|a| a == flag)?;
    args.get(i + 1).cloned()
}

/// Whether the case `name` was asked for: `--only WORD` selects the names containing
/// WORD; without `--only`, every case.
pub fn only(name: &str) -> bool {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == "--only") {
        Some(i) => args.get(i + 1).is_none_or(|w| name.contains(w.as_str())),
        None => true,
    }
}

/// How many values a benchmark flag takes.
#[derive(Clone, Copy)]
pub enum Values {
    /// A switch.
    None,
    /// Exactly one value (its placeholder name for `--help`).
    One(&'static str),
    /// An optional value.
    Optional(&'static str),
}

/// One command-line flag of a benchmark: its long name (without `--`), its values and
/// its help line.
pub type Flag = (&'static str, Values, &'static str);

/// `--no-peak` and `--only WORD`, which [`announced_peak`] and [`only`] read.
pub const PEAK_AND_ONLY: [Flag; 2] = [
    (
        "no-peak",
        Values::None,
        "skip measuring the FMA peak (e.g. under valgrind, which has no AVX-512)",
    ),
    (
        "only",
        Values::One("WORD"),
        "run only the cases whose name contains WORD",
    ),
];

/// Check the command line against `flags` with clap before a benchmark starts:
/// `--help` prints `about` and the flags and exits; an unknown flag or a missing value
/// is an error (exit status 2) instead of a silent full run. The benchmarks then read
/// their flags from `std::env::args()`.
pub fn cli(name: &'static str, about: &'static str, flags: &[&[Flag]]) {
    use clap::{Arg, ArgAction, Command};
    let mut cmd = Command::new(name).about(about);
    for &(id, values, help) in flags.iter().copied().flatten() {
        let arg = Arg::new(id).long(id).help(help);
        cmd = cmd.arg(match values {
            Values::None => arg.action(ArgAction::SetTrue),
            Values::One(v) => arg.value_name(v).num_args(1),
            Values::Optional(v) => arg.value_name(v).num_args(0..=1),
        });
    }
    cmd.get_matches();
}
