//! Bad input gives an `Err` naming the argument, never a panic, and leaves the
//! caller's parameters (and, for most entry points, outputs) untouched.

use sae_kernels::kernels::gemm::{Epilogue, MatMut, MatRef, gemm, pack_len};
use sae_kernels::optim::{Optim, Optimizer};
use sae_kernels::{
    Error,
    model::{
        Arch, Dims, ForwardOutputs, LossOptions, Params, ParamsMut, decode, decode_scratch_len,
        encode, encode_scratch_len, forward, forward_scratch_len, grad_scratch_len, loss_and_grad,
    },
};

fn arg_of(e: Error) -> &'static str {
    match e {
        Error::Length { arg, .. }
        | Error::WorkspaceTooSmall { arg, .. }
        | Error::Dimension { arg, .. }
        | Error::Overflow { arg }
        | Error::NonFinite { arg }
        | Error::OutOfRange { arg, .. }
        | Error::AliasingStrides { arg }
        | Error::Capacity { arg, .. } => arg,
        _ => "?",
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

const D: usize = 5;
const H: usize = 7;
const N: usize = 3;

struct Fx {
    dims: Dims,
    m: Vec<f32>,
    b: Vec<f32>,
    x: Vec<f32>,
}

fn fx() -> Fx {
    let dims = Dims::new(D, H).unwrap();
    Fx {
        dims,
        m: (0..H * D).map(|i| (i as f32 * 0.37).sin()).collect(),
        b: (0..H).map(|i| i as f32 * 0.01).collect(),
        x: (0..N * D).map(|i| (i as f32 * 0.11).cos()).collect(),
    }
}

#[test]
fn dims_reject_zero_and_overflow() {
    assert_eq!(arg_of(Dims::new(0, 4).unwrap_err()), "d");
    assert_eq!(arg_of(Dims::new(4, 0).unwrap_err()), "h");
    assert!(matches!(
        Dims::new(usize::MAX, 2),
        Err(Error::Overflow { .. })
    ));
}

#[test]
fn param_views_check_lengths() {
    let f = fx();
    let e = Params::tied(f.dims, &f.m[1..], &f.b).unwrap_err();
    assert_eq!(
        e,
        Error::Length {
            arg: "M",
            expected: H * D,
            got: H * D - 1
        }
    );
    let e = Params::tied(f.dims, &f.m, &f.b[..H - 1]).unwrap_err();
    assert_eq!(arg_of(e), "b");
    let msg = e.to_string();
    assert!(
        msg.contains('b') && msg.contains(&H.to_string()) && msg.contains(&(H - 1).to_string()),
        "{msg}"
    );
}

#[test]
fn forward_rejects_bad_input_without_writing() {
    let f = fx();
    let p = Params::tied(f.dims, &f.m, &f.b).unwrap();
    let mut s = vec![0.0; forward_scratch_len(Arch::tied(), f.dims, 4)];
    let mut codes = vec![-7.0; N * H];
    let mut recon = vec![-7.0; N * D];

    let call =
        |x: &[f32], n: usize, alpha: f32, codes: &mut [f32], recon: &mut [f32], s: &mut [f32]| {
            let out = ForwardOutputs {
                codes: Some(codes),
                recon: Some(recon),
                ..Default::default()
            };
            forward(p, x, n, &LossOptions::alpha(alpha), out, s).unwrap_err()
        };
    let sl = s.len();
    assert_eq!(
        arg_of(call(&f.x[1..], N, 0.1, &mut codes, &mut recon, &mut s)),
        "x"
    );
    assert_eq!(
        arg_of(call(&f.x, 0, 0.1, &mut codes, &mut recon, &mut s)),
        "n"
    );
    assert_eq!(
        arg_of(call(&f.x, N, f32::NAN, &mut codes, &mut recon, &mut s)),
        "alpha"
    );
    assert_eq!(
        arg_of(call(&f.x, N, f32::INFINITY, &mut codes, &mut recon, &mut s)),
        "alpha"
    );
    assert_eq!(
        arg_of(call(&f.x, N, 0.1, &mut codes[1..], &mut recon, &mut s)),
        "codes"
    );
    assert_eq!(
        arg_of(call(&f.x, N, 0.1, &mut codes, &mut recon[1..], &mut s)),
        "recon"
    );
    let need = forward_scratch_len(Arch::tied(), f.dims, 1);
    let e = call(&f.x, N, 0.1, &mut codes, &mut recon, &mut s[..need - 1]);
    assert_eq!(
        e,
        Error::WorkspaceTooSmall {
            arg: "scratch",
            needed: need,
            got: need - 1
        }
    );
    assert!(sl >= need);
    assert!(
        codes.iter().chain(&recon).all(|&v| v == -7.0),
        "nothing written on error"
    );

    let mut rows = vec![0.0; N + 1];
    let out = ForwardOutputs {
        row_sq_err: Some(&mut rows),
        ..Default::default()
    };
    assert_eq!(
        arg_of(forward(p, &f.x, N, &LossOptions::alpha(0.1), out, &mut s).unwrap_err()),
        "row_sq_err"
    );
    let out = ForwardOutputs {
        row_l1: Some(&mut rows[..N - 1]),
        ..Default::default()
    };
    assert_eq!(
        arg_of(forward(p, &f.x, N, &LossOptions::alpha(0.1), out, &mut s).unwrap_err()),
        "row_l1"
    );
}

#[test]
fn encode_decode_reject_bad_input() {
    let f = fx();
    let p = Params::tied(f.dims, &f.m, &f.b).unwrap();
    let mut codes = vec![-7.0; N * H];
    let mut recon = vec![-7.0; N * D];
    let mut s =
        vec![0.0; encode_scratch_len(Arch::tied(), f.dims, 1).max(decode_scratch_len(f.dims, 1))];
    assert_eq!(
        arg_of(encode(p, &f.x, N, &mut codes[1..], &mut s).unwrap_err()),
        "codes"
    );
    assert_eq!(
        arg_of(encode(p, &f.x[..D], N, &mut codes, &mut s).unwrap_err()),
        "x"
    );
    assert_eq!(
        arg_of(encode(p, &f.x, 0, &mut codes, &mut s).unwrap_err()),
        "n"
    );
    // One row needs no pack buffer (the product runs unpacked), so the one-row size may
    // be 0: then any scratch, even none, must work; otherwise one f32 short is refused.
    match encode_scratch_len(Arch::tied(), f.dims, 1).checked_sub(1) {
        Some(short) => assert_eq!(
            arg_of(encode(p, &f.x, N, &mut codes, &mut s[..short]).unwrap_err()),
            "scratch"
        ),
        None => assert!(encode(p, &f.x, N, &mut codes.clone(), &mut []).is_ok()),
    }
    assert_eq!(
        arg_of(decode(p, &codes, N, &mut recon[1..], &mut s).unwrap_err()),
        "recon"
    );
    assert_eq!(
        arg_of(decode(p, &codes[1..], N, &mut recon, &mut s).unwrap_err()),
        "codes"
    );
    match decode_scratch_len(f.dims, 1).checked_sub(1) {
        Some(short) => assert_eq!(
            arg_of(decode(p, &codes, N, &mut recon, &mut s[..short]).unwrap_err()),
            "scratch"
        ),
        None => assert!(decode(p, &codes, N, &mut recon.clone(), &mut []).is_ok()),
    }
    assert!(codes.iter().chain(&recon).all(|&v| v == -7.0));
}

#[test]
fn loss_and_grad_rejects_bad_input_without_writing() {
    let f = fx();
    let p = Params::tied(f.dims, &f.m, &f.b).unwrap();
    let mut s = vec![0.0; grad_scratch_len(Arch::tied(), f.dims, 8)];
    let (mut gm, mut gb) = (vec![-7.0; H * D], vec![-7.0; H]);
    let call = |x: &[f32],
                n: usize,
                alpha: f32,
                dims: Dims,
                gm: &mut [f32],
                gb: &mut [f32],
                s: &mut [f32]| {
        let g = ParamsMut::tied(dims, gm, gb).unwrap();
        loss_and_grad(p, x, n, &LossOptions::alpha(alpha), g, s).unwrap_err()
    };
    assert_eq!(
        arg_of(call(&f.x[1..], N, 0.1, f.dims, &mut gm, &mut gb, &mut s)),
        "x"
    );
    assert_eq!(
        arg_of(call(&f.x, 0, 0.1, f.dims, &mut gm, &mut gb, &mut s)),
        "n"
    );
    assert_eq!(
        arg_of(call(
            &f.x,
            N,
            f32::NEG_INFINITY,
            f.dims,
            &mut gm,
            &mut gb,
            &mut s
        )),
        "alpha"
    );
    let need = grad_scratch_len(Arch::tied(), f.dims, 1);
    assert_eq!(
        arg_of(call(
            &f.x,
            N,
            0.1,
            f.dims,
            &mut gm,
            &mut gb,
            &mut s[..need - 1]
        )),
        "scratch"
    );
    // Gradients for a model of other dimensions.
    let other = Dims::new(D, H - 1).unwrap();
    let (mut om, mut ob) = (vec![0.0; (H - 1) * D], vec![0.0; H - 1]);
    assert_eq!(
        arg_of(call(&f.x, N, 0.1, other, &mut om, &mut ob, &mut s)),
        "grads.h"
    );
    let other = Dims::new(D + 1, H).unwrap();
    let (mut om, mut ob) = (vec![0.0; H * (D + 1)], vec![0.0; H]);
    assert_eq!(
        arg_of(call(&f.x, N, 0.1, other, &mut om, &mut ob, &mut s)),
        "grads.d"
    );
    assert!(
        gm.iter().chain(&gb).all(|&v| v == -7.0),
        "nothing written on error"
    );
}

/// One plain SGD step (`Optimizer::Sgd { momentum: 0 }`, no state) on the tied model.
fn sgd(f: &mut Fx, g: Params<'_>, lr: f32) -> Result<(), Error> {
    let dims = f.dims;
    let rule = Optimizer::Sgd { momentum: 0.0 };
    let mut opt = Optim::new(rule, dims, Arch::tied().param_len(dims), &mut [], 0)?;
    let mut p = ParamsMut::tied(dims, &mut f.m, &mut f.b)?;
    opt.step(&mut p.tensors_mut(), &g.tensors(), lr)
}

#[test]
fn plain_sgd_step_is_transactional() {
    let mut f = fx();
    let dims = f.dims;
    let (m0, b0) = (bits(&f.m), bits(&f.b));
    let mut gm = vec![0.5; H * D];
    let mut gb = vec![0.5; H];
    let step = |gm: &[f32], gb: &[f32], lr: f32, f: &mut Fx| {
        sgd(f, Params::tied(dims, gm, gb).unwrap(), lr)
    };
    assert_eq!(arg_of(step(&gm, &gb, f32::NAN, &mut f).unwrap_err()), "lr");
    gm[H * D - 1] = f32::NAN;
    assert_eq!(arg_of(step(&gm, &gb, 0.1, &mut f).unwrap_err()), "grads.m");
    gm[H * D - 1] = 0.5;
    gb[0] = f32::INFINITY;
    assert_eq!(arg_of(step(&gm, &gb, 0.1, &mut f).unwrap_err()), "grads.b");
    assert_eq!(
        (bits(&f.m), bits(&f.b)),
        (m0.clone(), b0.clone()),
        "params bit-for-bit unchanged"
    );
    let other = Dims::new(D, H + 1).unwrap();
    let (om, ob) = (vec![0.0; (H + 1) * D], vec![0.0; H + 1]);
    let e = sgd(&mut f, Params::tied(other, &om, &ob).unwrap(), 0.1).unwrap_err();
    assert_eq!(
        e,
        Error::Length {
            arg: "grads.m",
            expected: H * D,
            got: (H + 1) * D
        }
    );
    assert_eq!((bits(&f.m), bits(&f.b)), (m0, b0));
    // A valid step does change them, to p − lr·g.
    gb[0] = 0.5;
    step(&gm, &gb, 0.1, &mut f).unwrap();
    assert!(
        f.m.iter()
            .zip(fx().m)
            .all(|(a, b)| (a - (b - 0.05)).abs() < 1e-6)
    );
}

#[test]
fn gemm_rejects_bad_shapes_and_views() {
    let a = [1.0f32; 6];
    let b = [1.0f32; 6];
    let mut c = [-7.0f32; 4];
    let mut pack = vec![0.0; pack_len(2, 2, 3)];
    let ar = MatRef::row_major("a", &a, 2, 3).unwrap();
    let br = MatRef::row_major("b", &b, 3, 2).unwrap();
    // inner dimension mismatch: A 2×3 · Aᵀ... use B as 2×3
    let b_bad = MatRef::row_major("b", &b, 2, 3).unwrap();
    let e = gemm(
        1.0,
        ar,
        b_bad,
        0.0,
        MatMut::row_major("c", &mut c, 2, 2).unwrap(),
        Epilogue::None,
        &mut pack,
    );
    assert_eq!(
        e.unwrap_err(),
        Error::Dimension {
            arg: "b.rows",
            expected: 3,
            got: 2
        }
    );
    let mut c3 = [-7.0f32; 6];
    let e = gemm(
        1.0,
        ar,
        br,
        0.0,
        MatMut::row_major("c", &mut c3, 3, 2).unwrap(),
        Epilogue::None,
        &mut pack,
    );
    assert_eq!(arg_of(e.unwrap_err()), "c.rows");
    let e = gemm(
        1.0,
        ar,
        br,
        0.0,
        MatMut::row_major("c", &mut c3, 2, 3).unwrap(),
        Epilogue::None,
        &mut pack,
    );
    assert_eq!(arg_of(e.unwrap_err()), "c.cols");
    let bias = [0.0f32; 3];
    let e = gemm(
        1.0,
        ar,
        br,
        0.0,
        MatMut::row_major("c", &mut c, 2, 2).unwrap(),
        Epilogue::BiasRelu(&bias),
        &mut pack,
    );
    assert_eq!(arg_of(e.unwrap_err()), "bias");
    // Products with at most `SMALL_M` rows need no pack buffer; one with more rows,
    // given one element too few.
    let a8 = [1.0f32; 24];
    let mut c8 = [-7.0f32; 16];
    assert!(pack_len(8, 2, 3) > 0);
    let mut short = vec![0.0; pack_len(8, 2, 3) - 1];
    let e = gemm(
        1.0,
        MatRef::row_major("a", &a8, 8, 3).unwrap(),
        br,
        0.0,
        MatMut::row_major("c", &mut c8, 8, 2).unwrap(),
        Epilogue::None,
        &mut short,
    );
    assert_eq!(arg_of(e.unwrap_err()), "pack");
    assert!(
        c.iter().chain(&c3).chain(&c8).all(|&v| v == -7.0),
        "C untouched on error"
    );

    // Views: too-short data, overflowing extents, aliasing output strides.
    assert_eq!(arg_of(MatRef::new("a", &a, 3, 3, 3, 1).unwrap_err()), "a");
    assert!(matches!(
        MatRef::new("a", &a, usize::MAX, 2, usize::MAX, 1),
        Err(Error::Overflow { .. })
    ));
    assert_eq!(
        MatMut::new("c", &mut c, 2, 2, 1, 1).unwrap_err(),
        Error::AliasingStrides { arg: "c" }
    );
    assert_eq!(
        MatMut::new("c", &mut c, 2, 1, 0, 1).unwrap_err(),
        Error::AliasingStrides { arg: "c" }
    );
    assert!(
        MatMut::new("c", &mut c, 2, 2, 1, 2).is_ok(),
        "column-major is fine"
    );
    assert_eq!(arg_of(MatRef::row_major("a", &a, 2, 2).unwrap_err()), "a");
}

#[test]
fn error_messages_name_argument_and_sizes() {
    let cases = [
        (
            Error::Length {
                arg: "x",
                expected: 96,
                got: 95,
            },
            ["x", "96", "95"],
        ),
        (
            Error::WorkspaceTooSmall {
                arg: "scratch",
                needed: 10,
                got: 3,
            },
            ["scratch", "10", "3"],
        ),
        (
            Error::Dimension {
                arg: "c.rows",
                expected: 4,
                got: 5,
            },
            ["c.rows", "4", "5"],
        ),
    ];
    for (e, words) in cases {
        let msg = e.to_string();
        for w in words {
            assert!(msg.contains(w), "{msg:?} lacks {w:?}");
        }
    }
    assert!(
        Error::Dimension {
            arg: "n",
            expected: usize::MAX,
            got: 0
        }
        .to_string()
        .contains("at least 1")
    );
}

#[test]
fn encoder_rejects_bad_input_without_writing() {
    use sae_kernels::model::Encoder;
    let f = fx();
    let p = Params::tied(f.dims, &f.m, &f.b).unwrap();
    // Blocks of 8 rows pack, so they need scratch.
    let need8 = encode_scratch_len(p.arch(), f.dims, 8);
    assert!(need8 > 0);
    let mut short = vec![0.0f32; need8 - 1];
    assert_eq!(
        arg_of(Encoder::new(p, 8, &mut short).unwrap_err()),
        "scratch"
    );
    let need = encode_scratch_len(p.arch(), f.dims, 2);
    let mut scratch = vec![0.0f32; need];
    assert_eq!(
        arg_of(Encoder::new(p, 0, &mut scratch).unwrap_err()),
        "block_rows"
    );
    let mut enc = Encoder::new(p, 2, &mut scratch).unwrap();
    assert_eq!(enc.block_rows(), 2);
    let mut codes = [7.0f32; N * H];
    let cases = [
        (N, &f.x[..N * D], N * H, "rows"),      // more rows than the block
        (0, &f.x[..0], 0, "n"),                 // no rows
        (2, &f.x[..2 * D - 1], 2 * H, "x"),     // short input
        (2, &f.x[..2 * D], 2 * H - 1, "codes"), // short output
    ];
    for (rows, x, c, arg) in cases {
        let e = enc.encode(x, rows, &mut codes[..c]).unwrap_err();
        assert_eq!(arg_of(e), arg, "{arg}");
        assert!(codes.iter().all(|&v| v == 7.0), "{arg}: codes written");
    }
    // And then it still encodes, as `encode` does.
    enc.encode(&f.x[..2 * D], 2, &mut codes[..2 * H]).unwrap();
    let mut want = vec![0.0f32; 2 * H];
    let mut s = vec![0.0f32; encode_scratch_len(p.arch(), f.dims, 2)];
    encode(p, &f.x[..2 * D], 2, &mut want, &mut s).unwrap();
    assert_eq!(bits(&codes[..2 * H]), bits(&want));
}
