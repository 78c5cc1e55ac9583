//! Encoding screened in bf16: the same codes, bit for bit, with most of the encoder
//! product done at twice the f32 FLOP rate, where the CPU has that.
//!
//! Trained SAEs keep few of their `h` features per row (TopK `k = 32`; L0 of a few
//! dozen for ReLU and JumpReLU SAEs), yet the plain encoder computes every
//! pre-activation exactly. Where `vdpbf16ps` is fast (`Avx512Bf16::pays`),
//! [`Screen::encode_block`] instead:
//! 1. computes every pre-activation in bf16 (`gemm_bf16_dot`: `x` and `W_enc`
//!    rounded to bf16, `f32` sums), `p̃ = S̃ + b`;
//! 2. bounds, per row, `|p̃_j − p_j| ≤ m₀` for every feature `j`, where `p_j` is the
//!    value the plain `f32` encoder computes (see `RowBound`);
//! 3. keeps as candidates every feature the plain encoder could keep:
//!    - TopK: the features with `p̃_j ≥ S_k − 2m₀`, `S_k` the `k`-th largest `p̃` of
//!      the row: the `k` features with `p̃ ≥ S_k` have `p ≥ S_k − m₀`, so the `k`-th
//!      largest `p` is at least that, and any feature at or above it has
//!      `p̃ ≥ S_k − 2m₀` (ties included);
//!    - ReLU and JumpReLU: the features with `p̃_j ≥ θ_j − m₀` (`θ = 0` for ReLU),
//!      since any other has `p_j < θ_j` and the code `0`;
//! 4. computes the candidates' `p_j` as the plain encoder's GEMM does
//!    (`kernels::gemm::sampled`: the same fused multiply-add chain, so the same bits)
//!    and applies the plain encoder's rule to them (TopK: largest first, ties to the
//!    lower feature, then ReLU; JumpReLU: `relu(p)·1[relu(p) > θ]`); every other
//!    code is `+0`, as the plain encoder's.
//!
//! So the codes equal the unscreened encoder's bit for bit (tested); the screen only
//! decides which exact values are worth computing. On N(0, 1) inputs with SAELens-like
//! random weights, `k = 32` leaves about 47 candidates per row at `(d, h) = (384,
//! 3072)` and 63 at `(768, 16384)`; a standard SAE trained on real activations (L0 45
//! of 3072) leaves about 61.
//!
//! The exact pass costs about `d` FMAs per candidate and more (16 candidates at a
//! time, one per vector lane, after an in-register transpose of their columns), the
//! bf16 product saves about `0.45·h·d` vector lanes' worth, and passes over each row
//! find the candidates. [`screens`] and [`threshold_screens`] list the shapes where
//! that can pay, measured at batch 1024 (`cargo run --release --example
//! bench_screen`: plain and screened calls alternating in one process, AMD Zen 4).
//! Whether it pays for ReLU and JumpReLU depends on the data too: an untrained SAE
//! has about half its pre-activations above 0. So the first block of a call is
//! probed first (a few rows, a few hundred features, in `f32`), and the call takes
//! the plain path if they have too many candidates.
//!
//! A row with more candidates than its list holds ([`cap`], [`threshold_cap`]) is
//! encoded by the plain product on such rows alone (up to [`OVERFLOW_ROWS`] per
//! block). A block falls back to the plain encoder beyond that, or when an input,
//! weight or bias is not finite or too large for the bound (beyond `1e37`).
//! [`set_bf16_screen`]`(false)` turns the screen off for the whole process, for
//! comparisons.

use super::params::{Activation, Arch, Dims};
use super::stack::StackReq;
use crate::kernels::gemm::{KC, packs};
use core::sync::atomic::{AtomicBool, Ordering};
#[cfg(target_arch = "x86_64")]
pub(crate) use x86::Screen;

/// Whether [`Screen`] may run (see [`set_bf16_screen`]).
static SCREEN_ON: AtomicBool = AtomicBool::new(true);

/// Allow (`true`, the default) or forbid the encoder's bf16 screen for the whole
/// process. Where the CPU's AVX512_BF16 is fast and the shape pays (TopK: `h ≥ 80·k`,
/// `d ≥ 128`; ReLU and JumpReLU: `h ≥ 2048`, `d ≥ 128`, and a probe of the first
/// rows finds few pre-activations near or above their thresholds, as in trained SAEs),
/// [`encode`](super::encode) (and [`Encoder`](super::Encoder)) computes the
/// pre-activations in bf16, bounds their error, and computes exactly, in the `f32`
/// encoder's own order, only the features that could be non-zero. The codes are the
/// same bits either way; only the time differs, so this is for comparisons and
/// benchmarks. It takes effect at the next `encode` call (an `Encoder` keeps what it
/// was made with).
pub fn set_bf16_screen(on: bool) {
    SCREEN_ON.store(on, Ordering::Relaxed);
}

/// Whether the encoder's bf16 screen is allowed ([`set_bf16_screen`]); it still runs
/// only where the CPU, the shape (and for ReLU and JumpReLU the data) make it pay.
#[must_use]
pub fn bf16_screen() -> bool {
    SCREEN_ON.load(Ordering::Relaxed)
}

/// Candidates per row the screen makes room for (`8k + 64` rounded up to a multiple
/// of 16, the exact pass's lanes: 320 for `k = 32`, where random inputs needed at
/// most 85).
pub(crate) const fn cap(k: usize) -> usize {
    (8 * k + 64).next_multiple_of(16)
}

/// Candidates per row the threshold screen (ReLU, JumpReLU) makes room for: `h/8`,
/// rounded down to a multiple of 16 (384 at `h = 3072`, where a trained SAE's rows on
/// real activations had 61 on average and at most 186).
pub(crate) const fn threshold_cap(h: usize) -> usize {
    h / 8 / 16 * 16
}

/// How a screened encoder selects its codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The `k` largest of each row (TopK).
    TopK(usize),
    /// Each feature against its own threshold: `0` (ReLU) or `θ_j` (JumpReLU).
    Threshold,
}

impl Kind {
    /// Candidates per row the screen's lists make room for.
    const fn slots(self, h: usize) -> usize {
        match self {
            Kind::TopK(k) => cap(k),
            Kind::Threshold => threshold_cap(h),
        }
    }
}

/// Whether a TopK encoder of this shape is worth screening, where the CPU's bf16 is
/// fast: `1 ≤ k ≤ 64`, `h ≥ 80·k`, `d ≥ 128` (and `h ≥ 2·cap(k)`, room for a row's
/// candidates in the selection buffer; `d ≤ 2¹⁸`, within which the bound's allowance
/// for the sums' rounding holds).
///
/// Plain time over screened time, batch 1024, k = 32 unless stated (`cargo run
/// --release --example bench_screen`, AMD Zen 4, six runs): `(d, h)` = (384, 3072)
/// 1.16–1.24× (tied 1.11–1.21×), (384, 2560) 1.06–1.20×, (768, 4096) 1.13–1.31×,
/// (128, 8192) 1.03–1.21×, (768, 16384) 1.32–1.55× (tied 1.38–1.57×). With the
/// gate lowered for the measurement: (256, 2048) 0.91×, (64, 8192) k = 16 0.99×, (384, 3072) k = 64
/// 1.01×. Below `h ≈ 80k` the candidate pass and the exact values cost what the
/// bf16 product saves; below `d ≈ 128` the product is too short to save anything.
pub(crate) const fn screens(k: usize, dims: Dims) -> bool {
    k >= 1
        && k <= 64
        && dims.h >= 80 * k
        && dims.h >= 2 * cap(k)
        && dims.d >= 128
        && dims.d <= 1 << 18
}

/// Whether a ReLU or JumpReLU encoder of this shape may be screened: `h ≥ 2048`,
/// `128 ≤ d ≤ 2¹⁸`. Whether it pays depends on the model and the data (how many
/// pre-activations lie near or above their thresholds), which a probe of the first
/// block decides (see `Screen::encode_block`).
pub(crate) const fn threshold_screens(dims: Dims) -> bool {
    dims.h >= 2048 && dims.d >= 128 && dims.d <= 1 << 18
}

/// The screen's kind if an encoder of this architecture and shape, in blocks of
/// `rows` rows, is screened where the CPU allows ([`screens`],
/// [`threshold_screens`]; a packed product; x86_64), else `None`. Shape only: whether
/// the CPU has fast bf16 is decided at run time (`Screen::new`).
const fn screened(arch: Arch, dims: Dims, rows: usize) -> Option<Kind> {
    let kind = match arch.activation {
        Activation::TopK { k } if screens(k, dims) => Kind::TopK(k),
        Activation::Relu | Activation::JumpRelu if threshold_screens(dims) => Kind::Threshold,
        _ => return None,
    };
    if cfg!(target_arch = "x86_64") && packs(rows, dims.h, dims.d) {
        Some(kind)
    } else {
        None
    }
}

/// Rows of a block whose candidates overflow their lists that the screen encodes
/// exactly, by the plain encoder's product on just those rows, before the whole block
/// falls back to the plain encoder. Real activations have such rows: with a TopK SAE
/// trained on the real data, 1 % of the rows had more than `cap(32) = 320` candidates
/// (at most 411), which made every 1024-row block fall back, after its bf16 product,
/// at 0.65× the plain encoder's speed.
pub(crate) const OVERFLOW_ROWS: usize = 32;

/// The screen's slots for a block of `rows` rows: each column's norms for the bound
/// (computed once per call, in the same place for every block); per row the
/// candidates' count,
/// features and exact values; for `d > KC` the running block sums; for an untied
/// encoder, the exact pass's transposed rows of `W_enc` (`sampled_scratch`); for the
/// candidates' keys or features before filtering (`h`); the overflowing
/// rows' indices, inputs and codes ([`OVERFLOW_ROWS`]).
const fn plan(arch: Arch, dims: Dims, rows: usize) -> [StackReq; 10] {
    let Some(kind) = screened(arch, dims, rows) else {
        return [StackReq::EMPTY; 10];
    };
    let ov = if rows < OVERFLOW_ROWS {
        rows
    } else {
        OVERFLOW_ROWS
    };
    let pairs = StackReq::mat(rows, kind.slots(dims.h));
    [
        // First, so that its place does not depend on `rows`.
        StackReq::mat(2, dims.h),
        StackReq::u32s(rows),
        pairs,
        pairs,
        if dims.d > KC { pairs } else { StackReq::EMPTY },
        // A tied dictionary's columns are read in place.
        StackReq::f32s(if arch.is_tied() {
            0
        } else {
            transposed_rows(dims.h)
        }),
        StackReq::u32s(dims.h),
        StackReq::u32s(ov),
        StackReq::mat(ov, dims.d),
        StackReq::mat(ov, dims.h),
    ]
}

/// The exact pass's transposed rows of `W_enc` (x86_64 only, where it runs).
const fn transposed_rows(h: usize) -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        crate::kernels::gemm::sampled::sampled_scratch(h)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = h;
        0
    }
}

/// Scratch slots [`Screen`] needs for blocks of `rows` rows (0 where it never runs).
pub(crate) const fn scratch(arch: Arch, dims: Dims, rows: usize) -> StackReq {
    StackReq::all_of(&plan(arch, dims, rows))
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Kind, bf16_screen, plan, screened};
    use crate::error::Result;
    use crate::kernels::gemm::sampled::{pad, sampled};
    use crate::kernels::gemm::{
        Epilogue, Kernel, MatMut, MatRef, SMALL_M, gemm, gemm_bf16_dot, pack_len, selected,
    };
    use crate::kernels::isa::x86::{Avx512Bf16, SAMPLED_LANES, avx512bf16};
    use crate::kernels::vector;
    use crate::model::activation::{Keep, apply_rows, greater_than, jumprelu, kth_and_above, ukey};
    use crate::model::params::{Dims, Params};
    use crate::model::stack::MemStack;

    // `cap` is a multiple of 16, so of the exact pass's lanes: padding a list never
    // takes it beyond `cap`.
    const _: () = assert!(16_usize.is_multiple_of(SAMPLED_LANES));

    /// `2^e` for `−1022 ≤ e ≤ 1023` (`core` has no `f64::powi`).
    const fn pow2(e: i32) -> f64 {
        f64::from_bits(((1023 + e) as u64) << 52)
    }

    /// Inputs, weights and biases beyond this are left to the plain encoder (their
    /// bf16 rounding and the bound's products stay far from `f32::MAX`).
    const LARGE: f64 = 1e37;

    /// The bf16 screen of one encode call: the CPU's bf16 token, how it selects, and
    /// the weights' part of the bound, computed once per call.
    pub(crate) struct Screen<'s> {
        token: Avx512Bf16,
        kind: Kind,
        /// The largest encoder column norm `max_j ‖W_enc[:, j]‖₂`, rounded up.
        nw: f64,
        /// The largest norm of a column's bf16 rounding, `max_j ‖bf16(w_j) − w_j‖₂`.
        ndw: f64,
        /// `max_j |b_enc,j|`.
        b_max: f64,
        /// The smallest threshold (`0` for ReLU, `min_j θ_j` for JumpReLU, NaN
        /// thresholds left out: they keep nothing); unused by TopK.
        theta_min: f64,
        /// The threshold screen's probe: `None` before the first block, then whether
        /// screening pays on this call's data (a block whose rows overflow their lists
        /// turns it off too).
        pays: Option<bool>,
        scratch: &'s mut [f32],
    }

    impl<'s> Screen<'s> {
        /// The screen for blocks of up to `rows` rows, if it applies: the shape allows it,
        /// `scratch` has [`scratch`] slots, the CPU has AVX512_BF16 at a paying rate, the
        /// selected f32 kernel is the AVX-512 one (whose arithmetic [`sampled`] follows),
        /// and the weights and biases are finite and below [`LARGE`] (and no JumpReLU
        /// threshold is below `−LARGE`). TopK reads `W_enc` once here (its column
        /// norms); ReLU and JumpReLU once their probe has passed.
        pub(crate) fn new(p: &Params<'_>, rows: usize, scratch: &'s mut [f32]) -> Option<Self> {
            let kind = screened(p.arch(), p.dims(), rows)?;
            if !bf16_screen() {
                return None;
            }
            if scratch.len() < super::scratch(p.arch(), p.dims(), rows).len()
                || selected() != Kernel::Avx512
            {
                return None;
            }
            let token = avx512bf16().filter(|t| t.pays())?;
            // Clamped to `LARGE` (a lower threshold only keeps more candidates).
            let theta_min = p
                .threshold()
                .unwrap_or(&[0.0])
                .iter()
                .filter(|t| !t.is_nan())
                .fold(LARGE, |m, &t| m.min(f64::from(t)));
            if p.b_enc().iter().any(|b| !b.is_finite()) {
                return None;
            }
            let b_max = p
                .b_enc()
                .iter()
                .fold(0.0f64, |m, &b| m.max(f64::from(b).abs()));
            // `!(x < LARGE)` also catches NaN.
            if !(b_max < LARGE && theta_min > -LARGE) {
                return None;
            }
            // The threshold screen reads the norms once its probe has found the data
            // sparse enough (on dense data reading `W_enc` for them cost 3 %).
            let (nw, ndw) = match kind {
                Kind::TopK(_) => {
                    let [norms, ..] =
                        MemStack::new(&mut *scratch).split(plan(p.arch(), p.dims(), rows));
                    col_norms(p, norms)?
                }
                Kind::Threshold => (f64::NAN, f64::NAN),
            };
            Some(Self {
                token,
                kind,
                nw,
                ndw,
                b_max,
                theta_min,
                pays: None,
                scratch,
            })
        }
    }

    /// The bound `m₀` on `|p̃_j − p_j|` for every feature `j` of a row, `p̃` the bf16
    /// screen's and `p` the plain encoder's pre-activation, with `ε = 2⁻²⁴` (`f32`) and
    /// `x̃ = x + δx`, `w̃_j = w_j + δw_j` the bf16 roundings:
    /// - the products change by `Σ_p (x_p δw_pj + δx_p w_pj + δx_p δw_pj)`, at most
    ///   `‖x‖‖δw_j‖ + ‖δx‖‖w_j‖ + ‖δx‖‖δw_j‖` (Cauchy–Schwarz on the actual rounding
    ///   errors: about `2⁻⁸·‖x‖‖w_j‖` for random data, where the worst case of every
    ///   term rounding the same way would need `2⁻⁷`);
    /// - each sum of `d` products (bf16 pairs by `vdpbf16ps`, two roundings per pair;
    ///   f32 FMAs, one per product; one more addition per block of `KC` beyond the
    ///   first) is off by at most `γ = (d + d/KC + 1)ε/(1 − …)` times its terms'
    ///   absolute sum, itself at most `‖x̃‖‖w̃_j‖`; for `d ≤ 2¹⁸` both together stay
    ///   under `2.04·(d + 1)ε`;
    /// - adding the bias rounds each to within `ε(|b| + 1.01·‖x‖‖w_j‖)`;
    /// - `vdpbf16ps` flushes subnormal inputs and results to zero: at most
    ///   `2⁻¹²⁶(d + √d(‖x̃‖ + ‖w̃_j‖))` in all.
    ///
    /// Each term is enlarged (`1 + 2⁻¹⁰`, `2.04ε`, `2⁻²²` for `2ε`, `2⁻¹²⁰`) and the sum
    /// by `1 + 2⁻²⁰`, which covers the `f64` rounding of its evaluation.
    ///
    /// So, for one row (`‖x‖ ≤ nx`, `‖δx‖ ≤ ndx`), a function of a column's norms
    /// (`‖w_j‖ ≤ nw`, `‖δw_j‖ ≤ ndw`): `m(nw, ndw) = (a·ndw + b·nw + c)·(1 + 2⁻²⁰)`,
    /// with, for `tx = nx + ndx`, `s = (2d + 2)·1.02ε`, `f = 2⁻¹²⁰` and
    /// `r = 1 + 2⁻¹⁰`: `a = tx·r + s·tx + f√d` (the products' `‖x‖‖δw‖ + ‖δx‖‖δw‖`,
    /// the sums, the flushing), `b = ndx·r + s·tx + f√d + 2⁻²¹·nx` (`‖δx‖‖w‖`, the
    /// sums, the flushing, the bias's rounding), `c = f(d + √d·tx) + 2⁻²²·b_max`.
    /// `m₀` takes the largest column norms; each feature can also have its own.
    #[derive(Clone, Copy)]
    pub(super) struct RowBound {
        a: f64,
        b: f64,
        c: f64,
    }

    impl RowBound {
        pub(super) fn new(nx: f64, ndx: f64, b_max: f64, d: usize) -> Self {
            let d = d as f64;
            let tx = nx + ndx;
            let (r, s, f) = (
                1.0 + pow2(-10),
                (2.0 * d + 2.0) * pow2(-24) * 1.02,
                pow2(-120),
            );
            let fd = f * libm::sqrt(d);
            RowBound {
                a: tx * r + s * tx + fd,
                b: ndx * r + s * tx + fd + pow2(-21) * nx,
                c: f * d + fd * tx + pow2(-22) * b_max,
            }
        }

        /// The bound for a column with `‖w‖ ≤ nw`, `‖δw‖ ≤ ndw`.
        #[inline(always)]
        pub(super) fn at(&self, nw: f64, ndw: f64) -> f64 {
            (self.a * ndw + self.b * nw + self.c) * (1.0 + pow2(-20))
        }
    }

    /// `(Σ x², Σ (bf16(x) − x)²)` of a row, in `f64` (8 lanes, then across them: the
    /// products are exact in `f64`, and the sums' rounding, under `d·2⁻⁵³` relative,
    /// is far inside the `2⁻⁴⁰` the caller adds).
    fn row_norms(x: &[f32]) -> (f64, f64) {
        const L: usize = 8;
        crate::kernels::isa::vectorized(
            #[inline(always)]
            |_| {
                let (mut s, mut r) = ([0.0f64; L], [0.0f64; L]);
                let mut chunks = x.chunks_exact(L);
                let mut add = |q: usize, v: f32| {
                    let e = f64::from(round_bf16(v)) - f64::from(v);
                    (s[q], r[q]) = (s[q] + f64::from(v) * f64::from(v), r[q] + e * e);
                };
                for c in &mut chunks {
                    for (q, &v) in c.iter().enumerate() {
                        add(q, v);
                    }
                }
                for (q, &v) in chunks.remainder().iter().enumerate() {
                    add(q, v);
                }
                (s.iter().sum(), r.iter().sum())
            },
        )
    }

    /// `x` rounded to bf16 as the screen's product rounds it (to nearest, ties to even),
    /// widened back; for finite `x` the same as `bf16_to_f32(f32_to_bf16(x))` (tested),
    /// without its NaN branch, so loops over it vectorize. (NaN and infinite inputs give
    /// a NaN or infinite residual `round_bf16(x) − x` either way, which the callers
    /// reject.)
    #[inline(always)]
    pub(super) fn round_bf16(x: f32) -> f32 {
        let b = x.to_bits();
        f32::from_bits(b.wrapping_add(0x7FFF + ((b >> 16) & 1)) & 0xFFFF_0000)
    }

    /// The weights' part of the bound: each column's `‖w_j‖` and `‖bf16(w_j) − w_j‖`
    /// (rounded up to `f32`) into `norms` (`2h`: all the first, then all the second)
    /// and their largest values, if finite and below [`LARGE`].
    fn col_norms(p: &Params<'_>, norms: &mut [f32]) -> Option<(f64, f64)> {
        let (nw, ndw) = norms.split_at_mut(p.dims().h);
        let (nw, ndw) = p.encoder().col_norms(round_bf16, nw, ndw)?;
        (nw < LARGE).then_some((nw, ndw))
    }

    /// The row's [`RowBound`] and `m₀ ≥ |p̃_j − p_j|` for every feature of the row `x`,
    /// or `None` if the row is not finite or too large for it.
    fn row_bound(x: &[f32], (nw, ndw, b_max): (f64, f64, f64)) -> Option<(RowBound, f64)> {
        let (sx, sdx) = row_norms(x);
        let up = 1.0 + pow2(-40);
        let (nx, ndx) = (libm::sqrt(sx) * up, libm::sqrt(sdx) * up);
        if !(nx < LARGE && ndx < LARGE && nx * nw < LARGE) {
            return None;
        }
        let rb = RowBound::new(nx, ndx, b_max, x.len());
        Some((rb, rb.at(nw, ndw)))
    }

    /// An `f32` below `v` (the largest one below it, but for `v` beyond the `f32` range).
    fn f32_below(v: f64) -> f32 {
        let f = v as f32;
        if f64::from(f) >= v { next_down(f) } else { f }
    }

    /// Rows the threshold screen's probe encodes (spread over the first block): the
    /// most the product takes unpacked.
    const PROBE_ROWS: usize = crate::kernels::gemm::SMALL_M;

    /// Features the threshold screen's probe encodes (the first ones).
    const PROBE_FEATURES: usize = 512;

    impl Screen<'_> {
        /// The codes of one block (`xin` `rows×d`, the encoder's input; `codes`
        /// `rows×h`, written), equal bit for bit to the plain encoder's, through the
        /// screen described in the module documentation. `Ok(false)` if the block must
        /// take the plain path instead (`codes` then holds scratch values to overwrite).
        ///
        /// # Errors
        /// As the plain encoder's product (shape errors only).
        pub(crate) fn encode_block(
            &mut self,
            p: &Params<'_>,
            xin: &[f32],
            rows: usize,
            codes: &mut [f32],
            sel: &mut [f32],
            pack: &mut [f32],
        ) -> Result<bool> {
            let (arch, dims) = (p.arch(), p.dims());
            let Dims { d, h } = dims;
            if screened(arch, dims, rows) != Some(self.kind) || self.pays == Some(false) {
                return Ok(false);
            }
            let c = self.kind.slots(h);
            let pays = if self.kind == Kind::Threshold && self.pays.is_none() {
                self.pays = Some(false);
                Some(self.probe(p, xin, rows, codes, pack)?)
            } else {
                None
            };
            let [norms, counts, cols, out, acc, bt, idx, ov, ov_x, ov_codes] =
                MemStack::new(&mut *self.scratch).split(plan(arch, dims, rows));
            match pays {
                Some(false) => return Ok(false),
                Some(true) => {
                    let Some((nw, ndw)) = col_norms(p, norms) else {
                        return Ok(false);
                    };
                    (self.nw, self.ndw, self.pays) = (nw, ndw, Some(true));
                }
                None => {}
            }
            let weights = (self.nw, self.ndw, self.b_max);
            let (col_nw, col_ndw) = norms.split_at(h);
            let [counts, cols, idx, ov] =
                [counts, cols, idx, ov].map(bytemuck::cast_slice_mut::<f32, u32>);
            let mut n_ov = 0;
            let xm = MatRef::row_major("x", xin, rows, d)?;
            let cm = MatMut::row_major("codes", codes, rows, h)?;
            let b = p.b_enc();
            // `p̃ = S̃ + b`, the bias added as each tile is stored.
            gemm_bf16_dot(1.0, xm, p.encoder(), 0.0, cm, Epilogue::Bias(b), pack)?;
            let theta = p.threshold();
            for (i, x) in xin.chunks_exact(d).enumerate() {
                // The candidate passes fetch the next row ahead: the rows have left the
                // cache since the product stored them.
                let row = &codes[i * h..(i + 1) * h];
                let next = codes.get((i + 1) * h..(i + 2) * h).unwrap_or(&[]);
                let Some((rb, m0)) = row_bound(x, weights) else {
                    return Ok(false);
                };
                // Feature `j`'s own bound, `≤ m₀`.
                let m_of = |j: u32| {
                    let j = j as usize;
                    rb.at(f64::from(col_nw[j]), f64::from(col_ndw[j]))
                };
                let list = &mut cols[i * c..(i + 1) * c];
                let n = match self.kind {
                    Kind::TopK(k) => {
                        // `below(v)`: below `v − 2m₀` (rounded down to f32), non-decreasing.
                        let below = |v: f32| {
                            f32_below(
                                f64::from(v)
                                    - 2.0 * m0 * (1.0 + pow2(-20))
                                    - pow2(-40) * f64::from(v).abs(),
                            )
                        };
                        let cand: &mut [u32] = bytemuck::cast_slice_mut(&mut sel[..h]);
                        match kth_and_above((row, next), k, below, cand, idx) {
                            Some((sk, n)) if sk.is_finite() && n >= k => {
                                top_candidates(row, sk, m0, &cand[..n], m_of, list)
                            }
                            _ => None,
                        }
                    }
                    Kind::Threshold => {
                        let t = (theta, self.theta_min);
                        above_thresholds((row, next), t, (m0, m_of), idx, list)
                    }
                };
                counts[i] = match n {
                    Some(n) => n as u32,
                    // Too many candidates: the row is encoded exactly below.
                    None if n_ov < ov.len() => {
                        ov[n_ov] = i as u32;
                        n_ov += 1;
                        0
                    }
                    None => {
                        // This data is too dense to screen: the rest of the call (for
                        // ReLU and JumpReLU) takes the plain path.
                        if self.kind == Kind::Threshold {
                            self.pays = Some(false);
                        }
                        return Ok(false);
                    }
                };
            }
            let counts = &counts[..rows];
            if !pad((cols, counts, c)) {
                return Ok(false);
            }
            let lists = (&*cols, counts, c);
            if !sampled(self.token.avx512(), xm, p.encoder(), lists, out, acc, bt) {
                return Ok(false);
            }
            for (i, row) in codes.chunks_exact_mut(h).enumerate() {
                let n = counts[i] as usize;
                let (js, exact) = (&cols[i * c..i * c + n], &out[i * c..i * c + n]);
                row.fill(0.0);
                match (self.kind, theta) {
                    // An overflowing row (encoded below).
                    (Kind::TopK(_), _) if n == 0 => {}
                    (Kind::TopK(k), _) => {
                        // The plain encoder's store: `relu(s + b_j)`; ReLU comes after
                        // the selection here, which keeps the same features (see
                        // `encode_block` in `core`). The row's values go to `sel` (its
                        // first `n` slots), their keys after them (`2n ≤ 2·cap(k) ≤ h`,
                        // see `screens`).
                        let (vals, keys) = sel.split_at_mut(n);
                        let keys: &mut [u32] = bytemuck::cast_slice_mut(&mut keys[..n]);
                        for (((v, key), &j), &e) in
                            vals.iter_mut().zip(keys.iter_mut()).zip(js).zip(exact)
                        {
                            *v = e + b[j as usize];
                            *key = ukey(*v);
                        }
                        let mut keep = Keep::largest(keys, k);
                        for (&v, &j) in vals.iter().zip(js) {
                            if keep.next(ukey(v)) {
                                row[j as usize] = vector::relu(v);
                            }
                        }
                    }
                    // The plain encoder's store `relu(s + b_j)`, then JumpReLU's
                    // threshold on it; every other feature's `p_j` is below its
                    // threshold, where both give `+0`.
                    (Kind::Threshold, _) => {
                        for (&j, &e) in js.iter().zip(exact) {
                            let j = j as usize;
                            let v = vector::relu(e + b[j]);
                            row[j] = theta.map_or(v, |th| jumprelu(v, th[j]));
                        }
                    }
                }
            }
            if n_ov > 0 {
                let ov_rows = (&ov[..n_ov], ov_x, ov_codes);
                if !overflow_rows(p, xin, ov_rows, codes, sel, pack)? {
                    return Ok(false);
                }
            }
            #[cfg(test)]
            super::SCREENED.with(|c| c.set(c.get() + 1));
            Ok(true)
        }

        /// Whether screening pays on this data: [`PROBE_ROWS`] rows spread over the
        /// block, encoded in `f32` on the first [`PROBE_FEATURES`] features by the
        /// unpacked product, have on average at most half a list's room of candidates
        /// (scaled to all `h` features). Writes the start of `codes` (scratch here).
        fn probe(
            &self,
            p: &Params<'_>,
            xin: &[f32],
            rows: usize,
            codes: &mut [f32],
            pack: &mut [f32],
        ) -> Result<bool> {
            let Dims { d, h } = p.dims();
            let (r, step) = (PROBE_ROWS.min(rows), rows / PROBE_ROWS.min(rows));
            let f = PROBE_FEATURES.min(h);
            let xm = MatRef::new("x", xin, r, d, step * d, 1)?;
            let cm = MatMut::row_major("codes", &mut codes[..r * f], r, f)?;
            let (b, th) = (&p.b_enc()[..f], p.threshold().map(|t| &t[..f]));
            let wm = p.encoder().col_range(0, f)?;
            gemm(1.0, xm, wm, 0.0, cm, Epilogue::Bias(b), pack)?;
            // The bound with the probed features' norms.
            let Some((nw, ndw)) = wm.max_col_norms(round_bf16).filter(|n| n.0 < LARGE) else {
                return Ok(false);
            };
            let weights = (nw, ndw, self.b_max);
            let mut total = 0;
            for (q, row) in codes[..r * f].chunks_exact(f).enumerate() {
                let x = &xin[q * step * d..][..d];
                let Some((_, m0)) = row_bound(x, weights) else {
                    return Ok(false);
                };
                total += match th {
                    Some(th) => row
                        .iter()
                        .zip(th)
                        .filter(|&(&v, &t)| f64::from(v) + m0 >= f64::from(t))
                        .count(),
                    None => row.iter().filter(|&&v| f64::from(v) + m0 >= 0.0).count(),
                };
            }
            Ok(total * 2 * h <= r * f * self.kind.slots(h))
        }
    }

    /// The codes of the rows `ov` of the block (too many candidates for their lists),
    /// exactly as the plain encoder computes them: its packed product on just those
    /// rows (with the last repeated up to `SMALL_M + 1` rows, so that it packs: the
    /// packed kernels' entries do not depend on the number of rows), then its
    /// activation, into their rows of `codes`. `ov_x` and `ov_codes` hold
    /// `ov_x.len() / d ≥ max(ov.len(), SMALL_M + 1)` rows. `Ok(false)` if the buffers
    /// are too short for that.
    fn overflow_rows(
        p: &Params<'_>,
        xin: &[f32],
        (ov, ov_x, ov_codes): (&[u32], &mut [f32], &mut [f32]),
        codes: &mut [f32],
        sel: &mut [f32],
        pack: &mut [f32],
    ) -> Result<bool> {
        let Dims { d, h } = p.dims();
        let r = ov.len().max(SMALL_M + 1);
        if ov_x.len() < r * d || ov_codes.len() < r * h || pack.len() < pack_len(r, h, d) {
            return Ok(false);
        }
        for (q, dst) in ov_x.chunks_exact_mut(d).take(r).enumerate() {
            let i = ov[q.min(ov.len() - 1)] as usize;
            dst.copy_from_slice(&xin[i * d..(i + 1) * d]);
        }
        let (xm, cm) = (
            MatRef::row_major("x", &ov_x[..r * d], r, d)?,
            MatMut::row_major("codes", &mut ov_codes[..r * h], r, h)?,
        );
        gemm(
            1.0,
            xm,
            p.encoder(),
            0.0,
            cm,
            Epilogue::BiasRelu(p.b_enc()),
            pack,
        )?;
        let got = &mut ov_codes[..ov.len() * h];
        let th = p.threshold().unwrap_or(&[]);
        apply_rows(p.arch().activation, got, h, th, sel);
        for (&i, src) in ov.iter().zip(got.chunks_exact(h)) {
            let i = i as usize;
            codes[i * h..(i + 1) * h].copy_from_slice(src);
        }
        Ok(true)
    }

    /// TopK's candidates of one row of `p̃` into `list` (ascending), their number,
    /// narrowed from `cand` (those of the row-wide bound `m₀`: `p̃_j ≥ S_k − 2m₀`,
    /// ascending) by each feature's own bound `m_j = m_of(j) ≤ m₀`: the `k`-th largest
    /// `p` is at least `S_k − m₀`, so any feature the plain encoder keeps has
    /// `p̃_j + m_j ≥ p_j ≥ S_k − m₀`. `None` if more than fit `list`.
    ///
    /// (The `k`-th largest of the lower bounds `p̃_j − m_j` would be a tighter floor
    /// than `S_k − m₀`, but selecting it cost more than the candidates it saved: the
    /// random models' TopK screen went from 1.26× to 1.13× at (384, 3072).)
    fn top_candidates(
        row: &[f32],
        s_k: f32,
        m0: f64,
        cand: &[u32],
        m_of: impl Fn(u32) -> f64,
        list: &mut [u32],
    ) -> Option<usize> {
        let s_k = f64::from(s_k);
        let floor = s_k - m0 * (1.0 + pow2(-20)) - slack(s_k);
        let mut n = 0;
        for &j in cand {
            let v = f64::from(row[j as usize]);
            if v + m_of(j) + slack(v) >= floor {
                *list.get_mut(n)? = j;
                n += 1;
            }
        }
        Some(n)
    }

    /// The `f64` rounding allowance of comparisons between `v` and values near it.
    #[inline(always)]
    fn slack(v: f64) -> f64 {
        pow2(-40) * v.abs()
    }

    /// The threshold screen's candidates of one row of `p̃` into `list` (ascending),
    /// their number: every feature with `p̃_j ≥ θ_j − m_j` (`θ = 0` for ReLU, `theta`
    /// for JumpReLU; `m_j = m_of(j) ≤ m₀` the feature's own bound), so every feature
    /// whose exact `p_j` can reach its threshold. First every `p̃_j ≥ θ_min − m₀`
    /// (vectorized, into `idx`, `h` slots), then each against its own `θ_j − m_j` in
    /// `f64`. `None` if more than fit `list`. The pass fetches `next` into the cache
    /// meanwhile.
    fn above_thresholds(
        (row, next): (&[f32], &[f32]),
        (theta, theta_min): (Option<&[f32]>, f64),
        (m0, m_of): (f64, impl Fn(u32) -> f64),
        idx: &mut [u32],
        list: &mut [u32],
    ) -> Option<usize> {
        // `m₀` enlarged past this function's own `f64` rounding.
        let m = m0 * (1.0 + pow2(-20));
        let t0 = f32_below(theta_min - m - slack(theta_min));
        let c = greater_than((row, next), t0, idx);
        let mut n = 0;
        for &j in &idx[..c] {
            // NaN and `+∞` thresholds keep nothing, as in `jumprelu_row`.
            let t = theta.map_or(0.0, |th| f64::from(th[j as usize]));
            let v = f64::from(row[j as usize]);
            if v + m_of(j) + slack(v) + slack(t) >= t {
                *list.get_mut(n)? = j;
                n += 1;
            }
        }
        Some(n)
    }

    /// The next `f32` below `x` (finite `x`).
    fn next_down(x: f32) -> f32 {
        if x == 0.0 {
            -f32::from_bits(1)
        } else if x > 0.0 {
            f32::from_bits(x.to_bits() - 1)
        } else {
            f32::from_bits(x.to_bits() + 1)
        }
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
std::thread_local! {
    /// Blocks the screen encoded on this thread (tests check that it ran where it
    /// should). Per thread: the test harness runs tests in parallel, and a shared
    /// count made `assert_eq!(ran, 0)` fail when another test's screen ran meanwhile.
    pub(crate) static SCREENED: core::cell::Cell<usize> = const { core::cell::Cell::new(0) };
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;
    use crate::kernels::gemm::{Epilogue, MatMut, MatRef, SMALL_M, gemm, pack_len, test_fill};
    use crate::kernels::half::{bf16_to_f32, f32_to_bf16};
    use crate::model::activation::apply_rows;
    use crate::model::core::{Encoder, encode, encode_scratch_len};
    use crate::model::params::{Params, Penalty, Weights};
    use std::vec;
    use std::vec::Vec;

    /// Whether this CPU runs the screen (AVX512_BF16 at a paying rate, AVX-512 kernel).
    fn runs_here() -> bool {
        crate::kernels::isa::x86::avx512bf16().is_some_and(|t| t.pays())
            && crate::kernels::gemm::selected() == crate::kernels::gemm::Kernel::Avx512
    }

    /// The plain encoder, spelled out: `relu(x̄·W_enc + b_enc)` by the packed GEMM's
    /// fused store, then the activation on each row (TopK, JumpReLU's thresholds).
    fn plain(p: &Params<'_>, x: &[f32], n: usize) -> Vec<f32> {
        let Dims { d, h } = p.dims();
        let xin: Vec<f32> = match p.b_dec().filter(|_| p.arch().centers_input()) {
            Some(bd) => x
                .chunks_exact(d)
                .flat_map(|r| r.iter().zip(bd).map(|(a, b)| a - b))
                .collect(),
            None => x.to_vec(),
        };
        let mut c = vec![0.0f32; n * h];
        let mut pack = vec![0.0f32; pack_len(n, h, d)];
        gemm(
            1.0,
            MatRef::row_major("x", &xin, n, d).unwrap(),
            p.encoder(),
            0.0,
            MatMut::row_major("c", &mut c, n, h).unwrap(),
            Epilogue::BiasRelu(p.b_enc()),
            &mut pack,
        )
        .unwrap();
        let mut sel = vec![0.0f32; h];
        let th = p.threshold().unwrap_or(&[]);
        apply_rows(p.arch().activation, &mut c, h, th, &mut sel);
        c
    }

    /// `encode` (screened where it runs) against [`plain`], bit for bit, the whole
    /// batch in one call and again in blocks; returns how many blocks the screen
    /// encoded in each.
    fn check(p: Params<'_>, x: &[f32], n: usize, what: &str) -> [usize; 2] {
        let h = p.dims().h;
        let want = plain(&p, x, n);
        let mut got = vec![f32::NAN; n * h];
        let mut scratch = vec![0.0f32; encode_scratch_len(p.arch(), p.dims(), n)];
        let before = SCREENED.with(core::cell::Cell::get);
        encode(p, x, n, &mut got, &mut scratch).unwrap();
        let ran = SCREENED.with(core::cell::Cell::get) - before;
        let same = |got: &[f32], how: &str| {
            for (q, (a, b)) in got.iter().zip(&want).enumerate() {
                let (row, j) = (q / h, q % h);
                assert_eq!(
                    a.to_bits(),
                    b.to_bits(),
                    "{what}{how}: row {row} feature {j}"
                );
            }
        };
        same(&got, "");
        // The same through one `Encoder` in blocks of about a third of the rows, none
        // of at most `SMALL_M` rows (those run unpacked, in another summation order,
        // screen or not).
        let mut rb = (n / 3).max(SMALL_M + 1);
        while !n.is_multiple_of(rb) && n % rb <= SMALL_M {
            rb += 1;
        }
        let d = p.dims().d;
        let mut s2 = vec![0.0f32; encode_scratch_len(p.arch(), p.dims(), rb)];
        let mut enc = Encoder::new(p, rb, &mut s2).unwrap();
        got.fill(f32::NAN);
        for r0 in (0..n).step_by(rb) {
            let r = rb.min(n - r0);
            let (xb, cb) = (&x[r0 * d..(r0 + r) * d], &mut got[r0 * h..(r0 + r) * h]);
            enc.encode(xb, r, cb).unwrap();
        }
        let in_blocks = SCREENED.with(core::cell::Cell::get) - before - ran;
        same(&got, ", in blocks");
        [ran, in_blocks]
    }

    /// The shapes the screen takes: those measured to pay, and none where a row's
    /// candidates would not fit the selection buffer.
    #[test]
    fn screens_the_shapes_that_pay() {
        let dims = |d, h| Dims { d, h };
        assert!(screens(32, dims(384, 3072)));
        assert!(screens(32, dims(768, 16384)));
        assert!(screens(1, dims(128, 160)));
        assert!(!screens(1, dims(128, 159)), "2·cap(1) = 160 slots");
        assert!(!screens(32, dims(256, 2048)), "h < 80k");
        assert!(!screens(64, dims(384, 3072)), "h < 80k");
        assert!(!screens(16, dims(64, 8192)), "d < 128");
        assert!(!screens(0, dims(384, 3072)) && !screens(65, dims(768, 65536)));
        for k in 1..=64 {
            let h = (80 * k).max(2 * cap(k));
            assert!(screens(k, dims(128, h)) && !screens(k, dims(128, h - 1)));
        }
    }

    fn topk_arch(k: usize, tied: bool) -> Arch {
        Arch {
            weights: if tied {
                Weights::Tied
            } else {
                Weights::Untied { center_input: true }
            },
            activation: Activation::TopK { k },
            penalty: Penalty::None,
        }
    }

    /// Random SAELens-like models: the codes are the plain encoder's bit for bit, with
    /// `d` below and above `KC`, tied and untied, and the screen ran on every one
    /// where the CPU runs it.
    #[test]
    // The screen's x86 kernels never run under Miri, and these shapes take minutes there.
    #[cfg_attr(miri, ignore)]
    fn screened_codes_are_the_plain_bits() {
        // Every case passes `screens`, so the screen runs.
        let cases = [
            (128, 2048, 8, 40),
            (384, 3072, 8, 70),
            (800, 2048, 8, 24),
            (128, 640, 1, 9),
        ];
        for (ci, &(d, h, k, n)) in cases.iter().enumerate() {
            for tied in [false, true] {
                let arch = topk_arch(k, tied);
                let dims = Dims { d, h };
                let s = 1.0 / (d as f32).sqrt();
                let w: Vec<f32> = test_fill(d * h, 10 + ci as u64)
                    .iter()
                    .map(|v| v * s * 1.7)
                    .collect();
                let b: Vec<f32> = test_fill(h, 20 + ci as u64)
                    .iter()
                    .map(|v| v * 0.1 - 0.05)
                    .collect();
                let wd = test_fill(h * d, 30 + ci as u64);
                let bd = test_fill(d, 40 + ci as u64);
                let x: Vec<f32> = test_fill(n * d, 50 + ci as u64)
                    .iter()
                    .map(|v| v * 2.0)
                    .collect();
                let p = if tied {
                    Params::new(arch, dims, [&w[..], &b[..]]).unwrap()
                } else {
                    Params::new(arch, dims, [&w[..], &b[..], &wd[..], &bd[..]]).unwrap()
                };
                let [ran, _] = check(p, &x, n, &std::format!("case {ci} tied={tied}"));
                if runs_here() {
                    assert!(ran > 0, "case {ci} tied={tied}: the screen did not run");
                }
            }
        }
    }

    /// Exact ties (duplicated features), rows with fewer than `k` positive
    /// pre-activations, zeros: still the plain bits.
    #[test]
    // The screen's x86 kernels never run under Miri, and these shapes take minutes there.
    #[cfg_attr(miri, ignore)]
    fn screened_ties_and_negatives() {
        let (d, h, k, n) = (128, 1024, 4, 16);
        let dims = Dims { d, h };
        let mut w = test_fill(d * h, 3);
        // Features 2q and 2q + 1 identical (W_enc is d×h row-major), same bias.
        for p in 0..d {
            for q in 0..h / 2 {
                w[p * h + 2 * q + 1] = w[p * h + 2 * q];
            }
        }
        let mut b: Vec<f32> = test_fill(h, 4).iter().map(|v| v * 0.5).collect();
        for q in 0..h / 2 {
            b[2 * q + 1] = b[2 * q];
        }
        let (wd, bd) = (test_fill(h * d, 5), vec![0.0f32; d]);
        let mut x = test_fill(n * d, 6);
        x[..d].fill(0.0); // row 0: codes = relu(b)
        let p = Params::new(
            topk_arch(k, false),
            dims,
            [&w[..], &b[..], &wd[..], &bd[..]],
        )
        .unwrap();
        let [ran, _] = check(p, &x, n, "ties");
        // Mostly negative pre-activations: fewer than k positive in most rows.
        let bneg: Vec<f32> = b.iter().map(|v| v - 6.0).collect();
        let p = Params::new(
            topk_arch(k, false),
            dims,
            [&w[..], &bneg[..], &wd[..], &bd[..]],
        )
        .unwrap();
        let [ran2, _] = check(p, &x, n, "negative");
        if runs_here() {
            assert!(ran > 0 && ran2 > 0);
        }
    }

    /// The fallbacks: a NaN or huge input, an infinite weight, and all features tied
    /// (more candidates than `cap`) take the plain path, with its bits.
    #[test]
    // The screen's x86 kernels never run under Miri, and these shapes take minutes there.
    #[cfg_attr(miri, ignore)]
    fn screened_fallbacks_give_the_plain_bits() {
        let (d, h, k, n) = (128, 1024, 4, 12);
        let dims = Dims { d, h };
        let w = test_fill(d * h, 7);
        let b = test_fill(h, 8);
        let (wd, bd) = (test_fill(h * d, 9), test_fill(d, 10));
        let mut x = test_fill(n * d, 11);
        x[3 * d + 5] = f32::NAN;
        let p = Params::new(
            topk_arch(k, false),
            dims,
            [&w[..], &b[..], &wd[..], &bd[..]],
        )
        .unwrap();
        assert_eq!(check(p, &x, n, "NaN input")[0], 0);
        x[3 * d + 5] = 3e37;
        assert_eq!(check(p, &x, n, "huge input")[0], 0);
        x[3 * d + 5] = 0.5;
        let mut winf = w.clone();
        winf[77] = f32::INFINITY;
        let p2 = Params::new(
            topk_arch(k, false),
            dims,
            [&winf[..], &b[..], &wd[..], &bd[..]],
        )
        .unwrap();
        assert_eq!(check(p2, &x, n, "infinite weight")[0], 0);
        // Every feature the same: every one is a candidate.
        let wsame: Vec<f32> = (0..d * h).map(|q| w[(q / h) * h]).collect();
        let bsame = vec![0.25f32; h];
        let p3 = Params::new(
            topk_arch(k, false),
            dims,
            [&wsame[..], &bsame[..], &wd[..], &bd[..]],
        )
        .unwrap();
        // Each row's candidates overflow its list; the block's rows are encoded
        // exactly by the plain product on those rows (`OVERFLOW_ROWS` of them at most).
        let all_tied = check(p3, &x, n, "all tied");
        // Beyond `OVERFLOW_ROWS` such rows in one block, the block falls back (the
        // blocks of a third of the rows still fit).
        let n2 = OVERFLOW_ROWS + 8;
        let x2 = test_fill(n2 * d, 12);
        let many = check(p3, &x2, n2, "all tied, many rows");
        // And the unchanged model is screened (so the zeros above are fallbacks).
        let [ran, _] = check(p, &x, n, "finite");
        if runs_here() {
            assert!(ran > 0 && all_tied == [1, 2] && many == [0, 3]);
        }
    }

    /// A sparse ReLU or JumpReLU model as trained SAEs are: random `W_enc` with
    /// pre-activations of about unit spread, `b_enc ≈ −2.3` so that about 1–2 % of
    /// them are positive.
    fn sparse_model(d: usize, h: usize, seed: u64) -> [Vec<f32>; 5] {
        let s = 1.7 / (d as f32).sqrt();
        let w: Vec<f32> = test_fill(d * h, seed).iter().map(|v| v * s).collect();
        let b: Vec<f32> = test_fill(h, seed + 1)
            .iter()
            .map(|v| v * 0.2 - 2.3)
            .collect();
        // JumpReLU thresholds in [0, 0.5], with the odd ones out: negative, zero, NaN,
        // infinite.
        let mut th: Vec<f32> = test_fill(h, seed + 2)
            .iter()
            .map(|v| v * 0.25 + 0.25)
            .collect();
        th[..5].copy_from_slice(&[-0.3, 0.0, f32::NAN, f32::INFINITY, 1e-30]);
        [w, b, test_fill(h * d, seed + 3), test_fill(d, seed + 4), th]
    }

    fn threshold_arch(jump: bool, tied: bool) -> Arch {
        let mut a = if jump {
            Arch::jumprelu()
        } else {
            Arch::standard()
        };
        if tied {
            a.weights = Weights::Tied;
        }
        a
    }

    /// ReLU and JumpReLU: the screened codes are the plain bits, tied and untied, `d`
    /// below and above `KC`, and the screen ran on every sparse case where the CPU
    /// runs it.
    #[test]
    // The screen's x86 kernels never run under Miri, and these shapes take minutes there.
    #[cfg_attr(miri, ignore)]
    fn threshold_screened_codes_are_the_plain_bits() {
        for (ci, &(d, h, n)) in [(128, 2048, 40), (800, 2048, 24), (384, 3072, 70)]
            .iter()
            .enumerate()
        {
            let [w, b, wd, bd, th] = sparse_model(d, h, 60 + 10 * ci as u64);
            let x: Vec<f32> = test_fill(n * d, 61 + ci as u64)
                .iter()
                .map(|v| v * 2.0)
                .collect();
            for jump in [false, true] {
                for tied in [false, true] {
                    let arch = threshold_arch(jump, tied);
                    let dims = Dims { d, h };
                    let p = match (jump, tied) {
                        (false, true) => Params::new(arch, dims, [&w[..], &b[..]]),
                        (true, true) => Params::new(arch, dims, [&w[..], &b[..], &th[..]]),
                        (false, false) => Params::new(arch, dims, [&w[..], &b, &wd, &bd]),
                        (true, false) => Params::new(arch, dims, [&w[..], &b, &wd, &bd, &th]),
                    }
                    .unwrap();
                    let what = std::format!("case {ci} jump={jump} tied={tied}");
                    let [ran, _] = check(p, &x, n, &what);
                    if runs_here() {
                        assert!(ran > 0, "{what}: the screen did not run");
                    }
                }
            }
        }
    }

    /// Dense data (unit-spread pre-activations around 0) fails the probe; dense rows
    /// after it overflow their lists, which the block takes up to `OVERFLOW_ROWS`
    /// rows and falls back beyond: always the plain bits.
    #[test]
    // The screen's x86 kernels never run under Miri, and these shapes take minutes there.
    #[cfg_attr(miri, ignore)]
    fn threshold_screen_steps_aside_for_dense_data() {
        let (d, h, n) = (128, 2048, 48);
        let dims = Dims { d, h };
        let [w, b, wd, bd, _] = sparse_model(d, h, 90);
        let mut x: Vec<f32> = test_fill(n * d, 91).iter().map(|v| v * 2.0).collect();
        let p = Params::new(Arch::standard(), dims, [&w[..], &b[..], &wd[..], &bd[..]]).unwrap();
        let sparse = check(p, &x, n, "sparse");
        // Scaled up 60×, about half of a row's features are positive, far beyond its
        // list's room. Row 1 is no probe row (they are 0, 12, 24, 36; and 0, 4, 8, 12
        // in the blocks of 16).
        let dense_row =
            |x: &mut [f32], i: usize| x[i * d..(i + 1) * d].iter_mut().for_each(|v| *v *= 60.0);
        dense_row(&mut x, 1);
        let one_dense = check(p, &x, n, "one dense row");
        // All rows but the probe rows dense: beyond `OVERFLOW_ROWS`.
        for i in (2..n).filter(|i| i % 4 != 0) {
            dense_row(&mut x, i);
        }
        let many_dense = check(p, &x, n, "many dense rows");
        let b0 = vec![0.0f32; h];
        let dense =
            Params::new(Arch::standard(), dims, [&w[..], &b0[..], &wd[..], &bd[..]]).unwrap();
        assert_eq!(check(dense, &x, n, "dense"), [0, 0]);
        if runs_here() {
            assert_eq!(sparse, [1, 3], "the sparse model was not screened");
            assert_eq!(one_dense, [1, 3]);
            assert_eq!(many_dense[0], 0);
        }
    }

    /// `round_bf16` is the packing's rounding, `bf16_to_f32(f32_to_bf16(x))`, for
    /// every finite `x` tried: each exponent, ties both ways, subnormals, the largest
    /// values (which round to infinity).
    #[test]
    fn round_bf16_is_the_packings_rounding() {
        use crate::kernels::half::{bf16_to_f32, f32_to_bf16};
        let mut next = 0x9E37_79B9u32;
        let mut bits: Vec<u32> = (0..255u32)
            .flat_map(|e| [0u32, 0x8000, 0x7FFF, 0x1_8000, 0x7F_FFFF].map(|m| e << 23 | m))
            .collect();
        for _ in 0..if cfg!(miri) { 1000 } else { 100_000 } {
            next ^= next << 13;
            next ^= next >> 17;
            next ^= next << 5;
            bits.push(next);
        }
        for b in bits {
            for v in [f32::from_bits(b), -f32::from_bits(b)] {
                if v.is_finite() {
                    let want = bf16_to_f32(f32_to_bf16(v));
                    assert_eq!(x86::round_bf16(v).to_bits(), want.to_bits(), "{v:e}");
                }
            }
        }
    }

    /// The bound holds with little to spare where Cauchy–Schwarz is tight and every
    /// bf16 rounding goes the same way: `x` and `w` constant, just below a bf16
    /// rounding midpoint, so each product term loses almost `2u` of its value.
    #[test]
    // The screen's x86 kernels never run under Miri, and these shapes take minutes there.
    #[cfg_attr(miri, ignore)]
    fn bound_is_sound_and_nearly_tight() {
        let Some(t) = crate::kernels::isa::x86::avx512bf16() else {
            std::eprintln!("no AVX512_BF16: the bound's worst case not measured");
            return;
        };
        let _ = t;
        let (d, h, n) = (256, 64, 8);
        // 1 + 2⁻⁸ − 2⁻²⁰ rounds down to 1 in bf16: a relative error of almost 2⁻⁸.
        let v = 1.0f32 + 2f32.powi(-8) - 2f32.powi(-20);
        assert_eq!(bf16_to_f32(f32_to_bf16(v)), 1.0);
        let (x, w) = (vec![v; n * d], vec![v; d * h]);
        let mut exact = vec![0.0f32; n * h];
        let mut approx = vec![0.0f32; n * h];
        let mut pack = vec![0.0f32; pack_len(n, h, d)];
        let xm = MatRef::row_major("x", &x, n, d).unwrap();
        let wm = MatRef::row_major("w", &w, d, h).unwrap();
        let cm = |c| MatMut::row_major("c", c, n, h).unwrap();
        gemm(1.0, xm, wm, 0.0, cm(&mut exact), Epilogue::None, &mut pack).unwrap();
        crate::kernels::gemm::gemm_bf16_dot(
            1.0,
            xm,
            wm,
            0.0,
            cm(&mut approx),
            Epilogue::None,
            &mut pack,
        )
        .unwrap();
        // Every column and every input row is the same vector here.
        let (nw, ndw) = wm.max_col_norms(|v| bf16_to_f32(f32_to_bf16(v))).unwrap();
        let m0 = x86::RowBound::new(nw, ndw, 0.0, d).at(nw, ndw);
        let err = exact
            .iter()
            .zip(&approx)
            .map(|(a, b)| f64::from(a - b).abs())
            .fold(0.0, f64::max);
        assert!(err <= m0, "error {err} beyond the bound {m0}");
        assert!(
            err >= 0.95 * m0,
            "error {err} far below the bound {m0}: the case is not the worst"
        );
    }
}
