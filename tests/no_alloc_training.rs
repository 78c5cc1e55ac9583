//! Zero-allocation check for the training entry points: the optimizers, the
//! transactional step, the streaming trainer, the metrics and the toy generator.
//!
//! Same pattern as `tests/no_alloc.rs`: its own binary with a counting
//! `#[global_allocator]`, counting per thread only while [`count_allocs`] has it on.
//! Buffers are created outside the counted closures.

use sae_kernels::metrics::{Metrics, eval_scratch_len, evaluate, metrics_state_len, mmcs};
use sae_kernels::optim::{L1Warmup, LrSchedule};
use sae_kernels::toy::{ToyConfig, toy_init, toy_rng, toy_sample};
use sae_kernels::train::{StreamConfig, StreamingTrainer, streaming_state_len};
use sae_kernels::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    static ACTIVE: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<usize> = const { Cell::new(0) };
}

fn note() {
    // `try_with`: the allocator may be called while thread-locals are being torn down.
    let _ = ACTIVE.try_with(|a| {
        if a.get() {
            COUNT.with(|c| c.set(c.get() + 1));
        }
    });
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so
// `System`'s guarantees are ours; `note` only touches thread-local `Cell`s with
// `const` initialisers, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        note();
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract for `l`.
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        note();
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        note();
        // SAFETY: the caller guarantees `p` came from this allocator with layout `l`.
        unsafe { System.realloc(p, l, new) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: as for `realloc`.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Run `f` with the counter on; return its result and the number of allocations.
fn count_allocs<R>(f: impl FnOnce() -> R) -> (R, usize) {
    COUNT.with(|c| c.set(0));
    ACTIVE.with(|a| a.set(true));
    let r = f();
    ACTIVE.with(|a| a.set(false));
    (r, COUNT.with(Cell::get))
}

#[test]
fn counter_sees_allocations() {
    let (v, n) = count_allocs(|| Vec::<u8>::with_capacity(10));
    assert!(n >= 1, "the counting allocator saw nothing");
    drop(v);
}

#[test]
fn optimizers_and_train_step_do_not_allocate() {
    let dims = Dims::new(16, 32).unwrap();
    let (mut m, mut b) = (vec![0.0f32; dims.m_len()], vec![0.0f32; dims.h]);
    init_tied(TiedParamsMut::new(dims, &mut m, &mut b).unwrap(), 1);
    let x: Vec<f32> = (0..40 * 16).map(|i| (i % 9) as f32 * 0.1).collect();
    let mut ws = vec![0.0f32; train_step_workspace_len(dims, 16)];
    let (gm, gb) = (vec![0.01f32; dims.m_len()], vec![0.01f32; dims.h]);
    for opt in [
        Optimizer::default(),
        Optimizer::Sgd { momentum: 0.9 },
        Optimizer::Sgd { momentum: 0.0 },
    ] {
        let mut state = vec![0.0f32; opt.state_len(dims)];
        let (r, n) = count_allocs(|| {
            let mut o = Optim::new(opt, dims, &mut state, 0)?;
            o.step(
                TiedParamsMut::new(dims, &mut m, &mut b)?,
                TiedParams::new(dims, &gm, &gb)?,
                1e-3,
            )?;
            let hyper = StepHyper {
                alpha: 0.01,
                lr: 1e-3,
            };
            train_step(
                TiedParamsMut::new(dims, &mut m, &mut b)?,
                &mut o,
                &x,
                40,
                hyper,
                &mut ws,
            )?;
            // The refused (NaN) path allocates nothing either.
            let mut bad = [0.0f32; 16];
            bad[3] = f32::NAN;
            let e = train_step(
                TiedParamsMut::new(dims, &mut m, &mut b)?,
                &mut o,
                &bad,
                1,
                hyper,
                &mut ws,
            );
            assert!(e.is_err());
            Ok::<_, Error>(())
        });
        r.expect("training ops");
        assert_eq!(n, 0, "{opt:?}: {n} allocations");
    }
}

#[test]
fn streaming_trainer_metrics_and_toy_do_not_allocate() {
    let dims = Dims::new(16, 32).unwrap();
    let (mut m, mut b) = (vec![0.0f32; dims.m_len()], vec![0.0f32; dims.h]);
    init_tied(TiedParamsMut::new(dims, &mut m, &mut b).unwrap(), 1);
    let cfg = StreamConfig {
        optimizer: Optimizer::default(),
        lr: LrSchedule::constant(1e-3),
        l1: L1Warmup {
            alpha: 0.05,
            warmup_steps: 10,
        },
        block_rows: 4,
    };
    let mut state = vec![0.0f32; streaming_state_len(dims, &cfg)];
    let toy = ToyConfig::new(16, 24);
    let (mut f, mut p) = (vec![0.0f32; 24 * 16], vec![0.0f32; 24]);
    let mut x = vec![0.0f32; 10 * 16];
    let mut rng = toy_rng(3);
    let mut mstate = vec![0.0f64; metrics_state_len(dims)];
    let mut scratch = vec![0.0f32; eval_scratch_len(dims, 4)];
    let (r, n) = count_allocs(|| {
        toy_init(&toy, 2, &mut f, &mut p)?;
        toy_sample(&toy, &f, &p, &mut rng, &mut x, 10, None)?;
        let mut t =
            StreamingTrainer::new(TiedParamsMut::new(dims, &mut m, &mut b)?, cfg, &mut state)?;
        for row in x.chunks_exact(16) {
            t.push(row)?;
        }
        t.step_block(&x, 10)?;
        let mut met = Metrics::new(dims, &mut mstate)?;
        evaluate(t.params(), &x, 10, &mut met, &mut scratch)?;
        let s = met.summary(10);
        let score = mmcs(&f, 24, t.params().m(), 32, 16)?;
        Ok::<_, Error>((s.rows, score))
    });
    let (rows, score) = r.expect("streaming ops");
    assert_eq!(n, 0, "{n} allocations");
    assert_eq!(rows, 10);
    assert!(score > 0.0);
}
