//! Training: optimizers against hand-computed values, the transactional step, schedules,
//! metrics on constructed cases, the toy benchmark, streaming, checkpoints and `.npy`.
#![cfg(feature = "std")]

use sae_kernels::format::npy::{read_npy, write_npy};
use sae_kernels::metrics::{Metrics, eval_scratch_len, evaluate, metrics_state_len, mmcs};
use sae_kernels::optim::{Adam, Decay, L1Warmup, LrSchedule};
use sae_kernels::owned::{ArrayBatches, ToyBatches, load_model, save_model};
use sae_kernels::prelude::*;
use sae_kernels::toy::{ToyConfig, toy_init, toy_rng, toy_sample};
use sae_kernels::train::{
    ModelMut, ModelRef, StepHyper, StreamConfig, StreamingTrainer, TrainOptions,
    streaming_state_len,
};

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Every parameter's bits, tensors in canonical order.
fn flat(m: ModelRef<'_>) -> Vec<u32> {
    m.tensors().iter().flat_map(|t| bits(t.data)).collect()
}

/// Adam on a 1×1 model (M = [m], b = [b]) for three steps, against PyTorch's formula
/// evaluated by hand in f64.
#[test]
fn adam_matches_hand_computed_steps() {
    let dims = Dims::new(1, 1).unwrap();
    let (mut m, mut b) = ([0.5f32], [-0.25f32]);
    let cfg = Adam::default();
    let opt = Optimizer::Adam(cfg);
    let mut state = vec![0.0f32; opt.state_len(Arch::tied().param_len(dims))];
    assert_eq!(state.len(), 4);
    let grads = [(0.2f64, -1.0f64), (-0.1, 0.5), (0.3, 0.0)];
    let lr = 0.01f64;
    let (mut pm, mut pb) = (0.5f64, -0.25f64);
    let (mut mm, mut vm, mut mb, mut vb) = (0.0f64, 0.0, 0.0, 0.0);
    let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8f64);
    for (t, &(gm, gb)) in grads.iter().enumerate() {
        let mut o = Optim::new(
            opt,
            dims,
            Arch::tied().param_len(dims),
            &mut state,
            t as u64,
        )
        .unwrap();
        o.step(
            &mut ModelMut::from(ParamsMut::tied(dims, &mut m, &mut b).unwrap()).tensors_mut(),
            &ModelRef::from(Params::tied(dims, &[gm as f32], &[gb as f32]).unwrap()).tensors(),
            lr as f32,
        )
        .unwrap();
        assert_eq!(o.steps(), t as u64 + 1);
        let t = (t + 1) as i32;
        let upd = |p: &mut f64, m1: &mut f64, v1: &mut f64, g: f64| {
            *m1 = b1 * *m1 + (1.0 - b1) * g;
            *v1 = b2 * *v1 + (1.0 - b2) * g * g;
            let mh = *m1 / (1.0 - b1.powi(t));
            let vh = *v1 / (1.0 - b2.powi(t));
            *p -= lr * mh / (vh.sqrt() + eps);
        };
        upd(&mut pm, &mut mm, &mut vm, gm);
        upd(&mut pb, &mut mb, &mut vb, gb);
        assert!(
            (f64::from(m[0]) - pm).abs() < 1e-6,
            "step {t}: m {} vs {pm}",
            m[0]
        );
        assert!(
            (f64::from(b[0]) - pb).abs() < 1e-6,
            "step {t}: b {} vs {pb}",
            b[0]
        );
        // State layout: [m_M, m_b, v_M, v_b].
        assert!((f64::from(state[0]) - mm).abs() < 1e-7);
        assert!((f64::from(state[3]) - vb).abs() < 1e-7);
    }
    // First Adam step moves every parameter with a non-zero gradient by ≈ lr.
    assert!((0.5 - pm).abs() > 0.0);
}

#[test]
fn sgd_momentum_matches_hand_computed_steps() {
    let dims = Dims::new(1, 1).unwrap();
    let (mut m, mut b) = ([1.0f32], [0.0f32]);
    let opt = Optimizer::Sgd { momentum: 0.5 };
    let mut state = vec![0.0f32; opt.state_len(Arch::tied().param_len(dims))];
    let mut o = Optim::new(opt, dims, Arch::tied().param_len(dims), &mut state, 0).unwrap();
    // vel: 1, 0.5·1 + 2 = 2.5; p: 1 − 0.1·1 = 0.9, 0.9 − 0.1·2.5 = 0.65.
    for g in [1.0f32, 2.0] {
        o.step(
            &mut ModelMut::from(ParamsMut::tied(dims, &mut m, &mut b).unwrap()).tensors_mut(),
            &ModelRef::from(Params::tied(dims, &[g], &[0.0]).unwrap()).tensors(),
            0.1,
        )
        .unwrap();
    }
    assert!((m[0] - 0.65).abs() < 1e-6, "{}", m[0]);
    assert_eq!(
        Optimizer::Sgd { momentum: 0.0 }.state_len(Arch::tied().param_len(dims)),
        0
    );
    assert!(matches!(
        Optimizer::Sgd { momentum: 1.0 }.validate(),
        Err(Error::OutOfRange {
            arg: "momentum",
            ..
        })
    ));
    let bad = Optimizer::Adam(Adam {
        eps: 0.0,
        ..Adam::default()
    });
    assert!(matches!(
        bad.validate(),
        Err(Error::OutOfRange { arg: "eps", .. })
    ));
}

struct Setup {
    dims: Dims,
    m: Vec<f32>,
    b: Vec<f32>,
    state: Vec<f32>,
    ws: Vec<f32>,
    x: Vec<f32>,
}

fn setup(opt: Optimizer) -> Setup {
    let dims = Dims::new(8, 16).unwrap();
    let (mut m, mut b) = (vec![0.0; dims.m_len()], vec![0.0; dims.h]);
    init_tied(ParamsMut::tied(dims, &mut m, &mut b).unwrap(), 3);
    b.iter_mut().for_each(|v| *v = 0.1);
    let x: Vec<f32> = (0..6 * 8)
        .map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.1)
        .collect();
    Setup {
        dims,
        m,
        b,
        state: vec![0.0; opt.state_len(Arch::tied().param_len(dims))],
        ws: vec![
            0.0;
            train_step_workspace_len(Arch::tied(), TrainOptions::default(), dims, 4, false)
        ],
        x,
    }
}

/// A NaN or infinity in the batch: `Err`, and parameters, optimizer state and step
/// count bit-for-bit unchanged — also after several good steps built up real state.
#[test]
fn transactional_step_leaves_everything_unchanged_on_non_finite() {
    for opt in [Optimizer::default(), Optimizer::Sgd { momentum: 0.9 }] {
        let mut s = setup(opt);
        let dims = s.dims;
        let hyper = StepHyper {
            alpha: 0.01,
            lr: 1e-2,
        };
        for t in 0..3 {
            let mut o =
                Optim::new(opt, dims, Arch::tied().param_len(dims), &mut s.state, t).unwrap();
            train_step(
                ParamsMut::tied(dims, &mut s.m, &mut s.b).unwrap(),
                &mut o,
                &s.x,
                6,
                hyper,
                None,
                &mut s.ws,
            )
            .unwrap();
        }
        let (m0, b0, st0) = (bits(&s.m), bits(&s.b), bits(&s.state));
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let mut x = s.x.clone();
            x[13] = bad;
            let mut o =
                Optim::new(opt, dims, Arch::tied().param_len(dims), &mut s.state, 3).unwrap();
            let r = train_step(
                ParamsMut::tied(dims, &mut s.m, &mut s.b).unwrap(),
                &mut o,
                &x,
                6,
                hyper,
                None,
                &mut s.ws,
            );
            assert!(
                matches!(r, Err(Error::NonFiniteStep { .. })),
                "{opt:?} {bad}: {r:?}"
            );
            assert_eq!(o.steps(), 3);
            assert_eq!(bits(&s.m), m0, "{opt:?} {bad}: params.m changed");
            assert_eq!(bits(&s.b), b0, "{opt:?} {bad}: params.b changed");
            assert_eq!(bits(&s.state), st0, "{opt:?} {bad}: state changed");
        }
        // Non-finite gradients handed to the optimizer directly: refused, unchanged.
        let mut g = vec![0.5f32; dims.m_len()];
        g[dims.m_len() - 1] = f32::NAN;
        let gb = vec![0.0f32; dims.h];
        let mut o = Optim::new(opt, dims, Arch::tied().param_len(dims), &mut s.state, 3).unwrap();
        let r = o.step(
            &mut ModelMut::from(ParamsMut::tied(dims, &mut s.m, &mut s.b).unwrap()).tensors_mut(),
            &ModelRef::from(Params::tied(dims, &g, &gb).unwrap()).tensors(),
            0.1,
        );
        assert!(
            matches!(r, Err(Error::NonFinite { arg: "grads.m" })),
            "{r:?}"
        );
        assert_eq!(
            (bits(&s.m), bits(&s.b), bits(&s.state)),
            (m0.clone(), b0.clone(), st0.clone())
        );
    }
}

/// An update that would overflow a parameter is refused before anything is written.
#[test]
fn transactional_step_refuses_overflowing_update() {
    let opt = Optimizer::Sgd { momentum: 0.0 };
    let mut s = setup(opt);
    let dims = s.dims;
    let (m0, b0) = (bits(&s.m), bits(&s.b));
    let mut o = Optim::new(opt, dims, Arch::tied().param_len(dims), &mut s.state, 0).unwrap();
    let r = train_step(
        ParamsMut::tied(dims, &mut s.m, &mut s.b).unwrap(),
        &mut o,
        &s.x,
        6,
        StepHyper {
            alpha: 0.0,
            lr: f32::MAX,
        },
        None,
        &mut s.ws,
    );
    assert!(
        matches!(r, Err(Error::NonFiniteStep { arg: "params" })),
        "{r:?}"
    );
    assert_eq!((bits(&s.m), bits(&s.b)), (m0, b0));
}

#[test]
fn lr_and_l1_schedules() {
    let mk = |decay| LrSchedule {
        peak: 2.0,
        warmup_steps: 4,
        decay,
        decay_start: 10,
        total_steps: 20,
        final_scale: 0.25,
    };
    let c = mk(Decay::Constant);
    assert_eq!(
        [c.lr(0), c.lr(1), c.lr(3), c.lr(4), c.lr(100)],
        [0.5, 1.0, 2.0, 2.0, 2.0]
    );
    let l = mk(Decay::Linear);
    assert_eq!(l.lr(9), 2.0);
    assert_eq!(l.lr(10), 2.0);
    assert!((l.lr(15) - 1.25).abs() < 1e-6); // halfway: 2·(1 − 0.75/2)
    assert_eq!(l.lr(20), 0.5);
    assert_eq!(l.lr(1000), 0.5);
    let k = mk(Decay::Cosine);
    assert!((k.lr(15) - 1.25).abs() < 1e-6); // cosine midpoint equals linear midpoint
    assert!(k.lr(12) > l.lr(12), "cosine starts slower");
    assert!((k.lr(20) - 0.5).abs() < 1e-7);
    assert_eq!(LrSchedule::constant(0.3).lr(7), 0.3);
    let w = L1Warmup {
        alpha: 1.0,
        warmup_steps: 10,
    };
    assert_eq!(
        [w.alpha(0), w.alpha(4), w.alpha(9), w.alpha(10)],
        [0.1, 0.5, 1.0, 1.0]
    );
    assert_eq!(L1Warmup::constant(0.7).alpha(0), 0.7);
}

/// FVU, MSE, L0, L1, counts and dead fraction on a hand-made case; batches streamed
/// in any split give the same numbers as one pass.
#[test]
fn metrics_on_constructed_case() {
    let dims = Dims::new(2, 3).unwrap();
    // Rows x: (1,0), (3,0), (1,2), (3,2): per-coordinate mean (2,1); Σ‖x − x̄‖² = 4·2 = 8.
    let x = [1.0, 0.0, 3.0, 0.0, 1.0, 2.0, 3.0, 2.0];
    // Reconstructions off by (1,0),(0,0),(0,1),(1,1): Σ‖e‖² = 1 + 0 + 1 + 2 = 4.
    let recon = [0.0, 0.0, 3.0, 0.0, 1.0, 1.0, 2.0, 1.0];
    // Codes: feature 0 fires in rows 0,1; feature 1 in row 3; feature 2 never.
    let codes = [1.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.5, 0.0];
    let mut st = vec![0.0f64; metrics_state_len(dims)];
    let mut m = Metrics::new(dims, &mut st).unwrap();
    m.observe(&x, &codes, &recon, 4).unwrap();
    let s = m.summary(4);
    assert_eq!(s.rows, 4);
    assert!((s.mse - 1.0).abs() < 1e-12);
    assert!((s.fvu - 0.5).abs() < 1e-12, "{}", s.fvu);
    assert!((s.l0 - 0.75).abs() < 1e-12);
    assert!((s.l1 - 3.5 / 4.0).abs() < 1e-12);
    assert_eq!(m.feature_counts(), &[2.0, 1.0, 0.0]);
    assert!((s.dead_fraction - 1.0 / 3.0).abs() < 1e-12);
    // Window of the last 2 rows: feature 0 last fired in row 2 of 4 → dead too.
    assert!((m.summary(2).dead_fraction - 2.0 / 3.0).abs() < 1e-12);
    // Streaming in two uneven batches gives the same summary.
    let mut st2 = vec![0.0f64; metrics_state_len(dims)];
    let mut m2 = Metrics::new(dims, &mut st2).unwrap();
    m2.observe(&x[..2], &codes[..3], &recon[..2], 1).unwrap();
    m2.observe(&x[2..], &codes[3..], &recon[2..], 3).unwrap();
    let s2 = m2.summary(4);
    assert!((s2.fvu - s.fvu).abs() < 1e-12 && s2.mse == s.mse && s2.l0 == s.l0);
    assert!(matches!(
        m2.observe(&x, &codes, &recon[..6], 4),
        Err(Error::Length { arg: "recon", .. })
    ));
}

/// `evaluate` (model forward + metrics) on an identity dictionary reconstructs
/// non-negative inputs exactly: MSE 0, FVU 0, L0 = number of positive coordinates.
#[test]
fn evaluate_identity_model() {
    let dims = Dims::new(3, 3).unwrap();
    let m = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0];
    let b = [0.0; 3];
    let x = [1.0, 0.0, 2.0, 0.5, 0.5, 0.0, 0.0, 0.0, 3.0];
    let mut st = vec![0.0f64; metrics_state_len(dims)];
    let mut met = Metrics::new(dims, &mut st).unwrap();
    let mut scratch =
        vec![0.0f32; eval_scratch_len(Arch::tied(), TrainOptions::default(), dims, 2)];
    evaluate(
        Params::tied(dims, &m, &b).unwrap(),
        &x,
        3,
        &mut met,
        &mut scratch,
    )
    .unwrap();
    let s = met.summary(3);
    assert_eq!(s.mse, 0.0);
    assert_eq!(s.fvu, 0.0);
    assert!((s.l0 - 5.0 / 3.0).abs() < 1e-12);
    assert_eq!(s.dead_fraction, 0.0);
}

#[test]
fn mmcs_known_answers() {
    // Truth: e0, e1 in 2-D. Dictionary: 3·e1, and (1,1) (45° from both), and 0.
    let truth = [1.0, 0.0, 0.0, 1.0];
    let dict = [0.0, 3.0, 1.0, 1.0, 0.0, 0.0];
    let v = mmcs(&truth, 2, &dict, 3, 2).unwrap();
    let want = (1.0 + std::f64::consts::FRAC_1_SQRT_2) / 2.0;
    assert!((v - want).abs() < 1e-6, "{v} vs {want}");
    // A permuted, rescaled copy of the truth scores 1.
    assert!((mmcs(&truth, 2, &[0.0, -0.0 + 2.0, 5.0, 0.0], 2, 2).unwrap() - 1.0).abs() < 1e-7);
    assert!(matches!(
        mmcs(&truth, 2, &dict, 2, 2),
        Err(Error::Length { arg: "dict", .. })
    ));
}

#[test]
fn toy_generator_statistics() {
    let cfg = ToyConfig::new(16, 64);
    let (mut f, mut p) = (vec![0.0; 64 * 16], vec![0.0; 64]);
    toy_init(&cfg, 5, &mut f, &mut p).unwrap();
    for row in f.chunks_exact(16) {
        let n: f32 = row.iter().map(|v| v * v).sum();
        assert!((n - 1.0).abs() < 1e-5);
    }
    let total: f32 = p.iter().sum();
    assert!((total - 5.0).abs() < 1e-4, "{total}");
    assert!((p[1] / p[0] - 0.99).abs() < 1e-6);
    let n = 4000;
    let (mut x, mut c) = (vec![0.0; n * 16], vec![0.0; n * 64]);
    toy_sample(&cfg, &f, &p, &mut toy_rng(9), &mut x, n, Some(&mut c)).unwrap();
    let active = c.iter().filter(|&&v| v > 0.0).count() as f64 / n as f64;
    assert!((active - 5.0).abs() < 0.25, "mean active {active}");
    let mean_coef = c
        .iter()
        .filter(|&&v| v > 0.0)
        .map(|&v| f64::from(v))
        .sum::<f64>()
        / (active * n as f64);
    assert!(
        (mean_coef - 0.25).abs() < 0.02,
        "E[U·U] = 1/4, got {mean_coef}"
    );
    // x is the coefficient-weighted sum of the features.
    let want: f32 = (0..64).map(|i| c[i] * f[i * 16]).sum();
    assert!((x[0] - want).abs() < 1e-5);
}

fn small_config(steps: u64) -> TrainConfig {
    TrainConfig {
        optimizer: Optimizer::default().into(),
        lr: LrSchedule {
            peak: 1e-2,
            warmup_steps: 20,
            decay: Decay::Cosine,
            decay_start: steps * 4 / 5,
            total_steps: steps,
            final_scale: 0.1,
        },
        l1: L1Warmup {
            alpha: 0.1,
            warmup_steps: steps / 20,
        },
        batch: 32,
        dead_window_tokens: None,
    }
}

/// Seconds-long toy training (32 features in 32 dims, dictionary of 64) recovers the
/// ground truth: MMCS ≥ 0.85 (a random dictionary scores about 0.45 here).
#[test]
fn toy_training_recovers_features() {
    let steps = 1000;
    let mut toy = ToyBatches::new(ToyConfig::new(32, 32), 1).unwrap();
    let dims = Dims::new(32, 64).unwrap();
    let mut t = Trainer::new(
        Sae::new(Arch::tied(), dims, 2).unwrap(),
        TrainOptions::default(),
        small_config(steps),
    )
    .unwrap();
    let before = mmcs(&toy.features, 32, t.sae().params().decoder(), 64, 32).unwrap();
    let held = toy.sample(1000, 77).unwrap();
    t.fit(&mut toy, steps, &held, 400, false, &mut |_, _, _| {})
        .unwrap();
    let after = mmcs(&toy.features, 32, t.sae().params().decoder(), 64, 32).unwrap();
    let (s, _) = t.evaluate(&held, 1000).unwrap();
    assert!(before < 0.7, "random start {before}");
    assert!(after >= 0.85, "MMCS {after} (from {before}); {s:?}");
    assert!(s.fvu < 0.3 && s.l0 < 10.0, "{s:?}");
}

/// Checkpoint at step 5, resume, continue to 12: bit-for-bit the uninterrupted run, for
/// the tied model, SAELens' standard SAE (with gradient clipping) and TopK with AuxK
/// (dead window short enough that latents die and AuxK is active before the
/// checkpoint, so the dead counters must be restored exactly).
#[test]
fn checkpoint_resume_is_bitwise_identical() {
    let data: Vec<f32> = (0..100 * 8)
        .map(|i| ((i * 7919 % 23) as f32 - 11.0) * 0.05)
        .collect();
    let dims = Dims::new(8, 12).unwrap();
    let base = TrainConfig {
        batch: 16,
        ..small_config(12)
    };
    let clipped = TrainConfig {
        optimizer: OptimConfig {
            max_grad_norm: Some(0.5),
            ..OptimConfig::default()
        },
        ..base
    };
    let none = TrainOptions::default();
    let cases: Vec<(Sae, TrainOptions, TrainConfig)> = vec![
        (Sae::new(Arch::tied(), dims, 1).unwrap(), none, base),
        (Sae::new(Arch::standard(), dims, 1).unwrap(), none, clipped),
        (
            Sae::new(Arch::jumprelu(), dims, 1).unwrap(),
            TrainOptions::saelens_jumprelu(),
            clipped,
        ),
        (
            Sae::new(Arch::topk(2), dims, 1).unwrap(),
            TrainOptions::saelens_topk(8),
            TrainConfig {
                dead_window_tokens: Some(32),
                ..clipped
            },
        ),
    ];
    for (sae, options, cfg) in cases {
        let mut src = ArrayBatches::new(data.clone(), 8, 16, 4).unwrap();
        let mut a = Trainer::new(sae, options, cfg).unwrap();
        for _ in 0..5 {
            a.step_from(&mut src).unwrap();
        }
        let ckpt = a.checkpoint_bytes();
        for _ in 5..12 {
            a.step_from(&mut src).unwrap();
        }
        let mut src2 = ArrayBatches::new(data.clone(), 8, 16, 4).unwrap();
        let mut b = Trainer::from_checkpoint(&ckpt, cfg).unwrap();
        assert_eq!(b.steps(), 5);
        for _ in 5..12 {
            b.step_from(&mut src2).unwrap();
        }
        assert_eq!(a.sae(), b.sae(), "{:?}", a.sae().arch());
        assert_eq!(a.options(), b.options());
        assert_eq!(a.checkpoint_bytes(), b.checkpoint_bytes());
        // Damaged or mismatched checkpoints are refused.
        assert!(matches!(
            Trainer::from_checkpoint(&ckpt[..ckpt.len() - 1], cfg),
            Err(Error::File {
                arg: "checkpoint",
                ..
            })
        ));
        let sgd = TrainConfig {
            optimizer: Optimizer::Sgd { momentum: 0.0 }.into(),
            ..cfg
        };
        assert!(Trainer::from_checkpoint(&ckpt, sgd).is_err());
        let other_dead = TrainConfig {
            dead_window_tokens: if cfg.dead_window_tokens.is_some() {
                None
            } else {
                Some(5)
            },
            ..cfg
        };
        assert!(Trainer::from_checkpoint(&ckpt, other_dead).is_err());
        // A version-2 checkpoint (written before JumpReLU training: no bandwidth field
        // at byte 61) still resumes, with the bandwidth 0 it was trained with; a
        // JumpReLU one of version 2 never had a trained threshold, so any bandwidth
        // it carries now is dropped and the rest must still resume exactly.
        if options.jumprelu_bandwidth == 0.0 {
            let mut v2 = ckpt.clone();
            v2[8..12].copy_from_slice(&2u32.to_le_bytes());
            v2.drain(61..65);
            let mut c = Trainer::from_checkpoint(&v2, cfg).unwrap();
            let mut src3 = ArrayBatches::new(data.clone(), 8, 16, 4).unwrap();
            for _ in 5..12 {
                c.step_from(&mut src3).unwrap();
            }
            assert_eq!(a.sae(), c.sae(), "version 2: {:?}", a.sae().arch());
            v2[8..12].copy_from_slice(&4u32.to_le_bytes());
            assert!(Trainer::from_checkpoint(&v2, cfg).is_err(), "version 4");
        }
        if cfg.dead_window_tokens.is_some() {
            assert!(
                a.dead_fraction().unwrap() > 0.0,
                "AuxK never had dead latents"
            );
        }
    }
    // And through a file.
    let mut src = ArrayBatches::new(data, 8, 16, 4).unwrap();
    let mut a = Trainer::new(
        Sae::new(Arch::tied(), dims, 1).unwrap(),
        TrainOptions::default(),
        base,
    )
    .unwrap();
    a.step_from(&mut src).unwrap();
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("training-ckpt");
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("c.bin");
    a.save_checkpoint(&p).unwrap();
    let c = Trainer::load_checkpoint(&p, base).unwrap();
    assert_eq!(c.checkpoint_bytes(), a.checkpoint_bytes());
    save_model(a.sae(), &dir.join("m.saek")).unwrap();
    assert_eq!(&load_model(&dir.join("m.saek")).unwrap(), a.sae());
    // Only the tied ReLU model has this format; the others are refused, nothing written.
    let topk = Sae::new(Arch::topk(2), dims, 1).unwrap();
    let e = save_model(&topk, &dir.join("topk.saek")).unwrap_err();
    assert!(matches!(e, Error::OutOfRange { arg: "sae", .. }), "{e}");
    assert!(!dir.join("topk.saek").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A `model.saek` file written byte by byte to the documented version-1 layout (as the
/// tied-only `TiedSae` wrote it) loads as the tied `Sae` with those tensors, and saving
/// that `Sae` gives the same bytes back.
#[test]
fn native_model_file_layout_is_stable() {
    let (d, h) = (3usize, 2usize);
    let m = [0.5f32, -1.0, 2.0, 0.25, 0.0, -3.5];
    let b = [0.125f32, -0.75];
    let mut bytes = b"SAEKTIED".to_vec();
    bytes.extend_from_slice(&1u32.to_le_bytes());
    bytes.extend_from_slice(&(d as u64).to_le_bytes());
    bytes.extend_from_slice(&(h as u64).to_le_bytes());
    for v in m.iter().chain(&b) {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("native-model");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("old.saek");
    std::fs::write(&path, &bytes).unwrap();
    let sae = load_model(&path).unwrap();
    assert_eq!(sae.arch(), Arch::tied());
    assert_eq!(sae.dims(), Dims::new(d, h).unwrap());
    assert_eq!(sae.params().decoder(), &m);
    assert_eq!(sae.params().b_enc(), &b);
    let again = dir.join("again.saek");
    save_model(&sae, &again).unwrap();
    assert_eq!(std::fs::read(&again).unwrap(), bytes);
    // One byte short, or one byte too many: refused.
    std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
    assert!(matches!(
        load_model(&path),
        Err(Error::File { arg: "path", .. })
    ));
    let mut long = bytes.clone();
    long.push(0);
    std::fs::write(&path, &long).unwrap();
    assert!(matches!(
        load_model(&path),
        Err(Error::File { arg: "path", .. })
    ));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Pushing samples one at a time equals stepping on the same blocks at once, and
/// equals the owned trainer with the same schedule.
#[test]
fn streaming_trainer_matches_block_steps() {
    let dims = Dims::new(8, 12).unwrap();
    let data: Vec<f32> = (0..8 * 8)
        .map(|i| ((i * 31 % 17) as f32 - 8.0) * 0.1)
        .collect();
    let cfg = StreamConfig {
        optimizer: Optimizer::default().into(),
        lr: LrSchedule::constant(1e-2),
        l1: L1Warmup {
            alpha: 0.05,
            warmup_steps: 3,
        },
        block_rows: 4,
    };
    let init = Sae::new(Arch::tied(), dims, 6).unwrap();
    let (m1, b1) = init.as_flat().split_at(dims.m_len());
    let (mut m1, mut b1) = (m1.to_vec(), b1.to_vec());
    let mut st1 =
        vec![0.0; streaming_state_len(Arch::tied(), TrainOptions::default(), dims, &cfg, false)];
    let mut s1 = StreamingTrainer::new(
        ParamsMut::tied(dims, &mut m1, &mut b1).unwrap(),
        cfg,
        &mut st1,
    )
    .unwrap();
    let mut stepped = 0;
    for row in data.chunks_exact(8) {
        if s1.push(row).unwrap().is_some() {
            stepped += 1;
        }
    }
    assert_eq!((stepped, s1.steps(), s1.buffered()), (2, 2, 0));
    let p1 = flat(s1.params());

    let mut owned = Trainer::new(
        init,
        TrainOptions::default(),
        TrainConfig {
            optimizer: cfg.optimizer,
            lr: cfg.lr,
            l1: cfg.l1,
            batch: 4,
            dead_window_tokens: None,
        },
    )
    .unwrap();
    owned.step(&data[..32], 4).unwrap();
    owned.step(&data[32..], 4).unwrap();
    assert_eq!(p1, flat(owned.sae().params().into()));

    // A NaN sample: the block's step fails and the model is unchanged.
    let mut bad = data[..8].to_vec();
    bad[2] = f32::NAN;
    for _ in 0..3 {
        assert!(s1.push(&data[8..16]).unwrap().is_none());
    }
    assert!(matches!(
        s1.push(&bad),
        Err(Error::NonFiniteStep { arg: "loss" })
    ));
    assert_eq!(p1, flat(s1.params()));
    assert!(matches!(
        s1.push(&bad[..3]),
        Err(Error::Length { arg: "sample", .. })
    ));
}

#[test]
fn npy_round_trip_and_errors() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("training-npy");
    std::fs::create_dir_all(&dir).unwrap();
    let data: Vec<f32> = (0..15).map(|i| i as f32 * 0.5 - 3.0).collect();
    let p = dir.join("a.npy");
    write_npy(&p, &data, 5, 3).unwrap();
    let a = read_npy(&p).unwrap();
    assert_eq!((a.rows, a.d), (5, 3));
    assert_eq!(a.data, data);
    // f16, converted on load.
    let p16 = dir.join("h.npy");
    {
        use npyz::WriterBuilder;
        let f = std::fs::File::create(&p16).unwrap();
        let mut w = npyz::WriteOptions::<half::f16>::new()
            .default_dtype()
            .shape(&[2, 2])
            .writer(f)
            .begin_nd()
            .unwrap();
        w.extend([1.5f32, -2.0, 0.25, 1e-3].map(half::f16::from_f32))
            .unwrap();
        w.finish().unwrap();
    }
    let h = read_npy(&p16).unwrap();
    assert_eq!(h.data[..3], [1.5, -2.0, 0.25]);
    assert!((h.data[3] - 1e-3).abs() < 1e-6);
    // Wrong dtype (f64), wrong rank, missing file, garbage.
    let p64 = dir.join("d.npy");
    npyz::to_file_1d(&p64, [1.0f64, 2.0].iter().copied()).unwrap();
    let e = read_npy(&p64);
    assert!(matches!(e, Err(Error::File { arg: "input", .. })), "{e:?}");
    let p1 = dir.join("one.npy");
    npyz::to_file_1d(&p1, [1.0f32, 2.0].iter().copied()).unwrap();
    assert!(read_npy(&p1).unwrap_err().to_string().contains("2-D"));
    assert!(
        read_npy(&dir.join("missing.npy"))
            .unwrap_err()
            .to_string()
            .contains("not found")
    );
    // Fortran (column-major) order is transposed on load.
    let hdr = "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }";
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    let pad = 64 - (10 + hdr.len() + 1) % 64;
    let full = format!("{hdr}{}\n", " ".repeat(pad));
    bytes.extend_from_slice(&(full.len() as u16).to_le_bytes());
    bytes.extend_from_slice(full.as_bytes());
    for v in [1.0f32, 4.0, 2.0, 5.0, 3.0, 6.0] {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(dir.join("f.npy"), &bytes).unwrap();
    let f = read_npy(&dir.join("f.npy")).unwrap();
    assert_eq!((f.rows, f.d), (2, 3));
    assert_eq!(f.data, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    // A header promising more data than the file holds is refused (the allocation is
    // bounded by the file's length before anything is read).
    bytes.truncate(bytes.len() - 4);
    std::fs::write(dir.join("t.npy"), &bytes).unwrap();
    let e = read_npy(&dir.join("t.npy")).unwrap_err().to_string();
    assert!(e.contains("shorter"), "{e}");
    // A v2 header whose length field claims ~2 GiB in a tiny file (found by the
    // `formats` fuzz target) is refused before the header text is read.
    let mut v2 = b"\x93NUMPY\x02\x00".to_vec();
    v2.extend_from_slice(&0x7f7b_0076u32.to_le_bytes());
    v2.extend_from_slice(b"{'descr': '<f4', ");
    std::fs::write(dir.join("v2.npy"), &v2).unwrap();
    let e = read_npy(&dir.join("v2.npy")).unwrap_err().to_string();
    assert!(e.contains("header length"), "{e}");
    // A header of nested brackets (which made npyz's parser run for minutes, found by
    // the `formats` fuzz target) is refused up front.
    let mut nested = b"\x93NUMPY\x01\x00".to_vec();
    let text = format!("{{'descr': '<f4', 'shape': {}", "(".repeat(200));
    nested.extend_from_slice(&(text.len() as u16).to_le_bytes());
    nested.extend_from_slice(text.as_bytes());
    std::fs::write(dir.join("nested.npy"), &nested).unwrap();
    let e = read_npy(&dir.join("nested.npy")).unwrap_err().to_string();
    assert!(e.contains("plain float32"), "{e}");
    std::fs::write(dir.join("g.npy"), b"not an npy").unwrap();
    assert!(read_npy(&dir.join("g.npy")).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

/// The generic loss-and-gradient ([`sae_kernels::train::loss_and_grad`]) against
/// central finite differences (f32 loss, accumulated in f64), for every trainable
/// architecture: tied, standard (decoder-norm L1), and SAELens TopK with
/// `rescale_acts_by_decoder_norm` (whose gradient is mapped back through the decoder
/// norms by the chain rule).
#[test]
fn generic_gradients_match_finite_differences() {
    use sae_kernels::train::{ModelRef, grad_tensors, loss_and_grad};
    let dims = Dims::new(5, 7).unwrap();
    let n = 6;
    let x: Vec<f32> = (0..n * 5)
        .map(|i| ((i * 37 % 13) as f32 - 6.0) * 0.3 + 0.2)
        .collect();
    let mut topk = TrainOptions::saelens_topk(5);
    // AuxK's residual is detached (a constant in its gradient), so finite differences
    // of the total loss do not apply to it: no AuxK here.
    topk.aux = None;
    let none = TrainOptions::default();
    let cases: Vec<(Sae, TrainOptions, f32)> = vec![
        (Sae::new(Arch::tied(), dims, 3).unwrap(), none, 0.05),
        (Sae::new(Arch::standard(), dims, 3).unwrap(), none, 0.3),
        (Sae::new(Arch::topk(2), dims, 3).unwrap(), topk, 0.0),
    ];
    for (mut sae, options, alpha) in cases {
        // Move away from the symmetric init: biases and decoder norms differ per latent.
        for (ti, t) in sae.params_mut().tensors_mut().iter_mut().enumerate() {
            for (i, p) in t.data.iter_mut().enumerate() {
                *p += ((i * 29 + ti * 7) % 11) as f32 * 0.02 - 0.1;
            }
        }
        let arch = sae.arch();
        let p_len = arch.param_len(dims);
        let mut grads = vec![0.0f32; p_len];
        let mut scratch = vec![0.0f32; options.grad_scratch_len(arch, dims, 4, false)];
        let eval = |s: &Sae, g: &mut [f32], sc: &mut [f32]| {
            let m = ModelRef {
                params: s.params(),
                options,
            };
            let parts = loss_and_grad(m, &x, n, alpha, None, g, None, sc).unwrap();
            f64::from(parts.loss)
        };
        eval(&sae, &mut grads, &mut scratch);
        let g0 = grads.clone();
        let names: Vec<&str> = grad_tensors(arch, dims, &g0)
            .unwrap()
            .iter()
            .flat_map(|t| std::iter::repeat_n(t.name, t.data.len()))
            .collect();
        let mut tmp = vec![0.0f32; p_len];
        for j in 0..p_len {
            let h = 1e-3f32;
            let mut plus = sae.clone();
            let mut minus = sae.clone();
            for (s, sign) in [(&mut plus, 1.0f32), (&mut minus, -1.0)] {
                let mut v = s.params_mut();
                let mut ts = v.tensors_mut();
                let mut k = j;
                for t in ts.iter_mut() {
                    if k < t.data.len() {
                        t.data[k] += sign * h;
                        break;
                    }
                    k -= t.data.len();
                }
            }
            let fd = (eval(&plus, &mut tmp, &mut scratch) - eval(&minus, &mut tmp, &mut scratch))
                / (2.0 * f64::from(h));
            let err = (fd - f64::from(g0[j])).abs() / (1.0 + fd.abs());
            assert!(
                err < 2e-2,
                "{arch:?} {options:?}: parameter {j} ({}): analytic {} vs finite difference {fd}",
                names[j],
                g0[j]
            );
        }
    }
}

/// Gradient-norm clipping (PyTorch's `clip_grad_norm_`): above the limit every
/// gradient is scaled by `c / (‖g‖ + 1e-6)` over all tensors together; below it the
/// step is the unclipped one, bit for bit.
#[test]
fn optimizer_clips_the_global_gradient_norm() {
    let dims = Dims::new(2, 1).unwrap();
    let pc = Arch::tied().param_len(dims);
    let sgd = |clip: Option<f32>, g: [f32; 3]| {
        let (mut m, mut b) = ([1.0f32, -1.0], [0.5f32]);
        let cfg = OptimConfig {
            rule: Optimizer::Sgd { momentum: 0.0 },
            max_grad_norm: clip,
            unit_norm_decoder: false,
        };
        let mut o = Optim::new(cfg, dims, pc, &mut [], 0).unwrap();
        o.step(
            &mut ParamsMut::tied(dims, &mut m, &mut b).unwrap().tensors_mut(),
            &Params::tied(dims, &g[..2], &g[2..]).unwrap().tensors(),
            0.1,
        )
        .unwrap();
        [m[0], m[1], b[0]]
    };
    // ‖(3, 0, 4)‖ = 5 > 1: scaled by 1/(5 + 1e-6).
    let got = sgd(Some(1.0), [3.0, 0.0, 4.0]);
    let s = 1.0 / (5.0 + 1e-6);
    let want = [1.0 - 0.1 * 3.0 * s, -1.0, 0.5 - 0.1 * 4.0 * s];
    for (g, w) in got.iter().zip(want) {
        assert!((f64::from(*g) - w).abs() < 1e-7, "{got:?} vs {want:?}");
    }
    // Below the limit: identical to no clipping.
    assert_eq!(sgd(Some(10.0), [3.0, 0.0, 4.0]), sgd(None, [3.0, 0.0, 4.0]));
    assert_ne!(sgd(Some(1.0), [3.0, 0.0, 4.0]), sgd(None, [3.0, 0.0, 4.0]));
    // A bad limit is refused by name.
    let bad = OptimConfig {
        max_grad_norm: Some(0.0),
        ..OptimConfig::default()
    };
    assert!(matches!(
        Optim::new(bad, dims, pc, &mut [0.0; 6], 0),
        Err(Error::OutOfRange {
            arg: "max_grad_norm",
            ..
        })
    ));
}

/// Unit-norm decoder rows: the gradient component parallel to a row is removed before
/// the update and the row is renormalised after it; other tensors are untouched by
/// the constraint. For an untied model only `W_dec` is constrained.
#[test]
fn optimizer_keeps_decoder_rows_unit_norm() {
    let dims = Dims::new(2, 2).unwrap();
    let arch = Arch::standard();
    let pc = arch.param_len(dims); // W_enc 4, b_enc 2, W_dec 4, b_dec 2
    let mut p: Vec<f32> = vec![
        1.0, 2.0, 3.0, 4.0, // W_enc
        0.0, 0.0, // b_enc
        3.0, 4.0, 0.0, 2.0, // W_dec: rows (3,4) and (0,2)
        0.0, 0.0, // b_dec
    ];
    // Row 0's gradient is parallel to it (removed entirely); row 1's is orthogonal.
    let g: Vec<f32> = vec![
        1.0, 1.0, 1.0, 1.0, //
        0.0, 0.0, //
        0.3, 0.4, 1.0, 0.0, //
        0.0, 0.0,
    ];
    let cfg = OptimConfig {
        rule: Optimizer::Sgd { momentum: 0.0 },
        max_grad_norm: None,
        unit_norm_decoder: true,
    };
    let mut o = Optim::new(cfg, dims, pc, &mut [], 0).unwrap();
    o.step(
        &mut ParamsMut::from_flat(arch, dims, &mut p)
            .unwrap()
            .tensors_mut(),
        &Params::from_flat(arch, dims, &g).unwrap().tensors(),
        0.5,
    )
    .unwrap();
    // Row 0: no perpendicular gradient, so the direction stays (3,4)/5.
    assert!(
        (p[6] - 0.6).abs() < 1e-6 && (p[7] - 0.8).abs() < 1e-6,
        "{p:?}"
    );
    // Row 1: (0,2) − 0.5·(1,0) = (−0.5, 2), normalised.
    let n = (0.25f32 + 4.0).sqrt();
    assert!(
        (p[8] + 0.5 / n).abs() < 1e-6 && (p[9] - 2.0 / n).abs() < 1e-6,
        "{p:?}"
    );
    // W_enc: a plain SGD step, not normalised.
    assert_eq!(&p[..4], &[0.5, 1.5, 2.5, 3.5]);
}

/// With clipping and the decoder constraint on, an update that would overflow is still
/// refused as a whole: parameters and Adam state bit-for-bit unchanged, step not
/// counted; mismatched gradient lists are named.
#[test]
fn optimizer_with_options_is_transactional() {
    let dims = Dims::new(2, 2).unwrap();
    let arch = Arch::standard();
    let pc = arch.param_len(dims);
    let mut p: Vec<f32> = (0..pc).map(|i| i as f32 * 0.25 + 0.5).collect();
    let cfg = OptimConfig {
        rule: Optimizer::default(),
        max_grad_norm: Some(1e30),
        unit_norm_decoder: true,
    };
    let mut state = vec![0.0f32; cfg.state_len(pc)];
    let mut o = Optim::new(cfg, dims, pc, &mut state, 7).unwrap();
    let mut g = vec![0.1f32; pc];
    g[1] = 1e30; // its square overflows Adam's second moment
    let before = bits(&p);
    let r = o.step(
        &mut ParamsMut::from_flat(arch, dims, &mut p)
            .unwrap()
            .tensors_mut(),
        &Params::from_flat(arch, dims, &g).unwrap().tensors(),
        1e-3,
    );
    assert_eq!(r, Err(Error::NonFiniteStep { arg: "state" }));
    assert_eq!(o.steps(), 7);
    assert_eq!(bits(&p), before);
    assert!(o.state().iter().all(|&v| v == 0.0));
    g[1] = f32::NAN;
    let r = o.step(
        &mut ParamsMut::from_flat(arch, dims, &mut p)
            .unwrap()
            .tensors_mut(),
        &Params::from_flat(arch, dims, &g).unwrap().tensors(),
        1e-3,
    );
    assert_eq!(r, Err(Error::NonFinite { arg: "grads.W_enc" }));
    // A tied gradient list for an untied model: refused, nothing written.
    let (gm, gb) = (vec![0.0f32; 4], vec![0.0f32; 2]);
    let r = o.step(
        &mut ParamsMut::from_flat(arch, dims, &mut p)
            .unwrap()
            .tensors_mut(),
        &Params::tied(dims, &gm, &gb).unwrap().tensors(),
        1e-3,
    );
    assert!(
        matches!(r, Err(Error::Dimension { arg: "grads", .. })),
        "{r:?}"
    );
    assert_eq!(bits(&p), before);
    // Adam over four tensors: state is [m of all | v of all]; one good step fills both.
    g[1] = 0.1;
    o.step(
        &mut ParamsMut::from_flat(arch, dims, &mut p)
            .unwrap()
            .tensors_mut(),
        &Params::from_flat(arch, dims, &g).unwrap().tensors(),
        1e-3,
    )
    .unwrap();
    assert!((o.state()[pc - 1] - 0.01).abs() < 1e-7); // m of b_dec's last entry: 0.1·0.1
    assert!((o.state()[2 * pc - 1] - 1e-5).abs() < 1e-9); // v: 0.001·0.01
}

/// The streaming trainer trains a TopK SAE with AuxK on tracked dead latents, in one
/// state slice plus the tracker's memory, and matches the owned trainer bit for bit.
#[test]
fn streaming_topk_with_dead_latents_matches_trainer() {
    use sae_kernels::train::DeadLatents;
    let dims = Dims::new(8, 12).unwrap();
    let arch = Arch::topk(2);
    let options = TrainOptions::saelens_topk(8);
    let data: Vec<f32> = (0..8 * 8)
        .map(|i| ((i * 31 % 17) as f32 - 8.0) * 0.1)
        .collect();
    let optimizer = OptimConfig {
        max_grad_norm: Some(1.0),
        ..OptimConfig::default()
    };
    let cfg = StreamConfig {
        optimizer,
        lr: LrSchedule::constant(1e-2),
        l1: L1Warmup::constant(0.0),
        block_rows: 4,
    };
    let init = Sae::new(arch, dims, 5).unwrap();
    let mut buf = init.as_flat().to_vec();
    let mut st = vec![0.0; streaming_state_len(arch, options, dims, &cfg, true)];
    let (mut since, mut flags) = (vec![0u32; 12], vec![false; 24]);
    let window = 4; // dead after one block without firing
    let mut s = StreamingTrainer::new(
        sae_kernels::train::ModelMut {
            params: ParamsMut::from_flat(arch, dims, &mut buf).unwrap(),
            options,
        },
        cfg,
        &mut st,
    )
    .unwrap()
    .with_dead_latents(DeadLatents::new(&mut since, &mut flags, window).unwrap())
    .unwrap();
    for row in data.chunks_exact(8) {
        s.push(row).unwrap();
    }
    assert_eq!(s.steps(), 2);
    let dead = s.dead_latents().unwrap().dead_fraction();
    assert!(dead > 0.0, "TopK 2 of 12 on 4 rows leaves latents dead");
    let p1 = flat(s.params());
    let mut owned = Trainer::new(
        init,
        options,
        TrainConfig {
            optimizer,
            lr: cfg.lr,
            l1: cfg.l1,
            batch: 4,
            dead_window_tokens: Some(window),
        },
    )
    .unwrap();
    owned.step(&data[..32], 4).unwrap();
    owned.step(&data[32..], 4).unwrap();
    assert_eq!(p1, flat(owned.sae().params().into()));
    assert_eq!(owned.dead_fraction(), Some(dead));
}

/// The latents reported as fired by the gradient pass (read from its own codes, no
/// second encoder pass) are exactly those active in `encode`'s codes of the same
/// effective model, for every architecture, on dense and sparse row blocks, with and
/// without AuxK, with one-row and multi-row blocks.
#[test]
fn fired_latents_come_from_the_gradient_pass() {
    use sae_kernels::train::loss_and_grad as train_loss_and_grad;
    let dims = Dims::new(6, 40).unwrap();
    let n = 9;
    let x: Vec<f32> = (0..n * 6)
        .map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.13)
        .collect();
    let dead: Vec<bool> = (0..40).map(|i| i % 3 == 0).collect();
    let cases = [
        (Arch::tied(), TrainOptions::default(), 0.0),
        (Arch::tied(), TrainOptions::default(), -0.9), // few active: sparse blocks
        (Arch::standard(), TrainOptions::default(), 0.0),
        (Arch::standard(), TrainOptions::default(), -0.04),
        (Arch::topk(3), TrainOptions::default(), 0.0),
        (Arch::topk(3), TrainOptions::saelens_topk(6), 0.0),
    ];
    for (case, &(arch, options, shift)) in cases.iter().enumerate() {
        let mut sae = Sae::new(arch, dims, 3 + case as u64).unwrap();
        let mut pm = sae.params_mut();
        for t in pm.tensors_mut().iter_mut() {
            if t.role == sae_kernels::model::Role::EncoderBias {
                for (i, v) in t.data.iter_mut().enumerate() {
                    // Every 7th latent can never fire.
                    *v = if i % 7 == 0 {
                        -100.0
                    } else {
                        shift + 0.05 * (i % 4) as f32
                    };
                }
            }
        }
        let model = ModelRef {
            params: sae.params(),
            options,
        };
        // Expected: encode with the model the step evaluates (rescaling folded in).
        let eff = sae_kernels::owned::inference_model(&sae, options).unwrap();
        let mut codes = vec![0.0; n * 40];
        let mut es = vec![0.0; encode_scratch_len(arch, dims, 4)];
        encode(eff.params(), &x, n, &mut codes, &mut es).unwrap();
        let want: Vec<bool> = (0..40)
            .map(|j| codes.chunks_exact(40).any(|r| r[j] > 0.0))
            .collect();
        assert!(
            want.iter().any(|&f| f) && want.iter().any(|&f| !f),
            "case {case}"
        );
        for rows in [1, 4] {
            let mut s = vec![0.0; options.grad_scratch_len(arch, dims, rows, true)];
            let mut g = vec![0.0; arch.param_len(dims)];
            let mut fired = vec![true; 40];
            let dm = options.aux.map(|_| &dead[..]);
            train_loss_and_grad(model, &x, n, 0.1, dm, &mut g, Some(&mut fired), &mut s).unwrap();
            assert_eq!(fired, want, "case {case}, {rows}-row blocks");
        }
    }
}
