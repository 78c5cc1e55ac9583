//! Property tests: the library's f32 forward and backward on random shapes (1..100,
//! including non-multiples of 4/8/16) and random scratch sizes, against the naive f64
//! reference in `common::reference`.
//!
//! Bound: each field within `2e-5` of the reference, relative to the field's largest
//! magnitude (`max|a − g| / max|g|`). Sums here have up to ~100 terms of f32 products;
//! the bound is ~100× the f32 unit roundoff times √(terms).

mod common;

use common::model::Case;
use common::{TestRng, rel_err};
use sae_kernels::model::{
    Arch, Dims, ForwardOutputs, LossOptions, Params, ParamsMut, Path, forward, forward_scratch_len,
    grad_scratch_len, loss_and_grad,
};

const TOL: f64 = 2e-5;

/// Run every check on both implementations of the decoder and backward.
fn check_case(c: &Case, block_rows: usize, label: &str) {
    for path in [Path::Dense, Path::Sparse] {
        check_case_on(c, block_rows, &format!("{label}, {path:?}"), path);
    }
}

fn check_case_on(c: &Case, block_rows: usize, label: &str, path: Path) {
    let dims = Dims::new(c.d, c.h).unwrap();
    let r = c.reference();
    let p = Params::tied(dims, &c.m, &c.b).unwrap();

    let mut codes = vec![f32::NAN; c.n * c.h];
    let mut recon = vec![f32::NAN; c.n * c.d];
    let mut row_sq = vec![f32::NAN; c.n];
    let mut row_l1 = vec![f32::NAN; c.n];
    let mut scratch = vec![f32::NAN; forward_scratch_len(Arch::tied(), dims, block_rows)];
    let out = ForwardOutputs {
        codes: Some(&mut codes),
        recon: Some(&mut recon),
        row_sq_err: Some(&mut row_sq),
        row_l1: Some(&mut row_l1),
    };
    let parts = forward(
        p,
        &c.x,
        c.n,
        &LossOptions {
            path,
            ..LossOptions::alpha(c.alpha)
        },
        out,
        &mut scratch,
    )
    .unwrap();
    for (name, got, want) in [
        ("codes", &codes[..], &r.codes[..]),
        ("recon", &recon[..], &r.recon[..]),
        ("row_sq", &row_sq[..], &r.row_sq[..]),
        ("row_l1", &row_l1[..], &r.row_l1[..]),
    ] {
        let e = rel_err(got, want);
        assert!(e <= TOL, "{label}: {name} rel err {e:.2e}");
    }
    let e = rel_err(&[parts.loss], &[r.loss]);
    assert!(e <= TOL, "{label}: loss rel err {e:.2e}");
    let l0_want = r.codes.iter().filter(|&&v| v > 0.0).count() as f32 / c.n as f32;
    assert!(
        (parts.l0 - l0_want).abs() < 1e-5,
        "{label}: l0 {} vs {l0_want}",
        parts.l0
    );

    let mut dm = vec![f32::NAN; c.h * c.d];
    let mut db = vec![f32::NAN; c.h];
    let mut scratch = vec![f32::NAN; grad_scratch_len(Arch::tied(), dims, block_rows)];
    let g = ParamsMut::tied(dims, &mut dm, &mut db).unwrap();
    let parts2 = loss_and_grad(
        p,
        &c.x,
        c.n,
        &LossOptions {
            path,
            ..LossOptions::alpha(c.alpha)
        },
        g,
        &mut scratch,
    )
    .unwrap();
    assert_eq!(
        parts.loss.to_bits(),
        parts2.loss.to_bits(),
        "{label}: same loss"
    );
    let e = rel_err(&dm, &r.dm);
    assert!(e <= TOL, "{label}: dM rel err {e:.2e}");
    let e = rel_err(&db, &r.db);
    assert!(e <= TOL, "{label}: db rel err {e:.2e}");
}

#[test]
fn random_shapes_match_reference() {
    let mut rng = TestRng(2024);
    let cases = if cfg!(miri) { 2 } else { 40 };
    for t in 0..cases {
        let n = 1 + rng.below(if cfg!(miri) { 5 } else { 100 });
        let d = 1 + rng.below(if cfg!(miri) { 9 } else { 100 });
        let h = 1 + rng.below(if cfg!(miri) { 17 } else { 100 });
        let alpha = [0.0, 1e-3, 0.1, 1.0][t % 4];
        let c = Case::random(&mut rng, n, d, h, alpha, 1e-3);
        let block = [1, 3, 7, 64, 256][rng.below(5)];
        check_case(
            &c,
            block,
            &format!("case {t} n={n} d={d} h={h} alpha={alpha} block={block}"),
        );
    }
}

#[test]
fn awkward_shapes_match_reference() {
    // Non-multiples of every plausible SIMD width and tile size, and 1-wide extremes.
    let mut rng = TestRng(7);
    let shapes: &[(usize, usize, usize)] = if cfg!(miri) {
        &[(1, 1, 1), (3, 5, 9)]
    } else {
        &[
            (1, 1, 1),
            (1, 1, 33),
            (2, 33, 1),
            (5, 15, 17),
            (17, 31, 63),
            (9, 65, 129),
            (65, 8, 16),
            (3, 257, 5),
        ]
    };
    for &(n, d, h) in shapes {
        let c = Case::random(&mut rng, n, d, h, 0.05, 1e-3);
        for block in [1, 2, 16, 64] {
            check_case(&c, block, &format!("n={n} d={d} h={h} block={block}"));
        }
    }
}

#[test]
fn results_do_not_depend_on_scratch_beyond_block_size() {
    // Two scratch buffers with the same block size give bit-identical results,
    // whatever garbage they held before.
    let mut rng = TestRng(99);
    let c = Case::random(&mut rng, 70, 24, 40, 0.01, 1e-3);
    let dims = Dims::new(c.d, c.h).unwrap();
    let p = Params::tied(dims, &c.m, &c.b).unwrap();
    let len = grad_scratch_len(Arch::tied(), dims, 16);
    let run = |fill: f32| {
        let mut s = vec![fill; len];
        let (mut dm, mut db) = (vec![fill; c.h * c.d], vec![fill; c.h]);
        let l = loss_and_grad(
            p,
            &c.x,
            c.n,
            &LossOptions::alpha(c.alpha),
            ParamsMut::tied(dims, &mut dm, &mut db).unwrap(),
            &mut s,
        )
        .unwrap();
        (
            l.loss.to_bits(),
            dm.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            db,
        )
    };
    let a = run(0.0);
    let b = run(f32::NAN);
    assert_eq!(a.0, b.0);
    assert_eq!(a.1, b.1);
    assert_eq!(
        a.2.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        b.2.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
}

#[test]
fn scratch_does_not_grow_with_batch() {
    // A long batch runs in the scratch sized for a 64-row block and agrees with the
    // reference; the size functions do not take n at all.
    let n = if cfg!(miri) { 70 } else { 20_000 };
    let mut rng = TestRng(5);
    let c = Case::random(&mut rng, n, 4, 8, 0.1, 1e-3);
    let dims = Dims::new(4, 8).unwrap();
    let p = Params::tied(dims, &c.m, &c.b).unwrap();
    let mut scratch = vec![0.0; grad_scratch_len(Arch::tied(), dims, 64)];
    let (mut dm, mut db) = (vec![0.0; 32], vec![0.0; 8]);
    let l = loss_and_grad(
        p,
        &c.x,
        n,
        &LossOptions::alpha(c.alpha),
        ParamsMut::tied(dims, &mut dm, &mut db).unwrap(),
        &mut scratch,
    )
    .unwrap();
    let r = c.reference();
    assert!(rel_err(&[l.loss], &[r.loss]) < 1e-5);
    assert!(
        rel_err(&dm, &r.dm) < 1e-4,
        "accumulated over {} blocks",
        n.div_ceil(64)
    );
    assert!(rel_err(&db, &r.db) < 1e-4);
}
