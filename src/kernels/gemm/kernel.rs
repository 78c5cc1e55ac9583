//! The micro-kernel interface and the choice of kernel for this build and machine.
//!
//! ## Which kernel runs
//! [`selected`] picks, once per process (cached in an atomic):
//!
//! 1. with the cargo feature `force-portable`: [`Kernel::Portable`], always;
//! 2. on x86_64 with `std`: [`Kernel::Avx512`] if the CPU reports `avx512f`
//!    (`std::is_x86_feature_detected!`), else [`Kernel::Avx2`] if it reports `avx2`
//!    and `fma`, else [`Kernel::Portable`]. A plain `cargo build --release` (no
//!    `RUSTFLAGS`) therefore runs the AVX-512 kernel on an AVX-512 machine;
//! 3. on x86_64 without `std`: the same order, decided at compile time by
//!    `cfg!(target_feature = ...)`;
//! 4. elsewhere: [`Kernel::Portable`] (`wide`, whose SIMD width is fixed at compile
//!    time: NEON, wasm simd128, or scalar code on Cortex-M).
//!
//! With `std`, the environment variable `SAE_KERNEL` (`scalar`, `portable`, `avx2`,
//! `avx512`) overrides all of this when it names a kernel available here, so that
//! whole test suites (for example the golden tests) can run on every path:
//! `SAE_KERNEL=avx2 cargo test`.
//!
//! [`Kernel::Scalar`] is never selected automatically; it exists so that tests can
//! run the loop nest on plain `f32` arithmetic (see [`super::gemm_with`]).

use core::sync::atomic::{AtomicU8, Ordering};

#[cfg(target_arch = "x86_64")]
use super::x86::{AVX512_MR, AVX512_NV};
#[cfg(not(target_arch = "x86_64"))]
const AVX512_MR: usize = 8;
#[cfg(not(target_arch = "x86_64"))]
const AVX512_NV: usize = 3;

/// The largest `MR·NR` of any micro-kernel (the edge-tile scratch lives on the stack).
pub(crate) const TILE_MAX: usize = 512;

/// A GEMM micro-kernel family. Every variant exists on every target; whether it can
/// run here is [`Kernel::is_available`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// Plain scalar Rust, `4×4` tiles (a test path; never selected automatically).
    Scalar,
    /// `wide::f32x8`, `8×8` tiles; SIMD width and FMA fixed at compile time.
    Portable,
    /// x86_64 AVX2 + FMA intrinsics, `6×16` tiles, chosen at run time.
    Avx2,
    /// x86_64 AVX-512F intrinsics, `8×48` tiles, chosen at run time.
    Avx512,
}

impl Kernel {
    /// Every kernel family, slowest first.
    pub const ALL: [Kernel; 4] = [
        Kernel::Scalar,
        Kernel::Portable,
        Kernel::Avx2,
        Kernel::Avx512,
    ];

    /// A short stable name: `"scalar"`, `"portable"`, `"avx2"` or `"avx512"`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Scalar => "scalar",
            Kernel::Portable => "portable",
            Kernel::Avx2 => "avx2",
            Kernel::Avx512 => "avx512",
        }
    }

    /// Whether this kernel can run on this machine with this build (independent of
    /// the `force-portable` feature, which only changes [`selected`]).
    #[must_use]
    pub fn is_available(self) -> bool {
        match self {
            Kernel::Scalar | Kernel::Portable => true,
            Kernel::Avx2 => has_avx2_fma(),
            Kernel::Avx512 => has_avx512f(),
        }
    }

    /// Whether this build contains the kernel at all (the x86 kernels exist only on
    /// x86_64). [`super::pack_len`] sizes for the largest tile among these.
    #[must_use]
    pub fn is_compiled_in(self) -> bool {
        match self {
            Kernel::Scalar | Kernel::Portable => true,
            Kernel::Avx2 | Kernel::Avx512 => cfg!(target_arch = "x86_64"),
        }
    }

    /// `(MR, NR)`: the output tile of this kernel's micro-kernel.
    #[must_use]
    pub fn tile(self) -> (usize, usize) {
        match self {
            Kernel::Scalar => (4, 4),
            Kernel::Portable => (8, 8),
            Kernel::Avx2 => (6, 16),
            Kernel::Avx512 => (AVX512_MR, 16 * AVX512_NV),
        }
    }

    fn code(self) -> u8 {
        match self {
            Kernel::Scalar => 1,
            Kernel::Portable => 2,
            Kernel::Avx2 => 3,
            Kernel::Avx512 => 4,
        }
    }
}

#[cfg(all(target_arch = "x86_64", feature = "std"))]
pub(crate) fn has_avx512f() -> bool {
    std::is_x86_feature_detected!("avx512f")
}

#[cfg(all(target_arch = "x86_64", feature = "std"))]
pub(crate) fn has_avx2_fma() -> bool {
    std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
}

#[cfg(all(target_arch = "x86_64", not(feature = "std")))]
pub(crate) fn has_avx512f() -> bool {
    cfg!(target_feature = "avx512f")
}

#[cfg(all(target_arch = "x86_64", not(feature = "std")))]
pub(crate) fn has_avx2_fma() -> bool {
    cfg!(all(target_feature = "avx2", target_feature = "fma"))
}

#[cfg(not(target_arch = "x86_64"))]
pub(crate) fn has_avx512f() -> bool {
    false
}

#[cfg(not(target_arch = "x86_64"))]
pub(crate) fn has_avx2_fma() -> bool {
    false
}

/// The cached choice of [`selected`] (0 = not decided yet).
static SELECTED: AtomicU8 = AtomicU8::new(0);

/// The kernel named by the `SAE_KERNEL` environment variable, if set to the
/// [`Kernel::name`] of a kernel available here (`std` only).
#[cfg(feature = "std")]
fn env_override() -> Option<Kernel> {
    let want = std::env::var("SAE_KERNEL").ok()?;
    Kernel::ALL
        .into_iter()
        .find(|k| k.name() == want && k.is_available())
}

#[cfg(not(feature = "std"))]
fn env_override() -> Option<Kernel> {
    None
}

fn detect() -> Kernel {
    if let Some(k) = env_override() {
        k
    } else if cfg!(feature = "force-portable") {
        Kernel::Portable
    } else if has_avx512f() {
        Kernel::Avx512
    } else if has_avx2_fma() {
        Kernel::Avx2
    } else {
        Kernel::Portable
    }
}

/// The kernel [`super::gemm`] uses in this process (decided once, then cached).
#[must_use]
pub fn selected() -> Kernel {
    match SELECTED.load(Ordering::Relaxed) {
        1 => Kernel::Scalar,
        2 => Kernel::Portable,
        3 => Kernel::Avx2,
        4 => Kernel::Avx512,
        _ => {
            let k = detect();
            SELECTED.store(k.code(), Ordering::Relaxed);
            k
        }
    }
}

/// The name of the kernel [`selected`] returns.
pub(crate) fn active_name() -> &'static str {
    selected().name()
}

/// What the store of a full tile applies: `relu?(α·acc + β·C + bias)`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Store<'a> {
    pub alpha: f32,
    /// `0.0` means C is written without being read.
    pub beta: f32,
    /// `Some(bias[j0..j0+cols])`: add it and apply ReLU.
    pub bias: Option<&'a [f32]>,
}

/// Where a micro-kernel puts its `MR×NR` result.
pub(crate) enum Out<'a> {
    /// The valid `rows×cols` corner (`rows ≤ MR`, `cols ≤ NR`) of a tile of a C with
    /// unit column stride: element `(i, j)` at `c[i·ldc + j]`;
    /// `c.len() ≥ (rows−1)·ldc + cols`, `ldc ≥ cols` if `rows > 1`. The kernel applies
    /// the [`Store`] (whose bias then has at least `cols` entries).
    Direct {
        c: &'a mut [f32],
        ldc: usize,
        rows: usize,
        cols: usize,
    },
    /// The raw product `tile[i·NR + j]` (no α, β or epilogue), for edge tiles and
    /// strided C; the caller stores the valid corner.
    Buf(&'a mut [f32; TILE_MAX]),
}

/// One register-blocked micro-kernel: multiplies an `MR×kc` packed A panel
/// (`a[p·MR + i]`) by a `kc×NR` packed B panel (`b[p·NR + j]`).
///
/// A value of the implementing type is a proof that the CPU can run it (the x86
/// kernels can only be constructed after feature detection).
pub(crate) trait MicroKernel: Copy + Send + Sync {
    /// Rows of the output tile.
    const MR: usize;
    /// Columns of the output tile.
    const NR: usize;
    /// `a.len() ≥ kc·MR`, `b.len() ≥ kc·NR`.
    fn tile(self, kc: usize, a: &[f32], b: &[f32], out: Out<'_>, st: &Store<'_>);

    /// Optional fast transposing pack: `panel[kk·w + j] = src[j·cs + kk]` for
    /// `kk < kc`, `j < cols ≤ w`, zero for `cols ≤ j < w`. Returns `false` (and
    /// writes nothing) if this kernel has none; the caller then packs generically.
    #[inline(always)]
    fn pack_cols(
        self,
        _src: &[f32],
        _cs: usize,
        _kc: usize,
        _cols: usize,
        _w: usize,
        _panel: &mut [f32],
    ) -> bool {
        false
    }
}

/// Apply a [`Store`] to a raw tile and write it to a unit-column-stride C (the
/// `Out::Direct` case for kernels that compute into a buffer first).
#[inline(always)]
pub(crate) fn store_direct_from_buf(
    tile: &[f32; TILE_MAX],
    ld: usize,
    (rows, cols): (usize, usize),
    c: &mut [f32],
    ldc: usize,
    st: &Store<'_>,
) {
    for i in 0..rows {
        let row = &tile[i * ld..i * ld + cols];
        let out = &mut c[i * ldc..i * ldc + cols];
        for (j, (o, &ab)) in out.iter_mut().zip(row).enumerate() {
            let mut v = st.alpha * ab;
            if st.beta != 0.0 {
                v += st.beta * *o;
            }
            if let Some(bias) = st.bias {
                v = crate::kernels::vector::relu(v + bias[j]);
            }
            *o = v;
        }
    }
}
