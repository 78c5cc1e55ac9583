//! Finite-difference checks of dL/dM and dL/db in f64.
//!
//! The library's f32 gradients are compared with central differences of the loss
//! computed in f64 by the independent reference (`common::reference::loss`), with step
//! `1e-6`. Pre-activations are kept ≥ 1e-3 away from the ReLU kink, so a step never
//! crosses it and the central difference's error is O(step²)·L''' plus f64 rounding
//! (~1e-10): the comparison is limited by the library's f32 rounding. Bound:
//! `max|g − fd| ≤ 1e-4 · max|fd|` over every entry.

mod common;

use common::TestRng;
use common::model::{Case, f64v};
use common::reference;
use sae_kernels::model::{
    Arch, Dims, LossOptions, Params, ParamsMut, Path, grad_scratch_len, loss_and_grad,
};

fn fd_check(c: &Case, path: Path) {
    let dims = Dims::new(c.d, c.h).unwrap();
    let p = Params::tied(dims, &c.m, &c.b).unwrap();
    let (mut dm, mut db) = (vec![0.0; c.h * c.d], vec![0.0; c.h]);
    let mut scratch = vec![0.0; grad_scratch_len(Arch::tied(), dims, 4)];
    loss_and_grad(
        p,
        &c.x,
        c.n,
        &LossOptions {
            path,
            ..LossOptions::alpha(c.alpha)
        },
        ParamsMut::tied(dims, &mut dm, &mut db).unwrap(),
        &mut scratch,
    )
    .unwrap();

    let (mut m, mut b, x) = (f64v(&c.m), f64v(&c.b), f64v(&c.x));
    let alpha = f64::from(c.alpha);
    let step = 1e-6;
    let loss = |m: &[f64], b: &[f64]| reference::loss(m, b, &x, c.n, c.d, c.h, alpha);
    let mut fd_m = vec![0.0; m.len()];
    for e in 0..m.len() {
        let old = m[e];
        m[e] = old + step;
        let up = loss(&m, &b);
        m[e] = old - step;
        let down = loss(&m, &b);
        m[e] = old;
        fd_m[e] = (up - down) / (2.0 * step);
    }
    let mut fd_b = vec![0.0; b.len()];
    for e in 0..b.len() {
        let old = b[e];
        b[e] = old + step;
        let up = loss(&m, &b);
        b[e] = old - step;
        let down = loss(&m, &b);
        b[e] = old;
        fd_b[e] = (up - down) / (2.0 * step);
    }
    let em = common::rel_err(&dm, &fd_m);
    let eb = common::rel_err(&db, &fd_b);
    assert!(
        em <= 1e-4,
        "dM vs finite differences: {em:.2e} (n={} d={} h={}, {path:?})",
        c.n,
        c.d,
        c.h
    );
    assert!(eb <= 1e-4, "db vs finite differences: {eb:.2e} ({path:?})");
}

#[test]
fn gradients_match_finite_differences() {
    let mut rng = TestRng(31337);
    let shapes: &[(usize, usize, usize, f32)] = if cfg!(miri) {
        &[(2, 3, 5, 0.1)]
    } else {
        &[
            (1, 1, 1, 0.5),
            (5, 3, 7, 0.1),
            (9, 8, 16, 0.01),
            (6, 13, 9, 1.0),
            (11, 5, 21, 0.0),
        ]
    };
    for &(n, d, h, alpha) in shapes {
        let c = Case::random(&mut rng, n, d, h, alpha, 1e-3);
        // Both implementations of the backward pass, on the same case.
        for path in [Path::Dense, Path::Sparse] {
            fd_check(&c, path);
        }
    }
}

#[test]
fn finite_difference_check_can_fail() {
    // Guard against a vacuous check: a gradient with one wrong entry must be caught.
    let mut rng = TestRng(4);
    let c = Case::random(&mut rng, 4, 3, 5, 0.1, 1e-3);
    let r = c.reference();
    let mut wrong: Vec<f32> = r.dm.iter().map(|&v| v as f32).collect();
    wrong[2] += 1e-2 * r.dm.iter().fold(0.0f64, |a, v| a.max(v.abs())) as f32;
    assert!(common::rel_err(&wrong, &r.dm) > 1e-4);
}
