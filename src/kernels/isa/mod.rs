//! One token type per instruction set, and the one place where the instruction set is
//! chosen.
//!
//! ## Tokens
//! Each instruction set the crate has kernels for is a zero-size token type implementing
//! the crate-private `Isa` trait: `Scalar` (plain `f32`), `Portable` (`wide::f32x8`,
//! whose width is fixed at compile time: SSE2, NEON, wasm simd128 or plain code on
//! Cortex-M), and on x86_64 `Avx2` (AVX2 + FMA, `__m256`) and `Avx512` (AVX-512F,
//! `__m512`). A token carries, stated once:
//! - its SIMD vector type (`Isa::Vector`) and horizontal sum;
//! - its GEMM micro-kernel and that kernel's tile shape (`TileShape::MR`,
//!   `TileShape::NR`), from which [`Kernel::tile`] and [`super::gemm::pack_len`] derive;
//! - its row kernels (`dot`, `axpy`, the fused `axpy2`, and the dot-form small product)
//!   used by the sparse path, the unpacked small products and the vector operations.
//!
//! A value of an x86 token is the proof that the CPU runs its instructions: the only
//! constructors return `None` unless detection found the features, so every function
//! that executes `core::arch` intrinsics either takes a token or is an `unsafe`
//! `#[target_feature]` function called (with a `// SAFETY:` comment) by a token method.
//! NEON or wasm simd128 tokens would be added the same way: a token type, a
//! [`Kernel`] variant and one arm in `visit`.
//!
//! ## Selection
//! [`selected`] decides once per process (cached in an atomic):
//! 1. with `std`, the environment variable `SAE_KERNEL` (`scalar`, `portable`, `avx2`,
//!    `avx512`) names a kernel available here: that one (so whole test suites can run
//!    on every path: `SAE_KERNEL=avx2 cargo test`);
//! 2. with the cargo feature `force-portable`: [`Kernel::Portable`];
//! 3. on x86_64: [`Kernel::Avx512`] if the CPU and the OS support AVX-512F (and AVX2 +
//!    FMA), else [`Kernel::Avx2`] if they support AVX2 + FMA, else [`Kernel::Portable`].
//!    Detection uses `cpuid` and `xgetbv` from `core` (the OS must have enabled the
//!    AVX and AVX-512 register state in XCR0), so a `default-features = false` build
//!    gets the AVX-512 kernels too;
//! 4. elsewhere: [`Kernel::Portable`].
//!
//! [`Kernel::Scalar`] is never selected automatically; it runs the loop nest on plain
//! `f32` arithmetic for tests (see [`super::gemm::gemm_with`]).
//!
//! Generic code receives the token through a visitor (`IsaVisitor`, `visit`), so
//! the dispatch is one `match` per call and everything below it is monomorphic.

use super::half::Half;
use super::mat::{Epilogue, MatMut, MatRef};
use core::sync::atomic::{AtomicU8, Ordering};

mod portable;
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86;

pub(crate) use portable::{Portable, Scalar};

/// The AVX2 + FMA token (x86_64); a value proves the CPU supports both.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Avx2(#[allow(dead_code)] Private);

/// The AVX-512F token (x86_64); a value proves the CPU supports AVX-512F, AVX2 and FMA.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Avx512(#[allow(dead_code)] Private);

/// Keeps the x86 tokens from being constructed outside their detecting constructors.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Private(());

impl Private {
    /// Only the x86 module calls this, right after detection succeeded.
    #[cfg(target_arch = "x86_64")]
    pub(crate) const fn detected() -> Self {
        Self(())
    }
}

/// The output tile of a token's GEMM micro-kernel (`MR` rows × `NR` columns). Known on
/// every target, so sizes can be stated even where a token cannot run.
pub(crate) trait TileShape {
    /// Rows of the micro-kernel's output tile.
    const MR: usize;
    /// Columns of the micro-kernel's output tile.
    const NR: usize;
}

impl TileShape for Scalar {
    const MR: usize = 4;
    const NR: usize = 4;
}
impl TileShape for Portable {
    const MR: usize = 8;
    const NR: usize = 8;
}
impl TileShape for Avx2 {
    /// 6 rows × 2 `ymm`: 12 accumulators + 2 B vectors + 1 broadcast of 16 registers.
    const MR: usize = 6;
    const NR: usize = 16;
}
impl TileShape for Avx512 {
    /// 8 rows × 3 `zmm`: 24 accumulators + 3 B vectors + 1 broadcast of 32 registers.
    const MR: usize = 8;
    const NR: usize = 48;
}

/// The largest `MR·NR` of any micro-kernel (the edge-tile scratch lives on the stack).
pub(crate) const TILE_MAX: usize = 512;
const _: () = assert!(
    <Avx512 as TileShape>::MR * <Avx512 as TileShape>::NR <= TILE_MAX
        && <Avx2 as TileShape>::MR * <Avx2 as TileShape>::NR <= TILE_MAX
        && <Portable as TileShape>::MR * <Portable as TileShape>::NR <= TILE_MAX
);

/// What the store of a full tile applies: `relu?(α·acc + β·C + bias)`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Store<'a> {
    pub alpha: f32,
    /// `0.0` means C is written without being read.
    pub beta: f32,
    /// `Some(bias[j0..j0+cols])`: add it (then ReLU if `relu`).
    pub bias: Option<&'a [f32]>,
    /// Apply ReLU after the bias ([`Epilogue::BiasRelu`]; only with a bias).
    pub relu: bool,
}

impl<'a> Store<'a> {
    /// The store of a tile whose columns are `cols` of C: `epi`'s bias sliced to them.
    #[inline(always)]
    pub(crate) fn tile(
        alpha: f32,
        beta: f32,
        epi: Epilogue<'a>,
        cols: core::ops::Range<usize>,
    ) -> Self {
        let (bias, relu) = epi.parts();
        Store {
            alpha,
            beta,
            bias: bias.map(|b| &b[cols]),
            relu,
        }
    }
}

/// Where a micro-kernel puts its `MR×NR` result.
pub(crate) enum Out<'a> {
    /// The valid `rows×cols` corner (`rows ≤ MR`, `cols ≤ NR`) of a tile of a C with
    /// unit column stride: element `(i, j)` at `c[i·ldc + j]`;
    /// `c.len() ≥ (rows−1)·ldc + cols`, `ldc ≥ cols` if `rows > 1`. The kernel applies
    /// the [`Store`] (whose bias then has at least `cols` entries).
    Direct {
        c: CTile<'a>,
        ldc: usize,
        rows: usize,
        cols: usize,
    },
    /// The raw product `tile[i·NR + j]` (no α, β or epilogue), for edge tiles and
    /// strided C; the caller stores the valid corner.
    Buf(&'a mut [f32; TILE_MAX]),
}

/// The memory of an [`Out::Direct`] tile: `len` elements from `ptr`, of which the
/// tile may read and write exactly `c[i·ldc + j]` for `i < rows`, `j < cols` (the
/// fields of its `Out::Direct`) and nothing else. Made from a slice (the whole span
/// is ours) or, by the split products of the `parallel` feature, from a raw
/// pointer into a C whose other columns another thread writes at the same time
/// (so no `&mut` to the whole span may exist).
pub(crate) struct CTile<'a> {
    ptr: *mut f32,
    len: usize,
    _life: core::marker::PhantomData<&'a mut [f32]>,
}

impl<'a> CTile<'a> {
    /// The whole of `c`.
    pub(crate) fn new(c: &'a mut [f32]) -> Self {
        CTile {
            ptr: c.as_mut_ptr(),
            len: c.len(),
            _life: core::marker::PhantomData,
        }
    }

    /// `len` elements from `ptr`.
    ///
    /// # Safety
    /// For `'a`, the elements of the tile (`ptr[i·ldc + j]`, `i < rows`, `j < cols`
    /// of the `Out::Direct` this goes into, all below `len`) are valid for reads and
    /// writes and accessed by no one else. The other elements of the span are
    /// never accessed through this value.
    #[cfg_attr(not(feature = "parallel"), allow(dead_code))]
    pub(crate) unsafe fn from_raw(ptr: *mut f32, len: usize) -> Self {
        CTile {
            ptr,
            len,
            _life: core::marker::PhantomData,
        }
    }

    /// Length of the span.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Start of the span (accesses through it: the tile's elements only).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(crate) fn as_mut_ptr(&self) -> *mut f32 {
        self.ptr
    }

    /// `cols` elements from `off` as a slice.
    ///
    /// # Safety
    /// `off..off + cols` lies in one row of the tile's elements (see [`CTile`]).
    unsafe fn part(&mut self, off: usize, cols: usize) -> &mut [f32] {
        assert!(off.checked_add(cols).is_some_and(|e| e <= self.len));
        // SAFETY: in bounds by the assert; the caller promises these are tile
        // elements, which only this value accesses for its lifetime.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.add(off), cols) }
    }
}

/// An instruction set: its vector type, GEMM micro-kernel and row kernels. A value is
/// a proof that the running CPU supports it (see the module documentation).
pub(crate) trait Isa: TileShape + Copy + Send + Sync + 'static {
    /// The [`Kernel`] this token implements.
    #[cfg_attr(not(test), allow(dead_code))]
    const KERNEL: Kernel;
    /// The SIMD register type of this instruction set.
    type Vector: Copy;
    /// Whether the micro-kernel takes bf16 pairs: each 32-bit slot of a packed panel
    /// holds two bf16 values, `k` and `k + 1` (the low half first), instead of one
    /// `f32` (see `pack_panels`).
    const BF16_PAIRS: bool = false;

    /// Sum of the lanes of `v` in a fixed order.
    #[allow(dead_code)] // part of the vocabulary; the kernels inline `Simd::hsum`
    fn hsum(self, v: Self::Vector) -> f32;

    /// The micro-kernel: an `MR×kc` packed A panel (`a[p·MR + i]`) times a `kc×NR`
    /// packed B panel (`b[p·NR + j]`); `a.len() ≥ kc·MR`, `b.len() ≥ kc·NR`.
    fn tile(self, kc: usize, a: &[f32], b: &[f32], out: Out<'_>, st: &Store<'_>);

    /// Optional fast transposing pack: `panel[kk·w + j] = src[j·cs + kk]` for
    /// `kk < kc`, `j < cols ≤ w`, zero for `cols ≤ j < w`. Returns `false` (and
    /// writes nothing) if this instruction set has none; the caller then packs
    /// generically.
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

    /// Optional fast bf16-pair pack of contiguous runs (for `BF16_PAIRS` kernels):
    /// what `gemm`'s `pack_pair_runs` writes, bit for bit: panel `q` at
    /// `out[q·w·kc..]`, slot `p·w + j` holding `bf16(src[2p])` low and
    /// `bf16(src[2p + 1])` high (0 past `kc`), `src` the run of column `j0 + q·w + j`
    /// at `data[(j0 + q·w + j)·cs + k0..][..kc]`, columns past `nc` zero. Returns
    /// `false` (and writes nothing) where this instruction set has none or cannot
    /// take the panel width `w`; the caller then packs generically.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn pack_pair_runs(
        self,
        _data: &[f32],
        _cs: usize,
        _k0: usize,
        _kc: usize,
        _j0: usize,
        _nc: usize,
        _w: usize,
        _out: &mut [f32],
    ) -> bool {
        false
    }

    /// Σ aᵢ bᵢ over the common length, in this instruction set's fixed order.
    fn dot(self, a: &[f32], b: &[f32]) -> f32;

    /// y ← a·x + y over the common length.
    fn axpy(self, a: f32, x: &[f32], y: &mut [f32]);

    /// z ← z + a·x + b·y over the common length, one pass over `z`.
    fn axpy2(self, a: f32, x: &[f32], b: f32, y: &[f32], z: &mut [f32]);

    /// The dot-form product without packing: `C ← epilogue(α·A·B + β·C)` where A's
    /// rows and B's columns are contiguous (`a.cs == 1`, `b.rs == 1`, or `k == 1`),
    /// `k ≥ 1`, shapes validated. Each element is one [`Isa::dot`]; the x86 tokens
    /// override it with register-blocked code that reads each column of B once per
    /// four rows of A.
    fn dots(
        self,
        alpha: f32,
        a: &MatRef<'_>,
        b: &MatRef<'_>,
        beta: f32,
        c: &mut MatMut<'_>,
        epi: Epilogue<'_>,
    ) {
        let k = a.cols;
        for i in 0..a.rows {
            let ar = &a.data[i * a.rs..i * a.rs + k];
            for j in 0..b.cols {
                let bc = &b.data[j * b.cs..j * b.cs + k];
                put(c, i, j, self.dot(ar, bc), alpha, beta, epi);
            }
        }
    }

    /// The dot-form product with 16-bit weights: `C ← epilogue(α·A·Wᵀ + β·C)` for a
    /// row-major `n×k` `W` (`w.len() ≥ n·k`, `n = c.cols`), A's rows contiguous
    /// (`a.cs == 1` or `k == 1`), `k ≥ 1`, shapes validated. The weights are widened
    /// to `f32` as they are read; the x86 tokens override this with register-blocked
    /// code that widens in registers.
    #[allow(clippy::too_many_arguments)]
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
        default_dots_half(self, format, alpha, a, w, beta, c, epi);
    }
}

/// The default [`Isa::dots_half`]: widen 64 weights at a time into a buffer, then
/// [`Isa::dot`].
#[allow(clippy::too_many_arguments)]
pub(crate) fn default_dots_half<I: Isa>(
    isa: I,
    format: Half,
    alpha: f32,
    a: &MatRef<'_>,
    w: &[u16],
    beta: f32,
    c: &mut MatMut<'_>,
    epi: Epilogue<'_>,
) {
    let k = a.cols;
    let mut buf = [0.0f32; 64];
    for j in 0..c.cols {
        let wr = &w[j * k..(j + 1) * k];
        for i in 0..a.rows {
            let ar = &a.data[i * a.rs..i * a.rs + k];
            let mut s = 0.0;
            for (wc, ac) in wr.chunks(64).zip(ar.chunks(64)) {
                for (d, &v) in buf.iter_mut().zip(wc) {
                    *d = format.to_f32(v);
                }
                s += isa.dot(ac, &buf[..wc.len()]);
            }
            put(c, i, j, s, alpha, beta, epi);
        }
    }
}

/// Write `epilogue(α·dot + β·C)` to `C[i, j]` (β = 0 does not read C).
#[inline(always)]
pub(crate) fn put(
    c: &mut MatMut<'_>,
    i: usize,
    j: usize,
    dot: f32,
    alpha: f32,
    beta: f32,
    epi: Epilogue,
) {
    let idx = i * c.rs + j * c.cs;
    let mut v = alpha * dot;
    if beta != 0.0 {
        v += beta * c.data[idx];
    }
    c.data[idx] = epi.apply(v, j);
}

/// Apply a [`Store`] to a raw tile and write it to a unit-column-stride C (the
/// `Out::Direct` case for kernels that compute into a buffer first).
///
/// # Safety
/// `(rows, cols)`, `c` and `ldc` are the fields of one `Out::Direct` (see [`CTile`]).
#[inline(always)]
pub(crate) unsafe fn store_direct_from_buf(
    tile: &[f32; TILE_MAX],
    ld: usize,
    (rows, cols): (usize, usize),
    mut c: CTile<'_>,
    ldc: usize,
    st: &Store<'_>,
) {
    for i in 0..rows {
        let row = &tile[i * ld..i * ld + cols];
        // SAFETY: row `i < rows`, columns `0..cols` of an `Out::Direct` tile whose
        // memory is `c` (the caller passes that tile's fields).
        let out = unsafe { c.part(i * ldc, cols) };
        for (j, (o, &ab)) in out.iter_mut().zip(row).enumerate() {
            let mut v = st.alpha * ab;
            if st.beta != 0.0 {
                v += st.beta * *o;
            }
            if let Some(bias) = st.bias {
                v += bias[j];
                if st.relu {
                    v = crate::kernels::vector::relu(v);
                }
            }
            *o = v;
        }
    }
}

/// Generic code that runs with whichever token [`visit`] hands it (the visitor of
/// matrixmultiply's `GemmSelect`, with a token instead of a kernel type).
pub(crate) trait IsaVisitor {
    /// What the visit returns.
    type Output;
    /// Run with the token `isa` (a proof that the CPU supports it).
    fn visit<I: Isa>(self, isa: I) -> Self::Output;
}

/// Run `v` with the token of `kernel`; a kernel that is not available here falls back
/// to [`Portable`] (callers that must not fall back check [`Kernel::is_available`]).
#[inline]
pub(crate) fn visit<V: IsaVisitor>(kernel: Kernel, v: V) -> V::Output {
    match kernel {
        Kernel::Scalar => v.visit(Scalar),
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512 => match x86::avx512() {
            Some(t) => v.visit(t),
            None => v.visit(Portable),
        },
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 => match x86::avx2() {
            Some(t) => v.visit(t),
            None => v.visit(Portable),
        },
        _ => v.visit(Portable),
    }
}

/// [`visit`] with the [`selected`] kernel.
#[inline]
pub(crate) fn visit_selected<V: IsaVisitor>(v: V) -> V::Output {
    visit(selected(), v)
}

/// A GEMM micro-kernel family (an instruction set). Every variant exists on every
/// target; whether it can run here is [`Kernel::is_available`].
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
    /// the `force-portable` feature, which only changes [`selected`]). Needs no `std`:
    /// on x86_64 the CPU and OS support is read with `cpuid`/`xgetbv`.
    #[must_use]
    pub fn is_available(self) -> bool {
        match self {
            Kernel::Scalar | Kernel::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => x86::avx2().is_some(),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => x86::avx512().is_some(),
            #[cfg(not(target_arch = "x86_64"))]
            Kernel::Avx2 | Kernel::Avx512 => false,
        }
    }

    /// Whether this build contains the kernel at all (the x86 kernels exist only on
    /// x86_64). [`super::gemm::pack_len`] sizes for the largest tile among these.
    #[must_use]
    pub const fn is_compiled_in(self) -> bool {
        match self {
            Kernel::Scalar | Kernel::Portable => true,
            Kernel::Avx2 | Kernel::Avx512 => cfg!(target_arch = "x86_64"),
        }
    }

    /// `(MR, NR)`: the output tile of this kernel's micro-kernel (stated once, by
    /// the token type).
    #[must_use]
    pub const fn tile(self) -> (usize, usize) {
        const fn of<T: TileShape>() -> (usize, usize) {
            (T::MR, T::NR)
        }
        match self {
            Kernel::Scalar => of::<Scalar>(),
            Kernel::Portable => of::<Portable>(),
            Kernel::Avx2 => of::<Avx2>(),
            Kernel::Avx512 => of::<Avx512>(),
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
    } else if Kernel::Avx512.is_available() {
        Kernel::Avx512
    } else if Kernel::Avx2.is_available() {
        Kernel::Avx2
    } else {
        Kernel::Portable
    }
}

/// The kernel [`super::gemm::gemm`] and the row kernels use in this process (decided
/// once, then cached; see the module documentation for the order).
#[must_use]
pub fn selected() -> Kernel {
    // Without std and without x86 kernels nothing can choose another kernel: say so
    // at compile time, so the unused kernels are not linked into firmware.
    if !cfg!(any(feature = "std", target_arch = "x86_64")) {
        return Kernel::Portable;
    }
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

/// Run plain Rust code `f` compiled for `kernel`'s instruction set, if this CPU has it
/// (else `None`). `f` receives the `f32` lanes per vector of that set (16 for AVX-512,
/// 8 for AVX2, 4 for the portable and scalar kernels, which run the baseline build),
/// so it can pick a matching chunk width. `f` is inlined into a `#[target_feature]`
/// frame, so its loops vectorize for that set. This is how code outside `kernels/`
/// (selection, optimizer and rescaling sweeps) gets AVX-512 without touching an
/// intrinsic: element-wise IEEE arithmetic without contraction gives the same bits
/// on every set, which the callers' tests check across sets.
#[inline(always)]
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) fn vectorized_on<R>(kernel: Kernel, f: impl FnOnce(usize) -> R) -> Option<R> {
    match kernel {
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512 => x86::avx512().map(|t| t.vectorized(f)),
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 => x86::avx2().map(|t| t.vectorized(f)),
        Kernel::Portable | Kernel::Scalar => Some(f(4)),
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

/// [`vectorized_on`] the [`selected`] kernel (the baseline build when it is not there).
#[inline(always)]
pub(crate) fn vectorized<R>(f: impl FnOnce(usize) -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    match selected() {
        Kernel::Avx512 => {
            if let Some(t) = x86::avx512() {
                return t.vectorized(f);
            }
        }
        Kernel::Avx2 => {
            if let Some(t) = x86::avx2() {
                return t.vectorized(f);
            }
        }
        Kernel::Portable | Kernel::Scalar => {}
    }
    f(4)
}
