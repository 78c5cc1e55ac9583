//! The public model API with arbitrary dimensions, buffer lengths and floats.
//!
//! Asserted for every call: it returns (no panic, no out-of-bounds); on `Err` every
//! buffer it could write (outputs, gradients, parameters, scratch) is bit-for-bit
//! unchanged; and on `Ok` the documented contract holds:
//! - `forward`/`loss_and_grad` refuse a non-finite α; `sgd_step` a non-finite learning
//!   rate or gradient;
//! - codes are ReLU outputs (never negative, never −0); `l0` is within `[0, h]`;
//! - with moderate finite inputs the loss parts are finite and non-negative;
//! - `sgd_step` computes `p − lr·g` to within rounding;
//! - `init_tied` gives a finite dictionary and a zero bias.
//!
//! TODO(sparse encode, optimizers): add their entry points here as they land.
#![no_main]

mod common;

use common::{Input, Style, bits};
use libfuzzer_sys::fuzz_target;
use sae_kernels::{
    Dims, ForwardOutputs, TiedParams, TiedParamsMut, decode, decode_scratch_len, encode,
    encode_scratch_len, forward, forward_scratch_len, grad_scratch_len, init_tied, loss_and_grad,
    sgd_step,
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

fn relu_outputs_ok(v: &[f32]) {
    for &c in v {
        assert!(!(c < 0.0), "negative code {c}");
        assert_ne!(c.to_bits(), (-0.0f32).to_bits(), "code -0");
    }
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input(data);
    let op = inp.u8() % 6;
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

    match op {
        0 => {
            let Ok(p) = TiedParams::new(dims, &m, &b) else {
                return;
            };
            let want = [inp.u8() & 1, inp.u8() & 1, inp.u8() & 1, inp.u8() & 1];
            let mut codes = vec![-1.5; inp.len_near(mul(n, h))];
            let mut recon = vec![-1.5; inp.len_near(mul(n, d))];
            let mut rsq = vec![-1.5; inp.len_near(Some(n))];
            let mut rl1 = vec![-1.5; inp.len_near(Some(n))];
            let mut s = scratch(&mut inp, |r| forward_scratch_len(dims, r));
            let before = [bits(&codes), bits(&recon), bits(&rsq), bits(&rl1), bits(&s)];
            let out = ForwardOutputs {
                codes: (want[0] == 1).then_some(&mut codes[..]),
                recon: (want[1] == 1).then_some(&mut recon[..]),
                row_sq_err: (want[2] == 1).then_some(&mut rsq[..]),
                row_l1: (want[3] == 1).then_some(&mut rl1[..]),
            };
            match forward(p, &x, n, a, out, &mut s) {
                Err(_) => {
                    let after = [bits(&codes), bits(&recon), bits(&rsq), bits(&rl1), bits(&s)];
                    assert_eq!(before, after, "forward wrote on error");
                }
                Ok(l) => {
                    assert!(a.is_finite(), "forward accepted alpha = {a}");
                    assert!(
                        l.l0 >= 0.0 && l.l0 <= h as f32 * (1.0 + 1e-6),
                        "l0 {}",
                        l.l0
                    );
                    if want[0] == 1 {
                        relu_outputs_ok(&codes);
                    }
                    if finite_in && (0.0..=1e3).contains(&a) {
                        for v in [l.loss, l.sq_err, l.l1] {
                            assert!(v.is_finite() && v >= 0.0, "loss parts {l:?}");
                        }
                    }
                }
            }
        }
        1 => {
            let Ok(p) = TiedParams::new(dims, &m, &b) else {
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
            let mut gm = vec![7.0; gdims.m_len()];
            let mut gb = vec![7.0; gdims.h];
            let mut s = scratch(&mut inp, |r| grad_scratch_len(dims, r));
            let before = [bits(&gm), bits(&gb), bits(&s)];
            let g = TiedParamsMut::new(gdims, &mut gm, &mut gb).expect("sized from gdims");
            match loss_and_grad(p, &x, n, a, g, &mut s) {
                Err(_) => assert_eq!(before, [bits(&gm), bits(&gb), bits(&s)], "wrote on error"),
                Ok(l) => {
                    assert!(a.is_finite(), "loss_and_grad accepted alpha = {a}");
                    assert_eq!(gdims, dims, "gradients of other dimensions accepted");
                    assert!(
                        l.l0 >= 0.0 && l.l0 <= h as f32 * (1.0 + 1e-6),
                        "l0 {}",
                        l.l0
                    );
                    if finite_in && (0.0..=1e3).contains(&a) {
                        assert!(l.loss.is_finite() && l.loss >= 0.0, "loss {l:?}");
                        assert!(gm.iter().all(|v| v.is_finite()), "dM not finite");
                        assert!(gb.iter().all(|v| v.is_finite()), "db not finite");
                    }
                }
            }
        }
        2 => {
            let Ok(p) = TiedParams::new(dims, &m, &b) else {
                return;
            };
            let mut codes = vec![-1.5; inp.len_near(mul(n, h))];
            let mut s = scratch(&mut inp, |_| encode_scratch_len(dims));
            let before = [bits(&codes), bits(&s)];
            match encode(p, &x, n, &mut codes, &mut s) {
                Err(_) => assert_eq!(before, [bits(&codes), bits(&s)], "encode wrote on error"),
                Ok(()) => relu_outputs_ok(&codes),
            }
        }
        3 => {
            let Ok(p) = TiedParams::new(dims, &m, &b) else {
                return;
            };
            let sc = inp.style();
            let codes_len = inp.len_near(mul(n, h));
            let codes = inp.vec(codes_len, sc);
            let mut recon = vec![-1.5; inp.len_near(mul(n, d))];
            let mut s = scratch(&mut inp, |_| decode_scratch_len(dims));
            let before = [bits(&recon), bits(&s)];
            match decode(p, &codes, n, &mut recon, &mut s) {
                Err(_) => assert_eq!(before, [bits(&recon), bits(&s)], "decode wrote on error"),
                Ok(()) => {
                    if finite_in && matches!(sc, Style::Grid) {
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
            let Ok(pm) = TiedParamsMut::new(dims, &mut m, &mut b) else {
                return;
            };
            let g = TiedParams::new(gdims, &gm, &gb).expect("sized from gdims");
            match sgd_step(pm, g, lr) {
                Err(_) => assert_eq!(before, [bits(&m), bits(&b)], "sgd_step wrote on error"),
                Ok(()) => {
                    assert!(lr.is_finite(), "sgd_step accepted lr = {lr}");
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
        _ => {
            let Ok(pm) = TiedParamsMut::new(dims, &mut m, &mut b) else {
                return;
            };
            let seed = u64::from(inp.u32());
            init_tied(pm, seed);
            assert!(m.iter().all(|v| v.is_finite()), "init_tied: non-finite M");
            assert!(b.iter().all(|&v| v == 0.0), "init_tied: nonzero b");
        }
    }
});
