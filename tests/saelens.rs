//! SAELens folders written by SAELens itself (`tests/fixtures/saelens`, made by
//! `gen_fixtures.py` with sae-lens 6.54.12 / torch 2.15): we load them and must
//! reproduce SAELens' `encode`/`decode` outputs and PyTorch autograd gradients of
//! SAELens' training loss.
//!
//! Tolerance: `max|ours − SAELens| / max|SAELens| ≤ 1e-5` per output (both sides
//! compute in f32 with different summation orders over ≤ 32 terms; the observed error
//! is ~1e-7), and the set of non-zero codes must be identical. Gradients: our f32
//! gradients against SAELens' float64 autograd, same bound.

mod common;
use common::json::{f64s, rel_err_nonzero as rel_err};
use sae_kernels::format::saelens::{self, SaeLensConfig};
use sae_kernels::{
    Error,
    model::{
        Activation, Arch, AuxK, Dims, LossOptions, LossParts, ParamsMut, Penalty, grad_scratch_len,
        loss_and_grad,
    },
    owned::Sae,
};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

const TOL: f64 = 1e-5;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/saelens")
        .join(name)
}

fn expected(name: &str) -> Value {
    let text = std::fs::read_to_string(fixture(name).join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn tmp_dir(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    // Cargo's per-target scratch folder: also reachable under WASI (the runner opens the
    // crate's parent folder), where `std::env::temp_dir()` is not available.
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "saelens-{}-{tag}",
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    d
}

const ALL: &[&str] = &[
    "standard",
    "standard_nobdec",
    "standard_bf16",
    "topk",
    "topk_rescale",
    "jumprelu",
    "jumprelu_f16",
    "prev6_topk",
];

/// Encode and decode every fixture and compare with SAELens.
#[test]
fn reproduces_saelens_encode_and_decode() {
    for &name in ALL {
        let (_, sae) = saelens::load(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let e = expected(name);
        let n = e["n"].as_u64().unwrap() as usize;
        let x: Vec<f32> = f64s(&e, "x").into_iter().map(|v| v as f32).collect();
        let want_codes = f64s(&e, "codes");
        let codes = sae.encode(&x, n).unwrap();
        let err = rel_err(&codes, &want_codes);
        assert!(err <= TOL, "{name}: codes rel err {err:e}");
        for (i, (&a, &b)) in codes.iter().zip(&want_codes).enumerate() {
            assert_eq!(
                a != 0.0,
                b != 0.0,
                "{name}: support differs at {i}: {a} vs {b}"
            );
        }
        // Decode SAELens' own codes, so that the decoder is checked on its own.
        let sl_codes: Vec<f32> = want_codes.iter().map(|&v| v as f32).collect();
        let recon = sae.decode(&sl_codes, n).unwrap();
        let err = rel_err(&recon, &f64s(&e, "recon"));
        assert!(err <= TOL, "{name}: recon rel err {err:e}");
    }
}

#[test]
fn configs_are_read_as_saelens_reads_them() {
    let (c, sae) = saelens::load(&fixture("topk")).unwrap();
    assert!(c.v6);
    assert_eq!((c.d_in, c.d_sae), (8, 32));
    assert_eq!(sae.arch().activation, Activation::TopK { k: 4 });
    assert!(sae.arch().centers_input());

    let (c, sae) = saelens::load(&fixture("prev6_topk")).unwrap();
    assert!(!c.v6);
    assert_eq!(sae.arch().activation, Activation::TopK { k: 4 });
    let meta: Value = serde_json::from_str(&c.metadata_json).unwrap();
    assert_eq!(meta["hook_name"], "blocks.8.hook_resid_pre");
    assert_eq!(meta["model_name"], "gpt2-small");

    let (_, sae) = saelens::load(&fixture("jumprelu_f16")).unwrap();
    assert_eq!(sae.arch().activation, Activation::JumpRelu);
    assert!(!sae.arch().centers_input());
    assert_eq!(sae.params().threshold().unwrap().len(), 32);
}

/// Our exact gradients against PyTorch autograd of SAELens' training loss.
#[test]
fn gradients_match_pytorch_autograd_of_saelens_loss() {
    for name in ["standard", "standard_nobdec", "topk"] {
        let (_, sae) = saelens::load(&fixture(name)).unwrap();
        let e = expected(name);
        let n = e["n"].as_u64().unwrap() as usize;
        let x: Vec<f32> = f64s(&e, "x").into_iter().map(|v| v as f32).collect();
        let alpha = e["alpha"].as_f64().unwrap() as f32;
        let pen = match e["penalty"].as_str().unwrap() {
            "decoder_norm_l1" => Penalty::DecoderNormL1,
            _ => Penalty::None,
        };
        let (loss, [gwe, gbe, gwd, gbd]) = grads_of(&sae, &x, n, alpha, pen, None);
        let want_loss = e["loss"].as_f64().unwrap();
        let lerr = (f64::from(loss.loss) - want_loss).abs() / want_loss.abs();
        assert!(lerr <= TOL, "{name}: loss {} vs {want_loss}", loss.loss);
        for (key, got) in [
            ("grad_W_enc", &gwe),
            ("grad_b_enc", &gbe),
            ("grad_W_dec", &gwd),
            ("grad_b_dec", &gbd),
        ] {
            let err = rel_err(got, &f64s(&e, key));
            assert!(err <= TOL, "{name}: {key} rel err {err:e}");
        }
    }
}

/// Loss and the four gradients of a loaded model under penalty `pen` (coefficient `alpha`).
fn grads_of(
    sae: &Sae,
    x: &[f32],
    n: usize,
    alpha: f32,
    pen: Penalty,
    aux: Option<AuxK<'_>>,
) -> (LossParts, [Vec<f32>; 4]) {
    let dims = sae.dims();
    let arch = Arch {
        penalty: pen,
        ..sae.arch()
    };
    let p = sae.params().with_arch(arch).unwrap();
    let mut g = [
        vec![f32::NAN; dims.m_len()],
        vec![f32::NAN; dims.h],
        vec![f32::NAN; dims.m_len()],
        vec![f32::NAN; dims.d],
    ];
    let mut scratch = vec![0.0; grad_scratch_len(arch, dims, 4)];
    let [a, b, c, d] = &mut g;
    let grads = ParamsMut::new(arch, dims, [&mut a[..], b, c, d]).unwrap();
    let opts = LossOptions {
        aux,
        ..LossOptions::alpha(alpha)
    };
    let loss = loss_and_grad(p, x, n, &opts, grads, &mut scratch).unwrap();
    (loss, g)
}

fn same_model(a: &Sae, b: &Sae) {
    assert_eq!(a.dims(), b.dims());
    assert_eq!(a.arch(), b.arch());
    for (ta, tb) in a.tensors().iter().zip(b.tensors().iter()) {
        assert_eq!((ta.name, ta.data), (tb.name, tb.data));
    }
}

/// Load → save (v6, F32) → load gives bit-identical parameters and keeps metadata.
#[test]
fn round_trip_is_exact() {
    for &name in ALL {
        let (cfg, sae) = saelens::load(&fixture(name)).unwrap();
        let dir = tmp_dir(name);
        saelens::save(&dir, &sae, &cfg).unwrap();
        let (cfg2, sae2) = saelens::load(&dir).unwrap();
        same_model(&sae, &sae2);
        assert!(cfg2.v6, "{name}: saved config must be v6");
        let m1: Value = serde_json::from_str(&cfg.metadata_json).unwrap();
        let m2: Value = serde_json::from_str(&cfg2.metadata_json).unwrap();
        for (k, v) in m1.as_object().unwrap() {
            if k != "sae_lens_version" {
                assert_eq!(&m2[k], v, "{name}: metadata {k}");
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// A tied model saved as `standard` encodes and decodes as the tied model.
#[test]
fn tied_model_saved_as_standard() {
    let dims = Dims::new(8, 32).unwrap();
    let mut tied = Sae::new(Arch::tied(), dims, 3).unwrap();
    let mut params = tied.params_mut();
    let mut tensors = params.tensors_mut();
    assert_eq!(tensors[1].name, "b");
    for (i, v) in tensors[1].data.iter_mut().enumerate() {
        *v = (i as f32 - 16.0) * 0.01;
    }
    drop(tensors);
    let dir = tmp_dir("tied");
    saelens::save(&dir, &tied, &SaeLensConfig::for_model(&tied)).unwrap();
    let text = std::fs::read_to_string(dir.join("cfg.json")).unwrap();
    let cfg: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(cfg["architecture"], "standard");
    assert_eq!(cfg["apply_b_dec_to_input"], false);
    let (_, sae) = saelens::load(&dir).unwrap();
    let x: Vec<f32> = (0..5 * 8)
        .map(|i| ((i * 7 % 11) as f32 - 5.0) * 0.2)
        .collect();
    let mut want = vec![0.0; 5 * 32];
    let mut scratch = vec![0.0; sae_kernels::model::encode_scratch_len(Arch::tied(), dims, 1)];
    sae_kernels::model::encode(tied.params(), &x, 5, &mut want, &mut scratch).unwrap();
    let got = sae.encode(&x, 5).unwrap();
    let want64: Vec<f64> = want.iter().map(|&v| f64::from(v)).collect();
    assert!(rel_err(&got, &want64) <= 1e-6);
    assert!(sae.params().b_dec().unwrap().iter().all(|&v| v == 0.0));
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---------- refusals and hostile files ----------

fn base_cfg() -> Value {
    serde_json::json!({
        "d_in": 8, "d_sae": 32, "dtype": "float32", "device": "cpu",
        "apply_b_dec_to_input": true, "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": {"sae_lens_version": "6.54.12"}, "architecture": "standard"
    })
}

fn cfg_field_err(v: &Value) -> (&'static str, &'static str) {
    match saelens::parse_config(v.to_string().as_bytes()) {
        Err(Error::Format { file, field, .. }) => (file, field),
        other => panic!("expected a format error for {v}, got {other:?}"),
    }
}

#[test]
fn refuses_configs_it_cannot_run_naming_the_field() {
    assert!(saelens::parse_config(base_cfg().to_string().as_bytes()).is_ok());
    let cases: Vec<(&str, Value, &str)> = vec![
        ("architecture", Value::from("gated"), "architecture"),
        ("architecture", Value::from("transcoder"), "architecture"),
        ("architecture", Value::from(3), "architecture"),
        (
            "normalize_activations",
            Value::from("expected_average_only_in"),
            "normalize_activations",
        ),
        (
            "normalize_activations",
            Value::from("layer_norm"),
            "normalize_activations",
        ),
        (
            "normalize_activations",
            Value::from("constant_norm_rescale"),
            "normalize_activations",
        ),
        (
            "normalize_activations",
            Value::from("what"),
            "normalize_activations",
        ),
        ("d_in", Value::from(0), "d_in"),
        ("d_in", Value::from(-3), "d_in"),
        ("d_sae", Value::from("32"), "d_sae"),
        ("dtype", Value::from("int8"), "dtype"),
        (
            "apply_b_dec_to_input",
            Value::from("yes"),
            "apply_b_dec_to_input",
        ),
        (
            "reshape_activations",
            Value::from("hook_q"),
            "reshape_activations",
        ),
        (
            "finetuning_scaling_factor",
            Value::from(true),
            "finetuning_scaling_factor",
        ),
    ];
    for (key, val, field) in cases {
        let mut c = base_cfg();
        c[key] = val;
        assert_eq!(cfg_field_err(&c), ("cfg.json", field), "{key}");
    }
    // Missing required fields.
    for key in ["d_in", "d_sae", "architecture"] {
        let mut c = base_cfg();
        c.as_object_mut().unwrap().remove(key);
        assert_eq!(cfg_field_err(&c).1, key);
    }
    // TopK without k, or with k = 0.
    let mut c = base_cfg();
    c["architecture"] = "topk".into();
    assert_eq!(cfg_field_err(&c).1, "k");
    c["k"] = 0.into();
    assert_eq!(cfg_field_err(&c).1, "k");
    c["k"] = 33.into();
    assert_eq!(cfg_field_err(&c).1, "k");
    c["k"] = 32.into();
    assert!(saelens::parse_config(c.to_string().as_bytes()).is_ok());
    // Not JSON / not an object.
    assert!(matches!(
        saelens::parse_config(b"{\"d_in\": 8,"),
        Err(Error::Format { field: "", .. })
    ));
    assert!(matches!(
        saelens::parse_config(b"[1, 2]"),
        Err(Error::Format { field: "", .. })
    ));
}

#[test]
fn reads_and_refuses_pre_v6_configs() {
    let old = |extra: Value| {
        let mut c =
            serde_json::json!({"d_in": 8, "d_sae": 32, "hook_point": "blocks.0.hook_resid_pre"});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    let parse = |v: &Value| saelens::parse_config(v.to_string().as_bytes());
    // Missing architecture and activation = standard; b_dec applied by default.
    let c = parse(&old(serde_json::json!({}))).unwrap();
    assert_eq!(c.activation, Activation::Relu);
    assert!(c.apply_b_dec_to_input && !c.v6);
    let meta: Value = serde_json::from_str(&c.metadata_json).unwrap();
    assert_eq!(meta["hook_name"], "blocks.0.hook_resid_pre");
    // Boolean normalize_activations: false is none, true is refused.
    assert!(parse(&old(serde_json::json!({"normalize_activations": false}))).is_ok());
    assert_eq!(
        cfg_field_err(&old(serde_json::json!({"normalize_activations": true}))).1,
        "normalize_activations"
    );
    // TopK through activation_fn_str / activation_fn_kwargs.k.
    let c = parse(&old(
        serde_json::json!({"activation_fn_str": "topk", "activation_fn_kwargs": {"k": 7}}),
    ))
    .unwrap();
    assert_eq!(c.activation, Activation::TopK { k: 7 });
    assert_eq!(
        cfg_field_err(&old(serde_json::json!({"activation_fn_str": "topk"}))).1,
        "activation_fn_kwargs.k"
    );
    assert_eq!(
        cfg_field_err(&old(serde_json::json!({"activation_fn_str": "tanh-relu"}))).1,
        "activation_fn_str"
    );
    // A v5 version string is pre-v6 too; a v6 one without architecture is refused.
    let c = parse(&old(serde_json::json!({"sae_lens_version": "5.9.1"}))).unwrap();
    assert!(!c.v6);
    assert_eq!(
        cfg_field_err(&old(
            serde_json::json!({"metadata": {"sae_lens_version": "6.1.0"}})
        ))
        .1,
        "architecture"
    );
}

fn weights_of(name: &str) -> (SaeLensConfig, Vec<u8>) {
    let cfg =
        saelens::parse_config(&std::fs::read(fixture(name).join("cfg.json")).unwrap()).unwrap();
    (
        cfg,
        std::fs::read(fixture(name).join("sae_weights.safetensors")).unwrap(),
    )
}

/// Build a safetensors file by hand: `(name, dtype, shape, bytes)`.
fn st_file(tensors: &[(&str, &str, Vec<usize>, Vec<u8>)]) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    let mut off = 0usize;
    let mut data = Vec::new();
    for (name, dtype, shape, bytes) in tensors {
        header.insert(
            name.to_string(),
            serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [off, off + bytes.len()]}),
        );
        off += bytes.len();
        data.extend_from_slice(bytes);
    }
    let h = Value::Object(header).to_string().into_bytes();
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend(h);
    out.extend(data);
    out
}

fn f32b(n: usize) -> Vec<u8> {
    (0..n)
        .flat_map(|i| (i as f32 * 0.01).to_le_bytes())
        .collect()
}

fn std_tensors() -> Vec<(&'static str, &'static str, Vec<usize>, Vec<u8>)> {
    vec![
        ("W_enc", "F32", vec![8, 32], f32b(256)),
        ("b_enc", "F32", vec![32], f32b(32)),
        ("W_dec", "F32", vec![32, 8], f32b(256)),
        ("b_dec", "F32", vec![8], f32b(8)),
    ]
}

fn w_field_err(cfg: &SaeLensConfig, bytes: &[u8]) -> &'static str {
    match saelens::parse_weights(cfg, bytes) {
        Err(Error::Format { file, field, .. }) => {
            assert_eq!(file, "sae_weights.safetensors");
            field
        }
        Err(e) => panic!("expected a format error, got {e}"),
        Ok(_) => panic!("expected a format error, got a model"),
    }
}

#[test]
fn hostile_weight_files_are_errors_not_panics() {
    let (cfg, good) = weights_of("jumprelu");
    assert!(saelens::parse_weights(&cfg, &good).is_ok());
    // Every truncation, and one byte too many.
    for len in 0..good.len() {
        assert!(
            saelens::parse_weights(&cfg, &good[..len]).is_err(),
            "prefix {len}"
        );
    }
    let mut long = good.clone();
    long.push(0);
    assert!(saelens::parse_weights(&cfg, &long).is_err());
    // A huge declared header length, and a header length past the end.
    let mut huge = good.clone();
    huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    assert_eq!(w_field_err(&cfg, &huge), "");
    let mut past = good.clone();
    past[..8].copy_from_slice(&(good.len() as u64).to_le_bytes());
    assert_eq!(w_field_err(&cfg, &past), "");

    let (scfg, _) = weights_of("standard");
    assert!(saelens::parse_weights(&scfg, &st_file(&std_tensors())).is_ok());
    // Huge declared shapes with tiny data: refused by the offset check, no allocation.
    let mut t = std_tensors();
    // (2^44 elements on 64-bit targets; 2^28 = 1 GiB of f32 where usize is 32 bits.)
    let huge: usize = if cfg!(target_pointer_width = "64") {
        1 << 40
    } else {
        1 << 24
    };
    t[0].2 = vec![huge, 1 << 4];
    assert_eq!(w_field_err(&scfg, &st_file(&t)), "");
    // Wrong shape (transposed W_enc), wrong dtype, missing and unexpected tensors.
    let mut t = std_tensors();
    t[0].2 = vec![32, 8];
    assert_eq!(w_field_err(&scfg, &st_file(&t)), "W_enc");
    let mut t = std_tensors();
    t[3] = ("b_dec", "I32", vec![8], f32b(8));
    assert_eq!(w_field_err(&scfg, &st_file(&t)), "b_dec");
    let mut t = std_tensors();
    t.remove(2);
    assert_eq!(w_field_err(&scfg, &st_file(&t)), "W_dec");
    let mut t = std_tensors();
    t.push(("b_gate", "F32", vec![32], f32b(32)));
    assert_eq!(w_field_err(&scfg, &st_file(&t)), "");
    // JumpReLU without a threshold; a legacy scaling factor that is not all ones.
    assert_eq!(w_field_err(&cfg, &st_file(&std_tensors())), "threshold");
    let mut t = std_tensors();
    t.push(("scaling_factor", "F32", vec![32], f32b(32)));
    assert_eq!(w_field_err(&scfg, &st_file(&t)), "scaling_factor");
    let ones: Vec<u8> = (0..32).flat_map(|_| 1.0f32.to_le_bytes()).collect();
    let mut t = std_tensors();
    t.push(("scaling_factor", "F32", vec![32], ones));
    assert!(saelens::parse_weights(&scfg, &st_file(&t)).is_ok());
    // Overlapping offsets.
    let mut bad = st_file(&std_tensors());
    let text = String::from_utf8_lossy(&bad).replace("[0,1024]", "[4,1028]");
    bad = text.into_bytes();
    assert!(saelens::parse_weights(&scfg, &bad).is_err());
    // Random byte flips anywhere in a real file never panic.
    let mut state = 0x1234_5678_9abc_def0u64;
    for _ in 0..300 {
        let mut b = good.clone();
        for _ in 0..3 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let i = (state >> 33) as usize % b.len();
            b[i] ^= (state >> 13) as u8 | 1;
        }
        let _ = saelens::parse_weights(&cfg, &b);
    }
}

#[test]
fn missing_folder_is_a_clear_error() {
    let err = saelens::load(Path::new("/definitely/not/here")).unwrap_err();
    assert_eq!(
        err,
        Error::Format {
            file: "cfg.json",
            field: "",
            what: "not found"
        }
    );
    assert_eq!(err.to_string(), "`cfg.json`: not found");
}

/// The AuxK loss and gradients against SAELens' TopK training loss with dead latents.
#[test]
fn auxk_matches_saelens() {
    let (_, sae) = saelens::load(&fixture("topk")).unwrap();
    let e = expected("topk");
    let n = e["n"].as_u64().unwrap() as usize;
    let x: Vec<f32> = f64s(&e, "x").into_iter().map(|v| v as f32).collect();
    let coefficient = e["auxk_coefficient"].as_f64().unwrap() as f32;
    let dims = sae.dims();
    for case in ["auxk_many_", "auxk_few_"] {
        let dead: Vec<bool> = e[format!("{case}dead")]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_bool().unwrap())
            .collect();
        let aux = AuxK {
            dead: &dead,
            k_aux: dims.d / 2,
            coefficient,
        };
        let (parts, [gwe, gbe, gwd, gbd]) = grads_of(&sae, &x, n, 0.0, Penalty::None, Some(aux));
        let aux_loss = parts.aux;
        let want_aux = e[format!("{case}aux_loss")].as_f64().unwrap();
        let want_loss = e[format!("{case}loss")].as_f64().unwrap();
        assert!(
            (f64::from(aux_loss) - want_aux).abs() <= TOL * want_aux,
            "{case}aux"
        );
        assert!(
            (f64::from(parts.loss) - want_loss).abs() <= TOL * want_loss,
            "{case}loss"
        );
        for (key, got) in [
            ("grad_W_enc", &gwe),
            ("grad_b_enc", &gbe),
            ("grad_W_dec", &gwd),
            ("grad_b_dec", &gbd),
        ] {
            let err = rel_err(got, &f64s(&e, &format!("{case}{key}")));
            assert!(err <= TOL, "{case}{key} rel err {err:e}");
        }
    }
}

/// Every architecture the core trains saves as a SAELens folder and loads back with
/// the same codes and reconstructions: the tied model as `standard` without input
/// centring, untied TopK and standard models as themselves.
#[test]
fn owned_models_of_every_architecture_round_trip() {
    let dims = Dims::new(6, 24).unwrap();
    let x: Vec<f32> = (0..5 * 6)
        .map(|i| ((i * 7 % 13) as f32 - 6.0) * 0.2)
        .collect();
    for (arch, tag) in [
        (Arch::tied(), "tied"),
        (Arch::standard(), "standard"),
        (Arch::topk(3), "topk"),
    ] {
        let sae = Sae::new(arch, dims, 11).unwrap();
        let dir = tmp_dir(tag);
        saelens::save(&dir, &sae, &SaeLensConfig::for_model(&sae)).unwrap();
        let (cfg, back) = saelens::load(&dir).unwrap();
        assert!(!back.arch().is_tied(), "{tag}: SAELens folders are untied");
        assert_eq!(cfg.activation, arch.activation, "{tag}");
        assert_eq!(back.arch().centers_input(), !arch.is_tied(), "{tag}");
        let (c1, c2) = (sae.encode(&x, 5).unwrap(), back.encode(&x, 5).unwrap());
        assert!(rel_err(&c2, &c1.iter().map(|&v| f64::from(v)).collect::<Vec<_>>()) < 1e-6);
        let (r1, r2) = (sae.decode(&c1, 5).unwrap(), back.decode(&c1, 5).unwrap());
        assert!(rel_err(&r2, &r1.iter().map(|&v| f64::from(v)).collect::<Vec<_>>()) < 1e-6);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
