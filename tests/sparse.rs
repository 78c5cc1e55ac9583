//! The sparse outputs for engines (`sae_kernels::sparse`) and the automatic
//! dense/sparse choice, against the dense entry points and the f64 reference.

mod common;

use common::model::Case;
use common::{TestRng, rel_err};
use sae_kernels::sparse::{
    Overflow, RowLimit, csr_top_k_len, decode_csr, decode_sparse, encode_csr,
    encode_csr_scratch_len, encode_sparse, encode_sparse_scratch_len, top_k,
};
use sae_kernels::{
    Error,
    model::{
        Arch, Dims, ForwardOutputs, LossOptions, Params, ParamsMut, Path, SPARSE_CROSSOVER,
        Weights, decode, decode_scratch_len, encode, encode_scratch_len, forward,
        forward_scratch_len, grad_scratch_len, loss_and_grad,
    },
};

/// A random model whose codes are sparse: biases are shifted down so that about
/// `density` of the codes are active.
fn sparse_case(seed: u64, n: usize, d: usize, h: usize, density: f64) -> Case {
    let mut rng = TestRng(seed);
    let mut c = Case::random(&mut rng, n, d, h, 0.05, 1e-3);
    // Shift each bias to the (1 − density) quantile of its pre-activations, then away
    // from the kink so that f32 and f64 agree on every ReLU decision.
    for j in 0..h {
        let mut pre: Vec<f32> = (0..n)
            .map(|i| c.b[j] + (0..d).map(|k| c.x[i * d + k] * c.m[j * d + k]).sum::<f32>())
            .collect();
        pre.sort_by(f32::total_cmp);
        let q = ((1.0 - density) * n as f64) as usize;
        let cut = pre[q.min(n - 1)];
        // The margin differs per feature (by 1e-5, far above the encoder's rounding),
        // so no two codes of a row tie exactly: a tie would be broken by rounding,
        // which differs between the single-row and batch routes and between kernels.
        c.b[j] -= cut - 5e-3 - 1e-5 * j as f32;
        for _ in 0..1000 {
            let close = (0..n).any(|i| {
                let s = f64::from(c.b[j])
                    + (0..d)
                        .map(|k| f64::from(c.x[i * d + k]) * f64::from(c.m[j * d + k]))
                        .sum::<f64>();
                s.abs() < 1e-3
            });
            if !close {
                break;
            }
            c.b[j] -= 3e-3;
        }
    }
    c
}

fn dense_codes(c: &Case) -> Vec<f32> {
    let dims = Dims::new(c.d, c.h).unwrap();
    let p = Params::tied(dims, &c.m, &c.b).unwrap();
    let mut codes = vec![0.0; c.n * c.h];
    let mut s = vec![0.0; encode_scratch_len(Arch::tied(), dims, 1)];
    // Row by row, as encode_sparse does (the single-row route), for bit equality.
    for i in 0..c.n {
        encode(
            p,
            &c.x[i * c.d..(i + 1) * c.d],
            1,
            &mut codes[i * c.h..(i + 1) * c.h],
            &mut s,
        )
        .unwrap();
    }
    codes
}

/// The `k` largest positive codes (ties: lower index), sorted by index.
fn largest(row: &[f32], k: usize) -> Vec<(u32, f32)> {
    let mut act: Vec<(u32, f32)> = row
        .iter()
        .enumerate()
        .filter(|e| *e.1 > 0.0)
        .map(|(j, &v)| (j as u32, v))
        .collect();
    act.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    act.truncate(k);
    act.sort_by_key(|e| e.0);
    act
}

/// Same indices; values equal up to the encoder's rounding (a block of one row takes
/// its single-row route, which sums in another order than the batch product).
fn same_pairs(got: &[(u32, f32)], want: &[(u32, f32)], label: &str) {
    let gi: Vec<u32> = got.iter().map(|e| e.0).collect();
    let wi: Vec<u32> = want.iter().map(|e| e.0).collect();
    assert_eq!(gi, wi, "{label}");
    for (g, w) in got.iter().zip(want) {
        assert!(
            (g.1 - w.1).abs() <= 1e-5 * (1.0 + w.1.abs()),
            "{label}: {g:?} vs {w:?}"
        );
    }
}

#[test]
fn encode_sparse_lists_the_active_codes() {
    let c = sparse_case(1, 6, 12, 40, 0.2);
    let dims = Dims::new(c.d, c.h).unwrap();
    let p = Params::tied(dims, &c.m, &c.b).unwrap();
    let codes = dense_codes(&c);
    let mut s = vec![f32::NAN; encode_sparse_scratch_len(Arch::tied(), dims)];
    for i in 0..c.n {
        let row = &codes[i * c.h..(i + 1) * c.h];
        let want = largest(row, c.h);
        let mut out = heapless::Vec::<(u32, f32), 40>::new();
        let a = encode_sparse(
            p,
            &c.x[i * c.d..(i + 1) * c.d],
            &mut out,
            Overflow::Error,
            &mut s,
        )
        .unwrap();
        assert_eq!(a, want.len());
        assert_eq!(&out[..], &want[..], "row {i}");
    }
}

#[test]
fn encode_sparse_capacity_is_an_error_or_keeps_the_largest() {
    let c = sparse_case(2, 4, 10, 64, 0.5);
    let dims = Dims::new(c.d, c.h).unwrap();
    let p = Params::tied(dims, &c.m, &c.b).unwrap();
    let codes = dense_codes(&c);
    let mut s = vec![0.0; encode_sparse_scratch_len(Arch::tied(), dims)];
    let mut checked = 0;
    for i in 0..c.n {
        let row = &codes[i * c.h..(i + 1) * c.h];
        let active = row.iter().filter(|&&v| v > 0.0).count();
        let x = &c.x[i * c.d..(i + 1) * c.d];
        let mut out = heapless::Vec::<(u32, f32), 5>::new();
        let r = encode_sparse(p, x, &mut out, Overflow::Error, &mut s);
        if active > 5 {
            checked += 1;
            assert_eq!(
                r,
                Err(Error::Capacity {
                    arg: "out",
                    capacity: 5,
                    needed: active
                })
            );
            assert!(out.is_empty(), "nothing is kept on error");
        } else {
            assert_eq!(r, Ok(active));
        }
        let a = encode_sparse(p, x, &mut out, Overflow::KeepLargest, &mut s).unwrap();
        assert_eq!(a, active, "the active count is reported, not the kept one");
        assert_eq!(&out[..], &largest(row, 5)[..], "row {i}");
    }
    assert!(checked > 0, "some rows overflow K = 5");
}

#[test]
fn encode_sparse_rejects_bad_input() {
    let c = sparse_case(3, 1, 4, 8, 0.5);
    let dims = Dims::new(4, 8).unwrap();
    let p = Params::tied(dims, &c.m, &c.b).unwrap();
    let mut s = vec![0.0; encode_sparse_scratch_len(Arch::tied(), dims)];
    let mut out = heapless::Vec::<(u32, f32), 8>::new();
    let e = encode_sparse(p, &c.x[..3], &mut out, Overflow::Error, &mut s);
    assert!(matches!(e, Err(Error::Length { arg: "x", .. })));
    let short = &mut s[..3];
    let e = encode_sparse(p, &c.x, &mut out, Overflow::Error, short);
    assert!(matches!(
        e,
        Err(Error::WorkspaceTooSmall { arg: "scratch", .. })
    ));
    let x = [f32::NAN, 0.0, 0.0, 0.0];
    for mode in [Overflow::Error, Overflow::KeepLargest] {
        let e = encode_sparse(p, &x, &mut out, mode, &mut s);
        assert_eq!(e, Err(Error::NonFinite { arg: "x" }));
        assert!(out.is_empty());
    }
}

#[test]
fn top_k_is_one_pass_exact_and_breaks_ties_by_index() {
    let mut rng = TestRng(9);
    for t in 0..50 {
        let h = 1 + rng.below(200);
        // Values from a small set, so ties are common.
        let row: Vec<f32> = (0..h).map(|_| (rng.below(7) as f32 - 3.0) * 0.5).collect();
        let active = row.iter().filter(|&&v| v > 0.0).count();
        let mut o3 = heapless::Vec::<(u32, f32), 3>::new();
        assert_eq!(top_k(&row, &mut o3), Ok(active));
        assert_eq!(&o3[..], &largest(&row, 3)[..], "case {t}");
        let mut o17 = heapless::Vec::<(u32, f32), 17>::new();
        assert_eq!(top_k(&row, &mut o17), Ok(active));
        assert_eq!(&o17[..], &largest(&row, 17)[..], "case {t}");
        let mut o0 = heapless::Vec::<(u32, f32), 0>::new();
        assert_eq!(top_k(&row, &mut o0), Ok(active));
    }
    let mut o = heapless::Vec::<(u32, f32), 2>::new();
    top_k(&[1.0, 2.0, 2.0, 1.0, 2.0], &mut o).unwrap();
    assert_eq!(
        &o[..],
        &[(1, 2.0), (2, 2.0)],
        "equal values: lower index wins"
    );
}

#[test]
fn encode_csr_matches_dense_codes_and_reports_capacity() {
    let c = sparse_case(4, 37, 9, 50, 0.1);
    let dims = Dims::new(c.d, c.h).unwrap();
    let p = Params::tied(dims, &c.m, &c.b).unwrap();
    // Reference: the dense batch encoder.
    let mut codes = vec![0.0; c.n * c.h];
    let mut s = vec![0.0; encode_scratch_len(Arch::tied(), dims, 1)];
    encode(p, &c.x, c.n, &mut codes, &mut s).unwrap();
    let total = codes.iter().filter(|&&v| v > 0.0).count();
    for block in [1, 4, 64] {
        let mut s = vec![f32::NAN; encode_csr_scratch_len(Arch::tied(), dims, block)];
        let mut ptr = vec![usize::MAX; c.n + 1];
        let (mut idx, mut val) = (vec![u32::MAX; total], vec![f32::NAN; total]);
        let nnz = encode_csr(
            p,
            &c.x,
            c.n,
            RowLimit::All,
            &mut ptr,
            &mut idx,
            &mut val,
            &mut s,
        )
        .unwrap();
        assert_eq!(nnz, total);
        assert_eq!(ptr[0], 0);
        for i in 0..c.n {
            let row = &codes[i * c.h..(i + 1) * c.h];
            let got: Vec<(u32, f32)> = (ptr[i]..ptr[i + 1]).map(|e| (idx[e], val[e])).collect();
            same_pairs(&got, &largest(row, c.h), &format!("row {i} block {block}"));
        }
        // One slot short: an error that says how many are needed.
        let r = encode_csr(
            p,
            &c.x,
            c.n,
            RowLimit::All,
            &mut ptr,
            &mut idx[..total - 1],
            &mut val,
            &mut s,
        );
        assert_eq!(
            r,
            Err(Error::Capacity {
                arg: "indices",
                capacity: total - 1,
                needed: total
            })
        );
        // Top-k per row.
        let k = 3;
        let len = csr_top_k_len(c.n, k);
        let (mut idx, mut val) = (vec![u32::MAX; len], vec![f32::NAN; len]);
        let nnz = encode_csr(
            p,
            &c.x,
            c.n,
            RowLimit::TopK(k),
            &mut ptr,
            &mut idx,
            &mut val,
            &mut s,
        )
        .unwrap();
        assert_eq!(nnz, ptr[c.n]);
        for i in 0..c.n {
            let row = &codes[i * c.h..(i + 1) * c.h];
            let got: Vec<(u32, f32)> = (ptr[i]..ptr[i + 1]).map(|e| (idx[e], val[e])).collect();
            same_pairs(
                &got,
                &largest(row, k),
                &format!("top-k row {i} block {block}"),
            );
        }
        let r = encode_csr(
            p,
            &c.x,
            c.n,
            RowLimit::TopK(k),
            &mut ptr,
            &mut idx[..len - 1],
            &mut val,
            &mut s,
        );
        assert_eq!(
            r,
            Err(Error::Capacity {
                arg: "indices",
                capacity: len - 1,
                needed: len
            })
        );
    }
    let mut s = vec![0.0; encode_csr_scratch_len(Arch::tied(), dims, 1)];
    let mut ptr = vec![0; c.n];
    let r = encode_csr(
        p,
        &c.x,
        c.n,
        RowLimit::All,
        &mut ptr,
        &mut [],
        &mut [],
        &mut s,
    );
    assert!(matches!(r, Err(Error::Length { arg: "row_ptr", .. })));
}

#[test]
fn sparse_decode_matches_the_reference() {
    let c = sparse_case(5, 20, 17, 70, 0.05);
    let dims = Dims::new(c.d, c.h).unwrap();
    let p = Params::tied(dims, &c.m, &c.b).unwrap();
    let r = c.reference();
    let mut s = vec![0.0; encode_csr_scratch_len(Arch::tied(), dims, 8)];
    let mut ptr = vec![0; c.n + 1];
    let (mut idx, mut val) = (vec![0; c.n * c.h], vec![0.0; c.n * c.h]);
    encode_csr(
        p,
        &c.x,
        c.n,
        RowLimit::All,
        &mut ptr,
        &mut idx,
        &mut val,
        &mut s,
    )
    .unwrap();
    let mut recon = vec![f32::NAN; c.n * c.d];
    decode_csr(p, c.n, &ptr, &idx, &val, &mut recon).unwrap();
    assert!(rel_err(&recon, &r.recon) <= 2e-5);
    // Row by row from pairs, and the dense decoder on the same codes.
    let mut codes = vec![0.0; c.n * c.h];
    for i in 0..c.n {
        let pairs: Vec<(u32, f32)> = (ptr[i]..ptr[i + 1]).map(|e| (idx[e], val[e])).collect();
        let mut row = vec![f32::NAN; c.d];
        decode_sparse(p, &pairs, &mut row).unwrap();
        assert_eq!(row, recon[i * c.d..(i + 1) * c.d], "same order, same bits");
        for &(j, v) in &pairs {
            codes[i * c.h + j as usize] = v;
        }
    }
    let mut dense = vec![0.0; c.n * c.d];
    let mut s = vec![0.0; decode_scratch_len(dims, 1)];
    decode(p, &codes, c.n, &mut dense, &mut s).unwrap();
    let d64: Vec<f64> = dense.iter().map(|&v| f64::from(v)).collect();
    assert!(rel_err(&recon, &d64) <= 2e-5);

    // Bad input: nothing is written.
    let mut row = vec![7.0; c.d];
    let e = decode_sparse(p, &[(0, 1.0), (c.h as u32, 1.0)], &mut row);
    assert!(matches!(e, Err(Error::OutOfRange { arg: "pairs", .. })));
    assert!(row.iter().all(|&v| v == 7.0));
    let e = decode_sparse(p, &[], &mut row[..1]);
    assert!(matches!(e, Err(Error::Length { arg: "recon", .. })));
    let mut bad = ptr.clone();
    bad.swap(1, 2);
    if bad[1] > bad[2] {
        let e = decode_csr(p, c.n, &bad, &idx, &val, &mut recon);
        assert!(matches!(e, Err(Error::OutOfRange { arg: "row_ptr", .. })));
    }
    let mut bad = ptr.clone();
    bad[c.n] = idx.len() + 1;
    let e = decode_csr(p, c.n, &bad, &idx, &val, &mut recon);
    assert!(matches!(e, Err(Error::OutOfRange { arg: "row_ptr", .. })));
    let mut bad_idx = idx.clone();
    bad_idx[ptr[1]] = c.h as u32;
    if ptr[2] > ptr[1] {
        let e = decode_csr(p, c.n, &ptr, &bad_idx, &val, &mut recon);
        assert!(matches!(e, Err(Error::OutOfRange { arg: "indices", .. })));
    }
    let e = decode_csr(p, c.n, &ptr, &idx, &val[1..], &mut recon);
    assert!(matches!(e, Err(Error::Length { arg: "values", .. })));
}

fn grads(c: &Case, block: usize, path: Path) -> (f32, Vec<f32>, Vec<f32>) {
    let dims = Dims::new(c.d, c.h).unwrap();
    let p = Params::tied(dims, &c.m, &c.b).unwrap();
    let (mut dm, mut db) = (vec![f32::NAN; c.h * c.d], vec![f32::NAN; c.h]);
    let mut s = vec![f32::NAN; grad_scratch_len(Arch::tied(), dims, block)];
    let g = ParamsMut::tied(dims, &mut dm, &mut db).unwrap();
    let l = loss_and_grad(
        p,
        &c.x,
        c.n,
        &LossOptions {
            path,
            ..LossOptions::alpha(c.alpha)
        },
        g,
        &mut s,
    )
    .unwrap();
    (l.loss, dm, db)
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// The loss, the gradients (every tensor, flat) and the reconstruction of `x` on
/// `path`, blocks of 8 rows.
fn run_path(p: Params<'_>, x: &[f32], n: usize, alpha: f32, path: Path) -> [Vec<u32>; 3] {
    let (arch, dims) = (p.arch(), p.dims());
    let opts = LossOptions {
        path,
        ..LossOptions::alpha(alpha)
    };
    let mut g = vec![f32::NAN; arch.param_len(dims)];
    let mut s = vec![f32::NAN; grad_scratch_len(arch, dims, 8)];
    let gv = ParamsMut::from_flat(arch, dims, &mut g).unwrap();
    let l = loss_and_grad(p, x, n, &opts, gv, &mut s).unwrap();
    let mut recon = vec![f32::NAN; n * dims.d];
    let mut s = vec![f32::NAN; forward_scratch_len(arch, dims, 8)];
    let out = ForwardOutputs {
        recon: Some(&mut recon),
        ..Default::default()
    };
    let f = forward(p, x, n, &opts, out, &mut s).unwrap();
    assert_eq!(
        l.loss.to_bits(),
        f.loss.to_bits(),
        "{path:?}: forward vs backward"
    );
    [vec![l.loss.to_bits()], bits(&g), bits(&recon)]
}

#[test]
fn auto_follows_the_measured_density() {
    // Clearly below and clearly above the crossover: Auto must equal Sparse resp. Dense
    // bit for bit (loss, every gradient, the reconstruction).
    let lo = sparse_case(6, 24, 16, 96, f64::from(SPARSE_CROSSOVER) / 4.0);
    let hi = sparse_case(7, 24, 16, 96, 0.6);
    for (c, expect) in [(&lo, Path::Sparse), (&hi, Path::Dense)] {
        let dims = Dims::new(c.d, c.h).unwrap();
        let tied = Params::tied(dims, &c.m, &c.b).unwrap();
        assert_eq!(
            run_path(tied, &c.x, c.n, c.alpha, Path::Auto),
            run_path(tied, &c.x, c.n, c.alpha, expect),
            "tied, {expect:?}"
        );

        // That equality could also hold if both paths gave the same bits (they do on
        // the scalar kernel), so tell the paths apart by what they compute rather than
        // by rounding: the same model untied, with feature 0 silenced by its bias and
        // an infinite decoder row. The dense products multiply its zero codes by ∞
        // (NaN everywhere); the sparse path never reads an inactive feature's row
        // (finite).
        let arch = Arch {
            weights: Weights::Untied {
                center_input: false,
            },
            ..Arch::tied()
        };
        let (d, h) = (c.d, c.h);
        let mut w_enc = vec![0.0; d * h];
        for j in 0..h {
            for k in 0..d {
                w_enc[k * h + j] = c.m[j * d + k];
            }
        }
        let (mut b_enc, mut w_dec) = (c.b.clone(), c.m.clone());
        b_enc[0] = -1e6;
        w_dec[..d].fill(f32::INFINITY);
        let b_dec = vec![0.0; d];
        let p = Params::new(arch, dims, [&w_enc, &b_enc, &w_dec, &b_dec]).unwrap();
        let dense = run_path(p, &c.x, c.n, c.alpha, Path::Dense);
        let sparse = run_path(p, &c.x, c.n, c.alpha, Path::Sparse);
        assert!(
            f32::from_bits(dense[0][0]).is_nan(),
            "dense: 0·∞ in the decoder"
        );
        assert!(
            sparse
                .iter()
                .flatten()
                .all(|&v| f32::from_bits(v).is_finite()),
            "sparse: the silenced feature is never read"
        );
        let auto = run_path(p, &c.x, c.n, c.alpha, Path::Auto);
        let want = if expect == Path::Sparse {
            sparse
        } else {
            dense
        };
        assert_eq!(auto, want, "untied, {expect:?}");
    }
}

#[test]
fn mixed_dense_and_sparse_blocks_accumulate_exactly() {
    // A sparse case's rows next to the same rows scaled by 40 (about half their codes
    // active): with Auto, blocks of 8 rows take different paths, sparse first or dense
    // first. The gradient must match the f64 reference and the all-dense result.
    let a = sparse_case(8, 16, 12, 48, 0.02);
    let far: Vec<f32> = a.x.iter().map(|v| v * 40.0).collect();
    for far_first in [false, true] {
        let x = if far_first {
            [far.clone(), a.x.clone()].concat()
        } else {
            [a.x.clone(), far.clone()].concat()
        };
        let c = Case {
            n: 32,
            x,
            m: a.m.clone(),
            b: a.b.clone(),
            ..a
        };
        let r = c.reference();
        assert!(r.min_abs_pre > 1e-4, "no ReLU decision near the kink");
        // The halves really lie on both sides of the crossover (blocks of 8 rows).
        let crossover = f64::from(SPARSE_CROSSOVER);
        for (half, sparse) in [(0, !far_first), (1, far_first)] {
            let codes = &r.codes[half * 16 * c.h..(half + 1) * 16 * c.h];
            let on = codes.iter().filter(|&&v| v > 0.0).count() as f64;
            let density = on / codes.len() as f64;
            assert_eq!(density <= crossover, sparse, "half {half}: {density}");
        }
        let (la, dma, dba) = grads(&c, 8, Path::Auto);
        assert!(rel_err(&[la], &[r.loss]) <= 2e-5);
        assert!(rel_err(&dma, &r.dm) <= 2e-5, "dM");
        assert!(rel_err(&dba, &r.db) <= 2e-5, "db");
    }
}

#[test]
fn sparse_super_blocks_match_the_reference() {
    // Low densities, so that the sparse path groups several row blocks into one
    // super-block (and flushes when one fills up), at several block sizes.
    let shapes: &[(usize, usize, usize, f64)] = &[
        (40, 7, 33, 0.03),
        (70, 16, 64, 0.08),
        (33, 5, 120, 0.01),
        (64, 24, 40, 0.2),
    ];
    for (t, &(n, d, h, density)) in shapes.iter().enumerate() {
        let c = sparse_case(100 + t as u64, n, d, h, density);
        let r = c.reference();
        for block in [1, 2, 5, 16] {
            for path in [Path::Sparse, Path::Auto] {
                let (l, dm, db) = grads(&c, block, path);
                let label = format!("n={n} d={d} h={h} density={density} block={block} {path:?}");
                assert!(rel_err(&[l], &[r.loss]) <= 2e-5, "{label}: loss");
                assert!(rel_err(&dm, &r.dm) <= 2e-5, "{label}: dM");
                assert!(rel_err(&db, &r.db) <= 2e-5, "{label}: db");
            }
        }
    }
}

/// Sparse outputs of untied models (TopK and JumpReLU, with input centring): CSR and
/// single-vector outputs hold exactly the dense encoder's non-zero codes, and the
/// sparse decoders reproduce the dense decoder (with `b_dec`).
#[test]
fn sparse_outputs_of_untied_models() {
    use sae_kernels::model::Activation;
    let (n, d, h) = (9, 7, 40);
    let dims = Dims::new(d, h).unwrap();
    let mut rng = TestRng(31);
    let (we, be, wd, bd) = (
        rng.vec(d * h, 0.6),
        rng.vec(h, 0.2),
        rng.vec(h * d, 0.5),
        rng.vec(d, 0.3),
    );
    let th = rng.vec(h, 0.5).iter().map(|v| v.abs()).collect::<Vec<_>>();
    let x = rng.vec(n * d, 1.0);
    for act in [Activation::TopK { k: 5 }, Activation::JumpRelu] {
        let arch = Arch {
            activation: act,
            ..Arch::standard()
        };
        let p = if act == Activation::JumpRelu {
            Params::new(arch, dims, [&we, &be, &wd, &bd, &th])
        } else {
            Params::new(arch, dims, [&we, &be, &wd, &bd])
        }
        .unwrap();
        let mut codes = vec![0.0; n * h];
        let mut s = vec![0.0; encode_scratch_len(arch, dims, 4)];
        encode(p, &x, n, &mut codes, &mut s).unwrap();
        let on = codes.iter().filter(|&&c| c > 0.0).count();
        assert!(on > 0 && on < n * h / 2, "{act:?}: {on} active");
        let (mut ptr, mut idx, mut val) = (vec![0; n + 1], vec![0u32; n * h], vec![0.0; n * h]);
        let mut cs = vec![0.0; encode_csr_scratch_len(arch, dims, 3)];
        let nnz = encode_csr(
            p,
            &x,
            n,
            RowLimit::All,
            &mut ptr,
            &mut idx,
            &mut val,
            &mut cs,
        )
        .unwrap();
        assert_eq!(nnz, on);
        for r in 0..n {
            let mut want = Vec::new();
            for j in 0..h {
                if codes[r * h + j] > 0.0 {
                    want.push((j as u32, codes[r * h + j]));
                }
            }
            let got: Vec<(u32, f32)> = (ptr[r]..ptr[r + 1]).map(|e| (idx[e], val[e])).collect();
            assert_eq!(got, want, "{act:?} row {r}");
            let mut one = heapless::Vec::<(u32, f32), 64>::new();
            let mut s1 = vec![0.0; encode_sparse_scratch_len(arch, dims)];
            encode_sparse(
                p,
                &x[r * d..(r + 1) * d],
                &mut one,
                Overflow::Error,
                &mut s1,
            )
            .unwrap();
            assert_eq!(&one[..], &want[..], "{act:?} encode_sparse row {r}");
            let mut rs = vec![0.0; d];
            decode_sparse(p, &one, &mut rs).unwrap();
            let mut rd = vec![0.0; d];
            let mut ds = vec![0.0; decode_scratch_len(dims, 1)];
            decode(p, &codes[r * h..(r + 1) * h], 1, &mut rd, &mut ds).unwrap();
            let want64: Vec<f64> = rd.iter().map(|&v| f64::from(v)).collect();
            assert!(
                rel_err(&rs, &want64) < 1e-6,
                "{act:?} decode_sparse row {r}"
            );
        }
        let mut rc = vec![0.0; n * d];
        decode_csr(p, n, &ptr, &idx[..nnz], &val[..nnz], &mut rc).unwrap();
        let mut rd = vec![0.0; n * d];
        let mut ds = vec![0.0; decode_scratch_len(dims, 4)];
        decode(p, &codes, n, &mut rd, &mut ds).unwrap();
        let want64: Vec<f64> = rd.iter().map(|&v| f64::from(v)).collect();
        assert!(rel_err(&rc, &want64) < 1e-6, "{act:?} decode_csr");
        assert!(bd.iter().any(|&v| v != 0.0), "b_dec is part of the check");
    }
}

/// AuxK on the sparse path, both of its routes, against the dense path (itself checked
/// against finite differences in `tests/variants.rs`): with many dead latents and a
/// large `k_aux` the selections run as GEMMs over the compacted dead latents (the core
/// takes that route when `dead ≤ 5·min(k_aux, dead)` and `2·dead + d ≤ h`), with a
/// small `k_aux` as super-block entries. The dead latents' pre-activations come from
/// their own product when `dead ≤ h/8` (the 3 dead latents, and 20 of 200), else
/// from all the pre-activations (32 of 80). The GEMM route keeps its residuals beside
/// the gathered decoder rows when a block's rows fit there (32 of 80: blocks up to 48
/// rows), else after its selections (the 64-row blocks). Untied with and without input
/// centring and tied TopK, at several block sizes (one block per call up to many).
#[test]
fn auxk_routes_match_the_dense_path() {
    // (n, d, h, k, every `step`-th latent dead, k_aux values): the first shape has one
    // block per super-block, the second (low density, small d) merges several blocks
    // into one super-block on both routes. 40 % dead of 80: k_aux 10 → GEMMs
    // (32 ≤ 50, 2·32 + 12 ≤ 80), k_aux 2 → entries (32 > 10); 10 % dead of 200:
    // k_aux 6 → GEMMs (20 ≤ 30), k_aux 2 → entries (20 > 10); 3 dead latents: k' = 3,
    // GEMMs.
    let shapes: [(usize, usize, usize, usize, usize, [usize; 2]); 2] =
        [(37, 12, 80, 4, 0, [10, 2]), (50, 4, 200, 2, 10, [6, 2])];
    for (n, d, h, k, step, k_auxes) in shapes {
        auxk_routes_case(n, d, h, k, step, k_auxes);
    }
}

fn auxk_routes_case(n: usize, d: usize, h: usize, k: usize, step: usize, k_auxes: [usize; 2]) {
    use sae_kernels::model::{Activation, AuxK, Penalty};
    let dims = Dims::new(d, h).unwrap();
    let mut rng = TestRng(77 + h as u64);
    let x = rng.vec(n * d, 1.0);
    let topk = Activation::TopK { k };
    let archs = [
        Arch::topk(k),
        Arch {
            weights: Weights::Untied {
                center_input: false,
            },
            ..Arch::topk(k)
        },
        Arch {
            weights: Weights::Tied,
            activation: topk,
            penalty: Penalty::None,
        },
    ];
    let many: Vec<bool> = (0..h)
        .map(|j| if step == 0 { j % 5 < 2 } else { j % step == 0 })
        .collect();
    let few: Vec<bool> = (0..h).map(|j| j == 7 || j == 40 || j == h - 1).collect();
    for arch in archs {
        let flat = rng.vec(arch.param_len(dims), 0.4);
        let p = Params::from_flat(arch, dims, &flat).unwrap();
        for (dead, k_aux) in [(&many, k_auxes[0]), (&many, k_auxes[1]), (&few, 6)] {
            let aux = AuxK {
                dead,
                k_aux,
                coefficient: 0.5,
            };
            let run = |path: Path, block: usize| {
                let opts = LossOptions {
                    path,
                    aux: Some(aux),
                    ..LossOptions::alpha(0.0)
                };
                let mut g = vec![f32::NAN; arch.param_len(dims)];
                let mut s = vec![f32::NAN; grad_scratch_len(arch, dims, block)];
                let gv = ParamsMut::from_flat(arch, dims, &mut g).unwrap();
                let l = loss_and_grad(p, &x, n, &opts, gv, &mut s).unwrap();
                (l, g)
            };
            let (want, wg) = run(Path::Dense, 8);
            assert!(want.aux > 0.0, "the AuxK term is exercised");
            for block in [1, 3, 4, 7, 64] {
                let (got, g) = run(Path::Sparse, block);
                let label = format!("h={h} {:?} k_aux={k_aux} block={block}", arch.weights);
                assert!(
                    rel_err(&[got.aux], &[f64::from(want.aux)]) <= 2e-5,
                    "{label}: aux"
                );
                assert!(
                    rel_err(&[got.loss], &[f64::from(want.loss)]) <= 2e-5,
                    "{label}: loss"
                );
                // Tensor by tensor, so that a small tensor's error is not hidden.
                let (mut a, mut b) = (&g[..], &wg[..]);
                for len in arch_lens(arch, dims) {
                    let (ga, ra) = a.split_at(len);
                    let (gb, rb) = b.split_at(len);
                    assert!(ga.iter().all(|v| v.is_finite()), "{label}: finite");
                    let gb: Vec<f64> = gb.iter().map(|&v| f64::from(v)).collect();
                    let err = rel_err(ga, &gb);
                    assert!(err <= 2e-5, "{label}: tensor of {len}: rel err {err:e}");
                    (a, b) = (ra, rb);
                }
            }
        }
    }
}

/// The tensor lengths of an architecture in canonical order.
fn arch_lens(arch: Arch, dims: Dims) -> Vec<usize> {
    let (d, h) = (dims.d, dims.h);
    if arch.is_tied() {
        vec![h * d, h]
    } else {
        vec![d * h, h, h * d, d]
    }
}
