//! Folders that *we* write, loaded by SAELens itself.
//!
//! `tests/fixtures/saelens_written/<arch>/` holds a SAELens folder written by
//! [`saelens::save`] from a deterministic model (built below), and `saelens_out.json`
//! beside it records what sae-lens 6.54.12 computes after `SAE.load_from_disk` of that
//! folder (`gen_expected.py`, run where sae-lens is installed; torch is several GB, so
//! CI does not install it). This test proves, on every run:
//!
//! 1. the writer still produces exactly the folder SAELens was shown: the safetensors
//!    bytes are identical and `cfg.json` is the same JSON value (ignoring only
//!    `metadata.sae_kernels_version`). Any change to the writer fails here until the
//!    fixture is regenerated and SAELens has loaded the new output;
//! 2. SAELens' codes and reconstructions for that folder equal ours within
//!    `max|ours − SAELens| ≤ 1e-5 · max|SAELens|`, with the same set of non-zero codes.
//!
//! Regenerate: `SAEK_BLESS=1 cargo test --test saelens_written` (writes the folders and
//! `x.json`), then `python tests/fixtures/saelens_written/gen_expected.py` with sae-lens
//! installed.

mod common;
use common::json::{f64s, rel_err_nonzero as max_err};
use sae_kernels::format::saelens::{self, SaeLensConfig};
use sae_kernels::prelude::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

const D: usize = 8;
const H: usize = 24;
const N: usize = 7;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/saelens_written")
}

/// The four folder kinds we write: three untied architectures and the seed's tied
/// model (written as `standard` without input centring).
fn cases() -> Vec<(&'static str, Arch)> {
    vec![
        ("standard", Arch::standard()),
        ("topk", Arch::topk(5)),
        ("jumprelu", Arch::jumprelu()),
        ("tied", Arch::tied()),
    ]
}

/// A deterministic value in about [-1, 1] for element `i` of tensor number `t`.
fn wave(t: usize, i: usize) -> f32 {
    let a = (i as f64 * 0.7311 + t as f64 * 1.913).sin();
    let b = (i as f64 * 0.1237 + t as f64 * 0.417).cos();
    (a * 0.8 + b * 0.2) as f32
}

/// A model with every tensor non-zero (biases too), built without randomness so the
/// bytes written are the same on every machine.
fn model(arch: Arch) -> Sae {
    let dims = Dims::new(D, H).unwrap();
    let names: Vec<&'static str> = Sae::new(arch, dims, 0)
        .unwrap()
        .tensors()
        .iter()
        .map(|t| t.name)
        .collect();
    let shapes: Vec<usize> = Sae::new(arch, dims, 0)
        .unwrap()
        .tensors()
        .iter()
        .map(|t| t.data.len())
        .collect();
    let data: Vec<Vec<f32>> = names
        .iter()
        .zip(&shapes)
        .enumerate()
        .map(|(t, (name, &len))| {
            (0..len)
                .map(|i| match *name {
                    // Positive thresholds in [0.05, 0.65]: some codes pass, some do not.
                    "threshold" => 0.35 + 0.3 * wave(t, i),
                    "b_enc" | "b" => 0.2 * wave(t, i),
                    "b_dec" => 0.3 * wave(t, i),
                    _ => 0.5 * wave(t, i),
                })
                .collect()
        })
        .collect();
    let refs: Vec<&[f32]> = data.iter().map(Vec::as_slice).collect();
    Sae::from_tensors(arch, dims, &refs).unwrap()
}

fn input() -> Vec<f32> {
    (0..N * D).map(|i| 1.5 * wave(9, i)).collect()
}

fn without_version(mut cfg: Value) -> Value {
    if let Some(m) = cfg.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("sae_kernels_version");
    }
    cfg
}

#[test]
fn folders_we_write_are_what_saelens_loaded_and_encode_like_saelens() {
    let bless = std::env::var_os("SAEK_BLESS").is_some();
    let x = input();
    if bless {
        std::fs::create_dir_all(root()).unwrap();
        let xs: Vec<Value> = x.iter().map(|&v| Value::from(f64::from(v))).collect();
        let j = serde_json::json!({ "n": N, "d_in": D, "x": xs });
        std::fs::write(root().join("x.json"), serde_json::to_string(&j).unwrap()).unwrap();
    }
    for (tag, arch) in cases() {
        let sae = model(arch);
        let dir = root().join(tag);
        if bless {
            saelens::save(&dir, &sae, &SaeLensConfig::for_model(&sae)).unwrap();
            continue;
        }
        // 1. Our writer produces the folder SAELens was shown.
        // Cargo's per-target scratch folder: also reachable under WASI, where
        // `std::env::temp_dir()` is not.
        let fresh = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("written-{tag}"));
        let _ = std::fs::remove_dir_all(&fresh);
        saelens::save(&fresh, &sae, &SaeLensConfig::for_model(&sae)).unwrap();
        let read = |d: &Path, f: &str| std::fs::read(d.join(f)).unwrap();
        assert!(
            read(&fresh, "sae_weights.safetensors") == read(&dir, "sae_weights.safetensors"),
            "{tag}: the weights we write changed; regenerate the fixture (see the module docs)"
        );
        let cfg = |d: &Path| -> Value { serde_json::from_slice(&read(d, "cfg.json")).unwrap() };
        assert_eq!(
            without_version(cfg(&fresh)),
            without_version(cfg(&dir)),
            "{tag}: the cfg.json we write changed; regenerate the fixture (see the module docs)"
        );
        std::fs::remove_dir_all(&fresh).unwrap();

        // 2. SAELens' outputs for that folder equal ours.
        let theirs: Value =
            serde_json::from_slice(&read(&dir, "saelens_out.json")).unwrap_or_else(|e| {
                panic!("{tag}: saelens_out.json missing or bad ({e}); run gen_expected.py")
            });
        // JSON decimals parse to within an ulp of f64; the inputs are f32 values.
        let their_x: Vec<f32> = f64s(&theirs, "x").iter().map(|&v| v as f32).collect();
        assert_eq!(their_x, x, "{tag}: SAELens was run on other inputs");
        let want_codes = f64s(&theirs, "codes");
        let codes = sae.encode(&x, N).unwrap();
        let err = max_err(&codes, &want_codes);
        assert!(err <= 1e-5, "{tag}: codes differ from SAELens by {err:e}");
        for (i, (&c, &w)) in codes.iter().zip(&want_codes).enumerate() {
            assert_eq!(
                c != 0.0,
                w != 0.0,
                "{tag}: code {i} active set differs ({c} vs {w})"
            );
        }
        let fired = want_codes.iter().filter(|&&w| w != 0.0).count();
        assert!(
            fired > 0 && fired < want_codes.len(),
            "{tag}: the fixture must have both active and inactive codes ({fired})"
        );
        let recon = sae.decode(&codes, N).unwrap();
        let err = max_err(&recon, &f64s(&theirs, "recon"));
        assert!(
            err <= 1e-5,
            "{tag}: reconstructions differ from SAELens by {err:e}"
        );
    }
}
