//! The library's f32 path against the seed's own JAX code (cases in `SAE_GOLDEN_DIR`,
//! default `tests/golden/seed_jax` in this repository; layouts in that folder's README).
//!
//! Tolerance: every field (X̂, C, loss, dM, db, per-row squared error and L1) must agree
//! with the f64 reference to `max|a − g| / max|g| ≤ 2e-6`, and with JAX's own f32 output
//! to the same bound. f32 has a unit roundoff of 6e-8; the longest sums here have
//! `h = 256` terms with error growing like √k·u in practice, and JAX's f32 and f64
//! outputs themselves differ by up to 1e-6. Outside the "kink" cases every
//! pre-activation is ≥ 2e-3·scale away from 0, so f32 rounding cannot flip a ReLU.

mod common;

use common::rel_err;
use sae_kernels::model::{
    Arch, Dims, ForwardOutputs, LossOptions, Params, ParamsMut, Path, forward, forward_scratch_len,
    grad_scratch_len, loss_and_grad,
};
use serde_json::Value;
use std::path::PathBuf;

const TOL: f64 = 2e-6;

/// `SAE_GOLDEN_DIR` if set, else the cases committed with the crate
/// (`tests/golden/seed_jax`, a copy of the public set with its README).
fn golden_dir() -> PathBuf {
    std::env::var_os("SAE_GOLDEN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/seed_jax"))
}

fn f64s(v: &Value, key: &str) -> Vec<f64> {
    match &v[key] {
        Value::Array(a) => a.iter().map(|x| x.as_f64().expect("number")).collect(),
        Value::Number(n) => vec![n.as_f64().expect("number")],
        other => panic!("field {key}: unexpected {other:?}"),
    }
}

fn f32s(v: &Value, key: &str) -> Vec<f32> {
    f64s(v, key).into_iter().map(|x| x as f32).collect()
}

struct Outputs {
    xh: Vec<f32>,
    c: Vec<f32>,
    loss: f32,
    dm: Vec<f32>,
    db: Vec<f32>,
    row_sq: Vec<f32>,
    row_l1: Vec<f32>,
}

/// Both implementations of the decoder and backward run every check.
const PATHS: [Path; 2] = [Path::Dense, Path::Sparse];

/// Run the library on a case, with a scratch sized for `block_rows`, on `path`.
fn run(case: &Value, block_rows: usize, path: Path) -> Outputs {
    let n = case["n"].as_u64().unwrap() as usize;
    let d = case["d"].as_u64().unwrap() as usize;
    let h = case["h"].as_u64().unwrap() as usize;
    let alpha = case["alpha"].as_f64().unwrap() as f32;
    let dims = Dims::new(d, h).unwrap();
    let (m, b, x) = (f32s(case, "M"), f32s(case, "b"), f32s(case, "X"));
    let p = Params::tied(dims, &m, &b).unwrap();
    let opts = LossOptions {
        path,
        ..LossOptions::alpha(alpha)
    };

    let mut o = Outputs {
        xh: vec![f32::NAN; n * d],
        c: vec![f32::NAN; n * h],
        loss: 0.0,
        dm: vec![f32::NAN; h * d],
        db: vec![f32::NAN; h],
        row_sq: vec![f32::NAN; n],
        row_l1: vec![f32::NAN; n],
    };
    let mut scratch = vec![f32::NAN; forward_scratch_len(Arch::tied(), dims, block_rows)];
    let out = ForwardOutputs {
        codes: Some(&mut o.c),
        recon: Some(&mut o.xh),
        row_sq_err: Some(&mut o.row_sq),
        row_l1: Some(&mut o.row_l1),
    };
    let fwd = forward(p, &x, n, &opts, out, &mut scratch).unwrap();
    let mut scratch = vec![f32::NAN; grad_scratch_len(Arch::tied(), dims, block_rows)];
    let g = ParamsMut::tied(dims, &mut o.dm, &mut o.db).unwrap();
    let bwd = loss_and_grad(p, &x, n, &opts, g, &mut scratch).unwrap();
    assert_eq!(
        fwd.loss.to_bits(),
        bwd.loss.to_bits(),
        "forward and backward report one loss"
    );
    o.loss = bwd.loss;
    o
}

fn compare(name: &str, o: &Outputs, want: &Value, worst: &mut [(String, f64); 7]) {
    let fields: [(&str, &[f32]); 7] = [
        ("Xh", &o.xh),
        ("C", &o.c),
        ("loss", std::slice::from_ref(&o.loss)),
        ("dM", &o.dm),
        ("db", &o.db),
        ("row_sq_err", &o.row_sq),
        ("row_l1", &o.row_l1),
    ];
    for (k, (field, got)) in fields.iter().enumerate() {
        let e = rel_err(got, &f64s(want, field));
        assert!(e <= TOL, "{name}: {field} relative error {e:.3e} > {TOL:e}");
        if e > worst[k].1 {
            worst[k] = (format!("{field} ({name})"), e);
        }
    }
}

#[test]
fn golden_cases_match_jax() {
    let dir = golden_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("golden dir {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let mut worst: [(String, f64); 7] = Default::default();
    let mut cases = 0;
    for path in &files {
        let case: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        // Each file is checked with the library's f32 path; the f64 files are the
        // high-precision reference, the f32 files are JAX's own f32 results.
        // Block sizes 1 and 64 both run, so accumulation across row blocks is covered.
        for rows in [1, 3, 64] {
            for path in PATHS {
                let o = run(&case, rows, path);
                let label = format!("{name}, block {rows}, {path:?}");
                compare(&label, &o, &case, &mut worst);
            }
        }
        cases += 1;
    }
    assert!(cases > 0, "no golden cases in {}", dir.display());
    for (field, e) in &worst {
        println!("worst {field}: {e:.2e}");
    }
    println!(
        "golden: {cases} cases passed (GEMM kernel: {})",
        sae_kernels::kernels::active_kernel()
    );
}

#[test]
fn kink_case_uses_relu_derivative_zero() {
    // The kink case has pre-activations exactly 0; with relu'(0) = 1 the all-zero row
    // of M would get a nonzero gradient. Check that row's db and dM are exactly 0.
    let dir = golden_dir();
    let path = dir.join("kink_relu0_d4_h6_n5.f64.json");
    let Ok(text) = std::fs::read_to_string(&path) else {
        panic!("kink case missing at {}", path.display());
    };
    let case: Value = serde_json::from_str(&text).unwrap();
    let d = case["d"].as_u64().unwrap() as usize;
    let m = f64s(&case, "M");
    let b = f64s(&case, "b");
    let zero_rows: Vec<usize> = (0..b.len())
        .filter(|&j| b[j] == 0.0 && m[j * d..(j + 1) * d].iter().all(|&v| v == 0.0))
        .collect();
    assert!(
        !zero_rows.is_empty(),
        "kink case should hold an all-zero row of M"
    );
    for path in PATHS {
        let o = run(&case, 64, path);
        for &j in &zero_rows {
            assert_eq!(o.db[j], 0.0, "db[{j}] ({path:?})");
            assert!(
                o.dm[j * d..(j + 1) * d].iter().all(|&v| v == 0.0),
                "dM row {j} ({path:?})"
            );
        }
    }
}
