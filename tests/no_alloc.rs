//! Zero-allocation check for every no_std entry point.
//!
//! This integration test is its own binary, so it can install a counting
//! `#[global_allocator]`. The counter is per thread (libtest runs tests on parallel
//! threads) and only counts while [`count_allocs`] has it switched on. All buffers are
//! created outside the counted closure; the closure only calls the library.
//!
//! ## Adding an entry point
//! Write a `fn my_op(fx: &mut Fixture)` that calls it on the fixture's buffers (add
//! buffers to [`Fixture`] if needed, allocated in [`Fixture::new`]) and append
//! `("my_op", my_op)` to [`ENTRY_POINTS`]. The test checks that each entry point
//! returned `Ok` (via `expect`) and allocated nothing, and names the offenders.
//!
//! Runs on the host, under Miri (smaller shapes) and on wasm32-wasip1.

use sae_kernels::kernels::gemm::{Epilogue, MatMut, MatRef, gemm, pack_len};
use sae_kernels::metrics::{Metrics, eval_scratch_len, evaluate, metrics_state_len, mmcs};
use sae_kernels::model::{
    Activation, Arch, AuxK, Dims, ForwardOutputs, LossOptions, Params, ParamsMut, Path, Penalty,
    Weights, decode, decode_scratch_len, encode, encode_scratch_len, forward, forward_scratch_len,
    grad_scratch_len, init_tied, loss_and_grad,
};
use sae_kernels::optim::{L1Warmup, LrSchedule};
use sae_kernels::sparse::{
    Overflow, RowLimit, decode_csr, decode_sparse, encode_csr, encode_csr_scratch_len,
    encode_sparse, encode_sparse_scratch_len,
};
use sae_kernels::toy::{ToyConfig, ToyRng, toy_init, toy_rng, toy_sample};
use sae_kernels::train::{
    DeadLatents, ModelMut, ModelRef, StreamConfig, StreamingTrainer, TrainOptions,
    streaming_state_len,
};
use sae_kernels::{
    optim::{Optim, OptimConfig, Optimizer},
    train::{StepHyper, train_step, train_step_workspace_len},
};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    static ACTIVE: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<usize> = const { Cell::new(0) };
    static BYTES: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    // `try_with`: the allocator may be called while thread-locals are being torn down.
    let _ = ACTIVE.try_with(|a| {
        if a.get() {
            COUNT.with(|c| c.set(c.get() + 1));
            BYTES.with(|b| b.set(b.get() + size));
        }
    });
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so
// `System`'s guarantees are ours; `note` only touches thread-local `Cell`s with
// `const` initialisers, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        note(l.size());
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract for `l`.
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        note(l.size());
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        note(new);
        // SAFETY: the caller guarantees `p` came from this allocator with layout `l`,
        // and every allocation here is `System`'s.
        unsafe { System.realloc(p, l, new) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: as for `realloc`.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Run `f` with the counter on; return its result, the number of allocations
/// (including reallocations) and the bytes requested.
fn count_allocs<R>(f: impl FnOnce() -> R) -> (R, usize, usize) {
    COUNT.with(|c| c.set(0));
    BYTES.with(|b| b.set(0));
    ACTIVE.with(|a| a.set(true));
    let r = f();
    ACTIVE.with(|a| a.set(false));
    (r, COUNT.with(Cell::get), BYTES.with(Cell::get))
}

/// Every buffer any entry point needs, allocated up front.
struct Fixture {
    dims: Dims,
    n: usize,
    m: Vec<f32>,
    b: Vec<f32>,
    x: Vec<f32>,
    codes: Vec<f32>,
    recon: Vec<f32>,
    row_sq: Vec<f32>,
    row_l1: Vec<f32>,
    gm: Vec<f32>,
    gb: Vec<f32>,
    scratch: Vec<f32>,
    row_ptr: Vec<usize>,
    csr_idx: Vec<u32>,
    csr_val: Vec<f32>,
    train: TrainBufs,
    /// Parameters and gradients of the untied architectures (room for JumpReLU's five
    /// tensors), and a dead-latent mask for AuxK.
    untied: Vec<f32>,
    ugrad: Vec<f32>,
    dead: Vec<bool>,
}

/// The architectures `op_every_architecture` runs (besides the tied seed model).
const ARCHS: [Arch; 5] = [
    Arch::standard(),
    Arch::topk(3),
    Arch::jumprelu(),
    Arch {
        weights: Weights::Untied {
            center_input: false,
        },
        activation: Activation::TopK { k: 5 },
        penalty: Penalty::L1,
    },
    Arch {
        weights: Weights::Tied,
        activation: Activation::TopK { k: 4 },
        penalty: Penalty::DecoderNormL1,
    },
];

/// Buffers of the training entry points (optimizers, transactional step, streaming
/// trainer, metrics, toy generator).
struct TrainBufs {
    adam: Vec<f32>,
    momentum: Vec<f32>,
    workspace: Vec<f32>,
    stream_cfg: StreamConfig,
    stream: Vec<f32>,
    metrics: Vec<f64>,
    eval: Vec<f32>,
    toy: ToyConfig,
    features: Vec<f32>,
    probs: Vec<f32>,
    rng: ToyRng,
    // Untied TopK (rescaled, AuxK, clipping) training and evaluation.
    untied: Vec<f32>,
    untied_adam: Vec<f32>,
    untied_ws: Vec<f32>,
    untied_eval: Vec<f32>,
    since: Vec<u32>,
    flags: Vec<bool>,
}

impl TrainBufs {
    fn new(dims: Dims, block: usize) -> Self {
        let stream_cfg = StreamConfig {
            optimizer: Optimizer::default().into(),
            lr: LrSchedule::constant(1e-3),
            l1: L1Warmup {
                alpha: 1e-3,
                warmup_steps: 5,
            },
            block_rows: 2,
        };
        let toy = ToyConfig::new(dims.d, dims.h / 2);
        Self {
            adam: vec![0.0; Optimizer::default().state_len(Arch::tied().param_len(dims))],
            momentum: vec![
                0.0;
                Optimizer::Sgd { momentum: 0.9 }.state_len(Arch::tied().param_len(dims))
            ],
            workspace: vec![
                0.0;
                train_step_workspace_len(
                    Arch::tied(),
                    TrainOptions::default(),
                    dims,
                    block,
                    false
                )
            ],
            stream: vec![
                0.0;
                streaming_state_len(
                    Arch::tied(),
                    TrainOptions::default(),
                    dims,
                    &stream_cfg,
                    false
                )
            ],
            stream_cfg,
            metrics: vec![0.0; metrics_state_len(dims)],
            eval: vec![0.0; eval_scratch_len(Arch::tied(), TrainOptions::default(), dims, block)],
            untied: (0..TOPK.param_len(dims))
                .map(|i| ((i * 13 % 7) as f32 - 3.0) * 0.05)
                .collect(),
            untied_adam: vec![0.0; Optimizer::default().state_len(TOPK.param_len(dims))],
            untied_ws: vec![
                0.0;
                train_step_workspace_len(TOPK, topk_options(dims), dims, block, true)
            ],
            untied_eval: vec![0.0; eval_scratch_len(TOPK, topk_options(dims), dims, block)],
            since: vec![0; dims.h],
            flags: vec![false; 2 * dims.h],
            toy,
            features: vec![0.0; toy.g * toy.d],
            probs: vec![0.0; toy.g],
            rng: toy_rng(1),
        }
    }
}

impl Fixture {
    fn new() -> Self {
        // n spans several row blocks (scratch is sized for `block` rows), so the
        // block loops run more than once. Miri is slow: smaller shapes there.
        let (d, h, n, block) = if cfg!(miri) {
            (5, 12, 5, 2)
        } else {
            (16, 64, 70, 32)
        };
        let dims = Dims::new(d, h).unwrap();
        let big = Arch::topk(3);
        let scratch_len = forward_scratch_len(Arch::tied(), dims, block)
            .max(grad_scratch_len(Arch::tied(), dims, block))
            .max(grad_scratch_len(big, dims, block))
            .max(forward_scratch_len(big, dims, block))
            .max(encode_scratch_len(big, dims, block))
            .max(grad_scratch_len(Arch::standard(), dims, block))
            .max(encode_scratch_len(Arch::tied(), dims, 1))
            .max(decode_scratch_len(dims, 1))
            .max(encode_sparse_scratch_len(Arch::tied(), dims))
            .max(encode_csr_scratch_len(Arch::tied(), dims, block));
        let mut fx = Fixture {
            dims,
            n,
            m: vec![0.0; dims.m_len()],
            b: vec![0.0; h],
            x: (0..n * d)
                .map(|i| ((i * 7 % 13) as f32 - 6.0) * 0.1)
                .collect(),
            codes: vec![0.0; n * h],
            recon: vec![0.0; n * d],
            row_sq: vec![0.0; n],
            row_l1: vec![0.0; n],
            gm: vec![0.0; dims.m_len()],
            gb: vec![0.0; h],
            scratch: vec![0.0; scratch_len],
            row_ptr: vec![0; n + 1],
            csr_idx: vec![0; n * h],
            csr_val: vec![0.0; n * h],
            train: TrainBufs::new(dims, block),
            untied: (0..Arch::jumprelu().param_len(dims))
                .map(|i| ((i * 5 % 11) as f32 - 5.0) * 0.05)
                .collect(),
            ugrad: vec![0.0; Arch::jumprelu().param_len(dims)],
            dead: (0..h).map(|j| j % 3 == 0).collect(),
        };
        init_tied(ParamsMut::tied(dims, &mut fx.m, &mut fx.b).unwrap(), 3);
        // Some positive biases so that codes are not all zero.
        for (j, v) in fx.b.iter_mut().enumerate() {
            *v = (j % 3) as f32 * 0.05;
        }
        fx
    }
}

fn op_init_tied(fx: &mut Fixture) {
    init_tied(ParamsMut::tied(fx.dims, &mut fx.m, &mut fx.b).unwrap(), 11);
}

fn op_encode(fx: &mut Fixture) {
    let p = Params::tied(fx.dims, &fx.m, &fx.b).unwrap();
    encode(p, &fx.x, fx.n, &mut fx.codes, &mut fx.scratch).expect("encode");
}

fn op_decode(fx: &mut Fixture) {
    let p = Params::tied(fx.dims, &fx.m, &fx.b).unwrap();
    decode(p, &fx.codes, fx.n, &mut fx.recon, &mut fx.scratch).expect("decode");
}

fn op_forward_all_outputs(fx: &mut Fixture) {
    let p = Params::tied(fx.dims, &fx.m, &fx.b).unwrap();
    let out = ForwardOutputs {
        codes: Some(&mut fx.codes),
        recon: Some(&mut fx.recon),
        row_sq_err: Some(&mut fx.row_sq),
        row_l1: Some(&mut fx.row_l1),
    };
    forward(
        p,
        &fx.x,
        fx.n,
        &LossOptions::alpha(1e-3),
        out,
        &mut fx.scratch,
    )
    .expect("forward");
}

fn op_forward_loss_only(fx: &mut Fixture) {
    let p = Params::tied(fx.dims, &fx.m, &fx.b).unwrap();
    let out = ForwardOutputs::default();
    forward(
        p,
        &fx.x,
        fx.n,
        &LossOptions::alpha(1e-3),
        out,
        &mut fx.scratch,
    )
    .expect("forward");
}

fn op_loss_and_grad(fx: &mut Fixture) {
    let p = Params::tied(fx.dims, &fx.m, &fx.b).unwrap();
    let g = ParamsMut::tied(fx.dims, &mut fx.gm, &mut fx.gb).unwrap();
    loss_and_grad(
        p,
        &fx.x,
        fx.n,
        &LossOptions::alpha(1e-3),
        g,
        &mut fx.scratch,
    )
    .expect("loss_and_grad");
}

/// Plain SGD (`momentum: 0`, no state) on the tied model, `lr` given.
fn plain_sgd(fx: &mut Fixture, lr: f32) -> Result<(), sae_kernels::Error> {
    let pc = Arch::tied().param_len(fx.dims);
    let mut o = Optim::new(Optimizer::Sgd { momentum: 0.0 }, fx.dims, pc, &mut [], 0)?;
    let g = Params::tied(fx.dims, &fx.gm, &fx.gb)?;
    let mut p = ParamsMut::tied(fx.dims, &mut fx.m, &mut fx.b)?;
    o.step(&mut p.tensors_mut(), &g.tensors(), lr)
}

fn op_plain_sgd(fx: &mut Fixture) {
    plain_sgd(fx, 1e-2).expect("plain SGD");
}

fn op_optimizers(fx: &mut Fixture) {
    let t = &mut fx.train;
    for (opt, state) in [
        (Optimizer::default(), &mut t.adam),
        (Optimizer::Sgd { momentum: 0.9 }, &mut t.momentum),
    ] {
        let cfg = OptimConfig {
            rule: opt,
            max_grad_norm: Some(0.5),
            unit_norm_decoder: true,
        };
        let mut o = Optim::new(cfg, fx.dims, Arch::tied().param_len(fx.dims), state, 0)
            .expect("Optim::new");
        let g = Params::tied(fx.dims, &fx.gm, &fx.gb).unwrap();
        let mut p = ParamsMut::tied(fx.dims, &mut fx.m, &mut fx.b).unwrap();
        o.step(&mut p.tensors_mut(), &g.tensors(), 1e-3)
            .expect("Optim::step");
    }
}

fn op_train_step(fx: &mut Fixture) {
    let t = &mut fx.train;
    let pc = Arch::tied().param_len(fx.dims);
    let mut o = Optim::new(Optimizer::default(), fx.dims, pc, &mut t.adam, 1).unwrap();
    let hyper = StepHyper {
        alpha: 1e-3,
        lr: 1e-3,
    };
    let p = ParamsMut::tied(fx.dims, &mut fx.m, &mut fx.b).unwrap();
    train_step(p, &mut o, &fx.x, fx.n, hyper, None, &mut t.workspace).expect("train_step");
    // The refused path (NaN in the batch) allocates nothing either.
    let d = fx.dims.d;
    let saved = fx.x[d];
    fx.x[d] = f32::NAN;
    let p = ParamsMut::tied(fx.dims, &mut fx.m, &mut fx.b).unwrap();
    let r = train_step(p, &mut o, &fx.x[..2 * d], 2, hyper, None, &mut t.workspace);
    fx.x[d] = saved;
    assert!(r.is_err(), "NaN batch accepted");

    // Untied TopK: rescaled by decoder norms, AuxK on tracked dead latents, clipping.
    let dims = fx.dims;
    let options = topk_options(dims);
    let cfg = OptimConfig {
        rule: Optimizer::default(),
        max_grad_norm: Some(1.0),
        unit_norm_decoder: false,
    };
    let mut o = Optim::new(cfg, dims, TOPK.param_len(dims), &mut t.untied_adam, 0).unwrap();
    let mut dead = DeadLatents::new(&mut t.since, &mut t.flags, 0).unwrap();
    for _ in 0..2 {
        let p = ModelMut {
            params: ParamsMut::from_flat(TOPK, dims, &mut t.untied).unwrap(),
            options,
        };
        train_step(
            p,
            &mut o,
            &fx.x,
            fx.n,
            hyper,
            Some(&mut dead),
            &mut t.untied_ws,
        )
        .expect("untied train_step");
    }
    let p = ModelRef {
        params: Params::from_flat(TOPK, dims, &t.untied).unwrap(),
        options,
    };
    let mut met = Metrics::new(dims, &mut t.metrics).unwrap();
    evaluate(p, &fx.x, fx.n, &mut met, &mut t.untied_eval).expect("untied evaluate");
}

/// TopK with k = 2 and SAELens' training options (rescaling, AuxK k_aux = d/2).
const TOPK: Arch = Arch::topk(2);

fn topk_options(dims: Dims) -> TrainOptions {
    TrainOptions::saelens_topk(dims.d)
}

fn op_streaming_trainer(fx: &mut Fixture) {
    let t = &mut fx.train;
    let p = ParamsMut::tied(fx.dims, &mut fx.m, &mut fx.b).unwrap();
    let mut s = StreamingTrainer::new(p, t.stream_cfg, &mut t.stream).expect("streaming");
    for row in fx.x.chunks_exact(fx.dims.d).take(5) {
        s.push(row).expect("push");
    }
    s.step_block(&fx.x, fx.n).expect("step_block");
}

fn op_metrics_and_toy(fx: &mut Fixture) {
    let t = &mut fx.train;
    toy_init(&t.toy, 2, &mut t.features, &mut t.probs).expect("toy_init");
    let n = fx.n.min(8);
    let xs = &mut fx.recon[..n * fx.dims.d];
    toy_sample(&t.toy, &t.features, &t.probs, &mut t.rng, xs, n, None).expect("toy_sample");
    let p = Params::tied(fx.dims, &fx.m, &fx.b).unwrap();
    let mut met = Metrics::new(fx.dims, &mut t.metrics).unwrap();
    evaluate(p, &fx.x, fx.n, &mut met, &mut t.eval).expect("evaluate");
    let _ = met.summary(16);
    mmcs(&t.features, t.toy.g, &fx.m, fx.dims.h, fx.dims.d).expect("mmcs");
}

fn op_gemm_strided(fx: &mut Fixture) {
    // C (n×h) ← 0.5·X·Mᵀ + 0.25·C with the bias-ReLU epilogue: a transposed,
    // strided operand, β ≠ 0 and the epilogue in one call.
    let Dims { d, h } = fx.dims;
    let n = fx.n;
    let need = pack_len(n, h, d);
    gemm(
        0.5,
        MatRef::row_major("x", &fx.x, n, d).unwrap(),
        MatRef::row_major("m", &fx.m, h, d).unwrap().t(),
        0.25,
        MatMut::row_major("c", &mut fx.codes, n, h).unwrap(),
        Epilogue::BiasRelu(&fx.b),
        &mut fx.scratch[..need],
    )
    .expect("gemm");
}

fn op_sparse_path(fx: &mut Fixture) {
    let p = Params::tied(fx.dims, &fx.m, &fx.b).unwrap();
    let out = ForwardOutputs {
        recon: Some(&mut fx.recon),
        ..Default::default()
    };
    forward(
        p,
        &fx.x,
        fx.n,
        &LossOptions {
            path: Path::Sparse,
            ..LossOptions::alpha(1e-3)
        },
        out,
        &mut fx.scratch,
    )
    .expect("forward");
    let g = ParamsMut::tied(fx.dims, &mut fx.gm, &mut fx.gb).unwrap();
    loss_and_grad(
        p,
        &fx.x,
        fx.n,
        &LossOptions {
            path: Path::Sparse,
            ..LossOptions::alpha(1e-3)
        },
        g,
        &mut fx.scratch,
    )
    .expect("loss_and_grad");
}

fn op_sparse_outputs(fx: &mut Fixture) {
    let p = Params::tied(fx.dims, &fx.m, &fx.b).unwrap();
    let d = fx.dims.d;
    let mut one = heapless::Vec::<(u32, f32), 128>::new();
    encode_sparse(p, &fx.x[..d], &mut one, Overflow::Error, &mut fx.scratch).expect("encode");
    let mut few = heapless::Vec::<(u32, f32), 2>::new();
    encode_sparse(
        p,
        &fx.x[..d],
        &mut few,
        Overflow::KeepLargest,
        &mut fx.scratch,
    )
    .expect("top-k");
    // Capacity errors do not allocate either.
    let _ = encode_sparse(p, &fx.x[..d], &mut few, Overflow::Error, &mut fx.scratch);
    decode_sparse(p, &one, &mut fx.recon[..d]).expect("decode_sparse");
    let (ptr, idx, val) = (&mut fx.row_ptr, &mut fx.csr_idx, &mut fx.csr_val);
    for limit in [RowLimit::TopK(3), RowLimit::All] {
        encode_csr(p, &fx.x, fx.n, limit, ptr, idx, val, &mut fx.scratch).expect("encode_csr");
    }
    decode_csr(p, fx.n, ptr, idx, val, &mut fx.recon).expect("decode_csr");
}

fn op_error_paths(fx: &mut Fixture) {
    // Rejected calls build an `Error` (a `Copy` enum) and must not allocate either.
    let p = Params::tied(fx.dims, &fx.m, &fx.b).unwrap();
    let short = &mut fx.scratch[..1];
    // (One row needs no scratch any more, so a wrong `codes` length is the error here.)
    assert!(encode(p, &fx.x, fx.n, &mut fx.codes[1..], short).is_err());
    assert!(
        forward(
            p,
            &fx.x,
            fx.n,
            &LossOptions::alpha(f32::NAN),
            ForwardOutputs::default(),
            short
        )
        .is_err()
    );
    assert!(decode(p, &fx.codes, 0, &mut fx.recon, short).is_err());
    assert!(plain_sgd(fx, f32::INFINITY).is_err());
}

/// One entry point's call on the fixture.
type Op = fn(&mut Fixture);

/// The entry points checked by [`entry_points_do_not_allocate`], in call order (later
/// ones use earlier ones' outputs, e.g. plain SGD the gradients).
/// Every entry point of the core on untied and non-ReLU architectures, both paths,
/// with AuxK for TopK.
fn op_every_architecture(fx: &mut Fixture) {
    let (dims, n) = (fx.dims, fx.n);
    for arch in ARCHS {
        let len = arch.param_len(dims);
        let p = Params::from_flat(arch, dims, &fx.untied[..len]).unwrap();
        encode(p, &fx.x, n, &mut fx.codes, &mut fx.scratch).expect("encode");
        decode(p, &fx.codes, n, &mut fx.recon, &mut fx.scratch).expect("decode");
        let aux = AuxK {
            dead: &fx.dead,
            k_aux: 4,
            coefficient: 0.5,
        };
        let topk = matches!(arch.activation, Activation::TopK { .. });
        for path in [Path::Dense, Path::Sparse] {
            let opts = LossOptions {
                alpha: 1e-3,
                path,
                aux: topk.then_some(aux),
                jumprelu_bandwidth: 0.05,
            };
            let out = ForwardOutputs {
                codes: Some(&mut fx.codes),
                ..Default::default()
            };
            forward(p, &fx.x, n, &opts, out, &mut fx.scratch).expect("forward");
            let g = ParamsMut::from_flat(arch, dims, &mut fx.ugrad[..len]).unwrap();
            loss_and_grad(p, &fx.x, n, &opts, g, &mut fx.scratch).expect("loss_and_grad");
        }
    }
}

const ENTRY_POINTS: &[(&str, Op)] = &[
    (
        "every architecture (encode, decode, forward, loss_and_grad, AuxK)",
        op_every_architecture,
    ),
    ("init_tied", op_init_tied),
    ("encode", op_encode),
    ("decode", op_decode),
    ("forward (all outputs)", op_forward_all_outputs),
    ("forward (loss only)", op_forward_loss_only),
    ("loss_and_grad", op_loss_and_grad),
    ("plain SGD", op_plain_sgd),
    ("Optim::step (Adam, SGD momentum)", op_optimizers),
    ("train_step (accepted and refused)", op_train_step),
    ("StreamingTrainer (push, step_block)", op_streaming_trainer),
    ("metrics, toy generator, mmcs", op_metrics_and_toy),
    ("gemm (strided, beta, bias-relu)", op_gemm_strided),
    ("error paths", op_error_paths),
    ("sparse path (forced Path::Sparse)", op_sparse_path),
    (
        "sparse outputs (encode_sparse, encode_csr, decode_*)",
        op_sparse_outputs,
    ),
];

#[test]
fn counter_sees_allocations() {
    // A broken counter must not let the real test pass silently.
    let (v, n, bytes) = count_allocs(|| std::hint::black_box(vec![1u8; 100]));
    assert_eq!(n, 1);
    assert!(bytes >= 100);
    drop(v);
    let ((), n, _) = count_allocs(|| ());
    assert_eq!(n, 0);
}

#[test]
fn entry_points_do_not_allocate() {
    let mut fx = Fixture::new();
    let mut offenders = Vec::new();
    for &(name, op) in ENTRY_POINTS {
        let ((), n, bytes) = count_allocs(|| op(&mut fx));
        if n != 0 {
            offenders.push(format!("{name}: {n} allocations, {bytes} bytes"));
        }
    }
    // The calls did real work (not all rejected early).
    assert!(fx.codes.iter().any(|&c| c > 0.0), "codes all zero");
    assert!(fx.gm.iter().any(|&g| g != 0.0), "gradients all zero");
    assert!(
        offenders.is_empty(),
        "entry points allocated:\n{}",
        offenders.join("\n")
    );
    println!(
        "no_alloc: {} entry points, 0 allocations",
        ENTRY_POINTS.len()
    );
}
