//! The one matrix-product routine of the crate: `C ← epilogue(α·A·B + β·C)`.
//!
//! Every product in the SAE (encoder `X·Mᵀ`, decoder `C·M`, and the three backward
//! products) goes through [`gemm`]. Matrices are strided views ([`MatRef`], [`MatMut`])
//! over caller slices, so transposes are free: `Mᵀ` is the view of `M` with its strides
//! swapped ([`MatRef::t`]).
//!
//! The implementation is the BLIS loop nest, written once and generic over an
//! instruction-set token ([`crate::kernels::isa`]): B is packed `KC×NC` at a time
//! into `NR`-wide column panels and A `MC×KC` at a time into `MR`-tall row panels, both
//! in the caller-provided `pack` buffer (size: [`pack_len`]); the token's micro-kernel
//! multiplies one `MR×NR` tile; α, β and the epilogue (bias + ReLU) are applied while
//! the tile is still in registers as it is stored.
//!
//! ## Kernels
//! One instruction set runs per process, [`selected`] once (see [`Kernel`] and
//! [`crate::kernels::isa`]): on x86_64, AVX-512F (`8×48`) or AVX2+FMA (`6×16`)
//! kernels written with `core::arch` intrinsics and chosen at run time (with or
//! without `std`), so a plain `cargo build --release` is fast; elsewhere (or with the
//! `force-portable` feature) the `wide` kernel (`8×8`), whose SIMD width is fixed at
//! compile time. [`gemm_with`] runs a named kernel, so tests cover every path on one
//! machine; the `SAE_KERNEL` environment variable does the same for whole programs.
//!
//! ## Unpacked products
//! Products with `m ≤` [`SMALL_M`] rows — and every product on bare-metal targets
//! without x86/Arm caches, such as a Cortex-M — skip packing ([`packs`] is false) and
//! read A, B and C in place: dot products when A's rows and B's columns are
//! contiguous (the encoder `x·Mᵀ` of one or a few vectors: `M` is streamed once per
//! call), fused row updates when B's and C's rows are (the decoder `c·M`, the
//! backward `Gᵀ·X`), strided scalar code otherwise. [`pack_len`] is then 0, so the
//! scratch memory of a microcontroller build does not scale with `h·d` and the
//! weights can stay in flash.
//!
//! ## Threads
//! Single-threaded by default. With the `parallel` feature, products of at least
//! `2²⁶` multiply-adds with a unit-column-stride C run on rayon's thread pool: C is
//! cut into a grid of items (column blocks of B, and row bands where the columns
//! are few) that the threads claim one at a time, each running the single-threaded
//! loop nest on its item with its own packed B and A blocks, without a barrier until
//! the end. The threads divide the caller's `pack` buffer: [`pack_len`] is the same with
//! or without the feature, and the results are bit-for-bit the single-threaded
//! ones. See `par` in the source for the plan, and `set_max_threads`.
//!
//! `β = 0` never reads C, so C may hold NaN or garbage.

pub mod naive;
#[cfg(target_arch = "x86_64")]
pub(crate) mod sampled;

use crate::error::{Error, Result};
use crate::kernels::half;
pub use crate::kernels::half::Half;
use crate::kernels::isa::{self, CTile, Isa, IsaVisitor, Out, Store, TILE_MAX};
pub use crate::kernels::isa::{Kernel, selected};
pub use crate::kernels::mat::{Epilogue, MatMut, MatRef};

/// Cache blocking shared by every micro-kernel (in elements).
///
/// Chosen by measurement (`examples/bench.rs`, and sweeps of KC ∈ {192…768},
/// MC ∈ {64…256}, NC ∈ {512…4096}) on the benchmark machine (AVX-512 server core:
/// 48 KiB L1d, 2 MiB L2 per core, large shared L3) with the `8×48` AVX-512 tile:
/// - `KC = 768`: every SAE product with `k ≤ 768` (the encoder at `d ≤ 768`, the
///   backward products over a row block) runs in a single pass over `k`, so each C
///   tile is loaded and stored once. Splitting `k` was the largest loss measured:
///   at `(4096, 512, 4096)`, `KC = 256` ran at 150 GFLOP/s and `KC = 512` at 180,
///   because every extra pass re-reads C (64 MiB there) from memory. The B
///   micro-panel (147 KiB) then lives in L2, and the kernel prefetches it.
/// - `MC = 128`: the packed `MC×KC` A block (384 KiB) stays in L2.
/// - `NC = 1536`: the most columns of a packed B block, which [`pack_len`] sizes
///   for; the loop nest uses fewer where `kc` is large ([`nc_block`]), so that the
///   block stays in L2 (1008 columns at `k = 384`, 480 at `k = 768`).
///
/// Re-checked with the variants interleaved in one process (ratio to gemm 0.19 in
/// the same rounds, ±1–2 % on the shared machine) at the encoder shapes
/// `(4096, 512, 4096)`, `(1024, 768, 16384)`, `(256, 64, 512)`: a B block of 1,
/// 1.25 or 1.75 MiB instead of [`B_L2_BYTES`] = 1.5 MiB, and `MC = 64`, all within
/// ±1 %. A 2 MiB-aligned pack buffer with `MADV_HUGEPAGE` (benchmark-side only) did
/// not change the time either: TLB misses on the packed blocks are not a cost here.
/// Non-temporal stores of C (tried for C ≥ 16 MiB, one pass over `k`, α = 1,
/// β = 0): 0.986× / 0.993× gemm 0.19 against 0.986× / 1.002× with plain stores at
/// `(4096, 512, 4096)`, 1.002× / 0.988× against 0.991× / 0.991× at
/// `(1024, 768, 16384)`; not kept.
pub(crate) const KC: usize = 768;
/// Rows of A packed per block (see [`KC`]).
pub(crate) const MC: usize = 128;
/// Columns of B packed per block (see [`KC`]).
pub(crate) const NC: usize = 1536;

/// Bytes of the packed `KC×NC` block of B that the loop nest keeps in L2 (of 2 MiB
/// per core on the benchmark machine, leaving room for the A panel and C lines).
const B_L2_BYTES: usize = 1536 * 1024;

/// Columns of B per packed block for `kc` rows and `nr`-wide panels: as many whole
/// panels as fit in [`B_L2_BYTES`], at least one, at most [`NC`] (so [`pack_len`]
/// bounds it). With A panels outside and B panels inside ([`panels`]) the block
/// must stay in L2: at `(1024, 384, 3072)`, 1008 columns (1.5 MiB) ran at 80 % of
/// peak where `NC = 1536` (2.4 MiB, beyond L2) ran at 66 %, and at `k = 768`, 480
/// columns at 80 % against 73 % for 336 (A is repacked once per block of B).
const fn nc_block(kc: usize, nr: usize) -> usize {
    let fit = B_L2_BYTES / 4 / kc / nr * nr;
    let fit = if fit < nr { nr } else { fit };
    if fit < NC { fit } else { NC }
}

/// The rows a packed `kc×NR` panel of B fills (the cache footprint [`nc_block`] sizes
/// for): `kc`, or `⌈kc/2⌉` for a kernel that packs bf16 pairs into each `f32` slot.
/// Its panels keep the `kc·NR` stride, so the pack buffer is the same. With the
/// wider block, A (rounded to bf16 while packed) is packed half as often: measured
/// with `bench --bf16-only` (builds alternated, AMD Zen 4, 2026-12-03), the bf16
/// product at `(1024, 768, 16384)` went from 150–163 to 182–183 GFLOP/s (1.47–1.57×
/// → 1.74–1.77× our f32 GEMM), at `(4096, 512, 4096)` from 168–180 to 182–197.
const fn kc_rows<K: Isa>(kc: usize) -> usize {
    if K::BF16_PAIRS { kc.div_ceil(2) } else { kc }
}

/// Panels of B packed together, then multiplied, during the first row block of
/// [`gemm_loop`].
const B_GROUP: usize = 8;

/// Extra `f32` in the pack buffer so the packed panels can start on a 64-byte line.
const ALIGN_SLACK: usize = 16;

const fn round_up(x: usize, m: usize) -> usize {
    x.div_ceil(m) * m
}

/// Number of `f32` the `pack` buffer of [`gemm`] needs for an `m×k` by `k×n` product.
///
/// The value depends only on the shape and bounds the needs of every micro-kernel
/// this build may select at run time (the maximum over the kernels compiled into this
/// build, [`Kernel::is_compiled_in`]: on x86_64 the AVX tiles count, elsewhere not), so it can
/// be computed once at the largest sizes and reused for every smaller product. It is
/// `0` when `m`, `n` or `k` is 0, and `0` for every product that runs unpacked
/// ([`packs`] is false: at most [`SMALL_M`] rows, or any product on a bare-metal
/// target without x86/Arm caches, such as a Cortex-M). The `parallel` feature does
/// not change it.
///
/// A `const fn`, so a `static` buffer can be sized with it.
#[must_use]
pub const fn pack_len(m: usize, n: usize, k: usize) -> usize {
    const fn min(a: usize, b: usize) -> usize {
        if a < b { a } else { b }
    }
    const fn max(a: usize, b: usize) -> usize {
        if a > b { a } else { b }
    }
    if !packs(m, n, k) {
        return 0;
    }
    let kc = min(k, KC);
    let (m, n) = (min(m, MC), min(n, NC));
    let (mut ma, mut nb) = (0, 0);
    let mut i = 0;
    while i < Kernel::ALL.len() {
        let kern = Kernel::ALL[i];
        if kern.is_compiled_in() {
            let (mr, nr) = kern.tile();
            ma = max(ma, round_up(m, mr));
            nb = max(nb, round_up(n, nr));
        }
        i += 1;
    }
    kc * (ma + nb) + ALIGN_SLACK
}

/// Products with at most this many rows (`m`) run without packing, reading A, B
/// and C in place (see [`gemm`]).
pub const SMALL_M: usize = 4;

/// Whether this build packs at all: targets with data caches and SIMD worth blocking
/// for. On bare-metal targets other than x86_64 and aarch64 (microcontrollers such
/// as the Cortex-M, whose memory has no cache hierarchy to block for) every
/// product runs unpacked, so the scratch memory never scales with `h·d` and the
/// weights can be read in place from flash.
const PACKING_TARGET: bool = cfg!(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    not(target_os = "none")
));

/// Whether [`gemm`] packs an `m×k` by `k×n` product (shape only, the same for every
/// kernel): false for empty products, for `m ≤` [`SMALL_M`], and on targets that
/// never pack (see [`pack_len`]).
#[must_use]
pub const fn packs(m: usize, n: usize, k: usize) -> bool {
    PACKING_TARGET && m > SMALL_M && n > 0 && k > 0
}

/// `C ← epilogue(α·A·B + β·C)` for `A: m×k`, `B: k×n`, `C: m×n`.
///
/// With `k == 0` the product is zero and C becomes `epilogue(β·C)`. With `β == 0`, C is
/// only written, never read.
///
/// The kernel is [`selected`] once per process. A product with at most [`SMALL_M`]
/// rows (on a microcontroller target: every product) runs without packing, straight
/// from the caller's memory (see the module documentation): encoding a single vector
/// reads each column of `Mᵀ` once, at the speed of streaming `M`, and needs no
/// `pack` memory ([`pack_len`] is 0).
///
/// # Errors
/// [`Error::Dimension`] if the inner or outer dimensions do not match;
/// [`Error::Length`] if a bias has the wrong length;
/// [`Error::WorkspaceTooSmall`] if `pack.len() < pack_len(m, n, k)`.
/// On error C is unchanged.
///
/// # Example
/// ```
/// use sae_kernels::kernels::gemm::{gemm, pack_len, Epilogue, MatMut, MatRef};
/// let a = [1.0, 2.0, 3.0, 4.0]; // 2×2 row-major
/// let b = [5.0, 6.0, 7.0, 8.0];
/// let mut c = [0.0; 4];
/// let mut pack = vec![0.0; pack_len(2, 2, 2)];
/// gemm(
///     1.0,
///     MatRef::row_major("a", &a, 2, 2)?,
///     MatRef::row_major("b", &b, 2, 2)?,
///     0.0,
///     MatMut::row_major("c", &mut c, 2, 2)?,
///     Epilogue::None,
///     &mut pack,
/// )?;
/// assert_eq!(c, [19.0, 22.0, 43.0, 50.0]);
/// # Ok::<(), sae_kernels::Error>(())
/// ```
pub fn gemm(
    alpha: f32,
    a: MatRef<'_>,
    b: MatRef<'_>,
    beta: f32,
    c: MatMut<'_>,
    epilogue: Epilogue<'_>,
    pack: &mut [f32],
) -> Result<()> {
    check(&a, &b, &c, epilogue, pack)?;
    run(selected(), alpha, a, b, beta, c, epilogue, pack);
    Ok(())
}

/// [`gemm`] with a chosen kernel family instead of the [`selected`] one: for tests
/// that cover every kernel on one machine, and for benchmarks.
///
/// # Errors
/// As [`gemm`].
///
/// # Panics
/// If `!kernel.is_available()` on this machine.
#[allow(clippy::too_many_arguments)]
pub fn gemm_with(
    kernel: Kernel,
    alpha: f32,
    a: MatRef<'_>,
    b: MatRef<'_>,
    beta: f32,
    c: MatMut<'_>,
    epilogue: Epilogue<'_>,
    pack: &mut [f32],
) -> Result<()> {
    assert!(
        kernel.is_available(),
        "GEMM kernel {} is not available on this machine",
        kernel.name()
    );
    check(&a, &b, &c, epilogue, pack)?;
    run(kernel, alpha, a, b, beta, c, epilogue, pack);
    Ok(())
}

/// Number of `f32` the buffer of [`pack_b`] needs for a `k×n` right-hand side: the
/// whole of B in the micro-kernel's panel layout (`k·n` rounded up to whole panels of
/// the widest tile compiled into this build, plus a cache line of alignment slack).
/// `0` for an empty B and on targets that never pack ([`packs`]), where
/// [`gemm_packed`] reads B in place.
///
/// A `const fn`, so a `static` buffer can be sized with it.
#[must_use]
pub const fn packed_b_len(k: usize, n: usize) -> usize {
    if !PACKING_TARGET || k == 0 || n == 0 {
        return 0;
    }
    let mut nb = 0;
    let mut i = 0;
    while i < Kernel::ALL.len() {
        let kern = Kernel::ALL[i];
        if kern.is_compiled_in() {
            let w = round_up(n, kern.tile().1);
            if w > nb {
                nb = w;
            }
        }
        i += 1;
    }
    k * nb + ALIGN_SLACK
}

/// A right-hand side `B` (`k×n`) packed once, by [`pack_b`], into the panels the
/// loop nest of [`gemm`] would otherwise pack on every call: for products that reuse
/// the same B many times — the weights of an SAE across the row blocks of a batch,
/// or across the batches of an encoding server.
///
/// Layout (in the caller's buffer, from its first 64-byte line): for each block of
/// `KC` rows of B in turn, all of B's columns as `NR`-wide panels, `panel[kk·NR + j] =
/// B[k0 + kk, q·NR + j]`, columns past `n` zero; `NR` is the tile width of the
/// kernel it was packed for. [`gemm_packed`] multiplies with it.
#[derive(Clone, Copy, Debug)]
pub struct PackedB<'a> {
    src: MatRef<'a>,
    data: &'a [f32],
    kernel: Kernel,
}

impl<'a> PackedB<'a> {
    /// The unpacked view it was packed from (`k×n`).
    #[must_use]
    pub fn source(&self) -> MatRef<'a> {
        self.src
    }
    /// The kernel family whose panel width it was packed for.
    #[must_use]
    pub fn kernel(&self) -> Kernel {
        self.kernel
    }
}

/// Pack `b` (`k×n`) for the [`selected`] kernel into `buf` (at least
/// [`packed_b_len`]`(k, n)` floats) for use by [`gemm_packed`]. The result borrows
/// both `b` (read in place by products that do not pack, see [`SMALL_M`]) and
/// `buf`.
///
/// # Errors
/// [`Error::WorkspaceTooSmall`] if `buf.len() < packed_b_len(k, n)`.
///
/// # Example
/// ```
/// use sae_kernels::kernels::gemm::{
///     gemm, gemm_packed, pack_b, pack_len, packed_b_len, Epilogue, MatMut, MatRef,
/// };
/// let (m, k, n) = (6, 3, 5);
/// let a: Vec<f32> = (0..m * k).map(|i| i as f32 * 0.5).collect();
/// let w: Vec<f32> = (0..n * k).map(|i| 1.0 - i as f32 * 0.25).collect(); // n×k
/// let b = MatRef::row_major("w", &w, n, k)?.t(); // B = Wᵀ, k×n
/// let mut buf = vec![0.0; packed_b_len(k, n)];
/// let packed = pack_b(b, &mut buf)?;
/// let mut pack = vec![0.0; pack_len(m, n, k)];
/// let (mut c1, mut c2) = (vec![0.0; m * n], vec![0.0; m * n]);
/// let x = MatRef::row_major("a", &a, m, k)?;
/// gemm_packed(1.0, x, &packed, 0.0, MatMut::row_major("c", &mut c1, m, n)?, Epilogue::None, &mut pack)?;
/// gemm(1.0, x, b, 0.0, MatMut::row_major("c", &mut c2, m, n)?, Epilogue::None, &mut pack)?;
/// assert_eq!(c1, c2); // the same bits: the same micro-kernel calls
/// # Ok::<(), sae_kernels::Error>(())
/// ```
pub fn pack_b<'a>(b: MatRef<'a>, buf: &'a mut [f32]) -> Result<PackedB<'a>> {
    pack_b_with(selected(), b, buf)
}

/// [`pack_b`] for a chosen kernel family (tests and benchmarks); [`gemm_packed`]
/// then runs that kernel.
///
/// # Errors
/// As [`pack_b`].
///
/// # Panics
/// If `!kernel.is_available()` on this machine.
pub fn pack_b_with<'a>(kernel: Kernel, b: MatRef<'a>, buf: &'a mut [f32]) -> Result<PackedB<'a>> {
    assert!(
        kernel.is_available(),
        "GEMM kernel {} is not available on this machine",
        kernel.name()
    );
    let (k, n) = (b.rows, b.cols);
    let need = packed_b_len(k, n);
    if buf.len() < need {
        return Err(Error::WorkspaceTooSmall {
            arg: "buf",
            needed: need,
            got: buf.len(),
        });
    }
    if need == 0 {
        return Ok(PackedB {
            src: b,
            data: &[],
            kernel,
        });
    }
    let off = buf.as_ptr().align_offset(64).min(ALIGN_SLACK);
    let nr = kernel.tile().1;
    let len = k * round_up(n, nr);
    let out = &mut buf[off..off + len];
    struct PackAll<'b, 'o> {
        b: MatRef<'b>,
        out: &'o mut [f32],
    }
    impl IsaVisitor for PackAll<'_, '_> {
        type Output = ();
        fn visit<I: Isa>(self, isa: I) {
            let (k, n) = (self.b.rows, self.b.cols);
            let w = round_up(n, I::NR);
            for pc in (0..k).step_by(KC) {
                let kc = KC.min(k - pc);
                let dst = &mut self.out[pc * w..(pc + kc) * w];
                pack_panels(isa, &self.b, pc, kc, 0, n, I::NR, dst);
            }
        }
    }
    isa::visit(kernel, PackAll { b, out: &mut *out });
    Ok(PackedB {
        src: b,
        data: &buf[off..off + len],
        kernel,
    })
}

/// [`gemm`] with a right-hand side packed beforehand by [`pack_b`]: `C ←
/// epilogue(α·A·B + β·C)`, the same bits as [`gemm`] on `b.source()` (the same
/// micro-kernel calls, without packing B again). Runs the kernel B was packed for.
///
/// `pack` is sized as for [`gemm`] ([`pack_len`]`(m, n, k)`; only the part for A
/// is used).
///
/// # Errors
/// As [`gemm`]. On error C is unchanged.
pub fn gemm_packed(
    alpha: f32,
    a: MatRef<'_>,
    b: &PackedB<'_>,
    beta: f32,
    c: MatMut<'_>,
    epilogue: Epilogue<'_>,
    pack: &mut [f32],
) -> Result<()> {
    check(&a, &b.src, &c, epilogue, pack)?;
    isa::visit(
        b.kernel,
        Product {
            alpha,
            a,
            b: *b,
            beta,
            c,
            epi: epilogue,
            pack,
        },
    );
    Ok(())
}

/// `C ← epilogue(α·A·Wᵀ + β·C)` with 16-bit weights: `A: m×k` (`f32`), `W` a
/// row-major `n×k` matrix of bf16 or f16 values ([`Half`]; `w.len() == n·k`), `C: m×n`.
///
/// This is the SAE encoder `relu(X·Mᵀ + b)` with the dictionary `M` (`h×d`) stored in
/// 16 bits. The weights are widened to `f32` (exactly) as they are read and every
/// sum is accumulated in `f32`, so the result equals [`gemm`] on the widened weights
/// up to summation order; see [`crate::kernels::half`] for the bound against the
/// original `f32` weights. With at most [`SMALL_M`] rows the weights are read in place
/// and widened in registers (the single-vector encoder reads half the bytes of the
/// `f32` one); larger products widen them while packing, so `pack` is sized by
/// [`pack_len`]`(m, n, k)` as for [`gemm`].
///
/// # Errors
/// As [`gemm`], with [`Error::Length`] (`arg = "w"`) if `w.len() != n·k`. On error C
/// is unchanged.
///
/// # Example
/// ```
/// use sae_kernels::kernels::gemm::{gemm_nt_half, pack_len, Epilogue, MatMut, MatRef};
/// use sae_kernels::kernels::half::Half;
/// let x = [1.0, 2.0]; // one row, k = 2
/// let w: Vec<u16> = [1.0f32, 0.5, -1.0, 3.0].iter().map(|&v| Half::Bf16.from_f32(v)).collect();
/// let mut c = [0.0; 2];
/// gemm_nt_half(
///     Half::Bf16, 1.0,
///     MatRef::row_major("x", &x, 1, 2)?, &w, 2,
///     0.0, MatMut::row_major("c", &mut c, 1, 2)?,
///     Epilogue::None, &mut [],
/// )?;
/// assert_eq!(c, [2.0, 5.0]);
/// # Ok::<(), sae_kernels::Error>(())
/// ```
#[allow(clippy::too_many_arguments)]
pub fn gemm_nt_half(
    format: Half,
    alpha: f32,
    a: MatRef<'_>,
    w: &[u16],
    n: usize,
    beta: f32,
    c: MatMut<'_>,
    epilogue: Epilogue<'_>,
    pack: &mut [f32],
) -> Result<()> {
    gemm_nt_half_with(selected(), format, alpha, a, w, n, beta, c, epilogue, pack)
}

/// [`gemm_nt_half`] with a chosen kernel family (for tests and benchmarks).
///
/// # Errors
/// As [`gemm_nt_half`].
///
/// # Panics
/// If `!kernel.is_available()` on this machine.
#[allow(clippy::too_many_arguments)]
pub fn gemm_nt_half_with(
    kernel: Kernel,
    format: Half,
    alpha: f32,
    a: MatRef<'_>,
    w: &[u16],
    n: usize,
    beta: f32,
    c: MatMut<'_>,
    epilogue: Epilogue<'_>,
    pack: &mut [f32],
) -> Result<()> {
    assert!(
        kernel.is_available(),
        "GEMM kernel {} is not available on this machine",
        kernel.name()
    );
    let product = half_product(format, alpha, a, w, n, beta, c, epilogue, pack)?;
    isa::visit(kernel, product);
    Ok(())
}

/// Whether this CPU has the bf16 dot-product instructions (AVX512_BF16) that
/// [`gemm_nt_half_bf16_dot`] uses.
#[must_use]
pub fn bf16_dot_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        isa::x86::avx512bf16().is_some()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// [`gemm_nt_half`] computed in bf16 where the CPU can (only when asked for, by
/// calling this function): if [`bf16_dot_available`] and the product is packed
/// ([`packs`]), A is rounded to bf16 as it is packed, the weights are packed as bf16
/// (f16 weights are rounded to bf16), and the micro-kernel multiplies bf16 pairs
/// with `vdpbf16ps`, accumulating in `f32`; α, β, the bias and ReLU are applied in
/// `f32`. Otherwise exactly [`gemm_nt_half`].
///
/// Error against the `f32` product with `f32` inputs: each product term carries the
/// rounding of both factors to bf16, so `|Δ| ≤ (2·2⁻⁸ + 2⁻¹⁶)·Σ_p|α·a_ip·w_jp|` plus
/// the usual `f32` summation bound.
///
/// # Errors
/// As [`gemm_nt_half`].
#[allow(clippy::too_many_arguments)]
pub fn gemm_nt_half_bf16_dot(
    format: Half,
    alpha: f32,
    a: MatRef<'_>,
    w: &[u16],
    n: usize,
    beta: f32,
    c: MatMut<'_>,
    epilogue: Epilogue<'_>,
    pack: &mut [f32],
) -> Result<()> {
    let packed = packs(a.rows, n, a.cols);
    let product = half_product(format, alpha, a, w, n, beta, c, epilogue, pack)?;
    #[cfg(target_arch = "x86_64")]
    if let Some(t) = isa::x86::avx512bf16().filter(|_| packed) {
        product.visit(t);
        return Ok(());
    }
    let _ = packed;
    isa::visit(selected(), product);
    Ok(())
}

/// [`gemm`] computed in bf16 where the CPU can (only when asked for, by calling this
/// function): if [`bf16_dot_available`] and the product is packed ([`packs`]), A and
/// B are rounded to bf16 (round to nearest even) as they are packed and the
/// micro-kernel multiplies bf16 pairs with `vdpbf16ps`, accumulating in `f32`; α, β,
/// the bias and ReLU are applied in `f32`. Otherwise exactly [`gemm`].
///
/// Error against [`gemm`]: each product term carries the rounding of both factors to
/// bf16, so `|Δ| ≤ (2·2⁻⁸ + 2⁻¹⁶)·Σ_p|α·a_ip·b_pj|` plus the two sums' `f32` rounding
/// (`vdpbf16ps` also treats subnormal bf16 inputs and results as zero). The TopK
/// encoder's screen ([`crate::model`]) uses it with a bound of this form to find the
/// few candidates whose exact values it then computes.
///
/// # Errors
/// As [`gemm`].
pub fn gemm_bf16_dot(
    alpha: f32,
    a: MatRef<'_>,
    b: MatRef<'_>,
    beta: f32,
    c: MatMut<'_>,
    epilogue: Epilogue<'_>,
    pack: &mut [f32],
) -> Result<()> {
    check(&a, &b, &c, epilogue, pack)?;
    #[cfg(target_arch = "x86_64")]
    if let Some(t) = isa::x86::avx512bf16().filter(|_| packs(a.rows, b.cols, a.cols)) {
        let product = Product {
            alpha,
            a,
            b,
            beta,
            c,
            epi: epilogue,
            pack,
        };
        product.visit(t);
        return Ok(());
    }
    run(selected(), alpha, a, b, beta, c, epilogue, pack);
    Ok(())
}

/// Validate a 16-bit-weight product (see [`gemm_nt_half`]).
#[allow(clippy::too_many_arguments)]
fn half_product<'a, 'p>(
    format: Half,
    alpha: f32,
    a: MatRef<'a>,
    w: &'a [u16],
    n: usize,
    beta: f32,
    c: MatMut<'a>,
    epi: Epilogue<'a>,
    pack: &'p mut [f32],
) -> Result<HalfProduct<'a, 'p>> {
    let k = a.cols;
    let need = crate::error::mul("w", n, k)?;
    crate::error::check_len("w", w.len(), need)?;
    // The shape checks of `gemm`, with a zero-stride stand-in view for B (`k×n`).
    let b = MatRef {
        data: &[0.0],
        rows: k,
        cols: n,
        rs: 0,
        cs: 0,
    };
    check(&a, &b, &c, epi, pack)?;
    Ok(HalfProduct {
        src: HalfT { w, n, k, format },
        alpha,
        a,
        beta,
        c,
        epi,
        pack,
    })
}

/// A validated 16-bit-weight product, waiting for its instruction set.
struct HalfProduct<'a, 'p> {
    src: HalfT<'a>,
    alpha: f32,
    a: MatRef<'a>,
    beta: f32,
    c: MatMut<'a>,
    epi: Epilogue<'a>,
    pack: &'p mut [f32],
}

impl IsaVisitor for HalfProduct<'_, '_> {
    type Output = ();
    fn visit<I: Isa>(self, isa: I) {
        let HalfProduct {
            src,
            alpha,
            a,
            beta,
            mut c,
            epi,
            pack,
        } = self;
        let (m, k, n) = (a.rows, a.cols, src.n);
        if packs(m, n, k) {
            gemm_loop(isa, alpha, a, &src, beta, c, epi, pack);
        } else if m == 0 || n == 0 {
        } else if k == 0 {
            scale_c(&mut c, beta, epi);
        } else if a.cs == 1 || k == 1 {
            isa.dots_half(src.format, alpha, &a, src.w, beta, &mut c, epi);
        } else {
            for i in 0..m {
                for j in 0..n {
                    let wr = &src.w[j * k..(j + 1) * k];
                    let s = (0..k).fold(0.0f32, |s, p| s + a.at(i, p) * src.format.to_f32(wr[p]));
                    isa::put(&mut c, i, j, s, alpha, beta, epi);
                }
            }
        }
    }
}

/// Shape, bias and workspace checks shared by [`gemm`] and [`gemm_with`].
fn check(
    a: &MatRef<'_>,
    b: &MatRef<'_>,
    c: &MatMut<'_>,
    epilogue: Epilogue<'_>,
    pack: &[f32],
) -> Result<()> {
    if a.cols != b.rows {
        return Err(Error::Dimension {
            arg: "b.rows",
            expected: a.cols,
            got: b.rows,
        });
    }
    if c.rows != a.rows {
        return Err(Error::Dimension {
            arg: "c.rows",
            expected: a.rows,
            got: c.rows,
        });
    }
    if c.cols != b.cols {
        return Err(Error::Dimension {
            arg: "c.cols",
            expected: b.cols,
            got: c.cols,
        });
    }
    if let (Some(bias), _) = epilogue.parts() {
        crate::error::check_len("bias", bias.len(), c.cols)?;
    }
    let need = pack_len(a.rows, b.cols, a.cols);
    if pack.len() < need {
        return Err(Error::WorkspaceTooSmall {
            arg: "pack",
            needed: need,
            got: pack.len(),
        });
    }
    Ok(())
}

/// Run a validated product with the given kernel family (an unavailable x86 kernel
/// falls back to the portable one; [`gemm_with`] rejects that case before).
#[allow(clippy::too_many_arguments)]
fn run(
    kernel: Kernel,
    alpha: f32,
    a: MatRef<'_>,
    b: MatRef<'_>,
    beta: f32,
    c: MatMut<'_>,
    epi: Epilogue<'_>,
    pack: &mut [f32],
) {
    isa::visit(
        kernel,
        Product {
            alpha,
            a,
            b,
            beta,
            c,
            epi,
            pack,
        },
    );
}

/// A validated product, waiting for its instruction set; `B` is an `f32` view
/// ([`gemm`]) or one packed beforehand ([`gemm_packed`]).
struct Product<'a, 'p, B> {
    alpha: f32,
    a: MatRef<'a>,
    b: B,
    beta: f32,
    c: MatMut<'a>,
    epi: Epilogue<'a>,
    pack: &'p mut [f32],
}

impl<'a, B: PackB + F32View<'a>> IsaVisitor for Product<'a, '_, B> {
    type Output = ();
    fn visit<I: Isa>(self, isa: I) {
        let Product {
            alpha,
            a,
            b,
            beta,
            c,
            epi,
            pack,
        } = self;
        if packs(a.rows, b.cols(), a.cols) {
            gemm_loop(isa, alpha, a, &b, beta, c, epi, pack);
        } else {
            unpacked(isa, alpha, a, b.view(), beta, c, epi);
        }
    }
}

/// The product without packing (A, B and C read in place), for the shapes where
/// [`packs`] is false. Three forms, by layout:
/// - **dot form** (A rows and B columns contiguous, e.g. the encoder `x·Mᵀ`): each
///   element is a dot product ([`Isa::dots`]; register-blocked on x86 so that each
///   column of B is read once per four rows);
/// - **axpy form** (B rows and C rows contiguous, β = 0 or α = 1, e.g. the decoder
///   `c·M` or the backward `Gᵀ·X`): for each pair of `k` steps, every row of C takes
///   a fused [`Isa::axpy2`] of two rows of B, so B is streamed once and the C rows
///   stay in cache;
/// - otherwise one scalar dot product per element through the strides.
#[allow(clippy::too_many_arguments)]
fn unpacked<I: Isa>(
    isa: I,
    alpha: f32,
    a: MatRef<'_>,
    b: MatRef<'_>,
    beta: f32,
    mut c: MatMut<'_>,
    epi: Epilogue<'_>,
) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        scale_c(&mut c, beta, epi);
        return;
    }
    if k == 1 || (a.cs == 1 && b.rs == 1) {
        isa.dots(alpha, &a, &b, beta, &mut c, epi);
    } else if (n == 1 || (b.cs == 1 && c.cs == 1)) && (beta == 0.0 || alpha == 1.0) {
        // The sums Σ_p a_ip·b_p accumulate in C's rows, so either C starts at 0 and α
        // is applied at the end (β = 0: C is written, never read), or α = 1 and C
        // starts at β·C. (α is never folded into a_ip, which could overflow where
        // α·a_ip·b_pj does not.)
        for i in 0..m {
            let row = &mut c.data[i * c.rs..i * c.rs + n];
            if beta == 0.0 {
                row.fill(0.0);
            } else if beta != 1.0 {
                row.iter_mut().for_each(|v| *v *= beta);
            }
        }
        let brow = |p: usize| &b.data[p * b.rs..p * b.rs + n];
        let mut p = 0;
        while p + 2 <= k {
            let (b0, b1) = (brow(p), brow(p + 1));
            for i in 0..m {
                let row = &mut c.data[i * c.rs..i * c.rs + n];
                isa.axpy2(a.at(i, p), b0, a.at(i, p + 1), b1, row);
            }
            p += 2;
        }
        if p < k {
            let b0 = brow(p);
            for i in 0..m {
                isa.axpy(a.at(i, p), b0, &mut c.data[i * c.rs..i * c.rs + n]);
            }
        }
        let scale = beta == 0.0 && alpha != 1.0;
        if scale || !matches!(epi, Epilogue::None) {
            for i in 0..m {
                let row = &mut c.data[i * c.rs..i * c.rs + n];
                if scale {
                    row.iter_mut().for_each(|v| *v *= alpha);
                }
                if !matches!(epi, Epilogue::None) {
                    for (j, v) in row.iter_mut().enumerate() {
                        *v = epi.apply(*v, j);
                    }
                }
            }
        }
    } else {
        for i in 0..m {
            for j in 0..n {
                let s = (0..k).fold(0.0f32, |s, p| s + a.at(i, p) * b.at(p, j));
                isa::put(&mut c, i, j, s, alpha, beta, epi);
            }
        }
    }
}

/// The loop nest, written once for every micro-kernel. Shapes are already validated.
#[allow(clippy::too_many_arguments)]
fn gemm_loop<K: Isa, B: PackB>(
    kern: K,
    alpha: f32,
    a: MatRef<'_>,
    b: &B,
    beta: f32,
    mut c: MatMut<'_>,
    epi: Epilogue<'_>,
    pack: &mut [f32],
) {
    let (m, k, n) = (a.rows, a.cols, b.cols());
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        scale_c(&mut c, beta, epi);
        return;
    }
    let (mr, nr) = (K::MR, K::NR);
    // Start the panels on a 64-byte boundary (only placement depends on the address,
    // never the arithmetic).
    let off = pack.as_ptr().align_offset(64).min(ALIGN_SLACK);
    let pack = &mut pack[off..];
    let kc_max = k.min(KC);
    let nc_blk = nc_block(kc_rows::<K>(kc_max), nr);
    let b_len = kc_max * round_up(n.min(nc_blk), nr);
    let a_len = kc_max * round_up(m.min(MC), mr);
    if par::gemm_loop(kern, alpha, &a, b, beta, &mut c, epi, pack) {
        return;
    }
    let (bpack, rest) = pack.split_at_mut(b_len);
    let apack = &mut rest[..a_len];

    for jc in (0..n).step_by(nc_blk) {
        let nc = nc_blk.min(n - jc);
        for pc in (0..k).step_by(KC) {
            let kc = KC.min(k - pc);
            let last = pc + kc == k;
            let beta = if pc == 0 { beta } else { 1.0 };
            let epi = if last { epi } else { Epilogue::None };
            let pre = b.packed(pc, kc, jc, nc, nr);
            for ic in (0..m).step_by(MC) {
                let mc = MC.min(m - ic);
                pack_panels(kern, &a.t(), pc, kc, ic, mc, mr, apack);
                // Rows ic..ic+mc of C as a view (row i here is row ic + i of C).
                let mut rows = MatMut {
                    data: &mut c.data[ic * c.rs..],
                    rows: mc,
                    cols: c.cols,
                    rs: c.rs,
                    cs: c.cs,
                };
                if ic == 0 && pre.is_none() {
                    // B is packed [`B_GROUP`] panels at a time during the first row
                    // block, right before the kernel uses them (while they are still
                    // in L1/L2), instead of in a separate pass over the whole block;
                    // later row blocks reuse the packed panels. (One panel at a time
                    // reads each row of a row-major B in 192-byte pieces 12 KiB
                    // apart at the SAE shapes; a group reads 1.5 KiB runs, 2 % of
                    // peak faster at `(1024, 384, 3072)`.)
                    let group = B_GROUP * nr;
                    for (g, jr) in (0..nc).step_by(group).enumerate() {
                        let cols = group.min(nc - jr);
                        let q = g * B_GROUP;
                        let panel = &mut bpack[q * nr * kc..(q + cols.div_ceil(nr)) * nr * kc];
                        b.pack(kern, pc, kc, jc + jr, cols, nr, panel);
                        let nr_eff = cols;
                        let blk = Block {
                            alpha,
                            beta,
                            epi,
                            kc,
                            jc: jc + jr,
                            nc: nr_eff,
                            bpack: panel,
                        };
                        panels(kern, &blk, apack, &mut rows, 0);
                    }
                } else {
                    // Later row blocks, or every row block of a B packed beforehand.
                    let blk = Block {
                        alpha,
                        beta,
                        epi,
                        kc,
                        jc,
                        nc,
                        bpack: pre.unwrap_or(bpack),
                    };
                    panels(kern, &blk, apack, &mut rows, 0);
                }
            }
        }
    }
}

/// A `k×n` right-hand side the loop nest can pack: an `f32` view, or 16-bit weights.
/// (`Sync`: with the `parallel` feature, several threads pack panels of one block.)
trait PackB: Sync {
    /// Columns (`n`).
    fn cols(&self) -> usize;
    /// Pack rows `k0..k0+kc`, columns `j0..j0+nc` into `w`-wide panels (the layout of
    /// [`pack_panels`]), widening to `f32`.
    #[allow(clippy::too_many_arguments)]
    fn pack<K: Isa>(
        &self,
        kern: K,
        k0: usize,
        kc: usize,
        j0: usize,
        nc: usize,
        w: usize,
        out: &mut [f32],
    );
    /// The `w`-wide panels of rows `k0..k0+kc`, columns `j0..j0+nc` if they are
    /// already packed ([`PackedB`]), `None` if they must be packed.
    fn packed(&self, _k0: usize, _kc: usize, _j0: usize, _nc: usize, _w: usize) -> Option<&[f32]> {
        None
    }
}

/// A right-hand side with an `f32` view, which products that do not pack read in
/// place.
trait F32View<'a> {
    fn view(&self) -> MatRef<'a>;
}

impl<'a> F32View<'a> for MatRef<'a> {
    fn view(&self) -> MatRef<'a> {
        *self
    }
}

impl<'a> F32View<'a> for PackedB<'a> {
    fn view(&self) -> MatRef<'a> {
        self.src
    }
}

impl PackB for PackedB<'_> {
    fn cols(&self) -> usize {
        self.src.cols
    }
    #[inline(always)]
    fn pack<K: Isa>(
        &self,
        kern: K,
        k0: usize,
        kc: usize,
        j0: usize,
        nc: usize,
        w: usize,
        out: &mut [f32],
    ) {
        // Only where a block is not served packed (a panel-width mismatch).
        self.src.pack(kern, k0, kc, j0, nc, w, out);
    }
    fn packed(&self, k0: usize, kc: usize, j0: usize, nc: usize, w: usize) -> Option<&[f32]> {
        // Only for the panel width it was packed with (a kernel family always runs
        // its own token, so this holds; the check keeps a mismatch correct, not UB).
        if self.data.is_empty() || w != self.kernel.tile().1 || !j0.is_multiple_of(w) {
            return None;
        }
        let n = round_up(self.src.cols, w);
        let start = k0 * n + j0 * kc;
        let got = self.data.get(start..start + nc.div_ceil(w) * w * kc);
        #[cfg(test)]
        if got.is_some() {
            PACKED_HITS.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
        }
        got
    }
}

/// Blocks of B that products took from a [`PackedB`] (tests check that it was used).
#[cfg(test)]
pub(crate) static PACKED_HITS: core::sync::atomic::AtomicUsize =
    core::sync::atomic::AtomicUsize::new(0);

impl PackB for MatRef<'_> {
    fn cols(&self) -> usize {
        self.cols
    }
    #[inline(always)]
    fn pack<K: Isa>(
        &self,
        kern: K,
        k0: usize,
        kc: usize,
        j0: usize,
        nc: usize,
        w: usize,
        out: &mut [f32],
    ) {
        pack_panels(kern, self, k0, kc, j0, nc, w, out);
    }
}

/// `B = Wᵀ` for a row-major `n×k` matrix `W` of 16-bit values.
struct HalfT<'a> {
    w: &'a [u16],
    n: usize,
    k: usize,
    format: Half,
}

impl PackB for HalfT<'_> {
    fn cols(&self) -> usize {
        self.n
    }
    fn pack<K: Isa>(
        &self,
        kern: K,
        k0: usize,
        kc: usize,
        j0: usize,
        nc: usize,
        w: usize,
        out: &mut [f32],
    ) {
        if K::BF16_PAIRS && self.pack_bf16_pairs(kern, k0, kc, j0, nc, w, out) {
            return;
        }
        if K::BF16_PAIRS {
            let at = |kk: usize, j: usize| self.w[(j0 + j) * self.k + k0 + kk];
            match self.format {
                Half::Bf16 => pack_pairs(kc, nc, w, out, at),
                Half::F16 => pack_pairs(kc, nc, w, out, |kk, j| {
                    half::f32_to_bf16(half::f16_to_f32(at(kk, j)))
                }),
            }
            return;
        }
        for (q, jr) in (0..nc).step_by(w).enumerate() {
            let panel = &mut out[q * w * kc..(q + 1) * w * kc];
            let cols = w.min(nc - jr);
            for j in 0..cols {
                let s = (j0 + jr + j) * self.k + k0;
                let src = &self.w[s..s + kc];
                match self.format {
                    Half::Bf16 => {
                        for (dst, &v) in panel.chunks_exact_mut(w).zip(src) {
                            dst[j] = half::bf16_to_f32(v);
                        }
                    }
                    Half::F16 => {
                        for (dst, &v) in panel.chunks_exact_mut(w).zip(src) {
                            dst[j] = half::f16_to_f32(v);
                        }
                    }
                }
            }
            if cols < w {
                for dst in panel.chunks_exact_mut(w) {
                    dst[cols..].fill(0.0);
                }
            }
        }
    }
}

impl HalfT<'_> {
    /// bf16 weights with an even `k`, `k0` and `kc`: each pair slot of [`pack_pairs`]
    /// is one aligned 32-bit word of `W`'s row (`W[j, k0 + 2p]` low, `W[j, k0 + 2p +
    /// 1]` high), so packing is the transposing pack of `f32` panels
    /// ([`Isa::pack_cols`], AVX shuffles) on `W` read as 32-bit words, the same bits.
    /// `false` (nothing written) where that does not apply: another format, odd
    /// sizes, a `W` not 4-byte aligned, or no such pack for this instruction set.
    #[allow(clippy::too_many_arguments)]
    fn pack_bf16_pairs<K: Isa>(
        &self,
        kern: K,
        k0: usize,
        kc: usize,
        j0: usize,
        nc: usize,
        w: usize,
        out: &mut [f32],
    ) -> bool {
        if self.format != Half::Bf16 || !(self.k | k0 | kc).is_multiple_of(2) {
            return false;
        }
        let Ok(words) = bytemuck::try_cast_slice::<u16, f32>(self.w) else {
            return false;
        };
        let (cs, kp) = (self.k / 2, kc / 2);
        for (q, jr) in (0..nc).step_by(w).enumerate() {
            let panel = &mut out[q * w * kc..q * w * kc + kp * w];
            let cols = w.min(nc - jr);
            let start = (j0 + jr) * cs + k0 / 2;
            let end = start + (cols - 1) * cs + kp;
            if !kern.pack_cols(&words[start..end], cs, kp, cols, w, panel) {
                // The same answer for every panel: nothing was written.
                return false;
            }
        }
        true
    }
}

/// One packed `kc×nc` block of B and what the stores of its products apply.
struct Block<'a> {
    alpha: f32,
    /// β for this `k` block (1 after the first).
    beta: f32,
    /// The epilogue, on the last `k` block only.
    epi: Epilogue<'a>,
    kc: usize,
    jc: usize,
    nc: usize,
    bpack: &'a [f32],
}

/// Multiply A panels `ir0/MR ..` of the packed A block (`apack`) by the packed B
/// block into `c`, a view of the matching rows of C (`c` row `i` is row `ir0 + i` of
/// the block; `ir0` is a multiple of `MR`).
fn panels<K: Isa>(kern: K, blk: &Block<'_>, apack: &[f32], c: &mut MatMut<'_>, ir0: usize) {
    let (mr, nr) = (K::MR, K::NR);
    let Block {
        alpha,
        beta,
        epi,
        kc,
        jc,
        nc,
        bpack,
    } = *blk;
    let mut tile = [0.0f32; TILE_MAX];
    let direct_ok = c.cs == 1;
    // Row panels of A outside, column panels of B inside: the `MR×KC` A panel
    // (12 KiB at `KC = 384`) stays in L1 while the B block streams from L2 (see
    // [`nc_block`]); C is written one row strip at a time.
    for ir in (0..c.rows).step_by(mr) {
        let mr_eff = mr.min(c.rows - ir);
        let p = (ir0 + ir) / mr;
        let ap = &apack[p * mr * kc..(p + 1) * mr * kc];
        for (q, jr) in (0..nc).step_by(nr).enumerate() {
            let nr_eff = nr.min(nc - jr);
            let bp = &bpack[q * nr * kc..(q + 1) * nr * kc];
            let st = Store::tile(alpha, beta, epi, jc + jr..jc + jr + nr_eff);
            let (i0, j0) = (ir, jc + jr);
            if direct_ok && (mr_eff == 1 || c.rs >= nr_eff) {
                // The next tile's rows of C: fetch them while this tile computes, so
                // its stores (a read-for-ownership of every line, rows a C stride
                // apart) do not stall at the end of its `k` loop.
                // (One bounds check per tile, not per row: at `(256, 64, 512)` the
                // per-row slicing cost 1–3 % against this form, interleaved.)
                if jr + nr < nc {
                    let next = i0 * c.rs + j0 + nr;
                    prefetch_tile(c.data, next, c.rs, mr_eff, nr.min(nc - jr - nr));
                }
                let start = i0 * c.rs + j0;
                let len = (mr_eff - 1) * c.rs + nr_eff;
                let out = Out::Direct {
                    c: CTile::new(&mut c.data[start..start + len]),
                    ldc: c.rs,
                    rows: mr_eff,
                    cols: nr_eff,
                };
                kern.tile(kc, ap, bp, out, &st);
            } else {
                kern.tile(kc, ap, bp, Out::Buf(&mut tile), &st);
                store_tile(&tile, nr, c, (i0, j0), (mr_eff, nr_eff), alpha, beta, epi);
            }
        }
    }
}

/// Ask the cache for the lines of a `rows×cols` tile of `c` starting at `c[start]`
/// with row stride `rs` (x86_64 only; elsewhere nothing). Out-of-range parts are
/// skipped.
#[inline(always)]
fn prefetch_tile(c: &[f32], start: usize, rs: usize, rows: usize, cols: usize) {
    prefetch_span(c.as_ptr(), c.len(), start, rs, rows, cols);
}

/// [`prefetch_tile`] for the `len` elements from `c` (a prefetch only names an
/// address: it neither reads nor writes memory).
#[inline(always)]
fn prefetch_span(c: *const f32, len: usize, start: usize, rs: usize, rows: usize, cols: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        if rows == 0 || cols == 0 {
            return;
        }
        let need = (rows - 1)
            .saturating_mul(rs)
            .saturating_add(start)
            .saturating_add(cols);
        if need > len {
            return;
        }
        let base = c.wrapping_add(start);
        for r in 0..rows {
            let row = base.wrapping_add(r * rs);
            let mut l = 0;
            while l < cols {
                // SAFETY: a prefetch never faults or changes memory; the address is
                // inside `c` (`start + r·rs + l < need ≤ len`), and SSE is part of
                // the x86_64 baseline.
                unsafe { _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(l).cast::<i8>()) };
                l += 16;
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (c, len, start, rs, rows, cols);
}

/// Splitting large products across threads (feature `parallel`).
///
/// C is cut into a grid of items: column blocks of whole `NR` panels (as wide as
/// the single-threaded [`nc_block`] allows, narrower only to give every lane
/// several) times, where that leaves too few items, bands of rows. The lanes claim
/// items one at a time (an atomic counter) and run the single-threaded loop nest on
/// each: pack the item's block of B into the lane's own part of the pack buffer,
/// then for every `mc` rows of the band pack A and multiply (row panels of A
/// outside, B panels inside, B packed in groups during the first row block, as in
/// [`gemm_loop`]). Nothing is shared but the counter: no barrier until the end,
/// each core's L2 holds its own B block, and a lane whose thread is descheduled on
/// a busy machine delays only the item it holds, so two threads are not slower than
/// one when the cores are oversubscribed.
///
/// The lanes write disjoint column ranges of the same rows of C, so their tiles are
/// handed to the micro-kernel as raw spans ([`CTile::from_raw`]), never as
/// overlapping `&mut` slices.
///
/// Measured (`bench --threads-only`, 2 threads; `split/copies` is the ratio to two
/// independent single-threaded copies of the same product run in the same rounds,
/// what the machine gives two threads that share nothing), on 2 Dec 2026 with the
/// two cores loaded by other sessions (load average 5–6), alternating binaries. The
/// previous plan — per B block, all lanes pack it together (a barrier), then claim
/// 64-row chunks of C (another) — reached a median 0.72 (0.51–0.85, 8 runs) at
/// `(1024, 768, 16384)`, 32 B blocks, with CPU time 2T/1T 1.32–1.67 (the lanes spun
/// at the barriers), and 0.79 at `(4096, 512, 4096)`. This grid: 1.00 (0.95–1.06, 6
/// runs, CPU time 2T/1T 0.84–1.06) and 0.99. Before [`MIN_COLS`] and row bands, the
/// step's decoder product (256 rows, 11 panels, `k = 4096`) was cut into 8 blocks of
/// 1–2 panels, each packing all of A again. The load was too uneven to rank item
/// counts (2, 4 or 8 per lane gave 0.82–1.78 on one binary); 4 is kept. That
/// decoder product alone, timed the same way (6 runs each): 2 bands × 2 blocks
/// ([`MIN_BAND`] = 128) 0.80–1.05 of the copies, 1 band × 2 blocks of 6 and 5
/// panels (`MIN_BAND` = 256) 0.79–1.01 — not told apart; the encoder-shaped
/// products of the step, `(256, 4096, 512)`, 0.61–1.22 in the same runs.
///
/// **Scratch:** no more than [`pack_len`] reports: each lane gets `1/lanes` of the
/// buffer for its B block and its A block (`mc` rows, up to `MC`, fewer if the
/// buffer is small). If even one `NR` panel and one `MR` panel do not fit per lane,
/// or `n` has a single panel, the product runs on the calling thread.
///
/// **Threads:** rayon's pool ([`rayon::current_num_threads`], capped by
/// [`super::set_max_threads`]); the whole product runs inside the pool (one
/// hand-over from a caller outside it), the lanes split by `rayon::join`, so no
/// thread is spawned per product (the pool starts once, on first use; this path is
/// not covered by the no-allocation test). Products below
/// [`MIN_WORK`] multiply-adds and C views without unit column stride stay on the
/// calling thread. Every C tile is computed by the same micro-kernel calls over the
/// same `k` blocks as single-threaded (blocks start on `NR` panel boundaries), so
/// the results are bit-for-bit identical.
#[cfg(feature = "parallel")]
mod par {
    use super::{
        ALIGN_SLACK, B_GROUP, Block, CTile, Epilogue, Isa, KC, MC, MatMut, MatRef, Out, PackB,
        Store, nc_block, pack_panels, prefetch_span, round_up,
    };
    use core::sync::atomic::{AtomicUsize, Ordering};

    /// The most lanes one product uses.
    pub(super) const MAX_THREADS: usize = 8;
    /// `m·n·k` below which a product stays single-threaded (about a millisecond of
    /// single-core work, so that the hand-over to the pool costs a few percent at
    /// most).
    pub(super) const MIN_WORK: usize = 1 << 26;
    /// Items per lane the plan aims for (load balance, and room to rebalance when a
    /// thread is descheduled).
    const ITEMS_PER_LANE: usize = 4;
    /// Fewest rows of a band when rows are split (each band packs its own B blocks:
    /// at least this many multiply-adds per packed element of B).
    const MIN_BAND: usize = 128;
    /// Narrowest block of B (in columns, rounded up to whole panels) made to get
    /// more items: each block packs A again (at least this many multiply-adds per
    /// packed element of A; the single-threaded blocks are 480–1536 wide).
    const MIN_COLS: usize = 240;

    /// Products that ran split (tests check that the split path was taken).
    #[cfg(test)]
    pub(super) static RUNS: AtomicUsize = AtomicUsize::new(0);

    /// The thread count set by [`super::set_max_threads`] (0: the pool's).
    pub(super) static THREAD_CAP: AtomicUsize = AtomicUsize::new(0);

    /// How many lanes to use for this product.
    fn threads(m: usize, n: usize, k: usize, c: &MatMut<'_>) -> usize {
        let work = m.saturating_mul(n).saturating_mul(k);
        if work < MIN_WORK || c.cs != 1 {
            return 1;
        }
        lane_cap()
    }

    /// The lanes a split may use: rayon's pool, capped by [`super::set_max_threads`]
    /// and [`MAX_THREADS`].
    pub(crate) fn lane_cap() -> usize {
        let cap = THREAD_CAP.load(Ordering::Relaxed);
        let pool = rayon::current_num_threads();
        let t = if cap > 0 { cap.min(pool) } else { pool };
        t.clamp(1, MAX_THREADS)
    }

    /// How a product is split (see [`plan`]).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub(super) struct Plan {
        pub lanes: usize,
        /// Column blocks (of whole `NR` panels, as even as possible).
        pub blocks: usize,
        /// Row bands (of whole `MR` panels, as even as possible).
        pub bands: usize,
        /// Rows of A packed at a time.
        pub mc: usize,
        /// Floats of a lane's B block (a multiple of [`ALIGN_SLACK`]).
        pub b_len: usize,
        /// Floats per lane: B block then A block (a multiple of [`ALIGN_SLACK`]).
        pub share: usize,
    }

    /// How to split an `m×k` by `k×n` product (`kc = min(k, KC)`; `(kc, fill)`: the
    /// panel stride and the rows a panel fills, [`super::kc_rows`]) over at most
    /// `lanes` lanes within `len` floats of (aligned) pack memory, or `None` if
    /// fewer than two lanes fit.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn plan(
        m: usize,
        n: usize,
        (kc, fill): (usize, usize),
        mr: usize,
        nr: usize,
        len: usize,
        lanes: usize,
    ) -> Option<Plan> {
        let panels = n.div_ceil(nr);
        let units = m.div_ceil(mr);
        for lanes in (2..=lanes.min(panels.max(units))).rev() {
            let per = len / lanes / ALIGN_SLACK * ALIGN_SLACK;
            let mc_full = (MC / mr * mr).min(units * mr);
            let fit = |mc: usize| {
                let a = round_up(kc * mc, ALIGN_SLACK);
                per.saturating_sub(a + ALIGN_SLACK) / (kc * nr)
            };
            let mut mc = mc_full;
            let mut w = fit(mc);
            if w == 0 {
                mc = mr;
                w = fit(mc);
            }
            // The single-threaded block width (L2), and what memory allows.
            let w = w.min(nc_block(fill, nr) / nr);
            if w == 0 {
                continue;
            }
            let target = ITEMS_PER_LANE * lanes;
            // Blocks between the widest that fit and [`MIN_COLS`] wide; row bands
            // make up the rest of the target.
            let min_blocks = panels.div_ceil(w);
            let max_blocks = (panels / w.min(MIN_COLS.div_ceil(nr))).max(min_blocks);
            let bands = target
                .div_ceil(target.clamp(min_blocks, max_blocks))
                .min(m / MIN_BAND)
                .min(units)
                .max(1);
            let mut blocks = target.div_ceil(bands).clamp(min_blocks, max_blocks);
            if bands == 1 {
                // A multiple of the lanes where the width allows (even shares).
                blocks = round_up(blocks, lanes).min(max_blocks).max(min_blocks);
            }
            if bands * blocks < lanes {
                continue;
            }
            let band_rows = units.div_ceil(bands) * mr;
            let mc = mc.min(band_rows);
            let b_len = round_up(kc * panels.div_ceil(blocks) * nr, ALIGN_SLACK);
            let share = b_len + round_up(kc * mc, ALIGN_SLACK);
            if share * lanes <= len {
                return Some(Plan {
                    lanes,
                    blocks,
                    bands,
                    mc,
                    b_len,
                    share,
                });
            }
        }
        None
    }

    /// Run `f` on `lanes` lanes of the current rayon pool, lane `i` with the `i`-th
    /// `share`-long piece of `scratch`.
    fn lanes<F: Fn(&mut [f32]) + Sync>(lanes: usize, scratch: &mut [f32], share: usize, f: &F) {
        if lanes <= 1 {
            let end = share.min(scratch.len());
            f(&mut scratch[..end]);
            return;
        }
        let half = lanes / 2;
        let cut = (share * half).min(scratch.len());
        let (l, r) = scratch.split_at_mut(cut);
        rayon::join(
            || self::lanes(half, l, share, f),
            || self::lanes(lanes - half, r, share, f),
        );
    }

    /// C as the lanes see it: the start of the caller's C data, its length and
    /// row stride, shared by the lanes (each writes only its items' tiles).
    #[derive(Clone, Copy)]
    struct RawC {
        ptr: *mut f32,
        len: usize,
        rs: usize,
    }
    // SAFETY: a `RawC` is only dereferenced through `CTile::from_raw` for the tiles
    // of the item a lane claimed; items are disjoint, and the `&mut` borrow of C is
    // held by `gemm_loop` until every lane has finished.
    unsafe impl Send for RawC {}
    // SAFETY: as for `Send`.
    unsafe impl Sync for RawC {}

    /// The multi-threaded loop nest; `false` (nothing done) if the product should
    /// run single-threaded. `pack` is already aligned and at least
    /// [`super::pack_len`] long less the alignment offset.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn gemm_loop<K: Isa, B: PackB>(
        kern: K,
        alpha: f32,
        a: &MatRef<'_>,
        b: &B,
        beta: f32,
        c: &mut MatMut<'_>,
        epi: Epilogue<'_>,
        pack: &mut [f32],
    ) -> bool {
        let (m, k, n) = (a.rows, a.cols, b.cols());
        let lanes_max = threads(m, n, k, c);
        if lanes_max < 2 || c.cs != 1 || (c.rows > 1 && c.rs < c.cols) {
            return false;
        }
        let (mr, nr) = (K::MR, K::NR);
        let kc = k.min(KC);
        let Some(p) = plan(
            m,
            n,
            (kc, super::kc_rows::<K>(kc)),
            mr,
            nr,
            pack.len(),
            lanes_max,
        ) else {
            return false;
        };
        let (panels, units) = (n.div_ceil(nr), m.div_ceil(mr));
        let items = p.blocks * p.bands;
        let next = AtomicUsize::new(0);
        let raw = RawC {
            ptr: c.data.as_mut_ptr(),
            len: c.data.len(),
            rs: c.rs,
        };
        let at = a.t();
        let body = |scratch: &mut [f32]| {
            let (bpack, apack) = scratch.split_at_mut(p.b_len);
            loop {
                let item = next.fetch_add(1, Ordering::Relaxed);
                if item >= items {
                    break;
                }
                // Column-block-major: the lanes start on different blocks of B.
                let (t, r) = (item % p.blocks, item / p.blocks);
                let jc = t * panels / p.blocks * nr;
                let je = ((t + 1) * panels / p.blocks * nr).min(n);
                let ic = r * units / p.bands * mr;
                let ie = ((r + 1) * units / p.bands * mr).min(m);
                let it = Item {
                    alpha,
                    beta,
                    epi,
                    rows: (ic, ie),
                    cols: (jc, je),
                    mc: p.mc,
                };
                // SAFETY: items are disjoint rectangles of C (`raw`, borrowed by this
                // function until the lanes are done), and this lane claimed this one.
                unsafe { item_nest(kern, &it, &at, b, raw, bpack, apack) };
            }
        };
        #[cfg(test)]
        RUNS.fetch_add(1, Ordering::Relaxed);
        let mut run = || lanes(p.lanes, pack, p.share, &body);
        if rayon::current_thread_index().is_some() {
            run();
        } else {
            // One hand-over into the pool; the joins inside are then cheap.
            rayon::scope(|_| run());
        }
        true
    }

    /// One item of the grid: rows `rows.0..rows.1` by columns `cols.0..cols.1` of C.
    struct Item<'e> {
        alpha: f32,
        beta: f32,
        epi: Epilogue<'e>,
        rows: (usize, usize),
        cols: (usize, usize),
        mc: usize,
    }

    /// The single-threaded loop nest of [`super::gemm_loop`] over one item, packing
    /// into the lane's own `bpack` and `apack`.
    ///
    /// # Safety
    /// No one else accesses the item's elements of `c` during the call, and they
    /// are valid for reads and writes (`c` spans every row and column of C).
    #[allow(clippy::too_many_arguments)]
    unsafe fn item_nest<K: Isa, B: PackB>(
        kern: K,
        it: &Item<'_>,
        at: &MatRef<'_>,
        b: &B,
        c: RawC,
        bpack: &mut [f32],
        apack: &mut [f32],
    ) {
        let (mr, nr) = (K::MR, K::NR);
        let k = at.rows;
        let ((i0, i1), (jc, je)) = (it.rows, it.cols);
        let nc = je - jc;
        for pc in (0..k).step_by(KC) {
            let kc = KC.min(k - pc);
            let last = pc + kc == k;
            let beta = if pc == 0 { it.beta } else { 1.0 };
            let epi = if last { it.epi } else { Epilogue::None };
            for ic in (i0..i1).step_by(it.mc) {
                let rows = it.mc.min(i1 - ic);
                pack_panels(kern, at, pc, kc, ic, rows, mr, apack);
                let blk = |jc: usize, nc: usize, bpack: &[f32]| {
                    let blk = Block {
                        alpha: it.alpha,
                        beta,
                        epi,
                        kc,
                        jc,
                        nc,
                        bpack,
                    };
                    // SAFETY: rows `ic..ic + rows`, columns `jc..jc + nc` lie in
                    // this item (forwarded contract).
                    unsafe { panels_raw(kern, &blk, apack, c, (ic, rows)) };
                };
                if let Some(bp) = b.packed(pc, kc, jc, nc, nr) {
                    blk(jc, nc, bp);
                } else if ic == i0 {
                    // B packed in groups right before their first use, as in
                    // `super::gemm_loop`.
                    let group = B_GROUP * nr;
                    for (g, jr) in (0..nc).step_by(group).enumerate() {
                        let cols = group.min(nc - jr);
                        let q = g * B_GROUP;
                        let panel = &mut bpack[q * nr * kc..(q + cols.div_ceil(nr)) * nr * kc];
                        b.pack(kern, pc, kc, jc + jr, cols, nr, panel);
                        blk(jc + jr, cols, panel);
                    }
                } else {
                    blk(jc, nc, &bpack[..nc.div_ceil(nr) * nr * kc]);
                }
            }
        }
    }

    /// [`super::panels`] for rows `r0..r0 + rows` of C given as a raw span (always
    /// the direct store: unit column stride, `rs ≥ cols`).
    ///
    /// # Safety
    /// No one else accesses rows `r0..r0 + rows`, columns `blk.jc..blk.jc + blk.nc`
    /// of `c` during the call; they are valid for reads and writes.
    unsafe fn panels_raw<K: Isa>(
        kern: K,
        blk: &Block<'_>,
        apack: &[f32],
        c: RawC,
        (r0, rows): (usize, usize),
    ) {
        let (mr, nr) = (K::MR, K::NR);
        let Block {
            alpha,
            beta,
            epi,
            kc,
            jc,
            nc,
            bpack,
        } = *blk;
        for ir in (0..rows).step_by(mr) {
            let mr_eff = mr.min(rows - ir);
            let ap = &apack[ir / mr * mr * kc..(ir / mr + 1) * mr * kc];
            for (q, jr) in (0..nc).step_by(nr).enumerate() {
                let nr_eff = nr.min(nc - jr);
                let bp = &bpack[q * nr * kc..(q + 1) * nr * kc];
                let st = Store::tile(alpha, beta, epi, jc + jr..jc + jr + nr_eff);
                let (i0, j0) = (r0 + ir, jc + jr);
                if jr + nr < nc {
                    let next = i0 * c.rs + j0 + nr;
                    prefetch_span(c.ptr, c.len, next, c.rs, mr_eff, nr.min(nc - jr - nr));
                }
                let start = i0 * c.rs + j0;
                let len = (mr_eff - 1) * c.rs + nr_eff;
                assert!(start + len <= c.len && (mr_eff == 1 || c.rs >= nr_eff));
                // SAFETY: in bounds by the assert; the tile's elements (rows
                // `i0..i0 + mr_eff`, columns `j0..j0 + nr_eff`) are ours alone
                // (function contract), and the kernel touches no others.
                let tile = unsafe { CTile::from_raw(c.ptr.add(start), len) };
                let out = Out::Direct {
                    c: tile,
                    ldc: c.rs,
                    rows: mr_eff,
                    cols: nr_eff,
                };
                kern.tile(kc, ap, bp, out, &st);
            }
        }
    }
}

/// Cap the threads one product, or one split element-wise pass of the model, may use
/// (feature `parallel`): `0` restores the default (rayon's pool size, at most 8; the
/// `RAYON_NUM_THREADS` environment variable sets the pool size); `1` makes all of it
/// single-threaded. Process-wide; for benchmarks and for callers that run their own
/// threads.
#[cfg(feature = "parallel")]
pub fn set_max_threads(n: usize) {
    par::THREAD_CAP.store(n, core::sync::atomic::Ordering::Relaxed);
}

/// The threads a split may use now (feature `parallel`; see [`set_max_threads`]).
#[cfg(feature = "parallel")]
pub(crate) fn max_lanes() -> usize {
    par::lane_cap()
}

/// Single-threaded stand-in when the `parallel` feature is off.
#[cfg(not(feature = "parallel"))]
mod par {
    use super::{Epilogue, Isa, MatMut, MatRef, PackB};

    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub(super) fn gemm_loop<K: Isa, B: PackB>(
        _kern: K,
        _alpha: f32,
        _a: &MatRef<'_>,
        _b: &B,
        _beta: f32,
        _c: &mut MatMut<'_>,
        _epi: Epilogue<'_>,
        _pack: &mut [f32],
    ) -> bool {
        false
    }
}

/// Pack `src[k0..k0+kc, j0..j0+nc]` of a `k×n` view into `w`-wide panels:
/// `out[q·w·kc + kk·w + j] = src[k0 + kk, j0 + q·w + j]`, columns past the edge
/// zero-filled. B is packed as is (`w = NR`); A as its transpose (`w = MR`).
///
/// Contiguous rows (`col_stride == 1`, e.g. a row-major B) are copied slice by
/// slice; contiguous columns (`row_stride == 1`, e.g. `B = Mᵀ`) are transposed by
/// the kernel's [`Isa::pack_cols`] (8×8 AVX shuffles on x86) or eight source
/// columns at a time; other strides go element by element.
#[allow(clippy::too_many_arguments)]
fn pack_panels<K: Isa>(
    kern: K,
    src: &MatRef<'_>,
    k0: usize,
    kc: usize,
    j0: usize,
    nc: usize,
    w: usize,
    out: &mut [f32],
) {
    if K::BF16_PAIRS {
        if src.rs == 1 {
            if !kern.pack_pair_runs(src.data, src.cs, k0, kc, j0, nc, w, out) {
                pack_pair_runs(src.data, src.cs, k0, kc, j0, nc, w, out);
            }
        } else if src.cs == 1 {
            pack_pair_rows(src.data, src.rs, k0, kc, j0, nc, w, out);
        } else {
            let get = |kk: usize, j: usize| half::f32_to_bf16(src.at(k0 + kk, j0 + j));
            pack_pairs(kc, nc, w, out, get);
        }
        return;
    }
    let (rs, cs, data) = (src.rs, src.cs, src.data);
    if cs == 1 {
        // Row by row across all the panels, so each source row is read in one run
        // of `nc` elements (not `w`-element pieces a row stride apart). With the
        // panel width a constant, each piece is a fixed-size move: a `copy_from_slice`
        // of a run-time length is a `memcpy` call per piece, which made packing a
        // transposed view as A (`Cᵀ`, `X̄ᵀ`, `dPreᵀ` in the training step's weight
        // gradients, 32-byte pieces) cost 25–30 % of those products.
        let full = nc / w * w;
        match w {
            4 => return pack_rows::<4>(data, rs, k0, kc, j0, nc, full, out),
            6 => return pack_rows::<6>(data, rs, k0, kc, j0, nc, full, out),
            8 => return pack_rows::<8>(data, rs, k0, kc, j0, nc, full, out),
            16 => return pack_rows::<16>(data, rs, k0, kc, j0, nc, full, out),
            48 => return pack_rows::<48>(data, rs, k0, kc, j0, nc, full, out),
            _ => {}
        }
        for kk in 0..kc {
            let s = (k0 + kk) * rs + j0;
            let srow = &data[s..s + nc];
            for (q, jr) in (0..nc).step_by(w).enumerate() {
                let cols = w.min(nc - jr);
                let at = q * w * kc + kk * w;
                let dst = &mut out[at..at + w];
                dst[..cols].copy_from_slice(&srow[jr..jr + cols]);
                dst[cols..].fill(0.0);
            }
        }
        return;
    }
    for (q, jr) in (0..nc).step_by(w).enumerate() {
        let panel = &mut out[q * w * kc..(q + 1) * w * kc];
        let cols = w.min(nc - jr);
        let jb = j0 + jr;
        if cs == 1 {
            for (kk, dst) in panel.chunks_exact_mut(w).enumerate() {
                let s = (k0 + kk) * rs + jb;
                dst[..cols].copy_from_slice(&data[s..s + cols]);
                dst[cols..].fill(0.0);
            }
        } else if rs == 1 {
            let start = jb * cs + k0;
            let end = start + (cols - 1) * cs + kc;
            if kern.pack_cols(&data[start..end], cs, kc, cols, w, panel) {
                continue;
            }
            let col = |j: usize| {
                let s = (jb + j) * cs + k0;
                &data[s..s + kc]
            };
            let mut j = 0;
            while j + 8 <= cols {
                let cs8: [&[f32]; 8] = core::array::from_fn(|t| col(j + t));
                for (kk, dst) in panel.chunks_exact_mut(w).enumerate() {
                    let d: &mut [f32; 8] = (&mut dst[j..j + 8])
                        .try_into()
                        .unwrap_or_else(|_| unreachable!());
                    for (dv, cv) in d.iter_mut().zip(&cs8) {
                        *dv = cv[kk];
                    }
                }
                j += 8;
            }
            while j < cols {
                let cj = col(j);
                for (dst, &v) in panel.chunks_exact_mut(w).zip(cj) {
                    dst[j] = v;
                }
                j += 1;
            }
            if cols < w {
                for dst in panel.chunks_exact_mut(w) {
                    dst[cols..].fill(0.0);
                }
            }
        } else {
            for (kk, dst) in panel.chunks_exact_mut(w).enumerate() {
                for (j, d) in dst.iter_mut().enumerate() {
                    *d = if j < cols {
                        src.at(k0 + kk, jb + j)
                    } else {
                        0.0
                    };
                }
            }
        }
    }
}

/// The `cs == 1` case of [`pack_panels`] for `W`-wide panels (`full` = the columns
/// of the whole panels, `nc` rounded down to `W`): source row `k0 + kk` of columns
/// `j0..j0 + nc` goes to row `kk` of each panel, the last partial panel padded with 0.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn pack_rows<const W: usize>(
    data: &[f32],
    rs: usize,
    k0: usize,
    kc: usize,
    j0: usize,
    nc: usize,
    full: usize,
    out: &mut [f32],
) {
    for kk in 0..kc {
        let s = (k0 + kk) * rs + j0;
        let (whole, tail) = data[s..s + nc].split_at(full);
        for (q, piece) in whole.chunks_exact(W).enumerate() {
            let at = q * W * kc + kk * W;
            let dst: &mut [f32; W] = (&mut out[at..at + W])
                .try_into()
                .unwrap_or_else(|_| unreachable!());
            let src: &[f32; W] = piece.try_into().unwrap_or_else(|_| unreachable!());
            *dst = *src;
        }
        if !tail.is_empty() {
            let at = full * kc + kk * W;
            let dst = &mut out[at..at + W];
            dst[..tail.len()].copy_from_slice(tail);
            dst[tail.len()..].fill(0.0);
        }
    }
}

/// The bf16-pair variant of [`pack_panels`] (for `Isa::BF16_PAIRS` kernels): slot
/// `p·w + j` of panel `q` holds `get(2p, q·w + j)` in its low and `get(2p + 1, q·w + j)`
/// in its high 16 bits (0 past `kc` or past the last column), as `f32` bits.
fn pack_pairs(kc: usize, nc: usize, w: usize, out: &mut [f32], get: impl Fn(usize, usize) -> u16) {
    let kp = kc.div_ceil(2);
    for (q, jr) in (0..nc).step_by(w).enumerate() {
        let panel = &mut out[q * w * kc..q * w * kc + kp * w];
        let cols = w.min(nc - jr);
        for (p, dst) in panel.chunks_exact_mut(w).enumerate() {
            let (k0, k1) = (2 * p, 2 * p + 1);
            for (j, d) in dst.iter_mut().enumerate() {
                let v = if j < cols {
                    let lo = u32::from(get(k0, jr + j));
                    let hi = if k1 < kc {
                        u32::from(get(k1, jr + j))
                    } else {
                        0
                    };
                    lo | (hi << 16)
                } else {
                    0
                };
                *d = f32::from_bits(v);
            }
        }
    }
}

/// [`pack_pairs`] of `f32` values rounded to bf16, for a source whose packed columns
/// are contiguous runs along `k` (`src[kk, j] = data[j·cs + kk]`: a row-major A
/// packed as `Aᵀ`, what the bf16 product packs on every block of B): each run is
/// read once, in order, instead of one strided lookup per element. The same slots
/// as [`pack_pairs`].
#[allow(clippy::too_many_arguments)]
fn pack_pair_runs(
    data: &[f32],
    cs: usize,
    k0: usize,
    kc: usize,
    j0: usize,
    nc: usize,
    w: usize,
    out: &mut [f32],
) {
    let kp = kc.div_ceil(2);
    let pair =
        |lo: f32, hi: u16| f32::from_bits(u32::from(half::f32_to_bf16(lo)) | u32::from(hi) << 16);
    for (q, jr) in (0..nc).step_by(w).enumerate() {
        let panel = &mut out[q * w * kc..q * w * kc + kp * w];
        let cols = w.min(nc - jr);
        for j in 0..w {
            if j >= cols {
                panel.iter_mut().skip(j).step_by(w).for_each(|v| *v = 0.0);
                continue;
            }
            let s = (j0 + jr + j) * cs + k0;
            let run = &data[s..s + kc];
            let mut two = run.chunks_exact(2);
            for (dst, pr) in panel.iter_mut().skip(j).step_by(w).zip(two.by_ref()) {
                *dst = pair(pr[0], half::f32_to_bf16(pr[1]));
            }
            if let [last] = two.remainder() {
                panel[(kp - 1) * w + j] = pair(*last, 0);
            }
        }
    }
}

/// [`pack_pairs`] of `f32` values rounded to bf16, for a source with contiguous rows
/// (`src[kk, j] = data[kk·rs + j]`: a row-major B such as SAELens' `W_enc`): for each
/// pair of rows, one run of `nc` elements of each is read and interleaved into the
/// panels' slots. The same slots as [`pack_pairs`].
#[allow(clippy::too_many_arguments)]
fn pack_pair_rows(
    data: &[f32],
    rs: usize,
    k0: usize,
    kc: usize,
    j0: usize,
    nc: usize,
    w: usize,
    out: &mut [f32],
) {
    let kp = kc.div_ceil(2);
    let pair = |lo: f32, hi: f32| {
        f32::from_bits(u32::from(half::f32_to_bf16(lo)) | u32::from(half::f32_to_bf16(hi)) << 16)
    };
    for p in 0..kp {
        let r0 = (k0 + 2 * p) * rs + j0;
        let lo = &data[r0..r0 + nc];
        let hi = if 2 * p + 1 < kc {
            &data[r0 + rs..r0 + rs + nc]
        } else {
            &[]
        };
        for (q, jr) in (0..nc).step_by(w).enumerate() {
            let dst = &mut out[q * w * kc + p * w..q * w * kc + (p + 1) * w];
            let cols = w.min(nc - jr);
            let l = &lo[jr..jr + cols];
            if hi.is_empty() {
                for (d, &a) in dst.iter_mut().zip(l) {
                    *d = pair(a, 0.0);
                }
            } else {
                for ((d, &a), &b) in dst.iter_mut().zip(l).zip(&hi[jr..jr + cols]) {
                    *d = pair(a, b);
                }
            }
            dst[cols..].fill(0.0);
        }
    }
}

/// Store the valid `mr×nr` corner of `tile` (row stride `ld`) into C at `(i0, j0)`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn store_tile(
    tile: &[f32],
    ld: usize,
    c: &mut MatMut<'_>,
    (i0, j0): (usize, usize),
    (mr, nr): (usize, usize),
    alpha: f32,
    beta: f32,
    epi: Epilogue<'_>,
) {
    for i in 0..mr {
        let row = &tile[i * ld..i * ld + nr];
        let base = (i0 + i) * c.rs;
        for (j, &ab) in row.iter().enumerate() {
            let idx = base + (j0 + j) * c.cs;
            let v = if beta == 0.0 {
                alpha * ab
            } else {
                alpha * ab + beta * c.data[idx]
            };
            c.data[idx] = epi.apply(v, j0 + j);
        }
    }
}

/// `C ← epilogue(β·C)` (the `k == 0` case); β = 0 writes without reading.
fn scale_c(c: &mut MatMut<'_>, beta: f32, epi: Epilogue<'_>) {
    for i in 0..c.rows {
        for j in 0..c.cols {
            let idx = i * c.rs + j * c.cs;
            let v = if beta == 0.0 { 0.0 } else { beta * c.data[idx] };
            c.data[idx] = epi.apply(v, j);
        }
    }
}

/// Deterministic test data in [-1, 1) (xorshift), for the unit tests here and in the
/// model.
#[cfg(test)]
pub(crate) fn test_fill(len: usize, seed: u64) -> std::vec::Vec<f32> {
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

#[cfg(all(test, feature = "parallel"))]
pub(crate) mod parallel_tests {
    use super::test_fill as fill;
    use super::*;
    use core::sync::atomic::Ordering;
    use std::{vec, vec::Vec};

    /// One product `C ← relu(α·A·Bᵀ... + β·C + bias)` of the encoder's layout, with the
    /// given kernel, pack length and thread cap (`threads` lanes in a pool of that
    /// size; 1 = single-threaded).
    fn product(
        kernel: Kernel,
        (m, n, k): (usize, usize, usize),
        threads: usize,
        half: u8,
    ) -> Vec<f32> {
        let a = fill(m * k, 1);
        let w = fill(n * k, 2);
        let bias = fill(n, 3);
        let mut c = fill(m * n, 4);
        // Exactly the reported minimum, unaligned by one element.
        let mut pack = vec![f32::NAN; pack_len(m, n, k) + 1];
        let pack = &mut pack[1..];
        let wh: Vec<u16> = w.iter().map(|&v| Half::Bf16.from_f32(v)).collect();
        let run = || {
            let cm = MatMut::row_major("c", &mut c, m, n).unwrap();
            let am = MatRef::row_major("a", &a, m, k).unwrap();
            if half == 3 {
                // f32, B packed beforehand (into its own unaligned buffer).
                let mut pb = vec![f32::NAN; packed_b_len(k, n) + 1];
                let bm = MatRef::row_major("w", &w, n, k).unwrap().t();
                let packed = pack_b_with(kernel, bm, &mut pb[1..]).unwrap();
                gemm_packed(0.5, am, &packed, -1.0, cm, Epilogue::BiasRelu(&bias), pack).unwrap();
            } else if half == 2 {
                gemm_nt_half_bf16_dot(
                    Half::Bf16,
                    0.5,
                    am,
                    &wh,
                    n,
                    -1.0,
                    cm,
                    Epilogue::BiasRelu(&bias),
                    pack,
                )
                .unwrap();
            } else if half == 1 {
                gemm_nt_half_with(
                    kernel,
                    Half::Bf16,
                    0.5,
                    am,
                    &wh,
                    n,
                    -1.0,
                    cm,
                    Epilogue::BiasRelu(&bias),
                    pack,
                )
                .unwrap();
            } else {
                let bm = MatRef::row_major("w", &w, n, k).unwrap().t();
                gemm_with(
                    kernel,
                    0.5,
                    am,
                    bm,
                    -1.0,
                    cm,
                    Epilogue::BiasRelu(&bias),
                    pack,
                )
                .unwrap();
            }
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(run);
        c
    }

    /// The split product equals the single-threaded one bit for bit (same kernel
    /// calls over the same `k` blocks), with the minimum pack buffer, for several
    /// blocks of B (`n > NC`), several passes over `k` (`k > KC`), ragged row
    /// chunks, 2 and 3 lanes, `f32` and bf16 weights, and every available kernel;
    /// and the split path really ran. One case is also checked against `f64`.
    #[test]
    fn split_matches_single_thread() {
        let shapes = [(300, 1600, 200), (136, 520, 1000), (1000, 44, 2000)];
        for kernel in Kernel::ALL
            .into_iter()
            .filter(|k| k.is_available() && *k != Kernel::Scalar)
        {
            // The shapes reach every part of the grid with this kernel's tile and
            // the minimum buffer: several column blocks (the first shape), several
            // row bands (the last), several passes over `k` (the second), and
            // ragged last panels of B and of A.
            let (mr, nr) = kernel.tile();
            let plans: Vec<par::Plan> = shapes
                .iter()
                .map(|&(m, n, k)| {
                    let len = pack_len(m, n, k) - ALIGN_SLACK;
                    let kc = k.min(KC);
                    par::plan(m, n, (kc, kc), mr, nr, len, 2).unwrap()
                })
                .collect();
            assert!(plans[0].blocks > 2 && plans[2].bands > 1, "{plans:?}");
            assert!(shapes[1].2 > KC && shapes.iter().any(|s| s.1 % nr != 0));
            assert!(shapes.iter().any(|s| s.0 % mr != 0));
            for &shape in &shapes {
                // 0: f32, 1: bf16 weights widened, 2: bf16 dot products (where the
                // CPU has them; the same for every `kernel`), 3: f32 with B packed
                // beforehand (the same bits as 0).
                let modes: &[u8] = if bf16_dot_available() {
                    &[0, 1, 2, 3]
                } else {
                    &[0, 1, 3]
                };
                for &half in modes {
                    let one = product(kernel, shape, 1, half);
                    if half == 3 {
                        let plain = product(kernel, shape, 1, 0);
                        assert!(
                            one.iter()
                                .zip(&plain)
                                .all(|(x, y)| x.to_bits() == y.to_bits()),
                            "{} {shape:?}: packed B differs",
                            kernel.name()
                        );
                    }
                    for threads in [2, 3] {
                        let before = par::RUNS.load(Ordering::Relaxed);
                        let many = product(kernel, shape, threads, half);
                        assert!(
                            par::RUNS.load(Ordering::Relaxed) > before,
                            "{shape:?}: not split"
                        );
                        let same = one
                            .iter()
                            .zip(&many)
                            .all(|(x, y)| x.to_bits() == y.to_bits());
                        assert!(
                            same,
                            "{} {shape:?} half={half} threads={threads}",
                            kernel.name()
                        );
                    }
                }
            }
        }
        // Against the f64 reference (the single-threaded path is checked the same
        // way by the property tests).
        let (m, n, k) = shapes[0];
        let got = product(selected(), (m, n, k), 2, 0);
        let (a, w, bias) = (fill(m * k, 1), fill(n * k, 2), fill(n, 3));
        let mut want = fill(m * n, 4);
        let mut mag = vec![0.0f64; m * n];
        naive::gemm_f64(
            0.5,
            MatRef::row_major("a", &a, m, k).unwrap(),
            MatRef::row_major("w", &w, n, k).unwrap().t(),
            -1.0,
            &mut MatMut::row_major("c", &mut want, m, n).unwrap(),
            Epilogue::BiasRelu(&bias),
            Some(&mut mag),
        );
        let gamma = (k as f64 + 4.0) * f64::powi(2.0, -23);
        for ((g, w), s) in got.iter().zip(&want).zip(&mag) {
            assert!(f64::from((g - w).abs()) <= gamma * s + 1e-30, "{g} vs {w}");
        }
    }

    /// Splitting plans stay within the pack memory, give every lane at least one
    /// `MR` panel of A and one `NR` panel of B, keep B blocks within the
    /// single-threaded width ([`nc_block`]) and leave at least one item per lane;
    /// too little memory for two lanes means no split.
    #[test]
    fn plans_fit() {
        for &(m, n, k) in &[
            (4096, 4096, 512),
            (1024, 16384, 768),
            (1024, 512, 4096),
            (4096, 512, 1024),
            (64, 4096, 512),
            (4096, 512, 64),
            (64, 512, 4096),
            (9, 20000, 800),
            (4096, 60, 4096),
        ] {
            for (mr, nr) in [(8, 48), (6, 16), (8, 8)] {
                let kc = k.min(KC);
                let len = pack_len(m, n, k) - ALIGN_SLACK;
                for lanes in [2, 3] {
                    let Some(p) = par::plan(m, n, (kc, kc), mr, nr, len, lanes) else {
                        continue;
                    };
                    let panels = n.div_ceil(nr);
                    let widest = panels.div_ceil(p.blocks) * nr;
                    assert!(p.lanes >= 2 && p.lanes <= lanes, "{m},{n},{k}: {p:?}");
                    assert!(p.mc >= mr && p.mc % mr == 0 && p.mc <= MC, "{p:?}");
                    assert!(p.blocks >= 1 && p.blocks <= panels && p.bands >= 1);
                    assert!(p.bands <= m.div_ceil(mr) && p.blocks * p.bands >= p.lanes);
                    assert!(widest <= nc_block(kc, nr).max(nr), "{m},{n},{k}: {p:?}");
                    assert!(p.b_len >= kc * widest && p.share >= p.b_len + kc * p.mc);
                    assert!(p.b_len % ALIGN_SLACK == 0 && p.share % ALIGN_SLACK == 0);
                    assert!(p.lanes * p.share <= len, "{m},{n},{k}: {p:?}");
                }
            }
        }
        // The SAE shapes split (2 lanes, minimum buffer, AVX-512 tile).
        for &(m, n, k) in &[(4096, 4096, 512), (1024, 16384, 768), (1024, 512, 4096)] {
            let len = pack_len(m, n, k) - ALIGN_SLACK;
            assert!(par::plan(m, n, (k.min(KC), k.min(KC)), 8, 48, len, 2).is_some());
        }
        // Room per lane for one `MR` and one `NR` panel (plus alignment), or not.
        let one = 512 * (8 + 48) + ALIGN_SLACK;
        assert!(par::plan(256, 512, (512, 512), 8, 48, 2 * one, 2).is_some());
        assert!(par::plan(256, 512, (512, 512), 8, 48, 2 * one - 2 * ALIGN_SLACK, 2).is_none());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;
    use std::vec::Vec;

    /// bf16 weights packed as 32-bit words by the transposing pack give the slots of
    /// the generic pair packing, bit for bit (ragged last panel, an offset block), on
    /// the AVX-512 BF16 token where the CPU has it; odd sizes take the generic route.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn bf16_word_pack_matches_pairs() {
        let Some(tok) = isa::x86::avx512bf16() else {
            return;
        };
        let (n, k) = (53usize, 40usize);
        let w: Vec<u16> = test_fill(n * k, 4)
            .iter()
            .map(|&v| Half::Bf16.from_f32(v))
            .collect();
        let src = HalfT {
            w: &w,
            n,
            k,
            format: Half::Bf16,
        };
        let nr = Kernel::Avx512.tile().1;
        for (k0, kc, j0, nc) in [
            (0usize, 40usize, 0usize, 53usize),
            (8, 24, 48, 5),
            (2, 10, 3, 50),
        ] {
            let len = nc.div_ceil(nr) * nr * kc;
            let (mut got, mut want) = (vec![f32::NAN; len], vec![f32::NAN; len]);
            assert!(src.pack_bf16_pairs(tok, k0, kc, j0, nc, nr, &mut got));
            pack_pairs(kc, nc, nr, &mut want, |kk, j| w[(j0 + j) * k + k0 + kk]);
            let kp = kc / 2;
            for q in 0..nc.div_ceil(nr) {
                let used = q * nr * kc..q * nr * kc + kp * nr;
                assert!(
                    got[used.clone()]
                        .iter()
                        .zip(&want[used])
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "k0 {k0} kc {kc} j0 {j0} nc {nc} panel {q}"
                );
            }
        }
        assert!(!src.pack_bf16_pairs(tok, 1, 10, 0, 8, nr, &mut vec![0.0; 10 * nr]));
    }

    /// The row-wise bf16 pair packing (`pack_pair_rows`, a row-major f32 B) gives the
    /// slots of the generic one, bit for bit, with odd `kc` (a last half pair), edge
    /// panels, NaN, infinities, ties and subnormals among the values.
    #[test]
    fn pair_rows_match_pairs() {
        let (k, n) = (23usize, 70usize);
        let mut b = test_fill(k * n, 9);
        let specials = [
            f32::NAN,
            f32::INFINITY,
            -0.0,
            1.0 + 2f32.powi(-8),
            1.0e-40,
            -3.0e38,
        ];
        for (q, v) in specials.iter().enumerate() {
            b[q * 37 % (k * n)] = *v;
        }
        let nr = 48;
        for (k0, kc, j0, nc) in [
            (0usize, 23usize, 0usize, 70usize),
            (4, 7, 48, 22),
            (1, 10, 3, 50),
        ] {
            let len = nc.div_ceil(nr) * nr * kc;
            let (mut got, mut want) = (vec![f32::NAN; len], vec![f32::NAN; len]);
            pack_pair_rows(&b, n, k0, kc, j0, nc, nr, &mut got);
            pack_pairs(kc, nc, nr, &mut want, |kk, j| {
                half::f32_to_bf16(b[(k0 + kk) * n + j0 + j])
            });
            let kp = kc.div_ceil(2);
            for q in 0..nc.div_ceil(nr) {
                let used = q * nr * kc..q * nr * kc + kp * nr;
                assert!(
                    got[used.clone()]
                        .iter()
                        .zip(&want[used])
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "k0 {k0} kc {kc} j0 {j0} nc {nc} panel {q}"
                );
            }
        }
    }

    /// The bf16-compute product of f32 operands: a row-major B (rows packed by
    /// `pack_pair_rows`) and the same B stored column-major (`pack_pair_runs`) give
    /// the same bits, within the documented bound of the f32 product, with `k`
    /// odd and beyond `KC`. (Without AVX512_BF16 both are the f32 product.)
    #[test]
    #[cfg_attr(miri, ignore)] // k beyond KC: minutes under Miri
    fn bf16_dot_of_f32_operands() {
        for &(m, k, n) in &[(9usize, 37usize, 70usize), (40, 1001, 100)] {
            let a = test_fill(m * k, 1);
            let b = test_fill(k * n, 2);
            let bt: Vec<f32> = (0..n * k).map(|q| b[(q % k) * n + q / k]).collect();
            let am = MatRef::row_major("a", &a, m, k).unwrap();
            let bm = MatRef::row_major("b", &b, k, n).unwrap();
            let btm = MatRef::row_major("bt", &bt, n, k).unwrap().t();
            let mut pack = vec![0.0; pack_len(m, n, k)];
            let (mut c1, mut c2, mut c) = (vec![0.0; m * n], vec![0.0; m * n], vec![0.0; m * n]);
            fn cm(c: &mut [f32], m: usize, n: usize) -> MatMut<'_> {
                MatMut::row_major("c", c, m, n).unwrap()
            }
            gemm_bf16_dot(
                1.0,
                am,
                bm,
                0.0,
                cm(&mut c1, m, n),
                Epilogue::None,
                &mut pack,
            )
            .unwrap();
            gemm_bf16_dot(
                1.0,
                am,
                btm,
                0.0,
                cm(&mut c2, m, n),
                Epilogue::None,
                &mut pack,
            )
            .unwrap();
            gemm(
                1.0,
                am,
                bm,
                0.0,
                cm(&mut c, m, n),
                Epilogue::None,
                &mut pack,
            )
            .unwrap();
            assert!(
                c1.iter().zip(&c2).all(|(x, y)| x.to_bits() == y.to_bits()),
                "({m},{k},{n})"
            );
            for i in 0..m {
                for j in 0..n {
                    let abs: f32 = (0..k).map(|p| (a[i * k + p] * b[p * n + j]).abs()).sum();
                    let bound =
                        (2.0 * 2f32.powi(-8) + 2f32.powi(-16) + 2.0 * k as f32 * 2f32.powi(-24))
                            * abs;
                    let err = (c1[i * n + j] - c[i * n + j]).abs();
                    assert!(
                        err <= bound * 1.01,
                        "({m},{k},{n}) at ({i},{j}): {err} > {bound}"
                    );
                }
            }
        }
    }

    /// The run-wise bf16 pair packs give the slots of the generic one, bit for bit:
    /// the scalar `pack_pair_runs` and, where the CPU has AVX512_BF16, the bf16
    /// token's vector [`Isa::pack_pair_runs`]. Odd and even `kc`, below and beyond
    /// one block of 32 values; ragged last panels (an odd count of `w = 8` panels
    /// too); offset starts; `w` = 6 (which the vector pack refuses), 8 (A's panels),
    /// 16 and 48 (B's); the special values of [`pair_test_data`]. The vector pack
    /// also refuses a short buffer without writing.
    #[test]
    fn pair_runs_match_pairs() {
        #[cfg(target_arch = "x86_64")]
        let vector = isa::x86::avx512bf16();
        let (cols, k) = (130usize, 101usize);
        let data = pair_test_data(cols * k, 12, 53);
        let src = MatRef::row_major("a", &data, cols, k).unwrap().t(); // k×cols
        for (k0, kc, j0, nc, w) in [
            (0usize, 37usize, 0usize, 19usize, 8usize),
            (3, 20, 2, 13, 8),
            (1, 9, 0, 19, 6),
            (0, 101, 0, 130, 8),
            (1, 64, 5, 24, 8),
            (0, 1, 0, 3, 8),
            (2, 99, 1, 129, 48),
            (0, 32, 0, 48, 48),
            (7, 33, 0, 50, 16),
        ]
        .into_iter()
        // Under Miri (where only the scalar pack runs) the three small cases: the
        // rest took it 40 s.
        .take(if cfg!(miri) { 3 } else { usize::MAX })
        {
            let len = nc.div_ceil(w) * w * kc;
            let what = std::format!("k0 {k0} j0 {j0}");
            let (mut got, mut want) = (vec![f32::NAN; len], vec![f32::NAN; len]);
            pack_pairs(kc, nc, w, &mut want, |kk, j| {
                half::f32_to_bf16(src.at(k0 + kk, j0 + j))
            });
            pack_pair_runs(src.data, src.cs, k0, kc, j0, nc, w, &mut got);
            same_pair_panels(&got, &want, (kc, nc, w), &what);
            #[cfg(target_arch = "x86_64")]
            if let Some(t) = vector {
                got.fill(f32::NAN);
                let packed = t.pack_pair_runs(src.data, src.cs, k0, kc, j0, nc, w, &mut got);
                assert_eq!(packed, w != 6, "{what} w {w}: vector pack taken or refused");
                if packed {
                    same_pair_panels(&got, &want, (kc, nc, w), &std::format!("{what}, AVX-512"));
                } else {
                    assert!(
                        got.iter().all(|v| v.is_nan()),
                        "{what}: a refused pack wrote"
                    );
                }
            }
        }
        #[cfg(target_arch = "x86_64")]
        match vector {
            Some(t) => {
                let mut out = vec![0.0f32; 8 * 20];
                assert!(!t.pack_pair_runs(src.data, src.cs, 0, 20, 0, 8, 8, &mut out[..79]));
                assert!(out.iter().all(|&v| v == 0.0), "a refused pack wrote");
            }
            None => std::eprintln!("no AVX512_BF16: the vector pair pack not tested"),
        }
    }

    /// Test data for the pair packs: [`test_fill`] with NaN of both signs (one
    /// signalling), infinities, ties (to even, both ways), the largest finite value
    /// (rounds to infinity), a subnormal and −0 every `stride` entries.
    fn pair_test_data(len: usize, seed: u64, stride: usize) -> Vec<f32> {
        let mut data = test_fill(len, seed);
        let specials = [
            f32::NAN,
            -f32::NAN,
            f32::from_bits(0x7F80_0001),
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::from_bits(0x3F80_8000),
            f32::from_bits(0x3F81_8000),
            f32::from_bits(0x7F7F_FFFF),
            f32::from_bits(0x0000_0001),
            -0.0,
        ];
        for (i, v) in specials.iter().enumerate() {
            data[i * stride] = *v;
        }
        data
    }

    /// The used slots (`⌈kc/2⌉·w` of each panel) of two pair packs are the same bits.
    fn same_pair_panels(got: &[f32], want: &[f32], (kc, nc, w): (usize, usize, usize), what: &str) {
        let kp = kc.div_ceil(2);
        for q in 0..nc.div_ceil(w) {
            let used = q * w * kc..q * w * kc + kp * w;
            let (g, e) = (&got[used.clone()], &want[used]);
            assert!(
                g.iter().zip(e).all(|(a, b)| a.to_bits() == b.to_bits()),
                "{what}: kc {kc} nc {nc} w {w} panel {q}"
            );
        }
    }

    /// Row-major B wider than one group of [`B_GROUP`] panels and than one block
    /// ([`NC`], [`nc_block`]), with
    /// a ragged last group and panel, ragged row tiles (the prefetch of a partial
    /// next tile) and a padded C stride, against the `f64` reference, on every
    /// available kernel.
    #[test]
    fn grouped_b_packing_matches_reference() {
        let shapes = [
            (9, 48 * B_GROUP + 1, 3),
            (21, 437, 40),
            (17, 1601, 24),
            (20, 1100, 600),
        ];
        // The last shape has several blocks of B narrower than `NC`.
        assert!(nc_block(600, 48) < 1100 && nc_block(600, 48) < NC);
        // Under Miri only the first shape (one group plus a ragged panel): the others
        // take many minutes there and are covered natively.
        let shapes = if cfg!(miri) {
            &shapes[..1]
        } else {
            &shapes[..]
        };
        for &(m, n, k) in shapes {
            let fill = |len: usize, seed: usize| -> Vec<f32> {
                (0..len)
                    // u64: the products overflow a 32-bit usize (wasm32).
                    .map(|i| {
                        (((i as u64 * 7919 + seed as u64 * 104_729) % 2001) as f32 - 1000.0) * 1e-3
                    })
                    .collect()
            };
            let (a, b, bias) = (fill(m * k, 1), fill(k * n, 2), fill(n, 3));
            let ldc = n + 3;
            let mut want = vec![0.0f32; m * ldc];
            let mut mag = vec![0.0f64; m * n];
            naive::gemm_f64(
                1.25,
                MatRef::row_major("a", &a, m, k).unwrap(),
                MatRef::row_major("b", &b, k, n).unwrap(),
                0.0,
                &mut MatMut::new("c", &mut want, m, n, ldc, 1).unwrap(),
                Epilogue::BiasRelu(&bias),
                Some(&mut mag),
            );
            let gamma = (k as f64 + 4.0) * f64::powi(2.0, -23);
            for kernel in Kernel::ALL.into_iter().filter(|k| k.is_available()) {
                let mut c = vec![f32::NAN; m * ldc];
                let mut pack = vec![0.0; pack_len(m, n, k)];
                gemm_with(
                    kernel,
                    1.25,
                    MatRef::row_major("a", &a, m, k).unwrap(),
                    MatRef::row_major("b", &b, k, n).unwrap(),
                    0.0,
                    MatMut::new("c", &mut c, m, n, ldc, 1).unwrap(),
                    Epilogue::BiasRelu(&bias),
                    &mut pack,
                )
                .unwrap();
                for i in 0..m {
                    for j in 0..n {
                        let (g, w) = (c[i * ldc + j], want[i * ldc + j]);
                        let tol = gamma * mag[i * n + j];
                        assert!(
                            f64::from((g - w).abs()) <= tol,
                            "{} ({m},{n},{k}) [{i},{j}]: {g} vs {w}",
                            kernel.name()
                        );
                    }
                }
            }
        }
    }

    /// Every store path of the micro-kernels against the f64 reference: full tiles
    /// in each (α ≠ 1, β ≠ 0, bias + ReLU) case, and the ragged last panel of B at
    /// every width class (≤ 8, ≤ 16, ≤ 32, > 32 columns), which the x86 kernels
    /// compute with a narrower product over the same packed panel.
    #[test]
    fn store_cases_and_edge_widths_match_reference() {
        let fill = |len: usize, seed: u64| -> Vec<f32> {
            (0..len as u64)
                .map(|i| (((i * 7919 + seed * 104_729) % 2001) as f32 - 1000.0) * 1e-3)
                .collect()
        };
        let (m, k) = (24, 37);
        let widths: &[usize] = if cfg!(miri) {
            &[48 + 5]
        } else {
            &[96, 48 + 5, 48 + 16, 48 + 20, 48 + 32, 48 + 40, 7]
        };
        let cases = [
            (1.0, 0.0, false),
            (1.0, 0.0, true),
            (-1.5, 0.0, false),
            (1.0, 0.5, true),
            (2.0, -1.25, false),
            (0.75, 1.0, true),
        ];
        for &n in widths {
            let (a, b, bias, c0) = (fill(m * k, 1), fill(k * n, 2), fill(n, 3), fill(m * n, 4));
            for &(alpha, beta, relu) in &cases {
                let epi = if relu {
                    Epilogue::BiasRelu(&bias)
                } else {
                    Epilogue::None
                };
                let mut want = c0.clone();
                let mut mag = vec![0.0f64; m * n];
                naive::gemm_f64(
                    alpha,
                    MatRef::row_major("a", &a, m, k).unwrap(),
                    MatRef::row_major("b", &b, k, n).unwrap(),
                    beta,
                    &mut MatMut::row_major("c", &mut want, m, n).unwrap(),
                    epi,
                    Some(&mut mag),
                );
                let gamma = (k as f64 + 4.0) * f64::powi(2.0, -23);
                for kernel in Kernel::ALL.into_iter().filter(|k| k.is_available()) {
                    let mut c = c0.clone();
                    let mut pack = vec![0.0; pack_len(m, n, k)];
                    gemm_with(
                        kernel,
                        alpha,
                        MatRef::row_major("a", &a, m, k).unwrap(),
                        MatRef::row_major("b", &b, k, n).unwrap(),
                        beta,
                        MatMut::row_major("c", &mut c, m, n).unwrap(),
                        epi,
                        &mut pack,
                    )
                    .unwrap();
                    for (idx, (&g, &w)) in c.iter().zip(&want).enumerate() {
                        let tol = gamma * mag[idx]
                            + 1e-6 * f64::from(beta.abs()) * f64::from(c0[idx].abs());
                        assert!(
                            f64::from((g - w).abs()) <= tol,
                            "{} n={n} α={alpha} β={beta} relu={relu} [{idx}]: {g} vs {w}",
                            kernel.name()
                        );
                    }
                }
            }
        }
    }
}
