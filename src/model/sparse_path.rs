//! The sparse path: decoder and backward products over the active codes only, exact
//! and in fixed memory, for every architecture and activation.
//!
//! After the encoder (a dense GEMM) most codes of a row are exactly zero (ReLU with a
//! sparsity penalty, TopK with `k ≪ h`, JumpReLU). A zero code contributes nothing to
//! `X̂ = C·W_dec` nor to `Cᵀ·G`, and its code gradient is masked to zero, so it
//! contributes nothing to the encoder gradient or `b_enc` either. The sparse path
//! works on the active features `A(r) = { j : c[r, j] > 0 }` of each row only (NaN
//! codes are kept so that they propagate as on the dense path). With `w_j` the
//! penalty weight (1 for L1, `‖W_dec,j‖` for the decoder-norm penalty, 0 for none),
//! `x̄_r = x_r − b_dec` with input centring (else `x_r`):
//!
//! ```text
//! x̂_r        = Σ_{j∈A(r)} c[r,j]·W_dec[j] (+ b_dec)           (gather rows, SIMD axpy)
//! g_r        = (2/n)·(x̂_r − x_r)
//! dpre[r,j]  = g_r·W_dec[j] + (α/n)·w_j   for j ∈ A(r) with c > 0, else 0   (SIMD dot)
//! dW_dec[j] += c[r,j]·g_r                  dW_enc[:, j] += dpre[r,j]·x̄_r
//! db_enc[j] += dpre[r,j]                   db_dec += g_r
//! ```
//!
//! For tied weights `W_dec = M` and `W_enc = Mᵀ`, so both weight contributions go to
//! row `j` of `dM` in one fused pass (`dM[j] += c·g_r + dpre·x_r`). For untied
//! weights the backward runs as two passes over the features: the first reads rows of
//! `G` only (each entry's `dpre`, kept for the second, `dW_dec`, `db_enc`), the second
//! rows of `X` only (`dW_enc`), so each pass's `1.5 MiB`-scale row set competes with
//! less for L2. The encoder column `j` is strided in `dW_enc` (`d×h`): a feature's
//! contributions are summed into a contiguous `d`-vector (a row of a [`TILE`]`×d`
//! tile) and moved to `dW_enc` [`TILE`] columns at a time.
//!
//! ## Memory and order
//! In the backward pass, consecutive sparse row blocks form a *super-block*: after each
//! block's encoder GEMM its active codes are appended as `(row, feature, code)`
//! triples (indices as `u32`); when the area is full (or a dense block or the batch's
//! end comes), the entries are grouped by feature with a counting sort and the
//! formulas above run feature by feature, so each touched row of `W_dec` and of the
//! gradients is loaded once per super-block however many rows use it. The area is the
//! scratch the dense path uses for `dPre` and the residuals (`rows·(h + d)`), plus any
//! scratch the caller gives beyond the plan (`model::grad_batch_extra_len`: enough for
//! a whole batch up to the crossover): a super-block of `R` rows with `z` active codes
//! needs `5z + h + R·d` slots. A single block too dense for that runs row by row
//! (`decode_row`, `grad_row`). With ReLU, once a block has gone sparse, the next blocks
//! may be encoded as one chunk column block by column block ([`append_cols`]; the
//! chunk is kept only where the row blocks would have built the same super-block, so
//! the entries are the same). Every
//! row's reconstruction sums its features in ascending order with the same `axpy` on
//! every route, so `forward` and `loss_and_grad` report the same loss bits.
//!
//! ## AuxK
//! TopK training's AuxK selections (`k'` of the dead latents per row) take one of two
//! routes. As entries of their own in the super-block (flagged by [`AUX_FLAG`]), or,
//! when the dead latents are few enough for it to be cheaper ([`aux_by_gemm`]:
//! `n_dead ≤ 5·k'`), as GEMMs over the compacted dead latents ([`AuxGemm`]): the
//! selections become a dense `rows×n_dead` matrix, the dead latents' decoder rows are
//! gathered into an `n_dead×d` matrix, the decode and the three backward products run
//! as GEMMs on those, and the compacted gradients are added to the dead latents'
//! rows and columns. Both routes select on compacted rows ([`select_compact`]): the
//! dead latents' pre-activations, from their own product `x̄·W_enc[:, dead]` when
//! they are few ([`aux_pre_by_gemm_pays`]), else gathered from all of them.
//!
//! [`Path`] selects the implementation; [`Path::Auto`] measures each row block's
//! density after the encoder and goes sparse at or below [`SPARSE_CROSSOVER`].
//!
//! ## On real data (standard SAE, issue 11)
//! Measured with `bench_sparse --breakdown --model DIR --input TRAIN.npy` (the
//! training split of the README's "Real data" activations; `DIR`: `train --arch standard --steps S
//! --out ...`, whose constant learning rate makes it the model of step `S` of the
//! 2000-step run), one core, on a machine loaded 4–8 (figures: best CPU time; several
//! interleaved runs, ranges given):
//! - The per-entry cost is the same as on random features: at step 2000 (batch L0
//!   43.7, 44 752 entries) the whole step took 44.8–45.9 ms against 43.9–51.9 ms for
//!   the synthetic "trained density" case in the same runs (sparse decode 8.2 ms,
//!   backward 9.2–10.0 ms). No heavy-hitter features: 3064 of 3072 features have
//!   entries, the 10 / 30 / 100 most frequent hold 4.5 / 10.5 / 20 % of them, none
//!   fires in more than half the rows (5 in more than 20 %); row L0: median 39, 90th
//!   percentile 72, max 112. At step 400 (L0 110, 112 793 entries) `loss_and_grad`
//!   takes 52–58 ms against 36–48 ms at step 2000: the cost follows the entries.
//! - So the real run is slower than the synthetic L0-43 step because its batches are
//!   denser for most of it (held-out L0 166, 111, 89, 75, 66, 59, 54, 51, 47, 45 at
//!   steps 200, 400, …, 2000: about 76 on average over steps 200–2000), and its
//!   first ~60 steps (L0 above 0.12·h) run dense.
//! - [`SPARSE_CROSSOVER`] holds: at step 60 (L0 390, 12.7 %) `loss_and_grad` took
//!   113–133 ms sparse against 124–139 ms dense, at step 100 (L0 258) 83–86 against
//!   116–140.
//! - Tried and not kept (none measured faster; ranges of `--grad-only` bests at steps
//!   2000 / 400, the unchanged code beside it in the same runs): decoding row by row
//!   in the entries' append order, the output row in L1 (40–53 / 52–73 against 36–37
//!   / 52–58); that plus software prefetch of the next entry's rows (36–53 / 57–74);
//!   on top of those two, capping the super-block at 256 or 512 rows so that its `X`
//!   and `G` rows fit in L2 (step 2000: 52–55 and 46–58 against 39–43 uncapped);
//!   computing the code gradients row by row and the weight gradients in column
//!   slices of 128 (`G`, `X` slices in 1 MiB; 47–58 / 74–93 against 43–48 / 52–69).
//!   The row kernels run AVX-512 here (`axpy2_avx512`, `dot_avx512` in `perf`
//!   profiles).
//! - Also not kept (session 6, synthetic standard step at L0 43, `loss_and_grad` on the
//!   sparse path, both variants in one process, interleaved, load about 5): software
//!   prefetch of every line of the next rows of `G` and `X` 4, 8 or 16 entries ahead in
//!   feature order (best 39.6 / 42.4 / 42.9 ms against 40.1 ms without), and the
//!   super-block capped at 256 or 512 rows on this feature-order route alone (49.6 /
//!   52.1 against 40.0 ms). The hardware prefetchers follow the 1.5 KB rows already,
//!   and a smaller super-block loads each feature's rows more often.
//! - Kept (session 7, same synthetic step, old and new builds alternated, `rdtsc`
//!   probes around the loops): the untied backward's two passes with the `64×d` tile
//!   (backward loop 11.8–14.3 → 9.5–11.1 ms at L0 43; gradients bit-identical). In a
//!   stand-alone probe of the loop the two passes alone took 0.83–0.87 of the fused
//!   one, and the old `d×16` tile's moves cost 2.5–3.5 ms over contiguous sums,
//!   mostly its strided read-modify-write of `dW_enc` (a line per row of `dW_enc`,
//!   rows 12 KB apart, every 16 features); prefetching the next tile's lines of
//!   `dW_enc` did not help, non-temporal prefetch of the streamed `W_dec` rows
//!   neither (decode 2.01 against 1.99 ms).
//! - Not kept (session 7): one kernel call per feature instead of one per entry (row
//!   gathers `dot` / `axpy` over a feature's rows inside one `#[target_feature]`
//!   function, bit-identical). On a real checkpoint (step 400, L0 110), old and new
//!   builds alternated, `loss_and_grad` best of 15: 48.2–50.6 ms against 46.9–53.7
//!   ms, no difference: the row fetches, not the calls, set the per-entry cost.

use super::activation::{Keep, ukey};
use crate::error::Result;
use crate::kernels::dispatch_vector::{axpy, axpy2, dot};
use crate::kernels::gemm::{Epilogue, MatMut, MatRef, gemm};
use crate::kernels::vector;
use wide::f32x8;

/// Which implementation computes the decoder and the backward products.
///
/// Both give the same results up to f32 rounding (they sum in different orders); the
/// encoder is the same dense GEMM on both.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Path {
    /// Per row block, measure the fraction of active codes after the encoder and take
    /// the sparse path when it is at most [`SPARSE_CROSSOVER`], otherwise the dense one.
    #[default]
    Auto,
    /// Always the dense GEMMs.
    Dense,
    /// Always the sparse path.
    Sparse,
}

/// The density (active codes / codes of a row block) at or below which [`Path::Auto`]
/// takes the sparse path.
///
/// Measured with `cargo run --release --example bench_sparse` (training step, one
/// x86-64 core with AVX-512; see the README's "Sparse path" section): the sparse step
/// is as fast as the dense one at about 14–15 % density at both (n, d, h) =
/// (4096, 512, 4096) and (1024, 768, 16384) (1.3–1.4× faster at 10 %, 0.8× at 20 %).
/// `Auto` switches a little earlier because a sparse block's cost grows with its
/// density while a dense block's does not. The same threshold decides the decoder in
/// the forward pass.
pub const SPARSE_CROSSOVER: f32 = 0.12;

const LANES: usize = 8;

#[inline(always)]
fn load(chunk: &[f32]) -> f32x8 {
    let arr: [f32; LANES] = chunk.try_into().unwrap_or([0.0; LANES]);
    f32x8::new(arr)
}

/// Is a code active: `> 0`, or NaN (kept so that it propagates)?
#[inline(always)]
fn is_active(v: f32) -> bool {
    v > 0.0 || v.is_nan()
}

/// The number of active codes (`> 0` or NaN: everything that is not `≤ 0`).
#[must_use]
pub(crate) fn count_active(codes: &[f32]) -> usize {
    let chunks = codes.chunks_exact(LANES);
    let tail = chunks.remainder();
    let mut n = 0usize;
    for c in chunks {
        let off = load(c).simd_le(f32x8::ZERO).to_bitmask() & 0xFF;
        n += LANES - off.count_ones() as usize;
    }
    n + tail.iter().filter(|&&v| is_active(v)).count()
}

/// Whether a block of `rows×h` codes with `active` active codes goes sparse.
#[must_use]
pub(crate) fn use_sparse(path: Path, active: usize, rows: usize, h: usize) -> bool {
    match path {
        Path::Dense => false,
        Path::Sparse => true,
        Path::Auto => (active as f64) <= f64::from(SPARSE_CROSSOVER) * (rows * h) as f64,
    }
}

/// Call `f(j)` for each active code `row[j]` (`> 0` or NaN), `j` ascending.
#[inline(always)]
fn each_active(row: &[f32], mut f: impl FnMut(usize)) {
    let chunks = row.chunks_exact(LANES);
    let tail = chunks.remainder();
    for (ci, c) in chunks.enumerate() {
        let mut on = !load(c).simd_le(f32x8::ZERO).to_bitmask() & 0xFF;
        let base = ci * LANES;
        while on != 0 {
            f(base + on.trailing_zeros() as usize);
            on &= on - 1;
        }
    }
    let base = row.len() - tail.len();
    for (t, &v) in tail.iter().enumerate() {
        if is_active(v) {
            f(base + t);
        }
    }
}

/// Write the indices of the active codes of one row (ascending) to the front of `idx`
/// (`idx.len() ≥ row.len()`); return their number.
pub(crate) fn collect_row(row: &[f32], idx: &mut [u32]) -> usize {
    let mut k = 0usize;
    each_active(row, |j| {
        idx[k] = j as u32;
        k += 1;
    });
    k
}

/// The model side of the sparse products.
#[derive(Clone, Copy)]
pub(crate) struct Model<'a> {
    pub d: usize,
    pub h: usize,
    /// The decoder, `h×d` row-major (tied: `M`).
    pub dec: &'a [f32],
    /// `b_dec` (`d`), added to every reconstruction; `None` for tied weights.
    pub b_dec: Option<&'a [f32]>,
    /// `b_dec` again when it is subtracted from the input (the encoder sees `x − b_dec`).
    pub center: Option<&'a [f32]>,
    /// Penalty weight per feature (`h`), multiplied by `add`; `None` for weight 1.
    pub w: Option<&'a [f32]>,
    /// `α/n`.
    pub add: f32,
}

impl Model<'_> {
    #[inline(always)]
    fn dec_row(&self, j: usize) -> &[f32] {
        &self.dec[j * self.d..(j + 1) * self.d]
    }

    /// The code gradient of an active entry: `g·W_dec[j] + (α/n)·w_j` if `c > 0`.
    #[inline(always)]
    fn dpre(&self, j: usize, c: f32, g: &[f32]) -> f32 {
        if c > 0.0 {
            let wj = match self.w {
                Some(w) => w[j],
                None => 1.0,
            };
            dot(g, self.dec_row(j)) + self.add * wj
        } else {
            0.0
        }
    }
}

/// The gradient accumulators the sparse path adds to (zeroed or holding earlier
/// blocks' contributions).
pub(crate) struct Acc<'g> {
    /// Tied: `dM` (`h×d`, both contributions); untied: `dW_enc` (`d×h`).
    pub enc: &'g mut [f32],
    /// Untied: `dW_dec` (`h×d`); tied: `None`.
    pub dec: Option<&'g mut [f32]>,
    /// `db_enc` (`h`).
    pub b_enc: &'g mut [f32],
    /// Untied: `db_dec` (`d`), the row sums of `G` (the centring term comes later).
    pub b_dec: Option<&'g mut [f32]>,
    /// `Σ_rows c[r, j]` per feature (`h`), for the decoder-norm penalty (empty without it).
    pub fsum: &'g mut [f32],
    /// `d` slots: one feature's encoder-gradient column before it is added (untied).
    pub col: &'g mut [f32],
    /// `TILE·d` slots: the encoder-gradient columns of `TILE` consecutive features
    /// (untied), `TILE×d` row-major (row `t`: feature `j0 + t`'s column of `dW_enc`).
    pub tile: &'g mut [f32],
}

/// `recon ← Σ_{j ∈ idx} codes[j]·W_dec[j] (+ b_dec)` for one row (`recon.len() == d`).
pub(crate) fn decode_row(m: &Model<'_>, codes: &[f32], idx: &[u32], recon: &mut [f32]) {
    recon.fill(0.0);
    for &j in idx {
        let j = j as usize;
        axpy(codes[j], m.dec_row(j), recon);
    }
    if let Some(b) = m.b_dec {
        vector::axpy(1.0, b, recon);
    }
}

/// The gradient contributions of one row on the sparse path (see the module docs);
/// `g` is the row's `(2/n)(x̂ − x)`, `x` its input. Adds `g` to `db_dec`.
pub(crate) fn grad_row(
    m: &Model<'_>,
    codes: &[f32],
    idx: &[u32],
    g: &[f32],
    x: &[f32],
    acc: &mut Acc<'_>,
) {
    let d = m.d;
    for &j in idx {
        let j = j as usize;
        let c = codes[j];
        let dpre = m.dpre(j, c, g);
        let row = j * d..(j + 1) * d;
        match acc.dec.as_deref_mut() {
            None => axpy2(c, g, dpre, x, &mut acc.enc[row]),
            Some(dw_dec) => {
                axpy(c, g, &mut dw_dec[row]);
                let col = &mut acc.col[..d];
                col.fill(0.0);
                axpy(dpre, x, col);
                if let Some(b) = m.center {
                    axpy(-dpre, b, col);
                }
                for (i, &a) in col.iter().enumerate() {
                    acc.enc[i * m.h + j] += a;
                }
            }
        }
        acc.b_enc[j] += dpre;
        if let Some(f) = acc.fsum.get_mut(j) {
            *f += c;
        }
    }
    if let Some(db) = acc.b_dec.as_deref_mut() {
        vector::axpy(1.0, g, db);
    }
}

/// Slots a super-block of `rows` rows with `nnz` entries (active codes and AuxK
/// selections) needs in the work area of [`super_append`] and [`super_flush`]:
/// [`super_len`], or `None` on overflow or if a row index would not fit below
/// [`AUX_FLAG`].
#[must_use]
pub(crate) fn super_need(rows: usize, nnz: usize, d: usize, h: usize, aux: bool) -> Option<usize> {
    let max = AUX_FLAG as usize;
    if nnz >= max || rows >= max || h > max {
        return None;
    }
    Some(super_len(rows, nnz, d, h, aux)).filter(|&v| v != usize::MAX)
}

/// `5·nnz + h + rows·d` (twice `rows·d` with AuxK, for its residuals): the triples and
/// the two sorted lists (`5·nnz`), the per-feature ends (`h`) and the residual rows;
/// saturating.
#[must_use]
pub(crate) const fn super_len(rows: usize, nnz: usize, d: usize, h: usize, aux: bool) -> usize {
    let resid = rows.saturating_mul(d).saturating_mul(1 + aux as usize);
    nnz.saturating_mul(5)
        .saturating_add(h)
        .saturating_add(resid)
}

/// Marks an entry's row index as an AuxK selection (not an active code).
pub(crate) const AUX_FLAG: u32 = 1 << 31;

/// The AuxK selection of one compacted row: `row` holds the pre-activations of the
/// candidates (e.g. the dead latents, in ascending latent order); keep, in place, the
/// `k` largest (order by `f32::total_cmp`, ties to the lowest position), raw (no
/// ReLU); every other entry becomes `+0.0`, and a kept zero is stored as `−0.0`, so
/// that "kept" is exactly "bits ≠ 0". The same kept set and bits as
/// `activation::topk_among` over the full row with the candidates as its mask, in one
/// integer selection over `row.len()` keys (none when `k ≥ row.len()`). `keys` is
/// scratch of `row.len()` entries.
pub(crate) fn select_compact(row: &mut [f32], k: usize, keys: &mut [u32]) {
    let m = row.len();
    if k == 0 {
        row.fill(0.0);
        return;
    }
    if k >= m {
        for v in row.iter_mut() {
            if *v == 0.0 {
                *v = -0.0;
            }
        }
        return;
    }
    let keys = &mut keys[..m];
    for (u, &v) in keys.iter_mut().zip(row.iter()) {
        *u = ukey(v);
    }
    let mut keep = Keep::largest(keys, k);
    for v in row.iter_mut() {
        let keep = keep.next(ukey(*v));
        *v = match (keep, *v == 0.0) {
            (false, _) => 0.0,
            (true, true) => -0.0,
            (true, false) => *v,
        };
    }
}

/// Compact a block's pre-activations in place: row `r` of `a` (`rows×h`) becomes row
/// `r` of `a[..rows·dead.len()]` (`rows×n_dead`), whose column `t` is latent `dead[t]`
/// (`dead` ascending, so every read is at or after every write before it).
pub(crate) fn compact_in_place(a: &mut [f32], h: usize, dead: &[u32]) {
    let (nd, rows) = (dead.len(), a.len() / h.max(1));
    for r in 0..rows {
        for (t, &j) in dead.iter().enumerate() {
            a[r * nd + t] = a[r * h + j as usize];
        }
    }
}

/// Gather the encoder's columns of the dead latents: `e[i·n_dead + t] ← W_enc[i,
/// dead[t]]` (`e`: `d×n_dead`), for [`aux_pre_by_gemm`].
pub(crate) fn gather_enc_cols(enc: MatRef<'_>, dead: &[u32], e: &mut [f32]) {
    let nd = dead.len();
    for (i, row) in e.chunks_exact_mut(nd.max(1)).take(enc.rows()).enumerate() {
        for (v, &j) in row.iter_mut().zip(dead) {
            *v = enc.at(i, j as usize);
        }
    }
}

/// Whether the dead latents' pre-activations of a sparse block come from their own
/// product `x̄·W_enc[:, dead]` ([`aux_pre_by_gemm`], `2·rows·d·n_dead` FLOP) rather
/// than from a copy of all `rows×h` pre-activations (which also keeps the encoder
/// from fusing bias and ReLU into its store, and costs a pass over them).
#[must_use]
pub(crate) fn aux_pre_by_gemm_pays(n_dead: usize, h: usize) -> bool {
    n_dead.saturating_mul(AUX_PRE_GEMM_SHARE) <= h
}

/// [`aux_pre_by_gemm_pays`]: the own product runs while `n_dead ≤ h / AUX_PRE_GEMM_SHARE`.
/// Measured with `bench_aux` ((1024, 384, 3072), one x86-64 core with AVX-512): with
/// 2–100 dead latents it takes AuxK from 7–13 ms to 1–8 ms (the copy of all
/// pre-activations and the unfused encoder store were most of it); from 150 to 307
/// dead latents h/8 and h/16 (the full copy) measured the same within noise.
pub(crate) const AUX_PRE_GEMM_SHARE: usize = 8;

/// The dead latents' pre-activations of a block, by their own product: `out ←
/// xin·E + b_enc[dead]` (`xin`: the block's encoder input, `rows×d`; `E`: `d×n_dead`
/// from [`gather_enc_cols`]; `out`: `rows×n_dead`). The same products as the
/// encoder's, in the same order (each entry one dot product over `d`), then the bias.
pub(crate) fn aux_pre_by_gemm(
    xin: &[f32],
    e: &[f32],
    b_enc: &[f32],
    dead: &[u32],
    out: &mut [f32],
    pack: &mut [f32],
) -> Result<()> {
    let nd = dead.len();
    let d = e.len() / nd.max(1);
    let rows = xin.len() / d.max(1);
    gemm(
        1.0,
        MatRef::row_major("x", xin, rows, d)?,
        MatRef::row_major("W_enc_dead", e, d, nd)?,
        0.0,
        MatMut::row_major("aux_pre", out, rows, nd)?,
        Epilogue::None,
        pack,
    )?;
    for row in out.chunks_exact_mut(nd.max(1)) {
        for (v, &j) in row.iter_mut().zip(dead) {
            *v += b_enc[j as usize];
        }
    }
    Ok(())
}

/// Append a block's AuxK selections (`a`, `rows×n_dead` compacted, column `t` for
/// latent `cand[t]`: selected entries have non-zero bits, see [`select_compact`]) as
/// `(row | AUX_FLAG, feature, value bits)` triples after the `nnz` entries already in
/// `work`. Returns the new number of entries.
pub(crate) fn super_append_aux(
    a: &[f32],
    cand: &[u32],
    row0: usize,
    nnz: usize,
    work: &mut [f32],
) -> usize {
    let work: &mut [u32] = bytemuck::cast_slice_mut(work);
    let mut e = 3 * nnz;
    for (r, row) in a.chunks_exact(cand.len().max(1)).enumerate() {
        let rr = (row0 + r) as u32 | AUX_FLAG;
        for (&v, &j) in row.iter().zip(cand) {
            if v.to_bits() != 0 {
                work[e] = rr;
                work[e + 1] = j;
                work[e + 2] = v.to_bits();
                e += 3;
            }
        }
    }
    e / 3
}

/// Append the active codes of a block (`rows×h`) to a super-block's entry list, as
/// `(row, feature, code bits)` triples at `work[3·nnz..]`, rows numbered from `row0`,
/// in row order and ascending features, calling `row_done(row)` after each row (while
/// it is still in L1). Returns the new number of entries, or `None` as soon as more
/// than `cap` entries have been appended after a row (what was written beyond `nnz` is
/// then scratch). `work` holds at least `3·(nnz + min(cap, block's active codes) + h)`
/// slots. With `fired` (`h` entries), sets `fired[j]` for every code `> 0` appended
/// (codes that did fire, also on `None`); adds the number of codes `> 0` (the block's
/// L0 sum; NaN codes are appended but not counted) to `l0`.
///
/// With a `cap` from [`sparse_cap`], this is also the count that decides the path, in
/// the same pass over the codes.
#[allow(clippy::too_many_arguments)]
pub(crate) fn super_append(
    codes: &[f32],
    h: usize,
    row0: usize,
    nnz: usize,
    cap: usize,
    work: &mut [f32],
    mut fired: Option<&mut [bool]>,
    l0: &mut usize,
    row_done: &mut dyn FnMut(&[f32]),
) -> Option<usize> {
    let work: &mut [u32] = bytemuck::cast_slice_mut(work);
    let mut e = 3 * nnz;
    for (r, row) in codes.chunks_exact(h).enumerate() {
        let rr = (row0 + r) as u32;
        each_active(row, |j| {
            work[e] = rr;
            work[e + 1] = j as u32;
            work[e + 2] = row[j].to_bits();
            e += 3;
            let on = row[j] > 0.0;
            *l0 += usize::from(on);
            if let Some(f) = fired.as_deref_mut() {
                f[j] |= on;
            }
        });
        row_done(row);
        if e / 3 - nnz > cap {
            return None;
        }
    }
    Some(e / 3)
}

/// [`super_append`] for a column block: `cblk` holds the codes of columns `j0..j0 + nc`
/// of `rows` rows (`rows×nc`), numbered from `row0` in the super-block. Appends their
/// active codes as triples at `work[3·nnz..]`, row by row, features ascending, and adds
/// each row's count of entries to `sub[r / per]` (`r` the row within the block, so
/// `sub` counts per group of `per` rows). Returns the new number of entries, or `None`
/// as soon as more than `cap` (a total, `nnz` included) have been appended after a
/// row; `work` holds at least `3·(cap + nc)` slots. `fired` and `l0` as for
/// [`super_append`].
///
/// A feature lives in one column block, so appending a batch's column blocks in turn
/// lists each feature's entries in row order, as [`super_append`] over its row blocks
/// does: [`super_flush`]'s counting sort then makes the same per-feature lists.
#[allow(clippy::too_many_arguments)]
pub(crate) fn append_cols(
    cblk: &[f32],
    nc: usize,
    j0: usize,
    row0: usize,
    (nnz, cap): (usize, usize),
    work: &mut [f32],
    mut fired: Option<&mut [bool]>,
    l0: &mut usize,
    (sub, per): (&mut [usize], usize),
) -> Option<usize> {
    let work: &mut [u32] = bytemuck::cast_slice_mut(work);
    let mut e = 3 * nnz;
    for (r, row) in cblk.chunks_exact(nc.max(1)).enumerate() {
        let rr = (row0 + r) as u32;
        let e_row = e;
        each_active(row, |j| {
            work[e] = rr;
            work[e + 1] = (j0 + j) as u32;
            work[e + 2] = row[j].to_bits();
            e += 3;
            let on = row[j] > 0.0;
            *l0 += usize::from(on);
            if let Some(f) = fired.as_deref_mut() {
                f[j0 + j] |= on;
            }
        });
        sub[r / per.max(1)] += (e - e_row) / 3;
        if e / 3 > cap {
            return None;
        }
    }
    Some(e / 3)
}

/// The largest number of active codes for which a block of `rows×h` codes takes the
/// sparse path ([`use_sparse`] holds exactly up to it; `None` for [`Path::Dense`]).
#[must_use]
pub(crate) fn sparse_cap(path: Path, rows: usize, h: usize) -> Option<usize> {
    match path {
        Path::Dense => None,
        Path::Sparse => Some(usize::MAX),
        // `a as f64 ≤ x` ⇔ `a ≤ ⌊x⌋` for integers `a` (exact below 2⁵³); `as usize`
        // rounds the non-negative `x` down (no `f64::floor` without `std`).
        Path::Auto => Some((f64::from(SPARSE_CROSSOVER) * (rows * h) as f64) as usize),
    }
}

/// Finish a super-block of `rows` rows (inputs `x`, `rows×d`) whose `nnz` entries
/// [`super_append`] (and [`super_append_aux`]) wrote to `work`: group them by feature
/// (counting sort), decode, add each row's `‖x − x̂‖²` to `sq_sum` in row order, form
/// `G = scale·(x̂ − x)`, and accumulate every gradient feature by feature. With
/// `norm_grad` (untied weights with the decoder-norm penalty, a super-block holding the
/// whole batch, no AuxK GEMMs): each feature's code sum is complete when the feature is
/// reached, so its penalty gradient `(α/n)·(Σ_rows c_j)·W_dec,j/‖W_dec,j‖` goes to its
/// row of `dW_dec` here. `assign` (untied weights; the super-block holds the whole
/// batch and nothing was added yet): `dW_dec` and `dW_enc` hold no values yet, so every
/// row and column is written (zero for features without entries) instead of added to.
/// With `aux = Some((gscale, aux_sum))` the AuxK selections' residual
/// `R = A·W_dec − (x − x̂)` adds `‖R‖²` to `aux_sum`, and `gscale·R` plays the part of
/// `G` for those entries (no mask, no penalty: `dpre = gscale·R·W_dec[j]`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn super_flush(
    m: &Model<'_>,
    x: &[f32],
    rows: usize,
    nnz: usize,
    work: &mut [f32],
    scale: f32,
    sq_sum: &mut f64,
    aux: Option<(f32, &mut f64)>,
    mut cmp: Option<&mut AuxGemm<'_>>,
    norm_grad: bool,
    assign: bool,
    acc: &mut Acc<'_>,
) -> Result<()> {
    let (d, h) = (m.d, m.h);
    let (ints, rest) = work.split_at_mut(5 * nnz + h);
    let (g, rest) = rest.split_at_mut(rows * d);
    // The AuxK residuals: the GEMM route's own buffer, else after the main residuals.
    let ar: &mut [f32] = match cmp.as_deref_mut() {
        Some(c) => &mut core::mem::take(&mut c.ar)[..rows * d],
        None => &mut rest[..if aux.is_some() { rows * d } else { 0 }],
    };
    let ints: &mut [u32] = bytemuck::cast_slice_mut(ints);
    let (coo, rest) = ints.split_at_mut(3 * nnz);
    let (end, rest) = rest.split_at_mut(h);
    let (ent_r, ent_c) = rest.split_at_mut(nnz);
    end.fill(0);
    for t in coo.chunks_exact(3) {
        end[t[1] as usize] += 1;
    }
    // Exclusive prefix sums: end[j] becomes the start of column j.
    let mut sum = 0u32;
    for e in end.iter_mut() {
        let c = *e;
        *e = sum;
        sum += c;
    }
    for t in coo.chunks_exact(3) {
        let j = t[1] as usize;
        let e = end[j] as usize;
        ent_r[e] = t[0];
        ent_c[e] = t[2];
        end[j] += 1;
    }
    let (end, ent_r, ent_c): (&[u32], &[u32], &[u32]) = (end, ent_r, ent_c);
    // The triples are sorted out: their first `nnz` slots keep each entry's code
    // gradient between the two backward passes of untied weights (below).
    let dp = &mut coo[..nnz];
    // Call f(j, first entry, rows, code bits) for each feature with entries.
    type Visit<'v> = dyn FnMut(usize, usize, &[u32], &[u32]) + 'v;
    let each = |f: &mut Visit<'_>| {
        let mut start = 0usize;
        for (j, &e) in end.iter().enumerate() {
            let e = e as usize;
            if e > start {
                f(j, start, &ent_r[start..e], &ent_c[start..e]);
            }
            start = e;
        }
    };
    // Decode: each row sums its features in ascending order, as `decode_row`; AuxK
    // selections go to their own rows (`A·W_dec`).
    g.fill(0.0);
    ar.fill(0.0);
    each(&mut |j, _, rs, cs| {
        let dj = m.dec_row(j);
        for (&r, &c) in rs.iter().zip(cs) {
            let ri = (r & !AUX_FLAG) as usize;
            let out = if r & AUX_FLAG == 0 { &mut *g } else { &mut *ar };
            axpy(f32::from_bits(c), dj, &mut out[ri * d..(ri + 1) * d]);
        }
    });
    if let Some(c) = cmp.as_deref_mut() {
        c.decode(m, rows, ar)?;
    }
    let mut aux = aux;
    for (r, (gr, xr)) in g.chunks_exact_mut(d).zip(x.chunks_exact(d)).enumerate() {
        if let Some(b) = m.b_dec {
            vector::axpy(1.0, b, gr);
        }
        *sq_sum += f64::from(vector::sum_sq_diff(xr, gr));
        if let Some((gscale, aux_sum)) = aux.as_mut() {
            // R = A·W_dec − (x − x̂), then scaled for the gradient.
            let rr = &mut ar[r * d..(r + 1) * d];
            for ((v, &xv), &xh) in rr.iter_mut().zip(xr).zip(gr.iter()) {
                *v -= xv - xh;
                **aux_sum += f64::from(*v) * f64::from(*v);
                *v *= *gscale;
            }
        }
        vector::sub_scale_inplace(scale, gr, xr);
        if let Some(db) = acc.b_dec.as_deref_mut() {
            vector::axpy(1.0, gr, db);
        }
    }
    let g: &[f32] = g;
    let ar: &[f32] = ar;
    // The residual row and whether the entry is an AuxK selection.
    let resid = |r: u32| -> (&[f32], usize, bool) {
        let ri = (r & !AUX_FLAG) as usize;
        if r & AUX_FLAG == 0 {
            (&g[ri * d..(ri + 1) * d], ri, false)
        } else {
            (&ar[ri * d..(ri + 1) * d], ri, true)
        }
    };
    match acc.dec.as_deref_mut() {
        // Tied: both contributions go to row j of dM in one pass.
        None => each(&mut |j, _, rs, cs| {
            let dmj = &mut acc.enc[j * d..(j + 1) * d];
            let (mut dbj, mut fs) = (0.0f32, 0.0f32);
            for (&r, &c) in rs.iter().zip(cs) {
                let ((gr, ri, is_aux), c) = (resid(r), f32::from_bits(c));
                let xr = &x[ri * d..(ri + 1) * d];
                let dpre = if is_aux {
                    dot(gr, m.dec_row(j))
                } else {
                    fs += c;
                    m.dpre(j, c, gr)
                };
                axpy2(c, gr, dpre, xr, dmj);
                dbj += dpre;
            }
            acc.b_enc[j] += dbj;
            if let Some(f) = acc.fsum.get_mut(j) {
                *f += fs;
            }
        }),
        // Untied: two passes over the features, the first reading only rows of `G`
        // (code gradients, kept per entry, and `dW_dec`), the second only rows of `X`
        // (`dW_enc`), so that each pass's rows compete less for L2.
        Some(dw_dec) => {
            // With `assign`, rows below `next` are written.
            let mut next = 0usize;
            each(&mut |j, e0, rs, cs| {
                if assign {
                    dw_dec[next * d..(j + 1) * d].fill(0.0);
                    next = j + 1;
                }
                let ddj = &mut dw_dec[j * d..(j + 1) * d];
                let (mut dbj, mut fs) = (0.0f32, 0.0f32);
                for (e, (&r, &c)) in rs.iter().zip(cs).enumerate() {
                    let ((gr, _, is_aux), c) = (resid(r), f32::from_bits(c));
                    let dpre = if is_aux {
                        dot(gr, m.dec_row(j))
                    } else {
                        fs += c;
                        m.dpre(j, c, gr)
                    };
                    axpy(c, gr, ddj);
                    dp[e0 + e] = dpre.to_bits();
                    dbj += dpre;
                }
                acc.b_enc[j] += dbj;
                if let Some(f) = acc.fsum.get_mut(j) {
                    *f += fs;
                    if norm_grad && let Some(w) = m.w {
                        add_norm_grad(m.add, *f, w[j], m.dec_row(j), ddj);
                    }
                }
            });
            if assign {
                dw_dec[next * d..].fill(0.0);
            }
            // dW_enc[:, j] is strided (d×h): each feature's column is summed into its
            // row of the tile (TILE×d, in L2), which goes to dW_enc TILE columns at a
            // time, `TILE·4` contiguous bytes per row of dW_enc.
            let dp: &[u32] = dp;
            let tile = &mut acc.tile[..TILE * d];
            tile.fill(0.0);
            let mut tile0 = 0usize;
            each(&mut |j, e0, rs, _| {
                if j >= tile0 + TILE {
                    flush_tile(acc.enc, tile, h, tile0, assign);
                    let to = j - j % TILE;
                    if assign {
                        zero_cols(acc.enc, h, d, tile0 + TILE, to);
                    }
                    tile0 = to;
                }
                let col = &mut tile[(j - tile0) * d..(j - tile0 + 1) * d];
                let dpj = &dp[e0..e0 + rs.len()];
                for (&r, &bits) in rs.iter().zip(dpj) {
                    let ri = (r & !AUX_FLAG) as usize;
                    axpy(f32::from_bits(bits), &x[ri * d..(ri + 1) * d], col);
                }
                if let Some(b) = m.center {
                    // The feature's `db_enc` term again, summed in pass 1's order.
                    let dbj = dpj.iter().fold(0.0f32, |s, &v| s + f32::from_bits(v));
                    axpy(-dbj, b, col);
                }
            });
            flush_tile(acc.enc, tile, h, tile0, assign);
            if assign {
                zero_cols(acc.enc, h, d, (tile0 + TILE).min(h), h);
            }
        }
    }
    if let Some(c) = cmp {
        c.backward(m, x, rows, ar, acc)?;
    }
    Ok(())
}

/// Whether AuxK over `n_dead` dead latents with `k` selections per row runs as GEMMs
/// over the compacted dead latents ([`AuxGemm`]) rather than as super-block entries.
///
/// Per row, the entry route costs about `k` times four `d`-vector operations (decode,
/// dot, two rank-one updates), the GEMM route four GEMMs of `n_dead·d` multiply-adds,
/// which run [`AUX_GEMM_SPEEDUP`] times faster per multiply-add.
#[must_use]
pub(crate) fn aux_by_gemm(n_dead: usize, k: usize) -> bool {
    n_dead <= AUX_GEMM_SPEEDUP.saturating_mul(k)
}

/// How much faster a multiply-add runs in the GEMMs of [`AuxGemm`] than in the
/// super-block's per-entry vector operations. Measured with `cargo run --release
/// --example bench_aux -- --dead 700,860,1000,1300` ((n, d, h) = (1024, 384, 3072),
/// k' = 192, one x86-64 core with AVX-512, both routes alternated): the entry route
/// costs about 55–60 ms whatever the number of dead latents (0.29 ms per selection per
/// row), the GEMM route about 22 ms + 0.038 ms per dead latent (48–50 ms at 700, 53 at
/// 860, 60 at 1000, 72 at 1300), so they cross near 4.8·k'.
pub(crate) const AUX_GEMM_SPEEDUP: usize = 5;

/// The pack buffer the GEMMs of [`AuxGemm`] need for a super-block of `rows` rows
/// (the plan sizes it for one block; a super-block of several blocks must check it).
#[must_use]
pub(crate) fn aux_gemm_pack(rows: usize, d: usize, n_dead: usize, tied: bool) -> usize {
    use crate::kernels::gemm::pack_len;
    let a = pack_len(rows, d, n_dead).max(pack_len(rows, n_dead, d));
    let enc = if tied { 0 } else { pack_len(d, n_dead, rows) };
    a.max(pack_len(n_dead, d, rows)).max(enc)
}

/// AuxK over the compacted dead latents of one super-block, by GEMMs: with `A` the
/// super-block's selections (`rows×n_dead`, column `t` for latent `dead[t]`), `D` the
/// dead latents' decoder rows (`n_dead×d`, gathered) and `R` the AuxK residual scaled
/// for the gradient,
///
/// ```text
/// R·  = A·D − (x − x̂)                     (decode)
/// P   = (R·Dᵀ) masked to the selected entries
/// dW_dec[dead] += Aᵀ·R      dW_enc[:, dead] += x̄ᵀ·P      db_enc[dead] += 1ᵀ·P
/// ```
///
/// (tied: `dM[dead] += Aᵀ·R + Pᵀ·x`), the same sums as the entry route of
/// [`super_flush`] in another order.
pub(crate) struct AuxGemm<'s> {
    /// The dead latents, ascending.
    pub dead: &'s [u32],
    /// `rows·n_dead`: the selections, compacted (see [`select_compact`]).
    pub a: &'s [f32],
    /// `rows·n_dead`: the code gradient `P`.
    pub dpa: &'s mut [f32],
    /// `rows·d`: the AuxK residuals `R` (taken by [`super_flush`], whose work area then
    /// needs no room for them: [`super_need`] without `aux`).
    pub ar: &'s mut [f32],
    /// `n_dead·d`: the gathered decoder rows, then the compacted gradients.
    pub buf: &'s mut [f32],
    /// The GEMMs' pack buffer.
    pub pack: &'s mut [f32],
}

impl AuxGemm<'_> {
    /// `ar ← A·D` (`rows×d`), gathering `D` into `buf`.
    fn decode(&mut self, m: &Model<'_>, rows: usize, ar: &mut [f32]) -> Result<()> {
        let (d, nd) = (m.d, self.dead.len());
        let wd = &mut self.buf[..nd * d];
        for (dst, &j) in wd.chunks_exact_mut(d).zip(self.dead) {
            dst.copy_from_slice(m.dec_row(j as usize));
        }
        gemm(
            1.0,
            MatRef::row_major("aux", &self.a[..rows * nd], rows, nd)?,
            MatRef::row_major("W_dec_dead", wd, nd, d)?,
            1.0,
            MatMut::row_major("aux_resid", ar, rows, d)?,
            Epilogue::None,
            self.pack,
        )
    }

    /// The gradient contributions from `ar` (`rows×d`, the scaled AuxK residual) and the
    /// super-block's inputs `x`; `buf` still holds `D` from [`Self::decode`].
    fn backward(
        &mut self,
        m: &Model<'_>,
        x: &[f32],
        rows: usize,
        ar: &[f32],
        acc: &mut Acc<'_>,
    ) -> Result<()> {
        let (d, h, nd) = (m.d, m.h, self.dead.len());
        let a = &self.a[..rows * nd];
        let dpa = &mut self.dpa[..rows * nd];
        let buf = &mut self.buf[..nd * d];
        let am = MatRef::row_major("aux", a, rows, nd)?;
        let rm = MatRef::row_major("aux_resid", ar, rows, d)?;
        let xm = MatRef::row_major("x", x, rows, d)?;
        // P = R·Dᵀ on the selected entries.
        gemm(
            1.0,
            rm,
            MatRef::row_major("W_dec_dead", buf, nd, d)?.t(),
            0.0,
            MatMut::row_major("aux_dpre", dpa, rows, nd)?,
            Epilogue::None,
            self.pack,
        )?;
        for (p, &v) in dpa.iter_mut().zip(a) {
            if v.to_bits() == 0 {
                *p = 0.0;
            }
        }
        let dpa: &[f32] = dpa;
        let pm = MatRef::row_major("aux_dpre", dpa, rows, nd)?;
        // Decoder rows: Aᵀ·R (tied: + Pᵀ·x), then added to the dead latents' rows.
        let tied = acc.dec.is_none();
        gemm(
            1.0,
            am.t(),
            rm,
            0.0,
            MatMut::row_major("dW_dec_dead", buf, nd, d)?,
            Epilogue::None,
            self.pack,
        )?;
        if tied {
            gemm(
                1.0,
                pm.t(),
                xm,
                1.0,
                MatMut::row_major("dM_dead", buf, nd, d)?,
                Epilogue::None,
                self.pack,
            )?;
        }
        let gd: &mut [f32] = match acc.dec.as_deref_mut() {
            Some(g) => g,
            None => acc.enc,
        };
        for (src, &j) in buf.chunks_exact(d).zip(self.dead) {
            let j = j as usize;
            vector::axpy(1.0, src, &mut gd[j * d..(j + 1) * d]);
        }
        // db_enc[dead[t]] += Σ_rows P[:, t].
        for (t, &j) in self.dead.iter().enumerate() {
            let s: f32 = dpa[t..].iter().step_by(nd).sum();
            acc.b_enc[j as usize] += s;
        }
        if !tied {
            // dW_enc[:, dead] += x̄ᵀ·P = xᵀ·P − b_dec ⊗ 1ᵀP   (d×n_dead, then scattered).
            let we = &mut self.buf[..d * nd];
            gemm(
                1.0,
                xm.t(),
                pm,
                0.0,
                MatMut::row_major("dW_enc_dead", we, d, nd)?,
                Epilogue::None,
                self.pack,
            )?;
            if let Some(b) = m.center {
                for (t, _) in self.dead.iter().enumerate() {
                    let s: f32 = dpa[t..].iter().step_by(nd).sum();
                    for (row, &bi) in we.chunks_exact_mut(nd).zip(b) {
                        row[t] -= bi * s;
                    }
                }
            }
            for (i, row) in we.chunks_exact(nd).enumerate() {
                let dst = &mut acc.enc[i * h..(i + 1) * h];
                for (&v, &j) in row.iter().zip(self.dead) {
                    dst[j as usize] += v;
                }
            }
        }
        Ok(())
    }
}

/// The decoder-norm penalty's gradient for one feature, added to its decoder-gradient
/// row: `grad += (add·fsum / w)·dec_row`, with `w = ‖W_dec,j‖` and `fsum = Σ_rows c_j`
/// (nothing for `w = 0` or `fsum = 0`).
pub(crate) fn add_norm_grad(add: f32, fsum: f32, w: f32, dec_row: &[f32], grad: &mut [f32]) {
    if w > 0.0 && fsum != 0.0 {
        vector::axpy(add * fsum / w, dec_row, grad);
    }
}

/// Columns per tile of the untied encoder gradient in [`super_flush`].
///
/// Measured (session 7, a probe of the backward loop at (n, d, h) = (1024, 384, 3072),
/// L0 43 and 76, one process, interleaved): moving 16 columns at a time from a `d×16`
/// tile cost 2.5–3.5 ms per step over writing the same sums to contiguous rows, most
/// of it in the strided read-modify-write of `dW_enc` (one cache line per row of
/// `dW_enc` 12 KB apart, every 16 features); 64 columns from a `64×d` tile cost
/// 0.8–1.5 ms.
pub(crate) const TILE: usize = 64;

/// `W_enc[i, j0 + t] += tile[t·d + i]` (`=` with `assign`) for the columns that
/// exist, then zero the tile (`W_enc` is `d×h`, the tile `TILE×d`: row `t` is column
/// `j0 + t`).
fn flush_tile(enc: &mut [f32], tile: &mut [f32], h: usize, j0: usize, assign: bool) {
    let d = tile.len() / TILE;
    let w = TILE.min(h - j0);
    for (i, row) in enc.chunks_exact_mut(h).take(d).enumerate() {
        for (t, r) in row[j0..j0 + w].iter_mut().enumerate() {
            // `0 + v` as on a zeroed gradient (`-0.0` becomes `0.0`).
            let v = tile[t * d + i];
            *r = if assign { 0.0 } else { *r } + v;
        }
    }
    tile.fill(0.0);
}

/// `W_enc[:, a..b] = 0` (`W_enc` is `d×h`; nothing for `a ≥ b`).
fn zero_cols(enc: &mut [f32], h: usize, d: usize, a: usize, b: usize) {
    if a < b {
        for row in enc.chunks_exact_mut(h).take(d) {
            row[a..b].fill(0.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_and_collect_agree_with_scalar() {
        let mut row = [0.0f32; 37];
        for (i, v) in row.iter_mut().enumerate() {
            *v = match i % 5 {
                0 => 1.0 + i as f32,
                1 => -0.0,
                2 => -1.0,
                3 if i == 13 => f32::NAN,
                _ => 0.0,
            };
        }
        let mut idx = [u32::MAX; 37];
        let k = collect_row(&row, &mut idx);
        let mut want = (0..37).filter(|&i| is_active(row[i]));
        for &f in &idx[..k] {
            assert_eq!(Some(f as usize), want.next());
        }
        assert_eq!(want.next(), None);
        assert_eq!(count_active(&row), k);
        assert!(idx[..k].contains(&13), "NaN codes are kept");
    }

    #[test]
    fn axpy2_matches_scalar() {
        let x: [f32; 19] = core::array::from_fn(|i| i as f32);
        let y: [f32; 19] = core::array::from_fn(|i| 1.0 - i as f32);
        let mut z = [2.0f32; 19];
        axpy2(0.5, &x, 2.0, &y, &mut z);
        for (i, &v) in z.iter().enumerate() {
            assert_eq!(v, 2.0 + 0.5 * i as f32 + 2.0 * (1.0 - i as f32));
        }
    }

    /// `select_compact` over the compacted candidates keeps the same set and bits as
    /// `topk_among` with the candidates as a mask (ties, NaN, ±0, k ≥ candidates, k = 0).
    #[test]
    fn select_compact_matches_topk_among() {
        let mut state = 11u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as u32
        };
        let trials = if cfg!(miri) { 8 } else { 400 };
        for trial in 0..trials {
            let h = 1 + (next() % 90) as usize;
            let row: [f32; 90] = core::array::from_fn(|_| match next() % 12 {
                0 => 0.0,
                1 => -0.0,
                2 if trial % 4 == 0 => f32::NAN,
                3 if trial % 5 == 0 => -f32::NAN,
                4 => 0.25,
                5 => -0.25,
                _ => (next() % 200) as f32 / 100.0 - 1.0,
            });
            // Every third latent a candidate, or (some trials) most of them.
            let dense = trial % 3 == 0;
            let mask: [bool; 90] = core::array::from_fn(|_| {
                if dense {
                    next() % 8 != 0
                } else {
                    next() % 3 == 0
                }
            });
            let mut cand = [0u32; 90];
            let mut m = 0;
            for (j, _) in mask[..h].iter().enumerate().filter(|(_, c)| **c) {
                cand[m] = j as u32;
                m += 1;
            }
            // k from 0 to past the candidates' number, around m/2 (the complement side).
            let k = match trial % 4 {
                0 => (next() % 12) as usize,
                1 => m / 2 + (next() % 3) as usize,
                2 => m.saturating_sub((next() % 3) as usize),
                _ => m + 1,
            };
            let mut a = row;
            let mut sel = [0.0f32; 90];
            super::super::activation::topk_among(&mut a[..h], &mask[..h], k, &mut sel);
            let mut b = [f32::NAN; 90];
            for (t, &j) in cand[..m].iter().enumerate() {
                b[t] = row[j as usize];
            }
            let mut keys = [0u32; 90];
            select_compact(&mut b[..m], k, &mut keys);
            for (j, x) in a[..h].iter().enumerate() {
                let want = match cand[..m].iter().position(|&c| c as usize == j) {
                    Some(t) => b[t].to_bits(),
                    None => 0,
                };
                assert_eq!(x.to_bits(), want, "trial {trial}, k {k} of {m}, index {j}");
            }
            let kept = b[..m].iter().filter(|v| v.to_bits() != 0).count();
            assert_eq!(kept, k.min(m), "trial {trial}: kept count");
        }
    }

    /// The dead latents' pre-activations by their own product: the encoder's dead
    /// columns (row-major and transposed views), times the input, plus their biases,
    /// against f64 dot products.
    #[test]
    fn aux_pre_by_gemm_matches_dot_products() {
        let (rows, d, h) = (5, 7, 19);
        let x: [f32; 5 * 7] = core::array::from_fn(|i| ((i * 7 % 11) as f32 - 5.0) / 4.0);
        let w: [f32; 7 * 19] = core::array::from_fn(|i| ((i * 5 % 13) as f32 - 6.0) / 8.0);
        let b: [f32; 19] = core::array::from_fn(|i| i as f32 / 16.0 - 0.5);
        let dead: &[u32] = &[0, 3, 4, 11, 18];
        let nd = dead.len();
        let mut pack = [0.0f32; 4096];
        // W_enc (d×h) row-major, and the same matrix as the transposed view of M (h×d).
        let mut m = [0.0f32; 19 * 7];
        for i in 0..d {
            for j in 0..h {
                m[j * d + i] = w[i * h + j];
            }
        }
        let views = [
            MatRef::row_major("W_enc", &w, d, h).unwrap(),
            MatRef::row_major("M", &m, h, d).unwrap().t(),
        ];
        for enc in views {
            let mut e = [f32::NAN; 7 * 5];
            gather_enc_cols(enc, dead, &mut e);
            let mut out = [f32::NAN; 5 * 5];
            aux_pre_by_gemm(&x, &e, &b, dead, &mut out, &mut pack).unwrap();
            for r in 0..rows {
                for (t, &j) in dead.iter().enumerate() {
                    let j = j as usize;
                    let want: f64 = (0..d)
                        .map(|i| f64::from(x[r * d + i]) * f64::from(w[i * h + j]))
                        .sum::<f64>()
                        + f64::from(b[j]);
                    let got = f64::from(out[r * nd + t]);
                    assert!(
                        (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
                        "({r}, {t})"
                    );
                }
            }
        }
    }

    /// Compaction gathers the dead latents' columns, for every dead-set shape.
    #[test]
    fn compact_in_place_gathers_the_columns() {
        let (rows, h) = (5, 23);
        let a: [f32; 5 * 23] = core::array::from_fn(|i| i as f32 + 0.5);
        let sets: [&[u32]; 4] = [
            &[0],
            &[22],
            &[1, 2, 7, 8, 9, 20],
            &[
                0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22,
            ],
        ];
        for dead in sets {
            let nd = dead.len();
            let mut b = a;
            compact_in_place(&mut b, h, dead);
            for r in 0..rows {
                for (t, &j) in dead.iter().enumerate() {
                    assert_eq!(
                        b[r * nd + t],
                        a[r * h + j as usize],
                        "{nd} dead, ({r}, {t})"
                    );
                }
            }
        }
    }

    #[test]
    fn aux_route_follows_the_cost_estimate() {
        assert!(aux_by_gemm(307, 192));
        assert!(aux_by_gemm(5 * 192, 192));
        assert!(!aux_by_gemm(5 * 192 + 1, 192));
        assert!(!aux_by_gemm(3000, 192));
    }

    #[test]
    fn auto_uses_the_crossover() {
        assert!(use_sparse(Path::Auto, 0, 4, 100));
        assert!(!use_sparse(Path::Auto, 400, 4, 100));
        assert!(!use_sparse(Path::Dense, 0, 4, 100));
        assert!(use_sparse(Path::Sparse, 400, 4, 100));
    }
}
