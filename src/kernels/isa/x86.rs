//! The x86_64 tokens [`Avx2`] and [`Avx512`]: CPU detection without `std`, the
//! micro-kernels, the register-blocked small products, the transposing pack and the
//! row kernels, all written with `core::arch` intrinsics and chosen at run time.
//!
//! `wide` cannot be used here: its code paths are fixed by `cfg(target_feature)` at
//! compile time, so inside a `#[target_feature(enable = "avx2,fma")]` function of a
//! default build it still emits SSE halves without FMA. Instead the kernels are
//! written once over a tiny SIMD trait ([`Simd`]), implemented for `__m256`
//! (AVX2+FMA) and `__m512` (AVX-512F) — the tokens' `Isa::Vector` types — and
//! instantiated inside one `#[target_feature]` function per instruction set.
//! Everything is `#[inline(always)]` down to the intrinsics, so each instantiation
//! compiles to straight-line `vfmadd231ps` code on `ymm`/`zmm` registers.
//!
//! ## Tile shapes (measured on the benchmark machine: an AVX-512 server core with
//! two 512-bit FMA pipes of 4-cycle latency and 32 vector registers)
//! - AVX-512: `MR×NR = 8×48` (8 rows × 3 `zmm`): 24 accumulators (≥ 8 are needed to
//!   hide 2 pipes × 4 cycles) + 3 B vectors + 1 broadcast = 28 of 32 registers. Each
//!   `k` step issues 3 vector loads and 8 broadcasts for 24 FMAs, within two loads
//!   per cycle. `MR = 8` divides the model's row blocks. Against `8×32`, `12×32` and
//!   `6×64` this shape was the fastest at the SAE shapes (`examples/bench.rs`).
//! - AVX2: `6×16` (6 rows × 2 `ymm`): 12 accumulators + 2 B vectors + 1 broadcast fill
//!   15 of the 16 `ymm` registers, the classic shape for 16-register AVX2.
//!
//! The B micro-panel (`KC·NR` floats) is bigger than L1 at `KC = 768`, so the kernel
//! prefetches it [`PF_DIST`] steps ahead. (Prefetching the C tile right before its
//! own `k` loop was tried: no gain at `k ≥ 256`, 6 % slower at `k = 64`. The loop
//! nest instead prefetches the *next* tile's C rows before each tile, a whole
//! `k` loop ahead: 2–3 % of peak at `(1024, 384, 3072)`.)
//!
//! ## Store path and edge tiles
//! A full tile without bias is stored by [`store_full`], one straight-line
//! instantiation per (α ≠ 1, β ≠ 0) case; the general [`store_acc`] (ragged tiles,
//! the tile buffer, bias + ReLU) branches per vector. An edge tile of at most 16 or 32 columns (AVX2: 8) runs an
//! `8×16` or `8×32` product over the same packed panel instead of multiplying the
//! zero padding. Measured in one process with the variants interleaved over 10
//! rounds at `(256, 64, 512)` (`k = 64`, where per-tile costs weigh most; the
//! last of 11 panels has 32 columns): both 150.3 GFLOP/s, without the straight
//! store 145.1, without the narrow edge tile 144.8, neither 141.5 (gemm 0.19 in
//! the same rounds: 147.1). At `k ≥ 512` both are within noise.
//!
//! ## Measured and not kept (same method: variants interleaved in one process;
//! ratio to gemm 0.19 timed in the same rounds; the machine was shared, ±1–2 %)
//! - Prefetch distance 4 / 8 / 12 / 16 / 24 `k` steps: within ±1 % at the three
//!   encoder shapes (16–24 maybe +0.5 % at `k ≥ 512`, −2 % at `k = 64`); no B
//!   prefetch at all: −6 % at `k ≥ 512`, −2 % at `k = 64`. [`PF_DIST`] stays 8.
//! - `prefetchnta` instead of `prefetcht0` for B: 2.7× slower at `(4096, 512,
//!   4096)` (the packed B block must stay in L2). Prefetching the A panel too:
//!   no change.
//! - `12×32` instead of `8×48` (two binaries alternated three times): 0.90–0.92×
//!   gemm 0.19 at `(1024, 768, 16384)` against 0.97–1.00× for `8×48`, and 2–4 %
//!   slower at `(256, 64, 512)`.
//! - Reading A in place (no A packing; the broadcasts address 8 rows `lda`
//!   apart): slower at every shape (−3 % at `(256, 64, 512)`, much more at
//!   `k = 768`), although skipping the A pack alone is worth 4 % at `k = 64`
//!   (B pack: 6 %, measured by skipping it).
//! - 16×16 AVX-512 transposes for the B pack (full 64-byte stores) instead of
//!   8×8 AVX2 ones: within ±0.5 % at `(256, 64, 512)` over four 20-round runs.
//! - Bias + ReLU through [`store_full`] too: 137.0 GFLOP/s at `(256, 64, 512)`
//!   against 144.4 through [`store_acc`] (20 interleaved rounds), so biased tiles
//!   keep the general path. The fused store then costs about 3 % at `k = 64`. Its
//!   add, compare and masked move are 72 vector operations per tile on the FMA
//!   ports, 4.7 % of a `k = 64` tile. `vmaxps` would save one per vector but
//!   returns −0.0 for a −0.0 input, where the reference gives +0.0.
//!
//! ## Safety
//! Intrinsics run only (a) inside `#[target_feature]` functions, which are `unsafe`
//! to call from code without those features and are called only by methods of a
//! token (whose existence proves the features were detected), or (b) in the
//! `unsafe` methods of [`Simd`], whose contract is that the caller runs under the
//! matching features (again: holds the token). Raw-pointer loads and stores are each
//! preceded by a length check of the slice they point into.

use super::{Avx2, Avx512, Isa, Kernel, Out, Private, Store, TILE_MAX, put};
use crate::kernels::half::Half;
use crate::kernels::mat::{Epilogue, MatMut, MatRef};
use core::arch::x86_64::*;
use core::sync::atomic::{AtomicU8, Ordering};

// ---------------------------------------------------------------------------------
// Detection: cpuid + xgetbv from `core`, no `std` needed. Cached in an atomic.
// ---------------------------------------------------------------------------------

const F_DONE: u8 = 1;
const F_AVX2_FMA: u8 = 2;
const F_AVX512F: u8 = 4;
const F_F16C: u8 = 8;
const F_AVX512BF16: u8 = 16;

static FEATURES: AtomicU8 = AtomicU8::new(0);

/// `xgetbv(0)`: which register states the OS saves (XCR0).
///
/// # Safety
/// The CPU must report OSXSAVE (CPUID.1:ECX bit 27), or the instruction faults.
#[cfg(not(miri))]
#[target_feature(enable = "xsave")]
unsafe fn xcr0() -> u64 {
    // SAFETY: the caller checked OSXSAVE (function contract).
    unsafe { _xgetbv(0) }
}

/// Read the CPU's features (never cached; see [`features`]).
#[cfg(not(miri))]
#[allow(unused_unsafe)]
fn probe() -> u8 {
    // SAFETY: `cpuid` exists on every x86_64 CPU; leaves above the maximum reported
    // by leaf 0 are not queried.
    let l0 = unsafe { __cpuid(0) };
    if l0.eax < 1 {
        return 0;
    }
    // SAFETY: as above (leaf 1 ≤ max leaf).
    let l1 = unsafe { __cpuid(1) };
    let bit = |r: u32, b: u32| (r >> b) & 1 == 1;
    let (fma, osxsave, avx, f16c) = (
        bit(l1.ecx, 12),
        bit(l1.ecx, 27),
        bit(l1.ecx, 28),
        bit(l1.ecx, 29),
    );
    if !(osxsave && avx) {
        return 0;
    }
    // SAFETY: OSXSAVE is set, so `xgetbv` is enabled.
    let xcr0 = unsafe { xcr0() };
    // XCR0 bits 1 (SSE) and 2 (AVX upper halves) must both be saved by the OS.
    if xcr0 & 0b110 != 0b110 {
        return 0;
    }
    let mut f = 0;
    if f16c {
        f |= F_F16C;
    }
    if l0.eax < 7 {
        return f;
    }
    // SAFETY: leaf 7 ≤ max leaf.
    let l7 = unsafe { __cpuid_count(7, 0) };
    if bit(l7.ebx, 5) && fma {
        f |= F_AVX2_FMA;
    }
    // AVX-512F (leaf 7 EBX bit 16) with the opmask, ZMM_Hi256 and Hi16_ZMM states
    // (XCR0 bits 5–7) enabled by the OS; the kernels also use AVX2 and FMA.
    if bit(l7.ebx, 16) && xcr0 & 0xE0 == 0xE0 && f & F_AVX2_FMA != 0 {
        f |= F_AVX512F;
        if l7.eax >= 1 {
            // SAFETY: sub-leaf 1 exists (leaf 7 EAX reports the max sub-leaf).
            let l71 = unsafe { __cpuid_count(7, 1) };
            if bit(l71.eax, 5) {
                f |= F_AVX512BF16;
            }
        }
    }
    f
}

/// Miri cannot run `cpuid`: the x86 kernels are reported unavailable.
#[cfg(miri)]
fn probe() -> u8 {
    0
}

/// The detected features (probed once, then cached).
#[inline]
fn features() -> u8 {
    let f = FEATURES.load(Ordering::Relaxed);
    if f & F_DONE != 0 {
        return f;
    }
    let f = probe() | F_DONE;
    FEATURES.store(f, Ordering::Relaxed);
    f
}

/// The AVX2 + FMA token, if the CPU and OS support it.
#[inline]
pub(crate) fn avx2() -> Option<Avx2> {
    (features() & F_AVX2_FMA != 0).then_some(Avx2(Private::detected()))
}

/// The AVX-512F token, if the CPU and OS support AVX-512F, AVX2 and FMA.
#[inline]
pub(crate) fn avx512() -> Option<Avx512> {
    (features() & F_AVX512F != 0).then_some(Avx512(Private::detected()))
}

#[allow(dead_code)] // used by the half-precision kernels
/// Whether the CPU has F16C (half-precision conversion for 256-bit vectors).
#[inline]
pub(crate) fn has_f16c() -> bool {
    features() & F_F16C != 0
}

/// The AVX-512 BF16 token, if the CPU and OS support AVX-512F and AVX512_BF16
/// (`vdpbf16ps`), besides AVX2 and FMA.
#[inline]
pub(crate) fn avx512bf16() -> Option<Avx512Bf16> {
    (features() & F_AVX512BF16 != 0).then_some(Avx512Bf16(Avx512(Private::detected())))
}

/// The bf16 dot-product token: the [`Avx512`] kernels, except that the GEMM
/// micro-kernel multiplies bf16 pairs with `vdpbf16ps` (twice the multiply-adds of an
/// f32 FMA per instruction, f32 accumulation). Its packed panels hold pairs of bf16
/// values along `k` in each 32-bit slot (`Isa::BF16_PAIRS`): A is rounded to bf16 as
/// it is packed. Never selected automatically: only
/// [`crate::kernels::gemm::gemm_nt_half_bf16_dot`] uses it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Avx512Bf16(Avx512);

// ---------------------------------------------------------------------------------
// The SIMD vocabulary of the kernels, for one register type.
// ---------------------------------------------------------------------------------

/// The SIMD operations the kernels need, for one register type.
///
/// # Safety
/// Implementations use intrinsics of an ISA extension; every method may only be
/// called from code running under that extension's `#[target_feature]` (after
/// detection). Pointer arguments must be valid for the lanes they access.
unsafe trait Simd: Copy {
    const LANES: usize;
    unsafe fn zero() -> Self;
    unsafe fn splat(x: f32) -> Self;
    unsafe fn loadu(p: *const f32) -> Self;
    /// Loads lanes `0..n` (`n < LANES`) and zeroes the rest; never touches `p + n..`.
    unsafe fn load_part(p: *const f32, n: usize) -> Self;
    unsafe fn storeu(p: *mut f32, v: Self);
    /// Stores lanes `0..n` (`n < LANES`); never touches `p + n..`.
    unsafe fn store_part(p: *mut f32, v: Self, n: usize);
    /// `a·b + c`, fused.
    unsafe fn fmadd(a: Self, b: Self, c: Self) -> Self;
    unsafe fn mul(a: Self, b: Self) -> Self;
    unsafe fn add(a: Self, b: Self) -> Self;
    /// [`crate::kernels::vector::relu`] per lane: `x > 0 || NaN ? x : +0`.
    unsafe fn relu(a: Self) -> Self;
    /// Sum of the lanes in a fixed order.
    unsafe fn hsum(a: Self) -> f32;
    /// `LANES` bf16 values at `p`, widened to `f32` (exact).
    unsafe fn load_bf16(p: *const u16) -> Self;
    /// `LANES` IEEE f16 values at `p`, widened to `f32` (exact). For `__m256`, F16C
    /// must be enabled as well.
    unsafe fn load_f16(p: *const u16) -> Self;
}

// SAFETY: the methods use AVX and FMA intrinsics only; callers run under
// `#[target_feature(enable = "avx2,fma")]` (see the trait's contract).
unsafe impl Simd for __m256 {
    const LANES: usize = 8;
    #[inline(always)]
    unsafe fn zero() -> Self {
        // SAFETY: register-only intrinsics; the ISA is enabled (trait contract).
        unsafe { _mm256_setzero_ps() }
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> Self {
        // SAFETY: register-only intrinsics; the ISA is enabled (trait contract).
        unsafe { _mm256_set1_ps(x) }
    }
    #[inline(always)]
    unsafe fn loadu(p: *const f32) -> Self {
        // SAFETY: the ISA is enabled and `p` is valid for the lanes accessed
        // (the trait contract, upheld by every caller).
        unsafe { _mm256_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn load_part(p: *const f32, n: usize) -> Self {
        // SAFETY: the ISA is enabled and `p` is valid for the lanes accessed
        // (the trait contract, upheld by every caller).
        unsafe {
            let idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
            let mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(n as i32), idx);
            // Masked-off lanes are neither read nor faulted on.
            _mm256_maskload_ps(p, mask)
        }
    }
    #[inline(always)]
    unsafe fn storeu(p: *mut f32, v: Self) {
        // SAFETY: the ISA is enabled and `p` is valid for the lanes accessed
        // (the trait contract, upheld by every caller).
        unsafe { _mm256_storeu_ps(p, v) }
    }
    #[inline(always)]
    unsafe fn store_part(p: *mut f32, v: Self, n: usize) {
        // SAFETY: the ISA is enabled and `p` is valid for the lanes accessed
        // (the trait contract, upheld by every caller).
        unsafe {
            let idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
            let mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(n as i32), idx);
            // Masked-off lanes are neither written nor faulted on.
            _mm256_maskstore_ps(p, mask, v)
        }
    }
    #[inline(always)]
    unsafe fn fmadd(a: Self, b: Self, c: Self) -> Self {
        // SAFETY: register-only intrinsics; the ISA is enabled (trait contract).
        unsafe { _mm256_fmadd_ps(a, b, c) }
    }
    #[inline(always)]
    unsafe fn mul(a: Self, b: Self) -> Self {
        // SAFETY: register-only intrinsics; the ISA is enabled (trait contract).
        unsafe { _mm256_mul_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn add(a: Self, b: Self) -> Self {
        // SAFETY: register-only intrinsics; the ISA is enabled (trait contract).
        unsafe { _mm256_add_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn relu(a: Self) -> Self {
        // SAFETY: register-only intrinsics; the ISA is enabled (trait contract).
        unsafe {
            let keep = _mm256_cmp_ps::<_CMP_NLE_UQ>(a, _mm256_setzero_ps());
            _mm256_and_ps(keep, a)
        }
    }
    #[inline(always)]
    unsafe fn hsum(a: Self) -> f32 {
        // SAFETY: register-only intrinsics; the ISA is enabled (trait contract).
        unsafe {
            let s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps::<1>(a));
            let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
            let s = _mm_add_ss(s, _mm_shuffle_ps::<0b01>(s, s));
            _mm_cvtss_f32(s)
        }
    }
    #[inline(always)]
    unsafe fn load_bf16(p: *const u16) -> Self {
        // SAFETY: the ISA is enabled and `p` is valid for 8 `u16` (trait contract).
        unsafe {
            let h = _mm_loadu_si128(p.cast::<__m128i>());
            _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h)))
        }
    }
    #[inline(always)]
    unsafe fn load_f16(p: *const u16) -> Self {
        // SAFETY: AVX2 and F16C are enabled and `p` is valid for 8 `u16` (contract).
        unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p.cast::<__m128i>())) }
    }
}

// SAFETY: the methods use AVX-512F intrinsics only; callers run under
// `#[target_feature(enable = "avx512f")]` (see the trait's contract).
unsafe impl Simd for __m512 {
    const LANES: usize = 16;
    #[inline(always)]
    unsafe fn zero() -> Self {
        // SAFETY: register-only intrinsics; the ISA is enabled (trait contract).
        unsafe { _mm512_setzero_ps() }
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> Self {
        // SAFETY: register-only intrinsics; the ISA is enabled (trait contract).
        unsafe { _mm512_set1_ps(x) }
    }
    #[inline(always)]
    unsafe fn loadu(p: *const f32) -> Self {
        // SAFETY: the ISA is enabled and `p` is valid for the lanes accessed
        // (the trait contract, upheld by every caller).
        unsafe { _mm512_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn load_part(p: *const f32, n: usize) -> Self {
        // SAFETY: the ISA is enabled and `p` is valid for `n` lanes (trait contract);
        // masked-off lanes are neither read nor faulted on.
        unsafe { _mm512_maskz_loadu_ps(((1u32 << n) - 1) as u16, p) }
    }
    #[inline(always)]
    unsafe fn storeu(p: *mut f32, v: Self) {
        // SAFETY: the ISA is enabled and `p` is valid for the lanes accessed
        // (the trait contract, upheld by every caller).
        unsafe { _mm512_storeu_ps(p, v) }
    }
    #[inline(always)]
    unsafe fn store_part(p: *mut f32, v: Self, n: usize) {
        // SAFETY: the ISA is enabled and `p` is valid for `n` lanes (trait contract);
        // masked-off lanes are neither written nor faulted on.
        unsafe { _mm512_mask_storeu_ps(p, ((1u32 << n) - 1) as u16, v) }
    }
    #[inline(always)]
    unsafe fn fmadd(a: Self, b: Self, c: Self) -> Self {
        // SAFETY: register-only intrinsics; the ISA is enabled (trait contract).
        unsafe { _mm512_fmadd_ps(a, b, c) }
    }
    #[inline(always)]
    unsafe fn mul(a: Self, b: Self) -> Self {
        // SAFETY: register-only intrinsics; the ISA is enabled (trait contract).
        unsafe { _mm512_mul_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn add(a: Self, b: Self) -> Self {
        // SAFETY: register-only intrinsics; the ISA is enabled (trait contract).
        unsafe { _mm512_add_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn relu(a: Self) -> Self {
        // SAFETY: register-only intrinsics; the ISA is enabled (trait contract).
        unsafe {
            let keep = _mm512_cmp_ps_mask::<_CMP_NLE_UQ>(a, _mm512_setzero_ps());
            _mm512_maskz_mov_ps(keep, a)
        }
    }
    #[inline(always)]
    unsafe fn hsum(a: Self) -> f32 {
        // SAFETY: register-only intrinsics; the ISA is enabled (trait contract).
        unsafe {
            let lo = _mm512_castps512_ps256(a);
            let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(a)));
            <__m256 as Simd>::hsum(_mm256_add_ps(lo, hi))
        }
    }
    #[inline(always)]
    unsafe fn load_bf16(p: *const u16) -> Self {
        // SAFETY: the ISA is enabled and `p` is valid for 16 `u16` (trait contract).
        unsafe {
            let h = _mm256_loadu_si256(p.cast::<__m256i>());
            _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h)))
        }
    }
    #[inline(always)]
    unsafe fn load_f16(p: *const u16) -> Self {
        // SAFETY: the ISA is enabled and `p` is valid for 16 `u16` (trait contract).
        unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(p.cast::<__m256i>())) }
    }
}

/// The register-blocked product of an `MR×kc` A panel and a `kc×NR` B panel
/// (`NR = NV·LANES`), then the store.
///
/// # Safety
/// `V`'s ISA is enabled; `out` as documented on [`Out`]. (`a.len() ≥ kc·MR` and
/// `b.len() ≥ kc·NR` are checked here.)
#[inline(always)]
unsafe fn micro<V: Simd, const MR: usize, const NV: usize, const NVS: usize>(
    kc: usize,
    a: &[f32],
    b: &[f32],
    out: Out<'_>,
    st: &Store<'_>,
) {
    // SAFETY: forwarded contract (ISA enabled, `out` as documented on `Out`).
    unsafe { finish::<V, MR, NV>(F32Loop::<NVS> { kc, a, b }, out, st) }
}

/// A micro-kernel's loop over `k`, producing its accumulator tile; [`finish`] runs
/// it (inlined, in each store branch).
trait TileLoop<V, const MR: usize, const NV: usize> {
    /// # Safety
    /// The loop's instruction set is enabled.
    unsafe fn run(self) -> [[V; NV]; MR];
}

/// The f32 loop ([`accumulate`]) over panels of `NVS` vectors per row.
struct F32Loop<'a, const NVS: usize> {
    kc: usize,
    a: &'a [f32],
    b: &'a [f32],
}

impl<V: Simd, const MR: usize, const NV: usize, const NVS: usize> TileLoop<V, MR, NV>
    for F32Loop<'_, NVS>
{
    #[inline(always)]
    unsafe fn run(self) -> [[V; NV]; MR] {
        // SAFETY: forwarded contract.
        unsafe { accumulate::<V, MR, NV, NVS>(self.kc, self.a, self.b) }
    }
}

/// Run `tile`'s loop and store the tile as `out` and `st` ask.
///
/// A full tile is stored straight from the accumulator registers when it has no
/// bias (one instantiation per (α ≠ 1, β ≠ 0) case, [`store_full`]) or is the
/// encoder's fused store, α = 1, β = 0, bias, maybe ReLU ([`store_biased`]); every
/// other tile goes through [`store_acc`]. Each branch inlines its own copy of
/// `tile`'s loop: with one loop shared by all, LLVM kept the accumulators in memory
/// for `store_acc`'s reference and so spilled and reloaded the tile on the register
/// paths too. Measured with `bench --gemm-only 10`, alternating builds, 2026-12-04,
/// at `(256, 64, 512)` (at `k ≥ 512` the store is too small a part to tell):
/// - split loops, no bias: ours / gemm 0.19 0.98–0.99× → 1.02–1.03× (three runs
///   each), 92–94 % of peak;
/// - then the fused store from registers too: bias + ReLU 87.7–88.6 % → 91.3–92.1 %
///   of peak (three of four runs each; before the split, the register form was the
///   slower one, 137.0 against 144.4 GFLOP/s).
///
/// # Safety
/// `V`'s ISA is enabled and `tile` may run under it; `out` as documented on [`Out`].
#[inline(always)]
unsafe fn finish<V: Simd, const MR: usize, const NV: usize>(
    tile: impl TileLoop<V, MR, NV>,
    out: Out<'_>,
    st: &Store<'_>,
) {
    let nr = NV * V::LANES;
    if let Out::Direct { c, ldc, rows, cols } = &out {
        let (ldc, rows, cols) = (*ldc, *rows, *cols);
        let full = rows == MR && cols == nr && ldc >= nr && c.len() >= (MR - 1) * ldc + nr;
        let fused = st
            .bias
            .filter(|b| st.alpha == 1.0 && st.beta == 0.0 && b.len() >= nr);
        if full && let Some(bias) = fused {
            // SAFETY: forwarded contract (ISA enabled).
            let acc = unsafe { tile.run() };
            let Out::Direct { c, .. } = out else {
                unreachable!()
            };
            let cp = c.as_mut_ptr();
            let bias = bias.as_ptr();
            // SAFETY: the ISA is enabled (function contract); a full tile writes
            // `c[i·ldc + j]` for `i < MR`, `j < NR`, in bounds by `full`, and reads
            // `bias[..NR]`, in bounds by the length check above.
            unsafe {
                if st.relu {
                    store_biased::<V, MR, NV, true>(acc, cp, ldc, bias);
                } else {
                    store_biased::<V, MR, NV, false>(acc, cp, ldc, bias);
                }
            }
            return;
        }
        if full && st.bias.is_none() {
            // SAFETY: forwarded contract (ISA enabled).
            let acc = unsafe { tile.run() };
            let Out::Direct { c, .. } = out else {
                unreachable!()
            };
            let cp = c.as_mut_ptr();
            // SAFETY: the ISA is enabled (function contract); a full tile writes
            // `c[i·ldc + j]` for `i < MR`, `j < NR`, in bounds by the check above.
            unsafe {
                match (st.alpha != 1.0, st.beta != 0.0) {
                    (false, false) => store_full::<V, MR, NV, false, false>(acc, cp, ldc, st),
                    (true, false) => store_full::<V, MR, NV, true, false>(acc, cp, ldc, st),
                    (false, true) => store_full::<V, MR, NV, false, true>(acc, cp, ldc, st),
                    (true, true) => store_full::<V, MR, NV, true, true>(acc, cp, ldc, st),
                }
            }
            return;
        }
    }
    // SAFETY: forwarded contract (ISA enabled, `out` as documented on `Out`).
    unsafe { store_acc::<V, MR, NV>(&tile.run(), out, st) }
}

/// The `MR×(NV·LANES)` accumulator tile of an `MR×kc` A panel times a `kc×NR` B
/// panel whose rows are `NVS ≥ NV` vectors wide (the first `NV` used).
///
/// # Safety
/// `V`'s ISA is enabled. (`a.len() ≥ kc·MR` and `b.len() ≥ kc·NVS·LANES` are checked
/// here.)
#[inline(always)]
unsafe fn accumulate<V: Simd, const MR: usize, const NV: usize, const NVS: usize>(
    kc: usize,
    a: &[f32],
    b: &[f32],
) -> [[V; NV]; MR] {
    let nr = NV * V::LANES;
    // The packed panel's width: `NVS ≥ NV` vectors, of which the first `NV` are used
    // (an edge tile of at most `nr` columns skips the zero padding of its panel).
    let stride = NVS * V::LANES;
    assert!(NV <= NVS && a.len() >= kc * MR && b.len() >= kc * stride);
    // SAFETY: the ISA is enabled (function contract); the loop reads `a[..kc·MR]` and
    // `b[..kc·NR]`, in bounds by the assert above.
    unsafe {
        let mut acc = [[V::zero(); NV]; MR];
        let (mut ap, mut bp) = (a.as_ptr(), b.as_ptr());
        for _ in 0..kc {
            // The B micro-panel (KC·NR·4 bytes) is larger than L1: fetch it a few
            // steps ahead. Prefetches never fault, and the address is only formed
            // with wrapping arithmetic.
            for line in 0..nr.div_ceil(16) {
                _mm_prefetch::<_MM_HINT_T0>(
                    bp.wrapping_add(PF_DIST * stride + line * 16).cast::<i8>(),
                );
            }
            let mut bv = [V::zero(); NV];
            for (v, bvv) in bv.iter_mut().enumerate() {
                *bvv = V::loadu(bp.add(v * V::LANES));
            }
            for (i, row) in acc.iter_mut().enumerate() {
                let ai = V::splat(*ap.add(i));
                for (x, &bvv) in row.iter_mut().zip(&bv) {
                    *x = V::fmadd(ai, bvv, *x);
                }
            }
            ap = ap.add(MR);
            bp = bp.add(stride);
        }
        acc
    }
}

/// Store an `MR×NR` accumulator tile (`NR = NV·LANES`) as [`Out`] asks, applying the
/// [`Store`] for `Out::Direct`.
///
/// # Safety
/// `V`'s ISA is enabled; `out` as documented on [`Out`].
#[inline(always)]
unsafe fn store_acc<V: Simd, const MR: usize, const NV: usize>(
    acc: &[[V; NV]; MR],
    out: Out<'_>,
    st: &Store<'_>,
) {
    let nr = NV * V::LANES;
    match out {
        Out::Buf(tile) => {
            assert!(MR * nr <= TILE_MAX);
            // SAFETY: writes `tile[..MR·NR]`, in bounds by the assert.
            unsafe {
                for (i, row) in acc.iter().enumerate() {
                    for (v, &x) in row.iter().enumerate() {
                        V::storeu(tile.as_mut_ptr().add(i * nr + v * V::LANES), x);
                    }
                }
            }
        }
        Out::Direct { c, ldc, rows, cols } => {
            assert!(rows <= MR && cols <= nr && rows >= 1 && cols >= 1);
            assert!((rows == 1 || ldc >= cols) && c.len() >= (rows - 1) * ldc + cols);
            if let Some(bias) = st.bias {
                assert!(bias.len() >= cols);
            }
            // SAFETY: reads/writes `c[i·ldc .. i·ldc + cols]` for `i < rows` and reads
            // `bias[..cols]`, all in bounds by the asserts above: full vectors only
            // where `(v+1)·LANES ≤ cols`, else a masked access of `cols − v·LANES`
            // lanes that touches nothing beyond.
            unsafe {
                let alpha = V::splat(st.alpha);
                let beta = V::splat(st.beta);
                for (i, row) in acc.iter().enumerate().take(rows) {
                    for (v, &x) in row.iter().enumerate() {
                        let j = v * V::LANES;
                        if j >= cols {
                            break;
                        }
                        let p = c.as_mut_ptr().add(i * ldc + j);
                        let n = cols - j;
                        let mut y = V::mul(alpha, x);
                        if n >= V::LANES {
                            if st.beta != 0.0 {
                                y = V::fmadd(beta, V::loadu(p), y);
                            }
                            if let Some(bias) = st.bias {
                                y = V::add(y, V::loadu(bias.as_ptr().add(j)));
                                if st.relu {
                                    y = V::relu(y);
                                }
                            }
                            V::storeu(p, y);
                        } else {
                            if st.beta != 0.0 {
                                y = V::fmadd(beta, V::load_part(p, n), y);
                            }
                            if let Some(bias) = st.bias {
                                y = V::add(y, V::load_part(bias.as_ptr().add(j), n));
                                if st.relu {
                                    y = V::relu(y);
                                }
                            }
                            V::store_part(p, y, n);
                        }
                    }
                }
            }
        }
    }
}

/// Store a full `MR×NR` accumulator tile to `c` (row stride `ldc`): `α·acc` (the
/// multiply only if `SCALE`), `+ β·C` (C read only if `ACCUM`); no epilogue. Every
/// loop has constant bounds, so the tile is stored straight from registers (the
/// general path of [`store_acc`] spills it first).
///
/// # Safety
/// `V`'s ISA is enabled; `c[i·ldc + j]` is writable (and readable if `ACCUM`) for
/// `i < MR`, `j < NR`.
#[inline(always)]
unsafe fn store_full<
    V: Simd,
    const MR: usize,
    const NV: usize,
    const SCALE: bool,
    const ACCUM: bool,
>(
    acc: [[V; NV]; MR],
    c: *mut f32,
    ldc: usize,
    st: &Store<'_>,
) {
    // SAFETY: the function contract covers every access below.
    unsafe {
        let (alpha, beta) = (V::splat(st.alpha), V::splat(st.beta));
        for (i, row) in acc.iter().enumerate() {
            for (v, &x) in row.iter().enumerate() {
                let p = c.add(i * ldc + v * V::LANES);
                let mut y = if SCALE { V::mul(alpha, x) } else { x };
                if ACCUM {
                    y = V::fmadd(beta, V::loadu(p), y);
                }
                V::storeu(p, y);
            }
        }
    }
}

/// Store a full tile as `relu?(acc + bias[j])` (the encoder's fused store).
///
/// # Safety
/// `V`'s ISA is enabled; `c[i·ldc + j]` is writable for `i < MR`, `j < NR`, and
/// `bias[..NR]` readable.
#[inline(always)]
unsafe fn store_biased<V: Simd, const MR: usize, const NV: usize, const RELU: bool>(
    acc: [[V; NV]; MR],
    c: *mut f32,
    ldc: usize,
    bias: *const f32,
) {
    // SAFETY: the function contract covers every access below.
    unsafe {
        for (i, row) in acc.iter().enumerate() {
            for (v, &x) in row.iter().enumerate() {
                let mut y = V::add(x, V::loadu(bias.add(v * V::LANES)));
                if RELU {
                    y = V::relu(y);
                }
                V::storeu(c.add(i * ldc + v * V::LANES), y);
            }
        }
    }
}

/// How many `k` steps ahead the micro-kernel prefetches its B panel.
const PF_DIST: usize = 8;

const AVX512_MR: usize = <Avx512 as super::TileShape>::MR;
const AVX512_NV: usize = <Avx512 as super::TileShape>::NR / 16;
const AVX2_MR: usize = <Avx2 as super::TileShape>::MR;
const AVX2_NV: usize = <Avx2 as super::TileShape>::NR / 8;

/// The columns an [`Out::Direct`] tile stores (`usize::MAX` for [`Out::Buf`], which
/// needs the whole tile).
fn direct_cols(out: &Out<'_>) -> usize {
    match out {
        Out::Direct { cols, .. } => *cols,
        Out::Buf(_) => usize::MAX,
    }
}

#[target_feature(enable = "avx2,fma")]
fn avx2_tile(kc: usize, a: &[f32], b: &[f32], out: Out<'_>, st: &Store<'_>) {
    // SAFETY: AVX2 and FMA are enabled for this function; `micro` checks the slices.
    // An edge tile of at most 8 columns computes one vector per row (`micro` stores
    // `cols ≤ NV·8` columns).
    unsafe {
        if direct_cols(&out) <= 8 {
            micro::<__m256, AVX2_MR, 1, AVX2_NV>(kc, a, b, out, st);
        } else {
            micro::<__m256, AVX2_MR, AVX2_NV, AVX2_NV>(kc, a, b, out, st);
        }
    }
}

/// The `8×48` tile, or for an edge tile of at most 16 or 32 columns an `8×16` or
/// `8×32` product over the same packed panel (at `(256, 64, 512)` the last of the
/// 11 panels has 32 columns: 3 % of the FMAs were on zero padding).
#[target_feature(enable = "avx512f")]
fn avx512_tile(kc: usize, a: &[f32], b: &[f32], out: Out<'_>, st: &Store<'_>) {
    const NV: usize = AVX512_NV;
    // SAFETY: AVX-512F is enabled for this function; `micro` checks the slices and
    // stores only `cols ≤ NV·16` columns of an edge tile.
    unsafe {
        match direct_cols(&out) {
            0..=16 => micro::<__m512, AVX512_MR, 1, NV>(kc, a, b, out, st),
            17..=32 => micro::<__m512, AVX512_MR, 2, NV>(kc, a, b, out, st),
            _ => micro::<__m512, AVX512_MR, NV, NV>(kc, a, b, out, st),
        }
    }
}

/// The bf16-pair micro-kernel: `a` holds `MR` 32-bit slots per `k` pair (row `i`:
/// `a(i,2p)` in the low half, `a(i,2p+1)` in the high half), `b` holds `NR` slots
/// per pair likewise; `kp = ⌈kc/2⌉` pairs. Each step broadcasts one A pair and
/// accumulates `a_lo·b_lo + a_hi·b_hi` into every lane with `vdpbf16ps`.
///
/// # Safety
/// AVX-512F and AVX512_BF16 are enabled; `a.len() ≥ kp·MR`, `b.len() ≥ kp·NR`
/// (checked); `out` as documented on [`Out`].
#[inline(always)]
unsafe fn micro_bf16<const MR: usize, const NV: usize>(
    kc: usize,
    a: &[f32],
    b: &[f32],
    out: Out<'_>,
    st: &Store<'_>,
) {
    // SAFETY: AVX-512F and AVX512_BF16 are enabled (contract), so the loop may run;
    // `out` as documented on `Out`.
    unsafe { finish::<__m512, MR, NV>(Bf16Loop { kc, a, b }, out, st) }
}

/// The bf16-pair loop of [`micro_bf16`].
struct Bf16Loop<'a> {
    kc: usize,
    a: &'a [f32],
    b: &'a [f32],
}

impl<const MR: usize, const NV: usize> TileLoop<__m512, MR, NV> for Bf16Loop<'_> {
    /// # Safety
    /// AVX-512F and AVX512_BF16 are enabled. (The slices' lengths are checked.)
    #[inline(always)]
    unsafe fn run(self) -> [[__m512; NV]; MR] {
        let Bf16Loop { kc, a, b } = self;
        let nr = NV * 16;
        let kp = kc.div_ceil(2);
        assert!(a.len() >= kp * MR && b.len() >= kp * nr);
        // SAFETY: the features are enabled (contract); the loop reads `a[..kp·MR]`
        // and `b[..kp·NR]` as 32-bit slots, in bounds by the assert above; `__m512i`
        // and `__m512bh` are both 64 plain bytes.
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); NV]; MR];
            let (mut ap, mut bp) = (a.as_ptr().cast::<i32>(), b.as_ptr());
            for _ in 0..kp {
                for line in 0..nr.div_ceil(16) {
                    _mm_prefetch::<_MM_HINT_T0>(
                        bp.wrapping_add(PF_DIST * nr + line * 16).cast::<i8>(),
                    );
                }
                let mut bv =
                    [core::mem::transmute::<__m512i, __m512bh>(_mm512_setzero_si512()); NV];
                for (v, bvv) in bv.iter_mut().enumerate() {
                    *bvv = core::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(
                        bp.add(v * 16).cast::<__m512i>(),
                    ));
                }
                for (i, row) in acc.iter_mut().enumerate() {
                    let ai = core::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi32(
                        ap.add(i).read_unaligned(),
                    ));
                    for (x, &bvv) in row.iter_mut().zip(&bv) {
                        *x = _mm512_dpbf16_ps(*x, ai, bvv);
                    }
                }
                ap = ap.add(MR);
                bp = bp.add(nr);
            }
            acc
        }
    }
}

#[target_feature(enable = "avx512f,avx512bf16")]
fn avx512bf16_tile(kc: usize, a: &[f32], b: &[f32], out: Out<'_>, st: &Store<'_>) {
    // SAFETY: AVX-512F and AVX512_BF16 are enabled here; `micro_bf16` checks slices.
    unsafe { micro_bf16::<AVX512_MR, AVX512_NV>(kc, a, b, out, st) }
}

// ---------------------------------------------------------------------------------
// Row kernels (the sparse path and the unpacked small products).
// ---------------------------------------------------------------------------------

/// Σ aᵢ bᵢ: two accumulators over `2·LANES`-element steps, then one step, then a
/// masked tail; a fixed order for a given `V`.
///
/// # Safety
/// `V`'s instruction set is enabled.
#[inline(always)]
unsafe fn dot_v<V: Simd>(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let l = V::LANES;
    // SAFETY: every load reads `[i, i + LANES)` with `i + LANES ≤ n`, or a masked
    // `n − i` lanes; `n` is within both slices. The ISA is enabled (contract).
    unsafe {
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let (mut s0, mut s1) = (V::zero(), V::zero());
        let mut i = 0;
        while i + 2 * l <= n {
            s0 = V::fmadd(V::loadu(pa.add(i)), V::loadu(pb.add(i)), s0);
            s1 = V::fmadd(V::loadu(pa.add(i + l)), V::loadu(pb.add(i + l)), s1);
            i += 2 * l;
        }
        if i + l <= n {
            s0 = V::fmadd(V::loadu(pa.add(i)), V::loadu(pb.add(i)), s0);
            i += l;
        }
        if i < n {
            let r = n - i;
            s1 = V::fmadd(V::load_part(pa.add(i), r), V::load_part(pb.add(i), r), s1);
        }
        V::hsum(V::add(s0, s1))
    }
}

/// z ← z + a·x (+ b·y if `two`), fused, `LANES` at a time, then a masked tail.
///
/// # Safety
/// `V`'s instruction set is enabled.
#[inline(always)]
unsafe fn axpy2_v<V: Simd>(a: f32, x: &[f32], b: f32, y: &[f32], z: &mut [f32], two: bool) {
    let n = if two {
        x.len().min(y.len()).min(z.len())
    } else {
        x.len().min(z.len())
    };
    let l = V::LANES;
    // SAFETY: every access covers `[i, i + LANES)` with `i + LANES ≤ n`, or a masked
    // `n − i` lanes, inside `x`, `z` (and `y` if `two`); `z` is a unique borrow, so it
    // aliases neither `x` nor `y`. The ISA is enabled (contract).
    unsafe {
        let (av, bv) = (V::splat(a), V::splat(b));
        let (px, py, pz) = (x.as_ptr(), y.as_ptr(), z.as_mut_ptr());
        let mut i = 0;
        while i + l <= n {
            let mut r = V::fmadd(av, V::loadu(px.add(i)), V::loadu(pz.add(i)));
            if two {
                r = V::fmadd(bv, V::loadu(py.add(i)), r);
            }
            V::storeu(pz.add(i), r);
            i += l;
        }
        if i < n {
            let r = n - i;
            let mut v = V::fmadd(av, V::load_part(px.add(i), r), V::load_part(pz.add(i), r));
            if two {
                v = V::fmadd(bv, V::load_part(py.add(i), r), v);
            }
            V::store_part(pz.add(i), v, r);
        }
    }
}

#[target_feature(enable = "avx2,fma")]
fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: AVX2 and FMA are enabled for this function.
    unsafe { dot_v::<__m256>(a, b) }
}

#[target_feature(enable = "avx512f")]
fn dot_avx512(a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: AVX-512F is enabled for this function.
    unsafe { dot_v::<__m512>(a, b) }
}

#[target_feature(enable = "avx2,fma")]
fn axpy2_avx2(a: f32, x: &[f32], b: f32, y: &[f32], z: &mut [f32], two: bool) {
    // SAFETY: AVX2 and FMA are enabled for this function.
    unsafe { axpy2_v::<__m256>(a, x, b, y, z, two) }
}

#[target_feature(enable = "avx512f")]
fn axpy2_avx512(a: f32, x: &[f32], b: f32, y: &[f32], z: &mut [f32], two: bool) {
    // SAFETY: AVX-512F is enabled for this function.
    unsafe { axpy2_v::<__m512>(a, x, b, y, z, two) }
}

// ---------------------------------------------------------------------------------
// Small products in dot form (C with few rows, from A rows with unit column stride
// and a B whose columns are contiguous: `B = Mᵀ` for a row-major M). Each column of
// B is read once per four rows of A, straight from the caller's memory (no packing),
// so the product runs at the speed of streaming B.
// ---------------------------------------------------------------------------------

/// Dot products of `M` contiguous A rows with `NC` contiguous B columns.
///
/// # Safety
/// `V`'s ISA is enabled; every `arows[i]` and `bcols[c]` is valid for `k` reads.
#[inline(always)]
unsafe fn dots<V: Simd, const M: usize, const NC: usize>(
    k: usize,
    arows: [*const f32; M],
    bcols: [*const f32; NC],
) -> [[f32; NC]; M] {
    // SAFETY: reads `arows[i][..k]` and `bcols[c][..k]` (contract); the tail uses a
    // masked load that touches only the `k % LANES` valid elements.
    unsafe {
        let mut acc = [[V::zero(); NC]; M];
        let full = k / V::LANES * V::LANES;
        let mut p = 0;
        while p < full {
            let bv: [V; NC] = core::array::from_fn(|c| V::loadu(bcols[c].add(p)));
            for (row, ar) in acc.iter_mut().zip(&arows) {
                let av = V::loadu(ar.add(p));
                for (x, &b) in row.iter_mut().zip(&bv) {
                    *x = V::fmadd(av, b, *x);
                }
            }
            p += V::LANES;
        }
        if p < k {
            let bv: [V; NC] = core::array::from_fn(|c| V::load_part(bcols[c].add(p), k - p));
            for (row, ar) in acc.iter_mut().zip(&arows) {
                let av = V::load_part(ar.add(p), k - p);
                for (x, &b) in row.iter_mut().zip(&bv) {
                    *x = V::fmadd(av, b, *x);
                }
            }
        }
        let mut out = [[0.0f32; NC]; M];
        for (o, a) in out.iter_mut().zip(&acc) {
            for (y, &x) in o.iter_mut().zip(a) {
                *y = V::hsum(x);
            }
        }
        out
    }
}

/// The dot-form product, rows `i0..i0+M` of C.
///
/// # Safety
/// `V`'s ISA is enabled; shapes validated by [`crate::kernels::gemm::gemm`];
/// `i0 + M ≤ a.rows`, `a.cs == 1` (or `k == 1`), `b.rs == 1` (or `k == 1`), `k ≥ 1`.
#[inline(always)]
unsafe fn gemv_m<V: Simd, const M: usize>(
    i0: usize,
    alpha: f32,
    a: &MatRef<'_>,
    b: &MatRef<'_>,
    beta: f32,
    c: &mut MatMut<'_>,
    epi: Epilogue<'_>,
) {
    let (k, n) = (a.cols, b.cols);
    // Row i of A is `a.data[i·rs .. i·rs + k]`, column j of B is `b.data[j·cs .. + k]`:
    // both inside the views' extents, which `MatRef::new` checked against the slices.
    let arows: [&[f32]; M] =
        core::array::from_fn(|i| &a.data[(i0 + i) * a.rs..(i0 + i) * a.rs + k]);
    let ap: [*const f32; M] = core::array::from_fn(|i| arows[i].as_ptr());
    let bcol = |j: usize| b.data[j * b.cs..j * b.cs + k].as_ptr();
    // One column of B at a time, so that B (contiguous columns, e.g. the rows of M)
    // is read as one sequential stream. Four columns at a time (four streams `k`
    // floats apart, each A load serving four columns) ran 1.3–1.5× slower on an AMD
    // Zen 4 core (`bench --encode-only`, builds alternated, 2026-12-03: (1, 768,
    // 16384) 3.9–4.4 → 3.0–3.4 ms against 2.4–3.4 ms to stream M once; with bf16
    // weights 3.2 → 1.3–1.5 ms). The FMAs are far from the bound either way.
    for j in 0..n {
        // SAFETY: ISA enabled (contract); every pointer comes from a slice of length k.
        let r = unsafe { dots::<V, M, 1>(k, ap, [bcol(j)]) };
        for (i, row) in r.iter().enumerate() {
            put(c, i0 + i, j, row[0], alpha, beta, epi);
        }
    }
}

/// [`gemv_m`] over all rows of A, four at a time.
///
/// # Safety
/// As [`gemv_m`] for the whole of A.
#[inline(always)]
unsafe fn gemv_any<V: Simd>(
    alpha: f32,
    a: &MatRef<'_>,
    b: &MatRef<'_>,
    beta: f32,
    c: &mut MatMut<'_>,
    epi: Epilogue<'_>,
) {
    let m = a.rows;
    let mut i0 = 0;
    // SAFETY: forwarded contract; each call covers rows `i0..i0+M` with `i0 + M ≤ m`.
    unsafe {
        while i0 + 4 <= m {
            gemv_m::<V, 4>(i0, alpha, a, b, beta, c, epi);
            i0 += 4;
        }
        match m - i0 {
            1 => gemv_m::<V, 1>(i0, alpha, a, b, beta, c, epi),
            2 => gemv_m::<V, 2>(i0, alpha, a, b, beta, c, epi),
            3 => gemv_m::<V, 3>(i0, alpha, a, b, beta, c, epi),
            _ => {}
        }
    }
}

#[target_feature(enable = "avx2,fma")]
fn gemv_avx2(
    alpha: f32,
    a: &MatRef<'_>,
    b: &MatRef<'_>,
    beta: f32,
    c: &mut MatMut<'_>,
    epi: Epilogue<'_>,
) {
    // SAFETY: AVX2+FMA enabled here; shape conditions are `Isa::dots`'s contract.
    unsafe { gemv_any::<__m256>(alpha, a, b, beta, c, epi) }
}

#[target_feature(enable = "avx512f")]
fn gemv_avx512(
    alpha: f32,
    a: &MatRef<'_>,
    b: &MatRef<'_>,
    beta: f32,
    c: &mut MatMut<'_>,
    epi: Epilogue<'_>,
) {
    // SAFETY: AVX-512F enabled here; shape conditions are `Isa::dots`'s contract.
    unsafe { gemv_any::<__m512>(alpha, a, b, beta, c, epi) }
}

// ---------------------------------------------------------------------------------
// Small products with 16-bit weights (`A·Wᵀ`, W row-major `n×k` bf16 or f16): the
// weights are widened in registers as they stream in, so the product reads half
// the bytes of the f32 one.
// ---------------------------------------------------------------------------------

/// Dot products of `M` contiguous A rows with `NC` contiguous 16-bit W rows (`BF`:
/// bf16, else f16).
///
/// # Safety
/// `V`'s ISA is enabled (and F16C for `__m256` when `!BF`); every `arows[i]` and
/// `wrows[c]` is valid for `k` reads.
#[inline(always)]
unsafe fn dots_half<V: Simd, const M: usize, const NC: usize, const BF: bool>(
    k: usize,
    arows: [*const f32; M],
    wrows: [*const u16; NC],
) -> [[f32; NC]; M] {
    let load = |p: *const u16| {
        // SAFETY: forwarded contract (ISA enabled, `p` valid for LANES reads).
        unsafe { if BF { V::load_bf16(p) } else { V::load_f16(p) } }
    };
    // SAFETY: full-vector reads stay below `k` (`p + LANES ≤ full ≤ k`); the tail
    // widens the last `k − p` weights into a stack buffer and uses masked loads that
    // touch only `k − p` lanes.
    unsafe {
        // bf16: two sets of accumulators, for even and odd vectors. With one vector
        // (`M = 1`) the single chain of dependent FMAs, with two more instructions
        // per vector for the widening than f16's one `vcvtph2ps`, bounded the loop:
        // `bench --encode-only`, (1, 768, 16384), six alternating runs, 2026-12-04:
        // bf16 1.30–1.73 → 1.01–1.26 ms (f32: 2.2–3.3 ms). f16 kept one chain: 1.02–1.31
        // ms against 1.09–1.32 ms with two.
        let mut acc = [[V::zero(); NC]; M];
        let mut odd = [[V::zero(); NC]; M];
        let full = k / V::LANES * V::LANES;
        let mut p = 0;
        while BF && p + 2 * V::LANES <= full {
            let wv: [V; NC] = core::array::from_fn(|c| load(wrows[c].add(p)));
            let wv1: [V; NC] = core::array::from_fn(|c| load(wrows[c].add(p + V::LANES)));
            for ((row, row1), ar) in acc.iter_mut().zip(odd.iter_mut()).zip(&arows) {
                let av = V::loadu(ar.add(p));
                let av1 = V::loadu(ar.add(p + V::LANES));
                for (x, &b) in row.iter_mut().zip(&wv) {
                    *x = V::fmadd(av, b, *x);
                }
                for (x, &b) in row1.iter_mut().zip(&wv1) {
                    *x = V::fmadd(av1, b, *x);
                }
            }
            p += 2 * V::LANES;
        }
        while p < full {
            let wv: [V; NC] = core::array::from_fn(|c| load(wrows[c].add(p)));
            for (row, ar) in acc.iter_mut().zip(&arows) {
                let av = V::loadu(ar.add(p));
                for (x, &b) in row.iter_mut().zip(&wv) {
                    *x = V::fmadd(av, b, *x);
                }
            }
            p += V::LANES;
        }
        if BF {
            for (row, row1) in acc.iter_mut().zip(&odd) {
                for (x, &y) in row.iter_mut().zip(row1) {
                    *x = V::add(*x, y);
                }
            }
        }
        if p < k {
            let r = k - p;
            let mut buf = [[0.0f32; 16]; NC];
            for (bc, wr) in buf.iter_mut().zip(&wrows) {
                let tail = core::slice::from_raw_parts(wr.add(p), r);
                for (d, &v) in bc.iter_mut().zip(tail) {
                    *d = if BF {
                        crate::kernels::half::bf16_to_f32(v)
                    } else {
                        crate::kernels::half::f16_to_f32(v)
                    };
                }
            }
            let wv: [V; NC] = core::array::from_fn(|c| V::load_part(buf[c].as_ptr(), r));
            for (row, ar) in acc.iter_mut().zip(&arows) {
                let av = V::load_part(ar.add(p), r);
                for (x, &b) in row.iter_mut().zip(&wv) {
                    *x = V::fmadd(av, b, *x);
                }
            }
        }
        let mut out = [[0.0f32; NC]; M];
        for (o, a) in out.iter_mut().zip(&acc) {
            for (y, &x) in o.iter_mut().zip(a) {
                *y = V::hsum(x);
            }
        }
        out
    }
}

/// Rows `i0..i0+M` of `C ← epilogue(α·A·Wᵀ + β·C)`.
///
/// # Safety
/// As [`dots_half`]; `i0 + M ≤ a.rows`, `a.cs == 1` (or `k == 1`), `k ≥ 1`,
/// `w.len() ≥ c.cols·k`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn gemv_half_m<V: Simd, const M: usize, const BF: bool>(
    i0: usize,
    alpha: f32,
    a: &MatRef<'_>,
    w: &[u16],
    beta: f32,
    c: &mut MatMut<'_>,
    epi: Epilogue<'_>,
) {
    let (k, n) = (a.cols, c.cols);
    let ap: [*const f32; M] =
        core::array::from_fn(|i| a.data[(i0 + i) * a.rs..(i0 + i) * a.rs + k].as_ptr());
    let wrow = |j: usize| w[j * k..(j + 1) * k].as_ptr();
    // One row of W at a time, as [`gemv_m`].
    for j in 0..n {
        // SAFETY: forwarded contract; every pointer comes from a slice of length k.
        let r = unsafe { dots_half::<V, M, 1, BF>(k, ap, [wrow(j)]) };
        for (i, row) in r.iter().enumerate() {
            put(c, i0 + i, j, row[0], alpha, beta, epi);
        }
    }
}

/// [`gemv_half_m`] over all rows of A, four at a time.
///
/// # Safety
/// As [`gemv_half_m`] for the whole of A.
#[inline(always)]
unsafe fn gemv_half_any<V: Simd, const BF: bool>(
    alpha: f32,
    a: &MatRef<'_>,
    w: &[u16],
    beta: f32,
    c: &mut MatMut<'_>,
    epi: Epilogue<'_>,
) {
    let m = a.rows;
    let mut i0 = 0;
    // SAFETY: forwarded contract; each call covers rows `i0..i0+M` with `i0 + M ≤ m`.
    unsafe {
        while i0 + 4 <= m {
            gemv_half_m::<V, 4, BF>(i0, alpha, a, w, beta, c, epi);
            i0 += 4;
        }
        match m - i0 {
            1 => gemv_half_m::<V, 1, BF>(i0, alpha, a, w, beta, c, epi),
            2 => gemv_half_m::<V, 2, BF>(i0, alpha, a, w, beta, c, epi),
            3 => gemv_half_m::<V, 3, BF>(i0, alpha, a, w, beta, c, epi),
            _ => {}
        }
    }
}

#[target_feature(enable = "avx2,fma")]
fn gemv_bf16_avx2(
    alpha: f32,
    a: &MatRef<'_>,
    w: &[u16],
    beta: f32,
    c: &mut MatMut<'_>,
    epi: Epilogue<'_>,
) {
    // SAFETY: AVX2+FMA enabled here; shape conditions are `Isa::dots_half`'s contract.
    unsafe { gemv_half_any::<__m256, true>(alpha, a, w, beta, c, epi) }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn gemv_f16_avx2(
    alpha: f32,
    a: &MatRef<'_>,
    w: &[u16],
    beta: f32,
    c: &mut MatMut<'_>,
    epi: Epilogue<'_>,
) {
    // SAFETY: AVX2+FMA+F16C enabled here; shapes are `Isa::dots_half`'s contract.
    unsafe { gemv_half_any::<__m256, false>(alpha, a, w, beta, c, epi) }
}

#[target_feature(enable = "avx512f")]
fn gemv_half_avx512(
    format: Half,
    alpha: f32,
    a: &MatRef<'_>,
    w: &[u16],
    beta: f32,
    c: &mut MatMut<'_>,
    epi: Epilogue<'_>,
) {
    // SAFETY: AVX-512F enabled here; shape conditions are `Isa::dots_half`'s contract.
    unsafe {
        match format {
            Half::Bf16 => gemv_half_any::<__m512, true>(alpha, a, w, beta, c, epi),
            Half::F16 => gemv_half_any::<__m512, false>(alpha, a, w, beta, c, epi),
        }
    }
}

// ---------------------------------------------------------------------------------
// The tokens.
// ---------------------------------------------------------------------------------

impl Isa for Avx2 {
    const KERNEL: Kernel = Kernel::Avx2;
    type Vector = __m256;

    #[inline(always)]
    fn hsum(self, v: __m256) -> f32 {
        // SAFETY: the token proves AVX2 (register-only intrinsics).
        unsafe { <__m256 as Simd>::hsum(v) }
    }
    #[inline(always)]
    fn tile(self, kc: usize, a: &[f32], b: &[f32], out: Out<'_>, st: &Store<'_>) {
        // SAFETY: the token proves AVX2 and FMA.
        unsafe { avx2_tile(kc, a, b, out, st) }
    }
    #[inline(always)]
    fn pack_cols(
        self,
        src: &[f32],
        cs: usize,
        kc: usize,
        cols: usize,
        w: usize,
        panel: &mut [f32],
    ) -> bool {
        // SAFETY: the token proves AVX2.
        unsafe { pack_cols_avx(src, cs, kc, cols, w, panel) };
        true
    }
    #[inline]
    fn dot(self, a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: the token proves AVX2 and FMA.
        unsafe { dot_avx2(a, b) }
    }
    #[inline]
    fn axpy(self, a: f32, x: &[f32], y: &mut [f32]) {
        // SAFETY: the token proves AVX2 and FMA.
        unsafe { axpy2_avx2(a, x, 0.0, x, y, false) }
    }
    #[inline]
    fn axpy2(self, a: f32, x: &[f32], b: f32, y: &[f32], z: &mut [f32]) {
        // SAFETY: the token proves AVX2 and FMA.
        unsafe { axpy2_avx2(a, x, b, y, z, true) }
    }
    fn dots(
        self,
        alpha: f32,
        a: &MatRef<'_>,
        b: &MatRef<'_>,
        beta: f32,
        c: &mut MatMut<'_>,
        epi: Epilogue<'_>,
    ) {
        // SAFETY: the token proves AVX2 and FMA; the shape conditions are this
        // method's contract (`Isa::dots`).
        unsafe { gemv_avx2(alpha, a, b, beta, c, epi) }
    }
    fn dots_half(
        self,
        format: Half,
        alpha: f32,
        a: &MatRef<'_>,
        w: &[u16],
        beta: f32,
        c: &mut MatMut<'_>,
        epi: Epilogue<'_>,
    ) {
        match format {
            // SAFETY: the token proves AVX2 and FMA; shapes are the method's contract.
            Half::Bf16 => unsafe { gemv_bf16_avx2(alpha, a, w, beta, c, epi) },
            // SAFETY: as above, and F16C was detected.
            Half::F16 if has_f16c() => unsafe { gemv_f16_avx2(alpha, a, w, beta, c, epi) },
            // No F16C: widen in software (the trait's default).
            Half::F16 => super::default_dots_half(self, format, alpha, a, w, beta, c, epi),
        }
    }
}

impl Isa for Avx512 {
    const KERNEL: Kernel = Kernel::Avx512;
    type Vector = __m512;

    #[inline(always)]
    fn hsum(self, v: __m512) -> f32 {
        // SAFETY: the token proves AVX-512F (register-only intrinsics).
        unsafe { <__m512 as Simd>::hsum(v) }
    }
    #[inline(always)]
    fn tile(self, kc: usize, a: &[f32], b: &[f32], out: Out<'_>, st: &Store<'_>) {
        // SAFETY: the token proves AVX-512F.
        unsafe { avx512_tile(kc, a, b, out, st) }
    }
    #[inline(always)]
    fn pack_cols(
        self,
        src: &[f32],
        cs: usize,
        kc: usize,
        cols: usize,
        w: usize,
        panel: &mut [f32],
    ) -> bool {
        // SAFETY: the token proves AVX2 too (`avx512` checks it).
        unsafe { pack_cols_avx(src, cs, kc, cols, w, panel) };
        true
    }
    #[inline]
    fn dot(self, a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: the token proves AVX-512F.
        unsafe { dot_avx512(a, b) }
    }
    #[inline]
    fn axpy(self, a: f32, x: &[f32], y: &mut [f32]) {
        // SAFETY: the token proves AVX-512F.
        unsafe { axpy2_avx512(a, x, 0.0, x, y, false) }
    }
    #[inline]
    fn axpy2(self, a: f32, x: &[f32], b: f32, y: &[f32], z: &mut [f32]) {
        // SAFETY: the token proves AVX-512F.
        unsafe { axpy2_avx512(a, x, b, y, z, true) }
    }
    fn dots(
        self,
        alpha: f32,
        a: &MatRef<'_>,
        b: &MatRef<'_>,
        beta: f32,
        c: &mut MatMut<'_>,
        epi: Epilogue<'_>,
    ) {
        // SAFETY: the token proves AVX-512F; the shape conditions are this method's
        // contract (`Isa::dots`).
        unsafe { gemv_avx512(alpha, a, b, beta, c, epi) }
    }
    fn dots_half(
        self,
        format: Half,
        alpha: f32,
        a: &MatRef<'_>,
        w: &[u16],
        beta: f32,
        c: &mut MatMut<'_>,
        epi: Epilogue<'_>,
    ) {
        // SAFETY: the token proves AVX-512F; the shape conditions are this method's
        // contract (`Isa::dots_half`).
        unsafe { gemv_half_avx512(format, alpha, a, w, beta, c, epi) }
    }
}

impl super::TileShape for Avx512Bf16 {
    const MR: usize = <Avx512 as super::TileShape>::MR;
    const NR: usize = <Avx512 as super::TileShape>::NR;
}

impl Isa for Avx512Bf16 {
    const KERNEL: Kernel = Kernel::Avx512;
    const BF16_PAIRS: bool = true;
    type Vector = __m512;

    #[inline(always)]
    fn hsum(self, v: __m512) -> f32 {
        self.0.hsum(v)
    }
    #[inline(always)]
    fn tile(self, kc: usize, a: &[f32], b: &[f32], out: Out<'_>, st: &Store<'_>) {
        // SAFETY: the token proves AVX-512F and AVX512_BF16 (`avx512bf16`).
        unsafe { avx512bf16_tile(kc, a, b, out, st) }
    }
    #[inline(always)]
    fn pack_cols(
        self,
        src: &[f32],
        cs: usize,
        kc: usize,
        cols: usize,
        w: usize,
        panel: &mut [f32],
    ) -> bool {
        self.0.pack_cols(src, cs, kc, cols, w, panel)
    }
    #[inline]
    fn pack_pair_runs(
        self,
        data: &[f32],
        cs: usize,
        k0: usize,
        kc: usize,
        j0: usize,
        nc: usize,
        w: usize,
        out: &mut [f32],
    ) -> bool {
        if kc == 0 || nc == 0 || !(w == 8 || w.is_multiple_of(16)) {
            return false;
        }
        let panels = nc.div_ceil(w);
        let kp = kc.div_ceil(2);
        let out_end = ((panels - 1) * w)
            .checked_mul(kc)
            .and_then(|o| o.checked_add(kp * w));
        let data_end = (j0 + (nc - 1))
            .checked_mul(cs)
            .and_then(|o| o.checked_add(k0 + kc));
        if out_end.is_none_or(|e| e > out.len()) || data_end.is_none_or(|e| e > data.len()) {
            return false;
        }
        // SAFETY: the token proves AVX-512F; every run and panel slot the function
        // touches is in bounds by the checks above (see its contract).
        unsafe { pack_pair_runs_avx512(data, cs, (k0, kc), (j0, nc), w, out) };
        true
    }
    #[inline]
    fn dot(self, a: &[f32], b: &[f32]) -> f32 {
        self.0.dot(a, b)
    }
    #[inline]
    fn axpy(self, a: f32, x: &[f32], y: &mut [f32]) {
        self.0.axpy(a, x, y)
    }
    #[inline]
    fn axpy2(self, a: f32, x: &[f32], b: f32, y: &[f32], z: &mut [f32]) {
        self.0.axpy2(a, x, b, y, z)
    }
    fn dots(
        self,
        alpha: f32,
        a: &MatRef<'_>,
        b: &MatRef<'_>,
        beta: f32,
        c: &mut MatMut<'_>,
        epi: Epilogue<'_>,
    ) {
        self.0.dots(alpha, a, b, beta, c, epi)
    }
    fn dots_half(
        self,
        format: Half,
        alpha: f32,
        a: &MatRef<'_>,
        w: &[u16],
        beta: f32,
        c: &mut MatMut<'_>,
        epi: Epilogue<'_>,
    ) {
        self.0.dots_half(format, alpha, a, w, beta, c, epi)
    }
}

// ---------------------------------------------------------------------------------
// Transposing pack: `w`-wide panels from source columns that are contiguous along k
// (`B = Mᵀ` for a row-major M, or a row-major A packed as `Aᵀ`), 8×8 blocks at a
// time with AVX shuffles instead of one scalar load and store per element.
// ---------------------------------------------------------------------------------

/// In-register transpose of eight 8-lane rows: `out[s][t] = rows[t][s]`.
#[target_feature(enable = "avx2")]
fn transpose8(r: [__m256; 8]) -> [__m256; 8] {
    {
        let t0 = _mm256_unpacklo_ps(r[0], r[1]);
        let t1 = _mm256_unpackhi_ps(r[0], r[1]);
        let t2 = _mm256_unpacklo_ps(r[2], r[3]);
        let t3 = _mm256_unpackhi_ps(r[2], r[3]);
        let t4 = _mm256_unpacklo_ps(r[4], r[5]);
        let t5 = _mm256_unpackhi_ps(r[4], r[5]);
        let t6 = _mm256_unpacklo_ps(r[6], r[7]);
        let t7 = _mm256_unpackhi_ps(r[6], r[7]);
        let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
        let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
        let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
        let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
        let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
        let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
        let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
        let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
        [
            _mm256_permute2f128_ps::<0x20>(u0, u4),
            _mm256_permute2f128_ps::<0x20>(u1, u5),
            _mm256_permute2f128_ps::<0x20>(u2, u6),
            _mm256_permute2f128_ps::<0x20>(u3, u7),
            _mm256_permute2f128_ps::<0x31>(u0, u4),
            _mm256_permute2f128_ps::<0x31>(u1, u5),
            _mm256_permute2f128_ps::<0x31>(u2, u6),
            _mm256_permute2f128_ps::<0x31>(u3, u7),
        ]
    }
}

/// `panel[kk·w + j] = src[j·cs + kk]` for `kk < kc`, `j < cols`; zero for
/// `cols ≤ j < w`.
#[target_feature(enable = "avx2")]
fn pack_cols_avx(src: &[f32], cs: usize, kc: usize, cols: usize, w: usize, panel: &mut [f32]) {
    assert!(cols >= 1 && cols <= w && panel.len() >= kc * w);
    assert!(src.len() >= (cols - 1) * cs + kc);
    let (sp, pp) = (src.as_ptr(), panel.as_mut_ptr());
    let mut j = 0;
    while j + 8 <= cols {
        let mut kk = 0;
        while kk + 8 <= kc {
            // SAFETY: reads `src[(j+t)·cs + kk .. + 8]` with `j + t < cols` and
            // `kk + 8 ≤ kc`, inside `src` by the assert; writes
            // `panel[(kk+s)·w + j .. + 8]` with `kk + s < kc`, `j + 8 ≤ cols ≤ w`,
            // inside `panel` by the assert.
            unsafe {
                let rows: [__m256; 8] =
                    core::array::from_fn(|t| _mm256_loadu_ps(sp.add((j + t) * cs + kk)));
                let cols8 = transpose8(rows);
                for (s, v) in cols8.iter().enumerate() {
                    _mm256_storeu_ps(pp.add((kk + s) * w + j), *v);
                }
            }
            kk += 8;
        }
        for kk in kk..kc {
            for t in 0..8 {
                panel[kk * w + j + t] = src[(j + t) * cs + kk];
            }
        }
        j += 8;
    }
    for jj in j..cols {
        for (kk, &v) in src[jj * cs..jj * cs + kc].iter().enumerate() {
            panel[kk * w + jj] = v;
        }
    }
    if cols < w {
        for row in panel[..kc * w].chunks_exact_mut(w) {
            row[cols..].fill(0.0);
        }
    }
}

// ---------------------------------------------------------------------------------
// Plain Rust code compiled for a token's instruction set (see `isa::vectorized_on`).
// ---------------------------------------------------------------------------------
/// `f(16)` compiled with AVX-512F enabled: `f` is inlined into this frame, so its
/// loops are vectorized for 512-bit registers.
///
/// # Safety
/// The CPU must support AVX-512F.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn run_avx512<R>(f: impl FnOnce(usize) -> R) -> R {
    f(16)
}

/// `f(8)` compiled with AVX2 (and FMA) enabled.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn run_avx2<R>(f: impl FnOnce(usize) -> R) -> R {
    f(8)
}

impl Avx512 {
    /// Run `f` compiled for AVX-512F; `f` receives the `f32` lanes per vector (16).
    #[inline(always)]
    pub(crate) fn vectorized<R>(self, f: impl FnOnce(usize) -> R) -> R {
        // SAFETY: this token exists only when AVX-512F was detected.
        unsafe { run_avx512(f) }
    }
}

impl Avx512 {
    /// Bit `q` set for the lanes of `v` with `!(v[q] < t)`: at or above `t`, or
    /// unordered (NaN) against it. One `vcmpps` into a mask register: the chunk test
    /// of the candidate scans (`model::activation`), which `wide`'s 8-lane type ran
    /// as four 128-bit compares and mask moves per 16 floats (1.2 ms of a screened
    /// standard encode at (1024, 384, 3072)).
    #[inline(always)]
    pub(crate) fn not_below16(self, v: &[f32; 16], t: f32) -> u32 {
        // SAFETY: this token exists only when AVX-512F was detected.
        unsafe { not_below16(v, t) }
    }
}

#[inline]
#[target_feature(enable = "avx512f")]
fn not_below16(v: &[f32; 16], t: f32) -> u32 {
    // SAFETY: `v` holds the 16 floats read.
    let x = unsafe { _mm512_loadu_ps(v.as_ptr()) };
    u32::from(_mm512_cmp_ps_mask::<_CMP_NLT_UQ>(x, _mm512_set1_ps(t)))
}

impl Avx2 {
    /// Run `f` compiled for AVX2 + FMA; `f` receives the `f32` lanes per vector (8).
    #[inline(always)]
    pub(crate) fn vectorized<R>(self, f: impl FnOnce(usize) -> R) -> R {
        // SAFETY: this token exists only when AVX2 and FMA were detected.
        unsafe { run_avx2(f) }
    }
}

// ---------------------------------------------------------------------------------
// Sampled entries of a product (the TopK encoder's exact pass after its bf16 screen).
// ---------------------------------------------------------------------------------

/// Steps `p` of the sums per pass of [`Avx512::sampled_pass`] over a row-major B's
/// transposed rows. Measured in the screened TopK encoder at `(1024, 768, 16384)`
/// (plain / screened time, alternating in one process, AMD Zen 4; then with `W_encᵀ`
/// copied through the same passes, since read in place): 16 steps 1.04–1.19×, 32
/// 1.15–1.17×, 64 1.28–1.31×, 128 1.26–1.30×. Longer passes halve the per-entry
/// chunk overhead and the passes over B; the transposed rows of a pass take `64·h`
/// floats (4 MiB at `h = 16384`).
pub(crate) const SAMPLED_PASS: usize = 64;

/// Listed entries [`Avx512::sampled_pass`] computes together, one per lane of a
/// `zmm` accumulator; each row's list is padded to a multiple of this.
pub(crate) const SAMPLED_LANES: usize = 16;

impl Avx512 {
    /// One pass of [`crate::kernels::gemm::sampled::sampled`] over the steps
    /// `p0..p0 + np` of the sums: for each row `i` of A and each of its listed
    /// columns `j = cols[i·cap + q]` (`q < counts[i]`), `acc[i·cap + q] ← fma(a[i, p],
    /// b[p, j], acc)` for `p` ascending, starting from `+0` when `fresh`: the order and
    /// rounding of every packed FMA micro-kernel's accumulator. B's entries are read
    /// from `bt`: `b[p0 + t, j]` at `bt[j·ldt + t]` (`t < np`).
    ///
    /// # Panics
    /// If an index is out of range: A's rows `i < counts.len()` at `a[i·lda + p0..]`
    /// with `p0 + np ≤ lda`; `cols` and `acc` hold `counts.len()·cap`; each row's list
    /// is padded to `c = counts[i]` rounded up to a multiple of [`SAMPLED_LANES`]
    /// (`c ≤ cap`; the padding repeats listed columns and its `acc` slots are written
    /// too); every `j` in the padded lists has `bt[j·ldt + np − 1]` in bounds.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn sampled_pass(
        self,
        (a, lda): (&[f32], usize),
        (bt, ldt): (&[f32], usize),
        (p0, np): (usize, usize),
        fresh: bool,
        (cols, counts, cap): (&[u32], &[u32], usize),
        acc: &mut [f32],
    ) {
        let rows = counts.len();
        assert!(p0 + np <= lda);
        assert!(cols.len() >= rows * cap && acc.len() >= rows * cap);
        if rows == 0 || np == 0 {
            return;
        }
        assert!(a.len() >= (rows - 1) * lda + p0 + np);
        let mut jmax = 0;
        for (i, &c) in counts.iter().enumerate() {
            let c = (c as usize).next_multiple_of(SAMPLED_LANES);
            assert!(c <= cap);
            jmax = cols[i * cap..i * cap + c]
                .iter()
                .fold(jmax, |m, &j| m.max(j));
        }
        let last = (jmax as usize)
            .checked_mul(ldt)
            .and_then(|o| o.checked_add(np - 1));
        assert!(last.is_some_and(|l| l < bt.len()));
        // SAFETY: AVX-512F (and with it FMA) is proven by the token; every index is
        // within the bounds asserted above (see `sampled_pass_fma`).
        unsafe { sampled_pass_fma(a, lda, (bt, ldt), p0, np, fresh, cols, counts, cap, acc) }
    }
}

/// `rows` transposed: lane `l` of `out[t]` is `rows[l]`'s lane `t`. Four rounds of 16
/// shuffles: `vunpck{l,h}ps` pairs rows, `vunpck{l,h}pd` makes 4×4 blocks inside each
/// 128-bit lane, two rounds of `vshuff32x4` move the blocks to their places.
/// Register-only; callable where AVX-512F is enabled (`sampled_pass_fma`).
#[inline]
#[target_feature(enable = "avx512f")]
fn transpose16(r: [__m512; 16]) -> [__m512; 16] {
    // a[2m] = (r[2m][4q], r[2m+1][4q], r[2m][4q+1], r[2m+1][4q+1]) in 128-bit lane q;
    // a[2m+1] the same for 4q+2, 4q+3.
    let a: [__m512; 16] = core::array::from_fn(|i| {
        let (x, y) = (r[i & !1], r[i | 1]);
        if i % 2 == 0 {
            _mm512_unpacklo_ps(x, y)
        } else {
            _mm512_unpackhi_ps(x, y)
        }
    });
    // b[4m + s]: rows 4m..4m+4 at step 4q + s, in 128-bit lane q.
    let b: [__m512; 16] = core::array::from_fn(|i| {
        let (m, s) = (i / 4, i % 4);
        let x = _mm512_castps_pd(a[4 * m + (s >> 1)]);
        let y = _mm512_castps_pd(a[4 * m + 2 + (s >> 1)]);
        _mm512_castpd_ps(if s % 2 == 0 {
            _mm512_unpacklo_pd(x, y)
        } else {
            _mm512_unpackhi_pd(x, y)
        })
    });
    // c[4h + s] (h < 2 pairs rows 0..8, h ≥ 2 rows 8..16; h odd: lanes 2, 3):
    // the 128-bit lanes 2(h%2), 2(h%2)+1 of b[s + 8(h/2)] then of b[s + 8(h/2) + 4].
    let c: [__m512; 16] = core::array::from_fn(|i| {
        let (h, s) = (i / 4, i % 4);
        let (x, y) = (b[s + 8 * (h / 2)], b[s + 8 * (h / 2) + 4]);
        if h % 2 == 0 {
            _mm512_shuffle_f32x4::<0x44>(x, y)
        } else {
            _mm512_shuffle_f32x4::<0xEE>(x, y)
        }
    });
    // out[4q + s]: lane q of b[s], b[s + 4], b[s + 8], b[s + 12], in that order.
    core::array::from_fn(|t| {
        let (q, s) = (t / 4, t % 4);
        let (x, y) = (c[4 * (q / 2) + s], c[4 * (q / 2) + 8 + s]);
        if q % 2 == 0 {
            _mm512_shuffle_f32x4::<0x88>(x, y)
        } else {
            _mm512_shuffle_f32x4::<0xDD>(x, y)
        }
    })
}

/// The 32 values `v` of `lo` then `hi` as 16 bf16 pairs: lane `q` of the result holds
/// `bf16(v[2q])` in its low and `bf16(v[2q + 1])` in its high 16 bits; rounding as [`crate::kernels::half::f32_to_bf16`] (to
/// nearest, ties to even; NaN kept, made quiet).
#[inline]
#[target_feature(enable = "avx512f")]
fn bf16_pairs(lo: __m512, hi: __m512) -> __m512i {
    let words = |v: __m512| {
        let b = _mm512_castps_si512(v);
        let odd = _mm512_and_si512(_mm512_srli_epi32::<16>(b), _mm512_set1_epi32(1));
        let round = _mm512_add_epi32(b, _mm512_add_epi32(_mm512_set1_epi32(0x7FFF), odd));
        let abs = _mm512_and_si512(b, _mm512_set1_epi32(0x7FFF_FFFF));
        let nan = _mm512_cmpgt_epu32_mask(abs, _mm512_set1_epi32(0x7F80_0000));
        let quiet = _mm512_or_si512(b, _mm512_set1_epi32(0x0040_0000));
        let r = _mm512_mask_blend_epi32(nan, round, quiet);
        _mm512_cvtepi32_epi16(_mm512_srli_epi32::<16>(r))
    };
    _mm512_inserti64x4::<1>(_mm512_castsi256_si512(words(lo)), words(hi))
}

/// [`Isa::pack_pair_runs`] for [`Avx512Bf16`]: sixteen columns at a time, each
/// block of sixteen pairs (32 values per run, masked at the end of a run) rounded by
/// [`bf16_pairs`], transposed by [`transpose16`] and stored as sixteen slots of one
/// pair index (`w` a multiple of 16), or as two panels' eight (`w = 8`, A's panels).
/// Packing a `384×1024` block (`w = 48`) took 87 µs against the scalar pack's 374
/// µs (one strided store per slot), a `384×128` A block (`w = 8`) 8.1 against 42.5
/// µs; in the bf16 products of `examples/bench` (`--bf16-only`) the difference was
/// within the run-to-run noise.
///
/// # Safety
/// AVX-512F is enabled; `w == 8` or `w % 16 == 0`; `kc, nc ≥ 1`;
/// `data[(j0 + nc − 1)·cs + k0 + kc − 1]` and `out[(⌈nc/w⌉ − 1)·w·kc + ⌈kc/2⌉·w − 1]`
/// are in bounds.
#[target_feature(enable = "avx512f")]
unsafe fn pack_pair_runs_avx512(
    data: &[f32],
    cs: usize,
    (k0, kc): (usize, usize),
    (j0, nc): (usize, usize),
    w: usize,
    out: &mut [f32],
) {
    const L: usize = 16;
    let (panels, kp) = (nc.div_ceil(w), kc.div_ceil(2));
    let (src, dst) = (data.as_ptr(), out.as_mut_ptr());
    // Columns written: every panel's `w` (those past `nc` as zeros).
    for c0 in (0..panels * w).step_by(L) {
        for p0 in (0..kp).step_by(L) {
            // Values of each run in this block: `2p0..min(2p0 + 32, kc)`.
            let f = (kc - 2 * p0).min(2 * L);
            let (mlo, mhi) = (mask16(f.min(L)), mask16(f.saturating_sub(L)));
            let rows: [__m512; L] = core::array::from_fn(|e| {
                let c = c0 + e;
                if c >= nc {
                    return _mm512_setzero_ps();
                }
                // SAFETY: run `c < nc` spans `data[(j0 + c)·cs + k0..][..kc]`, in
                // bounds (contract); the masked loads read only its values
                // `2p0..2p0 + f`, `f ≤ kc − 2p0`.
                let pairs = unsafe {
                    let run = src.add((j0 + c) * cs + k0 + 2 * p0);
                    bf16_pairs(
                        _mm512_maskz_loadu_ps(mlo, run),
                        _mm512_maskz_loadu_ps(mhi, run.add(L)),
                    )
                };
                _mm512_castsi512_ps(pairs)
            });
            let t = transpose16(rows);
            for (q, &v) in t.iter().enumerate().take(kp - p0) {
                let p = p0 + q;
                // SAFETY: panel `c0 / w` (and for `w = 8` the next one, if it exists)
                // holds slots `p·w + j` for `p < kp`, `j < w`: below the bound of the
                // contract.
                unsafe {
                    if w == 8 {
                        let (q0, at) = (c0 / 8, p * 8);
                        _mm256_storeu_ps(dst.add(q0 * 8 * kc + at), _mm512_castps512_ps256(v));
                        if q0 + 1 < panels {
                            let hi =
                                _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
                            _mm256_storeu_ps(dst.add((q0 + 1) * 8 * kc + at), hi);
                        }
                    } else {
                        let (q0, j) = (c0 / w, c0 % w);
                        _mm512_storeu_ps(dst.add(q0 * w * kc + p * w + j), v);
                    }
                }
            }
        }
    }
}

/// The lowest `n` bits set (`n ≤ 16`).
#[inline(always)]
fn mask16(n: usize) -> __mmask16 {
    ((1u32 << n) - 1) as __mmask16
}

/// [`Avx512::sampled_pass`]'s loop: per row, sixteen listed columns at a time, one
/// per lane of a `zmm` accumulator. Each block of 16 steps loads the sixteen
/// columns' runs (masked in the last, partial block), transposes them
/// ([`transpose16`]) and runs one `vfmadd231ps` per step with the row's `a` value
/// broadcast: every lane is its own fused multiply-add chain, `p` ascending, so its
/// bits are the scalar chain's. Against eight interleaved scalar `vfmadd231ss`
/// chains (two loads per FMA), the exact pass at `(1024, 384, 3072)`, k = 32, went
/// from 5.2–5.7 ms to about 3 ms. (Interleaving several groups' chains in one loop
/// was slower in the forms tried; prefetching the columns' next blocks gained
/// nothing measurable, tied or untied.)
///
/// # Safety
/// AVX-512F is enabled; the bounds asserted by [`Avx512::sampled_pass`] hold.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f")]
unsafe fn sampled_pass_fma(
    a: &[f32],
    lda: usize,
    (bt, ldt): (&[f32], usize),
    p0: usize,
    np: usize,
    fresh: bool,
    cols: &[u32],
    counts: &[u32],
    cap: usize,
    acc: &mut [f32],
) {
    const LANES: usize = SAMPLED_LANES;
    // SAFETY: `a[i·lda + p0 + t]`, `bt[j·ldt + t]` for `t < np` and listed `j` (the
    // partial block's loads are masked to `t < np`), `cols`/`acc` at `i·cap + q` for
    // `q` below `counts[i]` rounded up to a multiple of LANES (≤ cap): in bounds by
    // the caller's assertions. AVX-512F is enabled (contract).
    unsafe {
        for (i, &n) in counts.iter().enumerate() {
            let n = (n as usize).next_multiple_of(LANES);
            let x = a.as_ptr().add(i * lda + p0);
            let (cs, ac) = (cols.as_ptr().add(i * cap), acc.as_mut_ptr().add(i * cap));
            // Whole chunks: the lists are padded to a multiple of LANES (see
            // `sampled_pass`).
            for q in (0..n).step_by(LANES) {
                let w: [*const f32; LANES] =
                    core::array::from_fn(|e| bt.as_ptr().add(*cs.add(q + e) as usize * ldt));
                let ap = ac.add(q);
                let mut v = if fresh {
                    _mm512_setzero_ps()
                } else {
                    _mm512_loadu_ps(ap)
                };
                for t0 in (0..np).step_by(LANES) {
                    let m = np - t0;
                    let rows: [__m512; LANES] = if m >= LANES {
                        core::array::from_fn(|e| _mm512_loadu_ps(w[e].add(t0)))
                    } else {
                        let k = mask16(m);
                        core::array::from_fn(|e| _mm512_maskz_loadu_ps(k, w[e].add(t0)))
                    };
                    let cols_t = transpose16(rows);
                    if m >= LANES {
                        for (t, &wt) in cols_t.iter().enumerate() {
                            v = _mm512_fmadd_ps(_mm512_set1_ps(*x.add(t0 + t)), wt, v);
                        }
                    } else {
                        for (t, &wt) in cols_t.iter().enumerate().take(m) {
                            v = _mm512_fmadd_ps(_mm512_set1_ps(*x.add(t0 + t)), wt, v);
                        }
                    }
                }
                _mm512_storeu_ps(ap, v);
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// Whether bf16 dot products are worth it here: measured once.
// ---------------------------------------------------------------------------------

/// 0: not measured yet; 1: bf16 is not faster; 2: it is.
static BF16_PAYS: AtomicU8 = AtomicU8::new(0);

impl Avx512Bf16 {
    /// The AVX-512F token this one includes.
    pub(crate) fn avx512(self) -> Avx512 {
        self.0
    }

    /// Whether `vdpbf16ps` does at least 1.5× the FLOP of `vfmadd231ps` per cycle on
    /// this CPU, measured once per process (then cached) on register-only chains.
    ///
    /// CPUs with AVX512_BF16 differ by a factor of four here: on an AMD Zen 4 core
    /// the bf16 instruction did 2.00× the f32 FMA's FLOP rate, on the Intel Xeon of
    /// the README's earlier sessions 0.48–0.52×, where a bf16 screen would only cost
    /// time. The measurement takes a few microseconds (six alternating rounds of
    /// 12 chains × 64 steps each, the fastest round of each kept); only the speed of
    /// what uses it depends on the answer, never a result.
    pub(crate) fn pays(self) -> bool {
        match BF16_PAYS.load(Ordering::Relaxed) {
            1 => false,
            2 => true,
            _ => {
                // SAFETY: the token proves AVX-512F and AVX512_BF16.
                let (fma, dot) = unsafe { rate_probe() };
                // FLOP per instruction: 32 (f32 FMA), 64 (bf16 pair dot).
                let pays = 2 * fma * 2 >= 3 * dot;
                BF16_PAYS.store(if pays { 2 } else { 1 }, Ordering::Relaxed);
                pays
            }
        }
    }
}

/// The fewest time-stamp-counter ticks over six rounds of 12 independent chains of
/// 64 `vfmadd231ps zmm`, and of 64 `vdpbf16ps zmm` (the same count of instructions).
///
/// # Safety
/// AVX-512F and AVX512_BF16 are enabled.
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn rate_probe() -> (u64, u64) {
    const CHAINS: usize = 12;
    const STEPS: usize = 64;
    let (mut best_fma, mut best_dot) = (u64::MAX, u64::MAX);
    // SAFETY: register-only arithmetic under the enabled features; `_rdtsc` is
    // available on every x86_64 CPU.
    unsafe {
        let x = core::hint::black_box(_mm512_set1_ps(1.0e-3));
        let xb = core::mem::transmute::<__m512, __m512bh>(x);
        for _ in 0..6 {
            // `black_box` right after the first and before the second counter read
            // keeps the chains between them.
            let mut acc = [_mm512_setzero_ps(); CHAINS];
            let t0 = _rdtsc();
            core::hint::black_box(&mut acc);
            for _ in 0..STEPS {
                for v in acc.iter_mut() {
                    *v = _mm512_fmadd_ps(x, x, *v);
                }
            }
            core::hint::black_box(&mut acc);
            let t1 = _rdtsc();
            let mut acc = [_mm512_setzero_ps(); CHAINS];
            let t2 = _rdtsc();
            core::hint::black_box(&mut acc);
            for _ in 0..STEPS {
                for v in acc.iter_mut() {
                    *v = _mm512_dpbf16_ps(*v, xb, xb);
                }
            }
            core::hint::black_box(&mut acc);
            let t3 = _rdtsc();
            best_fma = best_fma.min(t1.wrapping_sub(t0));
            best_dot = best_dot.min(t3.wrapping_sub(t2));
        }
    }
    (best_fma, best_dot)
}
