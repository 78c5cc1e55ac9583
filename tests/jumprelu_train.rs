//! JumpReLU training gradients.
//!
//! 1. Against SAELens itself: `tests/fixtures/saelens/jumprelu_train.json` records
//!    SAELens 6.54.12's `JumpReLUTrainingSAE.training_forward_pass` loss and PyTorch
//!    autograd gradients (float64; the threshold float32 as SAELens keeps it) of every
//!    tensor — `W_enc`, `b_enc`, `W_dec`, `b_dec` and the straight-through estimate for
//!    `threshold` — made by `gen_jumprelu_train.py`. Our f32 loss and gradients, on the
//!    dense, sparse and automatic paths, must match within
//!    `max|ours − SAELens| / max|SAELens| ≤ 1e-5` per tensor.
//! 2. The sparse path gives the dense path's gradients (same bound, and the threshold
//!    gradient is zero exactly where the dense one is).
//! 3. Finite differences in f64 for the tensors with true derivatives (`W_enc`, `b_enc`,
//!    `W_dec`, `b_dec`): central differences (step 1e-6) of an independent f64 loss,
//!    with no pre-activation within 1e-3 of its threshold, so no step crosses a jump.
//!    Bound `max|g − fd| ≤ 1e-4·max|fd|` per tensor.
//! 4. The threshold gradient is 0 without a bandwidth, and the estimator's two terms
//!    (the jump and the L0 penalty) each move it the right way.

mod common;
use common::json::{f32s, f64s, rel_err_nonzero as rel_err};
use sae_kernels::model::{
    Arch, Dims, LossOptions, LossParts, Params, ParamsMut, Path, Weights, grad_scratch_len,
    loss_and_grad,
};
use serde_json::Value;

const TOL: f64 = 1e-5;

fn fixture() -> Value {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/saelens/jumprelu_train.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// One model: its architecture, dimensions, the five tensors and a batch.
struct Case {
    arch: Arch,
    dims: Dims,
    tensors: [Vec<f32>; 5],
    x: Vec<f32>,
    n: usize,
    bandwidth: f32,
    alpha: f32,
}

impl Case {
    fn from_json(c: &Value) -> Self {
        let (d, h, n) = (
            c["d_in"].as_u64().unwrap() as usize,
            c["d_sae"].as_u64().unwrap() as usize,
            c["n"].as_u64().unwrap() as usize,
        );
        assert_eq!(c["jumprelu_sparsity_loss_mode"], "step");
        let arch = Arch {
            weights: Weights::Untied {
                center_input: c["apply_b_dec_to_input"].as_bool().unwrap(),
            },
            ..Arch::jumprelu()
        };
        Self {
            arch,
            dims: Dims::new(d, h).unwrap(),
            tensors: ["W_enc", "b_enc", "W_dec", "b_dec", "threshold"].map(|k| f32s(c, k)),
            x: f32s(c, "x"),
            n,
            bandwidth: c["jumprelu_bandwidth"].as_f64().unwrap() as f32,
            alpha: c["l0_coefficient"].as_f64().unwrap() as f32,
        }
    }

    fn params(&self) -> Params<'_> {
        let [a, b, c, d, e] = &self.tensors;
        Params::new(self.arch, self.dims, [a, b, c, d, e]).unwrap()
    }

    /// Loss and the five gradients on `path`.
    fn grads(&self, path: Path, bandwidth: f32, block_rows: usize) -> (LossParts, [Vec<f32>; 5]) {
        let mut g = self.tensors.clone().map(|t| vec![f32::NAN; t.len()]);
        let mut scratch = vec![0.0; grad_scratch_len(self.arch, self.dims, block_rows)];
        let opts = LossOptions {
            path,
            jumprelu_bandwidth: bandwidth,
            ..LossOptions::alpha(self.alpha)
        };
        let parts = {
            let [a, b, c, d, e] = &mut g;
            let gm = ParamsMut::new(self.arch, self.dims, [a, b, c, d, e]).unwrap();
            loss_and_grad(self.params(), &self.x, self.n, &opts, gm, &mut scratch).unwrap()
        };
        (parts, g)
    }
}

const NAMES: [&str; 5] = ["W_enc", "b_enc", "W_dec", "b_dec", "threshold"];

#[test]
fn matches_saelens_training_loss_and_every_gradient() {
    let fx = fixture();
    let cases = fx["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 3);
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let case = Case::from_json(c);
        let want: [Vec<f64>; 5] = NAMES.map(|k| f64s(c, &format!("grad_{k}")));
        // The fixture exercises the estimator: some threshold gradients are non-zero.
        assert!(want[4].iter().filter(|v| **v != 0.0).count() >= 3, "{name}");
        for path in [Path::Dense, Path::Sparse, Path::Auto] {
            for block_rows in [1, 5, 64] {
                let (parts, got) = case.grads(path, case.bandwidth, block_rows);
                let loss = c["loss"].as_f64().unwrap();
                let l0_loss = c["l0_loss"].as_f64().unwrap();
                let mse = c["mse_loss"].as_f64().unwrap();
                let at = format!("{name} {path:?} block_rows {block_rows}");
                assert!(
                    (f64::from(parts.loss) - loss).abs() <= TOL * loss,
                    "{at}: loss {} vs {loss}",
                    parts.loss
                );
                assert!(
                    (f64::from(parts.sq_err) - mse).abs() <= TOL * mse,
                    "{at}: mse"
                );
                let l0 = f64::from(case.alpha) * f64::from(parts.l1);
                assert!(
                    (l0 - l0_loss).abs() <= TOL * l0_loss,
                    "{at}: l0 loss {l0} vs {l0_loss}"
                );
                for ((g, w), k) in got.iter().zip(&want).zip(NAMES) {
                    let e = rel_err(g, w);
                    assert!(e <= TOL, "{at}: grad {k} rel err {e:e}");
                }
            }
        }
    }
}

#[test]
fn sparse_path_gives_the_dense_gradients() {
    let fx = fixture();
    for c in fx["cases"].as_array().unwrap() {
        let case = Case::from_json(c);
        let (pd, gd) = case.grads(Path::Dense, case.bandwidth, 4);
        let (ps, gs) = case.grads(Path::Sparse, case.bandwidth, 4);
        assert!((pd.loss - ps.loss).abs() <= 1e-6 * pd.loss.abs());
        for ((a, b), k) in gd.iter().zip(&gs).zip(NAMES) {
            let a64: Vec<f64> = a.iter().map(|&v| f64::from(v)).collect();
            let e = rel_err(b, &a64);
            assert!(e <= 1e-6, "{k}: sparse vs dense rel err {e:e}");
        }
        // The same features get a threshold gradient on both paths.
        for (a, b) in gd[4].iter().zip(&gs[4]) {
            assert_eq!(*a == 0.0, *b == 0.0);
        }
    }
}

/// The loss in f64: `mean_rows(‖x − x̂‖²) + α·mean_rows(#{pre > θ})`, SAELens' forward.
fn loss64(case: &Case, t: &[Vec<f64>; 5]) -> f64 {
    let Dims { d, h } = case.dims;
    let center = case.arch.centers_input();
    let [w_enc, b_enc, w_dec, b_dec, th] = t;
    let mut total = 0.0;
    for r in 0..case.n {
        let x: Vec<f64> = case.x[r * d..(r + 1) * d]
            .iter()
            .map(|&v| f64::from(v))
            .collect();
        let xin: Vec<f64> = (0..d)
            .map(|j| x[j] - if center { b_dec[j] } else { 0.0 })
            .collect();
        let mut xh = b_dec.clone();
        let mut l0 = 0.0;
        for i in 0..h {
            let pre: f64 = (0..d).map(|j| xin[j] * w_enc[j * h + i]).sum::<f64>() + b_enc[i];
            if pre > th[i] {
                l0 += 1.0;
                for j in 0..d {
                    xh[j] += pre * w_dec[i * d + j];
                }
            }
        }
        let se: f64 = (0..d).map(|j| (x[j] - xh[j]).powi(2)).sum();
        total += se + f64::from(case.alpha) * l0;
    }
    total / case.n as f64
}

#[test]
fn finite_differences_for_the_weights_and_biases() {
    // A model of our own, with every pre-activation ≥ 1e-3 away from its threshold.
    let (d, h, n) = (6, 20, 9);
    let dims = Dims::new(d, h).unwrap();
    let mut state = 12345u64;
    let mut rnd = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    };
    let mut tensors = [
        (0..d * h).map(|_| rnd() * 0.6).collect::<Vec<f32>>(),
        (0..h).map(|_| rnd() * 0.2).collect(),
        (0..h * d).map(|_| rnd() * 0.5).collect(),
        (0..d).map(|_| rnd() * 0.3).collect(),
        (0..h).map(|_| (rnd() + 1.0) * 0.3).collect(),
    ];
    let x: Vec<f32> = (0..n * d).map(|_| rnd() * 1.5).collect();
    // Move thresholds that sit too close to a pre-activation.
    for i in 0..h {
        for _ in 0..50 {
            let near = (0..n).any(|r| {
                let pre: f32 = (0..d)
                    .map(|j| (x[r * d + j] - tensors[3][j]) * tensors[0][j * h + i])
                    .sum::<f32>()
                    + tensors[1][i];
                (pre - tensors[4][i]).abs() < 2e-3
            });
            if !near {
                break;
            }
            tensors[4][i] += 0.01;
        }
    }
    let case = Case {
        arch: Arch::jumprelu(),
        dims,
        tensors,
        x,
        n,
        bandwidth: 0.05,
        alpha: 0.8,
    };
    let t64: [Vec<f64>; 5] = case
        .tensors
        .clone()
        .map(|t| t.iter().map(|&v| f64::from(v)).collect());
    for path in [Path::Dense, Path::Sparse] {
        let (_, got) = case.grads(path, case.bandwidth, 4);
        for (ti, name) in NAMES.iter().enumerate().take(4) {
            let mut t = t64.clone();
            let step = 1e-6;
            let mut fd = vec![0.0; t[ti].len()];
            for e in 0..fd.len() {
                let old = t[ti][e];
                t[ti][e] = old + step;
                let up = loss64(&case, &t);
                t[ti][e] = old - step;
                let down = loss64(&case, &t);
                t[ti][e] = old;
                fd[e] = (up - down) / (2.0 * step);
            }
            let e = rel_err(&got[ti], &fd);
            assert!(
                e <= 1e-4,
                "{path:?} {name}: rel err {e:e} against finite differences"
            );
        }
    }
}

#[test]
fn threshold_gradient_terms_and_zero_bandwidth() {
    let fx = fixture();
    let case = Case::from_json(&fx["cases"][1]);
    // No bandwidth: frozen thresholds (gradient exactly 0), the other gradients unchanged.
    let (_, g0) = case.grads(Path::Auto, 0.0, 64);
    let (_, g1) = case.grads(Path::Auto, case.bandwidth, 64);
    assert!(g0[4].iter().all(|&v| v == 0.0));
    for k in 0..4 {
        assert_eq!(g0[k], g1[k], "{}", NAMES[k]);
    }
    // The L0 term alone (α grows): every in-band feature's threshold gradient drops by
    // (Δα/n/ε)·(its in-band rows), pushing θ up (fewer active codes).
    let more = Case {
        alpha: case.alpha + 1.0,
        tensors: case.tensors.clone(),
        x: case.x.clone(),
        ..case
    };
    let (_, g2) = more.grads(Path::Auto, case.bandwidth, 64);
    let p = case.params();
    let Dims { d, h } = case.dims;
    let th = p.threshold().unwrap();
    for i in 0..h {
        let in_band = (0..case.n)
            .filter(|&r| {
                let pre: f32 = (0..d)
                    .map(|j| (case.x[r * d + j] - case.tensors[3][j]) * case.tensors[0][j * h + i])
                    .sum::<f32>()
                    + case.tensors[1][i];
                ((pre - th[i]) / case.bandwidth).abs() < 0.5
            })
            .count();
        let want = -(in_band as f32) / case.n as f32 / case.bandwidth;
        let got = g2[4][i] - g1[4][i];
        assert!(
            (got - want).abs() <= 1e-4 * want.abs().max(1.0),
            "feature {i}: {got} vs {want}"
        );
    }
}

/// Training keeps the thresholds `≥ 0` (SAELens' projection) and moves them.
#[test]
fn training_moves_thresholds_and_keeps_them_non_negative() {
    use sae_kernels::model::Role;
    use sae_kernels::optim::OptimConfig;
    use sae_kernels::optim::{L1Warmup, LrSchedule};
    use sae_kernels::owned::{ArrayBatches, Sae, TrainConfig, Trainer};
    use sae_kernels::train::TrainOptions;
    let dims = Dims::new(8, 24).unwrap();
    let mut state = 99u64;
    let data: Vec<f32> = (0..8 * 256)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    let run = |alpha: f32, bandwidth: f32| {
        let mut sae = Sae::new(Arch::jumprelu(), dims, 3).unwrap();
        for t in sae.params_mut().tensors_mut() {
            if t.role == Role::Threshold {
                t.data.fill(0.005);
            }
        }
        let config = TrainConfig {
            optimizer: OptimConfig {
                max_grad_norm: Some(1.0),
                ..OptimConfig::default()
            },
            lr: LrSchedule::constant(0.02),
            l1: L1Warmup::constant(alpha),
            batch: 32,
            dead_window_tokens: None,
        };
        let options = TrainOptions {
            jumprelu_bandwidth: bandwidth,
            ..TrainOptions::saelens_jumprelu()
        };
        let mut tr = Trainer::new(sae, options, config).unwrap();
        let mut src = ArrayBatches::new(data.clone(), 8, 32, 1).unwrap();
        for _ in 0..30 {
            tr.step_from(&mut src).unwrap();
        }
        tr.sae().params().threshold().unwrap().to_vec()
    };
    // No L0 pressure: Adam's steps on the jump term alone push some thresholds below 0,
    // where the projection holds them at exactly 0.
    let th = run(0.0, 0.5);
    assert!(th.iter().all(|&t| t >= 0.0), "{th:?}");
    assert!(th.contains(&0.0), "{th:?}");
    assert!(th.iter().any(|&t| t != 0.005 && t != 0.0), "{th:?}");
    // A strong L0 penalty raises every threshold that had rows in its band.
    let th = run(5.0, 0.5);
    assert!(
        th.iter().filter(|&&t| t > 0.1).count() >= dims.h / 2,
        "{th:?}"
    );
    // Zero bandwidth: frozen thresholds.
    let th = run(5.0, 0.0);
    assert!(th.iter().all(|&t| t == 0.005), "{th:?}");
}

/// Found by the `api` fuzz target: a subnormal bandwidth (2.6e-43) on moderate inputs
/// made `θ/ε` overflow, so `loss_and_grad` returned `Ok` with an infinite threshold
/// gradient. A bandwidth is 0 or a positive normal float; anything else is refused
/// before anything is written, by the loss and by the training options alike.
#[test]
fn subnormal_or_negative_bandwidth_is_refused_and_writes_nothing() {
    use sae_kernels::Error;
    use sae_kernels::train::TrainOptions;
    let case = Case::from_json(&fixture()["cases"][1]);
    for bw in [
        f32::from_bits(185),
        f32::MIN_POSITIVE / 2.0,
        -0.05,
        -0.0 - f32::MIN_POSITIVE,
    ] {
        let mut g = case.tensors.clone().map(|t| vec![7.0f32; t.len()]);
        let mut scratch = vec![-3.25; grad_scratch_len(case.arch, case.dims, 64)];
        let opts = LossOptions {
            jumprelu_bandwidth: bw,
            ..LossOptions::alpha(case.alpha)
        };
        let r = {
            let [a, b, c, d, e] = &mut g;
            let gm = ParamsMut::new(case.arch, case.dims, [a, b, c, d, e]).unwrap();
            loss_and_grad(case.params(), &case.x, case.n, &opts, gm, &mut scratch)
        };
        assert!(
            matches!(
                r,
                Err(Error::OutOfRange {
                    arg: "jumprelu_bandwidth",
                    ..
                })
            ),
            "bandwidth {bw:e}: {r:?}"
        );
        assert!(
            g.iter().flatten().all(|&v| v == 7.0),
            "bandwidth {bw:e} wrote gradients"
        );
        assert!(
            scratch.iter().all(|&v| v == -3.25),
            "bandwidth {bw:e} wrote scratch"
        );
        let t = TrainOptions {
            jumprelu_bandwidth: bw,
            ..TrainOptions::saelens_jumprelu()
        };
        assert!(
            t.validate(case.arch).is_err(),
            "training options took {bw:e}"
        );
    }
    // A tiny accepted bandwidth, with these moderate inputs, still gives finite
    // gradients; 0 freezes the thresholds.
    for bw in [f32::MIN_POSITIVE * 1e20, 0.0] {
        let (parts, g) = case.grads(Path::Dense, bw, 64);
        assert!(parts.loss.is_finite());
        assert!(
            g.iter().flatten().all(|v| v.is_finite()),
            "bandwidth {bw:e}"
        );
    }
}
