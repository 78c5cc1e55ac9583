//! The untied SAE family: gradients by finite differences of an independent f64
//! reference, the tied→untied mapping, TopK and JumpReLU semantics, decoder-row
//! helpers and error paths.
//!
//! Finite differences: central, step 1e-5, on an f64 re-implementation of the loss
//! (written from the formulas in `model::core`, not from the library code); the
//! library's f32 gradients must agree to `max|a − g| / max|g| ≤ 1e-4` per tensor
//! (f32 rounding gives ~1e-6; the FD error is ~1e-9). The test data keeps every
//! pre-activation at least 1e-4 away from a kink (0, θ, or the TopK boundary), while a
//! step moves one by at most ~2e-5, so no step crosses one; the test checks that margin.

use old::{
    Activation, Penalty, UntiedConfig, UntiedParams, UntiedParamsMut, untied_encode,
    untied_forward, untied_loss_and_grad, untied_loss_and_grad_auxk,
};
use sae_kernels::model::activation::topk_relu_row;
use sae_kernels::model::{normalize_decoder_rows, remove_parallel_decoder_grad};
use sae_kernels::{
    Error,
    model::{
        Arch, Dims, ForwardOutputs, LossOptions, Params, ParamsMut, Path, forward,
        forward_scratch_len, grad_scratch_len, loss_and_grad,
    },
    owned::Sae,
};

/// The untied family's former call shapes (activation with its thresholds, penalty
/// with its coefficient), written over the one core so that the reference checks
/// below read as before; `PATH` runs them on the dense or the sparse path.
mod old {
    use sae_kernels::{
        Error,
        model::{
            Arch, Dims, ForwardOutputs, LossOptions, LossParts, Params, ParamsMut, Path, Weights,
        },
    };
    use std::cell::Cell;

    thread_local! {
        pub static PATH: Cell<Path> = const { Cell::new(Path::Auto) };
    }

    #[derive(Clone, Copy, Debug, PartialEq)]
    pub enum Activation<'a> {
        Relu,
        TopK { k: usize },
        JumpRelu { threshold: &'a [f32] },
    }

    #[derive(Clone, Copy, Debug, PartialEq)]
    pub enum Penalty {
        L1 { alpha: f32 },
        DecoderNormL1 { alpha: f32 },
    }

    impl Penalty {
        fn parts(self) -> (sae_kernels::model::Penalty, f32) {
            match self {
                Penalty::L1 { alpha } => (sae_kernels::model::Penalty::L1, alpha),
                Penalty::DecoderNormL1 { alpha } => {
                    (sae_kernels::model::Penalty::DecoderNormL1, alpha)
                }
            }
        }
    }

    #[derive(Clone, Copy, Debug)]
    pub struct UntiedConfig<'a> {
        pub activation: Activation<'a>,
        pub apply_b_dec_to_input: bool,
    }

    impl UntiedConfig<'_> {
        pub fn standard() -> Self {
            Self {
                activation: Activation::Relu,
                apply_b_dec_to_input: true,
            }
        }
    }

    #[derive(Clone, Copy, Debug)]
    pub struct UntiedParams<'a> {
        dims: Dims,
        t: [&'a [f32]; 4],
    }

    impl<'a> UntiedParams<'a> {
        pub fn new(
            dims: Dims,
            w_enc: &'a [f32],
            b_enc: &'a [f32],
            w_dec: &'a [f32],
            b_dec: &'a [f32],
        ) -> Result<Self, Error> {
            Params::new(Arch::standard(), dims, [w_enc, b_enc, w_dec, b_dec])?;
            Ok(Self {
                dims,
                t: [w_enc, b_enc, w_dec, b_dec],
            })
        }
    }

    pub struct UntiedParamsMut<'a> {
        dims: Dims,
        t: [&'a mut [f32]; 4],
    }

    impl<'a> UntiedParamsMut<'a> {
        pub fn new(
            dims: Dims,
            w_enc: &'a mut [f32],
            b_enc: &'a mut [f32],
            w_dec: &'a mut [f32],
            b_dec: &'a mut [f32],
        ) -> Result<Self, Error> {
            let t = [w_enc, b_enc, w_dec, b_dec];
            let lens = [dims.m_len(), dims.h, dims.m_len(), dims.d];
            for (name, (t, l)) in ["W_enc", "b_enc", "W_dec", "b_dec"]
                .into_iter()
                .zip(t.iter().zip(lens))
            {
                if t.len() != l {
                    return Err(Error::Length {
                        arg: name,
                        expected: l,
                        got: t.len(),
                    });
                }
            }
            Ok(Self { dims, t })
        }
    }

    fn arch(cfg: &UntiedConfig<'_>, pen: sae_kernels::model::Penalty) -> Arch {
        Arch {
            weights: Weights::Untied {
                center_input: cfg.apply_b_dec_to_input,
            },
            activation: match cfg.activation {
                Activation::Relu => sae_kernels::model::Activation::Relu,
                Activation::TopK { k } => sae_kernels::model::Activation::TopK { k },
                Activation::JumpRelu { .. } => sae_kernels::model::Activation::JumpRelu,
            },
            penalty: pen,
        }
    }

    fn params<'a>(
        p: UntiedParams<'a>,
        cfg: &UntiedConfig<'a>,
        pen: sae_kernels::model::Penalty,
    ) -> Result<Params<'a>, Error> {
        let a = arch(cfg, pen);
        let [we, be, wd, bd] = p.t;
        match cfg.activation {
            Activation::JumpRelu { threshold } => {
                Params::new(a, p.dims, [we, be, wd, bd, threshold])
            }
            _ => Params::new(a, p.dims, [we, be, wd, bd]),
        }
    }

    fn opts<'a>(alpha: f32, aux: Option<sae_kernels::model::AuxK<'a>>) -> LossOptions<'a> {
        LossOptions {
            alpha,
            path: PATH.with(Cell::get),
            aux,
            jumprelu_bandwidth: 0.0,
        }
    }

    /// A scratch length that fits every architecture of these tests.
    pub fn scratch_len(dims: Dims, rows: usize) -> usize {
        let big = Arch {
            weights: Weights::Untied { center_input: true },
            activation: sae_kernels::model::Activation::TopK { k: 1 },
            penalty: sae_kernels::model::Penalty::DecoderNormL1,
        };
        sae_kernels::model::grad_scratch_len(big, dims, rows)
            .max(sae_kernels::model::forward_scratch_len(big, dims, rows))
    }

    pub fn untied_encode(
        p: UntiedParams<'_>,
        cfg: UntiedConfig<'_>,
        x: &[f32],
        n: usize,
        codes: &mut [f32],
        scratch: &mut [f32],
    ) -> Result<(), Error> {
        let p = params(p, &cfg, sae_kernels::model::Penalty::None)?;
        sae_kernels::model::encode(p, x, n, codes, scratch)
    }

    pub fn untied_forward(
        p: UntiedParams<'_>,
        cfg: UntiedConfig<'_>,
        x: &[f32],
        n: usize,
        pen: Penalty,
        out: ForwardOutputs<'_>,
        scratch: &mut [f32],
    ) -> Result<LossParts, Error> {
        let (pk, alpha) = pen.parts();
        let p = params(p, &cfg, pk)?;
        sae_kernels::model::forward(p, x, n, &opts(alpha, None), out, scratch)
    }

    #[allow(clippy::too_many_arguments)]
    pub fn untied_loss_and_grad_auxk(
        p: UntiedParams<'_>,
        cfg: UntiedConfig<'_>,
        x: &[f32],
        n: usize,
        pen: Penalty,
        aux: Option<sae_kernels::model::AuxK<'_>>,
        grads: UntiedParamsMut<'_>,
        scratch: &mut [f32],
    ) -> Result<(LossParts, f32), Error> {
        let (pk, alpha) = pen.parts();
        let p = params(p, &cfg, pk)?;
        let [a, b, c, d] = grads.t;
        let mut th = vec![0.0; grads.dims.h];
        let g = match cfg.activation {
            Activation::JumpRelu { .. } => {
                ParamsMut::new(p.arch(), grads.dims, [a, b, c, d, &mut th])
            }
            _ => ParamsMut::new(p.arch(), grads.dims, [a, b, c, d]),
        }?;
        let parts = sae_kernels::model::loss_and_grad(p, x, n, &opts(alpha, aux), g, scratch)?;
        Ok((parts, parts.aux))
    }

    pub fn untied_loss_and_grad(
        p: UntiedParams<'_>,
        cfg: UntiedConfig<'_>,
        x: &[f32],
        n: usize,
        pen: Penalty,
        grads: UntiedParamsMut<'_>,
        scratch: &mut [f32],
    ) -> Result<LossParts, Error> {
        untied_loss_and_grad_auxk(p, cfg, x, n, pen, None, grads, scratch).map(|r| r.0)
    }
}

/// SplitMix64, uniform in [-1, 1).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    fn vec(&mut self, n: usize, s: f32) -> Vec<f32> {
        (0..n).map(|_| self.next() * s).collect()
    }
}

#[derive(Clone)]
struct Model {
    dims: Dims,
    w_enc: Vec<f32>,
    b_enc: Vec<f32>,
    w_dec: Vec<f32>,
    b_dec: Vec<f32>,
}

impl Model {
    fn random(d: usize, h: usize, seed: u64) -> Self {
        let mut r = Rng(seed);
        Self {
            dims: Dims::new(d, h).unwrap(),
            w_enc: r.vec(d * h, 0.6),
            b_enc: r.vec(h, 0.3),
            w_dec: r.vec(h * d, 0.5),
            b_dec: r.vec(d, 0.3),
        }
    }
    fn p(&self) -> UntiedParams<'_> {
        UntiedParams::new(
            self.dims,
            &self.w_enc,
            &self.b_enc,
            &self.w_dec,
            &self.b_dec,
        )
        .unwrap()
    }
}

#[derive(Clone, Copy)]
enum Act<'a> {
    Relu,
    TopK(usize),
    Jump(&'a [f32]),
}

impl<'a> Act<'a> {
    fn lib(self) -> Activation<'a> {
        match self {
            Act::Relu => Activation::Relu,
            Act::TopK(k) => Activation::TopK { k },
            Act::Jump(t) => Activation::JumpRelu { threshold: t },
        }
    }
}

/// The f64 reference loss; also returns the smallest distance of a pre-activation to
/// a kink (0, θ_i, or the gap between the k-th and (k+1)-th largest for TopK).
#[allow(clippy::too_many_arguments)]
fn ref_loss(
    dims: Dims,
    w_enc: &[f64],
    b_enc: &[f64],
    w_dec: &[f64],
    b_dec: &[f64],
    act: Act<'_>,
    apply: bool,
    pen: Penalty,
    x: &[f32],
    n: usize,
) -> (f64, f64) {
    let Dims { d, h } = dims;
    let (alpha, weighted) = match pen {
        Penalty::L1 { alpha } => (f64::from(alpha), false),
        Penalty::DecoderNormL1 { alpha } => (f64::from(alpha), true),
    };
    let norms: Vec<f64> = (0..h)
        .map(|i| {
            if weighted {
                w_dec[i * d..(i + 1) * d]
                    .iter()
                    .map(|v| v * v)
                    .sum::<f64>()
                    .sqrt()
            } else {
                1.0
            }
        })
        .collect();
    let mut total = 0.0;
    let mut margin = f64::INFINITY;
    for r in 0..n {
        let xr: Vec<f64> = x[r * d..(r + 1) * d]
            .iter()
            .map(|&v| f64::from(v))
            .collect();
        let xc: Vec<f64> = (0..d)
            .map(|j| if apply { xr[j] - b_dec[j] } else { xr[j] })
            .collect();
        let pre: Vec<f64> = (0..h)
            .map(|i| b_enc[i] + (0..d).map(|j| xc[j] * w_enc[j * h + i]).sum::<f64>())
            .collect();
        let mut f = vec![0.0; h];
        match act {
            Act::Relu => {
                for i in 0..h {
                    f[i] = pre[i].max(0.0);
                    margin = margin.min(pre[i].abs());
                }
            }
            Act::TopK(k) => {
                let mut idx: Vec<usize> = (0..h).collect();
                idx.sort_by(|&a, &b| pre[b].total_cmp(&pre[a]).then(a.cmp(&b)));
                for &i in &idx[..k] {
                    f[i] = pre[i].max(0.0);
                    margin = margin.min(pre[i].abs());
                }
                if k < h {
                    margin = margin.min(pre[idx[k - 1]] - pre[idx[k]]);
                }
            }
            Act::Jump(t) => {
                for i in 0..h {
                    let th = f64::from(t[i]);
                    f[i] = if pre[i] > th { pre[i].max(0.0) } else { 0.0 };
                    margin = margin.min((pre[i] - th).abs()).min(pre[i].abs());
                }
            }
        }
        let mut sq = 0.0;
        for j in 0..d {
            let xh = b_dec[j] + (0..h).map(|i| f[i] * w_dec[i * d + j]).sum::<f64>();
            sq += (xh - xr[j]).powi(2);
        }
        let p: f64 = (0..h).map(|i| f[i].abs() * norms[i]).sum();
        total += sq + alpha * p;
    }
    (total / n as f64, margin)
}

fn to64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

fn rel(got: &[f32], want: &[f64]) -> f64 {
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let diff = got
        .iter()
        .zip(want)
        .fold(0.0f64, |m, (&a, &b)| m.max((f64::from(a) - b).abs()));
    if scale == 0.0 { diff } else { diff / scale }
}

fn lib_grads(
    m: &Model,
    act: Act<'_>,
    apply: bool,
    pen: Penalty,
    x: &[f32],
    n: usize,
    block: usize,
) -> (f32, [Vec<f32>; 4]) {
    let dims = m.dims;
    let mut g = [
        vec![f32::NAN; dims.m_len()],
        vec![f32::NAN; dims.h],
        vec![f32::NAN; dims.m_len()],
        vec![f32::NAN; dims.d],
    ];
    let mut scratch = vec![0.0; old::scratch_len(dims, block)];
    let [a, b, c, e] = &mut g;
    let cfg = UntiedConfig {
        activation: act.lib(),
        apply_b_dec_to_input: apply,
    };
    let loss = untied_loss_and_grad(
        m.p(),
        cfg,
        x,
        n,
        pen,
        UntiedParamsMut::new(dims, a, b, c, e).unwrap(),
        &mut scratch,
    )
    .unwrap();
    (loss.loss, g)
}

fn check_fd(m: &Model, act: Act<'_>, apply: bool, pen: Penalty, x: &[f32], n: usize, label: &str) {
    let dims = m.dims;
    let p64 = [
        to64(&m.w_enc),
        to64(&m.b_enc),
        to64(&m.w_dec),
        to64(&m.b_dec),
    ];
    let eval =
        |p: &[Vec<f64>; 4]| ref_loss(dims, &p[0], &p[1], &p[2], &p[3], act, apply, pen, x, n);
    let (l0, margin) = eval(&p64);
    assert!(
        margin > 1e-4,
        "{label}: test data too close to a kink ({margin:e})"
    );
    for (block, path) in [1, 3, 64]
        .into_iter()
        .flat_map(|b| [(b, Path::Dense), (b, Path::Sparse)])
    {
        old::PATH.with(|p| p.set(path));
        let (loss, g) = lib_grads(m, act, apply, pen, x, n, block);
        assert!(
            ((f64::from(loss) - l0) / l0).abs() < 1e-5,
            "{label}: loss {loss} vs {l0}"
        );
        let eps = 1e-5;
        for t in 0..4 {
            let mut fd = vec![0.0; p64[t].len()];
            for i in 0..fd.len() {
                let mut pp = p64.clone();
                pp[t][i] += eps;
                let (lp, _) = eval(&pp);
                pp[t][i] -= 2.0 * eps;
                let (lm, _) = eval(&pp);
                fd[i] = (lp - lm) / (2.0 * eps);
            }
            let err = rel(&g[t], &fd);
            assert!(
                err < 1e-4,
                "{label} (block {block}, {path:?}): tensor {t} rel err {err:e}"
            );
            assert!(
                fd.iter().any(|&v| v != 0.0),
                "{label}: tensor {t} has zero gradient"
            );
        }
    }
}

#[test]
fn gradients_match_finite_differences() {
    let (d, h, n) = (5, 12, 7);
    let x = Rng(99).vec(n * d, 1.0);
    let m = Model::random(d, h, 1);
    check_fd(
        &m,
        Act::Relu,
        true,
        Penalty::L1 { alpha: 0.1 },
        &x,
        n,
        "relu/l1/bdec",
    );
    check_fd(
        &m,
        Act::Relu,
        false,
        Penalty::L1 { alpha: 0.1 },
        &x,
        n,
        "relu/l1",
    );
    check_fd(
        &m,
        Act::Relu,
        true,
        Penalty::DecoderNormL1 { alpha: 0.2 },
        &x,
        n,
        "relu/dnl1/bdec",
    );
    check_fd(
        &m,
        Act::Relu,
        false,
        Penalty::DecoderNormL1 { alpha: 0.2 },
        &x,
        n,
        "relu/dnl1",
    );
    check_fd(
        &m,
        Act::TopK(3),
        true,
        Penalty::L1 { alpha: 0.05 },
        &x,
        n,
        "topk/l1/bdec",
    );
    check_fd(
        &m,
        Act::TopK(4),
        false,
        Penalty::DecoderNormL1 { alpha: 0.05 },
        &x,
        n,
        "topk/dnl1",
    );
    let th: Vec<f32> = (0..h).map(|i| 0.05 + 0.03 * i as f32).collect();
    check_fd(
        &m,
        Act::Jump(&th),
        true,
        Penalty::L1 { alpha: 0.1 },
        &x,
        n,
        "jumprelu",
    );
}

/// The untied model built from a tied one gives the tied path's codes,
/// reconstruction, loss and (mapped) gradients.
#[test]
fn tied_model_is_the_mapped_untied_model() {
    let (d, h, n) = (6, 20, 9);
    let dims = Dims::new(d, h).unwrap();
    let mut r = Rng(5);
    let (m, b, x) = (r.vec(h * d, 0.5), r.vec(h, 0.2), r.vec(n * d, 1.0));
    let alpha = 0.07;
    let tied = Params::tied(dims, &m, &b).unwrap();
    let sae = Sae::from_params(tied).to_untied();
    let t = sae.tensors();
    let (we, be, wd, bd) = (t[0].data, t[1].data, t[2].data, t[3].data);
    assert_eq!((be, wd), (&b[..], &m[..]));
    assert!(bd.iter().all(|&v| v == 0.0));
    assert!(!sae.arch().centers_input());
    assert_eq!(we[3 * h + 7], m[7 * d + 3], "W_enc = Mᵀ");
    let untied = UntiedParams::new(dims, we, be, wd, bd).unwrap();
    let ucfg = UntiedConfig {
        activation: Activation::Relu,
        apply_b_dec_to_input: false,
    };

    let (mut tc, mut tr) = (vec![0.0; n * h], vec![0.0; n * d]);
    let mut s = vec![0.0; forward_scratch_len(Arch::tied(), dims, 4)];
    let tl = forward(
        tied,
        &x,
        n,
        &LossOptions::alpha(alpha),
        ForwardOutputs {
            codes: Some(&mut tc),
            recon: Some(&mut tr),
            ..Default::default()
        },
        &mut s,
    )
    .unwrap();
    let (mut uc, mut ur) = (vec![0.0; n * h], vec![0.0; n * d]);
    let mut s = vec![0.0; old::scratch_len(dims, 4)];
    let ul = untied_forward(
        untied,
        ucfg,
        &x,
        n,
        Penalty::L1 { alpha },
        ForwardOutputs {
            codes: Some(&mut uc),
            recon: Some(&mut ur),
            ..Default::default()
        },
        &mut s,
    )
    .unwrap();
    assert!(rel(&uc, &to64(&tc)) < 1e-6);
    assert!(rel(&ur, &to64(&tr)) < 1e-6);
    assert!((ul.loss - tl.loss).abs() <= 1e-6 * tl.loss.abs());
    assert_eq!(ul.l0, tl.l0);

    let (mut gm, mut gb) = (vec![0.0; h * d], vec![0.0; h]);
    let mut s = vec![0.0; grad_scratch_len(Arch::tied(), dims, 4)];
    loss_and_grad(
        tied,
        &x,
        n,
        &LossOptions::alpha(alpha),
        ParamsMut::tied(dims, &mut gm, &mut gb).unwrap(),
        &mut s,
    )
    .unwrap();
    let (_, g) = lib_grads(
        &Model {
            dims,
            w_enc: we.to_vec(),
            b_enc: be.to_vec(),
            w_dec: wd.to_vec(),
            b_dec: bd.to_vec(),
        },
        Act::Relu,
        false,
        Penalty::L1 { alpha },
        &x,
        n,
        4,
    );
    // dM = dW_dec + dW_encᵀ, db = db_enc
    let mapped: Vec<f32> = (0..h * d)
        .map(|k| {
            let (i, j) = (k / d, k % d);
            g[2][k] + g[0][j * h + i]
        })
        .collect();
    assert!(rel(&mapped, &to64(&gm)) < 1e-5);
    assert!(rel(&g[1], &to64(&gb)) < 1e-5);
}

#[test]
fn topk_keeps_k_largest_with_lowest_index_ties_then_relu() {
    let mut sel = [0.0f32; 8];
    let mut row = [1.0, 3.0, 3.0, 3.0, 0.5];
    topk_relu_row(&mut row, 2, &mut sel);
    assert_eq!(row, [0.0, 3.0, 3.0, 0.0, 0.0]);
    // Negative winners become 0, so L0 can be below k.
    let mut row = [-1.0, -3.0, 2.0, -0.5];
    topk_relu_row(&mut row, 3, &mut sel);
    assert_eq!(row, [0.0, 0.0, 2.0, 0.0]);
    // k ≥ h is a plain ReLU.
    let mut row = [-1.0, 4.0, 0.25];
    topk_relu_row(&mut row, 9, &mut sel);
    assert_eq!(row, [0.0, 4.0, 0.25]);
    // Random rows: at most k non-zero, and every kept value ≥ every dropped one.
    let mut r = Rng(77);
    for k in 1..8 {
        let orig = r.vec(8, 1.0);
        let mut row = orig.clone();
        topk_relu_row(&mut row, k, &mut sel);
        let kept: Vec<usize> = (0..8).filter(|&i| row[i] != 0.0).collect();
        assert!(kept.len() <= k);
        let mut sorted = orig.clone();
        sorted.sort_by(|a, b| b.total_cmp(a));
        for i in 0..8 {
            let want = if orig[i] >= sorted[k - 1] {
                orig[i].max(0.0)
            } else {
                0.0
            };
            assert_eq!(row[i], want, "k={k} i={i}");
        }
    }
}

#[test]
fn jumprelu_is_strict_and_keeps_the_raw_value() {
    let dims = Dims::new(2, 4).unwrap();
    let th = [0.5f32, 0.5, 0.0, 1.0];
    // W_enc = 0: pre = b_enc exactly.
    let (we, wd, bd) = (vec![0.0; 8], vec![0.0; 8], vec![0.0; 2]);
    let be = [0.5f32, 0.5000001, 0.25, 0.9];
    let p = UntiedParams::new(dims, &we, &be, &wd, &bd).unwrap();
    let cfg = UntiedConfig {
        activation: Activation::JumpRelu { threshold: &th },
        apply_b_dec_to_input: true,
    };
    let mut codes = [9.0; 4];
    let mut s = vec![0.0; old::scratch_len(dims, 1)];
    untied_encode(p, cfg, &[1.0, 2.0], 1, &mut codes, &mut s).unwrap();
    assert_eq!(codes, [0.0, 0.5000001, 0.25, 0.0]);
}

#[test]
fn decoder_row_helpers() {
    let dims = Dims::new(3, 4).unwrap();
    let mut r = Rng(3);
    let mut w = r.vec(12, 2.0);
    w[3..6].fill(0.0); // a dead row stays as it is
    let mut g = r.vec(12, 1.0);
    let g0 = g.clone();
    remove_parallel_decoder_grad(dims, &w, &mut g).unwrap();
    for i in 0..4 {
        let dot: f32 = (0..3).map(|j| g[i * 3 + j] * w[i * 3 + j]).sum();
        assert!(dot.abs() < 1e-5, "row {i}: {dot}");
    }
    assert_eq!(g[3..6], g0[3..6]);
    normalize_decoder_rows(dims, &mut w).unwrap();
    for i in [0, 2, 3] {
        let nrm: f32 = w[i * 3..i * 3 + 3]
            .iter()
            .map(|v| v * v)
            .sum::<f32>()
            .sqrt();
        assert!((nrm - 1.0).abs() < 1e-6);
    }
    assert!(w[3..6].iter().all(|&v| v == 0.0));
    assert!(matches!(
        normalize_decoder_rows(dims, &mut w[..11]),
        Err(Error::Length { arg: "w_dec", .. })
    ));
}

#[test]
fn bad_arguments_are_errors_naming_them() {
    let m = Model::random(4, 6, 2);
    let dims = m.dims;
    let x = vec![0.5; 3 * 4];
    let mut codes = vec![7.0; 3 * 6];
    let mut s = vec![0.0; old::scratch_len(dims, 8)];
    let cfg = |a| UntiedConfig {
        activation: a,
        apply_b_dec_to_input: true,
    };
    let e = untied_encode(
        m.p(),
        cfg(Activation::TopK { k: 0 }),
        &x,
        3,
        &mut codes,
        &mut s,
    );
    assert!(matches!(e, Err(Error::OutOfRange { arg: "k", .. })));
    let th = [0.0; 5];
    let e = untied_encode(
        m.p(),
        cfg(Activation::JumpRelu { threshold: &th }),
        &x,
        3,
        &mut codes,
        &mut s,
    );
    assert!(matches!(
        e,
        Err(Error::Length {
            arg: "threshold",
            ..
        })
    ));
    let e = untied_encode(
        m.p(),
        cfg(Activation::Relu),
        &x[..11],
        3,
        &mut codes,
        &mut s,
    );
    assert!(matches!(e, Err(Error::Length { arg: "x", .. })));
    let e = untied_encode(m.p(), cfg(Activation::Relu), &x, 3, &mut codes, &mut s[..3]);
    assert!(matches!(
        e,
        Err(Error::WorkspaceTooSmall { arg: "scratch", .. })
    ));
    assert!(codes.iter().all(|&v| v == 7.0), "nothing written on error");
    assert!(matches!(
        UntiedParams::new(dims, &m.w_enc, &m.b_enc, &m.w_dec[..5], &m.b_dec),
        Err(Error::Length { arg: "W_dec", .. })
    ));
    // Gradients of another shape; a non-finite α.
    let other = Dims::new(4, 5).unwrap();
    let (mut a, mut b, mut c, mut d) = (vec![0.0; 20], vec![0.0; 5], vec![0.0; 20], vec![0.0; 4]);
    let mut gs = vec![0.0; old::scratch_len(dims, 8)];
    let e = untied_loss_and_grad(
        m.p(),
        cfg(Activation::Relu),
        &x,
        3,
        Penalty::L1 { alpha: 0.1 },
        UntiedParamsMut::new(other, &mut a, &mut b, &mut c, &mut d).unwrap(),
        &mut gs,
    );
    assert!(matches!(e, Err(Error::Dimension { arg: "grads.h", .. })));
    let mut fs = vec![0.0; old::scratch_len(dims, 8)];
    let e = untied_forward(
        m.p(),
        cfg(Activation::Relu),
        &x,
        3,
        Penalty::DecoderNormL1 { alpha: f32::NAN },
        ForwardOutputs::default(),
        &mut fs,
    );
    assert!(matches!(e, Err(Error::NonFinite { arg: "alpha" })));
}

/// The decoder-norm penalty reported by the forward pass is Σ_i f_i·‖W_dec,i‖.
#[test]
fn forward_reports_the_weighted_penalty() {
    let m = Model::random(4, 6, 8);
    let x = Rng(4).vec(5 * 4, 1.0);
    let mut row_pen = vec![0.0; 5];
    let mut codes = vec![0.0; 5 * 6];
    let mut s = vec![0.0; old::scratch_len(m.dims, 2)];
    let out = untied_forward(
        m.p(),
        UntiedConfig::standard(),
        &x,
        5,
        Penalty::DecoderNormL1 { alpha: 0.5 },
        ForwardOutputs {
            codes: Some(&mut codes),
            row_l1: Some(&mut row_pen),
            ..Default::default()
        },
        &mut s,
    )
    .unwrap();
    let mut mean = 0.0;
    for r in 0..5 {
        let want: f32 = (0..6)
            .map(|i| {
                let nrm: f32 = m.w_dec[i * 4..i * 4 + 4]
                    .iter()
                    .map(|v| v * v)
                    .sum::<f32>()
                    .sqrt();
                codes[r * 6 + i] * nrm
            })
            .sum();
        assert!((row_pen[r] - want).abs() < 1e-5 * want.max(1.0));
        mean += want / 5.0;
    }
    assert!((out.l1 - mean).abs() < 1e-5);
    assert!((out.loss - (out.sq_err + 0.5 * out.l1)).abs() < 1e-4);
}

// ---------- no allocation ----------

struct Counting;

thread_local! {
    static ACTIVE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static COUNT: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

// SAFETY: forwards to `System` unchanged; the bookkeeping only touches thread-local
// `Cell`s with `const` initialisers, which never allocate.
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: std::alloc::Layout) -> *mut u8 {
        let _ = ACTIVE.try_with(|a| {
            if a.get() {
                COUNT.with(|c| c.set(c.get() + 1));
            }
        });
        // SAFETY: the caller upholds `alloc`'s contract for `l`.
        unsafe { std::alloc::System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: std::alloc::Layout) {
        // SAFETY: `p` was allocated by `System` with layout `l`.
        unsafe { std::alloc::System.dealloc(p, l) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by `f` on this thread.
fn allocs(f: impl FnOnce()) -> usize {
    COUNT.with(|c| c.set(0));
    ACTIVE.with(|a| a.set(true));
    f();
    ACTIVE.with(|a| a.set(false));
    COUNT.with(|c| c.get())
}

#[test]
fn untied_entry_points_do_not_allocate() {
    let m = Model::random(6, 40, 12);
    let dims = m.dims;
    let n = 9;
    let x = Rng(1).vec(n * 6, 1.0);
    let th: Vec<f32> = vec![0.1; 40];
    let mut codes = vec![0.0; n * 40];
    let mut recon = vec![0.0; n * 6];
    let mut s = vec![0.0; old::scratch_len(dims, 4)];
    let mut g = vec![0.0; 240 + 40 + 240 + 6 + 40];
    let mut wd = m.w_dec.clone();
    let dead: Vec<bool> = (0..40).map(|i| i % 4 == 0).collect();
    for act in [
        sae_kernels::model::Activation::Relu,
        sae_kernels::model::Activation::TopK { k: 5 },
        sae_kernels::model::Activation::JumpRelu,
    ] {
        let arch = Arch {
            activation: act,
            ..Arch::standard()
        };
        let p = if act == sae_kernels::model::Activation::JumpRelu {
            Params::new(arch, dims, [&m.w_enc, &m.b_enc, &m.w_dec, &m.b_dec, &th])
        } else {
            Params::new(arch, dims, [&m.w_enc, &m.b_enc, &m.w_dec, &m.b_dec])
        }
        .unwrap();
        let glen = arch.param_len(dims);
        let count = allocs(|| {
            sae_kernels::model::encode(p, &x, n, &mut codes, &mut s).unwrap();
            sae_kernels::model::decode(p, &codes, n, &mut recon, &mut s).unwrap();
            let out = ForwardOutputs {
                codes: Some(&mut codes),
                ..Default::default()
            };
            forward(p, &x, n, &LossOptions::alpha(0.1), out, &mut s).unwrap();
            let grads = ParamsMut::from_flat(arch, dims, &mut g[..glen]).unwrap();
            loss_and_grad(p, &x, n, &LossOptions::alpha(0.1), grads, &mut s).unwrap();
            let grads = ParamsMut::from_flat(arch, dims, &mut g[..glen]).unwrap();
            let o = LossOptions {
                path: Path::Sparse,
                ..LossOptions::alpha(0.1)
            };
            loss_and_grad(p, &x, n, &o, grads, &mut s).unwrap();
            if let sae_kernels::model::Activation::TopK { .. } = act {
                let aux = sae_kernels::model::AuxK {
                    dead: &dead,
                    k_aux: 3,
                    coefficient: 1.0,
                };
                for path in [Path::Dense, Path::Sparse] {
                    let o = LossOptions {
                        aux: Some(aux),
                        path,
                        ..LossOptions::alpha(0.1)
                    };
                    let grads = ParamsMut::from_flat(arch, dims, &mut g[..glen]).unwrap();
                    loss_and_grad(p, &x, n, &o, grads, &mut s).unwrap();
                }
            }
            remove_parallel_decoder_grad(dims, &m.w_dec, &mut g[280..520]).unwrap();
            normalize_decoder_rows(dims, &mut wd).unwrap();
        });
        assert_eq!(count, 0, "{act:?} allocated");
    }
    // The counter works.
    assert!(allocs(|| drop(std::hint::black_box(vec![1u8; 10]))) > 0);
}

// ---------- AuxK ----------

/// Pre-activations (f64), `n×h`.
fn ref_pre(dims: Dims, p: &[Vec<f64>; 4], apply: bool, x: &[f32], n: usize) -> Vec<f64> {
    let Dims { d, h } = dims;
    let mut out = vec![0.0; n * h];
    for r in 0..n {
        for i in 0..h {
            out[r * h + i] = p[1][i]
                + (0..d)
                    .map(|j| {
                        let xc = f64::from(x[r * d + j]) - if apply { p[3][j] } else { 0.0 };
                        xc * p[0][j * h + i]
                    })
                    .sum::<f64>();
        }
    }
    out
}

/// The AuxK term with the residual `e0` held fixed, and the selection margin.
#[allow(clippy::too_many_arguments)]
fn ref_aux(
    dims: Dims,
    p: &[Vec<f64>; 4],
    apply: bool,
    x: &[f32],
    n: usize,
    dead: &[bool],
    k_aux: usize,
    coef: f64,
    e0: &[f64],
) -> (f64, f64) {
    let Dims { d, h } = dims;
    let pre = ref_pre(dims, p, apply, x, n);
    let m = dead.iter().filter(|&&v| v).count();
    let k = k_aux.min(m);
    let s = (m as f64 / k_aux as f64).min(1.0);
    let mut total = 0.0;
    let mut margin = f64::INFINITY;
    for r in 0..n {
        let row = &pre[r * h..(r + 1) * h];
        let mut idx: Vec<usize> = (0..h).filter(|&i| dead[i]).collect();
        idx.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
        if k < idx.len() {
            margin = margin.min(row[idx[k - 1]] - row[idx[k]]);
        }
        for j in 0..d {
            let rec: f64 = idx[..k].iter().map(|&i| row[i] * p[2][i * d + j]).sum();
            total += (rec - e0[r * d + j]).powi(2);
        }
    }
    (coef * s * total / n as f64, margin)
}

#[test]
fn auxk_gradients_match_finite_differences() {
    let (d, h, n) = (6, 16, 5);
    let dims = Dims::new(d, h).unwrap();
    let x = Rng(31).vec(n * d, 1.0);
    let m = Model::random(d, h, 4);
    let p64 = [
        to64(&m.w_enc),
        to64(&m.b_enc),
        to64(&m.w_dec),
        to64(&m.b_dec),
    ];
    let many: Vec<bool> = (0..h).map(|i| i % 2 == 1).collect();
    let few: Vec<bool> = (0..h).map(|i| i == 3 || i == 10).collect();
    let coef = 0.7f32;
    // AuxK is defined for TopK models; `k = h` (every feature kept) also covers the
    // ReLU-like case, without input centring.
    for (act, apply) in [(Act::TopK(3), true), (Act::TopK(h), false)] {
        for dead in [&many, &few] {
            let k_aux = d / 2;
            let cfg = UntiedConfig {
                activation: act.lib(),
                apply_b_dec_to_input: apply,
            };
            let pen = Penalty::L1 { alpha: 0.05 };
            // The fixed residual e0 = x − x̂ at the unperturbed parameters.
            let mut recon = vec![0.0; n * d];
            let mut s = vec![0.0; old::scratch_len(dims, 8)];
            let out = ForwardOutputs {
                recon: Some(&mut recon),
                ..Default::default()
            };
            untied_forward(m.p(), cfg, &x, n, pen, out, &mut s).unwrap();
            let e0: Vec<f64> = x
                .iter()
                .zip(&recon)
                .map(|(&a, &b)| f64::from(a - b))
                .collect();
            let total = |p: &[Vec<f64>; 4]| {
                let (main, _) = ref_loss(dims, &p[0], &p[1], &p[2], &p[3], act, apply, pen, &x, n);
                let (aux, _) = ref_aux(dims, p, apply, &x, n, dead, k_aux, f64::from(coef), &e0);
                main + aux
            };
            let (aux0, margin) =
                ref_aux(dims, &p64, apply, &x, n, dead, k_aux, f64::from(coef), &e0);
            assert!(
                margin > 1e-4,
                "aux selection too close to a tie ({margin:e})"
            );
            for (block, path) in [2, 64]
                .into_iter()
                .flat_map(|b| [(b, Path::Dense), (b, Path::Sparse)])
            {
                old::PATH.with(|p| p.set(path));
                let mut g = [
                    vec![f32::NAN; h * d],
                    vec![f32::NAN; h],
                    vec![f32::NAN; h * d],
                    vec![f32::NAN; d],
                ];
                let [a, b, c, e] = &mut g;
                let mut s = vec![0.0; old::scratch_len(dims, block)];
                let aux = sae_kernels::model::AuxK {
                    dead,
                    k_aux,
                    coefficient: coef,
                };
                let (parts, aux_loss) = untied_loss_and_grad_auxk(
                    m.p(),
                    cfg,
                    &x,
                    n,
                    pen,
                    Some(aux),
                    UntiedParamsMut::new(dims, a, b, c, e).unwrap(),
                    &mut s,
                )
                .unwrap();
                assert!((f64::from(aux_loss) - aux0).abs() < 1e-5 * aux0, "aux loss");
                assert!(((f64::from(parts.loss) - total(&p64)) / total(&p64)).abs() < 1e-5);
                let eps = 1e-5;
                for t in 0..4 {
                    let fd: Vec<f64> = (0..p64[t].len())
                        .map(|i| {
                            let mut pp = p64.clone();
                            pp[t][i] += eps;
                            let lp = total(&pp);
                            pp[t][i] -= 2.0 * eps;
                            (lp - total(&pp)) / (2.0 * eps)
                        })
                        .collect();
                    let err = rel(&g[t], &fd);
                    assert!(
                        err < 1e-4,
                        "auxk block {block} {path:?} tensor {t}: rel err {err:e}"
                    );
                }
            }
        }
    }
}

#[test]
fn auxk_bad_arguments_and_no_dead_latents() {
    let m = Model::random(4, 6, 2);
    let dims = m.dims;
    let x = vec![0.5; 3 * 4];
    let mut s = vec![0.0; old::scratch_len(dims, 4)];
    let mut g = [vec![0.0; 24], vec![0.0; 6], vec![0.0; 24], vec![0.0; 4]];
    let relu = UntiedConfig::standard();
    let cfg = UntiedConfig {
        activation: Activation::TopK { k: 2 },
        ..relu
    };
    let pen = Penalty::L1 { alpha: 0.1 };
    {
        let [a, b, c, d] = &mut g;
        let aux = sae_kernels::model::AuxK {
            dead: &[true; 6],
            k_aux: 2,
            coefficient: 1.0,
        };
        let grads = UntiedParamsMut::new(dims, a, b, c, d).unwrap();
        let e = untied_loss_and_grad_auxk(m.p(), relu, &x, 3, pen, Some(aux), grads, &mut s);
        assert!(matches!(e, Err(Error::OutOfRange { arg: "aux", .. })));
    }
    let run = |aux, g: &mut [Vec<f32>; 4], s: &mut [f32]| {
        let [a, b, c, d] = g;
        untied_loss_and_grad_auxk(
            m.p(),
            cfg,
            &x,
            3,
            pen,
            Some(aux),
            UntiedParamsMut::new(dims, a, b, c, d).unwrap(),
            s,
        )
    };
    let dead = [false; 6];
    let short = [true; 5];
    let aux = |dead, k_aux, coefficient| sae_kernels::model::AuxK {
        dead,
        k_aux,
        coefficient,
    };
    assert!(matches!(
        run(aux(&short, 2, 1.0), &mut g, &mut s),
        Err(Error::Length { arg: "dead", .. })
    ));
    assert!(matches!(
        run(aux(&dead, 0, 1.0), &mut g, &mut s),
        Err(Error::OutOfRange { arg: "k_aux", .. })
    ));
    assert!(matches!(
        run(aux(&dead, 2, f32::INFINITY), &mut g, &mut s),
        Err(Error::NonFinite { arg: "coefficient" })
    ));
    // No dead latent: the plain loss and gradients.
    let (parts, a) = run(aux(&dead, 2, 1.0), &mut g, &mut s).unwrap();
    assert_eq!(a, 0.0);
    let mut g2 = [vec![0.0; 24], vec![0.0; 6], vec![0.0; 24], vec![0.0; 4]];
    let [a2, b2, c2, d2] = &mut g2;
    let plain = untied_loss_and_grad(
        m.p(),
        cfg,
        &x,
        3,
        pen,
        UntiedParamsMut::new(dims, a2, b2, c2, d2).unwrap(),
        &mut s,
    )
    .unwrap();
    assert_eq!(parts.loss, plain.loss);
    assert_eq!(g, g2);
}

/// SAELens-style initialisation, then plain gradient steps on the untied model with
/// the decoder-norm penalty lower the loss.
#[test]
fn init_untied_then_training_lowers_the_loss() {
    let dims = Dims::new(8, 24).unwrap();
    let (d, h) = (dims.d, dims.h);
    let (mut we, mut be, mut wd, mut bd) = (
        vec![1.0; d * h],
        vec![1.0; h],
        vec![1.0; h * d],
        vec![1.0; d],
    );
    let bad = sae_kernels::model::init_untied(
        ParamsMut::new(Arch::standard(), dims, [&mut we, &mut be, &mut wd, &mut bd]).unwrap(),
        7,
        f32::NAN,
    );
    assert!(matches!(
        bad,
        Err(Error::NonFinite {
            arg: "decoder_norm"
        })
    ));
    assert!(wd.iter().all(|&v| v == 1.0), "nothing written on error");
    sae_kernels::model::init_untied(
        ParamsMut::new(Arch::standard(), dims, [&mut we, &mut be, &mut wd, &mut bd]).unwrap(),
        7,
        0.1,
    )
    .unwrap();
    for i in 0..h {
        let nrm: f32 = wd[i * d..(i + 1) * d]
            .iter()
            .map(|v| v * v)
            .sum::<f32>()
            .sqrt();
        assert!((nrm - 0.1).abs() < 1e-6);
        for j in 0..d {
            assert_eq!(we[j * h + i], wd[i * d + j]);
        }
    }
    assert!(be.iter().chain(&bd).all(|&v| v == 0.0));
    let mut m = Model {
        dims,
        w_enc: we,
        b_enc: be,
        w_dec: wd,
        b_dec: bd,
    };
    let n = 32;
    let x = Rng(2).vec(n * d, 1.0);
    let pen = Penalty::DecoderNormL1 { alpha: 0.01 };
    let mut first = None;
    let mut last = 0.0;
    for _ in 0..60 {
        let (loss, g) = lib_grads(&m, Act::Relu, true, pen, &x, n, 16);
        first.get_or_insert(loss);
        last = loss;
        for (p, gv) in [&mut m.w_enc, &mut m.b_enc, &mut m.w_dec, &mut m.b_dec]
            .into_iter()
            .zip(&g)
        {
            for (a, b) in p.iter_mut().zip(gv) {
                *a -= 0.05 * b;
            }
        }
    }
    let first = first.unwrap();
    assert!(last < 0.8 * first, "loss {first} → {last}");
}
