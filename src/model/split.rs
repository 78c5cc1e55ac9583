//! The element-wise passes of a row block (masks, residuals, bias sums, per-row loss
//! terms), split across threads with the `parallel` feature.
//!
//! Every split keeps the single-threaded result bit for bit: element-wise passes are
//! cut by rows (each element computed by the same operation), per-row reductions are
//! computed row by row into per-row values and summed afterwards in row order on the
//! calling thread, and the bias sums `Σ_rows` are cut by columns (each column still
//! sums its rows in order). Without the feature, or below [`MIN_SPLIT`] elements, or
//! with a pool of one thread, everything runs on the calling thread.
//!
//! Split passes run on the pool's threads as lanes that claim pieces of the work
//! (about [`PIECE`] elements, or [`PIECE_COLS`] columns) one at a time from a shared
//! list, as the `parallel` GEMM does with its items of C: on an oversubscribed machine
//! a descheduled lane delays only the piece it holds, the others take the rest, and a
//! lane that never got started costs nothing.

/// Elements (floats touched per pass) below which a pass stays on the calling thread:
/// about 10 µs of work, so that the hand-over costs a few percent at most.
#[cfg_attr(not(feature = "parallel"), allow(dead_code))]
pub(crate) const MIN_SPLIT: usize = 1 << 15;

/// Passes that ran split (tests check that the split path was taken).
#[cfg(all(test, feature = "parallel"))]
pub(crate) static RUNS: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

/// Whether a pass over `elems` elements should be split across two threads.
#[inline]
pub(crate) fn worth_splitting(elems: usize) -> bool {
    #[cfg(feature = "parallel")]
    {
        elems >= MIN_SPLIT && crate::kernels::gemm::max_lanes() >= 2
    }
    #[cfg(not(feature = "parallel"))]
    {
        let _ = elems;
        false
    }
}

/// Elements per piece that a lane claims (about 5 µs of work).
#[cfg_attr(not(feature = "parallel"), allow(dead_code))]
pub(crate) const PIECE: usize = 1 << 14;

/// Columns per piece of [`col_sums`] (a multiple of 8: whole vectors).
pub(crate) const PIECE_COLS: usize = 128;

/// `f(item)` for every item of `work`, on up to `parts` lanes of the current pool when
/// `split` (each lane claiming the next item until none is left), else in order on the
/// calling thread.
pub(crate) fn for_each_claimed<I, F>(split: bool, parts: usize, work: I, f: &F)
where
    I: Iterator + Send,
    I::Item: Send,
    F: Fn(I::Item) + Sync,
{
    #[cfg(feature = "parallel")]
    if split && parts >= 2 {
        #[cfg(test)]
        RUNS.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
        let parts = parts.min(crate::kernels::gemm::max_lanes());
        let work = std::sync::Mutex::new(work);
        let lane = || {
            loop {
                let item = work.lock().unwrap_or_else(|e| e.into_inner()).next();
                match item {
                    Some(i) => f(i),
                    None => break,
                }
            }
        };
        lanes(parts, &lane);
        return;
    }
    let _ = (split, parts);
    work.for_each(f);
}

/// `lane()` on `n` lanes of the current rayon pool (joined pairwise).
#[cfg(feature = "parallel")]
fn lanes<L: Fn() + Sync>(n: usize, lane: &L) {
    if n <= 1 {
        lane();
    } else {
        let h = n / 2;
        rayon::join(|| lanes(h, lane), || lanes(n - h, lane));
    }
}

/// `s` in pieces of `len` (at least 1), then empty slices without end.
fn pieces(s: &[f32], len: usize) -> impl Iterator<Item = &[f32]> + Send {
    s.chunks(len.max(1))
        .chain(core::iter::repeat_with(<&[f32]>::default))
}

/// [`pieces`] of a mutable slice.
fn pieces_mut(s: &mut [f32], len: usize) -> impl Iterator<Item = &mut [f32]> + Send {
    s.chunks_mut(len.max(1))
        .chain(core::iter::repeat_with(<&mut [f32]>::default))
}

/// `f()` for a call touching about `elems` elements: run inside the rayon pool with
/// `parallel` when a pass of it could be split ([`worth_splitting`]; one hand-over
/// for the whole call, so that the products' and the passes' splits inside it are
/// cheap joins of a pool thread instead of one hand-over each), else on the calling
/// thread (small calls then neither wait for nor allocate in the pool).
#[inline]
pub(crate) fn in_pool<R: Send>(elems: usize, f: impl FnOnce() -> R + Send) -> R {
    #[cfg(feature = "parallel")]
    if rayon::current_thread_index().is_none() && worth_splitting(elems) {
        return rayon::scope(|_| f());
    }
    let _ = elems;
    f()
}

/// At most how many threads a split pass uses (with `parallel`; capped again by the
/// current pool's size when it splits), else 1. A constant: asking rayon for the pool
/// size would start the global pool, which small calls must not do (they neither
/// wait for nor allocate in it).
#[inline]
pub(crate) const fn parts() -> usize {
    if cfg!(feature = "parallel") { 8 } else { 1 }
}

/// `f(a, b)` over matching row ranges of `a` (rows of `la` elements) and `b` (rows of
/// `lb`), cut by whole rows into pieces run on up to `parts` threads. For passes whose
/// result for a row depends only on that row. Either row length may be 0 (that slice
/// is then empty in every call).
pub(crate) fn rows_mut<F>(a: &mut [f32], la: usize, b: &[f32], lb: usize, parts: usize, f: &F)
where
    F: Fn(&mut [f32], &[f32]) + Sync,
{
    rows_mut_at(a, la, b, lb, parts, &|_, a, b| f(a, b));
}

/// [`rows_mut`] with the index of each piece's first row: `f(r0, a, b)`.
pub(crate) fn rows_mut_at<F>(a: &mut [f32], la: usize, b: &[f32], lb: usize, parts: usize, f: &F)
where
    F: Fn(usize, &mut [f32], &[f32]) + Sync,
{
    let rows = match a.len().checked_div(la) {
        Some(r) => r,
        None => b.len().checked_div(lb).unwrap_or(0),
    };
    let split = parts >= 2 && rows >= 2 && worth_splitting(rows * (la + lb));
    if !split {
        f(0, a, b);
        return;
    }
    let per = (PIECE / (la + lb).max(1)).clamp(1, rows);
    let work = (0..rows)
        .step_by(per)
        .zip(pieces_mut(a, per * la))
        .zip(pieces(b, per * lb));
    for_each_claimed(true, parts, work, &|((r0, a), b)| f(r0, a, b));
}

/// `out (+)= Σ_rows m[r, ·]` for `m` row-major with `out.len()` columns, the rows added
/// in order (with `first`, the first row is copied instead of added), cut by columns
/// into pieces run on up to `parts` threads: every column sums its rows in the same
/// order as on one thread.
pub(crate) fn col_sums(m: &[f32], out: &mut [f32], first: bool, parts: usize) {
    let cols = out.len();
    let rows = m.len().checked_div(cols).unwrap_or(0);
    let split = parts >= 2 && cols > PIECE_COLS && worth_splitting(rows * cols);
    let per = if split { PIECE_COLS } else { cols.max(1) };
    let work = out.chunks_mut(per).enumerate();
    for_each_claimed(split, parts, work, &|(i, out): (usize, &mut [f32])| {
        let c0 = i * per;
        for (r, row) in m.chunks_exact(cols).enumerate() {
            let src = &row[c0..c0 + out.len()];
            if first && r == 0 {
                out.copy_from_slice(src);
            } else {
                crate::kernels::vector::axpy(1.0, src, out);
            }
        }
    });
}

#[cfg(all(test, feature = "parallel"))]
mod parallel_tests {
    use super::RUNS;
    use crate::model::{
        Activation, Arch, AuxK, Dims, ForwardOutputs, LossOptions, LossParts, Params, ParamsMut,
        Path, Penalty, Weights, forward, forward_scratch_len, grad_scratch_len, loss_and_grad,
    };
    use core::sync::atomic::Ordering;
    use std::{vec, vec::Vec};

    fn fill(len: usize, seed: u64, scale: f32) -> Vec<f32> {
        let mut v = crate::kernels::gemm::test_fill(len, seed);
        v.iter_mut().for_each(|x| *x *= scale);
        v
    }

    /// Everything one call returns: the loss parts, the gradients, and the forward
    /// pass's codes, reconstruction and per-row terms.
    #[derive(PartialEq)]
    struct Out {
        loss: [u32; 5],
        fwd: [u32; 5],
        grads: Vec<u32>,
        rows: Vec<u32>,
    }

    fn bits(l: LossParts) -> [u32; 5] {
        [l.loss, l.sq_err, l.l1, l.l0, l.aux].map(f32::to_bits)
    }

    /// `loss_and_grad` and `forward` of one batch (`n` rows, blocks of up to 256
    /// rows: one full and one ragged block) in a rayon pool of `threads` threads, or
    /// (`threads == 0`) called from outside any pool.
    fn run(arch: Arch, dims: Dims, n: usize, path: Path, threads: usize) -> Out {
        let Dims { d, h } = dims;
        let mut params = fill(arch.param_len(dims), 1, 0.1);
        if arch.activation == Activation::JumpRelu {
            // Thresholds (the last `h` values) small and positive.
            let len = params.len();
            for t in &mut params[len - h..] {
                *t = t.abs() * 0.1;
            }
        }
        let x = fill(n * d, 2, 1.0);
        let dead: Vec<bool> = (0..h).map(|i| i % 3 == 0).collect();
        let topk = matches!(arch.activation, Activation::TopK { .. });
        let opts = LossOptions {
            path,
            aux: topk.then_some(AuxK {
                dead: &dead,
                k_aux: 16,
                coefficient: 0.5,
            }),
            jumprelu_bandwidth: if arch.activation == Activation::JumpRelu {
                0.05
            } else {
                0.0
            },
            ..LossOptions::alpha(0.3)
        };
        let mut grads = vec![f32::NAN; params.len()];
        let mut scratch = vec![0.0f32; grad_scratch_len(arch, dims, 256)];
        let mut fscratch = vec![0.0f32; forward_scratch_len(arch, dims, 256)];
        let (mut codes, mut recon) = (vec![0.0f32; n * h], vec![0.0f32; n * d]);
        let (mut row_sq, mut row_l1) = (vec![0.0f32; n], vec![0.0f32; n]);
        let mut call = || {
            let p = Params::from_flat(arch, dims, &params).unwrap();
            let g = ParamsMut::from_flat(arch, dims, &mut grads).unwrap();
            let loss = loss_and_grad(p, &x, n, &opts, g, &mut scratch).unwrap();
            let out = ForwardOutputs {
                codes: Some(&mut codes),
                recon: Some(&mut recon),
                row_sq_err: Some(&mut row_sq),
                row_l1: Some(&mut row_l1),
            };
            let fwd = forward(p, &x, n, &opts, out, &mut fscratch).unwrap();
            (loss, fwd)
        };
        // 0: from this thread (outside any pool): the calls hand themselves over to
        // the global pool.
        let (loss, fwd) = if threads == 0 {
            call()
        } else {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(call)
        };
        let all = [&codes[..], &recon, &row_sq, &row_l1];
        Out {
            loss: bits(loss),
            fwd: bits(fwd),
            grads: grads.iter().map(|v| v.to_bits()).collect(),
            rows: all
                .iter()
                .flat_map(|v| v.iter().map(|v| v.to_bits()))
                .collect(),
        }
    }

    /// With 2 and 3 threads (and the global pool), the loss, every gradient and every forward output equal
    /// the single-threaded ones bit for bit, for every architecture and penalty (the
    /// split residual, masks and bias sums, the per-row loss terms, the active counts
    /// and the decoder bias), on the dense and the automatic path, with widths that
    /// are not multiples of 8 (ragged column pieces) and a ragged last block; and the
    /// split path really ran.
    #[test]
    fn split_matches_single_thread() {
        let dims = Dims::new(132, 524).unwrap();
        let n = 300;
        let untied_l1 = Arch {
            weights: Weights::Untied {
                center_input: false,
            },
            activation: Activation::Relu,
            penalty: Penalty::L1,
        };
        let archs = [
            Arch::tied(),
            Arch::standard(),
            untied_l1,
            Arch::topk(24),
            Arch::jumprelu(),
        ];
        for arch in archs {
            for path in [Path::Dense, Path::Auto] {
                let one = run(arch, dims, n, path, 1);
                assert!(one.grads.iter().all(|&b| f32::from_bits(b).is_finite()));
                assert!(f32::from_bits(one.loss[0]) > 0.0);
                for threads in [2, 3, 0] {
                    let before = RUNS.load(Ordering::Relaxed);
                    let many = run(arch, dims, n, path, threads);
                    if threads > 0 || rayon::current_num_threads() >= 2 {
                        assert!(RUNS.load(Ordering::Relaxed) > before, "{arch:?}: not split");
                    }
                    assert!(one.loss == many.loss, "{arch:?} {path:?} {threads}: loss");
                    assert!(one.fwd == many.fwd, "{arch:?} {path:?} {threads}: forward");
                    assert!(
                        one.grads == many.grads,
                        "{arch:?} {path:?} {threads}: grads"
                    );
                    assert!(
                        one.rows == many.rows,
                        "{arch:?} {path:?} {threads}: outputs"
                    );
                }
            }
        }
    }

    /// The column-split bias sums and the row-split passes on their own, against a
    /// plain loop, for widths around the piece boundaries.
    #[test]
    fn parallel_pieces_match_plain_loops() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        for cols in [1usize, 7, 8, 17, 64, 1000] {
            let rows = (super::MIN_SPLIT / cols).max(2) + 3;
            let m = fill(rows * cols, cols as u64, 1.0);
            for first in [true, false] {
                let mut want = fill(cols, 9, 1.0);
                for (r, row) in m.chunks_exact(cols).enumerate() {
                    for (w, &v) in want.iter_mut().zip(row) {
                        *w = if first && r == 0 { v } else { *w + v };
                    }
                }
                let mut got = fill(cols, 9, 1.0);
                pool.install(|| super::col_sums(&m, &mut got, first, 2));
                assert!(
                    want.iter()
                        .zip(&got)
                        .all(|(a, b)| a.to_bits() == b.to_bits())
                );
            }
            let mut a = fill(rows * cols, 3, 1.0);
            let want: Vec<f32> = a.iter().zip(&m).map(|(x, y)| 2.0 * x - y).collect();
            pool.install(|| {
                super::rows_mut(&mut a, cols, &m, cols, 2, &|a: &mut [f32], b: &[f32]| {
                    for (x, &y) in a.iter_mut().zip(b) {
                        *x = 2.0 * *x - y;
                    }
                })
            });
            assert!(want.iter().zip(&a).all(|(x, y)| x.to_bits() == y.to_bits()));
        }
    }
}
