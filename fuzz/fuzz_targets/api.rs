//! The public model API with arbitrary dimensions, buffer lengths and floats.
//!
//! Asserted for every call: it returns (no panic, no out-of-bounds); on `Err` every
//! buffer it could write (outputs, gradients, parameters, scratch, optimizer state) is
//! bit-for-bit unchanged where the API promises it; and on `Ok` the documented contract
//! holds:
//! - `forward`/`loss_and_grad` (each `Path`, with and without AuxK) refuse a non-finite
//!   α;
//!   plain SGD (`Optim` with momentum 0) a non-finite or negative learning rate or a
//!   non-finite gradient;
//! - codes are ReLU outputs (never negative, never −0); `l0` is within `[0, h]`;
//! - with moderate finite inputs the loss parts are finite and non-negative;
//! - plain SGD computes `p − lr·g` to within rounding;
//! - `init_tied` gives a finite dictionary and a zero bias;
//! - sparse outputs: `encode_sparse` returns exactly the dense encoder's active codes
//!   (or the `K` largest, ties to the lower index), `top_k` matches a sort, CSR row
//!   offsets are non-decreasing and in range with ascending in-range indices and
//!   positive codes, and `encode_csr`'s output decodes; `decode_sparse`/`decode_csr`
//!   succeed exactly when their inputs are valid (and write nothing otherwise);
//! - `Optim::step` and `train_step` are transactional: on `Err` the parameters, the
//!   optimizer state and the step count are unchanged; on `Ok` all of them are finite
//!   and the step count went up by one; with moderate finite inputs and a fresh state
//!   they succeed;
//! - every architecture: `encode`, `decode`, `forward`, `loss_and_grad`, the sparse
//!   outputs run on a fuzzed `Arch` (tied or untied weights, with or without input
//!   centring; ReLU, TopK with any `k`, JumpReLU; no penalty, L1 or decoder-norm L1),
//!   with parameter and gradient buffers of fuzzed lengths and architectures: nothing
//!   written on error, non-negative codes, at most `k` non-zero codes per row for TopK;
//! - `StreamingTrainer` (first byte 255 only, so the other inputs keep their meaning):
//!   `new` / `resume_from` on a fuzzed architecture, options, configuration, state
//!   slice (fresh or arbitrary contents) and step count, optionally with dead-latent
//!   tracking; a refused construction writes nothing; then samples pushed one at a time
//!   or one `step_block`: on `Err` the parameters and optimizer state are unchanged and
//!   the step count stays; on `Ok` a completed step counted one and left finite
//!   parameters and optimizer state.
#![no_main]

mod common;

use common::{Input, Style, bits};
use libfuzzer_sys::fuzz_target;
use sae_kernels::sparse::{
    Overflow, RowLimit, decode_csr, decode_sparse, encode_csr, encode_csr_scratch_len,
    encode_sparse, encode_sparse_scratch_len, top_k,
};
use sae_kernels::{
    Error,
    model::{
        Activation, Arch, AuxK, Dims, ForwardOutputs, LossOptions, MAX_BLOCK_ROWS, Params,
        ParamsMut, Path, Penalty, Weights, decode, decode_scratch_len, encode, encode_scratch_len,
        forward, forward_scratch_len, grad_scratch_len, init_tied, loss_and_grad,
    },
    optim::{Adam, L1Warmup, LrSchedule, Optim, OptimConfig, Optimizer},
    train::{
        AuxKConfig, DeadLatents, ModelMut, StepHyper, StreamConfig, StreamingTrainer, TrainOptions,
        streaming_state_len, train_step, train_step_workspace_len,
    },
};

fn dim(inp: &mut Input<'_>) -> usize {
    match inp.u8() % 32 {
        0 => 0,
        1 => usize::MAX / 2 + inp.upto(3),
        2 => 1 << (20 + inp.upto(20)),
        3 => 200 + inp.upto(100),
        _ => 1 + inp.upto(12),
    }
}

fn alpha(inp: &mut Input<'_>) -> f32 {
    match inp.u8() % 8 {
        0 => f32::NAN,
        1 => f32::INFINITY,
        2 => {
            let s = inp.style();
            inp.f32(s)
        }
        _ => f32::from(inp.u8()) / 256.0,
    }
}

/// A scratch length near what `len` asks for at some block size, or arbitrary.
fn scratch(inp: &mut Input<'_>, len: impl Fn(usize) -> usize) -> Vec<f32> {
    let rows = 1 + inp.upto(300);
    let l = inp.len_near(Some(len(rows)));
    vec![-3.25; l]
}

fn mul(a: usize, b: usize) -> Option<usize> {
    a.checked_mul(b)
}

/// Codes are never negative nor −0, and TopK keeps at most `k` per row.
fn codes_ok(arch: Arch, h: usize, v: &[f32]) {
    for &c in v {
        assert!(!(c < 0.0), "negative code {c}");
        assert_ne!(c.to_bits(), (-0.0f32).to_bits(), "code -0");
    }
    if let Activation::TopK { k } = arch.activation {
        for row in v.chunks(h) {
            let on = row.iter().filter(|&&c| c != 0.0).count();
            assert!(on <= k, "TopK kept {on} > {k}");
        }
    }
}

/// Any architecture (`k` near `h`, sometimes 0).
fn arch(inp: &mut Input<'_>, h: usize) -> Arch {
    let weights = match inp.u8() % 3 {
        0 => Weights::Tied,
        1 => Weights::Untied { center_input: true },
        _ => Weights::Untied {
            center_input: false,
        },
    };
    let activation = match inp.u8() % 3 {
        0 => Activation::Relu,
        1 => Activation::TopK {
            k: inp.upto(h.saturating_add(2).min(64)),
        },
        _ => Activation::JumpRelu,
    };
    let penalty = match inp.u8() % 4 {
        0 => Penalty::None,
        1 => Penalty::L1,
        2 => Penalty::L0,
        _ => Penalty::DecoderNormL1,
    };
    Arch {
        weights,
        activation,
        penalty,
    }
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input(data);
    // 255 is the streaming trainer; every other first byte keeps its earlier meaning
    // (so the committed seeds and reproducers still reach the same cases).
    let op = match inp.u8() {
        255 => 13,
        o => o % 13,
    };
    let (d, h, n) = (dim(&mut inp), dim(&mut inp), inp.upto(12));
    let Ok(dims) = Dims::new(d, h) else {
        return;
    };
    let m_len = inp.len_near(Some(dims.m_len()));
    let b_len = inp.len_near(Some(h));
    let (sm, sx) = (inp.style(), inp.style());
    let mut m = inp.vec(m_len, sm);
    let mut b = inp.vec(b_len, sm);
    let x_len = inp.len_near(mul(n, d));
    let x = inp.vec(x_len, sx);
    let a = alpha(&mut inp);
    let finite_in = matches!(sm, Style::Grid) && matches!(sx, Style::Grid);

    // Every architecture's parameters as one flat buffer of a fuzzed length.
    let ar = arch(&mut inp, h);
    let flat_len = inp.len_near(Some(ar.param_len(dims)));
    let flat = if flat_len > 1 << 16 {
        Vec::new()
    } else {
        inp.vec(flat_len, sm)
    };
    let model = Params::from_flat(ar, dims, &flat);
    // AuxK sometimes (a TopK model needs it; other activations refuse it).
    let dead: Vec<bool> = (0..inp.len_near(Some(h)).min(1 << 12))
        .map(|_| inp.u8() & 1 == 1)
        .collect();
    let aux = (inp.u8() % 4 == 0).then(|| AuxK {
        dead: &dead,
        k_aux: inp.upto(8),
        coefficient: alpha(&mut inp),
    });

    match op {
        0 => {
            let Ok(p) = model else {
                return;
            };
            let want = [inp.u8() & 1, inp.u8() & 1, inp.u8() & 1, inp.u8() & 1];
            let mut codes = vec![-1.5; inp.len_near(mul(n, h))];
            let mut recon = vec![-1.5; inp.len_near(mul(n, d))];
            let mut rsq = vec![-1.5; inp.len_near(Some(n))];
            let mut rl1 = vec![-1.5; inp.len_near(Some(n))];
            let mut s = scratch(&mut inp, |r| forward_scratch_len(ar, dims, r));
            let path = path(&mut inp);
            let bw = bandwidth(&mut inp);
            let opts = LossOptions {
                alpha: a,
                path,
                aux,
                jumprelu_bandwidth: bw,
            };
            let before = [bits(&codes), bits(&recon), bits(&rsq), bits(&rl1), bits(&s)];
            let out = ForwardOutputs {
                codes: (want[0] == 1).then_some(&mut codes[..]),
                recon: (want[1] == 1).then_some(&mut recon[..]),
                row_sq_err: (want[2] == 1).then_some(&mut rsq[..]),
                row_l1: (want[3] == 1).then_some(&mut rl1[..]),
            };
            match forward(p, &x, n, &opts, out, &mut s) {
                Err(_) => {
                    let after = [bits(&codes), bits(&recon), bits(&rsq), bits(&rl1), bits(&s)];
                    assert_eq!(before, after, "forward wrote on error");
                }
                Ok(l) => {
                    assert!(a.is_finite(), "forward accepted alpha = {a}");
                    assert!(bw_ok(bw), "forward accepted bandwidth {bw}");
                    assert!(
                        l.l0 >= 0.0 && l.l0 <= h as f32 * (1.0 + 1e-6),
                        "l0 {}",
                        l.l0
                    );
                    if want[0] == 1 {
                        codes_ok(ar, h, &codes);
                    }
                    if finite_in && (0.0..=1e3).contains(&a) && aux.is_none() {
                        for v in [l.loss, l.sq_err, l.l1] {
                            assert!(v.is_finite() && v >= 0.0, "loss parts {l:?}");
                        }
                    }
                }
            }
        }
        1 => {
            let Ok(p) = model else {
                return;
            };
            // Gradient buffers, sometimes of other dimensions.
            // Sometimes (and always when the model is too big to allocate) gradients
            // of other, small dimensions.
            let gdims = if inp.u8() % 8 == 0 || dims.m_len() > 1 << 14 {
                Dims::new(1 + inp.upto(12), 1 + inp.upto(12)).unwrap()
            } else {
                dims
            };
            // Sometimes gradients of another architecture.
            let garch = if inp.u8() % 8 == 0 {
                arch(&mut inp, h)
            } else {
                ar
            };
            let mut gflat = vec![7.0; garch.param_len(gdims)];
            let mut s = scratch(&mut inp, |r| grad_scratch_len(ar, dims, r));
            let path = path(&mut inp);
            let bw = bandwidth(&mut inp);
            let opts = LossOptions {
                alpha: a,
                path,
                aux,
                jumprelu_bandwidth: bw,
            };
            let before = [bits(&gflat), bits(&s)];
            let Ok(g) = ParamsMut::from_flat(garch, gdims, &mut gflat) else {
                return;
            };
            match loss_and_grad(p, &x, n, &opts, g, &mut s) {
                Err(_) => assert_eq!(before, [bits(&gflat), bits(&s)], "wrote on error"),
                Ok(l) => {
                    assert!(a.is_finite(), "loss_and_grad accepted alpha = {a}");
                    assert!(bw_ok(bw), "accepted bandwidth {bw}");
                    assert_eq!(gdims, dims, "gradients of other dimensions accepted");
                    assert_eq!(garch.tensor_count(), ar.tensor_count(), "other tensors");
                    assert!(
                        l.l0 >= 0.0 && l.l0 <= h as f32 * (1.0 + 1e-6),
                        "l0 {}",
                        l.l0
                    );
                    // Moderate inputs: the threshold gradient scales as θ/ε, so a
                    // bandwidth far below any real one (SAELens: 0.001–0.05) may
                    // overflow it; such a step is refused by the optimizer.
                    let moderate_bw = bw == 0.0 || bw >= 1e-3;
                    if finite_in && (0.0..=1e3).contains(&a) && aux.is_none() && moderate_bw {
                        assert!(l.loss.is_finite() && l.loss >= 0.0, "loss {l:?}");
                        assert!(gflat.iter().all(|v| v.is_finite()), "gradients not finite");
                    }
                }
            }
        }
        2 => {
            let Ok(p) = model else {
                return;
            };
            let mut codes = vec![-1.5; inp.len_near(mul(n, h))];
            let mut s = scratch(&mut inp, |r| encode_scratch_len(ar, dims, r));
            let before = [bits(&codes), bits(&s)];
            match encode(p, &x, n, &mut codes, &mut s) {
                Err(_) => assert_eq!(before, [bits(&codes), bits(&s)], "encode wrote on error"),
                Ok(()) => codes_ok(ar, h, &codes),
            }
        }
        3 => {
            let Ok(p) = model else {
                return;
            };
            let sc = inp.style();
            let codes_len = inp.len_near(mul(n, h));
            let codes = inp.vec(codes_len, sc);
            let mut recon = vec![-1.5; inp.len_near(mul(n, d))];
            let mut s = scratch(&mut inp, |r| decode_scratch_len(dims, r));
            let before = [bits(&recon), bits(&s)];
            match decode(p, &codes, n, &mut recon, &mut s) {
                Err(_) => assert_eq!(before, [bits(&recon), bits(&s)], "decode wrote on error"),
                Ok(()) => {
                    if finite_in && matches!(sc, Style::Grid) && matches!(sm, Style::Grid) {
                        assert!(recon.iter().all(|v| v.is_finite()), "recon not finite");
                    }
                }
            }
        }
        4 => {
            let lr = alpha(&mut inp);
            // Sometimes (and always when the model is too big to allocate) gradients
            // of other, small dimensions.
            let gdims = if inp.u8() % 8 == 0 || dims.m_len() > 1 << 14 {
                Dims::new(1 + inp.upto(12), 1 + inp.upto(12)).unwrap()
            } else {
                dims
            };
            let sg = inp.style();
            let gm = inp.vec(gdims.m_len(), sg);
            let gb = inp.vec(gdims.h, sg);
            let before = [bits(&m), bits(&b)];
            let Ok(mut pm) = ParamsMut::tied(dims, &mut m, &mut b) else {
                return;
            };
            let g = Params::tied(gdims, &gm, &gb).expect("sized from gdims");
            // Plain SGD: the optimizer with momentum 0 (no state).
            let rule = Optimizer::Sgd { momentum: 0.0 };
            let pc = Arch::tied().param_len(dims);
            let mut sgd = Optim::new(rule, dims, pc, &mut [], 0).expect("valid rule");
            let res = sgd.step(&mut pm.tensors_mut(), &g.tensors(), lr);
            drop(pm);
            match res {
                Err(_) => assert_eq!(before, [bits(&m), bits(&b)], "plain SGD wrote on error"),
                Ok(()) => {
                    assert!(lr.is_finite() && lr >= 0.0, "plain SGD accepted lr = {lr}");
                    assert_eq!(gdims, dims, "gradients of other dimensions accepted");
                    assert!(
                        gm.iter().chain(&gb).all(|v| v.is_finite()),
                        "non-finite grads"
                    );
                    let u = f64::from(f32::EPSILON);
                    let old = before[0]
                        .iter()
                        .chain(&before[1])
                        .map(|&v| f32::from_bits(v));
                    let new = m.iter().chain(&b);
                    for ((p0, &p1), &g) in old.zip(new).zip(gm.iter().chain(&gb)) {
                        if !p0.is_finite() {
                            continue;
                        }
                        let step = f64::from(lr) * f64::from(g);
                        let want = f64::from(p0) - step;
                        if want.abs() > 1e38 || step.abs() > 1e38 {
                            continue;
                        }
                        let tol = 2.0 * u * (f64::from(p0).abs() + step.abs()) + 1e-44;
                        let err = (f64::from(p1) - want).abs();
                        assert!(err <= tol, "sgd: {p0} - {lr}*{g} gave {p1}, error {err:e}");
                    }
                }
            }
        }
        5 => {
            let Ok(pm) = ParamsMut::tied(dims, &mut m, &mut b) else {
                return;
            };
            let seed = u64::from(inp.u32());
            init_tied(pm, seed);
            assert!(m.iter().all(|v| v.is_finite()), "init_tied: non-finite M");
            assert!(b.iter().all(|&v| v == 0.0), "init_tied: nonzero b");
        }
        6 => {
            let Ok(p) = model else {
                return;
            };
            let x1 = &x[..x.len().min(d + usize::from(inp.u8() % 8 == 0))];
            let keep = inp.u8() & 1 == 1;
            match inp.u8() % 4 {
                0 => sparse_case::<0>(p, x1, keep, &mut inp),
                1 => sparse_case::<1>(p, x1, keep, &mut inp),
                2 => sparse_case::<3>(p, x1, keep, &mut inp),
                _ => sparse_case::<16>(p, x1, keep, &mut inp),
            }
        }
        7 => {
            let Ok(p) = model else {
                return;
            };
            csr_case(p, &x, n, finite_in, &mut inp);
        }
        8 => {
            let sc = inp.style();
            let len = inp.upto(40);
            let codes = inp.vec(len, sc);
            match inp.u8() % 4 {
                0 => top_k_case::<0>(&codes),
                1 => top_k_case::<1>(&codes),
                2 => top_k_case::<4>(&codes),
                _ => top_k_case::<16>(&codes),
            }
        }
        9 => {
            let Ok(p) = model else {
                return;
            };
            let sv = inp.style();
            let pairs: Vec<(u32, f32)> = (0..inp.upto(8))
                .map(|_| (index(&mut inp, h), inp.f32(sv)))
                .collect();
            let mut recon = vec![-1.5; inp.len_near(Some(d))];
            let before = bits(&recon);
            let valid = recon.len() == d && pairs.iter().all(|&(j, _)| (j as usize) < h);
            let r = decode_sparse(p, &pairs, &mut recon);
            assert_eq!(r.is_ok(), valid, "decode_sparse: {r:?}, valid = {valid}");
            if r.is_err() {
                assert_eq!(before, bits(&recon), "decode_sparse wrote on error");
            } else if matches!(sm, Style::Grid) && matches!(sv, Style::Grid) {
                assert!(recon.iter().all(|v| v.is_finite()), "recon not finite");
            }
        }
        10 => {
            let Ok(p) = model else {
                return;
            };
            let nnz = inp.upto(16);
            let rp_len = inp.len_near(n.checked_add(1));
            let sorted = inp.u8() % 4 != 0;
            let mut row_ptr: Vec<usize> = (0..rp_len).map(|_| inp.upto(nnz + 1)).collect();
            if sorted {
                row_ptr.sort_unstable();
            }
            let indices: Vec<u32> = (0..nnz).map(|_| index(&mut inp, h)).collect();
            let sv = inp.style();
            let v_len = inp.len_near(Some(nnz));
            let values = inp.vec(v_len, sv);
            let mut recon = vec![-1.5; inp.len_near(mul(n, d))];
            let before = bits(&recon);
            let valid = n >= 1
                && row_ptr.len() == n + 1
                && values.len() == indices.len()
                && Some(recon.len()) == mul(n, d)
                && row_ptr.windows(2).all(|w| w[0] <= w[1])
                && row_ptr[n] <= indices.len()
                && indices[row_ptr[0]..row_ptr[n]]
                    .iter()
                    .all(|&j| (j as usize) < h);
            let r = decode_csr(p, n, &row_ptr, &indices, &values, &mut recon);
            assert_eq!(r.is_ok(), valid, "decode_csr: {r:?}, valid = {valid}");
            if r.is_err() {
                assert_eq!(before, bits(&recon), "decode_csr wrote on error");
            }
        }
        11 => optim_case(dims, &mut m, &mut b, sm, &mut inp),
        13 => {
            let mut flat = flat;
            stream_case(ar, dims, &mut flat, &x, n, a, &mut inp);
        }
        _ => train_case(dims, &mut m, &mut b, &x, n, a, finite_in, &mut inp),
    }
});

/// The bandwidth contract: 0 or a positive normal float.
fn bw_ok(bw: f32) -> bool {
    bw == 0.0 || (bw > 0.0 && bw.is_normal())
}

/// A JumpReLU estimator bandwidth: mostly 0 or usable, sometimes negative, NaN or any
/// bit pattern (subnormal ones included: `fuzz/regressions/api/jumprelu-*`).
fn bandwidth(inp: &mut Input<'_>) -> f32 {
    match inp.u8() % 8 {
        0 | 1 => 0.0,
        2 => f32::NAN,
        3 => -0.05,
        4 => {
            let s = inp.style();
            inp.f32(s)
        }
        _ => f32::from(inp.u8()) / 128.0 + 1e-3,
    }
}

fn path(inp: &mut Input<'_>) -> Path {
    match inp.u8() % 3 {
        0 => Path::Auto,
        1 => Path::Dense,
        _ => Path::Sparse,
    }
}

/// A feature index: mostly in range, sometimes just past it or huge.
fn index(inp: &mut Input<'_>, h: usize) -> u32 {
    match inp.u8() % 16 {
        0 => u32::MAX,
        1 => u32::try_from(h).unwrap_or(u32::MAX),
        _ => u32::try_from(inp.upto(h.saturating_sub(1).min(1 << 15))).unwrap(),
    }
}

/// A hyper-parameter meant to lie in `[0, 1)`, or not.
fn unit(inp: &mut Input<'_>) -> f32 {
    match inp.u8() % 16 {
        0 => f32::NAN,
        1 => f32::INFINITY,
        2 => 1.0,
        3 => -0.5,
        4 => 1.0 - f32::EPSILON / 2.0,
        5 => 0.0,
        6 => {
            let s = inp.style();
            inp.f32(s)
        }
        _ => f32::from(inp.u8()) / 256.0,
    }
}

/// A learning rate: usually small and non-negative, sometimes anything.
fn lr(inp: &mut Input<'_>) -> f32 {
    match inp.u8() % 8 {
        0 => -f32::from(inp.u8()) / 256.0,
        1 => alpha(inp),
        2 => 1e30,
        _ => f32::from(inp.u8()) / 1024.0,
    }
}

/// The `K` largest active (`> 0`) entries of `codes` (larger value, then lower index),
/// sorted by index, and the number active; `None` if a code is NaN.
fn reference_top(codes: &[f32], k: usize) -> Option<(Vec<(u32, u32)>, usize)> {
    if codes.iter().any(|v| v.is_nan()) {
        return None;
    }
    let mut act: Vec<(u32, f32)> = codes
        .iter()
        .enumerate()
        .filter(|&(_, &v)| v > 0.0)
        .map(|(j, &v)| (j as u32, v))
        .collect();
    let active = act.len();
    act.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap().then(a.0.cmp(&b.0)));
    act.truncate(k);
    act.sort_by_key(|e| e.0);
    Some((act.iter().map(|&(j, v)| (j, v.to_bits())).collect(), active))
}

fn pair_bits(v: &[(u32, f32)]) -> Vec<(u32, u32)> {
    v.iter().map(|&(j, v)| (j, v.to_bits())).collect()
}

fn top_k_case<const K: usize>(codes: &[f32]) {
    let mut out = Default::default();
    // Pre-fill `out` (it must be cleared).
    let _ = top_k::<K>(&[1.0; K], &mut out);
    let r = top_k::<K>(codes, &mut out);
    match (r, reference_top(codes, K)) {
        (Err(e), None) => {
            assert_eq!(e, Error::NonFinite { arg: "x" });
            assert!(out.is_empty(), "top_k: out not empty on error");
        }
        (Ok(active), Some((want, n))) => {
            assert_eq!(active, n, "top_k: active count");
            assert_eq!(pair_bits(&out), want, "top_k of {codes:?}");
        }
        (r, want) => panic!("top_k of {codes:?}: {r:?}, reference {want:?}"),
    }
}

fn sparse_case<const K: usize>(p: Params<'_>, x: &[f32], keep: bool, inp: &mut Input<'_>) {
    let dims = p.dims();
    let mut s = scratch(inp, |_| encode_sparse_scratch_len(p.arch(), dims));
    let mut out = Default::default();
    let _ = top_k::<K>(&[2.0; K], &mut out);
    let before = bits(&s);
    let mode = if keep {
        Overflow::KeepLargest
    } else {
        Overflow::Error
    };
    let r = encode_sparse::<K>(p, x, &mut out, mode, &mut s);
    // The dense encoder's codes of the same row, for reference.
    let reference = (x.len() == dims.d).then(|| {
        let mut codes = vec![0.0; dims.h];
        let mut s2 = vec![0.0; encode_scratch_len(p.arch(), dims, 1)];
        encode(p, x, 1, &mut codes, &mut s2).expect("valid encode");
        codes
    });
    match r {
        Err(e) => {
            assert!(
                out.is_empty(),
                "encode_sparse: out not empty on error {e:?}"
            );
            match e {
                Error::Length { .. } | Error::WorkspaceTooSmall { .. } => {
                    assert_eq!(before, bits(&s), "encode_sparse wrote on {e:?}");
                    assert!(
                        x.len() != dims.d || s.len() < encode_sparse_scratch_len(p.arch(), dims),
                        "{e:?}"
                    );
                }
                Error::NonFinite { arg: "x" } => {
                    let codes = reference.expect("x has d entries");
                    assert!(codes.iter().any(|v| v.is_nan()), "NonFinite without NaN");
                }
                Error::Capacity {
                    arg: "out",
                    capacity,
                    needed,
                } => {
                    assert!(!keep, "Capacity with KeepLargest");
                    let codes = reference.expect("x has d entries");
                    let (_, active) = reference_top(&codes, K).expect("no NaN code");
                    assert_eq!((capacity, needed), (K, active), "Capacity fields");
                    assert!(active > K);
                }
                e => panic!("encode_sparse: unexpected {e:?}"),
            }
        }
        Ok(active) => {
            let codes = reference.expect("accepted x of the wrong length");
            assert!(
                s.len() >= encode_sparse_scratch_len(p.arch(), dims),
                "short scratch"
            );
            let (want, n) = reference_top(&codes, if keep { K } else { usize::MAX })
                .expect("accepted NaN codes");
            assert_eq!(active, n, "encode_sparse: active count");
            if !keep {
                assert!(active <= K, "Overflow::Error accepted {active} > {K}");
            }
            let want = if keep {
                reference_top(&codes, K).unwrap().0
            } else {
                want
            };
            assert_eq!(
                pair_bits(&out),
                want,
                "encode_sparse vs dense codes {codes:?}"
            );
        }
    }
}

fn csr_case(p: Params<'_>, x: &[f32], n: usize, finite_in: bool, inp: &mut Input<'_>) {
    let Dims { d, h } = p.dims();
    let limit = match inp.u8() % 8 {
        0 => RowLimit::TopK(usize::MAX / 2 + inp.upto(3)),
        1..=3 => RowLimit::TopK(inp.upto(h + 1)),
        _ => RowLimit::All,
    };
    let want_cap = match limit {
        RowLimit::TopK(k) => mul(n, k),
        RowLimit::All => mul(n, h).map(|v| v / 2 + 1),
    };
    let mut row_ptr = vec![7usize; inp.len_near(n.checked_add(1))];
    let cap = inp.len_near(want_cap);
    let mut indices = vec![0xdead_u32; cap];
    let mut values = vec![-9.5f32; inp.len_near(Some(cap))];
    let mut s = scratch(inp, |r| encode_csr_scratch_len(p.arch(), p.dims(), r));
    let r = encode_csr(
        p,
        x,
        n,
        limit,
        &mut row_ptr,
        &mut indices,
        &mut values,
        &mut s,
    );
    let cap = indices.len().min(values.len());
    match r {
        Err(Error::Capacity {
            arg: "indices",
            capacity,
            needed,
        }) => {
            assert_eq!(capacity, cap);
            assert!(needed > cap, "Capacity: needed {needed} <= {cap}");
            if let RowLimit::TopK(k) = limit {
                assert_eq!(Some(needed), mul(n, k));
            }
        }
        Err(_) => {}
        Ok(nnz) => {
            assert!(n >= 1 && row_ptr.len() == n + 1 && x.len() == n * d);
            assert_eq!(row_ptr[0], 0, "row_ptr[0]");
            assert_eq!(row_ptr[n], nnz, "row_ptr[n] != nnz");
            assert!(nnz <= cap, "nnz {nnz} > capacity {cap}");
            for (i, w) in row_ptr.windows(2).enumerate() {
                assert!(w[0] <= w[1], "row_ptr decreases at row {i}: {row_ptr:?}");
                let (ix, vs) = (&indices[w[0]..w[1]], &values[w[0]..w[1]]);
                assert!(ix.windows(2).all(|t| t[0] < t[1]), "row {i}: {ix:?}");
                assert!(ix.iter().all(|&j| (j as usize) < h), "row {i}: {ix:?}");
                assert!(vs.iter().all(|&v| v > 0.0), "row {i}: values {vs:?}");
                if let RowLimit::TopK(k) = limit {
                    assert!(ix.len() <= k, "row {i}: {} > k = {k}", ix.len());
                }
            }
            assert!(
                indices[nnz..].iter().all(|&j| j == 0xdead),
                "indices past nnz"
            );
            assert!(
                values[nnz..]
                    .iter()
                    .all(|v| v.to_bits() == (-9.5f32).to_bits()),
                "values past nnz"
            );
            // What encode_csr wrote, decode_csr reads.
            let mut recon = vec![0.0; n * d];
            decode_csr(p, n, &row_ptr, &indices[..cap], &values[..cap], &mut recon)
                .expect("decode_csr of encode_csr's output");
            if finite_in {
                assert!(recon.iter().all(|v| v.is_finite()), "recon not finite");
            }
        }
    }
}

fn optimizer(inp: &mut Input<'_>) -> Optimizer {
    match inp.u8() % 4 {
        0 => Optimizer::Sgd { momentum: 0.0 },
        1 => Optimizer::Sgd {
            momentum: unit(inp),
        },
        2 => Optimizer::default(),
        _ => Optimizer::Adam(Adam {
            beta1: unit(inp),
            beta2: unit(inp),
            eps: match inp.u8() % 4 {
                0 => unit(inp),
                1 => f32::MIN_POSITIVE / 8.0,
                _ => 1e-8,
            },
        }),
    }
}

fn steps(inp: &mut Input<'_>) -> u64 {
    match inp.u8() % 8 {
        0 => u64::MAX - inp.upto(1) as u64,
        1 => u64::from(inp.u32()),
        2 => i32::MAX as u64 - 1,
        _ => inp.upto(20) as u64,
    }
}

/// An optimizer state of (about) `want` entries: zeros (fresh) or arbitrary.
fn state(inp: &mut Input<'_>, want: usize) -> (Vec<f32>, bool) {
    let len = inp.len_near(Some(want));
    if inp.u8() % 2 == 0 {
        (vec![0.0; len], true)
    } else {
        let s = inp.style();
        (inp.vec(len, s), false)
    }
}

fn all_finite(v: &[f32]) -> bool {
    v.iter().all(|v| v.is_finite())
}

fn optim_case(dims: Dims, m: &mut [f32], b: &mut [f32], sm: Style, inp: &mut Input<'_>) {
    if ParamsMut::tied(dims, m, b).is_err() {
        return;
    }
    let cfg = optimizer(inp);
    // Sometimes an optimizer of other, small dimensions.
    let odims = if inp.u8() % 8 == 0 {
        Dims::new(1 + inp.upto(12), 1 + inp.upto(12)).unwrap()
    } else {
        dims
    };
    let (mut st, fresh) = state(inp, cfg.state_len(Arch::tied().param_len(odims)));
    let t0 = steps(inp);
    let st_before = bits(&st);
    let ocfg = OptimConfig {
        rule: cfg,
        max_grad_norm: match inp.u8() % 4 {
            0 => Some(lr(inp)),
            1 => Some(1.0),
            _ => None,
        },
        unit_norm_decoder: inp.u8() % 2 == 0,
    };
    let mut o = match Optim::new(ocfg, odims, Arch::tied().param_len(odims), &mut st, t0) {
        Ok(o) => o,
        Err(_) => {
            assert_eq!(st_before, bits(&st), "Optim::new wrote the state");
            return;
        }
    };
    assert!(ocfg.validate().is_ok());
    let gdims = if inp.u8() % 8 == 0 {
        Dims::new(1 + inp.upto(12), 1 + inp.upto(12)).unwrap()
    } else {
        dims
    };
    let sg = inp.style();
    let gm = inp.vec(gdims.m_len(), sg);
    let gb = inp.vec(gdims.h, sg);
    let lr = lr(inp);
    let before = [bits(m), bits(b), bits(o.state())];
    let mut pm = ParamsMut::tied(dims, m, b).unwrap();
    let g = Params::tied(gdims, &gm, &gb).unwrap();
    let r = o.step(&mut pm.tensors_mut(), &g.tensors(), lr);
    match r {
        Err(e) => {
            let after = [bits(m), bits(b), bits(o.state())];
            assert_eq!(before, after, "Optim::step wrote on {e:?}");
            assert_eq!(o.steps(), t0, "Optim::step counted a failed step");
        }
        Ok(()) => {
            assert!(lr.is_finite() && lr >= 0.0, "step accepted lr = {lr}");
            assert!(odims == dims && gdims == dims, "other dimensions accepted");
            assert!(
                all_finite(&gm) && all_finite(&gb),
                "non-finite grads accepted"
            );
            assert!(all_finite(m) && all_finite(b), "non-finite params after Ok");
            assert!(all_finite(o.state()), "non-finite state after Ok");
            assert_eq!(o.steps(), t0.saturating_add(1), "step count");
        }
    }
    // Moderate finite inputs and a fresh state of the default rules must step.
    let moderate = matches!(sm, Style::Grid) && matches!(sg, Style::Grid);
    let plain = matches!(cfg, Optimizer::Sgd { momentum: 0.0 }) || cfg == Optimizer::default();
    let options = ocfg.max_grad_norm.is_none() && !ocfg.unit_norm_decoder;
    if moderate
        && plain
        && options
        && fresh
        && odims == dims
        && gdims == dims
        && (0.0..=1.0).contains(&lr)
    {
        assert!(r.is_ok(), "{cfg:?} refused a moderate step: {r:?}");
    }
}

#[allow(clippy::too_many_arguments)]
fn train_case(
    dims: Dims,
    m: &mut [f32],
    b: &mut [f32],
    x: &[f32],
    n: usize,
    alpha: f32,
    finite_in: bool,
    inp: &mut Input<'_>,
) {
    if ParamsMut::tied(dims, m, b).is_err() {
        return;
    }
    let cfg = optimizer(inp);
    let pc = Arch::tied().param_len(dims);
    let (mut st, fresh) = state(inp, cfg.state_len(pc));
    let t0 = steps(inp);
    let Ok(mut o) = Optim::new(cfg, dims, pc, &mut st, t0) else {
        return;
    };
    let lr = lr(inp);
    let rows = 1 + inp.upto(300);
    let ws_len = train_step_workspace_len(Arch::tied(), TrainOptions::default(), dims, rows, false);
    let mut ws = vec![-2.5; inp.len_near(Some(ws_len))];
    let before = [bits(m), bits(b), bits(o.state())];
    let pm = ParamsMut::tied(dims, m, b).unwrap();
    let r = train_step(pm, &mut o, x, n, StepHyper { alpha, lr }, None, &mut ws);
    match r {
        Err(e) => {
            let after = [bits(m), bits(b), bits(o.state())];
            assert_eq!(before, after, "train_step wrote on {e:?}");
            assert_eq!(o.steps(), t0, "train_step counted a failed step");
        }
        Ok(l) => {
            assert!(alpha.is_finite(), "train_step accepted alpha = {alpha}");
            assert!(lr.is_finite() && lr >= 0.0, "train_step accepted lr = {lr}");
            assert!(l.loss.is_finite(), "train_step: non-finite loss {l:?}");
            assert!(all_finite(m) && all_finite(b), "non-finite params after Ok");
            assert!(all_finite(o.state()), "non-finite state after Ok");
            assert_eq!(o.steps(), t0.saturating_add(1), "step count");
        }
    }
    let plain = matches!(cfg, Optimizer::Sgd { momentum: 0.0 }) || cfg == Optimizer::default();
    if finite_in
        && plain
        && fresh
        && n >= 1
        && x.len() == n * dims.d
        && ws.len()
            >= train_step_workspace_len(Arch::tied(), TrainOptions::default(), dims, 1, false)
        && (0.0..=1.0).contains(&alpha)
        && (0.0..=1.0).contains(&lr)
    {
        assert!(r.is_ok(), "{cfg:?} refused a moderate training step: {r:?}");
    }
}

/// `StreamingTrainer` on any architecture and a fuzzed state slice (see the module docs).
#[allow(clippy::too_many_arguments)]
fn stream_case(
    ar: Arch,
    dims: Dims,
    flat: &mut [f32],
    x: &[f32],
    n: usize,
    l1: f32,
    inp: &mut Input<'_>,
) {
    let options = TrainOptions {
        rescale_acts_by_decoder_norm: inp.u8() % 4 == 0,
        aux: (inp.u8() % 2 == 0).then(|| AuxKConfig {
            k_aux: inp.upto(8),
            coefficient: alpha(inp),
        }),
        jumprelu_bandwidth: bandwidth(inp),
    };
    let ocfg = OptimConfig {
        rule: optimizer(inp),
        max_grad_norm: match inp.u8() % 4 {
            0 => Some(lr(inp)),
            1 => Some(1.0),
            _ => None,
        },
        unit_norm_decoder: inp.u8() % 4 == 0,
    };
    let cfg = StreamConfig {
        optimizer: ocfg,
        lr: LrSchedule::constant(lr(inp)),
        l1: L1Warmup::constant(l1),
        block_rows: match inp.u8() % 8 {
            0 => 0,
            1 => MAX_BLOCK_ROWS + inp.upto(1),
            _ => 1 + inp.upto(4),
        },
    };
    let track = inp.u8() % 2 == 0;
    let want = streaming_state_len(ar, options, dims, &cfg, track);
    if want > 1 << 20 {
        return;
    }
    let (mut st, _) = state(inp, want);
    let resume = inp.u8() % 2 == 0;
    let t0 = steps(inp);
    let n_dead = inp.len_near(Some(dims.h)).min(1 << 12);
    let mut since: Vec<u32> = (0..n_dead).map(|_| u32::from(inp.u8())).collect();
    let mut flags = vec![false; 2 * n_dead];
    let window = 1 + inp.upto(64) as u64;
    let by_sample = inp.u8() % 2 == 0;
    let sample_len = inp.len_near(Some(dims.d));

    let (flat0, st0, st_len) = (bits(flat), bits(&st), st.len());
    let Ok(params) = ParamsMut::from_flat(ar, dims, flat) else {
        return;
    };
    let model = ModelMut { params, options };
    let made = if resume {
        StreamingTrainer::resume_from(model, cfg, &mut st, t0)
    } else {
        StreamingTrainer::new(model, cfg, &mut st)
    };
    let mut t = match made {
        Ok(t) => t,
        Err(e) => {
            assert_eq!(
                flat0,
                bits(flat),
                "StreamingTrainer refused ({e:?}) but wrote"
            );
            assert_eq!(st0, bits(&st), "StreamingTrainer refused ({e:?}) but wrote");
            return;
        }
    };
    assert!(
        ocfg.validate().is_ok() && options.validate(ar).is_ok(),
        "StreamingTrainer accepted {ocfg:?} {options:?}"
    );
    let t_start = if resume { t0 } else { 0 };
    assert_eq!(t.steps(), t_start, "starting step count");
    if track {
        let Ok(dl) = DeadLatents::new(&mut since, &mut flags, window) else {
            return;
        };
        t = match t.with_dead_latents(dl) {
            Ok(t) => t,
            Err(e) => {
                // A tracker of h latents with a state sized for tracking must fit.
                assert!(
                    n_dead != dims.h || st_len < want,
                    "dead tracker refused: {e:?}"
                );
                return;
            }
        };
    }
    drop(t);
    // The optimizer state as the trainer starts from it (zeroed by `new`).
    let n_opt = ocfg.state_len(ar.param_len(dims));
    let opt0 = bits(&st[..n_opt]);
    let flat1 = bits(flat);
    let params = ParamsMut::from_flat(ar, dims, flat).expect("accepted before");
    let model = ModelMut { params, options };
    let mut t = StreamingTrainer::resume_from(model, cfg, &mut st, t_start)
        .expect("the same arguments were accepted");
    if track {
        let dl = DeadLatents::new(&mut since, &mut flags, window).expect("accepted before");
        t = t.with_dead_latents(dl).expect("accepted before");
    }
    let mut stepped = 0u64;
    let mut res = Ok(());
    if by_sample {
        for row in x.chunks(sample_len.max(1)).take(2 * MAX_BLOCK_ROWS) {
            match t.push(row) {
                Ok(Some(_)) => stepped += 1,
                Ok(None) => {}
                Err(e) => {
                    res = Err(e);
                    break;
                }
            }
        }
    } else {
        match t.step_block(x, n) {
            Ok(_) => stepped = 1,
            Err(e) => res = Err(e),
        }
    }
    let end = t.steps();
    drop(t);
    if stepped == 0 {
        assert_eq!(
            flat1,
            bits(flat),
            "parameters written without a step ({res:?})"
        );
        assert_eq!(
            opt0,
            bits(&st[..n_opt]),
            "state written without a step ({res:?})"
        );
    } else {
        assert!(all_finite(flat), "non-finite parameters after Ok");
        assert!(
            all_finite(&st[..n_opt]),
            "non-finite optimizer state after Ok"
        );
    }
    // Failed steps are not counted.
    assert_eq!(end, t_start.saturating_add(stepped), "step count ({res:?})");
}
