//! x86_64 micro-kernels written with `core::arch` intrinsics and chosen at run time.
//!
//! `wide` cannot be used here: its code paths are fixed by `cfg(target_feature)` at
//! compile time, so inside a `#[target_feature(enable = "avx2,fma")]` function of a
//! default build it still emits SSE halves without FMA. Instead one generic
//! register-blocked kernel ([`micro`]) is written over a tiny SIMD trait ([`Simd`]),
//! implemented for `__m256` (AVX2+FMA) and `__m512` (AVX-512F), and instantiated inside
//! one `#[target_feature]` function per ISA. Everything is `#[inline(always)]` down to
//! the intrinsics, so each instantiation compiles to straight-line `vfmadd231ps` code
//! on `ymm`/`zmm` registers.
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
//! prefetches it [`PF_DIST`] steps ahead. (Prefetching the C tile before the `k`
//! loop was tried: no gain at `k ≥ 256`, 6 % slower at `k = 64`.)
//!
//! ## Safety
//! The only `unsafe` is (a) calling a `#[target_feature]` function, which is sound
//! because the kernel types ([`Avx2`], [`Avx512`]) can only be constructed after the
//! CPU feature was detected, and (b) raw-pointer loads and stores, each preceded by
//! a length check of the slice it points into.

use super::kernel::{MicroKernel, Out, Store, TILE_MAX, has_avx2_fma, has_avx512f};
use super::{Epilogue, MatMut, MatRef};
use core::arch::x86_64::*;

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
}

/// The register-blocked product of an `MR×kc` A panel and a `kc×NR` B panel
/// (`NR = NV·LANES`), then the store.
///
/// # Safety
/// `V`'s ISA is enabled; `a.len() ≥ kc·MR` and `b.len() ≥ kc·NR` (checked by the
/// caller [`tile_impl`]); `out` as documented on [`Out`].
#[inline(always)]
unsafe fn micro<V: Simd, const MR: usize, const NV: usize>(
    kc: usize,
    a: &[f32],
    b: &[f32],
    out: Out<'_>,
    st: &Store<'_>,
) {
    let nr = NV * V::LANES;
    assert!(a.len() >= kc * MR && b.len() >= kc * nr);
    // SAFETY: the ISA is enabled (function contract); the loop reads `a[..kc·MR]` and
    // `b[..kc·NR]`, in bounds by the assert above.
    let acc = unsafe {
        let mut acc = [[V::zero(); NV]; MR];
        let (mut ap, mut bp) = (a.as_ptr(), b.as_ptr());
        for _ in 0..kc {
            // The B micro-panel (KC·NR·4 bytes) is larger than L1: fetch it a few
            // steps ahead. Prefetches never fault, and the address is only formed
            // with wrapping arithmetic.
            for line in 0..nr.div_ceil(16) {
                _mm_prefetch::<_MM_HINT_T0>(bp.wrapping_add(PF_DIST * nr + line * 16).cast::<i8>());
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
            bp = bp.add(nr);
        }
        acc
    };
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
                                y = V::relu(V::add(y, V::loadu(bias.as_ptr().add(j))));
                            }
                            V::storeu(p, y);
                        } else {
                            if st.beta != 0.0 {
                                y = V::fmadd(beta, V::load_part(p, n), y);
                            }
                            if let Some(bias) = st.bias {
                                y = V::relu(V::add(y, V::load_part(bias.as_ptr().add(j), n)));
                            }
                            V::store_part(p, y, n);
                        }
                    }
                }
            }
        }
    }
}

/// How many `k` steps ahead the micro-kernel prefetches its B panel.
const PF_DIST: usize = 8;

/// The AVX2+FMA micro-kernel; a value proves the CPU supports it.
#[derive(Clone, Copy)]
pub(crate) struct Avx2(());

impl Avx2 {
    /// `Some` only if the CPU has AVX2 and FMA.
    pub(crate) fn new() -> Option<Self> {
        has_avx2_fma().then_some(Self(()))
    }
}

/// The AVX-512F micro-kernel; a value proves the CPU supports it.
#[derive(Clone, Copy)]
pub(crate) struct Avx512(());

impl Avx512 {
    /// `Some` only if the CPU has AVX-512F (and AVX2, which the packing uses; every
    /// AVX-512 CPU has it).
    pub(crate) fn new() -> Option<Self> {
        (has_avx512f() && has_avx2_fma()).then_some(Self(()))
    }
}

#[target_feature(enable = "avx2,fma")]
fn avx2_tile(kc: usize, a: &[f32], b: &[f32], out: Out<'_>, st: &Store<'_>) {
    // SAFETY: AVX2 and FMA are enabled for this function; `micro` checks the slices.
    unsafe { micro::<__m256, 6, 2>(kc, a, b, out, st) }
}

#[target_feature(enable = "avx512f")]
fn avx512_tile(kc: usize, a: &[f32], b: &[f32], out: Out<'_>, st: &Store<'_>) {
    // SAFETY: AVX-512F is enabled for this function; `micro` checks the slices.
    unsafe { micro::<__m512, AVX512_MR, AVX512_NV>(kc, a, b, out, st) }
}

impl MicroKernel for Avx2 {
    const MR: usize = 6;
    const NR: usize = 16;
    #[inline(always)]
    fn tile(self, kc: usize, a: &[f32], b: &[f32], out: Out<'_>, st: &Store<'_>) {
        // SAFETY: `self` exists only if AVX2 and FMA were detected (`Avx2::new`).
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
        pack_cols_x86(src, cs, kc, cols, w, panel);
        true
    }
}

/// Rows of the AVX-512 tile.
pub(crate) const AVX512_MR: usize = 8;
/// `zmm` vectors per row of the AVX-512 tile (`NR = 16·AVX512_NV`).
pub(crate) const AVX512_NV: usize = 3;

impl MicroKernel for Avx512 {
    const MR: usize = AVX512_MR;
    const NR: usize = 16 * AVX512_NV;
    #[inline(always)]
    fn tile(self, kc: usize, a: &[f32], b: &[f32], out: Out<'_>, st: &Store<'_>) {
        // SAFETY: `self` exists only if AVX-512F was detected (`Avx512::new`).
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
        pack_cols_x86(src, cs, kc, cols, w, panel);
        true
    }
}

// ---------------------------------------------------------------------------------
// Small-m path (GEMV): C (m ≤ 4 rows) from A rows with unit column stride and a B
// whose columns are contiguous (`B = Mᵀ` for a row-major M). Each column of B is read
// exactly once, straight from the caller's memory (no packing), so the product runs
// at the speed of streaming B.
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

/// Write `epilogue(α·dot + β·C)` to `C[i, j]`.
#[inline(always)]
fn put(c: &mut MatMut<'_>, i: usize, j: usize, dot: f32, alpha: f32, beta: f32, epi: Epilogue) {
    let idx = i * c.rs + j * c.cs;
    let mut v = alpha * dot;
    if beta != 0.0 {
        v += beta * c.data[idx];
    }
    if let Epilogue::BiasRelu(bias) = epi {
        v = crate::kernels::vector::relu(v + bias[j]);
    }
    c.data[idx] = v;
}

/// The small-m product for `M` rows (see the section comment).
///
/// # Safety
/// `V`'s ISA is enabled; shapes validated by [`super::gemm`]; `a.rows == M`,
/// `a.cs == 1` (or `k == 1`), `b.rs == 1` (or `k == 1`), `k ≥ 1`.
#[inline(always)]
unsafe fn gemv_m<V: Simd, const M: usize>(
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
    let arows: [&[f32]; M] = core::array::from_fn(|i| &a.data[i * a.rs..i * a.rs + k]);
    let ap: [*const f32; M] = core::array::from_fn(|i| arows[i].as_ptr());
    let bcol = |j: usize| b.data[j * b.cs..j * b.cs + k].as_ptr();
    let mut j = 0;
    while j + 4 <= n {
        let cols = [bcol(j), bcol(j + 1), bcol(j + 2), bcol(j + 3)];
        // SAFETY: ISA enabled (contract); every pointer comes from a slice of length k.
        let r = unsafe { dots::<V, M, 4>(k, ap, cols) };
        for (i, row) in r.iter().enumerate() {
            for (jj, &d) in row.iter().enumerate() {
                put(c, i, j + jj, d, alpha, beta, epi);
            }
        }
        j += 4;
    }
    while j < n {
        // SAFETY: as above.
        let r = unsafe { dots::<V, M, 1>(k, ap, [bcol(j)]) };
        for (i, row) in r.iter().enumerate() {
            put(c, i, j, row[0], alpha, beta, epi);
        }
        j += 1;
    }
}

/// Dispatch [`gemv_m`] on the row count.
///
/// # Safety
/// As [`gemv_m`] with `1 ≤ a.rows ≤ 4`.
#[inline(always)]
unsafe fn gemv_any<V: Simd>(
    alpha: f32,
    a: &MatRef<'_>,
    b: &MatRef<'_>,
    beta: f32,
    c: &mut MatMut<'_>,
    epi: Epilogue<'_>,
) {
    // SAFETY: forwarded contract; the arm matches `a.rows`.
    unsafe {
        match a.rows {
            1 => gemv_m::<V, 1>(alpha, a, b, beta, c, epi),
            2 => gemv_m::<V, 2>(alpha, a, b, beta, c, epi),
            3 => gemv_m::<V, 3>(alpha, a, b, beta, c, epi),
            _ => gemv_m::<V, 4>(alpha, a, b, beta, c, epi),
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
    // SAFETY: AVX2+FMA enabled here; shape conditions checked by `gemv`.
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
    // SAFETY: AVX-512F enabled here; shape conditions checked by `gemv`.
    unsafe { gemv_any::<__m512>(alpha, a, b, beta, c, epi) }
}

/// The largest `m` the small-m path takes.
pub(crate) const GEMV_MAX_M: usize = 4;

/// Whether [`gemv`] handles this product (x86 kernels only).
pub(crate) fn gemv_applies(a: &MatRef<'_>, b: &MatRef<'_>) -> bool {
    let (m, k) = (a.rows, a.cols);
    (1..=GEMV_MAX_M).contains(&m) && k >= 1 && b.cols >= 1 && (a.cs == 1 || k == 1) && {
        // unit stride along k for B's columns
        b.rs == 1 || k == 1
    }
}

/// Run the small-m path with the AVX-512 (`wide == true`) or AVX2 kernel; the token
/// proves the ISA. Preconditions: [`gemv_applies`] and validated shapes.
pub(crate) fn gemv<K: GemvToken>(
    token: K,
    alpha: f32,
    a: &MatRef<'_>,
    b: &MatRef<'_>,
    beta: f32,
    c: &mut MatMut<'_>,
    epi: Epilogue<'_>,
) {
    debug_assert!(gemv_applies(a, b));
    token.run(alpha, a, b, beta, c, epi);
}

/// Kernel tokens that have a small-m path.
pub(crate) trait GemvToken: Copy {
    fn run(
        self,
        alpha: f32,
        a: &MatRef<'_>,
        b: &MatRef<'_>,
        beta: f32,
        c: &mut MatMut<'_>,
        epi: Epilogue<'_>,
    );
}

impl GemvToken for Avx2 {
    fn run(
        self,
        alpha: f32,
        a: &MatRef<'_>,
        b: &MatRef<'_>,
        beta: f32,
        c: &mut MatMut<'_>,
        epi: Epilogue<'_>,
    ) {
        // SAFETY: an `Avx2` token exists, so AVX2 and FMA were detected.
        unsafe { gemv_avx2(alpha, a, b, beta, c, epi) }
    }
}

impl GemvToken for Avx512 {
    fn run(
        self,
        alpha: f32,
        a: &MatRef<'_>,
        b: &MatRef<'_>,
        beta: f32,
        c: &mut MatMut<'_>,
        epi: Epilogue<'_>,
    ) {
        // SAFETY: an `Avx512` token exists, so AVX-512F was detected.
        unsafe { gemv_avx512(alpha, a, b, beta, c, epi) }
    }
}

// ---------------------------------------------------------------------------------
// Transposing pack: `w`-wide panels from source columns that are contiguous along k
// (`B = Mᵀ` for a row-major M, or a row-major A packed as `Aᵀ`), 8×8 blocks at a
// time with AVX shuffles instead of one scalar load and store per element.
// ---------------------------------------------------------------------------------

/// In-register transpose of eight 8-lane rows: `out[s][t] = rows[t][s]`.
#[inline(always)]
fn transpose8(r: [__m256; 8]) -> [__m256; 8] {
    // SAFETY: pure register shuffles (AVX); only called from `pack_cols_avx`, which
    // runs with AVX2 enabled.
    unsafe {
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

/// Both x86 tokens prove AVX2 (AVX-512F machines have it too: `Avx512::new` checks).
fn pack_cols_x86(src: &[f32], cs: usize, kc: usize, cols: usize, w: usize, panel: &mut [f32]) {
    // SAFETY: only reached through an `Avx2` or `Avx512` token; both are only
    // constructed when AVX2 is present (see `Avx512::new`).
    unsafe { pack_cols_avx(src, cs, kc, cols, w, panel) }
}
